//! One client's big SUBSCRIBE across router turns (docs/flow-control.md, "Big work in
//! small turns"): a packet may carry tens of thousands of filters, and handling them in
//! one turn would stall every other client for as long. A SUBSCRIBE with more than
//! [`CHUNK`] filters is handled [`CHUNK`] filters per turn; meanwhile every later command
//! of the same session waits in its queue, so that the session's packets keep their
//! order, and runs once the SUBACK has gone.
//!
//! Owns the queues of such sessions. Never reorders one session's commands, and never
//! keeps work for a session that ended (its queue goes with it).

use std::collections::{HashMap, VecDeque};
use std::time::Instant;

use canopy_proto::ReasonCode;

use super::subscribe::SubscribeWork;
use super::{Command, Router};

/// Filters of one SUBSCRIBE handled per turn.
pub(super) const CHUNK: usize = 1024;

/// Commands a session may queue behind its SUBSCRIBE before it is cut off (a client that
/// floods while its own big SUBSCRIBE is handled).
const MAX_QUEUED: usize = 65_536;

/// A session's unfinished SUBSCRIBE and the commands behind it.
#[derive(Debug, Default)]
struct Waiting {
    work: Option<SubscribeWork>,
    queued: VecDeque<Command>,
}

/// The sessions with work split across turns.
#[derive(Debug, Default)]
pub(super) struct Deferred {
    sessions: HashMap<usize, Waiting>,
    /// Sessions with a SUBSCRIBE to continue, in turn.
    turns: VecDeque<usize>,
    due: Option<Instant>,
}

impl Deferred {
    /// When the next chunk is due (at once while any session waits).
    pub(super) fn due(&self) -> Option<Instant> {
        self.due
    }
}

impl Router {
    /// Handles a command, or queues it behind its session's unfinished SUBSCRIBE.
    pub fn handle(&mut self, now: Instant, cmd: Command) {
        if let Some((session, _)) = cmd.target()
            && let Some(w) = self.deferred.sessions.get_mut(&session)
        {
            if w.queued.len() >= MAX_QUEUED {
                self.forget_deferred(session);
                self.kick(
                    session,
                    ReasonCode::QUOTA_EXCEEDED,
                    "too many packets while a large SUBSCRIBE was handled",
                );
                return;
            }
            w.queued.push_back(cmd);
            return;
        }
        self.handle_now(now, cmd);
    }

    /// The rest of session `key`'s SUBSCRIBE waits for a later turn.
    pub(super) fn defer_subscribe(&mut self, now: Instant, key: usize, work: SubscribeWork) {
        self.deferred.sessions.entry(key).or_default().work = Some(work);
        self.deferred.turns.push_back(key);
        self.deferred.due = Some(now);
    }

    /// Whether work split across turns is waiting (ending sessions, big SUBSCRIBEs).
    pub(super) fn split_work_pending(&self) -> bool {
        self.ending_pending() || !self.deferred.turns.is_empty()
    }

    /// A session ended: its unfinished work and queued commands go with it.
    pub(super) fn forget_deferred(&mut self, key: usize) {
        if self.deferred.sessions.remove(&key).is_some() {
            self.deferred.turns.retain(|k| *k != key);
        }
    }

    /// Continues one session's SUBSCRIBE by a chunk; once it is done, runs the commands
    /// queued behind it (which may start another).
    pub(super) fn continue_deferred(&mut self, now: Instant) {
        if self.deferred.due.is_none_or(|t| t > now) {
            return;
        }
        if let Some(key) = self.deferred.turns.pop_front()
            && let Some(work) = self
                .deferred
                .sessions
                .get_mut(&key)
                .and_then(|w| w.work.take())
        {
            self.continue_subscribe(now, key, work);
            self.run_queued(now, key);
        }
        self.deferred.due = (!self.deferred.turns.is_empty()).then_some(now);
    }

    /// Runs session `key`'s queued commands in order until one starts split work again.
    fn run_queued(&mut self, now: Instant, key: usize) {
        loop {
            let Some(w) = self.deferred.sessions.get_mut(&key) else {
                return;
            };
            if w.work.is_some() {
                return;
            }
            let Some(cmd) = w.queued.pop_front() else {
                self.deferred.sessions.remove(&key);
                return;
            };
            self.handle_now(now, cmd);
        }
    }
}
