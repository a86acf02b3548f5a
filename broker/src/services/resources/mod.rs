//! Scarce resources as topics (SPEC §7, docs/resources.md): `[[resource]]` tables served
//! on `$resource/<name>/acquire|reserve|release`, answered on
//! `$resource/<name>/client/<client-id>` (or a 5.0 Response Topic), summarised in the
//! retained `$resource/<name>`, counted under `$SYS/broker/resources/<name>/...`.
//!
//! This module is the [`Service`] around the pure [`state::Resource`]: it parses requests,
//! maps the router's clock to unix milliseconds, frees units when sessions end (after
//! `grace` for clean sessions), and keeps each resource's state durable as the retained
//! document `$resource/<name>/state`, read back in [`Service::on_start`]. It publishes only
//! through [`Host`] and must never touch the store, sockets or another service's state.

pub mod state;
pub mod wire;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use canopy_proto::{PublishProperties, QoS, TopicFilter, TopicName};

use super::{ClientInfo, Disposition, Host, Service};
use crate::config::{Config, ResourceConfig, ResourceMode};
use crate::message::Message;
use state::{Answer, Counters, Mode, Ms, Notice, Policy, Reply, Resource, Snapshot};
use wire::Verb;

/// Maps the router's monotonic clock to unix milliseconds: the first instant seen is
/// anchored to the wall clock once, so leases move with the router's clock (and a test's
/// fake one) while their ends stay meaningful across restarts.
struct WallClock {
    anchor: Option<(Instant, Ms)>,
    wall: fn() -> Ms,
}

impl WallClock {
    fn ms(&mut self, now: Instant) -> Ms {
        let wall = self.wall;
        let (at, ms) = *self.anchor.get_or_insert_with(|| (now, wall()));
        if now >= at {
            ms.saturating_add(millis(now - at))
        } else {
            ms.saturating_sub(millis(at - now))
        }
    }

    fn instant(&self, ms: Ms) -> Option<Instant> {
        let (at, base) = self.anchor?;
        if ms >= base {
            at.checked_add(Duration::from_millis(ms - base))
        } else {
            Some(
                at.checked_sub(Duration::from_millis(base - ms))
                    .unwrap_or(at),
            )
        }
    }
}

fn millis(d: Duration) -> Ms {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The wall clock in unix milliseconds.
pub fn system_ms() -> Ms {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, millis)
}

/// One configured resource and what the service keeps beside its state.
struct Entry {
    name: String,
    grace: Ms,
    resource: Resource,
    /// Clean-session clients whose connection ended, with when their grace runs out.
    pending: HashMap<String, Ms>,
    /// The state last written as the retained document (to write only changes).
    written: Option<Snapshot>,
    /// The summary last published.
    summary: Option<String>,
    /// The `$SYS` figures last published.
    sys: Option<(usize, usize, Counters)>,
}

/// The resources service.
pub struct ResourceService {
    entries: Vec<Entry>,
    clock: WallClock,
    sys_interval: Duration,
    /// When `$SYS` figures are due again, if any changed since the last publication.
    sys_due: Option<Instant>,
    sys_last: Option<Instant>,
}

impl ResourceService {
    /// The service for `config`'s `[[resource]]` tables (none: it only answers
    /// `unknown resource`).
    pub fn new(config: &Config) -> ResourceService {
        ResourceService::with_wall_clock(config, system_ms)
    }

    /// As [`ResourceService::new`], reading unix time from `wall` once, at the first event.
    pub fn with_wall_clock(config: &Config, wall: fn() -> Ms) -> ResourceService {
        ResourceService {
            entries: config.resource.iter().map(entry).collect(),
            clock: WallClock { anchor: None, wall },
            sys_interval: config.sys_interval,
            sys_due: None,
            sys_last: None,
        }
    }

    /// The state of resource `name` (tests and `$SYS`).
    pub fn resource(&self, name: &str) -> Option<&Resource> {
        self.entries
            .iter()
            .find(|e| e.name == name)
            .map(|e| &e.resource)
    }

    /// Answers, persists and summarises what happened to `entries[i]`.
    fn flush(&mut self, host: &mut dyn Host, i: usize, notices: Vec<Notice>, now: Ms) {
        let Some(e) = self.entries.get_mut(i) else {
            return;
        };
        for n in notices {
            answer(host, &e.name, n);
        }
        let snap = e.resource.snapshot();
        if e.written.as_ref() != Some(&snap) {
            publish(
                host,
                &wire::state_topic(&e.name),
                wire::encode_state(&snap),
                QoS::AtLeastOnce,
                true,
            );
            e.written = Some(snap);
        }
        let r = &e.resource;
        let next_slot = r.next_slot(now).filter(|&t| t > now);
        let summary = wire::summary_json(r.holders().len(), r.policy().max, r.waiting(), next_slot)
            .to_string();
        if e.summary.as_ref() != Some(&summary) {
            publish(
                host,
                &wire::summary_topic(&e.name),
                summary.clone().into_bytes(),
                QoS::AtLeastOnce,
                true,
            );
            e.summary = Some(summary);
        }
        let figures = (r.holders().len(), r.waiting(), r.counters());
        if e.sys != Some(figures) && !self.sys_interval.is_zero() && self.sys_due.is_none() {
            let at = host.now();
            self.sys_due = Some(
                self.sys_last
                    .map_or(at, |last| (last + self.sys_interval).max(at)),
            );
        }
    }

    /// Runs `f` on every entry (with the current unix time) and flushes each.
    fn each(
        &mut self,
        host: &mut dyn Host,
        mut f: impl FnMut(&mut Entry, Ms, &dyn Host, &mut Vec<Notice>),
    ) {
        let now = self.clock.ms(host.now());
        for i in 0..self.entries.len() {
            let mut out = Vec::new();
            if let Some(e) = self.entries.get_mut(i) {
                f(e, now, host, &mut out);
            }
            self.flush(host, i, out, now);
        }
    }

    fn publish_sys(&mut self, host: &mut dyn Host) {
        for e in &mut self.entries {
            let r = &e.resource;
            let figures = (r.holders().len(), r.waiting(), r.counters());
            if e.sys == Some(figures) {
                continue;
            }
            let (in_use, queued, c) = figures;
            for (what, value) in [
                ("in_use", in_use as u64),
                ("queued", queued as u64),
                ("granted", c.granted),
                ("refused", c.refused),
                ("expired", c.expired),
                ("released", c.released),
            ] {
                // Recomputed from scratch at every start: kept in memory, never stored.
                let payload = value.to_string().into_bytes();
                let topic = wire::sys_topic(&e.name, what);
                if let Some(m) = message(&topic, payload, QoS::AtMostOnce, true, Default::default())
                {
                    host.publish_transient(m);
                }
            }
            e.sys = Some(figures);
        }
        self.sys_last = Some(host.now());
        self.sys_due = None;
    }
}

fn entry(c: &ResourceConfig) -> Entry {
    let policy = Policy {
        max: usize::try_from(c.max_concurrent)
            .unwrap_or(usize::MAX)
            .max(1),
        lease: millis(c.lease).max(1),
        queue_limit: c.queue_limit,
        mode: match c.mode {
            ResourceMode::Queue => Mode::Queue,
            ResourceMode::Slots => Mode::Slots,
        },
        slot: millis(c.slot).max(1),
    };
    Entry {
        name: c.name.clone(),
        grace: millis(c.grace),
        resource: Resource::new(policy),
        pending: HashMap::new(),
        written: None,
        summary: None,
        sys: None,
    }
}

/// Publishes `payload` at `topic` as the broker.
fn publish(host: &mut dyn Host, topic: &str, payload: Vec<u8>, qos: QoS, retain: bool) {
    publish_with(
        host,
        topic,
        payload,
        qos,
        retain,
        PublishProperties::default(),
    );
}

fn publish_with(
    host: &mut dyn Host,
    topic: &str,
    payload: Vec<u8>,
    qos: QoS,
    retain: bool,
    properties: PublishProperties,
) {
    if let Some(msg) = message(topic, payload, qos, retain, properties) {
        host.publish(msg);
    }
}

/// A message of the broker's own; `None` (with a log line) when `topic` is not a valid
/// topic name (a client id with `+` or `#` in it).
fn message(
    topic: &str,
    payload: Vec<u8>,
    qos: QoS,
    retain: bool,
    properties: PublishProperties,
) -> Option<Message> {
    match TopicName::new(topic) {
        Ok(topic) => Some(Message {
            topic,
            qos,
            retain,
            properties: properties.into(),
            payload: Bytes::from(payload),
            expires_at: None,
        }),
        Err(e) => {
            tracing::debug!(topic, error = %e, "resource message has no valid topic; dropped");
            None
        }
    }
}

/// Sends one answer to its client: on the Response Topic with the Correlation Data when
/// the request had one, else on the client's own topic.
fn answer(host: &mut dyn Host, name: &str, n: Notice) {
    let topic = n
        .reply
        .topic
        .clone()
        .unwrap_or_else(|| wire::client_topic(name, &n.client));
    let properties = PublishProperties {
        correlation_data: n.reply.correlation.map(Bytes::from),
        ..PublishProperties::default()
    };
    let payload = wire::answer_json(&n.answer).to_string().into_bytes();
    publish_with(host, &topic, payload, QoS::AtLeastOnce, false, properties);
}

/// Where the answers to `msg` go.
fn reply_of(msg: &Message) -> Reply {
    Reply {
        topic: msg
            .properties
            .response_topic
            .as_ref()
            .map(|t| t.as_str().to_owned()),
        correlation: msg.properties.correlation_data.as_ref().map(|b| b.to_vec()),
    }
}

fn online(host: &dyn Host, client: &str) -> bool {
    host.client(client).is_some_and(|c| c.online)
}

impl Service for ResourceService {
    fn name(&self) -> &'static str {
        "resources"
    }

    fn topics(&self) -> &[&'static str] {
        &[wire::PREFIX]
    }

    fn on_start(&mut self, host: &mut dyn Host) {
        let now = self.clock.ms(host.now());
        for i in 0..self.entries.len() {
            let mut out = Vec::new();
            let Some(e) = self.entries.get_mut(i) else {
                continue;
            };
            let doc = TopicName::new(&wire::state_topic(&e.name))
                .ok()
                .and_then(|t| host.retained(&t));
            if let Some(doc) = doc {
                match wire::decode_state(&doc.payload) {
                    Ok(snap) => {
                        e.resource =
                            Resource::restore(e.resource.policy().clone(), snap, now, &mut out);
                        e.written = Some(e.resource.snapshot());
                    }
                    Err(error) => {
                        tracing::error!(resource = %e.name, %error, "resource state unreadable; starting empty")
                    }
                }
            }
            // Clean sessions did not survive the restart, nor did expired persistent ones.
            let gone: Vec<String> = clients_of(&e.resource)
                .into_iter()
                .filter(|c| host.client(c).is_none_or(|info| !info.persistent))
                .collect();
            for client in gone {
                e.resource.drop_client(&client, now, &mut out);
            }
            e.resource.tick(now, &|c| online(host, c), &mut out);
            self.flush(host, i, out, now);
        }
        forget_unconfigured(host, &self.entries);
        if !self.sys_interval.is_zero() {
            self.publish_sys(host);
        }
    }

    fn on_publish(
        &mut self,
        host: &mut dyn Host,
        from: Option<&ClientInfo>,
        msg: &Arc<Message>,
    ) -> Disposition {
        let Some(client) = from else {
            // The service's own answers, summaries and state documents.
            return Disposition::Route;
        };
        let Some((name, verb)) = wire::parse_request(msg.topic.as_str()) else {
            return Disposition::Consume;
        };
        let reply = reply_of(msg);
        let now = self.clock.ms(host.now());
        let Some(i) = self.entries.iter().position(|e| e.name == name) else {
            let n = Notice {
                client: client.client_id.to_string(),
                reply,
                answer: Answer::Refused {
                    reason: "unknown resource",
                },
            };
            answer(host, name, n);
            return Disposition::Consume;
        };
        let mut out = Vec::new();
        if let Some(e) = self.entries.get_mut(i) {
            let id = client.client_id.as_ref();
            e.pending.remove(id);
            let r = &mut e.resource;
            match verb {
                Verb::Acquire => match wire::parse_lease(&msg.payload) {
                    Ok(lease) => r.acquire(id, lease, reply, now, &mut out),
                    Err(reason) => {
                        tracing::debug!(client_id = id, %reason, "bad resource request");
                        out.push(Notice {
                            client: id.to_owned(),
                            reply,
                            answer: Answer::Refused {
                                reason: "bad request",
                            },
                        });
                    }
                },
                Verb::Reserve => r.reserve(id, reply, now, &mut out),
                Verb::Release => r.release(id, reply, now, &mut out),
            }
        }
        self.flush(host, i, out, now);
        Disposition::Consume
    }

    fn on_connect(&mut self, _host: &mut dyn Host, client: &ClientInfo, _session_present: bool) {
        for e in &mut self.entries {
            e.pending.remove(client.client_id.as_ref());
        }
    }

    fn on_disconnect(&mut self, host: &mut dyn Host, client: &ClientInfo, _reason: &str) {
        if client.persistent {
            return;
        }
        let id = client.client_id.to_string();
        self.each(host, |e, now, _, out| {
            if !e.resource.involves(&id) {
                return;
            }
            if e.grace == 0 {
                e.resource.drop_client(&id, now, out);
            } else {
                e.pending.insert(id.clone(), now.saturating_add(e.grace));
            }
        });
    }

    fn on_session_end(&mut self, host: &mut dyn Host, client_id: &str) {
        self.each(host, |e, now, _, out| {
            if !e.pending.contains_key(client_id) {
                e.resource.drop_client(client_id, now, out);
            }
        });
    }

    fn poll_timeout(&self) -> Option<Instant> {
        let due = self.entries.iter().flat_map(|e| {
            e.resource
                .next_deadline()
                .into_iter()
                .chain(e.pending.values().copied())
        });
        let due = due.min().and_then(|ms| self.clock.instant(ms));
        due.into_iter().chain(self.sys_due).min()
    }

    fn handle_timeout(&mut self, host: &mut dyn Host) {
        self.each(host, |e, now, host, out| {
            let mut ended: Vec<String> = e
                .pending
                .iter()
                .filter(|&(_, &t)| t <= now)
                .map(|(c, _)| c.clone())
                .collect();
            // In client order, so that every run frees them the same way.
            ended.sort();
            for client in ended {
                e.pending.remove(&client);
                // Reconnected meanwhile (a take-over may report the connect first).
                if !online(host, &client) {
                    e.resource.drop_client(&client, now, out);
                }
            }
            e.resource.tick(now, &|c| online(host, c), out);
        });
        if self.sys_due.is_some_and(|t| t <= host.now()) {
            self.publish_sys(host);
        }
    }
}

/// Every client a resource knows of.
fn clients_of(r: &Resource) -> Vec<String> {
    let mut all: Vec<String> = r.holders().iter().map(|h| h.client.clone()).collect();
    all.extend(r.queue().map(|w| w.client.clone()));
    all.extend(r.slots().iter().map(|s| s.client.clone()));
    all.sort();
    all.dedup();
    all
}

/// Clears the retained state and summary of resources no longer configured.
fn forget_unconfigured(host: &mut dyn Host, entries: &[Entry]) {
    let Ok(filter) = TopicFilter::new("$resource/+/state") else {
        return;
    };
    let mut stale = Vec::new();
    host.for_each_retained(&filter, &mut |topic, _| {
        let name = topic
            .as_str()
            .trim_start_matches(wire::PREFIX)
            .trim_end_matches("/state");
        if !entries.iter().any(|e| e.name == name) {
            stale.push(name.to_owned());
        }
    });
    for name in stale {
        publish(
            host,
            &wire::state_topic(&name),
            Vec::new(),
            QoS::AtLeastOnce,
            true,
        );
        publish(
            host,
            &wire::summary_topic(&name),
            Vec::new(),
            QoS::AtLeastOnce,
            true,
        );
    }
}

#[cfg(test)]
mod model_tests;
#[cfg(test)]
mod service_tests;
