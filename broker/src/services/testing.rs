//! A [`Host`] for services' unit tests: records what a service publishes, delivers and
//! routes, keeps retained messages as the router would, knows a set of clients, and has a
//! clock that only the test moves.
//!
//! Owns nothing but test bookkeeping; must never be compiled outside tests. A restart is
//! simulated by building a new [`FakeHost`] from [`FakeHost::retained_messages`] of the old
//! one (with [`FakeHost::with_retained`]) and a new service instance.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use canopy_proto::{Protocol, PublishProperties, QoS, TopicFilter, TopicName};

use super::sys::RouterStats;
use super::{ClientInfo, Disposition, Host, Service};
use crate::message::Message;

/// The fake router.
#[derive(Debug)]
pub struct FakeHost {
    now: Instant,
    /// Everything published through [`Host::publish`], in order.
    pub published: Vec<Message>,
    /// Everything offered through [`Host::deliver`]: client id, message, QoS, retain.
    pub delivered: Vec<(String, Arc<Message>, QoS, bool)>,
    /// Everything passed to [`Host::route`].
    pub routed: Vec<Arc<Message>>,
    /// Topics of retained messages published with [`Host::publish_transient`] (kept, but
    /// not stored).
    pub transient: Vec<String>,
    /// What [`Host::stats`] returns.
    pub stats: RouterStats,
    retained: BTreeMap<String, Arc<Message>>,
    clients: HashMap<String, ClientInfo>,
    /// Subscriptions by client id: filter and granted QoS.
    subscriptions: HashMap<String, Vec<(String, QoS)>>,
    /// Gated subscriptions (client id, filter) and whether each is active now.
    pub gated: BTreeMap<(String, String), bool>,
    /// Every [`Host::move_client`] that found an open connection: client id, reference.
    pub moved: Vec<(String, String)>,
    /// Topics [`Host::may_read`] refuses to every client (as an ACL file would).
    pub read_denied: Vec<String>,
}

impl Default for FakeHost {
    fn default() -> Self {
        FakeHost::new()
    }
}

impl FakeHost {
    /// A host with no clients and no retained messages, its clock at an arbitrary instant.
    pub fn new() -> FakeHost {
        FakeHost {
            now: Instant::now(),
            published: Vec::new(),
            delivered: Vec::new(),
            routed: Vec::new(),
            transient: Vec::new(),
            stats: RouterStats::default(),
            retained: BTreeMap::new(),
            clients: HashMap::new(),
            subscriptions: HashMap::new(),
            gated: BTreeMap::new(),
            moved: Vec::new(),
            read_denied: Vec::new(),
        }
    }

    /// A host holding `retained` (as left by another host: a restart).
    pub fn with_retained(retained: Vec<Arc<Message>>) -> FakeHost {
        let mut host = FakeHost::new();
        for m in retained {
            host.retained.insert(m.topic.as_str().to_owned(), m);
        }
        host
    }

    /// Moves the clock forward.
    pub fn advance(&mut self, by: Duration) {
        self.now += by;
    }

    /// Sets the clock (it may also go back, for tests of clock handling).
    pub fn set_now(&mut self, now: Instant) {
        self.now = now;
    }

    /// A client connects (creating or resuming its session) and is returned as services
    /// see it.
    pub fn connect(&mut self, client_id: &str, persistent: bool, protocol: Protocol) -> ClientInfo {
        let info = ClientInfo {
            client_id: Arc::from(client_id),
            user: None,
            persistent,
            online: true,
            protocol,
            assigned: false,
        };
        self.clients.insert(client_id.to_owned(), info.clone());
        info
    }

    /// As [`FakeHost::connect`], authenticated as `user`.
    pub fn connect_user(&mut self, client_id: &str, user: &str, protocol: Protocol) -> ClientInfo {
        let mut info = self.connect(client_id, false, protocol);
        info.user = Some(Arc::from(user));
        self.clients.insert(client_id.to_owned(), info.clone());
        info
    }

    /// Records a gated subscription, as the router installs one after
    /// [`Service::gate_subscription`] answered `Some(active)`.
    pub fn gate(&mut self, client_id: &str, filter: &str, active: bool) {
        self.gated
            .insert((client_id.to_owned(), filter.to_owned()), active);
    }

    /// Whether `client_id`'s gated subscription to `filter` is active (`None`: no such one).
    pub fn gate_state(&self, client_id: &str, filter: &str) -> Option<bool> {
        self.gated
            .get(&(client_id.to_owned(), filter.to_owned()))
            .copied()
    }

    /// The client's connection ends; a persistent session stays, a clean one is removed.
    /// Returns the client as it was (for `on_disconnect`).
    pub fn disconnect(&mut self, client_id: &str) -> Option<ClientInfo> {
        let info = self.clients.get(client_id)?.clone();
        if info.persistent {
            if let Some(c) = self.clients.get_mut(client_id) {
                c.online = false;
            }
        } else {
            self.clients.remove(client_id);
        }
        Some(info)
    }

    /// The client's session ends for good.
    pub fn end_session(&mut self, client_id: &str) {
        self.clients.remove(client_id);
        self.subscriptions.remove(client_id);
    }

    /// Records that `client_id` holds a subscription to `filter` at `qos`.
    pub fn subscribe(&mut self, client_id: &str, filter: &str, qos: QoS) {
        let subs = self.subscriptions.entry(client_id.to_owned()).or_default();
        subs.retain(|(f, _)| f != filter);
        subs.push((filter.to_owned(), qos));
    }

    /// The retained messages, to start another host from after a simulated restart.
    pub fn retained_messages(&self) -> Vec<Arc<Message>> {
        self.retained.values().cloned().collect()
    }

    /// The retained payload at `topic`, if any.
    pub fn retained_payload(&self, topic: &str) -> Option<Bytes> {
        self.retained.get(topic).map(|m| m.payload.clone())
    }

    /// Stores a retained message as if a client had published it.
    pub fn set_retained(&mut self, msg: Message) {
        self.retain(Arc::new(msg));
    }

    /// Takes everything published so far.
    pub fn take_published(&mut self) -> Vec<Message> {
        std::mem::take(&mut self.published)
    }

    /// The payloads published to `topic` so far, in order.
    pub fn published_to(&self, topic: &str) -> Vec<Bytes> {
        self.published
            .iter()
            .filter(|m| m.topic.as_str() == topic)
            .map(|m| m.payload.clone())
            .collect()
    }

    fn retain(&mut self, msg: Arc<Message>) {
        if msg.payload.is_empty() {
            self.retained.remove(msg.topic.as_str());
        } else {
            self.retained.insert(msg.topic.as_str().to_owned(), msg);
        }
    }
}

/// A QoS 1 message to `topic` (which must be valid) with `payload`, as a client would send.
pub fn message(topic: &str, payload: &[u8]) -> Arc<Message> {
    message_with(topic, payload, PublishProperties::default())
}

/// As [`message`], with 5.0 `properties`.
pub fn message_with(topic: &str, payload: &[u8], properties: PublishProperties) -> Arc<Message> {
    Arc::new(Message {
        topic: TopicName::new(topic).unwrap_or_else(|e| panic!("bad test topic {topic:?}: {e}")),
        qos: QoS::AtLeastOnce,
        retain: false,
        properties: properties.into(),
        payload: Bytes::copy_from_slice(payload),
        expires_at: None,
    })
}

/// Passes `msg` from `from` to `service` if it is one of the service's topics, as the
/// router does; `None` when the service does not want it.
pub fn offer(
    service: &mut dyn Service,
    host: &mut FakeHost,
    from: Option<&ClientInfo>,
    msg: &Arc<Message>,
) -> Option<Disposition> {
    let wanted = service
        .topics()
        .iter()
        .any(|p| msg.topic.as_str().starts_with(p));
    wanted.then(|| service.on_publish(host, from, msg))
}

/// Runs `service`'s timeout if it is due at the host's current time; returns whether it ran.
pub fn fire_due(service: &mut dyn Service, host: &mut FakeHost) -> bool {
    match service.poll_timeout() {
        Some(at) if at <= host.now => {
            service.handle_timeout(host);
            true
        }
        _ => false,
    }
}

impl Host for FakeHost {
    fn may_read(&self, client_id: &str, topic: &str) -> bool {
        self.clients.contains_key(client_id) && !self.read_denied.iter().any(|t| t == topic)
    }

    fn now(&self) -> Instant {
        self.now
    }

    fn publish(&mut self, msg: Message) {
        if msg.retain {
            self.retain(Arc::new(msg.clone()));
        }
        self.published.push(msg);
    }

    fn publish_transient(&mut self, msg: Message) {
        if msg.retain {
            self.transient.push(msg.topic.as_str().to_owned());
        }
        self.publish(msg);
    }

    /// The fake keeps one map for memory and store: a kept document is retained there.
    fn publish_kept(&mut self, msg: Message) {
        self.publish(msg);
    }

    fn drop_kept(&mut self, topic: TopicName) {
        self.retained.remove(topic.as_str());
    }

    /// The fake's map stands for the store too, so the message stays in it.
    fn take_retained(&mut self, topic: &TopicName) -> Option<Arc<Message>> {
        self.retained.get(topic.as_str()).cloned()
    }

    fn retained(&self, topic: &TopicName) -> Option<Arc<Message>> {
        self.retained
            .get(topic.as_str())
            .filter(|m| !m.expired(self.now))
            .cloned()
    }

    fn for_each_retained(
        &self,
        filter: &TopicFilter,
        f: &mut dyn FnMut(&TopicName, &Arc<Message>),
    ) {
        for m in self.retained.values() {
            if filter.matches(&m.topic) && !m.expired(self.now) {
                f(&m.topic, m);
            }
        }
    }

    fn client(&self, client_id: &str) -> Option<ClientInfo> {
        self.clients.get(client_id).cloned()
    }

    fn deliver(&mut self, client_id: &str, msg: Arc<Message>, qos: QoS, retain: bool) -> bool {
        let known = self.clients.contains_key(client_id);
        if known {
            self.delivered
                .push((client_id.to_owned(), msg, qos, retain));
        }
        known
    }

    fn route(&mut self, msg: &Arc<Message>) -> usize {
        self.routed.push(Arc::clone(msg));
        0
    }

    fn subscription_qos(&self, client_id: &str, filter: &str) -> Option<QoS> {
        self.subscriptions
            .get(client_id)?
            .iter()
            .find(|(f, _)| f == filter)
            .map(|(_, q)| *q)
    }

    fn set_subscription_active(&mut self, client_id: &str, filter: &str, active: bool) -> bool {
        match self
            .gated
            .get_mut(&(client_id.to_owned(), filter.to_owned()))
        {
            Some(a) => {
                *a = active;
                true
            }
            None => false,
        }
    }

    fn stats(&self) -> RouterStats {
        self.stats
    }

    fn move_client(&mut self, client_id: &str, reference: &str) -> bool {
        let online = self.clients.get(client_id).is_some_and(|c| c.online);
        if online {
            self.moved
                .push((client_id.to_owned(), reference.to_owned()));
        }
        online
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retained_messages_are_kept_replaced_and_cleared_by_an_empty_payload() {
        let mut host = FakeHost::new();
        let mut m = (*message("a/b", b"1")).clone();
        m.retain = true;
        host.publish(m.clone());
        m.payload = Bytes::from_static(b"2");
        host.publish(m.clone());
        assert_eq!(host.retained_payload("a/b").as_deref(), Some(&b"2"[..]));
        let again = FakeHost::with_retained(host.retained_messages());
        assert_eq!(again.retained_payload("a/b").as_deref(), Some(&b"2"[..]));
        m.payload = Bytes::new();
        host.publish(m);
        assert_eq!(host.retained_payload("a/b"), None);
        assert_eq!(host.published_to("a/b").len(), 3);
    }

    #[test]
    fn clean_clients_vanish_on_disconnect_and_persistent_ones_go_offline() {
        let mut host = FakeHost::new();
        host.connect("clean", false, Protocol::V311);
        host.connect("kept", true, Protocol::V5);
        host.disconnect("clean");
        host.disconnect("kept");
        assert!(host.client("clean").is_none());
        assert!(host.client("kept").is_some_and(|c| !c.online));
        host.end_session("kept");
        assert!(host.client("kept").is_none());
    }

    #[test]
    fn subscriptions_report_their_granted_qos_until_the_session_ends() {
        let mut host = FakeHost::new();
        host.connect("a", true, Protocol::V5);
        host.subscribe("a", "x/#", QoS::AtMostOnce);
        host.subscribe("a", "x/#", QoS::AtLeastOnce);
        assert_eq!(host.subscription_qos("a", "x/#"), Some(QoS::AtLeastOnce));
        assert_eq!(host.subscription_qos("a", "y"), None);
        host.end_session("a");
        assert_eq!(host.subscription_qos("a", "x/#"), None);
    }
}
