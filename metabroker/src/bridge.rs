//! The pump of one bridge: routes messages between the two links, holds every message until
//! its destination acknowledged it (or it is on disk), drains the on-disk queue in order,
//! applies the loop guard and transforms, and publishes state and counters.
//!
//! Owns: the sequence numbers, the in-flight window per destination, source-ack groups and the
//! queue. Must never poll a rumqttc event loop (the links do) and never ack a source message
//! before every copy of it is acknowledged by its destination or stored on disk.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use canopy_client::adapter::new_publish;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{LastWill, Publish};
use tokio::sync::{mpsc, watch};

use crate::BridgeError;
use crate::config::{BridgeConfig, Direction};
use crate::interest::INTEREST_TOPIC;
use crate::link::{Link, LinkEvent, Side};
use crate::message::Message;
use crate::proxy::Proxy;
use crate::queue::{Lane, Queue};
use crate::remap::Remap;
use crate::stats::{BridgeStats, bump};
use crate::transform::{RateLimit, SubSample, Transform};

/// Lane 0 carries local -> remote, lane 1 remote -> local.
const OUT: Lane = 0;
const IN: Lane = 1;
/// Sequence used for the state publish, whose ack nobody waits for.
const STATE_SEQ: u64 = u64::MAX;
/// How long a stopping bridge waits for the acks of its last state note and remote will.
const STOP_ACK_WAIT: Duration = Duration::from_secs(2);

pub(crate) fn qos(n: u8) -> QoS {
    match n {
        0 => QoS::AtMostOnce,
        1 => QoS::AtLeastOnce,
        _ => QoS::ExactlyOnce,
    }
}

/// A route ready to run.
pub(crate) struct Route {
    pub(crate) direction: Direction,
    /// The route's filter in the local namespace.
    pub(crate) local: String,
    /// Subscribe upstream only to what local subscribers want (in/both).
    pub(crate) interest: bool,
    pub(crate) out_map: Remap,
    pub(crate) in_map: Option<Remap>,
    pub(crate) qos: u8,
    pub(crate) transforms: Vec<Box<dyn Transform>>,
}

impl Route {
    pub(crate) fn build(
        config: &crate::config::RouteConfig,
        custom: Vec<Box<dyn Transform>>,
    ) -> Result<Route, BridgeError> {
        let out_map = config.remap().map_err(BridgeError::Route)?;
        let in_map = match config.direction {
            Direction::Out => None,
            _ => Some(out_map.reverse().map_err(BridgeError::Route)?),
        };
        let mut transforms: Vec<Box<dyn Transform>> = Vec::new();
        if let Some(n) = config.sample_every {
            transforms.push(Box::new(SubSample::new(n)));
        }
        if let Some(n) = config.max_rate {
            transforms.push(Box::new(RateLimit::new(n, Duration::from_secs(1))));
        }
        transforms.extend(custom);
        Ok(Route {
            direction: config.direction,
            local: config.local.clone(),
            interest: config.interest && config.direction != Direction::Out,
            out_map,
            in_map,
            qos: config.qos,
            transforms,
        })
    }

    fn map(&self, from: Side, topic: &str) -> Option<String> {
        match (from, self.direction) {
            (Side::Local, Direction::Out | Direction::Both) => self.out_map.apply(topic),
            (Side::Remote, Direction::In | Direction::Both) => {
                self.in_map.as_ref().and_then(|m| m.apply(topic))
            }
            _ => None,
        }
    }
}

enum Origin {
    Group(u64),
    Disk(u64),
}

struct Pending {
    publish: Publish,
    origin: Origin,
    route: usize,
}

struct Group {
    remaining: usize,
    source: Side,
    publish: Box<Publish>,
    epoch: u64,
}

#[derive(Default)]
struct LaneState {
    connected: bool,
    unacked: BTreeMap<u64, Pending>,
    waiting: VecDeque<u64>,
    inflight: usize,
    cursor: Option<u64>,
}

pub(crate) struct Pump {
    pub(crate) config: BridgeConfig,
    pub(crate) routes: Vec<Route>,
    pub(crate) local: Link,
    pub(crate) remote: Link,
    pub(crate) queue: Queue,
    pub(crate) stats: Arc<BridgeStats>,
    pub(crate) proxy: Proxy,
    /// Hop-marker ids of the local and the remote broker.
    ids: [String; 2],
    lanes: [LaneState; 2],
    groups: HashMap<u64, Group>,
    next_seq: u64,
    next_group: u64,
    ever_up: [bool; 2],
}

fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis())
}

pub(crate) fn state_topic(config: &BridgeConfig) -> String {
    format!("{}/{}/state", config.state_prefix, config.name)
}

pub(crate) fn state_payload(state: &str, remote: &str) -> String {
    serde_json::json!({"state": state, "remote": remote, "since": now_ms() as u64}).to_string()
}

pub(crate) fn will(config: &BridgeConfig) -> LastWill {
    LastWill::new(
        state_topic(config),
        state_payload("disconnected", &config.remote.url),
        QoS::AtLeastOnce,
        true,
        None,
    )
}

/// The will a program asked the bridge to leave on its remote broker: retained, QoS 1.
pub(crate) fn remote_will(w: &crate::config::RemoteWill) -> LastWill {
    LastWill::new(
        w.topic.clone(),
        w.payload.clone(),
        QoS::AtLeastOnce,
        true,
        None,
    )
}

fn lane_to(dest: Side) -> Lane {
    match dest {
        Side::Remote => OUT,
        Side::Local => IN,
    }
}

impl Pump {
    pub(crate) fn new(
        config: BridgeConfig,
        routes: Vec<Route>,
        local: Link,
        remote: Link,
        queue: Queue,
        stats: Arc<BridgeStats>,
        proxy_file: Option<PathBuf>,
    ) -> Pump {
        let interest: Vec<bool> = routes.iter().map(|r| r.interest).collect();
        Pump {
            proxy: Proxy::new(&interest, proxy_file),
            ids: [config.broker_id(false), config.broker_id(true)],
            config,
            routes,
            local,
            remote,
            queue,
            stats,
            lanes: [LaneState::default(), LaneState::default()],
            groups: HashMap::new(),
            next_seq: 0,
            next_group: 0,
            ever_up: [false; 2],
        }
    }

    fn link(&self, side: Side) -> &Link {
        match side {
            Side::Local => &self.local,
            Side::Remote => &self.remote,
        }
    }

    /// Whether the remote link is up.
    pub(crate) fn remote_connected(&self) -> bool {
        self.lanes[OUT].connected
    }

    /// Whether the local link is up.
    pub(crate) fn local_connected(&self) -> bool {
        self.lanes[IN].connected
    }

    /// The filters subscribed as a whole on `side` (proxied ones are the proxy's), plus the
    /// local broker's interest document when a route proxies.
    pub(crate) fn filters(&self, side: Side) -> Vec<(String, QoS)> {
        let mut out: Vec<(String, QoS)> = self
            .routes
            .iter()
            .enumerate()
            .filter_map(|(i, r)| {
                let path = match (side, r.direction) {
                    (Side::Local, Direction::Out | Direction::Both) => r.out_map.filter(),
                    (Side::Remote, Direction::In | Direction::Both) if !self.proxy.proxies(i) => {
                        r.in_map.as_ref()?.filter()
                    }
                    _ => return None,
                };
                Some((path, qos(r.qos)))
            })
            .collect();
        if side == Side::Local && self.proxy.active() {
            out.push((INTEREST_TOPIC.to_owned(), QoS::AtMostOnce));
        }
        out
    }

    pub(crate) async fn run(
        mut self,
        mut events: mpsc::UnboundedReceiver<LinkEvent>,
        mut stop: watch::Receiver<bool>,
    ) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let mut last_stats = Vec::new();
        loop {
            tokio::select! {
                event = events.recv() => match event {
                    Some(e) => self.on_event(e).await,
                    None => return,
                },
                _ = tick.tick() => self.publish_stats(&mut last_stats),
                _ = stop.changed() => {
                    let mut waiting = Vec::new();
                    if self.publish_state("disconnected").await {
                        waiting.push(Side::Local);
                    }
                    if self.leave_will().await {
                        waiting.push(Side::Remote);
                    }
                    // Their acks, so that neither is lost with the connection (bounded).
                    let _ = tokio::time::timeout(STOP_ACK_WAIT, async {
                        while !waiting.is_empty() {
                            match events.recv().await {
                                Some(LinkEvent::Acked { side, seq: STATE_SEQ, .. }) => {
                                    waiting.retain(|s| *s != side);
                                }
                                Some(_) => {}
                                None => return,
                            }
                        }
                    })
                    .await;
                    self.local.disconnect().await;
                    self.remote.disconnect().await;
                    return;
                }
            }
        }
    }

    async fn on_event(&mut self, event: LinkEvent) {
        match event {
            LinkEvent::Up {
                side,
                lost,
                session_present,
            } => {
                tracing::info!(bridge = %self.config.name, ?side, session_present, lost = lost.len(), "link up");
                let lane = lane_to(side);
                let idx = usize::from(side == Side::Remote);
                if self.ever_up[idx] {
                    bump(match side {
                        Side::Local => &self.stats.reconnects_local,
                        Side::Remote => &self.stats.reconnects_remote,
                    });
                }
                self.ever_up[idx] = true;
                // One SUBSCRIBE per filter: a broker that refuses one (say `$config/#` for a
                // non-admin) must not take the others down with it.
                for (path, qos) in self.filters(side) {
                    self.link(side).subscribe(path, qos).await;
                }
                for seq in lost {
                    if let Some(p) = self.lanes[lane].unacked.get(&seq) {
                        let publish = p.publish.clone();
                        self.link(side).publish_tracked(seq, publish).await;
                    }
                }
                self.lanes[lane].connected = true;
                match side {
                    Side::Remote => self.sync_proxies(true).await,
                    Side::Local => self.proxy.local_up(),
                }
                self.update_connected().await;
                self.pump(lane).await;
            }
            LinkEvent::Down { side, reason } => {
                tracing::warn!(bridge = %self.config.name, ?side, %reason, "link down");
                self.lanes[lane_to(side)].connected = false;
                if side == Side::Remote {
                    self.proxy.remote_down();
                }
                self.update_connected().await;
            }
            LinkEvent::ProxySubAck {
                filter, confirmed, ..
            } => self.on_proxy_suback(filter, confirmed),
            LinkEvent::Message {
                side,
                publish,
                epoch,
            } => self.on_message(side, publish, epoch).await,
            LinkEvent::Acked {
                side,
                seq,
                accepted,
            } => self.on_acked(side, seq, accepted).await,
        }
    }

    async fn update_connected(&mut self) {
        let both = self.lanes[OUT].connected && self.lanes[IN].connected;
        let was = self
            .stats
            .connected
            .swap(both, std::sync::atomic::Ordering::Relaxed);
        if self.lanes[IN].connected && (both != was || both) {
            self.publish_state(if both { "connected" } else { "disconnected" })
                .await;
        }
    }

    /// At a stop, publishes the remote will itself: a normal DISCONNECT discards the will,
    /// and a stopped bridge is as gone as a dead one (a cluster node that stops is down at
    /// once, not when its record goes stale). Sent before the DISCONNECT on the same
    /// connection, so the broker has it first.
    /// True when it was sent.
    async fn leave_will(&mut self) -> bool {
        let Some(will) = self.config.remote_will.clone() else {
            return false;
        };
        if !self.remote_connected() {
            return false;
        }
        // The same QoS and retain flag as the will of `remote_will`, and the hop marker of
        // a message carried from the local broker: the broker above accepts records of
        // other brokers only from bridges.
        let mut m = Message::new(will.topic, will.payload, 1);
        m.retain = true;
        m.push_path(&self.ids[0], &self.config.name, &self.ids[1]);
        self.remote.publish_tracked(STATE_SEQ, m.to_publish()).await
    }

    /// Publishes the bridge's state on the local broker; true when it was sent.
    async fn publish_state(&mut self, state: &str) -> bool {
        if !self.lanes[IN].connected {
            return false;
        }
        let topic = state_topic(&self.config);
        let payload = state_payload(state, &self.config.remote.url);
        let publish = new_publish(topic, QoS::AtLeastOnce, true, payload, None);
        self.local.publish_tracked(STATE_SEQ, publish).await
    }

    fn publish_stats(&self, last: &mut Vec<(String, u64)>) {
        use std::sync::atomic::Ordering::Relaxed;
        self.stats.queue_out.store(self.queue.len(OUT), Relaxed);
        self.stats.queue_in.store(self.queue.len(IN), Relaxed);
        if !self.lanes[IN].connected {
            return;
        }
        let now = self.stats.snapshot();
        for (i, (key, value)) in now.iter().enumerate() {
            if last.get(i).is_some_and(|(_, v)| v == value) {
                continue;
            }
            let topic = format!("{}/{}/{key}", self.config.state_prefix, self.config.name);
            let note = new_publish(topic, QoS::AtMostOnce, true, value.to_string(), None);
            self.local.try_publish(note);
        }
        *last = now;
    }

    async fn on_message(&mut self, side: Side, publish: Box<Publish>, epoch: u64) {
        if side == Side::Local && self.proxy.active() && publish.topic == INTEREST_TOPIC.as_bytes()
        {
            self.on_interest(&publish.payload).await;
            self.local.ack(&publish, epoch).await;
            return;
        }
        let message = Message::from_v5(&publish);
        tracing::debug!(bridge = %self.config.name, ?side, topic = %message.topic, qos = message.qos, "message in");
        let group = self.next_group;
        self.next_group += 1;
        self.groups.insert(
            group,
            Group {
                remaining: 0,
                source: side,
                publish,
                epoch,
            },
        );
        let dest = match side {
            Side::Local => Side::Remote,
            Side::Remote => Side::Local,
        };
        let (from_id, to_id) = match side {
            Side::Local => (&self.ids[0], &self.ids[1]),
            Side::Remote => (&self.ids[1], &self.ids[0]),
        };
        if message.hops().contains(&self.config.name.as_str())
            || message.node_count() >= self.config.max_hops
            || message.visited(to_id)
        {
            bump(&self.stats.loops);
        } else {
            let (from_id, to_id) = (from_id.clone(), to_id.clone());
            let now = Instant::now();
            for ri in 0..self.routes.len() {
                let Some(topic) = self.routes[ri].map(side, &message.topic) else {
                    continue;
                };
                let mut m = message.clone();
                m.topic = topic;
                m.qos = m.qos.min(self.routes[ri].qos);
                let mut batch = vec![m];
                for t in self.routes[ri].transforms.iter_mut() {
                    batch = batch.into_iter().flat_map(|m| t.apply(m, now)).collect();
                }
                if batch.is_empty() {
                    bump(&self.stats.routes[ri].filtered);
                }
                for mut m in batch {
                    m.push_path(&from_id, &self.config.name, &to_id);
                    self.dispatch(dest, ri, m, group).await;
                }
            }
        }
        self.settle(group).await;
    }

    async fn dispatch(&mut self, dest: Side, route: usize, m: Message, group: u64) {
        let lane = lane_to(dest);
        let publish = m.to_publish();
        let stats = &self.stats.routes[route];
        if m.qos == 0 {
            if self.lanes[lane].connected {
                let sent = self.link(dest).try_publish(publish);
                bump(if sent {
                    &stats.forwarded
                } else {
                    &stats.dropped
                });
            } else {
                bump(&stats.dropped);
            }
            return;
        }
        let direct = self.lanes[lane].connected && self.queue.is_empty(lane);
        if direct {
            let seq = self.next_seq;
            self.next_seq += 1;
            self.lanes[lane].unacked.insert(
                seq,
                Pending {
                    publish,
                    origin: Origin::Group(group),
                    route,
                },
            );
            self.lanes[lane].waiting.push_back(seq);
            if let Some(g) = self.groups.get_mut(&group) {
                g.remaining += 1;
            }
            self.pump(lane).await;
            return;
        }
        match self.queue.push(lane, route, &m) {
            Ok(true) => bump(&stats.queued),
            Ok(false) => {
                bump(&stats.dropped);
                self.announce_drop(route, &m.topic, "queue full");
            }
            Err(e) => {
                tracing::error!(error = %e, "queue write failed");
                bump(&stats.dropped);
                self.announce_drop(route, &m.topic, "queue write failed");
            }
        }
    }

    fn announce_drop(&self, route: usize, topic: &str, why: &str) {
        let total = self.stats.routes[route]
            .dropped
            .load(std::sync::atomic::Ordering::Relaxed);
        tracing::warn!(bridge = %self.config.name, route, topic, why, total, "message dropped");
        if self.lanes[IN].connected {
            let payload =
                serde_json::json!({"route": route, "topic": topic, "reason": why, "total": total});
            let topic = format!(
                "{}/{}/dropped/last",
                self.config.state_prefix, self.config.name
            );
            let note = new_publish(topic, QoS::AtMostOnce, false, payload.to_string(), None);
            self.local.try_publish(note);
        }
    }

    /// Sends waiting messages, then queued ones, while the destination's window has room.
    async fn pump(&mut self, lane: Lane) {
        let dest = if lane == OUT {
            Side::Remote
        } else {
            Side::Local
        };
        let max = usize::from(self.config.max_inflight);
        loop {
            let l = &mut self.lanes[lane];
            if !l.connected || l.inflight >= max {
                return;
            }
            if let Some(seq) = l.waiting.pop_front() {
                l.inflight += 1;
                if let Some(p) = l.unacked.get(&seq) {
                    let publish = p.publish.clone();
                    self.link(dest).publish_tracked(seq, publish).await;
                }
                continue;
            }
            let room = max - l.inflight;
            let batch = match self.queue.peek(lane, l.cursor, room) {
                Ok(b) => b,
                Err(e) => {
                    tracing::error!(error = %e, "queue read failed");
                    return;
                }
            };
            if batch.is_empty() {
                return;
            }
            for (key, route, m) in batch {
                let publish = m.to_publish();
                let seq = self.next_seq;
                self.next_seq += 1;
                let l = &mut self.lanes[lane];
                l.cursor = Some(key);
                l.inflight += 1;
                l.unacked.insert(
                    seq,
                    Pending {
                        publish: publish.clone(),
                        origin: Origin::Disk(key),
                        route,
                    },
                );
                self.link(dest).publish_tracked(seq, publish).await;
            }
        }
    }

    async fn on_acked(&mut self, dest: Side, seq: u64, accepted: bool) {
        if seq == STATE_SEQ {
            return;
        }
        let lane = lane_to(dest);
        let Some(p) = self.lanes[lane].unacked.remove(&seq) else {
            return;
        };
        self.lanes[lane].inflight = self.lanes[lane].inflight.saturating_sub(1);
        if let Some(stats) = self.stats.routes.get(p.route) {
            if accepted {
                bump(&stats.forwarded);
            } else {
                bump(&stats.dropped);
                self.announce_drop(
                    p.route,
                    &String::from_utf8_lossy(&p.publish.topic),
                    "refused by destination",
                );
            }
        }
        match p.origin {
            Origin::Group(g) => {
                if let Some(group) = self.groups.get_mut(&g) {
                    group.remaining = group.remaining.saturating_sub(1);
                }
                self.settle(g).await;
            }
            Origin::Disk(key) => {
                if let Err(e) = self.queue.remove(lane, key) {
                    tracing::error!(error = %e, "queue remove failed");
                }
            }
        }
        self.pump(lane).await;
    }

    /// Acks the source message of `group` once no copy of it is still unacknowledged.
    async fn settle(&mut self, group: u64) {
        if self.groups.get(&group).is_some_and(|g| g.remaining == 0)
            && let Some(g) = self.groups.remove(&group)
        {
            self.link(g.source).ack(&g.publish, g.epoch).await;
        }
    }
}
