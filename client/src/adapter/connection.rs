//! [`Connection`]: a rumqttc event loop of either version, polled into one [`Event`] type
//! in 5.0 terms, with reconnect backoff and the repairs of rumqttc's state a client that
//! resumes sessions needs.
//!
//! Owns the event loop. Must never publish, subscribe or ack (the [`super::Client`] does,
//! from another task) and never sleep except in [`Connection::pause`].

use rumqttc::Outgoing;
use rumqttc::v5::mqttbytes::v5 as p5;

use super::backoff::Backoff;
use super::follow::Follower;
use super::{Publish, QoS, publish_from_v4};
use crate::reason::{
    connack_v4, connack_v5, disconnect_reason, puback_reason, pubcomp_reason, pubrec_reason,
    suback_v4, suback_v5,
};

/// What happened on the connection, whatever its protocol version. Reason codes are MQTT
/// 5.0 numbers; on 3.1.1 acknowledgements are 0 (success) and SUBACK codes the granted QoS
/// or 0x80.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// CONNACK with success.
    ConnAck {
        /// The broker kept a session for this client id.
        session_present: bool,
    },
    /// An application message arrived (a 3.1.1 one has no properties).
    Publish(Box<Publish>),
    /// PUBACK for one of our QoS 1 publishes.
    PubAck {
        /// Packet id.
        pkid: u16,
        /// Reason code.
        reason: u8,
    },
    /// PUBREC for one of our QoS 2 publishes.
    PubRec {
        /// Packet id.
        pkid: u16,
        /// Reason code.
        reason: u8,
    },
    /// PUBCOMP ending one of our QoS 2 publishes.
    PubComp {
        /// Packet id.
        pkid: u16,
        /// Reason code.
        reason: u8,
    },
    /// PUBREL for an incoming QoS 2 message.
    PubRel {
        /// Packet id.
        pkid: u16,
    },
    /// SUBACK, one code per filter in request order.
    SubAck {
        /// Packet id.
        pkid: u16,
        /// Return / reason codes.
        codes: Vec<u8>,
        /// 5.0 user properties of the SUBACK (none on 3.1.1).
        user_properties: Vec<(String, String)>,
    },
    /// A PUBLISH of ours was written with this packet id (0 for QoS 0).
    OutgoingPublish(u16),
    /// A PUBREC of ours was written for this packet id.
    OutgoingPubRec(u16),
    /// A SUBSCRIBE of ours was written with this packet id (its SUBACK carries the same).
    OutgoingSubscribe(u16),
    /// Our DISCONNECT was written; the caller normally stops polling.
    OutgoingDisconnect,
    /// Anything else (pings, UNSUBACK, other outgoing packets).
    Other,
}

/// What kind of end a [`Failure`] is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FailureKind {
    /// The broker refused the connection; the CONNACK code's name.
    Refused(String),
    /// The broker sent DISCONNECT (5.0); the reason's name and reason string.
    Disconnected(String),
    /// The broker sent the client to another server: CONNACK or DISCONNECT 0x9C (Use
    /// another server) or 0x9D (Server moved); the reason's name. rumqttc drops the Server
    /// Reference (see `crate::redirect`).
    Redirected(String),
    /// Anything else: unreachable, timed out, connection lost, protocol error.
    Lost,
}

/// Why the connection failed; polling again reconnects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The kind of end.
    pub kind: FailureKind,
    /// rumqttc's text for it.
    pub message: String,
}

/// The event loop of either version.
pub(super) enum Loop {
    V4(Box<rumqttc::EventLoop>),
    V5(Box<rumqttc::v5::EventLoop>),
}

/// One connection's event loop, owned by the task that polls it.
pub struct Connection {
    event_loop: Loop,
    backoff: Option<Backoff>,
    follower: Option<Follower>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let version = match self.event_loop {
            Loop::V4(_) => "3.1.1",
            Loop::V5(_) => "5.0",
        };
        f.debug_struct("Connection")
            .field("version", &version)
            .finish_non_exhaustive()
    }
}

impl Connection {
    pub(super) fn new(
        event_loop: Loop,
        backoff: Option<Backoff>,
        follower: Option<Follower>,
    ) -> Connection {
        Connection {
            event_loop,
            backoff,
            follower,
        }
    }

    /// The next event; connects (again) first if needed. A CONNACK resets the backoff.
    /// With [`Options::follow_redirects`](super::Options::follow_redirects), a failure that
    /// sent the client away (or that happened at a server it was sent to) re-points the
    /// event loop before it is returned: polling again connects there.
    pub async fn poll(&mut self) -> Result<Event, Failure> {
        let polled = match &mut self.event_loop {
            Loop::V4(el) => el.poll().await.map(event_v4).map_err(failure_v4),
            Loop::V5(el) => el.poll().await.map(event_v5).map_err(failure_v5),
        };
        match &polled {
            Ok(Event::ConnAck { .. }) => {
                if let Some(b) = &mut self.backoff {
                    b.reset();
                }
                if let Some(f) = &mut self.follower {
                    f.connected();
                }
            }
            Err(failure) => {
                if let Some(f) = &mut self.follower {
                    let redirected = matches!(failure.kind, FailureKind::Redirected(_));
                    if let (Some(next), Loop::V5(el)) =
                        (f.after_failure(redirected).await, &mut self.event_loop)
                    {
                        el.options = next.v5();
                    }
                }
            }
            Ok(_) => {}
        }
        polled
    }

    /// The server the next connection attempt goes to (`host`, `port`): the configured
    /// one, or where a Server Reference sent the client.
    pub fn target(&self) -> (String, u16) {
        match &self.event_loop {
            Loop::V4(el) => el.mqtt_options.broker_address(),
            Loop::V5(el) => el.options.broker_address(),
        }
    }

    /// Waits the next reconnect delay (decorrelated jitter between the configured base and
    /// cap); returns at once when no backoff was configured or the connection is following
    /// a Server Reference.
    pub async fn pause(&mut self) {
        if self
            .follower
            .as_mut()
            .is_some_and(Follower::take_skip_pause)
        {
            return;
        }
        if let Some(b) = &mut self.backoff {
            tokio::time::sleep(b.next_delay()).await;
        }
    }

    /// After a failure, before [`Connection::reorder_pending`]: takes, in order, the events
    /// rumqttc queued on the dead connection up to its last `OutgoingPublish`. rumqttc numbers
    /// a QoS 1/2 publish and queues that event before writing it; when the write fails the
    /// publish goes to the resend list while its event would only be handed out after the
    /// next CONNACK. The caller accounts for them now, so that every numbered publish to
    /// resend is known; events after the last `OutgoingPublish` stay queued.
    pub fn take_queued_publishes(&mut self) -> Vec<Event> {
        macro_rules! take {
            ($el:expr, $Event:path, $convert:expr) => {{
                use $Event as E;
                let events = &mut $el.state.events;
                let last = events
                    .iter()
                    .rposition(|e| matches!(e, E::Outgoing(Outgoing::Publish(_))));
                let upto = last.map_or(0, |i| i + 1);
                events.drain(..upto).map($convert).collect()
            }};
        }
        match &mut self.event_loop {
            Loop::V4(el) => take!(el, rumqttc::Event, event_v4),
            Loop::V5(el) => take!(el, rumqttc::v5::Event, event_v5),
        }
    }

    /// After a failure, before polling again: reorders the QoS 1/2 publishes rumqttc will
    /// resend by `first_sent(packet id)` (it resends in packet-id order, which breaks publish
    /// order once ids wrap; unnumbered ones get id 0). Returns how many had no packet id
    /// yet (they were never written).
    pub fn reorder_pending(&mut self, first_sent: impl Fn(u16) -> u64) -> usize {
        macro_rules! reorder {
            ($el:expr, $Request:path, $qos0:expr) => {{
                use $Request as Request;
                let pending: Vec<Request> = $el.pending.drain(..).collect();
                let (mut publishes, others): (Vec<Request>, Vec<Request>) = pending
                    .into_iter()
                    .partition(|r| matches!(r, Request::Publish(p) if p.qos != $qos0));
                let unnumbered = publishes
                    .iter()
                    .filter(|r| matches!(r, Request::Publish(p) if p.pkid == 0))
                    .count();
                publishes.sort_by_key(|r| match r {
                    Request::Publish(p) if p.pkid != 0 => first_sent(p.pkid),
                    _ => u64::MAX,
                });
                $el.pending.extend(others);
                $el.pending.extend(publishes);
                unnumbered
            }};
        }
        match &mut self.event_loop {
            Loop::V4(el) => reorder!(el, rumqttc::Request, rumqttc::QoS::AtMostOnce),
            Loop::V5(el) => reorder!(el, rumqttc::v5::Request, QoS::AtMostOnce),
        }
    }

    /// After a failure, before polling again: makes rumqttc expect a PUBREL for incoming
    /// QoS 2 `pkid` (it forgets them at a disconnect, and the broker's PUBREL on a resumed
    /// session would then end the connection as unsolicited).
    pub fn expect_pubrel(&mut self, pkid: u16) {
        match &mut self.event_loop {
            Loop::V4(el) => {
                let mut fake = rumqttc::Publish::new("", rumqttc::QoS::ExactlyOnce, Vec::new());
                fake.pkid = pkid;
                let packet = rumqttc::Packet::Publish(fake);
                if el.state.handle_incoming_packet(packet).is_ok() {
                    el.state.events.pop_back();
                }
            }
            Loop::V5(el) => {
                let mut fake = p5::Publish::new("", QoS::ExactlyOnce, Vec::new(), None);
                fake.pkid = pkid;
                let packet = p5::Packet::Publish(fake);
                if el.state.handle_incoming_packet(packet).is_ok() {
                    el.state.events.pop_back();
                }
            }
        }
    }

    /// The 3.1.1 event loop, for tests that drive rumqttc's state by hand (no network).
    /// Never poll it: [`Connection::poll`] does.
    #[doc(hidden)]
    pub fn v4_loop(&mut self) -> Option<&mut rumqttc::EventLoop> {
        match &mut self.event_loop {
            Loop::V4(el) => Some(el),
            Loop::V5(_) => None,
        }
    }

    /// The 5.0 event loop, for tests that drive rumqttc's state by hand (no network).
    /// Never poll it: [`Connection::poll`] does.
    #[doc(hidden)]
    pub fn v5_loop(&mut self) -> Option<&mut rumqttc::v5::EventLoop> {
        match &mut self.event_loop {
            Loop::V5(el) => Some(el),
            Loop::V4(_) => None,
        }
    }

    /// The next event rumqttc already queued, without touching the network (for tests that
    /// drive its state by hand; [`Connection::poll`] hands these out first).
    #[doc(hidden)]
    pub fn next_queued(&mut self) -> Option<Event> {
        match &mut self.event_loop {
            Loop::V4(el) => el.state.events.pop_front().map(event_v4),
            Loop::V5(el) => el.state.events.pop_front().map(event_v5),
        }
    }
}

fn outgoing(o: Outgoing) -> Event {
    match o {
        Outgoing::Publish(pkid) => Event::OutgoingPublish(pkid),
        Outgoing::PubRec(pkid) => Event::OutgoingPubRec(pkid),
        Outgoing::Subscribe(pkid) => Event::OutgoingSubscribe(pkid),
        Outgoing::Disconnect => Event::OutgoingDisconnect,
        _ => Event::Other,
    }
}

fn event_v4(event: rumqttc::Event) -> Event {
    use rumqttc::Packet;
    match event {
        rumqttc::Event::Incoming(packet) => match packet {
            Packet::ConnAck(ack) => Event::ConnAck {
                session_present: ack.session_present,
            },
            Packet::Publish(p) => Event::Publish(Box::new(publish_from_v4(p))),
            // 3.1.1 acknowledgements carry no reason code: an ack is a success.
            Packet::PubAck(a) => Event::PubAck {
                pkid: a.pkid,
                reason: 0,
            },
            Packet::PubRec(r) => Event::PubRec {
                pkid: r.pkid,
                reason: 0,
            },
            Packet::PubComp(c) => Event::PubComp {
                pkid: c.pkid,
                reason: 0,
            },
            Packet::PubRel(r) => Event::PubRel { pkid: r.pkid },
            Packet::SubAck(a) => Event::SubAck {
                pkid: a.pkid,
                codes: a.return_codes.iter().map(suback_v4).collect(),
                user_properties: Vec::new(),
            },
            _ => Event::Other,
        },
        rumqttc::Event::Outgoing(o) => outgoing(o),
    }
}

fn event_v5(event: rumqttc::v5::Event) -> Event {
    use p5::Packet;
    match event {
        rumqttc::v5::Event::Incoming(packet) => match packet {
            Packet::ConnAck(ack) => Event::ConnAck {
                session_present: ack.session_present,
            },
            Packet::Publish(p) => Event::Publish(Box::new(p)),
            Packet::PubAck(a) => Event::PubAck {
                pkid: a.pkid,
                reason: puback_reason(&a.reason),
            },
            Packet::PubRec(r) => Event::PubRec {
                pkid: r.pkid,
                reason: pubrec_reason(&r.reason),
            },
            Packet::PubComp(c) => Event::PubComp {
                pkid: c.pkid,
                reason: pubcomp_reason(&c.reason),
            },
            Packet::PubRel(r) => Event::PubRel { pkid: r.pkid },
            Packet::SubAck(a) => Event::SubAck {
                pkid: a.pkid,
                codes: a.return_codes.iter().map(suback_v5).collect(),
                user_properties: a.properties.map(|p| p.user_properties).unwrap_or_default(),
            },
            _ => Event::Other,
        },
        rumqttc::v5::Event::Outgoing(o) => outgoing(o),
    }
}

fn failure_v4(error: rumqttc::ConnectionError) -> Failure {
    let kind = match &error {
        rumqttc::ConnectionError::ConnectionRefused(code) => {
            FailureKind::Refused(connack_v4(*code))
        }
        _ => FailureKind::Lost,
    };
    Failure {
        kind,
        message: error.to_string(),
    }
}

fn failure_v5(error: rumqttc::v5::ConnectionError) -> Failure {
    use rumqttc::v5::mqttbytes::v5::{ConnectReturnCode, DisconnectReasonCode};
    use rumqttc::v5::{ConnectionError, StateError};
    let kind = match &error {
        ConnectionError::ConnectionRefused(
            code @ (ConnectReturnCode::UseAnotherServer | ConnectReturnCode::ServerMoved),
        ) => FailureKind::Redirected(connack_v5(*code)),
        ConnectionError::ConnectionRefused(code) => FailureKind::Refused(connack_v5(*code)),
        ConnectionError::MqttState(StateError::ServerDisconnect {
            reason_code:
                reason_code @ (DisconnectReasonCode::UseAnotherServer
                | DisconnectReasonCode::ServerMoved),
            ..
        }) => FailureKind::Redirected(disconnect_reason(*reason_code)),
        ConnectionError::MqttState(StateError::ServerDisconnect {
            reason_code,
            reason_string,
        }) => FailureKind::Disconnected(match reason_string {
            Some(text) => format!("{} ({text})", disconnect_reason(*reason_code)),
            None => disconnect_reason(*reason_code),
        }),
        _ => FailureKind::Lost,
    };
    Failure {
        kind,
        message: error.to_string(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use rumqttc::v5::Request;

    use super::*;
    use crate::adapter::{Options, Version};

    #[test]
    fn queued_events_are_taken_in_order_up_to_the_last_outgoing_publish() {
        let (_client, mut conn) = Options::new(Version::V5, "id", "127.0.0.1", 1883).connect();
        let el = conn.v5_loop().expect("a 5.0 connection");
        let publish = |payload: &'static str| {
            Request::Publish(p5::Publish::new("t", QoS::AtLeastOnce, payload, None))
        };
        el.state.handle_outgoing_packet(publish("a")).unwrap();
        el.state.events.clear();
        // The connection breaks with these queued: an ack, a publish numbered (its write
        // failed), then a ping.
        let puback = p5::Packet::PubAck(p5::PubAck::new(1, None));
        el.state.handle_incoming_packet(puback).unwrap();
        el.state.handle_outgoing_packet(publish("b")).unwrap();
        el.state.handle_outgoing_packet(Request::PingReq).unwrap();
        assert_eq!(
            conn.take_queued_publishes(),
            [
                Event::PubAck { pkid: 1, reason: 0 },
                Event::OutgoingPublish(2)
            ]
        );
        assert_eq!(conn.next_queued(), Some(Event::Other));
        assert_eq!(conn.next_queued(), None);
        assert_eq!(conn.take_queued_publishes(), []);
    }
}
