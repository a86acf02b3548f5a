//! The journal of one router turn: store mutations waiting to be committed.
//!
//! Owns only the list and the switch that turns journaling off for the in-memory
//! durability mode, so that mode pays nothing for building records nobody reads.

use std::sync::Arc;

use crate::outbox::{Outbox, Outgoing};
use crate::store::Mutation;

/// Mutations produced since the last commit was submitted, and the deliveries that
/// must wait for them.
#[derive(Debug)]
pub struct Journal {
    enabled: bool,
    /// Whether deliveries wait for the commit of their turn (`durability = "sync"`):
    /// nothing reaches a subscriber before the broker would remember it after a crash.
    hold: bool,
    /// The mutations, in the order they happened.
    pub ops: Vec<Mutation>,
    /// Outboxes with deliveries held for the next commit.
    pub staged: Vec<Arc<Outbox>>,
    /// Counts submitted batches, so that an outbox registers once per batch.
    epoch: u64,
}

impl Journal {
    /// A journal that records only when `enabled` and holds deliveries when `hold`.
    pub fn new(enabled: bool, hold: bool) -> Journal {
        Journal {
            enabled,
            hold,
            ops: Vec::new(),
            staged: Vec::new(),
            epoch: 1,
        }
    }

    /// The outboxes with deliveries held for the batch being submitted now, each with
    /// how many of its held items belong to that batch; later deliveries register anew.
    pub fn take_staged(&mut self) -> Vec<(Arc<Outbox>, usize)> {
        self.epoch += 1;
        self.staged
            .drain(..)
            .map(|o| {
                let n = o.held();
                (o, n)
            })
            .collect()
    }

    /// Queues a delivery on `outbox`: held for the commit when deliveries wait for it.
    /// Returns `false` when the outbox refused it.
    pub fn deliver(&mut self, outbox: &Arc<Outbox>, item: Outgoing) -> bool {
        if !self.hold {
            return outbox.push(item);
        }
        match outbox.push_held(item, self.epoch) {
            Some(first) => {
                if first {
                    self.staged.push(outbox.clone());
                }
                true
            }
            None => false,
        }
    }

    /// Records the mutation built by `f`, if journaling is on.
    #[inline]
    pub fn record(&mut self, f: impl FnOnce() -> Mutation) {
        if self.enabled {
            self.ops.push(f());
        }
    }

    /// Whether mutations are recorded at all (not under `durability = "memory"`).
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Whether nothing waits to be committed.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}
