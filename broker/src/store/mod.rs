//! The persistence seam: what the router asks to be kept across restarts.
//!
//! Owns the [`Store`] trait, the records it stores and the in-memory implementation.
//! The router batches the [`Mutation`]s of one loop turn and commits them together
//! (group commit); acknowledgements that depend on durability are released only after
//! `commit` returns. A store never calls back into the router and never blocks on the
//! network.

mod memory;

use std::sync::Arc;

use canopy_proto::{SubscriptionOptions, TopicName};

pub use memory::MemoryStore;

use crate::message::Message;

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// An IO error on the data directory.
    #[error("store IO error on {path}: {source}")]
    Io {
        /// File or directory concerned.
        path: String,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The stored data cannot be read.
    #[error("store is corrupt: {0}")]
    Corrupt(String),
}

/// A subscription as kept in a session record.
#[derive(Debug, Clone, PartialEq)]
pub struct SubscriptionRecord {
    /// The filter exactly as subscribed (shared ones with their `$share/<group>/` prefix).
    pub filter: String,
    /// Subscription options.
    pub options: SubscriptionOptions,
    /// Subscription identifier (5.0).
    pub identifier: Option<u32>,
}

/// A persistent session's durable part.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionRecord {
    /// Client identifier.
    pub client_id: Arc<str>,
    /// Session Expiry Interval in seconds (`u32::MAX`: never).
    pub expiry_interval: u32,
    /// Its subscriptions.
    pub subscriptions: Vec<SubscriptionRecord>,
}

/// One change to durable state.
#[derive(Debug, Clone)]
pub enum Mutation {
    /// Set (or replace) the retained message of a topic.
    PutRetained(Arc<Message>),
    /// Remove the retained message of a topic.
    DeleteRetained(TopicName),
    /// Create or replace a session record.
    PutSession(SessionRecord),
    /// Remove a session.
    DeleteSession(Arc<str>),
}

/// What a store holds at start-up.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Retained messages.
    pub retained: Vec<Arc<Message>>,
    /// Persistent sessions.
    pub sessions: Vec<SessionRecord>,
}

/// Durable state behind the router.
pub trait Store: Send {
    /// Reads everything stored, once, at start-up.
    fn load(&mut self) -> Result<Snapshot, StoreError>;
    /// Applies a batch of mutations atomically; when it returns `Ok`, the batch is as
    /// durable as the implementation promises. `batch` is left empty.
    fn commit(&mut self, batch: &mut Vec<Mutation>) -> Result<(), StoreError>;
}

/// Opens the store that the configuration asks for.
pub fn open(config: &crate::config::Config) -> Result<Box<dyn Store>, StoreError> {
    match config.durability {
        crate::config::Durability::Memory
        | crate::config::Durability::Batched
        | crate::config::Durability::Sync => {
            if config.durability != crate::config::Durability::Memory {
                tracing::warn!(
                    durability = ?config.durability,
                    "the disk store is not built yet: running with the in-memory store; nothing survives a restart"
                );
            }
            Ok(Box::new(MemoryStore::new()))
        }
    }
}
