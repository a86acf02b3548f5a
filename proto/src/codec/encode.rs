//! Encoding of typed packets, written once against [`Sink`] so the same code computes
//! the exact size and writes the bytes.
//!
//! Owns the per-packet layouts for each protocol level: 3.x drops properties and reason
//! codes, 5.0 uses the short forms where allowed. It must never write a packet that the
//! decoder would reject (see [`check`]) and never allocate an intermediate buffer.

use super::properties::{self as props, Props, UserOnly};
use super::sink::Sink;
use crate::error::ProtoError;
use crate::packet::{
    Auth, ConnAck, Connect, Disconnect, Packet, Protocol, PubAck, Publish, QoS, RetainHandling,
    SubAck, Subscribe, SubscriptionOptions, UnsubAck,
};
use crate::reason::ReasonCode;
use crate::topic::TopicError;

/// The first byte of the fixed header.
pub fn first_byte(packet: &Packet) -> u8 {
    let t = packet.packet_type() << 4;
    match packet {
        Packet::Publish(p) => {
            t | (u8::from(p.dup) << 3) | ((p.qos as u8) << 1) | u8::from(p.retain)
        }
        Packet::PubRel(_) | Packet::Subscribe(_) | Packet::Unsubscribe(_) => t | 0b0010,
        _ => t,
    }
}

fn nonzero(pkid: u16) -> Result<(), ProtoError> {
    if pkid == 0 {
        Err(ProtoError::ZeroPacketId)
    } else {
        Ok(())
    }
}

/// Rejects packets that cannot be encoded faithfully for `protocol`.
pub fn check(packet: &Packet, protocol: Protocol) -> Result<(), ProtoError> {
    let v5 = protocol.is_v5();
    match packet {
        Packet::Connect(c) if !v5 && c.password.is_some() && c.username.is_none() => {
            return Err(ProtoError::Protocol("3.x password without a user name"));
        }
        Packet::Publish(p) => check_publish(p, v5)?,
        Packet::PubAck(a) | Packet::PubRec(a) | Packet::PubRel(a) | Packet::PubComp(a) => {
            nonzero(a.pkid)?;
        }
        Packet::Subscribe(s) => {
            nonzero(s.pkid)?;
            if s.filters.is_empty() {
                return Err(ProtoError::Protocol("SUBSCRIBE without a topic filter"));
            }
            if s.properties.subscription_identifier == Some(0) {
                return Err(ProtoError::Protocol("Subscription Identifier of 0"));
            }
        }
        Packet::SubAck(s) => {
            nonzero(s.pkid)?;
            if s.reasons.is_empty() {
                return Err(ProtoError::Protocol("SUBACK without a reason code"));
            }
        }
        Packet::Unsubscribe(u) => {
            nonzero(u.pkid)?;
            if u.filters.is_empty() {
                return Err(ProtoError::Protocol("UNSUBSCRIBE without a topic filter"));
            }
        }
        Packet::UnsubAck(u) => nonzero(u.pkid)?,
        Packet::Auth(_) if !v5 => return Err(ProtoError::Protocol("AUTH needs MQTT 5.0")),
        _ => {}
    }
    Ok(())
}

/// Rejects a PUBLISH that cannot be encoded faithfully (see [`check`]).
pub fn check_publish(p: &Publish, v5: bool) -> Result<(), ProtoError> {
    match (p.qos, p.pkid) {
        (QoS::AtMostOnce, None) => {}
        (QoS::AtMostOnce, Some(_)) | (_, None) => {
            return Err(ProtoError::Protocol("packet identifier must match QoS"));
        }
        (_, Some(id)) => nonzero(id)?,
    }
    if p.qos == QoS::AtMostOnce && p.dup {
        return Err(ProtoError::Malformed("DUP flag set on a QoS 0 PUBLISH"));
    }
    if !v5 && p.topic.is_none() {
        return Err(TopicError::InvalidName("empty").into());
    }
    Ok(())
}

/// The first byte of a PUBLISH's fixed header.
pub fn publish_first_byte(p: &Publish) -> u8 {
    0x30 | (u8::from(p.dup) << 3) | ((p.qos as u8) << 1) | u8::from(p.retain)
}

/// Writes a PUBLISH whose message-level properties are borrowed from `shared`
/// (see [`super::encode_publish_shared`]).
pub fn publish_shared<S: Sink>(
    p: &Publish,
    shared: &crate::packet::PublishProperties,
    v5: bool,
    s: &mut S,
) {
    s.put_str(p.topic.as_deref().unwrap_or(""));
    if p.qos != QoS::AtMostOnce {
        s.put_u16(p.pkid.unwrap_or(0));
    }
    if v5 {
        props::write(
            s,
            &props::SharedPublish {
                hop: &p.properties,
                shared,
            },
        );
    }
    s.put_raw(&p.payload);
}

/// Writes the variable header and payload of `packet` (everything after the
/// remaining length).
pub fn body<S: Sink>(packet: &Packet, protocol: Protocol, s: &mut S) {
    let v5 = protocol.is_v5();
    match packet {
        Packet::Connect(c) => connect(c, protocol, s),
        Packet::ConnAck(c) => connack(c, v5, s),
        Packet::Publish(p) => publish(p, v5, s),
        Packet::PubAck(a) | Packet::PubRec(a) | Packet::PubRel(a) | Packet::PubComp(a) => {
            ack(a, v5, s);
        }
        Packet::Subscribe(sub) => subscribe(sub, v5, s),
        Packet::SubAck(a) => suback(a, v5, s),
        Packet::Unsubscribe(u) => {
            s.put_u16(u.pkid);
            if v5 {
                props::write(s, &UserOnly(&u.user_properties));
            }
            for f in &u.filters {
                s.put_str(f);
            }
        }
        Packet::UnsubAck(u) => unsuback(u, v5, s),
        Packet::PingReq | Packet::PingResp => {}
        Packet::Disconnect(d) => disconnect(d, v5, s),
        Packet::Auth(a) => auth(a, v5, s),
    }
}

fn connect<S: Sink>(c: &Connect, protocol: Protocol, s: &mut S) {
    let v5 = protocol.is_v5();
    s.put_str(if protocol == Protocol::V31 {
        "MQIsdp"
    } else {
        "MQTT"
    });
    s.put_u8(protocol.level());
    let mut flags = u8::from(c.clean_start) << 1;
    if let Some(w) = &c.will {
        flags |= 0x04 | ((w.qos as u8) << 3) | (u8::from(w.retain) << 5);
    }
    if c.password.is_some() {
        flags |= 0x40;
    }
    if c.username.is_some() {
        flags |= 0x80;
    }
    s.put_u8(flags);
    s.put_u16(c.keep_alive);
    if v5 {
        props::write(s, &c.properties);
    }
    s.put_str(&c.client_id);
    if let Some(w) = &c.will {
        if v5 {
            props::write(s, &w.properties);
        }
        s.put_str(&w.topic);
        s.put_bin(&w.payload);
    }
    if let Some(u) = &c.username {
        s.put_str(u);
    }
    if let Some(p) = &c.password {
        s.put_bin(p);
    }
}

fn connack<S: Sink>(c: &ConnAck, v5: bool, s: &mut S) {
    s.put_u8(u8::from(c.session_present));
    if v5 {
        s.put_u8(c.reason.0);
        props::write(s, &c.properties);
    } else {
        s.put_u8(c.reason.to_v3_connack());
    }
}

fn publish<S: Sink>(p: &Publish, v5: bool, s: &mut S) {
    s.put_str(p.topic.as_deref().unwrap_or(""));
    if p.qos != QoS::AtMostOnce {
        s.put_u16(p.pkid.unwrap_or(0));
    }
    if v5 {
        props::write(s, &p.properties);
    }
    s.put_raw(&p.payload);
}

fn ack<S: Sink>(a: &PubAck, v5: bool, s: &mut S) {
    s.put_u16(a.pkid);
    if !v5 {
        return;
    }
    let empty = a.properties.is_empty();
    if a.reason == ReasonCode::SUCCESS && empty {
        return;
    }
    s.put_u8(a.reason.0);
    if !empty {
        props::write(s, &a.properties);
    }
}

fn options(o: &SubscriptionOptions, v5: bool) -> u8 {
    let qos = o.qos as u8;
    if !v5 {
        return qos;
    }
    let rh = match o.retain_handling {
        RetainHandling::SendAtSubscribe => 0,
        RetainHandling::SendIfNew => 1,
        RetainHandling::DoNotSend => 2,
    };
    qos | (u8::from(o.no_local) << 2) | (u8::from(o.retain_as_published) << 3) | (rh << 4)
}

fn subscribe<S: Sink>(sub: &Subscribe, v5: bool, s: &mut S) {
    s.put_u16(sub.pkid);
    if v5 {
        props::write(s, &sub.properties);
    }
    for (f, o) in &sub.filters {
        s.put_str(f);
        s.put_u8(options(o, v5));
    }
}

fn suback<S: Sink>(a: &SubAck, v5: bool, s: &mut S) {
    s.put_u16(a.pkid);
    if v5 {
        props::write(s, &a.properties);
    }
    for r in &a.reasons {
        // 3.1.1 knows granted QoS 0..=2 and the single failure code 0x80.
        s.put_u8(if v5 || r.0 <= 2 { r.0 } else { 0x80 });
    }
}

fn unsuback<S: Sink>(u: &UnsubAck, v5: bool, s: &mut S) {
    s.put_u16(u.pkid);
    if v5 {
        props::write(s, &u.properties);
        for r in &u.reasons {
            s.put_u8(r.0);
        }
    }
}

fn disconnect<S: Sink>(d: &Disconnect, v5: bool, s: &mut S) {
    if !v5 {
        return;
    }
    let empty = d.properties.is_empty();
    if d.reason == ReasonCode::SUCCESS && empty {
        return;
    }
    // The property length is written even when it is 0: the short form without it is
    // valid [MQTT-3.14.2.2.1], but rumqttc 0.25 (the CLI's and the metabroker's client)
    // cannot decode it and reports "connection closed abruptly" instead of the reason.
    s.put_u8(d.reason.0);
    props::write(s, &d.properties);
}

fn auth<S: Sink>(a: &Auth, v5: bool, s: &mut S) {
    if !v5 || (a.reason == ReasonCode::SUCCESS && a.properties.is_empty()) {
        return;
    }
    s.put_u8(a.reason.0);
    props::write(s, &a.properties);
}
