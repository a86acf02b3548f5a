//! Session records in the journal: which persistent sessions and which of their
//! subscriptions changed since the last batch, and the store mutations describing them.
//!
//! Owns the dirty marks and their coalescing. A session's own record and each of its
//! subscriptions (keyed by filter) is one key, journaled at most once per batch from
//! the state at the end of the batch: N SUBSCRIBEs make N small rows, a SUBSCRIBE and
//! UNSUBSCRIBE of one filter make one delete, and while a commit is in flight at most
//! one mark per changed key waits. It never writes a whole subscription list except
//! when a session is stored for the first time, and never touches the store itself.

use std::sync::Arc;

use canopy_proto::Packet;

use super::Router;
use crate::config::Durability;

/// Subscription changes that may wait for the journal before SUBACK and UNSUBACK do too
/// (`sync` only). Below it they leave at once (a crash may lose the changes of the batch
/// being written, docs/persistence.md); beyond it a subscriber that changes subscriptions
/// faster than the store commits is slowed to its pace, so commits stay small and other
/// clients' acknowledgements, which wait for them, stay prompt.
pub(super) const BACKLOG: usize = 1024;
use super::session::{Session, SubEntry};
use crate::store::{Mutation, SessionRecord, SubscriptionRecord};

impl Router {
    /// Sends a SUBACK or UNSUBACK to session `key`: at once, or under `sync` with more
    /// than [`BACKLOG`] changes waiting for the journal, after the commit of its own.
    pub(super) fn send_change_ack(&mut self, key: usize, packet: Packet) {
        let Some(s) = self.sessions.get(key) else {
            return;
        };
        match &s.conn {
            Some(c) if self.durability == Durability::Sync && self.pending_marks > BACKLOG => {
                self.held_acks.push((key, c.id, packet));
            }
            _ => s.send(packet),
        }
    }

    /// Marks the session's own record (expiry, will) for the next batch, when the
    /// session is persistent.
    pub(super) fn persist_session(&mut self, key: usize) {
        if !self.journal.enabled() {
            return;
        }
        let Some(s) = self.sessions.get_mut(key) else {
            return;
        };
        if s.expiry_interval == 0 {
            return;
        }
        s.record_dirty = true;
        queue(&mut self.dirty_sessions, key, s);
    }

    /// Marks one subscription of the session (added, changed, switched or removed) for
    /// the next batch, when the session is persistent.
    pub(super) fn persist_subscription(&mut self, key: usize, filter: &Arc<str>) {
        if !self.journal.enabled() {
            return;
        }
        let Some(s) = self.sessions.get_mut(key) else {
            return;
        };
        if s.expiry_interval == 0 {
            return;
        }
        if s.stored {
            if s.dirty_filters_mut().insert(filter.clone()) {
                self.pending_marks += 1;
            }
        } else {
            // Not stored yet: the first record carries every subscription.
            s.record_dirty = true;
        }
        queue(&mut self.dirty_sessions, key, s);
    }

    /// The store forgets the session (a `DeleteSession` was journaled) while the session
    /// lives on as a non-persistent one: nothing of it is pending any more.
    pub(super) fn forget_stored(&mut self, key: usize) {
        if let Some(s) = self.sessions.get_mut(key) {
            s.stored = false;
            s.record_dirty = false;
            s.clear_dirty_filters();
        }
    }

    /// A session restored from the store: it is stored as it is, nothing is pending.
    pub(super) fn mark_restored(&mut self, key: usize) {
        if let Some(s) = self.sessions.get_mut(key) {
            s.stored = true;
            s.record_dirty = false;
            s.clear_dirty_filters();
        }
    }

    /// Journals what changed in every session marked since the last batch: its record
    /// without subscriptions if its own fields changed, then one put or delete per
    /// changed subscription; a session stored for the first time is written whole.
    pub(super) fn journal_dirty_sessions(&mut self) {
        self.pending_marks = 0;
        for key in std::mem::take(&mut self.dirty_sessions) {
            let Some(s) = self.sessions.get_mut(key) else {
                continue;
            };
            s.journal_queued = false;
            let record = std::mem::take(&mut s.record_dirty);
            let filters = s.take_dirty_filters();
            if s.expiry_interval == 0 {
                continue;
            }
            if !s.stored {
                if !record {
                    continue;
                }
                s.stored = true;
                let s = &*s;
                self.journal.record(|| {
                    let all = s
                        .subscriptions
                        .iter()
                        .map(|(f, e)| subscription_record(f, e))
                        .collect();
                    Mutation::PutSession(session_record(s, all))
                });
                continue;
            }
            let s = &*s;
            if record {
                self.journal
                    .record(|| Mutation::PutSession(session_record(s, Vec::new())));
            }
            for f in filters {
                self.journal.record(|| match s.subscriptions.get(&f) {
                    Some(e) => {
                        Mutation::PutSubscription(s.client_id.clone(), subscription_record(&f, e))
                    }
                    None => Mutation::DeleteSubscription(s.client_id.clone(), f),
                });
            }
        }
    }
}

/// Puts `key` on the list of sessions to journal, once.
fn queue(list: &mut Vec<usize>, key: usize, s: &mut Session) {
    if !s.journal_queued {
        s.journal_queued = true;
        list.push(key);
    }
}

fn session_record(s: &Session, subscriptions: Vec<SubscriptionRecord>) -> SessionRecord {
    SessionRecord {
        client_id: s.client_id.clone(),
        expiry_interval: s.expiry_interval,
        expires_at: s.expires_at(),
        will: s.will.as_deref().cloned(),
        will_at: s.will_at(),
        subscriptions,
    }
}

fn subscription_record(filter: &str, e: &SubEntry) -> SubscriptionRecord {
    SubscriptionRecord {
        filter: filter.to_owned(),
        options: e.options,
        identifier: e.identifier,
        activation: e.activation.as_ref().map(|a| a.record()),
    }
}
