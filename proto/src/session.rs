//! Per-connection MQTT session state that does not depend on IO or a clock of its own.
//!
//! Owns packet-identifier allocation and the outgoing in-flight window (QoS 1 and 2
//! deliveries awaiting acknowledgement, in send order), the set of incoming QoS 2 packet
//! identifiers awaiting PUBREL, and the keep-alive grace rule (the broker's keep-alive
//! wheel applies it to instants of its own). It never stores payload semantics beyond an opaque `T` and never performs IO: the
//! broker's router and test drivers feed it events and read decisions back.

use std::collections::{HashSet, VecDeque};
use std::time::Duration;

/// Where an outgoing QoS 1/2 delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutState {
    /// QoS 1 sent, waiting for PUBACK.
    AwaitPubAck,
    /// QoS 2 sent, waiting for PUBREC.
    AwaitPubRec,
    /// QoS 2 PUBREL sent, waiting for PUBCOMP.
    AwaitPubComp,
}

/// One in-flight outgoing delivery.
#[derive(Debug, Clone)]
pub struct InFlight<T> {
    /// Packet identifier in use for it.
    pub pkid: u16,
    /// Acknowledgement state.
    pub state: OutState,
    /// The caller's data (the message).
    pub item: T,
}

/// What an acknowledgement from the peer did to the window.
#[derive(Debug, PartialEq, Eq)]
pub enum AckOutcome<T> {
    /// The delivery completed (PUBACK or PUBCOMP) and left the window.
    Completed(T),
    /// PUBREC accepted: send PUBREL for this packet id [MQTT-4.3.3-4].
    SendPubRel,
    /// No delivery in the expected state has this packet id.
    Unknown,
}

/// The outgoing in-flight window of one session: at most `capacity` deliveries without
/// acknowledgement (the peer's Receive Maximum, [MQTT-4.9.0-2]), kept in send order so
/// that they can be resent in order with DUP after a reconnect [MQTT-4.4.0-1].
#[derive(Debug)]
pub struct Outgoing<T> {
    window: VecDeque<InFlight<T>>,
    next_pkid: u16,
    /// `u16` as Receive Maximum is: the window is one per session in a broker.
    capacity: u16,
}

impl<T> Outgoing<T> {
    /// An empty window admitting `capacity` (at least one) unacknowledged deliveries.
    pub fn new(capacity: u16) -> Self {
        Outgoing {
            window: VecDeque::new(),
            next_pkid: 1,
            capacity: capacity.max(1),
        }
    }

    /// Changes the capacity (a reconnect may bring a new Receive Maximum). Deliveries
    /// already in flight stay.
    pub fn set_capacity(&mut self, capacity: u16) {
        self.capacity = capacity.max(1);
    }

    /// Whether one more delivery may be sent now.
    pub fn has_room(&self) -> bool {
        self.window.len() < usize::from(self.capacity)
    }

    /// Number of deliveries in flight.
    pub fn len(&self) -> usize {
        self.window.len()
    }

    /// Whether nothing is in flight.
    pub fn is_empty(&self) -> bool {
        self.window.is_empty()
    }

    /// Puts a delivery in flight under a fresh packet identifier, unused by any other
    /// delivery in flight [MQTT-2.2.1-3]. Gives `item` back when the window is full.
    pub fn push(&mut self, qos2: bool, item: T) -> Result<u16, T> {
        if !self.has_room() || self.window.len() >= usize::from(u16::MAX) {
            return Err(item);
        }
        let pkid = self.alloc_pkid();
        let state = if qos2 {
            OutState::AwaitPubRec
        } else {
            OutState::AwaitPubAck
        };
        self.window.push_back(InFlight { pkid, state, item });
        Ok(pkid)
    }

    /// Restores a delivery that was in flight before (after a restart), keeping its id.
    pub fn restore(&mut self, pkid: u16, state: OutState, item: T) {
        self.window.push_back(InFlight { pkid, state, item });
        if pkid >= self.next_pkid {
            self.next_pkid = pkid.checked_add(1).unwrap_or(1);
        }
    }

    fn alloc_pkid(&mut self) -> u16 {
        loop {
            let id = self.next_pkid;
            self.next_pkid = if id == u16::MAX { 1 } else { id + 1 };
            if !self.window.iter().any(|f| f.pkid == id) {
                return id;
            }
        }
    }

    fn position(&self, pkid: u16, state: OutState) -> Option<usize> {
        self.window
            .iter()
            .position(|f| f.pkid == pkid && f.state == state)
    }

    /// Handles PUBACK for a QoS 1 delivery.
    pub fn on_puback(&mut self, pkid: u16) -> AckOutcome<T> {
        match self
            .position(pkid, OutState::AwaitPubAck)
            .and_then(|i| self.window.remove(i))
        {
            Some(f) => AckOutcome::Completed(f.item),
            None => AckOutcome::Unknown,
        }
    }

    /// Handles PUBREC for a QoS 2 delivery. With `failed` (a 5.0 reason code of 0x80 or
    /// more) the delivery ends there: no PUBREL follows an error PUBREC (5.0 section 4.3.3).
    pub fn on_pubrec(&mut self, pkid: u16, failed: bool) -> AckOutcome<T> {
        if self.position(pkid, OutState::AwaitPubComp).is_some() {
            // A repeated PUBREC: answer it with PUBREL again.
            return AckOutcome::SendPubRel;
        }
        let Some(i) = self.position(pkid, OutState::AwaitPubRec) else {
            return AckOutcome::Unknown;
        };
        if failed {
            return match self.window.remove(i) {
                Some(f) => AckOutcome::Completed(f.item),
                None => AckOutcome::Unknown,
            };
        }
        if let Some(f) = self.window.get_mut(i) {
            f.state = OutState::AwaitPubComp;
        }
        AckOutcome::SendPubRel
    }

    /// Handles PUBCOMP for a QoS 2 delivery.
    pub fn on_pubcomp(&mut self, pkid: u16) -> AckOutcome<T> {
        match self
            .position(pkid, OutState::AwaitPubComp)
            .and_then(|i| self.window.remove(i))
        {
            Some(f) => AckOutcome::Completed(f.item),
            None => AckOutcome::Unknown,
        }
    }

    /// The deliveries in flight, oldest first (for resending after a reconnect).
    pub fn iter(&self) -> impl Iterator<Item = &InFlight<T>> {
        self.window.iter()
    }

    /// Drops every delivery in flight, returning them oldest first.
    pub fn drain(&mut self) -> impl Iterator<Item = InFlight<T>> + '_ {
        self.window.drain(..)
    }
}

/// Incoming QoS 2 packet identifiers for which PUBREC was sent and PUBREL is awaited.
/// A PUBLISH arriving again with one of them is not delivered again [MQTT-4.3.3-10].
#[derive(Debug, Default, Clone)]
pub struct IncomingQos2 {
    /// Boxed, allocated at the first QoS 2 PUBLISH: most sessions never receive one, and a
    /// broker keeps one of these per session.
    #[expect(
        clippy::box_collection,
        reason = "boxed so that an empty one costs a pointer, not an empty map's 48 bytes"
    )]
    pending: Option<Box<HashSet<u16>>>,
}

impl IncomingQos2 {
    /// Records a QoS 2 PUBLISH. Returns `true` when it is new (to be delivered) and
    /// `false` for a duplicate of one still awaiting PUBREL.
    pub fn on_publish(&mut self, pkid: u16) -> bool {
        self.pending.get_or_insert_default().insert(pkid)
    }

    /// Handles PUBREL: returns whether the packet identifier was known.
    pub fn on_pubrel(&mut self, pkid: u16) -> bool {
        self.pending.as_mut().is_some_and(|p| p.remove(&pkid))
    }

    /// Number of QoS 2 messages awaiting PUBREL.
    pub fn len(&self) -> usize {
        self.pending.as_ref().map_or(0, |p| p.len())
    }

    /// Whether none is awaiting PUBREL.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The packet identifiers awaiting PUBREL (for persistence).
    pub fn iter(&self) -> impl Iterator<Item = u16> + '_ {
        self.pending.iter().flat_map(|p| p.iter().copied())
    }
}

/// How long a connection with a keep alive of `secs` seconds may stay silent before the
/// server closes it: one and a half times the interval [MQTT-3.1.2-24]; `None` for 0,
/// which turns the mechanism off [MQTT-3.1.2-22].
pub fn keep_alive_grace(secs: u16) -> Option<Duration> {
    (secs > 0).then(|| Duration::from_millis(u64::from(secs) * 1500))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_refuses_beyond_receive_maximum() {
        // [MQTT-4.9.0-2]
        let mut w = Outgoing::new(2);
        assert_eq!(w.push(false, "a"), Ok(1));
        assert_eq!(w.push(true, "b"), Ok(2));
        assert_eq!(w.push(false, "c"), Err("c"));
        assert_eq!(w.on_puback(1), AckOutcome::Completed("a"));
        assert!(w.has_room());
    }

    #[test]
    fn packet_ids_in_flight_are_never_reused() {
        // [MQTT-2.2.1-3]
        let mut w = Outgoing::new(10);
        w.restore(65535, OutState::AwaitPubAck, 0);
        w.restore(1, OutState::AwaitPubAck, 0);
        let id = w.push(false, 1).unwrap();
        assert_eq!(id, 2);
    }

    #[test]
    fn qos2_flow_goes_through_pubrec_then_pubcomp() {
        // [MQTT-4.3.3-4]
        let mut w = Outgoing::new(1);
        let id = w.push(true, "m").unwrap();
        assert_eq!(w.on_puback(id), AckOutcome::Unknown);
        assert_eq!(w.on_pubcomp(id), AckOutcome::Unknown);
        assert_eq!(w.on_pubrec(id, false), AckOutcome::SendPubRel);
        assert_eq!(w.on_pubrec(id, false), AckOutcome::SendPubRel);
        assert_eq!(w.on_pubcomp(id), AckOutcome::Completed("m"));
        assert!(w.is_empty());
    }

    #[test]
    fn failed_pubrec_ends_the_delivery() {
        let mut w = Outgoing::new(1);
        let id = w.push(true, "m").unwrap();
        assert_eq!(w.on_pubrec(id, true), AckOutcome::Completed("m"));
    }

    #[test]
    fn resend_order_is_send_order() {
        // [MQTT-4.4.0-1]
        let mut w = Outgoing::new(5);
        for i in 0..5 {
            w.push(i % 2 == 0, i).unwrap();
        }
        w.on_pubrec(1, false);
        let items: Vec<_> = w.iter().map(|f| f.item).collect();
        assert_eq!(items, vec![0, 1, 2, 3, 4]);
    }

    #[test]
    fn duplicate_qos2_publish_is_not_delivered_twice() {
        // [MQTT-4.3.3-10]
        let mut q = IncomingQos2::default();
        assert!(q.on_publish(7));
        assert!(!q.on_publish(7));
        assert!(q.on_pubrel(7));
        assert!(!q.on_pubrel(7));
        assert!(q.on_publish(7));
    }

    #[test]
    fn keep_alive_grace_is_one_and_a_half_intervals_and_zero_turns_it_off() {
        // [MQTT-3.1.2-24], [MQTT-3.1.2-22]
        assert_eq!(keep_alive_grace(2), Some(Duration::from_millis(3000)));
        assert_eq!(
            keep_alive_grace(65535),
            Some(Duration::from_millis(98_302_500))
        );
        assert_eq!(keep_alive_grace(0), None);
    }
}
