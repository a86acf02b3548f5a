//! The router: the single owner of routing state, without IO and without a clock.
//!
//! Owns every session (in a `Slab`), the subscription trie, the shared-subscription
//! groups, the retained-message trie, the timers for will delay and session expiry, the
//! service modules (`crate::services`) and the access rules (`crate::access`).
//! Connections talk to it only through [`Command`]s and it answers only through their
//! [`Outbox`]es, so no lock guards routing state. It is driven like quinn-proto:
//! [`Router::handle`] for each command at `now`, [`Router::poll_timeout`] /
//! [`Router::handle_timeout`] for its timers, [`Router::end_turn`] after each batch
//! (group commit, then the acknowledgements that promise durability). The async loop
//! that feeds it lives in `driver.rs`; tests drive it by hand on a fake clock. It must
//! never await, read a clock, or touch a socket or anything a client controls.

mod acks;
mod activation;
mod commands;
mod deferred;
mod driver;
mod ending;
mod held;
mod hosting;
mod journal;
mod lifecycle;
mod pressure;
mod publish;
mod queue;
mod quotas;
mod rare;
mod records;
pub mod session;
mod submap;
mod subscribe;
#[cfg(test)]
mod tests;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use canopy_proto::{Packet, QoS, SubscriptionOptions};
use slab::Slab;

pub use commands::{Command, ConnectReply, ConnectRequest};
pub use hosting::registered;

use crate::access::Access;
use crate::config::{Config, Durability};
use crate::message::Message;
use crate::metrics::Metrics;
use crate::retain::RetainTree;
use crate::services::Service;
pub use crate::services::sys::RouterStats;
use crate::store::Snapshot;
use crate::store::worker::Commit;
use crate::topic_tree::TopicTree;
use journal::Journal;
use session::{QueueLimits, Session};

/// How often expired retained messages are removed.
const RETAINED_SWEEP: Duration = Duration::from_secs(60);

/// One entry of the subscription trie.
#[derive(Debug, Clone)]
enum Subscriber {
    /// An ordinary subscription of one session.
    Direct {
        session: usize,
        options: SubscriptionOptions,
        id: Option<u32>,
    },
    /// A shared subscription group, index into `Router::groups`.
    Shared { group: usize },
}

/// A shared subscription group `$share/<name>/<filter>`.
#[derive(Debug)]
struct SharedGroup {
    /// Members: session, options, identifier.
    members: Vec<(usize, SubscriptionOptions, Option<u32>)>,
    /// Round-robin cursor.
    next: usize,
    /// Matching epoch, to count a group once per publish.
    epoch: u64,
}

/// A retained message with its arrival order (for "the most recent retained event
/// sets the initial state", SPEC §3).
#[derive(Debug, Clone)]
struct Retained {
    msg: Arc<Message>,
    /// Router-wide arrival counter; after a restart, load order.
    seq: u64,
    /// The client whose PUBLISH stored it, for its quota; `None` for the broker's own
    /// and for those loaded at start-up.
    owner: Option<Arc<str>>,
}

impl Retained {
    /// Bytes counted against the retained quotas: topic and payload.
    fn bytes(&self) -> u64 {
        (self.msg.topic.len() + self.msg.payload.len()) as u64
    }
}

/// One entry of the activation trigger index.
#[derive(Debug, Clone)]
struct Trigger {
    session: usize,
    /// The subscription's filter key in the session.
    filter: Arc<str>,
    /// Activates (true) or deactivates (false).
    activate: bool,
}

/// Timed events, ordered by deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    /// Publish the delayed will of `session` if its last connection is still `conn`.
    Will { session: usize, conn: u64 },
    /// End `session` if it is still offline since connection `conn`.
    Expire { session: usize, conn: u64 },
    /// Cut `session` off if its queue is still full on connection `conn`.
    SlowConsumer { session: usize, conn: u64 },
    /// Send the SUBACK held as `ticket` unconfirmed, if it is still held (`held.rs`).
    SubAck { ticket: u64 },
}

/// One delivery found while matching a publish.
#[derive(Debug)]
struct Match {
    session: usize,
    qos: QoS,
    retain_as_published: bool,
    sub_ids: Vec<u32>,
}

/// The routing state.
pub struct Router {
    sessions: Slab<Session>,
    by_id: HashMap<Arc<str>, usize>,
    subs: TopicTree<Subscriber>,
    groups: Slab<SharedGroup>,
    group_index: HashMap<Arc<str>, usize>,
    retained: RetainTree<Retained>,
    /// Arrival counter for `Retained::seq`.
    retained_seq: u64,
    /// Activation triggers: `activate-on` / `deactivate-on` filters of event-activated
    /// subscriptions, so that checking a PUBLISH costs one trie walk.
    triggers: TopicTree<Trigger>,
    /// Event-activated subscriptions currently inactive (not in `subs`).
    inactive_count: usize,
    /// The service modules, in registration order (see `hosting::registered`). Taken
    /// out while one of their hooks runs.
    services: Vec<Box<dyn Service>>,
    /// Retained documents services keep themselves (`$status`), read with `retained`.
    kept: Vec<Arc<dyn crate::services::KeptDocs>>,
    /// Who may publish and subscribe where.
    access: Access,
    /// Will-delay and session-expiry timers, ordered by deadline.
    timers: BTreeSet<(Instant, Timer)>,
    /// When expired retained messages are next swept.
    next_sweep: Instant,
    /// When a `batched` store next commits, if it does so on a timer.
    next_commit: Option<Instant>,
    /// `commit_interval` for `batched` durability.
    commit_interval: Duration,
    /// Mutations not yet submitted to the store, committed together.
    journal: Journal,
    /// Where batches go (the commit thread, or inline in tests).
    committer: Box<dyn Commit>,
    /// When acknowledgements wait for the disk.
    durability: Durability,
    /// The batch being committed, if any.
    in_flight: Option<u64>,
    /// Acknowledgements of this turn (and, while a batch is in flight, of every turn
    /// since): released after the next commit in `sync` mode [MQTT-4.6.0-2] keeps their
    /// order. (session, conn, packet).
    held_acks: Vec<(usize, u64, Packet)>,
    /// Acknowledgements waiting for batch `in_flight`.
    waiting_acks: Vec<(usize, u64, Packet)>,
    /// Outboxes whose deliveries wait for batch `in_flight` (`sync`), with how many
    /// of their held items belong to it.
    waiting_deliveries: Vec<(Arc<crate::outbox::Outbox>, usize)>,
    metrics: Arc<Metrics>,
    limits: QueueLimits,
    /// Queue limits of embedded bridges' local sessions, by client id.
    bridge_limits: HashMap<String, QueueLimits>,
    max_inflight: u16,
    receive_maximum: u16,
    maximum_qos: QoS,
    /// Longest topic filter accepted in SUBSCRIBE, bytes.
    max_filter_length: usize,
    /// Most levels in a topic filter.
    max_filter_levels: usize,
    next_conn: u64,
    epoch: u64,
    matches: Vec<Match>,
    hit_groups: Vec<usize>,
    /// Counts of persistent subscriptions, for `$SYS`.
    subscription_count: usize,
    /// Sessions with a record or subscriptions to journal in the next batch
    /// (`journal_queued`, see `records.rs`).
    dirty_sessions: Vec<usize>,
    /// Online subscribers the publish being routed overflowed (see `pressure.rs`).
    overflow: Vec<usize>,
    /// Last gate id handed out.
    next_gate: u64,
    /// How long an online subscriber may stay full before it is cut off.
    slow_consumer_timeout: Duration,
    /// SUBACKs waiting for interest propagation (`held.rs`).
    held_subacks: held::HeldSubAcks,
    /// Most User Properties accepted in one PUBLISH (`[limits] max_user_properties`).
    max_user_properties: usize,
    /// Subscription and retained-message quotas, and the retained usage they are checked on.
    quotas: quotas::QuotaLimits,
    retained_usage: quotas::RetainedUsage,
    /// Subscription changes marked for the journal and not yet in a batch (`records.rs`);
    /// past [`records::BACKLOG`] under `sync`, SUBACK and UNSUBACK wait for their commit.
    pending_marks: usize,
    /// Big SUBSCRIBEs handled a chunk per turn, and the commands queued behind them.
    deferred: deferred::Deferred,
    /// Ended sessions whose subscriptions are still being taken out of the index, a
    /// chunk per turn (`lifecycle.rs`), oldest first, and when the next chunk is due.
    ending: ending::Ending,
}

impl Router {
    /// Installs the ACL file's rules behind the access seam (see [`Access::set_acl`]).
    pub fn set_acl(&mut self, acl: Option<Arc<dyn crate::access::Acl>>) {
        self.access.set_acl(acl);
    }

    /// Builds the router from the configuration and the store's `snapshot`, committing
    /// through `committer`, with `services` registered (see `hosting::registered`).
    pub fn new(
        config: &Config,
        snapshot: Snapshot,
        committer: Box<dyn Commit>,
        metrics: Arc<Metrics>,
        services: Vec<Box<dyn Service>>,
        now: Instant,
    ) -> Router {
        let limits = &config.limits;
        let kept = services.iter().filter_map(|s| s.kept()).collect();
        let mut router = Router {
            sessions: Slab::new(),
            by_id: HashMap::new(),
            subs: TopicTree::new(),
            groups: Slab::new(),
            group_index: HashMap::new(),
            retained: RetainTree::new(),
            retained_seq: 0,
            triggers: TopicTree::new(),
            inactive_count: 0,
            services,
            kept,
            access: Access::new(config),
            timers: BTreeSet::new(),
            next_sweep: now + RETAINED_SWEEP,
            next_commit: (config.durability == Durability::Batched)
                .then(|| now + config.commit_interval),
            commit_interval: config.commit_interval,
            journal: Journal::new(
                config.durability != Durability::Memory,
                config.durability == Durability::Sync,
            ),
            committer,
            durability: config.durability,
            in_flight: None,
            held_acks: Vec::new(),
            waiting_acks: Vec::new(),
            waiting_deliveries: Vec::new(),
            metrics,
            limits: QueueLimits {
                max_messages: limits.max_queued_messages,
                max_bytes: usize::try_from(limits.max_queued_bytes).unwrap_or(usize::MAX),
                policy: limits.queue_full,
            },
            bridge_limits: config
                .bridge
                .iter()
                .map(|b| {
                    let id = b.local_client_id();
                    let lim = QueueLimits {
                        max_messages: usize::try_from(b.queue.max_messages).unwrap_or(usize::MAX),
                        max_bytes: usize::try_from(b.queue.max_bytes).unwrap_or(usize::MAX),
                        policy: limits.queue_full,
                    };
                    (id, lim)
                })
                .collect(),
            max_inflight: limits.max_inflight,
            receive_maximum: limits.receive_maximum,
            maximum_qos: QoS::from_u8(limits.maximum_qos).unwrap_or(QoS::ExactlyOnce),
            max_filter_length: limits.max_topic_length,
            max_filter_levels: limits.max_topic_levels,
            next_conn: 1,
            epoch: 0,
            matches: Vec::new(),
            hit_groups: Vec::new(),
            subscription_count: 0,
            dirty_sessions: Vec::new(),
            overflow: Vec::new(),
            next_gate: 0,
            slow_consumer_timeout: limits.slow_consumer_timeout,
            held_subacks: held::HeldSubAcks::default(),
            max_user_properties: limits.max_user_properties,
            quotas: quotas::QuotaLimits::new(limits),
            retained_usage: quotas::RetainedUsage::default(),
            ending: ending::Ending::default(),
            pending_marks: 0,
            deferred: deferred::Deferred::default(),
        };
        for msg in snapshot.retained {
            if !msg.expired(now) {
                router.retained_seq += 1;
                let seq = router.retained_seq;
                let r = Retained {
                    msg,
                    seq,
                    owner: None,
                };
                router.retained_usage.stored(None, r.bytes());
                router.retained.insert(&r.msg.topic.clone(), r);
            }
        }
        for stored in snapshot.sessions {
            router.restore_session(now, stored);
        }
        // Counted before the services publish their own retained documents, so that a
        // new data directory reports nothing restored.
        let (sessions, retained) = (router.sessions.len(), router.retained.len());
        router.start_services(now);
        tracing::info!(sessions, retained, "state restored from the store");
        router
    }

    /// Handles one command at `now`. Commands of a connection that is no longer its
    /// session's current one are dropped here, once.
    fn handle_now(&mut self, now: Instant, cmd: Command) {
        if let Some((session, conn)) = cmd.target()
            && !self.is_current(session, conn)
        {
            return;
        }
        match cmd {
            Command::Connect(req) => self.on_connect(now, *req),
            Command::Publish {
                session,
                conn,
                publish,
            } => self.on_publish(now, session, conn, publish),
            Command::PubAck { session, pkid, .. } => self.on_puback(now, session, pkid),
            Command::PubRec {
                session,
                pkid,
                failed,
                ..
            } => self.on_pubrec(now, session, pkid, failed),
            Command::PubRel {
                session,
                conn,
                pkid,
            } => self.on_pubrel(session, conn, pkid),
            Command::PubComp { session, pkid, .. } => self.on_pubcomp(now, session, pkid),
            Command::Subscribe {
                session, subscribe, ..
            } => self.on_subscribe(now, session, subscribe),
            Command::Unsubscribe {
                session,
                unsubscribe,
                ..
            } => self.on_unsubscribe(now, session, unsubscribe),
            Command::Disconnected {
                session,
                publish_will,
                session_expiry,
                reason,
                ..
            } => self.on_disconnected(now, session, publish_will, session_expiry, reason),
            Command::Drained { session, .. } => self.on_drained(now, session),
            Command::Shutdown(done) => {
                // The driver intercepts Shutdown to drain the store first; a caller that
                // drives `handle` directly gets the disconnections only.
                self.farewell(now);
                self.disconnect_all(now);
                let _ = done.send(());
            }
        }
    }

    /// The earliest instant at which [`Router::handle_timeout`] has work.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut next = self.next_sweep;
        if let Some(&(t, _)) = self.timers.first() {
            next = next.min(t);
        }
        if let Some(t) = self.next_commit {
            next = next.min(t);
        }
        if let Some(t) = self.ending.due() {
            next = next.min(t);
        }
        if let Some(t) = self.deferred.due() {
            next = next.min(t);
        }
        for s in &self.services {
            if let Some(t) = s.poll_timeout() {
                next = next.min(t);
            }
        }
        Some(next)
    }

    /// Runs everything due at `now`: wills, session expiry, service timers, the
    /// retained sweep and a `batched` commit. Ends the turn.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.continue_ending(now);
        self.continue_deferred(now);
        self.fire_timers(now);
        self.services_timeout(now);
        if now >= self.next_sweep {
            self.sweep_retained(now);
            self.next_sweep = now + RETAINED_SWEEP;
        }
        if let Some(t) = self.next_commit
            && now >= t
        {
            self.next_commit = Some(now + self.commit_interval);
            if self.in_flight.is_none() {
                self.submit();
            }
        }
        self.end_turn();
    }

    /// Figures for `$SYS`.
    pub fn stats(&self) -> RouterStats {
        RouterStats {
            sessions: self.sessions.len(),
            subscriptions: self.subscription_count,
            inactive: self.inactive_count,
            retained: self.retained.len() + self.kept.iter().map(|k| k.count()).sum::<usize>(),
        }
    }

    fn is_current(&self, session: usize, conn: u64) -> bool {
        self.sessions
            .get(session)
            .and_then(|s| s.conn.as_ref())
            .is_some_and(|c| c.id == conn)
    }

    /// Tells every client the broker is going away (5.0: DISCONNECT 0x8B) and records
    /// their sessions as disconnected now, so expiry counts from the shutdown. Wills are
    /// not published on an orderly shutdown.
    fn disconnect_all(&mut self, now: Instant) {
        let keys: Vec<usize> = self
            .sessions
            .iter()
            .filter(|(_, s)| s.conn.is_some())
            .map(|(k, _)| k)
            .collect();
        for key in keys {
            let Some(s) = self.sessions.get_mut(key) else {
                continue;
            };
            if let Some(c) = s.conn.take() {
                c.outbox.push(crate::outbox::Outgoing::Disconnect(
                    canopy_proto::ReasonCode::SERVER_SHUTTING_DOWN,
                    None,
                ));
                s.last_conn = c.id;
                let info = hosting::client_info(s, Some(&c));
                s.will = None;
                if s.expiry_interval != u32::MAX {
                    s.set_expires_at(Some(
                        now + Duration::from_secs(u64::from(s.expiry_interval)),
                    ));
                }
                self.persist_session(key);
                self.services_disconnect(now, &info, "shutdown");
            }
        }
    }

    /// Drops retained messages whose expiry has passed, so that they stop taking
    /// memory and disk rather than merely being skipped [MQTT-3.3.2-5].
    fn sweep_retained(&mut self, now: Instant) {
        let mut gone = Vec::new();
        let usage = &mut self.retained_usage;
        self.retained.remove_if(|topic, r| {
            let expired = r.msg.expired(now);
            if expired {
                usage.released(r.owner.as_ref(), r.bytes());
                gone.push(topic.clone());
            }
            expired
        });
        for topic in gone {
            self.journal
                .record(|| crate::store::Mutation::DeleteRetained(topic));
        }
    }
}
