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

mod lifecycle;
mod publish;
pub mod session;
mod subscribe;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Instant;

use canopy_proto::{
    Packet, Protocol, Publish, QoS, ReasonCode, Subscribe, SubscriptionOptions, Unsubscribe, Will,
};
use slab::Slab;
use tokio::sync::{mpsc, oneshot};

use crate::config::Config;
use crate::message::Message;
use crate::metrics::Metrics;
use crate::outbox::{Outbox, Outgoing};
use crate::retain::RetainTree;
use crate::store::{Mutation, Store, StoreError};
use crate::topic_tree::TopicTree;
use session::{QueueLimits, Session};

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

/// Timed events, ordered by deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    /// Publish the delayed will of `session` if its last connection is still `conn`.
    Will { session: usize, conn: u64 },
    /// End `session` if it is still offline since connection `conn`.
    Expire { session: usize, conn: u64 },
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
    retained: RetainTree<Arc<Message>>,
    timers: BTreeSet<(Instant, Timer)>,
    store: Box<dyn Store>,
    /// Mutations of the current loop turn, committed together.
    pending: Vec<Mutation>,
    /// Acknowledgements held until `pending` is committed: (session, conn, packet).
    held_acks: Vec<(usize, u64, Packet)>,
    metrics: Arc<Metrics>,
    limits: QueueLimits,
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
        now: Instant,
    ) -> Result<Router, StoreError> {
        let snapshot = store.load()?;
        let limits = &config.limits;
        let mut router = Router {
            sessions: Slab::new(),
            by_id: HashMap::new(),
            subs: TopicTree::new(),
            groups: Slab::new(),
            group_index: HashMap::new(),
            retained: RetainTree::new(),
            timers: BTreeSet::new(),
            store,
            pending: Vec::new(),
            held_acks: Vec::new(),
            metrics,
            limits: QueueLimits {
                max_messages: limits.max_queued_messages,
                max_bytes: usize::try_from(limits.max_queued_bytes).unwrap_or(usize::MAX),
                policy: limits.queue_full,
            },
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
            router.retained.insert(&msg.topic.clone(), msg);
        }
        for rec in snapshot.sessions {
            router.restore_session(now, rec);
        }
        Ok(router)
    }

    /// Runs the loop until a `Shutdown` command or until every sender is gone.
    pub async fn run(mut self, mut rx: mpsc::Receiver<Command>, sys_interval: std::time::Duration) {
        let mut sys_tick = (!sys_interval.is_zero()).then(|| tokio::time::interval(sys_interval));
        let mut batch = Vec::with_capacity(256);
        loop {
            let deadline = self.timers.first().map(|(t, _)| *t);
            tokio::select! {
                n = rx.recv_many(&mut batch, 256) => {
                    if n == 0 {
                        self.flush();
                        return;
                    }
                    let now = Instant::now();
                    for cmd in batch.drain(..) {
                        if let Command::Shutdown(done) = cmd {
                            self.shutdown();
                            let _ = done.send(());
                            return;
                        }
                        self.handle(now, cmd);
                    }
                    self.flush();
                }
                _ = sleep_until(deadline), if deadline.is_some() => {
                    self.fire_timers(Instant::now());
                    self.flush();
                }
                _ = tick(&mut sys_tick), if sys_tick.is_some() => {
                    self.publish_sys(Instant::now());
                    self.flush();
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
            } => {
                if self.is_current(session, conn) {
                    self.on_disconnected(now, session, publish_will, session_expiry);
                }
            }
            Command::Shutdown(done) => {
                self.shutdown();
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

    /// Commits the turn's mutations, then releases held acknowledgements.
    fn flush(&mut self) {
        if !self.pending.is_empty() {
            if let Err(e) = self.store.commit(&mut self.pending) {
                tracing::error!(error = %e, "store commit failed; acknowledgements withheld");
                self.pending.clear();
                for (session, conn, _) in self.held_acks.drain(..) {
                    if let Some(s) = self
                        .sessions
                        .get(session)
                        .filter(|s| s.conn.as_ref().is_some_and(|c| c.id == conn))
                    {
                        if let Some(c) = &s.conn {
                            c.outbox.push(Outgoing::Disconnect(
                                ReasonCode::UNSPECIFIED_ERROR,
                                Some("store failure".into()),
                            ));
                        }
                    }
                }
                return;
            }
        }
        for (session, conn, packet) in self.held_acks.drain(..) {
            if let Some(s) = self.sessions.get(session) {
                if let Some(c) = s.conn.as_ref().filter(|c| c.id == conn) {
                    c.outbox.push(Outgoing::Packet(packet));
                }
            }
        }
    }

    fn shutdown(&mut self) {
        for (_, s) in self.sessions.iter_mut() {
            if let Some(c) = s.conn.take() {
                c.outbox
                    .push(Outgoing::Disconnect(ReasonCode::SERVER_SHUTTING_DOWN, None));
            }
        }
        self.flush();
    }

    fn publish_sys(&mut self, now: Instant) {
        let stats = crate::sys::RouterStats {
            sessions: self.sessions.len(),
            subscriptions: self.subscription_count,
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
