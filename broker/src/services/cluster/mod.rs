//! Cluster membership and load distribution (SPEC §6; docs/cluster.md): the service that
//! publishes this node's load record, learns every node's record and every assignment pin,
//! obeys drain orders, moves connected clients that belong elsewhere at a bounded rate, and
//! (on the root) runs the rebalancer.
//!
//! Owns the [`ClusterService`] and, through [`ClusterBook`], the shared view the CONNECT
//! path and the DNS listener read. The rules themselves (assignment, least loaded, level
//! hysteresis) are `canopy_model::cluster`'s. It publishes only through its [`Host`] and
//! moves clients only through [`Host::move_client`]; it never opens a connection (the join
//! link is an embedded bridge started by the broker).

mod book;
pub mod link;
mod mover;
mod rebalance;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use canopy_model::cluster::{
    self, ASSIGN_PREFIX, DRAIN_PREFIX, NODES_PREFIX, NodeRecord, NodeState, REBALANCE_PREFIX,
};
use canopy_proto::{QoS, TopicFilter, TopicName};

pub use book::{Admission, ClusterBook, Decision};

use super::{ClientInfo, Disposition, Host, Service};
use crate::config::Config;
use crate::message::Message;
use crate::metrics::Metrics;
use mover::Mover;
use rebalance::{Rebalancer, Shed};

/// The prefix of every cluster topic this service reads.
const CLUSTER_PREFIX: &str = "$cluster/";

/// A record not refreshed for this many load intervals counts as down here.
const STALE_INTERVALS: u32 = 3;
/// ... but never sooner than this (other nodes may publish less often).
const STALE_MIN: Duration = Duration::from_secs(6);

/// Publishes this node's record and keeps the [`ClusterBook`].
#[derive(Debug)]
pub struct ClusterService {
    book: Arc<ClusterBook>,
    capacity: u64,
    load_interval: Duration,
    metrics: Arc<Metrics>,
    /// Clients connected here that are not links.
    connected: HashMap<Arc<str>, ClientInfo>,
    /// The level last published (hysteresis needs it).
    level: Option<u8>,
    /// A drain order for this node is in force.
    draining: bool,
    /// The broker is stopping: the last record says down.
    stopping: bool,
    next_publish: Instant,
    /// Publish counters at the last record, for the rates.
    last_counts: (u64, u64, Instant),
    /// When each other node's record last arrived.
    seen: HashMap<String, Instant>,
    mover: Mover,
    rebalancer: Option<Rebalancer>,
}

impl ClusterService {
    /// The service of a broker configured with `[cluster]` (`None` without), writing `book`.
    pub fn new(
        config: &Config,
        book: Arc<ClusterBook>,
        metrics: Arc<Metrics>,
        now: Instant,
    ) -> Option<ClusterService> {
        let c = config.cluster.as_ref()?;
        Some(ClusterService {
            book,
            capacity: c.capacity,
            load_interval: c.load_interval,
            last_counts: (
                Metrics::get(&metrics.publish_received),
                Metrics::get(&metrics.publish_sent),
                now,
            ),
            metrics,
            connected: HashMap::new(),
            level: None,
            draining: false,
            stopping: false,
            next_publish: now,
            seen: HashMap::new(),
            mover: Mover::new(c.move_rate, now),
            rebalancer: c
                .rebalance
                .then(|| Rebalancer::new(c.imbalance.get(), c.move_rate)),
        })
    }

    fn me(&self) -> &str {
        self.book.me()
    }

    fn state(&self) -> NodeState {
        if self.stopping {
            NodeState::Down
        } else if self.draining {
            NodeState::Draining
        } else {
            NodeState::Up
        }
    }

    fn stale_after(&self) -> Duration {
        (self.load_interval * STALE_INTERVALS).max(STALE_MIN)
    }

    /// This node's record now, with its level updated (hysteresis).
    fn own_record(&mut self, now: Instant) -> NodeRecord {
        let connections = self.connected.len() as u64;
        let level = cluster::level(connections, self.capacity, self.level);
        self.level = Some(level);
        let (rin, rout, since) = self.last_counts;
        let (cin, cout) = (
            Metrics::get(&self.metrics.publish_received),
            Metrics::get(&self.metrics.publish_sent),
        );
        let secs = now.saturating_duration_since(since).as_secs_f64();
        let rate = |d: u64| {
            if secs > 0.0 {
                (d as f64 / secs).round() as u64
            } else {
                0
            }
        };
        let (msgs_in, msgs_out) = (
            rate(cin.saturating_sub(rin)),
            rate(cout.saturating_sub(rout)),
        );
        self.last_counts = (cin, cout, now);
        let advertise = self
            .book
            .read()
            .nodes
            .get(self.me())
            .map(|r| r.advertise.clone())
            .unwrap_or_default();
        NodeRecord {
            node: self.me().to_owned(),
            advertise,
            connections,
            capacity: self.capacity,
            level: Some(level),
            msgs_in,
            msgs_out,
            ts: unix_ms(),
            state: self.state(),
        }
    }

    /// Publishes this node's record, retained, and puts it in the book.
    fn publish_record(&mut self, host: &mut dyn Host) {
        let now = host.now();
        let record = self.own_record(now);
        let payload = Bytes::from(record.to_json());
        self.book
            .write()
            .nodes
            .insert(record.node.clone(), record.clone());
        self.next_publish = now + self.load_interval;
        publish_retained(host, &cluster::node_topic(&record.node), payload);
    }

    /// Counts other nodes whose records stopped arriving as down, in the book only.
    fn expire_stale(&mut self, now: Instant) {
        let limit = self.stale_after();
        let stale: Vec<String> = self
            .seen
            .iter()
            .filter(|(_, t)| now.saturating_duration_since(**t) > limit)
            .map(|(n, _)| n.clone())
            .collect();
        let mut view = self.book.write();
        for n in stale {
            self.seen.remove(&n);
            if let Some(r) = view.nodes.get_mut(&n)
                && r.state != NodeState::Down
            {
                tracing::warn!(node = %n, "cluster node record is stale; counting it down");
                r.state = NodeState::Down;
            }
        }
    }

    /// A record arrived (retained at start, or published by a node or its will).
    fn learn_record(&mut self, now: Instant, node: &str, record: NodeRecord, from_peer: bool) {
        if node == self.me() {
            // Another broker says something about us (our old will, say): say otherwise.
            if from_peer && record.state != self.state() {
                self.next_publish = now;
            }
            return;
        }
        if record.node != node {
            return;
        }
        self.seen.insert(node.to_owned(), now);
        self.book.write().nodes.insert(node.to_owned(), record);
        if self.draining {
            // A node came or changed: clients that had nowhere to go may have now.
            self.enqueue_all();
        }
    }

    /// A pin arrived or was cleared: a client connected here may have to go.
    fn learn_pin(&mut self, client_id: &str, payload: &[u8]) {
        {
            let mut view = self.book.write();
            match cluster::parse_pin(payload) {
                Some(node) => view.pins.insert(client_id.to_owned(), node),
                None => view.pins.remove(client_id),
            };
        }
        if let Some((id, _)) = self.connected.get_key_value(client_id) {
            let id = id.clone();
            self.mover.enqueue(id);
        }
    }

    /// A drain order for this node was set or cleared.
    fn learn_drain(&mut self, host: &mut dyn Host, payload: &[u8]) {
        let drain = !payload.is_empty();
        if drain == self.draining {
            return;
        }
        self.draining = drain;
        tracing::info!(draining = drain, "cluster drain order");
        self.publish_record(host);
        if drain {
            self.enqueue_all();
        }
    }

    fn enqueue_all(&mut self) {
        let ids: Vec<Arc<str>> = self.connected.keys().cloned().collect();
        for id in ids {
            self.mover.enqueue(id);
        }
    }

    /// Moves queued clients that must go, as far as the rate allows: while this node
    /// drains, every client the admission rule sends elsewhere; otherwise only clients
    /// pinned to another node that is up. An unpinned client admitted here stays even if
    /// the weights changed since (the rebalancer pins clients when the spread is too wide).
    fn run_moves(&mut self, host: &mut dyn Host) {
        let book = self.book.clone();
        let connected = &self.connected;
        let draining = self.draining;
        self.mover.run(host, |id| {
            let c = connected.get(id)?;
            let target = match book.admit(id, c.assigned, c.protocol, c.user.as_deref()) {
                Admission::Redirect(n) | Admission::Proxy(n) => n,
                Admission::Local => return None,
            };
            (draining || book.pin(id).as_deref() == Some(target.node.as_str()))
                .then_some(target.advertise)
        });
    }
}

impl Service for ClusterService {
    fn name(&self) -> &'static str {
        "cluster"
    }

    fn topics(&self) -> &[&'static str] {
        &[CLUSTER_PREFIX]
    }

    /// Reads back the retained records, pins and this node's drain order, then publishes
    /// this node's record.
    fn on_start(&mut self, host: &mut dyn Host) {
        let now = host.now();
        let mut found = Vec::new();
        if let Ok(filter) = TopicFilter::new("$cluster/#") {
            host.for_each_retained(&filter, &mut |t, m| {
                found.push((t.as_str().to_owned(), m.payload.clone()));
            });
        }
        for (topic, payload) in found {
            self.learn(host, now, &topic, &payload, false);
        }
        self.publish_record(host);
    }

    /// A graceful stop says so at once: the last record is down (on the root it reaches
    /// every node through their join links; a node's own join link leaves its will on the
    /// root as it stops, see `link.rs`), rather than going stale after three intervals.
    fn on_shutdown(&mut self, host: &mut dyn Host) {
        self.stopping = true;
        self.publish_record(host);
    }

    fn on_publish(
        &mut self,
        host: &mut dyn Host,
        from: Option<&ClientInfo>,
        msg: &Arc<Message>,
    ) -> Disposition {
        let now = host.now();
        let topic = msg.topic.as_str().to_owned();
        self.learn(host, now, &topic, &msg.payload, from.is_some());
        Disposition::Route
    }

    fn on_connect(&mut self, _host: &mut dyn Host, client: &ClientInfo, _present: bool) {
        if !self.book.is_link(&client.client_id, client.user.as_deref()) {
            self.connected
                .insert(client.client_id.clone(), client.clone());
            if self.draining {
                self.mover.enqueue(client.client_id.clone());
            }
        }
    }

    fn on_disconnect(&mut self, _host: &mut dyn Host, client: &ClientInfo, _reason: &str) {
        self.connected.remove(&*client.client_id);
    }

    fn poll_timeout(&self) -> Option<Instant> {
        let mut next = self.next_publish;
        if let Some(t) = self.mover.due() {
            next = next.min(t);
        }
        Some(next)
    }

    fn handle_timeout(&mut self, host: &mut dyn Host) {
        let now = host.now();
        if now >= self.next_publish {
            self.expire_stale(now);
            self.publish_record(host);
            if self.draining && self.mover.is_empty() {
                self.enqueue_all();
            }
            if let Some(r) = &mut self.rebalancer {
                r.tick(host, &self.book, self.load_interval);
            }
        }
        self.run_moves(host);
    }
}

impl ClusterService {
    /// Dispatches one cluster topic (`from_peer`: published by a client or a link).
    fn learn(
        &mut self,
        host: &mut dyn Host,
        now: Instant,
        topic: &str,
        payload: &[u8],
        from_peer: bool,
    ) {
        if let Some(node) = topic.strip_prefix(NODES_PREFIX) {
            if let Some(record) = NodeRecord::from_payload(payload) {
                self.learn_record(now, node, record, from_peer);
            }
        } else if let Some(client) = topic.strip_prefix(ASSIGN_PREFIX) {
            self.learn_pin(client, payload);
        } else if let Some(node) = topic.strip_prefix(DRAIN_PREFIX) {
            if node == self.me() {
                self.learn_drain(host, payload);
            }
        } else if let Some(node) = topic.strip_prefix(REBALANCE_PREFIX)
            && node == self.me()
            && let Ok(shed) = serde_json::from_slice::<Shed>(payload)
        {
            self.shed(host, &shed);
        }
    }

    /// The rebalancer asked this node to move `shed.count` clients: the first unpinned
    /// connected clients (by client id) are pinned to `shed.to` in turn, and moved when the
    /// pins arrive.
    fn shed(&mut self, host: &mut dyn Host, shed: &Shed) {
        let targets: Vec<String> = {
            let view = self.book.read();
            shed.to
                .iter()
                .filter(|n| *n != self.me() && view.nodes.get(*n).is_some_and(NodeRecord::is_up))
                .cloned()
                .collect()
        };
        if targets.is_empty() {
            return;
        }
        let mut candidates: Vec<Arc<str>> = {
            let view = self.book.read();
            self.connected
                .keys()
                .filter(|id| !view.pins.contains_key(&***id))
                .cloned()
                .collect()
        };
        candidates.sort();
        let count = usize::try_from(shed.count).unwrap_or(usize::MAX);
        tracing::info!(count, to = ?targets, "cluster: shedding clients for the rebalancer");
        for (id, node) in candidates
            .into_iter()
            .take(count)
            .zip(targets.iter().cycle())
        {
            publish_retained(host, &cluster::assign_topic(&id), Bytes::from(node.clone()));
        }
    }
}

/// Publishes a retained QoS 1 message as the broker.
fn publish_retained(host: &mut dyn Host, topic: &str, payload: Bytes) {
    let Ok(topic) = TopicName::new(topic) else {
        return;
    };
    host.publish(Message {
        topic,
        qos: QoS::AtLeastOnce,
        retain: true,
        properties: Default::default(),
        payload,
        expires_at: None,
    });
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
