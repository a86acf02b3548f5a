//! The router's side of the service modules: which services are registered, the
//! [`Host`] view they get of the router, and the dispatch of events to them.
//!
//! Owns the registration list and the rule that a service's hooks run with the
//! services taken out of the router, so a service never re-enters itself: what a hook
//! publishes is queued and published through the broker's publish path once the hook
//! has returned, where other services see it too. It never decides access (that is
//! `crate::access`) and never holds service state.

use std::sync::Arc;
use std::time::Instant;

use canopy_proto::{Protocol, QoS, TopicFilter, TopicName};

use super::session::{Conn, Delivery, Offer, Session};
use super::{Retained, Router};
use crate::config::Config;
use crate::message::Message;
use crate::metrics::Metrics;
use crate::services::carousel::Carousels;
use crate::services::cluster::{ClusterBook, ClusterService};
use crate::services::config_docs::ConfigDocs;
use crate::services::status::{StatusBook, StatusService};
use crate::services::sys::{RouterStats, SysService};
use crate::services::{ClientInfo, Disposition, Host, Service};

/// The services a broker runs, in the order they see events. A new service is one
/// line here.
pub fn registered(
    config: &Config,
    metrics: &Arc<Metrics>,
    status: &Arc<StatusBook>,
    cluster: Option<&Arc<ClusterBook>>,
    now: Instant,
) -> Vec<Box<dyn Service>> {
    let mut services: Vec<Box<dyn Service>> = vec![
        Box::new(StatusService::new(&config.node_id, status.clone())),
        Box::new(ConfigDocs::new()),
        Box::new(Carousels::new(&config.carousel, now)),
        Box::new(SysService::new(metrics.clone(), config.sys_interval, now)),
        Box::new(crate::services::resources::ResourceService::new(config)),
        Box::new(crate::services::presence::PresenceService::new(
            &config.presence,
        )),
        Box::new(crate::services::interest::InterestService::new()),
        Box::new(crate::services::client_pages::ClientPages::new()),
    ];
    services.extend(
        cluster
            .and_then(|b| ClusterService::new(config, b.clone(), metrics.clone(), now))
            .map(|s| Box::new(s) as Box<dyn Service>),
    );
    services
}

/// What a service may know of a session.
pub fn client_info(s: &Session, conn: Option<&Conn>) -> ClientInfo {
    let conn = conn.or(s.conn.as_ref());
    ClientInfo {
        client_id: s.client_id.clone(),
        user: s.user.clone(),
        persistent: s.persistent(),
        online: s.online(),
        protocol: conn.map_or(Protocol::V311, |c| c.protocol),
        assigned: s.assigned_id,
    }
}

/// Where a retained message of the broker's own is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Keep {
    /// In the router's memory and in the store.
    Stored,
    /// In the router's memory only (`$SYS` figures).
    Memory,
    /// In the store only: the service that published it keeps it
    /// ([`crate::services::KeptDocs`]).
    Service,
}

/// The router as a service sees it, while the services are taken out.
struct RouterHost<'a> {
    router: &'a mut Router,
    now: Instant,
    /// Publishes queued by the hook, and where each is kept when retained.
    pending: Vec<(Message, Keep)>,
}

impl Host for RouterHost<'_> {
    fn now(&self) -> Instant {
        self.now
    }

    fn may_read(&self, client_id: &str, topic: &str) -> bool {
        let r = &self.router;
        r.by_id
            .get(client_id)
            .is_some_and(|&key| r.may_deliver(key, topic))
    }

    fn publish(&mut self, msg: Message) {
        self.pending.push((msg, Keep::Stored));
    }

    fn publish_transient(&mut self, msg: Message) {
        self.pending.push((msg, Keep::Memory));
    }

    fn publish_kept(&mut self, msg: Message) {
        self.pending.push((msg, Keep::Service));
    }

    fn drop_kept(&mut self, topic: TopicName) {
        self.router
            .journal
            .record(|| crate::store::Mutation::DeleteRetained(topic));
    }

    fn take_retained(&mut self, topic: &TopicName) -> Option<Arc<Message>> {
        self.router.forget_retained(topic)
    }

    fn retained(&self, topic: &TopicName) -> Option<Arc<Message>> {
        let r = &self.router;
        r.kept
            .iter()
            .filter(|k| topic.starts_with(k.prefix()))
            .find_map(|k| k.get(self.now, topic))
            .or_else(|| r.retained.get(topic).map(|r| r.msg.clone()))
            .filter(|m| !m.expired(self.now))
    }

    fn for_each_retained(
        &self,
        filter: &TopicFilter,
        f: &mut dyn FnMut(&TopicName, &Arc<Message>),
    ) {
        let now = self.now;
        self.router
            .retained
            .for_each_match(filter, |t, r: &Retained| {
                if !r.msg.expired(now) {
                    f(t, &r.msg);
                }
            });
        for k in &self.router.kept {
            k.for_each_match(now, filter, f);
        }
    }

    fn client(&self, client_id: &str) -> Option<ClientInfo> {
        let r = &self.router;
        let s = r.by_id.get(client_id).and_then(|&k| r.sessions.get(k))?;
        Some(client_info(s, None))
    }

    fn deliver(&mut self, client_id: &str, msg: Arc<Message>, qos: QoS, retain: bool) -> bool {
        let r = &mut *self.router;
        let Some(s) = r.by_id.get(client_id).and_then(|&k| r.sessions.get_mut(k)) else {
            return false;
        };
        let d = Delivery {
            seq: 0,
            msg,
            qos,
            retain,
            sub_ids: Vec::new(),
        };
        if let Offer::Dropped(n) = s.offer(d, &r.limits, self.now, &mut r.journal) {
            Metrics::add(&r.metrics.messages_dropped, n as u64);
        }
        true
    }

    fn route(&mut self, msg: &Arc<Message>) -> usize {
        self.router.route(self.now, None, msg)
    }

    fn subscription_qos(&self, client_id: &str, filter: &str) -> Option<QoS> {
        let r = &self.router;
        let s = r.by_id.get(client_id).and_then(|&k| r.sessions.get(k))?;
        s.subscriptions.get(filter).map(|e| e.options.qos)
    }

    fn set_subscription_active(&mut self, client_id: &str, filter: &str, active: bool) -> bool {
        let r = &mut *self.router;
        let Some(&key) = r.by_id.get(client_id) else {
            return false;
        };
        let Some((name, gated)) = r.sessions.get(key).and_then(|s| {
            s.subscriptions
                .get_key_value(filter)
                .map(|(k, e)| (k.clone(), e.activation.is_some()))
        }) else {
            return false;
        };
        if gated {
            r.set_active(self.now, key, &name, active);
        }
        gated
    }

    fn subscription_filter(&self, client_id: &str, filter: &str) -> Option<Arc<str>> {
        let r = &self.router;
        let s = r.by_id.get(client_id).and_then(|&k| r.sessions.get(k))?;
        s.subscriptions
            .get_key_value(filter)
            .map(|(k, _)| k.clone())
    }

    fn subscription_active(&self, client_id: &str, filter: &str) -> Option<bool> {
        let r = &self.router;
        let s = r.by_id.get(client_id).and_then(|&k| r.sessions.get(k))?;
        let e = s.subscriptions.get(filter)?;
        Some(e.activation.as_ref().is_none_or(|a| a.active))
    }

    fn stats(&self) -> RouterStats {
        self.router.stats()
    }

    fn move_client(&mut self, client_id: &str, reference: &str) -> bool {
        let r = &self.router;
        let Some(c) = r
            .by_id
            .get(client_id)
            .and_then(|&k| r.sessions.get(k))
            .and_then(|s| s.conn.as_ref())
        else {
            return false;
        };
        tracing::info!(client_id, reference, "moving client to another node");
        c.outbox
            .push(crate::outbox::Outgoing::Moved(reference.to_owned()))
    }

    fn release_suback(&mut self, ticket: u64, confirmed: bool) {
        self.router.release_suback(ticket, confirmed);
    }

    fn for_each_subscription(&self, f: &mut dyn FnMut(&str, &str, bool)) {
        for (_, s) in &self.router.sessions {
            for (filter, e) in &s.subscriptions {
                f(
                    &s.client_id,
                    filter,
                    e.activation.as_ref().is_none_or(|a| a.active),
                );
            }
        }
    }
}

impl Router {
    /// Runs `f` for every service whose `wants` says yes, with a [`Host`] on this
    /// router; then publishes what the hooks queued. Returns how many messages that was.
    pub(super) fn with_services(
        &mut self,
        now: Instant,
        mut f: impl FnMut(&mut dyn Service, &mut dyn Host),
    ) -> usize {
        let mut services = std::mem::take(&mut self.services);
        let mut host = RouterHost {
            router: self,
            now,
            pending: Vec::new(),
        };
        for s in services.iter_mut() {
            f(s.as_mut(), &mut host);
        }
        let pending = std::mem::take(&mut host.pending);
        // A hook may have registered services meanwhile only by a bug; keep ours.
        self.services = services;
        let published = pending.len();
        for (msg, keep) in pending {
            self.publish_broker(now, msg, keep);
        }
        published
    }

    /// Publishes a message of the broker's own (a service's): retained where `keep`
    /// says, routed, seen by activation triggers and by the services.
    pub(super) fn publish_broker(&mut self, now: Instant, msg: Message, keep: Keep) {
        let msg = Arc::new(msg);
        if self.services_publish(now, None, &msg) == Disposition::Consume {
            return;
        }
        if msg.retain {
            match keep {
                Keep::Stored => self.set_retained(&msg, true),
                Keep::Memory => self.set_retained(&msg, false),
                Keep::Service => self.set_kept(&msg),
            }
        }
        self.route(now, None, &msg);
        self.fire_triggers(now, &msg.topic);
    }

    /// Lets the services whose topics `msg` falls under see it; `Consume` if one of
    /// them consumed it.
    pub(super) fn services_publish(
        &mut self,
        now: Instant,
        from: Option<&ClientInfo>,
        msg: &Arc<Message>,
    ) -> Disposition {
        // Every service topic is under a `$` prefix: ordinary traffic costs one compare.
        if !msg.topic.starts_with('$') {
            return Disposition::Route;
        }
        let topic = msg.topic.as_str();
        let mut disposition = Disposition::Route;
        self.with_services(now, |s, host| {
            if disposition == Disposition::Route && s.topics().iter().any(|p| topic.starts_with(p))
            {
                disposition = s.on_publish(host, from, msg);
            }
        });
        disposition
    }

    /// The broker is stopping: services publish their last words (a cluster node's down
    /// record). True when one did, so the caller can give them time to leave before the
    /// DISCONNECTs (a client that reads both in one go may drop what came first).
    pub(super) fn farewell(&mut self, now: Instant) -> bool {
        self.with_services(now, |s, host| s.on_shutdown(host)) > 0
    }

    /// Services start once the store is loaded.
    pub(super) fn start_services(&mut self, now: Instant) {
        self.with_services(now, |s, host| s.on_start(host));
    }

    pub(super) fn services_connect(&mut self, now: Instant, info: &ClientInfo, present: bool) {
        self.with_services(now, |s, host| s.on_connect(host, info, present));
    }

    pub(super) fn services_disconnect(&mut self, now: Instant, info: &ClientInfo, reason: &str) {
        self.with_services(now, |s, host| s.on_disconnect(host, info, reason));
    }

    pub(super) fn services_session_end(&mut self, now: Instant, client_id: &str) {
        self.with_services(now, |s, host| s.on_session_end(host, client_id));
    }

    /// Asks the services whether one gates `key`'s subscription to `filter` (the first
    /// that answers decides): `Some(active)` or `None`.
    pub(super) fn services_gate(&mut self, now: Instant, key: usize, filter: &str) -> Option<bool> {
        if !filter.starts_with('$') {
            return None;
        }
        let info = self.sessions.get(key).map(|s| client_info(s, None))?;
        let mut gate = None;
        self.with_services(now, |s, host| {
            if gate.is_none() {
                gate = s.gate_subscription(host, &info, filter);
            }
        });
        gate
    }

    pub(super) fn services_subscribe(&mut self, now: Instant, key: usize, filter: &str, qos: QoS) {
        let Some(info) = self.sessions.get(key).map(|s| client_info(s, None)) else {
            return;
        };
        self.with_services(now, |s, host| s.on_subscribe(host, &info, filter, qos));
    }

    pub(super) fn services_activation(
        &mut self,
        now: Instant,
        key: usize,
        filter: &str,
        active: bool,
    ) {
        let Some(info) = self.sessions.get(key).map(|s| client_info(s, None)) else {
            return;
        };
        self.with_services(now, |s, host| s.on_activation(host, &info, filter, active));
    }

    pub(super) fn services_unsubscribe(&mut self, now: Instant, key: usize, filter: &str) {
        let Some(info) = self.sessions.get(key).map(|s| client_info(s, None)) else {
            return;
        };
        self.with_services(now, |s, host| s.on_unsubscribe(host, &info, filter));
    }

    /// Runs the timeouts of services that are due.
    pub(super) fn services_timeout(&mut self, now: Instant) {
        self.with_services(now, |s, host| {
            if s.poll_timeout().is_some_and(|t| t <= now) {
                s.handle_timeout(host);
            }
        });
    }
}
