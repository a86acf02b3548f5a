//! The router: the single owner of routing state.
//!
//! Owns every session (in a `Slab`), the subscription trie, the shared-subscription
//! groups, the retained-message trie, the timers for will delay and session expiry, and
//! the store. Connection tasks talk to it only through a bounded channel of
//! [`Command`]s, and it answers only through their [`Outbox`]es, so no lock guards
//! routing state. Each loop turn handles a batch of commands, commits their store
//! mutations together (group commit) and only then releases the acknowledgements that
//! promise durability. It must never await on a connection, a socket or anything that
//! a client controls.

mod activation;
mod journal;
mod lifecycle;
mod publish;
mod services;
pub mod session;
mod subscribe;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use canopy_proto::{
    Packet, Protocol, Publish, QoS, ReasonCode, Subscribe, SubscriptionOptions, Unsubscribe, Will,
};
use slab::Slab;
use tokio::sync::{mpsc, oneshot};

use crate::config::{Config, Durability};
use crate::message::Message;
use crate::metrics::Metrics;
use crate::outbox::{Outbox, Outgoing};
use crate::retain::RetainTree;
use crate::store::worker::{Committer, Done};
use crate::store::{Store, StoreError};
use crate::topic_tree::TopicTree;
use journal::Journal;
use session::{QueueLimits, Session};

/// How often expired retained messages are removed.
const RETAINED_SWEEP: Duration = Duration::from_secs(60);

/// What a connection asks of the router.
#[derive(Debug)]
pub enum Command {
    /// A client sent a valid CONNECT.
    Connect(Box<ConnectRequest>),
    /// An incoming PUBLISH whose topic alias is already resolved.
    Publish {
        /// Session key from [`ConnectReply`].
        session: usize,
        /// Connection generation from [`ConnectReply`].
        conn: u64,
        /// The packet; `topic` is `Some`.
        publish: Publish,
    },
    /// PUBACK for a delivery.
    PubAck {
        session: usize,
        conn: u64,
        pkid: u16,
    },
    /// PUBREC for a delivery; `failed` when its reason code is an error.
    PubRec {
        session: usize,
        conn: u64,
        pkid: u16,
        failed: bool,
    },
    /// PUBREL for an incoming QoS 2 message.
    PubRel {
        session: usize,
        conn: u64,
        pkid: u16,
    },
    /// PUBCOMP for a delivery.
    PubComp {
        session: usize,
        conn: u64,
        pkid: u16,
    },
    /// SUBSCRIBE.
    Subscribe {
        session: usize,
        conn: u64,
        subscribe: Subscribe,
    },
    /// UNSUBSCRIBE.
    Unsubscribe {
        session: usize,
        conn: u64,
        unsubscribe: Unsubscribe,
    },
    /// The connection ended.
    Disconnected {
        /// Session key.
        session: usize,
        /// Connection generation.
        conn: u64,
        /// Whether the will is to be published (no DISCONNECT 0x00 was received).
        publish_will: bool,
        /// A new Session Expiry Interval from a 5.0 DISCONNECT.
        session_expiry: Option<u32>,
        /// Why, for the status document: `disconnected`, `connection lost`,
        /// `keepalive timeout`, `protocol error`.
        reason: &'static str,
    },
    /// The connection wrote everything queued and was asked to say so (see
    /// [`Outbox::request_drain_notice`]).
    Drained {
        /// Session key.
        session: usize,
        /// Connection generation.
        conn: u64,
    },
    /// Stop: disconnect everyone, flush the store, then answer.
    Shutdown(oneshot::Sender<()>),
}

/// A CONNECT that passed the connection's own checks.
#[derive(Debug)]
pub struct ConnectRequest {
    /// Client identifier (assigned by the connection if the client sent none).
    pub client_id: Arc<str>,
    /// Clean start / clean session.
    pub clean_start: bool,
    /// Session Expiry Interval granted, seconds (`u32::MAX`: never).
    pub session_expiry: u32,
    /// The will, if any.
    pub will: Option<Will>,
    /// Protocol level.
    pub protocol: Protocol,
    /// The client's Receive Maximum (65,535 when absent).
    pub receive_maximum: u16,
    /// The client's Maximum Packet Size, if set.
    pub max_packet_size: Option<u32>,
    /// The connection's outbox.
    pub outbox: Arc<Outbox>,
    /// Where to answer.
    pub reply: oneshot::Sender<ConnectReply>,
}

/// The router's answer to a CONNECT.
#[derive(Debug, Clone, Copy)]
pub struct ConnectReply {
    /// Session key to quote in later commands.
    pub session: usize,
    /// Connection generation to quote in later commands.
    pub conn: u64,
    /// Whether an existing session was resumed [MQTT-3.2.2-2].
    pub session_present: bool,
}

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
    /// Send the next share of carousel `index`.
    Carousel { index: usize },
}

/// One delivery found while matching a publish.
#[derive(Debug)]
struct Match {
    session: usize,
    qos: QoS,
    retain_as_published: bool,
    sub_ids: Vec<u32>,
}

/// The routing state and its loop.
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
    /// Status, configuration documents and carousels.
    services: services::Services,
    timers: BTreeSet<(Instant, Timer)>,
    /// Mutations not yet submitted to the store, committed together.
    journal: Journal,
    /// The commit thread.
    committer: Committer,
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
    sys: crate::sys::SysState,
    /// Counts of persistent subscriptions, for `$SYS`.
    subscription_count: usize,
}

impl Router {
    /// Builds the router from the configuration and restores what the store holds.
    pub fn new(
        config: &Config,
        mut store: Box<dyn Store>,
        metrics: Arc<Metrics>,
        status: Arc<crate::services::status::StatusBook>,
        now: Instant,
    ) -> Result<(Router, mpsc::Receiver<Done>), StoreError> {
        let snapshot = store.load()?;
        let (committer, done) = Committer::spawn(store).map_err(|source| StoreError::Io {
            path: "commit thread".into(),
            source,
        })?;
        let limits = &config.limits;
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
            services: services::Services::new(config, status, now),
            timers: BTreeSet::new(),
            journal: Journal::new(config.durability != Durability::Memory),
            committer,
            durability: config.durability,
            in_flight: None,
            held_acks: Vec::new(),
            waiting_acks: Vec::new(),
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
                    let id = canopy_model::bridge::local_client_id(
                        &b.name,
                        b.local.client_id.as_deref(),
                    );
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
            sys: crate::sys::SysState::new(now),
            subscription_count: 0,
        };
        for msg in snapshot.retained {
            if !msg.expired(now) {
                router.retained_seq += 1;
                let seq = router.retained_seq;
                router
                    .retained
                    .insert(&msg.topic.clone(), Retained { msg, seq });
            }
        }
        for stored in snapshot.sessions {
            router.restore_session(now, stored);
        }
        router.restore_statuses(now);
        router.schedule_carousels(now);
        tracing::info!(
            sessions = router.sessions.len(),
            retained = router.retained.len(),
            "state restored from the store"
        );
        Ok((router, done))
    }

    /// Runs the loop until a `Shutdown` command or until every sender is gone.
    pub async fn run(
        mut self,
        mut rx: mpsc::Receiver<Command>,
        mut done: mpsc::Receiver<Done>,
        sys_interval: Duration,
        commit_interval: Duration,
    ) {
        let mut sys_tick = (!sys_interval.is_zero()).then(|| tokio::time::interval(sys_interval));
        let mut commit_tick = (self.durability == Durability::Batched)
            .then(|| tokio::time::interval(commit_interval));
        let mut sweep_tick = tokio::time::interval(RETAINED_SWEEP);
        let mut batch = Vec::with_capacity(256);
        loop {
            let deadline = self.timers.first().map(|(t, _)| *t);
            tokio::select! {
                n = rx.recv_many(&mut batch, 256) => {
                    if n == 0 {
                        self.drain_store(&mut done).await;
                        return;
                    }
                    let now = Instant::now();
                    for cmd in batch.drain(..) {
                        if let Command::Shutdown(reply) = cmd {
                            self.disconnect_all();
                            self.drain_store(&mut done).await;
                            let _ = reply.send(());
                            return;
                        }
                        self.handle(now, cmd);
                    }
                    self.end_turn();
                }
                Some(d) = done.recv(), if self.in_flight.is_some() => {
                    self.on_commit_done(d);
                }
                _ = sleep_until(deadline), if deadline.is_some() => {
                    self.fire_timers(Instant::now());
                    self.end_turn();
                }
                _ = tick(&mut sys_tick), if sys_tick.is_some() => {
                    self.publish_sys(Instant::now());
                    self.end_turn();
                }
                _ = sweep_tick.tick() => {
                    self.sweep_retained(Instant::now());
                    self.end_turn();
                }
                _ = tick(&mut commit_tick), if commit_tick.is_some() => {
                    if self.in_flight.is_none() {
                        self.submit();
                    }
                }
            }
        }
    }

    /// Handles one command at `now`.
    pub fn handle(&mut self, now: Instant, cmd: Command) {
        match cmd {
            Command::Connect(req) => self.on_connect(now, *req),
            Command::Publish {
                session,
                conn,
                publish,
            } => {
                if self.is_current(session, conn) {
                    self.on_publish(now, session, conn, publish);
                }
            }
            Command::PubAck {
                session,
                conn,
                pkid,
            } => {
                if self.is_current(session, conn) {
                    self.on_puback(now, session, pkid);
                }
            }
            Command::PubRec {
                session,
                conn,
                pkid,
                failed,
            } => {
                if self.is_current(session, conn) {
                    self.on_pubrec(now, session, pkid, failed);
                }
            }
            Command::PubRel {
                session,
                conn,
                pkid,
            } => {
                if self.is_current(session, conn) {
                    self.on_pubrel(session, conn, pkid);
                }
            }
            Command::PubComp {
                session,
                conn,
                pkid,
            } => {
                if self.is_current(session, conn) {
                    self.on_pubcomp(now, session, pkid);
                }
            }
            Command::Subscribe {
                session,
                conn,
                subscribe,
            } => {
                if self.is_current(session, conn) {
                    self.on_subscribe(now, session, subscribe);
                }
            }
            Command::Unsubscribe {
                session,
                conn,
                unsubscribe,
            } => {
                if self.is_current(session, conn) {
                    self.on_unsubscribe(session, unsubscribe);
                }
            }
            Command::Disconnected {
                session,
                conn,
                publish_will,
                session_expiry,
                reason,
            } => {
                if self.is_current(session, conn) {
                    self.on_disconnected(now, session, publish_will, session_expiry, reason);
                }
            }
            Command::Drained { session, conn } => {
                if self.is_current(session, conn) {
                    self.on_drained(now, session);
                }
            }
            Command::Shutdown(done) => {
                // Only reachable when a caller drives `handle` directly; the loop
                // intercepts Shutdown to drain the store first.
                self.disconnect_all();
                let _ = done.send(());
            }
        }
    }

    fn is_current(&self, session: usize, conn: u64) -> bool {
        self.sessions
            .get(session)
            .and_then(|s| s.conn.as_ref())
            .is_some_and(|c| c.id == conn)
    }

    /// Ends a loop turn: acknowledgements go out now, or with the next commit when
    /// `sync` durability makes them wait for the disk.
    fn end_turn(&mut self) {
        match self.durability {
            Durability::Memory | Durability::Batched => self.release(false),
            Durability::Sync => {
                if self.in_flight.is_none() {
                    if self.journal.is_empty() {
                        self.release(false);
                    } else {
                        self.submit();
                    }
                }
                // Else: everything held waits for the next batch, keeping ack order.
            }
        }
    }

    /// Submits the journal as one batch; in `sync` mode the held acknowledgements
    /// now wait for it.
    fn submit(&mut self) {
        if self.journal.is_empty() {
            return;
        }
        let ops = std::mem::take(&mut self.journal.ops);
        match self.committer.submit(ops) {
            Some(batch) => {
                self.in_flight = Some(batch);
                if self.durability == Durability::Sync {
                    self.waiting_acks.append(&mut self.held_acks);
                }
            }
            None => {
                tracing::error!("the store thread is gone; acknowledgements withheld");
                self.release(true);
            }
        }
    }

    fn on_commit_done(&mut self, d: Done) {
        if self.in_flight != Some(d.batch) {
            return;
        }
        self.in_flight = None;
        let failed = d.result.is_err();
        let mut waiting = std::mem::take(&mut self.waiting_acks);
        self.send_acks(&mut waiting, failed);
        self.waiting_acks = waiting;
        if self.durability == Durability::Sync {
            self.end_turn();
        }
    }

    /// Sends the held acknowledgements, or on a store failure disconnects their clients
    /// instead (they will resend: nothing acknowledged is lost).
    fn release(&mut self, failed: bool) {
        let mut held = std::mem::take(&mut self.held_acks);
        self.send_acks(&mut held, failed);
        self.held_acks = held;
    }

    fn send_acks(&mut self, acks: &mut Vec<(usize, u64, Packet)>, failed: bool) {
        for (session, conn, packet) in acks.drain(..) {
            let Some(c) = self
                .sessions
                .get(session)
                .and_then(|s| s.conn.as_ref())
                .filter(|c| c.id == conn)
            else {
                continue;
            };
            if failed {
                c.outbox.push(Outgoing::Disconnect(
                    ReasonCode::UNSPECIFIED_ERROR,
                    Some("store failure".into()),
                ));
            } else {
                c.outbox.push(Outgoing::Packet(packet));
            }
        }
    }

    /// Waits for the batch in flight, then commits whatever is left.
    async fn drain_store(&mut self, done: &mut mpsc::Receiver<Done>) {
        for _ in 0..2 {
            if let Some(batch) = self.in_flight {
                while let Some(d) = done.recv().await {
                    if d.batch == batch {
                        self.on_commit_done(d);
                        break;
                    }
                }
                self.in_flight = None;
            }
            self.submit();
        }
        self.release(false);
        // Close the store so that the data directory can be opened again at once.
        self.committer.close();
        while let Some(d) = done.recv().await {
            if Some(d.batch) == self.in_flight {
                self.on_commit_done(d);
            }
        }
    }

    /// Tells every client the broker is going away (5.0: DISCONNECT 0x8B) and records
    /// their sessions as disconnected now, so expiry counts from the shutdown. Wills are
    /// not published on an orderly shutdown.
    fn disconnect_all(&mut self) {
        let now = Instant::now();
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
                c.outbox
                    .push(Outgoing::Disconnect(ReasonCode::SERVER_SHUTTING_DOWN, None));
                s.last_conn = c.id;
            }
            s.will = None;
            if s.expiry_interval != u32::MAX {
                s.expires_at = Some(now + Duration::from_secs(u64::from(s.expiry_interval)));
            }
            let client_id = s.client_id.clone();
            self.persist_session(key);
            self.set_status(
                now,
                &client_id,
                crate::services::status::State::Offline,
                "shutdown",
            );
        }
    }

    /// Drops retained messages whose expiry has passed, so that they stop taking
    /// memory and disk rather than merely being skipped [MQTT-3.3.2-5].
    fn sweep_retained(&mut self, now: Instant) {
        let mut gone = Vec::new();
        self.retained.remove_if(|topic, r| {
            let expired = r.msg.expired(now);
            if expired {
                gone.push(topic.clone());
            }
            expired
        });
        for topic in gone {
            self.journal
                .record(|| crate::store::Mutation::DeleteRetained(topic));
        }
    }

    fn publish_sys(&mut self, now: Instant) {
        let stats = crate::sys::RouterStats {
            sessions: self.sessions.len(),
            subscriptions: self.subscription_count,
            inactive: self.inactive_count,
            retained: self.retained.len(),
        };
        let items = self.sys.snapshot(now, &self.metrics, &stats);
        for (topic, payload) in items {
            self.publish_internal(now, topic, payload, true);
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(t) => tokio::time::sleep_until(t.into()).await,
        None => std::future::pending().await,
    }
}

async fn tick(interval: &mut Option<tokio::time::Interval>) {
    match interval {
        Some(i) => {
            i.tick().await;
        }
        None => std::future::pending().await,
    }
}
