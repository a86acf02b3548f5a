//! Ending a session with many subscriptions across router turns (docs/flow-control.md,
//! "Big work in small turns"): taking 100,000 subscriptions out of the matching index at
//! once would stall every other client for the time it takes. A session with more than
//! [`CHUNK`] subscriptions ends at once in every way a client can see (its client id is
//! free, its will and `$status` are published, the store forgets it, nothing more is
//! delivered to it), while its subscriptions leave the index [`CHUNK`] at a time, one
//! chunk per router turn; its slot is freed after the last, so the index never names a
//! session that reused the slot.
//!
//! Owns the queue of such sessions. Never delivers to, journals or publishes for a session
//! in it.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use super::Router;

/// Subscriptions taken out of the index per turn; sessions with at most this many end
/// in one turn.
pub(super) const CHUNK: usize = 4096;

/// Sessions being taken apart, oldest first.
#[derive(Debug, Default)]
pub(super) struct Ending {
    keys: VecDeque<usize>,
    due: Option<Instant>,
}

impl Ending {
    /// When the next chunk is due (at once while any session waits).
    pub(super) fn due(&self) -> Option<Instant> {
        self.due
    }
}

impl Router {
    /// Session `key` has ended but still has its subscriptions in the index: they leave
    /// from the next turn on. The caller has made it unreachable (no client id, no
    /// expiry, nothing to journal) and marked it `ending`.
    pub(super) fn end_later(&mut self, now: Instant, key: usize) {
        self.ending.keys.push_back(key);
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
            let Some(&key) = self.ending.keys.front() else {
                break;
            };
            let filters: Vec<Arc<str>> = match self.sessions.get(key) {
                Some(s) if s.ending => s.subscriptions.keys().take(budget).cloned().collect(),
                _ => Vec::new(),
            };
            budget = budget.saturating_sub(filters.len().max(1));
            for f in &filters {
                self.remove_subscription(key, f);
            }
            if self
                .sessions
                .get(key)
                .is_none_or(|s| !s.ending || s.subscriptions.is_empty())
            {
                if self.sessions.get(key).is_some_and(|s| s.ending) {
                    self.sessions.try_remove(key);
                }
                self.ending.keys.pop_front();
            }
        }
        self.ending.due = (!self.ending.keys.is_empty()).then_some(now);
    }
}
