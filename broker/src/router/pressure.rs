//! Back-pressure from subscriber to publisher (docs/flow-control.md).
//!
//! When a QoS 1/2 message would not fit the queue of an *online* subscriber, the
//! subscriber keeps it and the publisher's PUBACK/PUBREC is held back ("gated") until
//! every queue it overflowed is back within its limits. A publisher with Receive Maximum
//! acknowledgements outstanding stops being read by its connection, so the publisher is
//! slowed, never acknowledged-and-discarded. A subscriber that stays full for
//! `slow_consumer_timeout` is cut off (5.0: DISCONNECT 0x97), its session becomes an
//! offline one (trimmed by `queue_full`, drops counted) and its gates open.
//!
//! Owns the gates and holds in `Session::pressure` and the slow-consumer timers. Never
//! reorders acknowledgements of one publisher [MQTT-4.6.0-2].

use std::time::Instant;

use canopy_proto::{Packet, ReasonCode};

use super::session::{Gate, Pressure};
use super::{Router, Timer};
use crate::metrics::Metrics;
use crate::outbox::Outgoing;

impl Router {
    /// Subscriber `sub` took a message beyond its limits while online: remember it for
    /// the publisher's acknowledgement, and start its slow-consumer clock.
    pub(super) fn overflowed(&mut self, now: Instant, sub: usize) {
        self.overflow.push(sub);
        let timeout = self.slow_consumer_timeout;
        let Some(s) = self.sessions.get_mut(sub) else {
            return;
        };
        let conn = s.conn.as_ref().map_or(0, |c| c.id);
        let p = s.pressure_or_default();
        if p.full_since.is_none() {
            p.full_since = Some(now);
            self.timers
                .insert((now + timeout, Timer::SlowConsumer { session: sub, conn }));
        }
    }

    /// Holds or queues the acknowledgement `packet` of publisher `key`: gated behind the
    /// subscribers the message overflowed, and behind the publisher's earlier gates.
    pub(super) fn hold_ack(&mut self, key: usize, conn: u64, packet: Packet) {
        let mut overflow = std::mem::take(&mut self.overflow);
        overflow.sort_unstable();
        overflow.dedup();
        let behind = self
            .sessions
            .get(key)
            .and_then(|s| s.pressure())
            .is_some_and(|p| !p.gates.is_empty());
        if overflow.is_empty() && !behind {
            self.held_acks.push((key, conn, packet));
            self.overflow = overflow;
            return;
        }
        self.next_gate += 1;
        let id = self.next_gate;
        let mut waiting = 0;
        for &sub in &overflow {
            if let Some(p) = self.sessions.get_mut(sub).and_then(|s| s.pressure_mut()) {
                p.holds.push((key, id));
                waiting += 1;
            }
        }
        if let Some(s) = self.sessions.get_mut(key) {
            let p = s.pressure_or_default();
            p.gates.push_back(Gate {
                id,
                conn,
                packet,
                waiting,
            });
            Metrics::add(&self.metrics.publishers_held, 1);
        }
        overflow.clear();
        self.overflow = overflow;
        self.open_gates(key);
    }

    /// Subscriber `sub` is back within its limits, or gone: every gate it held opens
    /// by one, and publishers whose first gates are free get their acknowledgements.
    pub(super) fn release_holds(&mut self, sub: usize) {
        let Some(p) = self.sessions.get_mut(sub).and_then(|s| s.pressure_mut()) else {
            return;
        };
        p.full_since = None;
        let holds = std::mem::take(&mut p.holds);
        for &(publisher, id) in &holds {
            if let Some(g) = self
                .sessions
                .get_mut(publisher)
                .and_then(|s| s.pressure_mut())
                .and_then(|p| p.gates.iter_mut().find(|g| g.id == id))
            {
                g.waiting = g.waiting.saturating_sub(1);
            }
        }
        for &(publisher, _) in &holds {
            self.open_gates(publisher);
        }
        self.tidy_pressure(sub);
    }

    /// Releases the publisher's acknowledgements from the front while they are free.
    fn open_gates(&mut self, key: usize) {
        let Some(p) = self.sessions.get_mut(key).and_then(|s| s.pressure_mut()) else {
            return;
        };
        while p.gates.front().is_some_and(|g| g.waiting == 0) {
            if let Some(g) = p.gates.pop_front() {
                self.held_acks.push((key, g.conn, g.packet));
            }
        }
        self.tidy_pressure(key);
    }

    fn tidy_pressure(&mut self, key: usize) {
        if let Some(s) = self.sessions.get_mut(key)
            && s.pressure().is_some_and(Pressure::is_idle)
        {
            s.clear_pressure();
        }
    }

    /// After a subscriber's queue shrank: if it is within its limits again, its gates open.
    pub(super) fn drained(&mut self, key: usize) {
        let Some(s) = self.sessions.get(key) else {
            return;
        };
        if s.pressure()
            .is_some_and(|p| !p.holds.is_empty() || p.full_since.is_some())
            && s.within_limits(&self.limits)
        {
            self.release_holds(key);
        }
    }

    /// A subscriber went offline (or ended): its queue follows the offline rules and the
    /// publishers it held go on.
    pub(super) fn gone_offline(&mut self, key: usize) {
        if let Some(s) = self.sessions.get_mut(key)
            && s.pressure().is_some()
        {
            let dropped = s.trim(&self.limits, &mut self.journal);
            Metrics::add(&self.metrics.messages_dropped, dropped as u64);
            self.release_holds(key);
        }
    }

    /// The slow-consumer timer of `key` ran out: cut it off if it is still full on the
    /// same connection.
    pub(super) fn slow_consumer(&mut self, now: Instant, key: usize, conn: u64) {
        let timeout = self.slow_consumer_timeout;
        let Some(s) = self.sessions.get(key) else {
            return;
        };
        let still = s.conn.as_ref().is_some_and(|c| c.id == conn)
            && s.pressure()
                .and_then(|p| p.full_since)
                .is_some_and(|t| now.saturating_duration_since(t) >= timeout);
        if !still {
            return;
        }
        tracing::info!(client_id = %s.client_id, queued = s.queue.len(), "slow consumer disconnected");
        Metrics::add(&self.metrics.slow_consumers, 1);
        if let Some(c) = &s.conn {
            c.outbox.push(Outgoing::Disconnect(
                ReasonCode::QUOTA_EXCEEDED,
                Some("slow consumer: queue full".into()),
            ));
        }
        self.on_disconnected(now, key, true, None, "slow consumer");
    }
}

impl Pressure {
    /// Whether nothing is held, gated or timed.
    pub fn is_idle(&self) -> bool {
        self.gates.is_empty() && self.holds.is_empty() && self.full_since.is_none()
    }
}
