//! The journal of one router turn: store mutations waiting to be committed.
//!
//! Owns only the list and the switch that turns journaling off for the in-memory
//! durability mode, so that mode pays nothing for building records nobody reads.

use crate::store::Mutation;

/// Mutations produced since the last commit was submitted.
#[derive(Debug)]
pub struct Journal {
    enabled: bool,
    /// The mutations, in the order they happened.
    pub ops: Vec<Mutation>,
}

impl Journal {
    /// A journal that records only when `enabled`.
    pub fn new(enabled: bool) -> Journal {
        Journal {
            enabled,
            ops: Vec::new(),
        }
    }

    /// Records the mutation built by `f`, if journaling is on.
    #[inline]
    pub fn record(&mut self, f: impl FnOnce() -> Mutation) {
        if self.enabled {
            self.ops.push(f());
        }
    }

    /// Whether nothing waits to be committed.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}
