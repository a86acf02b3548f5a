//! The per-connection protocol decisions that need no IO: topic aliases in both
//! directions, the limits an incoming PUBLISH must respect, Receive Maximum accounting
//! of incoming QoS 1/2 messages, the shape of an outgoing PUBLISH, and DISCONNECT.
//!
//! Owns [`Aliases`] and [`Unacked`]; pure functions over packets otherwise. Never
//! touches a socket, the router or a clock (time is passed in).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use canopy_proto::{
    Disconnect, DisconnectProperties, Packet, Protocol, Publish, PublishProperties, QoS,
    ReasonCode, TopicName,
};

use crate::config::Limits;
use crate::message::Message;

/// Topic aliases of one connection (5.0), bounded by what each side announced.
#[derive(Debug, Default)]
pub struct Aliases {
    /// Inbound: alias -> topic, at most `max_in` entries (boxed, allocated when the client
    /// first sets an alias: most never do, and an idle connection's task keeps this).
    #[expect(
        clippy::box_collection,
        reason = "boxed so that an empty one costs a pointer, not an empty map's 48 bytes"
    )]
    inbound: Option<Box<HashMap<u16, TopicName>>>,
    /// Outbound: topic -> alias, at most `max_out` entries (boxed as `inbound` is,
    /// allocated with the first alias we assign).
    #[expect(
        clippy::box_collection,
        reason = "boxed so that an empty one costs a pointer, not an empty map's 48 bytes"
    )]
    outbound: Option<Box<HashMap<Arc<str>, u16>>>,
    /// Topic Alias Maximum we announced.
    pub max_in: u16,
    /// Topic Alias Maximum the client announced.
    pub max_out: u16,
}

impl Aliases {
    /// No aliases yet, with the two maxima.
    pub fn new(max_in: u16, max_out: u16) -> Aliases {
        Aliases {
            max_in,
            max_out,
            ..Aliases::default()
        }
    }
}

/// Why an incoming packet ends the connection: the reason code and a log text.
pub type Violation = (ReasonCode, &'static str);

/// Resolves the topic alias of an incoming PUBLISH and checks it against the limits.
pub fn inbound_publish(
    mut p: Publish,
    aliases: &mut Aliases,
    limits: &Limits,
) -> Result<Publish, Violation> {
    if !p.properties.subscription_identifiers.is_empty() {
        // [MQTT-3.3.4-6]
        return Err((
            ReasonCode::PROTOCOL_ERROR,
            "subscription identifier in PUBLISH",
        ));
    }
    if let Some(alias) = p.properties.topic_alias {
        if alias == 0 || alias > aliases.max_in {
            // [MQTT-3.3.2-9]
            return Err((ReasonCode::TOPIC_ALIAS_INVALID, "topic alias out of range"));
        }
        match &p.topic {
            Some(t) => {
                aliases
                    .inbound
                    .get_or_insert_default()
                    .insert(alias, t.clone());
            }
            None => match aliases.inbound.as_ref().and_then(|m| m.get(&alias)) {
                Some(t) => p.topic = Some(t.clone()),
                None => return Err((ReasonCode::PROTOCOL_ERROR, "unknown topic alias")),
            },
        }
    }
    let Some(topic) = &p.topic else {
        return Err((ReasonCode::PROTOCOL_ERROR, "empty topic without alias"));
    };
    if topic.len() > limits.max_topic_length || topic.depth() > limits.max_topic_levels {
        return Err((
            ReasonCode::TOPIC_NAME_INVALID,
            "topic exceeds the configured limits",
        ));
    }
    if p.qos as u8 > limits.maximum_qos {
        // [MQTT-3.2.2-11]
        return Err((ReasonCode::QOS_NOT_SUPPORTED, "QoS above the maximum"));
    }
    if p.retain && !limits.retain_available {
        // [MQTT-3.2.2-14]
        return Err((ReasonCode::RETAIN_NOT_SUPPORTED, "retain is not available"));
    }
    Ok(p)
}

/// One delivery as the router queued it.
#[derive(Debug)]
pub struct Delivery<'a> {
    /// The message.
    pub msg: &'a Arc<Message>,
    /// QoS of this delivery.
    pub qos: QoS,
    /// Packet identifier (QoS 1/2).
    pub pkid: Option<u16>,
    /// RETAIN flag to send.
    pub retain: bool,
    /// DUP flag.
    pub dup: bool,
    /// Subscription identifiers.
    pub sub_ids: Vec<u32>,
}

/// The PUBLISH to write for `d` at `now`, or `None` for a QoS 0 message that expired
/// on the way [MQTT-3.3.2-5]. 5.0 gets the remaining expiry [MQTT-3.3.2-6], the
/// subscription identifiers and a topic alias when the client allows them; 3.1.1 gets
/// no properties. The returned packet carries only these per-hop properties: it is
/// written with `canopy_proto::encode_publish_shared` and the message's own properties,
/// which are never copied per delivery.
pub fn outbound_publish(
    d: Delivery<'_>,
    protocol: Protocol,
    aliases: &mut Aliases,
    now: Instant,
) -> Option<Publish> {
    if d.qos == QoS::AtMostOnce && d.msg.expired(now) {
        return None;
    }
    let msg = d.msg;
    let mut topic = Some(msg.topic.clone());
    let properties = if protocol.is_v5() {
        // Only the per-hop properties: the message's own (user properties, response
        // topic, ...) are written from the shared message by `encode_publish_shared`.
        let mut props = PublishProperties {
            subscription_identifiers: d.sub_ids,
            message_expiry_interval: msg.remaining_expiry(now),
            ..PublishProperties::default()
        };
        if aliases.max_out > 0 {
            let key = msg.topic.as_arc();
            let outbound = aliases.outbound.get_or_insert_default();
            if let Some(&a) = outbound.get(key) {
                props.topic_alias = Some(a);
                topic = None;
            } else if outbound.len() < usize::from(aliases.max_out) {
                let a = u16::try_from(outbound.len() + 1).unwrap_or(u16::MAX);
                outbound.insert(key.clone(), a);
                props.topic_alias = Some(a);
            }
        }
        props
    } else {
        PublishProperties::default()
    };
    Some(Publish {
        dup: d.dup,
        qos: d.qos,
        retain: d.retain,
        topic,
        pkid: d.pkid,
        properties,
        payload: msg.payload.clone(),
    })
}

/// Packet ids of incoming QoS 1/2 messages not yet answered (waiting for the router
/// and, under `sync`, the disk). At `max` the connection stops reading: that bounds
/// what a publisher has in flight to us, 3.1.1 clients included.
#[derive(Debug)]
pub struct Unacked {
    /// Boxed, allocated at the first QoS 1/2 PUBLISH and kept: a subscriber that never
    /// publishes keeps one pointer in its task.
    #[expect(
        clippy::box_collection,
        reason = "boxed so that an empty one costs a pointer, not an empty map's 48 bytes"
    )]
    ids: Option<Box<HashSet<u16>>>,
    max: usize,
}

impl Unacked {
    /// At most `max` unanswered messages (our Receive Maximum).
    pub fn new(max: u16) -> Unacked {
        Unacked {
            ids: None,
            max: usize::from(max),
        }
    }

    /// An incoming QoS 1/2 PUBLISH with `pkid` was forwarded.
    pub fn received(&mut self, pkid: u16) {
        self.ids.get_or_insert_default().insert(pkid);
    }

    /// Its PUBACK or PUBREC is being written. QoS 2 counts until PUBREC: what follows
    /// waits on the client's PUBREL, which must keep being read.
    pub fn answered(&mut self, packet: &Packet) {
        if let (Packet::PubAck(a) | Packet::PubRec(a), Some(ids)) = (packet, self.ids.as_mut()) {
            ids.remove(&a.pkid);
        }
    }

    /// Whether reading pauses until the broker answers.
    pub fn full(&self) -> bool {
        self.ids.as_ref().map_or(0, |ids| ids.len()) >= self.max
    }
}

/// The DISCONNECT to send with `reason`: 5.0 only (3.1.1 has no server DISCONNECT);
/// the reason string only when the client accepts them (Request Problem Information).
pub fn disconnect(
    protocol: Protocol,
    reason: ReasonCode,
    why: Option<String>,
    problem_info: bool,
) -> Option<Packet> {
    protocol.is_v5().then(|| {
        Packet::Disconnect(Disconnect {
            reason,
            properties: DisconnectProperties {
                reason_string: why.filter(|_| problem_info),
                ..Default::default()
            },
        })
    })
}

/// The DISCONNECT that sends a 5.0 client to another node: 0x9C (Use another server) with
/// `reference` as Server Reference; nothing for older protocols, which are just closed.
pub fn moved(protocol: Protocol, reference: String) -> Option<Packet> {
    protocol.is_v5().then(|| {
        Packet::Disconnect(Disconnect {
            reason: ReasonCode::USE_ANOTHER_SERVER,
            properties: DisconnectProperties {
                server_reference: Some(reference),
                ..Default::default()
            },
        })
    })
}

#[cfg(test)]
#[path = "shaping_tests.rs"]
mod tests;
