//! The persistence seam: what the router asks to be kept across restarts.
//!
//! Owns the [`Store`] trait, the records it stores and the in-memory implementation.
//! The router batches the [`Mutation`]s of one loop turn and commits them together
//! (group commit); acknowledgements that depend on durability are released only after
//! `commit` returns. A store never calls back into the router and never blocks on the
//! network.

pub mod disk;
mod memory;
pub mod worker;

use std::sync::Arc;

use std::time::Instant;

use canopy_proto::{QoS, SubscriptionOptions, TopicName, Will};

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
    /// Event activation, for event-activated subscriptions (SPEC §3).
    pub activation: Option<ActivationRecord>,
}

/// The event activation of a subscription, with its current state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActivationRecord {
    /// Filter whose PUBLISHes activate the subscription.
    pub activate_on: String,
    /// Filter whose PUBLISHes deactivate it.
    pub deactivate_on: Option<String>,
    /// Whether activation replays the retained messages matching the filter.
    pub replay_retained: bool,
    /// Whether it is active now.
    pub active: bool,
}

/// A persistent session's durable part (its deliveries and incoming QoS 2 ids are kept
/// separately, see [`Mutation`]).
#[derive(Debug, Clone, PartialEq)]
pub struct SessionRecord {
    /// Client identifier.
    pub client_id: Arc<str>,
    /// Session Expiry Interval in seconds (`u32::MAX`: never).
    pub expiry_interval: u32,
    /// When the session expires; `None` while connected or when it never expires. The
    /// store keeps it as wall-clock time so the interval keeps counting across restarts.
    pub expires_at: Option<Instant>,
    /// The will of the current (or last) connection, with its delay, if any.
    pub will: Option<Will>,
    /// When a pending delayed will is due (disconnected sessions only).
    pub will_at: Option<Instant>,
    /// Its subscriptions. In [`Mutation::PutSession`] these are *added* (each one
    /// stored under its own key, as [`Mutation::PutSubscription`] would) and the ones not
    /// listed are left as they are: the router lists them all once, when the session is
    /// first stored, and journals later changes one subscription at a time. A loaded
    /// record lists every stored subscription, ordered by filter.
    pub subscriptions: Vec<SubscriptionRecord>,
}

/// Where a stored delivery stands in the outgoing QoS 1/2 flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryState {
    /// Queued, not sent yet.
    Queued,
    /// Sent as QoS 1 with this packet id, awaiting PUBACK.
    AwaitPubAck(u16),
    /// Sent as QoS 2 with this packet id, awaiting PUBREC.
    AwaitPubRec(u16),
    /// PUBREL sent for this packet id, awaiting PUBCOMP.
    AwaitPubComp(u16),
}

/// A QoS 1/2 message on its way to one persistent session.
#[derive(Debug, Clone)]
pub struct DeliveryRecord {
    /// Position in the session's delivery order (strictly increasing per session).
    pub seq: u64,
    /// The message (its `expires_at` is kept as wall-clock time by disk stores).
    pub msg: Arc<Message>,
    /// QoS of this delivery.
    pub qos: QoS,
    /// RETAIN flag to send.
    pub retain: bool,
    /// Subscription identifiers to send.
    pub sub_ids: Vec<u32>,
    /// Flow state.
    pub state: DeliveryState,
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
    /// Remove a session with all its subscriptions, deliveries and incoming QoS 2 ids.
    DeleteSession(Arc<str>),
    /// Create or replace one subscription of a session, keyed by (client id, filter).
    PutSubscription(Arc<str>, SubscriptionRecord),
    /// Remove one subscription of a session, keyed by (client id, filter).
    DeleteSubscription(Arc<str>, Arc<str>),
    /// Create or replace (same `seq`) a delivery of a session.
    PutDelivery(Arc<str>, DeliveryRecord),
    /// Remove a delivery of a session (acknowledged, expired or dropped).
    DeleteDelivery(Arc<str>, u64),
    /// An incoming QoS 2 packet id now awaits PUBREL [MQTT-4.3.3-10].
    PutIncoming(Arc<str>, u16),
    /// PUBREL received for an incoming QoS 2 packet id.
    DeleteIncoming(Arc<str>, u16),
}

/// One session as loaded at start-up.
#[derive(Debug, Clone)]
pub struct StoredSession {
    /// The record.
    pub record: SessionRecord,
    /// Its deliveries, in `seq` order.
    pub deliveries: Vec<DeliveryRecord>,
    /// Incoming QoS 2 packet ids awaiting PUBREL.
    pub incoming: Vec<u16>,
}

/// What a store holds at start-up.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Retained messages.
    pub retained: Vec<Arc<Message>>,
    /// Persistent sessions.
    pub sessions: Vec<StoredSession>,
}

/// Durable state behind the router. Implementations convert `Instant`s to wall-clock
/// time when they write and back when they load, so that expiry intervals keep counting
/// from their original times across a restart.
pub trait Store: Send {
    /// Reads everything stored, once, at start-up.
    fn load(&mut self) -> Result<Snapshot, StoreError>;
    /// Applies a batch of mutations atomically, in order; when it returns `Ok`, the batch
    /// is as durable as the implementation promises (the disk store: fsynced). `batch`
    /// is left empty.
    fn commit(&mut self, batch: &mut Vec<Mutation>) -> Result<(), StoreError>;
}

/// Opens the store that the configuration asks for: the disk store under `data_dir`
/// for `sync` and `batched`, the in-memory store for `memory`.
pub fn open(config: &crate::config::Config) -> Result<Box<dyn Store>, StoreError> {
    use crate::config::Durability;
    match config.durability {
        Durability::Memory => Ok(Box::new(MemoryStore::new())),
        Durability::Sync | Durability::Batched => {
            let store = disk::DiskStore::open(&config.data_dir, config.on_corrupt_store)?;
            tracing::info!(data_dir = %config.data_dir.display(), durability = ?config.durability, "disk store open");
            Ok(Box::new(store))
        }
    }
}
