//! Ending a session with many subscriptions across router turns (docs/flow-control.md,
//! "Big work in small turns"): taking 100,000 subscriptions out of the matching index at
//! once would stall every other client for the time it takes. A session with more than
//! [`LARGE`] subscriptions ends at once in every way a client can see (its client id is
//! free, its will and `$status` are published, the store forgets it, nothing more is
//! delivered to it), while its subscriptions leave the index [`CHUNK`] at a time, one
//! chunk per router turn (the driver lets other tasks run between chunks); its slot is
//! freed after the last, so the index never names a session that reused the slot.
//!
//! Owns the queue of such sessions. Never delivers to, journals or publishes for a session
//! in it.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use super::Router;

/// Subscriptions taken out of the index per turn (about a millisecond's work in a release
/// build); sessions with at most [`LARGE`] end in one turn.
pub(super) const CHUNK: usize = 1024;

/// Sessions with more subscriptions than this end across turns.
pub(super) const LARGE: usize = 4096;

/// Sessions being taken apart, oldest first, each with the filters it still has in the
/// index (collected once: taking them from its map chunk by chunk would rescan it).
#[derive(Debug, Default)]
pub(super) struct Ending {
    sessions: VecDeque<(usize, Vec<Arc<str>>)>,
    due: Option<Instant>,
}

impl Ending {
    /// When the next chunk is due (at once while any session waits).
    pub(super) fn due(&self) -> Option<Instant> {
        self.due
    }
}

impl Router {
    /// Whether sessions are still being taken apart.
    pub(super) fn ending_pending(&self) -> bool {
        !self.ending.sessions.is_empty()
    }

    /// Session `key` has ended but still has its subscriptions in the index: they leave
    /// from the next turn on. The caller has made it unreachable (no client id, no
    /// expiry, nothing to journal) and marked it `ending`.
    pub(super) fn end_later(&mut self, now: Instant, key: usize) {
        let filters = self
            .sessions
            .get(key)
            .map(|s| s.subscriptions.keys().cloned().collect())
            .unwrap_or_default();
        self.ending.sessions.push_back((key, filters));
        self.ending.due = Some(now);
    }

    /// Takes at most [`CHUNK`] subscriptions of ending sessions out of the index; frees
    /// each session's slot once it has none left.
    pub(super) fn continue_ending(&mut self, now: Instant) {
        if self.ending.due.is_none_or(|t| t > now) {
            return;
        }
        let mut budget = CHUNK;
        while budget > 0 {
            let Some((key, filters)) = self.ending.sessions.front_mut() else {
                break;
            };
            let key = *key;
            let take = budget.min(filters.len());
            let chunk = filters.split_off(filters.len() - take);
            let done = filters.is_empty();
            budget -= take.max(1);
            for f in &chunk {
                self.remove_subscription(key, f);
            }
            if done {
                if self.sessions.get(key).is_some_and(|s| s.ending) {
                    self.sessions.try_remove(key);
                }
                self.ending.sessions.pop_front();
            }
        }
        self.ending.due = self.ending_pending().then_some(now);
    }
}
