//! The broker's presence agent (SPEC §5, docs/presence.md): devices publish
//! `$presence/<user>/devices/<device>`, the agent keeps the retained aggregate
//! `$presence/<user>`, turns the devices of ended connections offline after
//! `[presence] offline_grace`, and gates watchers' subscriptions to `$presence/<user>` by
//! the user's `$presence/<user>/watchers` list, with a request document per watcher at
//! `$presence/<user>/requests/<watcher>`.
//!
//! Owns the per-user device table, watcher lists and requests; keeps them durable as the
//! retained documents it publishes (aggregates, requests) and the user's watcher list, read
//! back in [`Service::on_start`]. A user is the connection's authenticated user name; with
//! anonymous access, the `<user>` topic level (a watcher is then named by its client id).
//! It publishes only through [`Host`], switches only the subscriptions it gated, and must
//! never decide access (the access seam's `$presence` rules do) or touch the store.

pub use canopy_model::presence as doc;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use canopy_proto::{QoS, TopicFilter, TopicName};

use super::{ClientInfo, Disposition, Host, Service};
use crate::config::PresenceConfig;
use crate::message::Message;
use doc::{
    Aggregate, Decision, DeviceDoc, DeviceEntry, Ms, PREFIX, Request, RequestState, Topic,
    Watchers, aggregate,
};

/// The retained document advertising the broker's optional features.
pub const FEATURES_TOPIC: &str = "$SYS/broker/features";

/// One device as the agent keeps it.
#[derive(Debug, Clone)]
struct Device {
    entry: DeviceEntry,
    /// The client id of the connection that published it (`None`: restored after a restart).
    client: Option<String>,
    /// When it turns offline unless its connection comes back.
    offline_at: Option<Instant>,
}

/// One user's presence.
#[derive(Debug, Default)]
struct User {
    devices: BTreeMap<String, Device>,
    watchers: Watchers,
    requests: BTreeMap<String, Request>,
    /// The aggregate last published (to publish only changes).
    written: Option<Aggregate>,
}

/// The presence agent.
pub struct PresenceService {
    enabled: bool,
    grace: Duration,
    /// The router's clock anchored to the wall clock at the first event.
    anchor: Option<(Instant, Ms)>,
    wall: fn() -> Ms,
    users: BTreeMap<String, User>,
    /// Devices (user, device) by the client id that published them.
    by_client: HashMap<String, BTreeSet<(String, String)>>,
}

impl PresenceService {
    /// The agent `[presence]` configures (doing nothing when disabled).
    pub fn new(config: &PresenceConfig) -> PresenceService {
        PresenceService::with_wall_clock(config, super::resources::system_ms)
    }

    /// As [`PresenceService::new`], reading unix milliseconds from `wall` (tests).
    pub fn with_wall_clock(config: &PresenceConfig, wall: fn() -> Ms) -> PresenceService {
        PresenceService {
            enabled: config.enabled,
            grace: config.offline_grace,
            anchor: None,
            wall,
            users: BTreeMap::new(),
            by_client: HashMap::new(),
        }
    }

    fn ms(&mut self, now: Instant) -> Ms {
        let wall = self.wall;
        let (at, base) = *self.anchor.get_or_insert_with(|| (now, wall()));
        let off = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        if now >= at {
            base.saturating_add(off(now - at))
        } else {
            base.saturating_sub(off(at - now))
        }
    }

    /// Publishes `user`'s aggregate if it changed.
    fn write_aggregate(&mut self, host: &mut dyn Host, user: &str) {
        let Some(u) = self.users.get_mut(user) else {
            return;
        };
        let entries = u
            .devices
            .iter()
            .map(|(k, d)| (k.clone(), d.entry.clone()))
            .collect();
        let agg = aggregate(user, &entries);
        if u.written.as_ref() == Some(&agg) {
            return;
        }
        let payload = serde_json::to_vec(&agg).unwrap_or_default();
        u.written = Some(agg);
        publish(host, &format!("{PREFIX}{user}"), payload);
    }

    /// Sets a request's state, switching its clients' subscriptions, and publishes it.
    fn set_request(
        &mut self,
        host: &mut dyn Host,
        user: &str,
        watcher: &str,
        state: RequestState,
        client: Option<&str>,
    ) {
        let since = self.ms(host.now());
        let u = self.users.entry(user.to_owned()).or_default();
        let mut changed = !u.requests.contains_key(watcher);
        let r = u
            .requests
            .entry(watcher.to_owned())
            .or_insert_with(|| Request {
                watcher: watcher.to_owned(),
                state,
                clients: BTreeSet::new(),
                since,
            });
        if let Some(c) = client {
            changed |= r.clients.insert(c.to_owned());
        }
        if r.state != state {
            r.state = state;
            r.since = since;
            changed = true;
        }
        let filter = format!("{PREFIX}{user}");
        let active = state == RequestState::Approved;
        for c in &r.clients {
            host.set_subscription_active(c, &filter, active);
        }
        if changed {
            let payload = serde_json::to_vec(&*r).unwrap_or_default();
            publish(host, &format!("{PREFIX}{user}/requests/{watcher}"), payload);
        }
    }

    /// A new watcher list: requests follow it.
    fn set_watchers(&mut self, host: &mut dyn Host, user: &str, watchers: Watchers) {
        let u = self.users.entry(user.to_owned()).or_default();
        u.watchers = watchers;
        let changes: Vec<(String, RequestState)> = u
            .requests
            .values()
            .filter_map(|r| {
                let permitted = u.watchers.permits(&r.watcher);
                match (r.state, permitted) {
                    (RequestState::Approved, false) => {
                        Some((r.watcher.clone(), RequestState::Rejected))
                    }
                    (RequestState::Pending | RequestState::Rejected, true) => {
                        Some((r.watcher.clone(), RequestState::Approved))
                    }
                    _ => None,
                }
            })
            .collect();
        for (w, state) in changes {
            self.set_request(host, user, &w, state, None);
        }
    }

    fn on_device(
        &mut self,
        host: &mut dyn Host,
        from: &ClientInfo,
        user: &str,
        device: &str,
        payload: &[u8],
    ) -> Disposition {
        let key = (user.to_owned(), device.to_owned());
        if payload.is_empty() {
            if let Some(u) = self.users.get_mut(user) {
                u.devices.remove(device);
            }
            for set in self.by_client.values_mut() {
                set.remove(&key);
            }
            self.write_aggregate(host, user);
            return Disposition::Route;
        }
        let Ok(d) = serde_json::from_slice::<DeviceDoc>(payload) else {
            return Disposition::Consume;
        };
        let since = self.ms(host.now());
        let u = self.users.entry(user.to_owned()).or_default();
        let previous = u.devices.get(device).map(|d| d.entry.clone());
        let entry = DeviceEntry {
            availability: d.availability,
            activity: d.activity,
            note: d.note,
            since,
        };
        let same = previous.as_ref().is_some_and(|p| {
            (p.availability, p.activity, &p.note)
                == (entry.availability, entry.activity, &entry.note)
        });
        let entry = match previous {
            Some(p) if same => p,
            _ => entry,
        };
        u.devices.insert(
            device.to_owned(),
            Device {
                entry,
                client: Some(from.client_id.to_string()),
                offline_at: None,
            },
        );
        for set in self.by_client.values_mut() {
            set.remove(&key);
        }
        self.by_client
            .entry(from.client_id.to_string())
            .or_default()
            .insert(key);
        self.write_aggregate(host, user);
        Disposition::Route
    }

    fn on_decision(&mut self, host: &mut dyn Host, user: &str, watcher: &str, payload: &[u8]) {
        let Ok(d) = serde_json::from_slice::<Decision>(payload) else {
            return;
        };
        let current = self
            .users
            .get(user)
            .map(|u| u.watchers.clone())
            .unwrap_or_default();
        match d.state {
            RequestState::Approved => {
                let list = current.with(watcher);
                publish(host, &format!("{PREFIX}{user}/watchers"), list.render());
                self.set_watchers(host, user, list);
            }
            RequestState::Rejected => {
                if let Watchers::Some(mut names) = current
                    && names.remove(watcher)
                {
                    let list = if names.is_empty() {
                        Watchers::Nobody
                    } else {
                        Watchers::Some(names)
                    };
                    publish(host, &format!("{PREFIX}{user}/watchers"), list.render());
                    self.set_watchers(host, user, list);
                }
                self.set_request(host, user, watcher, RequestState::Rejected, None);
            }
            RequestState::Pending => {}
        }
    }
}

/// Publishes a retained QoS 1 document as the broker.
fn publish(host: &mut dyn Host, topic: &str, payload: Vec<u8>) {
    let Ok(topic) = TopicName::new(topic) else {
        return;
    };
    host.publish(Message {
        topic,
        qos: QoS::AtLeastOnce,
        retain: true,
        properties: Default::default(),
        payload: Bytes::from(payload),
        expires_at: None,
    });
}

/// Whether a metabroker forwarded `msg` from another broker.
fn forwarded(msg: &Message) -> bool {
    msg.properties
        .user_properties
        .iter()
        .any(|(k, _)| k == canopy_model::hops::HOPS_PROPERTY)
}

/// The name a watcher goes by: its user, or with anonymous access its client id.
fn watcher_name(client: &ClientInfo) -> &str {
    client.user.as_deref().unwrap_or(&client.client_id)
}

impl Service for PresenceService {
    fn name(&self) -> &'static str {
        "presence"
    }

    fn topics(&self) -> &[&'static str] {
        if self.enabled { &[PREFIX] } else { &[] }
    }

    fn on_start(&mut self, host: &mut dyn Host) {
        let now = host.now();
        let features = format!("{{\"presence\":{}}}", self.enabled);
        if let Ok(topic) = TopicName::new(FEATURES_TOPIC) {
            host.publish_transient(Message {
                topic,
                qos: QoS::AtMostOnce,
                retain: true,
                properties: Default::default(),
                payload: Bytes::from(features),
                expires_at: None,
            });
        }
        if !self.enabled {
            return;
        }
        let mut found: Vec<(String, Arc<Message>)> = Vec::new();
        for f in [
            "$presence/+",
            "$presence/+/watchers",
            "$presence/+/requests/+",
        ] {
            if let Ok(filter) = TopicFilter::new(f) {
                host.for_each_retained(&filter, &mut |t, m| {
                    found.push((t.as_str().to_owned(), m.clone()));
                });
            }
        }
        let offline_at = now + self.grace;
        for (topic, msg) in found {
            if forwarded(&msg) {
                continue;
            }
            match Topic::parse(&topic) {
                Some(Topic::Aggregate(user)) => {
                    let Ok(agg) = serde_json::from_slice::<Aggregate>(&msg.payload) else {
                        continue;
                    };
                    let u = self.users.entry(user.to_owned()).or_default();
                    for (name, entry) in &agg.devices {
                        let online = entry.availability != doc::Availability::Offline;
                        u.devices.insert(
                            name.clone(),
                            Device {
                                entry: entry.clone(),
                                client: None,
                                offline_at: online.then_some(offline_at),
                            },
                        );
                    }
                    u.written = Some(agg);
                }
                Some(Topic::Watchers(user)) => {
                    if let Some(w) = Watchers::parse(&msg.payload) {
                        self.users.entry(user.to_owned()).or_default().watchers = w;
                    }
                }
                Some(Topic::Request(user, watcher)) => {
                    if let Ok(r) = serde_json::from_slice::<Request>(&msg.payload) {
                        let u = self.users.entry(user.to_owned()).or_default();
                        u.requests.insert(watcher.to_owned(), r);
                    }
                }
                _ => {}
            }
        }
    }

    fn on_publish(
        &mut self,
        host: &mut dyn Host,
        from: Option<&ClientInfo>,
        msg: &Arc<Message>,
    ) -> Disposition {
        let topic = msg.topic.as_str();
        let Some(parsed) = Topic::parse(topic) else {
            return Disposition::Route;
        };
        let fwd = forwarded(msg);
        match (parsed, from) {
            // Devices and aggregates from below are their leaf broker's business.
            (Topic::Device(..) | Topic::Aggregate(_) | Topic::Request(..), _) if fwd => {
                Disposition::Route
            }
            (Topic::Device(user, device), Some(client)) => {
                self.on_device(host, client, user, device, &msg.payload)
            }
            (Topic::Watchers(user), _) => match Watchers::parse(&msg.payload) {
                Some(w) => {
                    self.set_watchers(host, user, w);
                    Disposition::Route
                }
                None => Disposition::Consume,
            },
            (Topic::Request(user, watcher), Some(_)) => {
                self.on_decision(host, user, watcher, &msg.payload);
                Disposition::Consume
            }
            _ => Disposition::Route,
        }
    }

    fn gate_subscription(
        &mut self,
        host: &mut dyn Host,
        client: &ClientInfo,
        filter: &str,
    ) -> Option<bool> {
        if !self.enabled {
            return None;
        }
        let Some(Topic::Aggregate(user)) = Topic::parse(filter) else {
            return None;
        };
        let watcher = watcher_name(client);
        if user == watcher || user.contains(['+', '#']) {
            return None;
        }
        let u = self.users.entry(user.to_owned()).or_default();
        let state = if u.watchers.permits(watcher) {
            RequestState::Approved
        } else {
            match u.requests.get(watcher).map(|r| r.state) {
                Some(RequestState::Rejected) => RequestState::Rejected,
                _ => RequestState::Pending,
            }
        };
        let (user, watcher) = (user.to_owned(), watcher.to_owned());
        self.set_request(host, &user, &watcher, state, Some(&client.client_id));
        Some(state == RequestState::Approved)
    }

    fn on_unsubscribe(&mut self, host: &mut dyn Host, client: &ClientInfo, filter: &str) {
        let Some(Topic::Aggregate(user)) = Topic::parse(filter) else {
            return;
        };
        let watcher = watcher_name(client);
        let Some(r) = self
            .users
            .get_mut(user)
            .and_then(|u| u.requests.get_mut(watcher))
        else {
            return;
        };
        if r.clients.remove(&*client.client_id) {
            let payload = serde_json::to_vec(&*r).unwrap_or_default();
            publish(host, &format!("{PREFIX}{user}/requests/{watcher}"), payload);
        }
    }

    fn on_connect(&mut self, _host: &mut dyn Host, client: &ClientInfo, _present: bool) {
        let Some(keys) = self.by_client.get(&*client.client_id) else {
            return;
        };
        for (user, device) in keys {
            if let Some(d) = self
                .users
                .get_mut(user)
                .and_then(|u| u.devices.get_mut(device))
            {
                d.offline_at = None;
            }
        }
    }

    fn on_disconnect(&mut self, host: &mut dyn Host, client: &ClientInfo, _reason: &str) {
        let Some(keys) = self.by_client.get(&*client.client_id) else {
            return;
        };
        let at = host.now() + self.grace;
        for (user, device) in keys {
            if let Some(d) = self
                .users
                .get_mut(user)
                .and_then(|u| u.devices.get_mut(device))
                && d.entry.availability != doc::Availability::Offline
            {
                d.offline_at = Some(at);
            }
        }
        if self.grace.is_zero() {
            self.handle_timeout(host);
        }
    }

    fn on_session_end(&mut self, host: &mut dyn Host, client_id: &str) {
        let mut changed: Vec<(String, String)> = Vec::new();
        for (user, u) in &mut self.users {
            for r in u.requests.values_mut() {
                if r.clients.remove(client_id) {
                    changed.push((user.clone(), r.watcher.clone()));
                }
            }
        }
        for (user, watcher) in changed {
            if let Some(r) = self.users.get(&user).and_then(|u| u.requests.get(&watcher)) {
                let payload = serde_json::to_vec(r).unwrap_or_default();
                publish(host, &format!("{PREFIX}{user}/requests/{watcher}"), payload);
            }
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.users
            .values()
            .flat_map(|u| u.devices.values())
            .filter_map(|d| d.offline_at)
            .min()
    }

    fn handle_timeout(&mut self, host: &mut dyn Host) {
        let now = host.now();
        let since = self.ms(now);
        let mut touched = Vec::new();
        for (user, u) in &mut self.users {
            for (name, d) in &mut u.devices {
                if d.offline_at.is_some_and(|t| t <= now) {
                    d.offline_at = None;
                    d.entry.availability = doc::Availability::Offline;
                    d.entry.since = since;
                    if let Some(c) = d.client.take()
                        && let Some(set) = self.by_client.get_mut(&c)
                    {
                        set.remove(&(user.clone(), name.clone()));
                    }
                    touched.push(user.clone());
                }
            }
        }
        self.by_client.retain(|_, set| !set.is_empty());
        touched.dedup();
        for user in touched {
            self.write_aggregate(host, &user);
        }
    }
}

#[cfg(test)]
#[path = "service_tests.rs"]
mod tests;
