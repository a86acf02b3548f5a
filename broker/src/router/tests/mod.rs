//! A fake-clock harness for the router: commands go in through [`Router::handle`],
//! time moves only when a test calls [`Harness::advance`], and what the router sends
//! is read from each connection's outbox. Timing behaviours (wills, expiry, carousel,
//! `$SYS`) run here in microseconds and cannot be flaky on a loaded machine.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cluster;
mod durability;
mod interest_wait;
mod presence;
mod pressure;
mod records;
mod services;
mod split;
mod timing;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use canopy_proto::{
    Packet, Protocol, Publish, PublishProperties, QoS, Subscribe, SubscribeProperties,
    SubscriptionOptions, TopicFilter, TopicName, Will,
};
use tokio::sync::oneshot;

use super::{Command, ConnectReply, ConnectRequest, Router};
use crate::config::Config;
use crate::metrics::Metrics;
use crate::outbox::{Outbox, Outgoing};
use crate::services::cluster::ClusterBook;
use crate::services::status::StatusBook;
use crate::store::MemoryStore;
use crate::store::Mutation;
use crate::store::worker::{Commit, Done, Inline};

/// What a [`Deferred`] committer was given.
#[derive(Default)]
pub struct Commits {
    /// Batches submitted and not yet completed.
    pending: Mutex<Vec<u64>>,
    /// Session records written, over all batches.
    pub session_records: std::sync::atomic::AtomicUsize,
    /// Every mutation submitted, in order.
    pub ops: Mutex<Vec<Mutation>>,
}

/// A committer whose batches complete when the test says so.
struct Deferred {
    next: u64,
    submitted: Arc<Commits>,
}

impl Commit for Deferred {
    fn submit(&mut self, ops: Vec<Mutation>) -> Option<u64> {
        let batch = self.next;
        self.next += 1;
        let records = ops
            .iter()
            .filter(|m| matches!(m, Mutation::PutSession(_)))
            .count();
        self.submitted
            .session_records
            .fetch_add(records, std::sync::atomic::Ordering::Relaxed);
        self.submitted.ops.lock().unwrap().extend(ops);
        self.submitted.pending.lock().unwrap().push(batch);
        Some(batch)
    }

    fn close(&mut self) {}
}

/// A router on a fake clock, with the clients it has seen.
pub struct Harness {
    pub router: Router,
    pub now: Instant,
    pub status: Arc<StatusBook>,
    /// The cluster book, when the config has `[cluster]`.
    pub cluster: Option<Arc<ClusterBook>>,
    clients: HashMap<String, (ConnectReply, Arc<Outbox>)>,
    next_pkid: u16,
}

/// How a test client connects.
pub struct Conn {
    pub protocol: Protocol,
    pub clean: bool,
    pub expiry: u32,
    pub will: Option<Will>,
    /// The broker assigned the client id (the client sent none).
    pub assigned: bool,
}

impl Default for Conn {
    fn default() -> Conn {
        Conn {
            protocol: Protocol::V5,
            clean: true,
            expiry: 0,
            will: None,
            assigned: false,
        }
    }
}

/// A message as a client received it.
#[derive(Debug, Clone)]
pub struct Got {
    pub topic: String,
    pub payload: Bytes,
    pub retain: bool,
    pub qos: QoS,
    pub pkid: Option<u16>,
    /// Message Expiry Interval as it would be sent now.
    pub expiry_left: Option<u32>,
}

impl Harness {
    /// A router with `Config::ephemeral()` edited by `edit`, the memory store and no
    /// threads; commits complete at once.
    pub fn new(edit: impl FnOnce(&mut Config)) -> Harness {
        Harness::with_committer(edit, Box::new(Inline::new(Box::new(MemoryStore::new()))))
    }

    /// As [`Harness::new`] with `durability = "sync"` and commits that complete only
    /// when the test calls [`Harness::complete_commits`].
    pub fn sync(edit: impl FnOnce(&mut Config)) -> (Harness, Arc<Commits>) {
        Harness::sync_from(Default::default(), edit)
    }

    /// As [`Harness::sync`], restarted from `snapshot` (what a store loaded).
    pub fn sync_from(
        snapshot: crate::store::Snapshot,
        edit: impl FnOnce(&mut Config),
    ) -> (Harness, Arc<Commits>) {
        let submitted = Arc::new(Commits::default());
        let committer = Box::new(Deferred {
            next: 1,
            submitted: submitted.clone(),
        });
        let h = Harness::with_snapshot(
            |c| {
                c.durability = crate::config::Durability::Sync;
                edit(c);
            },
            snapshot,
            committer,
        );
        (h, submitted)
    }

    /// Completes the commits submitted so far (the router may submit the next meanwhile).
    pub fn complete_commits_once(&mut self, submitted: &Commits) {
        let batches: Vec<u64> = std::mem::take(&mut *submitted.pending.lock().unwrap());
        for batch in batches {
            self.router.on_commit_done(Done {
                batch,
                result: Ok(()),
            });
        }
    }

    /// Completes every commit submitted, including those submitted meanwhile.
    pub fn complete_commits(&mut self, submitted: &Commits) {
        loop {
            let batches: Vec<u64> = std::mem::take(&mut *submitted.pending.lock().unwrap());
            if batches.is_empty() {
                return;
            }
            for batch in batches {
                self.router.on_commit_done(Done {
                    batch,
                    result: Ok(()),
                });
            }
        }
    }

    fn with_committer(edit: impl FnOnce(&mut Config), committer: Box<dyn Commit>) -> Harness {
        Harness::with_snapshot(edit, Default::default(), committer)
    }

    fn with_snapshot(
        edit: impl FnOnce(&mut Config),
        snapshot: crate::store::Snapshot,
        committer: Box<dyn Commit>,
    ) -> Harness {
        let mut config = Config::ephemeral();
        config.sys_interval = Duration::ZERO; // tests that want `$SYS` turn it on
        edit(&mut config);
        let now = Instant::now();
        let metrics = Arc::new(Metrics::default());
        let status = Arc::new(StatusBook::new());
        let cluster = ClusterBook::new(&config, "127.0.0.1:1883").map(Arc::new);
        let services = super::registered(&config, &metrics, &status, cluster.as_ref(), now);
        let router = Router::new(&config, snapshot, committer, metrics, services, now);
        let mut h = Harness {
            router,
            now,
            status,
            cluster,
            clients: HashMap::new(),
            next_pkid: 1,
        };
        // What is due at start-up runs at once, as the driver's first turn would.
        h.advance(Duration::ZERO);
        h
    }

    /// Moves the clock forward by `d`, firing every deadline on the way in order.
    pub fn advance(&mut self, d: Duration) {
        let end = self.now + d;
        while let Some(t) = self.router.poll_timeout().filter(|&t| t <= end) {
            self.now = self.now.max(t);
            self.router.handle_timeout(self.now);
        }
        self.now = end;
    }

    fn send(&mut self, cmd: Command) {
        self.router.handle(self.now, cmd);
        self.router.end_turn();
    }

    /// Subscribes `id` to each filter with one SUBSCRIBE per filter, all in one router
    /// turn (as a burst that arrives together would be).
    pub fn subscribe_burst(&mut self, id: &str, filters: &[String]) {
        let (session, conn) = self.target(id);
        for f in filters {
            let pkid = self.pkid();
            let subscribe = Subscribe {
                pkid,
                filters: vec![(TopicFilter::new(f).unwrap(), SubscriptionOptions::default())],
                properties: SubscribeProperties::default(),
            };
            self.router.handle(
                self.now,
                Command::Subscribe {
                    session,
                    conn,
                    subscribe,
                },
            );
        }
        self.router.end_turn();
    }

    /// Sends `id` one SUBSCRIBE per `(filter, options, identifier)`, all in one turn.
    pub fn subscribe_each(
        &mut self,
        id: &str,
        subs: &[(String, SubscriptionOptions, Option<u32>)],
    ) {
        let (session, conn) = self.target(id);
        for (f, options, identifier) in subs {
            let pkid = self.pkid();
            let subscribe = Subscribe {
                pkid,
                filters: vec![(TopicFilter::new(f).unwrap(), *options)],
                properties: SubscribeProperties {
                    subscription_identifier: *identifier,
                    ..Default::default()
                },
            };
            self.router.handle(
                self.now,
                Command::Subscribe {
                    session,
                    conn,
                    subscribe,
                },
            );
        }
        self.router.end_turn();
    }

    /// Sends `id` one UNSUBSCRIBE per filter, all in one turn.
    pub fn unsubscribe_burst(&mut self, id: &str, filters: &[String]) {
        let (session, conn) = self.target(id);
        for f in filters {
            let pkid = self.pkid();
            let unsubscribe = canopy_proto::Unsubscribe {
                pkid,
                filters: vec![TopicFilter::new(f).unwrap()],
                user_properties: Vec::new(),
            };
            self.router.handle(
                self.now,
                Command::Unsubscribe {
                    session,
                    conn,
                    unsubscribe,
                },
            );
        }
        self.router.end_turn();
    }

    /// Connects `id`; returns whether a session was present.
    pub fn connect(&mut self, id: &str, c: Conn) -> bool {
        let outbox = Outbox::new(1024);
        let (tx, mut rx) = oneshot::channel();
        let req = ConnectRequest {
            client_id: Arc::from(id),
            clean_start: c.clean,
            session_expiry: c.expiry,
            will: c.will,
            protocol: c.protocol,
            receive_maximum: 100,
            max_packet_size: None,
            user: None,
            bridge: false,
            assigned: c.assigned,
            outbox: outbox.clone(),
            reply: tx,
        };
        self.send(Command::Connect(Box::new(req)));
        let reply = rx.try_recv().expect("the router answers CONNECT at once");
        self.clients.insert(id.to_string(), (reply, outbox));
        reply.session_present
    }

    pub fn target(&self, id: &str) -> (usize, u64) {
        let (r, _) = self.clients.get(id).expect("connected");
        (r.session, r.conn)
    }

    /// Subscribes `id` to `filter` at `qos`.
    pub fn subscribe(&mut self, id: &str, filter: &str, qos: QoS) {
        let (session, conn) = self.target(id);
        let pkid = self.pkid();
        let subscribe = Subscribe {
            pkid,
            filters: vec![(
                TopicFilter::new(filter).unwrap(),
                SubscriptionOptions {
                    qos,
                    ..Default::default()
                },
            )],
            properties: SubscribeProperties::default(),
        };
        self.send(Command::Subscribe {
            session,
            conn,
            subscribe,
        });
    }

    /// Publishes from `id`.
    pub fn publish(
        &mut self,
        id: &str,
        topic: &str,
        payload: &str,
        qos: QoS,
        retain: bool,
        properties: PublishProperties,
    ) -> Option<u16> {
        let (session, conn) = self.target(id);
        let pkid = (qos != QoS::AtMostOnce).then(|| self.pkid());
        let publish = Publish {
            dup: false,
            qos,
            retain,
            topic: Some(TopicName::new(topic).unwrap()),
            pkid,
            properties,
            payload: Bytes::copy_from_slice(payload.as_bytes()),
        };
        self.send(Command::Publish {
            session,
            conn,
            publish,
        });
        pkid
    }

    /// The connection of `id` ends; `will` says whether the will is due.
    pub fn disconnect(&mut self, id: &str, will: bool, reason: &'static str) {
        let (session, conn) = self.target(id);
        self.send(Command::Disconnected {
            session,
            conn,
            publish_will: will,
            session_expiry: None,
            reason,
        });
    }

    /// Acknowledges a QoS 1 delivery to `id`.
    pub fn puback(&mut self, id: &str, pkid: u16) {
        let (session, conn) = self.target(id);
        self.send(Command::PubAck {
            session,
            conn,
            pkid,
        });
    }

    /// Everything queued for `id` since the last call.
    pub fn outgoing(&mut self, id: &str) -> Vec<Outgoing> {
        let (_, outbox) = self.clients.get(id).expect("connected");
        let mut items = VecDeque::new();
        outbox.drain_into(&mut items);
        items.into_iter().collect()
    }

    /// The PUBLISHes queued for `id` since the last call (other packets dropped).
    pub fn received(&mut self, id: &str) -> Vec<Got> {
        let now = self.now;
        self.outgoing(id)
            .into_iter()
            .filter_map(|o| match o {
                Outgoing::Publish {
                    msg,
                    qos,
                    pkid,
                    retain,
                    ..
                } => Some(Got {
                    topic: msg.topic.to_string(),
                    payload: msg.payload.clone(),
                    retain,
                    qos,
                    pkid,
                    expiry_left: msg.remaining_expiry(now),
                }),
                _ => None,
            })
            .collect()
    }

    /// The broker-wide counters.
    pub fn metrics(&self) -> &Metrics {
        &self.router.metrics
    }

    /// The packets other than PUBLISH queued for `id` since the last call.
    pub fn packets(&mut self, id: &str) -> Vec<Packet> {
        self.outgoing(id)
            .into_iter()
            .filter_map(|o| match o {
                Outgoing::Packet(p) => Some(p),
                _ => None,
            })
            .collect()
    }

    pub fn pkid(&mut self) -> u16 {
        self.next_pkid = self.next_pkid.wrapping_add(1).max(1);
        self.next_pkid
    }
}

/// A will on `topic` with `payload`, delayed by `delay` seconds.
pub fn will(topic: &str, payload: &str, delay: u32) -> Will {
    Will {
        topic: TopicName::new(topic).unwrap(),
        payload: Bytes::copy_from_slice(payload.as_bytes()),
        qos: QoS::AtMostOnce,
        retain: false,
        properties: canopy_proto::WillProperties {
            will_delay_interval: (delay > 0).then_some(delay),
            ..Default::default()
        },
    }
}

/// Publish properties with a Message Expiry Interval.
pub fn expiring(secs: u32) -> PublishProperties {
    PublishProperties {
        message_expiry_interval: Some(secs),
        ..Default::default()
    }
}
