//! The fields of a [`Session`] that most sessions never set, kept together in one box
//! that exists only while one of them is set.
//!
//! An idle connected session has no retained replay pending, no limits of its own, no
//! expiry or will timer, no back-pressure and no subscription change waiting for the
//! journal, so it pays one pointer for all of them. This module owns
//! only their storage (allocating on the first set, freeing when the last is cleared);
//! what they mean stays with `session.rs` and the router.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use super::session::{Delivery, Pressure, QueueLimits, Session};

/// Rarely set session fields (see the module documentation).
#[derive(Debug, Default)]
pub struct Rare {
    /// Retained messages still to send for a new (or newly activated) subscription. Fed
    /// to the connection as it drains, so a subscription matching 100,000 retained
    /// messages gets all of them without flooding the outbox or the queue.
    replay: VecDeque<Delivery>,
    /// Queue limits of this session when they differ from the broker's: an embedded
    /// bridge's local session takes its bridge's `[queue]` limits, so that messages on
    /// their way out are not dropped here while the bridge waits for a far side.
    own_limits: Option<QueueLimits>,
    /// When the session expires, once disconnected.
    expires_at: Option<Instant>,
    /// When the pending delayed will is due, once disconnected.
    will_at: Option<Instant>,
    /// Back-pressure bookkeeping, present only while it matters (boxed: the other
    /// fields are set far more often, as for every offline session).
    pressure: Option<Box<Pressure>>,
    /// Filters whose subscription was added, changed or removed since the last batch:
    /// each becomes one put or delete of its own row, built from the state at the end
    /// of the batch, so a subscribe and unsubscribe of one filter cost one record
    /// (present only between a change and its batch; boxed as `pressure` is).
    #[expect(
        clippy::box_collection,
        reason = "boxed so that an empty one costs a pointer, not an empty map's 48 bytes"
    )]
    dirty_filters: Option<Box<HashSet<Arc<str>>>>,
}

impl Rare {
    fn is_empty(&self) -> bool {
        self.replay.is_empty()
            && self.own_limits.is_none()
            && self.expires_at.is_none()
            && self.will_at.is_none()
            && self.pressure.is_none()
            && self.dirty_filters.is_none()
    }
}

impl Session {
    /// Sets one rare field: allocates the box for `Some`, frees it when `None` leaves
    /// nothing in it.
    fn set_rare<T>(&mut self, value: Option<T>, field: impl FnOnce(&mut Rare) -> &mut Option<T>) {
        match (value, self.rare.as_mut()) {
            (Some(v), _) => *field(self.rare.get_or_insert_default()) = Some(v),
            (None, Some(r)) => {
                *field(r) = None;
                self.tidy_rare();
            }
            (None, None) => {}
        }
    }

    /// Frees the box once nothing is left in it.
    fn tidy_rare(&mut self) {
        if self.rare.as_ref().is_some_and(|r| r.is_empty()) {
            self.rare = None;
        }
    }

    /// When the session expires, once disconnected.
    pub fn expires_at(&self) -> Option<Instant> {
        self.rare.as_ref().and_then(|r| r.expires_at)
    }

    /// Sets (or clears) when the session expires.
    pub fn set_expires_at(&mut self, at: Option<Instant>) {
        self.set_rare(at, |r| &mut r.expires_at);
    }

    /// When the pending delayed will is due, once disconnected.
    pub fn will_at(&self) -> Option<Instant> {
        self.rare.as_ref().and_then(|r| r.will_at)
    }

    /// Sets (or clears) when the delayed will is due.
    pub fn set_will_at(&mut self, at: Option<Instant>) {
        self.set_rare(at, |r| &mut r.will_at);
    }

    /// The session's own queue limits, when they differ from the broker's.
    pub fn own_limits(&self) -> Option<&QueueLimits> {
        self.rare.as_ref().and_then(|r| r.own_limits.as_ref())
    }

    /// Sets (or clears) the session's own queue limits.
    pub fn set_own_limits(&mut self, limits: Option<QueueLimits>) {
        self.set_rare(limits, |r| &mut r.own_limits);
    }

    /// Whether retained messages are waiting to be replayed.
    pub fn replay_pending(&self) -> bool {
        self.rare.as_ref().is_some_and(|r| !r.replay.is_empty())
    }

    /// The next retained message to replay, if any.
    pub fn replay_front(&self) -> Option<&Delivery> {
        self.rare.as_ref().and_then(|r| r.replay.front())
    }

    /// Takes the next retained message to replay.
    pub fn replay_pop(&mut self) -> Option<Delivery> {
        let d = self.rare.as_mut().and_then(|r| r.replay.pop_front());
        if d.is_none() || !self.replay_pending() {
            self.tidy_rare();
        }
        d
    }

    /// Adds a retained message to replay.
    pub fn replay_push(&mut self, d: Delivery) {
        self.rare.get_or_insert_default().replay.push_back(d);
    }

    /// Back-pressure bookkeeping, if any.
    pub fn pressure(&self) -> Option<&Pressure> {
        self.rare.as_ref().and_then(|r| r.pressure.as_deref())
    }

    /// Back-pressure bookkeeping, if any, to change.
    pub fn pressure_mut(&mut self) -> Option<&mut Pressure> {
        self.rare.as_mut().and_then(|r| r.pressure.as_deref_mut())
    }

    /// Back-pressure bookkeeping, allocated if there was none.
    pub fn pressure_or_default(&mut self) -> &mut Pressure {
        self.rare
            .get_or_insert_default()
            .pressure
            .get_or_insert_default()
    }

    /// Drops the back-pressure bookkeeping.
    pub fn clear_pressure(&mut self) {
        self.set_rare(None, |r| &mut r.pressure);
    }

    /// Filters changed since the last journal batch, if any.
    #[cfg(test)]
    pub fn dirty_filters(&self) -> Option<&HashSet<Arc<str>>> {
        self.rare.as_ref().and_then(|r| r.dirty_filters.as_deref())
    }

    /// Filters changed since the last journal batch, to add to.
    pub fn dirty_filters_mut(&mut self) -> &mut HashSet<Arc<str>> {
        self.rare
            .get_or_insert_default()
            .dirty_filters
            .get_or_insert_default()
    }

    /// Takes the filters changed since the last journal batch.
    pub fn take_dirty_filters(&mut self) -> HashSet<Arc<str>> {
        let taken = self.rare.as_mut().and_then(|r| r.dirty_filters.take());
        self.tidy_rare();
        taken.map(|f| *f).unwrap_or_default()
    }

    /// Forgets the filters changed since the last journal batch.
    pub fn clear_dirty_filters(&mut self) {
        drop(self.take_dirty_filters());
    }

    /// Forgets every retained message still to replay.
    pub fn replay_clear(&mut self) {
        if let Some(r) = self.rare.as_mut() {
            r.replay = VecDeque::new();
            self.tidy_rare();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_session_stays_small() {
        // One per session in the router's slab, connected or not: box what few sessions
        // set (into `Rare`, or a box of its own) rather than let it grow.
        let size = std::mem::size_of::<Session>();
        assert!(
            size <= 192,
            "Session is {size} bytes: box rarely set fields (into `Rare`)"
        );
    }

    #[test]
    fn the_box_exists_only_while_a_rare_field_is_set() {
        let mut s = Session::new("c".into(), 0, 10);
        assert!(s.rare.is_none());
        s.set_expires_at(None);
        assert!(s.rare.is_none(), "clearing allocates nothing");
        let at = Instant::now() + Duration::from_secs(5);
        s.set_expires_at(Some(at));
        s.set_will_at(Some(at));
        assert_eq!((s.expires_at(), s.will_at()), (Some(at), Some(at)));
        s.set_expires_at(None);
        assert!(s.rare.is_some(), "the will timer is still set");
        s.set_will_at(None);
        assert!(s.rare.is_none());
        assert_eq!((s.expires_at(), s.will_at()), (None, None));
    }

    #[test]
    fn draining_the_replay_frees_the_box() {
        let mut s = Session::new("c".into(), 0, 10);
        let msg = std::sync::Arc::new(crate::message::Message {
            topic: canopy_proto::TopicName::new("a").unwrap(),
            qos: canopy_proto::QoS::AtMostOnce,
            retain: true,
            properties: Default::default(),
            payload: bytes::Bytes::from_static(b"x"),
            expires_at: None,
        });
        for _ in 0..2 {
            s.replay_push(Delivery {
                seq: 0,
                msg: msg.clone(),
                qos: canopy_proto::QoS::AtMostOnce,
                retain: true,
                sub_ids: Vec::new(),
            });
        }
        assert!(s.replay_pending());
        assert!(s.replay_pop().is_some());
        assert!(s.rare.is_some());
        assert!(s.replay_pop().is_some());
        assert!(!s.replay_pending());
        assert!(s.rare.is_none());
        assert!(s.replay_pop().is_none());
    }
}
