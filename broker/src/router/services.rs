//! The router's side of the topic services (SPEC §5): `$status/<client-id>` documents,
//! the access rules of reserved prefixes, configuration documents with their
//! `$config/default` fallback, and the map carousels.
//!
//! Owns the services' small state; publishes through the router like any client would.
//! Never blocks and never touches sockets.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use canopy_model::bridge::{local_client_id, name_of_default_local};
use canopy_proto::{TopicFilter, TopicName};

use super::session::{Delivery, Offer};
use super::{Retained, Router, Timer};
use crate::config::Config;
use crate::message::Message;
use crate::metrics::Metrics;
use crate::services::status::{STATUS_PREFIX, State, StatusBook, StatusDoc};

pub use canopy_model::config_doc::{CONFIG_DEFAULT, CONFIG_PREFIX};
/// Seconds an `offline` status document stays retained (one day).
pub const OFFLINE_STATUS_EXPIRY: u32 = 86_400;

/// One carousel's progress through its period.
#[derive(Debug)]
pub struct CarouselState {
    filter: TopicFilter,
    period: Duration,
    max_bytes_per_sec: u64,
    /// Topics still to send in this round.
    pending: VecDeque<TopicName>,
    /// When this round began.
    round_start: Option<Instant>,
    /// Time between two shares.
    tick: Duration,
    /// Messages per share.
    per_tick: usize,
}

/// State of the services inside the router.
#[derive(Debug)]
pub struct Services {
    node_id: String,
    status: Arc<StatusBook>,
    admins: Vec<String>,
    /// Sessions subscribed to exactly their own `$config/<client-id>`, by client id.
    config_watchers: HashMap<Arc<str>, usize>,
    carousels: Vec<CarouselState>,
    /// Embedded bridges' local client ids and the state prefix each may write
    /// (`<state_prefix>/<name>/`), even under `$SYS`.
    bridge_writers: Vec<(String, String)>,
}

impl Services {
    /// Services as configured.
    pub fn new(config: &Config, status: Arc<StatusBook>, _now: Instant) -> Services {
        Services {
            node_id: config.node_id.clone(),
            status,
            admins: config.config_docs.admins.clone(),
            config_watchers: HashMap::new(),
            bridge_writers: config
                .bridge
                .iter()
                .map(|b| {
                    let id = local_client_id(&b.name, b.local.client_id.as_deref());
                    (id, format!("{}/{}/", b.state_prefix, b.name))
                })
                .collect(),
            carousels: config
                .carousel
                .iter()
                .map(|c| CarouselState {
                    filter: c.filter.clone(),
                    period: c.period,
                    max_bytes_per_sec: c.max_bytes_per_sec,
                    pending: VecDeque::new(),
                    round_start: None,
                    tick: c.period,
                    per_tick: 1,
                })
                .collect(),
        }
    }

    fn is_admin(&self, client_id: &str) -> bool {
        self.admins.iter().any(|a| a == client_id)
    }

    /// Why `client_id` may not publish to `topic`, if it may not: `$SYS` and `$status`
    /// belong to the broker; `$config` to admins.
    pub fn publish_denied(&self, client_id: &str, topic: &str) -> Option<&'static str> {
        if self
            .bridge_writers
            .iter()
            .any(|(id, prefix)| id == client_id && topic.starts_with(prefix.as_str()))
        {
            return None; // an embedded bridge's own state and counters
        }
        // A metabroker with its default local client id `<name>-local` writes its state
        // under `$SYS/metabroker/<name>/` (docs/metabroker.md).
        if let (Some(rest), Some(name)) = (
            topic.strip_prefix("$SYS/metabroker/"),
            name_of_default_local(client_id),
        ) && rest.strip_prefix(name).is_some_and(|r| r.starts_with('/'))
        {
            return None;
        }
        if topic.starts_with("$SYS") {
            return Some("$SYS topics are written by the broker only");
        }
        if topic.starts_with(STATUS_PREFIX) || topic == "$status" {
            return Some("$status topics are written by the broker only");
        }
        if (topic.starts_with(CONFIG_PREFIX) || topic == "$config") && !self.is_admin(client_id) {
            return Some("only admins write configuration documents");
        }
        None
    }

    /// Why a PUBLISH forwarded by a metabroker (it carries the hop marker) may not be
    /// written, if it may not. The hierarchy topics (SPEC §4) cross brokers this way:
    /// `$status`, `$presence` and `$cluster` documents of other nodes come up, `$config`
    /// documents come down. A status document of a client connected *here* is never
    /// overwritten from elsewhere (`online_here`). `$SYS` stays the broker's own.
    pub fn bridged_publish_denied(
        &self,
        topic: &str,
        online_here: impl Fn(&str) -> bool,
    ) -> Option<&'static str> {
        if topic.starts_with("$SYS") {
            return Some("$SYS topics are written by the broker only");
        }
        if let Some(id) = topic.strip_prefix(STATUS_PREFIX)
            && online_here(id)
        {
            return Some("the client is connected to this broker; its status is kept here");
        }
        None
    }

    /// Records a status document that arrived from another broker (forwarded by a
    /// metabroker) so that the DNS listener knows it; anything else is ignored.
    pub fn learn_status(&self, topic: &str, payload: &[u8]) {
        let Some(id) = topic.strip_prefix(STATUS_PREFIX) else {
            return;
        };
        if let Some(doc) = serde_json::from_slice::<serde_json::Value>(payload)
            .ok()
            .as_ref()
            .and_then(StatusDoc::from_value)
        {
            self.status.set(id, doc);
        }
    }

    /// Why `client_id` may not subscribe to `filter`, if it may not: configuration
    /// documents are read by their own client and by admins only.
    pub fn subscribe_denied(&self, client_id: &str, filter: &str) -> Option<&'static str> {
        let inner = canopy_proto::TopicFilter::new(filter)
            .ok()
            .and_then(|f| canopy_proto::SharedFilter::parse(&f).ok().flatten())
            .map(|s| s.filter.to_string())
            .unwrap_or_else(|| filter.to_string());
        // Filters starting with a wildcard never match `$` topics [MQTT-4.7.2-1].
        if !inner.starts_with("$config") || self.is_admin(client_id) {
            return None;
        }
        if inner.strip_prefix(CONFIG_PREFIX) == Some(client_id) {
            return None;
        }
        Some("configuration documents are readable by their own client and admins only")
    }
}

impl Router {
    /// Publishes `$status/<client_id>` and records it for the DNS listener.
    pub(super) fn set_status(&mut self, now: Instant, client_id: &str, state: State, reason: &str) {
        let doc = StatusDoc::now(state, &self.services.node_id, reason);
        let payload = Bytes::from(doc.to_json());
        self.services.status.set(client_id, doc);
        // Offline documents expire, so that client ids that never come back (random
        // ones of throw-away clients) do not pile up for ever.
        let expiry = (state == State::Offline).then_some(OFFLINE_STATUS_EXPIRY);
        if let Ok(topic) = TopicName::new(&format!("{STATUS_PREFIX}{client_id}")) {
            self.publish_service(now, topic, payload, expiry);
        }
    }

    /// Publishes a retained, durable QoS 0 message of the broker's own, with a Message
    /// Expiry Interval in seconds if given.
    pub(super) fn publish_service(
        &mut self,
        now: Instant,
        topic: TopicName,
        payload: Bytes,
        expiry: Option<u32>,
    ) {
        let msg = Arc::new(Message {
            topic,
            qos: canopy_proto::QoS::AtMostOnce,
            retain: true,
            properties: canopy_proto::PublishProperties {
                message_expiry_interval: expiry,
                ..Default::default()
            },
            payload,
            expires_at: Message::expiry_from(now, expiry),
        });
        self.set_retained(&msg, true);
        self.route(now, None, &msg);
        self.fire_triggers(now, &msg.topic);
    }

    /// After a restart, nobody is connected: retained `online` documents turn
    /// `offline` (reason `broker restart`), and the status book learns every document.
    pub(super) fn restore_statuses(&mut self, now: Instant) {
        let Ok(filter) = TopicFilter::new("$status/+") else {
            return;
        };
        let mut stale = Vec::new();
        self.retained.for_each_match(&filter, |topic, r| {
            let Some(id) = topic.strip_prefix(STATUS_PREFIX) else {
                return;
            };
            let Ok(doc) = serde_json::from_slice::<serde_json::Value>(&r.msg.payload) else {
                return;
            };
            if doc.get("state").and_then(|s| s.as_str()) == Some("online") {
                stale.push(id.to_string());
            } else if let Some(d) = StatusDoc::from_value(&doc) {
                self.services.status.set(id, d);
            }
        });
        for id in stale {
            self.set_status(now, &id, State::Offline, "broker restart");
        }
    }

    /// After a session subscribed to its own `$config/<client-id>`: remembers it, and if
    /// it has no document, delivers `$config/default` on its own topic.
    pub(super) fn config_subscribed(&mut self, now: Instant, key: usize, filter: &str) {
        let Some(s) = self.sessions.get(key) else {
            return;
        };
        if filter.strip_prefix(CONFIG_PREFIX) != Some(&*s.client_id) {
            return;
        }
        let client_id = s.client_id.clone();
        self.services.config_watchers.insert(client_id.clone(), key);
        let own = TopicName::new(filter).ok();
        if own.as_ref().is_some_and(|t| self.retained.get(t).is_some()) {
            return;
        }
        let default = TopicName::new(CONFIG_DEFAULT)
            .ok()
            .and_then(|t| self.retained.get(&t).map(|r| r.msg.clone()));
        if let (Some(own), Some(msg)) = (own, default) {
            let qos = self
                .sessions
                .get(key)
                .and_then(|s| s.subscriptions.get(filter))
                .map(|e| e.options.qos);
            self.offer_rewritten(now, key, &msg, own, qos.unwrap_or_default(), true);
        }
    }

    /// Forgets a `$config` watcher.
    pub(super) fn config_unsubscribed(&mut self, key: usize, filter: &str) {
        if let Some(s) = self.sessions.get(key)
            && filter.strip_prefix(CONFIG_PREFIX) == Some(&*s.client_id)
        {
            self.services.config_watchers.remove(&s.client_id);
        }
    }

    /// A new `$config/default` was published: every watcher without a document of its
    /// own receives it on its own topic.
    pub(super) fn config_default_changed(&mut self, now: Instant, msg: &Arc<Message>) {
        let watchers: Vec<(Arc<str>, usize)> = self
            .services
            .config_watchers
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        for (client_id, key) in watchers {
            let Ok(own) = TopicName::new(&format!("{CONFIG_PREFIX}{client_id}")) else {
                continue;
            };
            if self.retained.get(&own).is_some() {
                continue;
            }
            let qos = self
                .sessions
                .get(key)
                .and_then(|s| s.subscriptions.get(own.as_str()))
                .map(|e| e.options.qos);
            let Some(qos) = qos else {
                self.services.config_watchers.remove(&client_id);
                continue;
            };
            self.offer_rewritten(now, key, msg, own, qos, false);
        }
    }

    fn offer_rewritten(
        &mut self,
        now: Instant,
        key: usize,
        msg: &Arc<Message>,
        topic: TopicName,
        qos: canopy_proto::QoS,
        retain: bool,
    ) {
        let copy = Arc::new(Message {
            topic,
            ..(**msg).clone()
        });
        let Some(s) = self.sessions.get_mut(key) else {
            return;
        };
        let d = Delivery {
            seq: 0,
            msg: copy,
            qos: qos.min(msg.qos),
            retain,
            sub_ids: Vec::new(),
        };
        if let Offer::Dropped(n) = s.offer(d, &self.limits, now, &mut self.journal) {
            Metrics::add(&self.metrics.messages_dropped, n as u64);
        }
    }

    /// Starts every carousel's first round.
    pub(super) fn schedule_carousels(&mut self, now: Instant) {
        for index in 0..self.services.carousels.len() {
            self.timers.insert((now, Timer::Carousel { index }));
        }
    }

    /// Sends the next share of a carousel and schedules the one after. A round takes
    /// the retained messages under the filter as they stand when it begins and spreads
    /// them evenly over `period`; the byte cap stretches a round rather than bursting.
    pub(super) fn carousel_tick(&mut self, now: Instant, index: usize) {
        let Some(c) = self.services.carousels.get_mut(index) else {
            return;
        };
        if c.pending.is_empty() {
            if let Some(start) = c.round_start {
                let next = start + c.period;
                if now < next {
                    self.timers.insert((next, Timer::Carousel { index }));
                    return;
                }
            }
            let filter = c.filter.clone();
            let mut topics = VecDeque::new();
            self.retained
                .for_each_match(&filter, |t, _| topics.push_back(t.clone()));
            let Some(c) = self.services.carousels.get_mut(index) else {
                return;
            };
            c.round_start = Some(now);
            let n = topics.len().max(1) as u32;
            c.tick = (c.period / n).max(Duration::from_millis(10));
            let ticks = (c.period.as_secs_f64() / c.tick.as_secs_f64()).max(1.0);
            c.per_tick = ((topics.len() as f64) / ticks).ceil().max(1.0) as usize;
            c.pending = topics;
            if c.pending.is_empty() {
                self.timers
                    .insert((now + c.period, Timer::Carousel { index }));
                return;
            }
        }
        let Some(c) = self.services.carousels.get_mut(index) else {
            return;
        };
        let budget = if c.max_bytes_per_sec == 0 {
            u64::MAX
        } else {
            ((c.max_bytes_per_sec as f64) * c.tick.as_secs_f64()).max(1.0) as u64
        };
        let (per_tick, tick) = (c.per_tick, c.tick);
        let mut batch = Vec::with_capacity(per_tick);
        for _ in 0..per_tick {
            match c.pending.pop_front() {
                Some(t) => batch.push(t),
                None => break,
            }
        }
        let mut spent = 0u64;
        let mut sent = 0;
        for topic in &batch {
            if spent >= budget {
                break;
            }
            sent += 1;
            let Some(Retained { msg, .. }) = self.retained.get(topic).cloned() else {
                continue;
            };
            if msg.expired(now) {
                continue;
            }
            let deliveries = self.route(now, None, &msg) as u64;
            spent = spent.saturating_add(msg.payload.len() as u64 * deliveries);
        }
        if let Some(c) = self.services.carousels.get_mut(index) {
            // What the byte cap held back goes first next time.
            for t in batch.into_iter().skip(sent).rev() {
                c.pending.push_front(t);
            }
            let wait = if spent > budget && budget > 0 {
                tick.mul_f64((spent as f64 / budget as f64).min(100.0))
            } else {
                tick
            };
            self.timers.insert((now + wait, Timer::Carousel { index }));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn services(admins: &[&str]) -> Services {
        let mut cfg = Config::ephemeral();
        cfg.config_docs.admins = admins.iter().map(|s| s.to_string()).collect();
        Services::new(&cfg, Arc::new(StatusBook::new()), Instant::now())
    }

    #[test]
    fn broker_topics_are_not_writable_by_clients() {
        let s = services(&["admin"]);
        assert!(s.publish_denied("dev", "$SYS/broker/uptime").is_some());
        assert!(s.publish_denied("dev", "$status/dev").is_some());
        assert!(s.publish_denied("admin", "$status/dev").is_some());
        assert!(s.publish_denied("dev", "$config/dev").is_some());
        assert!(s.publish_denied("admin", "$config/dev").is_none());
        assert!(s.publish_denied("dev", "a/b").is_none());
        assert!(
            s.publish_denied("site-local", "$SYS/metabroker/site/state")
                .is_none()
        );
        assert!(
            s.publish_denied("site-local", "$SYS/metabroker/other/state")
                .is_some()
        );
        assert!(
            s.publish_denied("site", "$SYS/metabroker/site/state")
                .is_some()
        );
    }

    #[test]
    fn forwarded_status_documents_reach_the_status_book() {
        let book = Arc::new(StatusBook::new());
        let s = Services::new(&Config::ephemeral(), book.clone(), Instant::now());
        s.learn_status(
            "$status/far",
            br#"{"state":"online","since":5,"node":"site","reason":"connected"}"#,
        );
        s.learn_status("$status/junk", b"not json");
        s.learn_status("other/far", br#"{"state":"online","since":5,"node":"x"}"#);
        assert_eq!(book.get("far").map(|d| d.node), Some("site".to_string()));
        assert!(book.get("junk").is_none());
    }

    #[test]
    fn bridged_hierarchy_topics_are_accepted_except_local_truth_and_sys() {
        let s = services(&[]);
        assert!(s.bridged_publish_denied("$status/far", |_| false).is_none());
        assert!(
            s.bridged_publish_denied("$status/near", |id| id == "near")
                .is_some()
        );
        assert!(s.bridged_publish_denied("$config/dev", |_| false).is_none());
        assert!(
            s.bridged_publish_denied("$SYS/broker/uptime", |_| false)
                .is_some()
        );
    }

    #[test]
    fn config_documents_are_read_by_their_client_and_admins() {
        let s = services(&["admin"]);
        assert!(s.subscribe_denied("dev", "$config/dev").is_none());
        assert!(s.subscribe_denied("dev", "$config/other").is_some());
        assert!(s.subscribe_denied("dev", "$config/#").is_some());
        assert!(s.subscribe_denied("dev", "$config/+").is_some());
        assert!(
            s.subscribe_denied("dev", "$share/g/$config/other")
                .is_some()
        );
        assert!(s.subscribe_denied("admin", "$config/#").is_none());
        assert!(s.subscribe_denied("dev", "#").is_none());
        assert!(s.subscribe_denied("dev", "a/#").is_none());
    }
}
