//! SUBSCRIBE and UNSUBSCRIBE: validation of each filter against the limits and the
//! access rules, the subscription trie and shared groups, event activation, retained
//! replay on subscribe, and the session record kept in the store.

use std::sync::Arc;
use std::time::Instant;

use canopy_proto::{
    AckProperties, Packet, QoS, ReasonCode, RetainHandling, SharedFilter, SubAck, Subscribe,
    SubscriptionOptions, TopicFilter, UnsubAck, Unsubscribe,
};

use super::session::{Activation, Delivery, SubEntry};
use super::{Router, SharedGroup, Subscriber};
use super::{activation, deferred, held};
use crate::metrics::Metrics;
use crate::outbox::Outgoing;

/// A SUBSCRIBE being handled: what is decided so far and the filters still to go.
#[derive(Debug)]
pub(super) struct SubscribeWork {
    pkid: u16,
    v5: bool,
    id: Option<u32>,
    activation: Result<Option<Activation>, activation::RegistrationError>,
    wait: Option<std::time::Duration>,
    reason_string: Option<String>,
    reasons: Vec<ReasonCode>,
    pending: Vec<String>,
    filters: std::vec::IntoIter<(TopicFilter, SubscriptionOptions)>,
}

impl Router {
    pub(super) fn on_subscribe(&mut self, now: Instant, key: usize, sub: Subscribe) {
        let Some(s) = self.sessions.get(key) else {
            return;
        };
        let v5 = s.conn.as_ref().is_some_and(|c| c.protocol.is_v5());
        let work = SubscribeWork {
            pkid: sub.pkid,
            v5,
            id: sub.properties.subscription_identifier,
            // 5.0 user properties register an activation for every filter of the packet.
            activation: activation::from_user_properties(&sub.properties.user_properties),
            // 5.0: a SUBACK that waits for interest propagation (`held.rs`).
            wait: held::requested_wait(&sub.properties.user_properties).filter(|_| v5),
            reason_string: None,
            reasons: Vec::with_capacity(sub.filters.len()),
            pending: Vec::new(),
            filters: sub.filters.into_iter(),
        };
        self.continue_subscribe(now, key, work);
    }

    /// Handles the next [`deferred::CHUNK`] filters of a SUBSCRIBE; when more are left,
    /// the rest waits for a later turn (`deferred.rs`), else the SUBACK goes. A SUBSCRIBE
    /// that takes several turns has its retained messages sent chunk by chunk, before the
    /// SUBACK, which MQTT allows (5.0 section 3.8.4).
    pub(super) fn continue_subscribe(&mut self, now: Instant, key: usize, mut work: SubscribeWork) {
        let v5 = work.v5;
        let fail = |code: ReasonCode| if v5 { code } else { ReasonCode(0x80) };
        let id = work.id;
        let mut replays: Vec<(TopicFilter, QoS, Option<u32>)> = Vec::new();
        let mut granted_filters = Vec::new();
        for (filter, options) in work.filters.by_ref().take(deferred::CHUNK) {
            let too_big =
                filter.len() > self.max_filter_length || filter.depth() > self.max_filter_levels;
            let shared = match SharedFilter::parse(&filter) {
                Ok(sh) if !too_big => sh,
                _ => {
                    work.reasons.push(fail(ReasonCode::TOPIC_FILTER_INVALID));
                    continue;
                }
            };
            if shared.is_some() && options.no_local {
                // [MQTT-3.8.3-4]: a protocol error.
                self.kick(
                    key,
                    ReasonCode::PROTOCOL_ERROR,
                    "no local on a shared subscription",
                );
                return;
            }
            if let Err(why) = self.subscribe_allowed(key, filter.as_str()) {
                work.reason_string = Some(why.0.to_string());
                work.reasons.push(fail(ReasonCode::NOT_AUTHORIZED));
                continue;
            }
            let activation = match &work.activation {
                Ok(a) => a.clone(),
                Err(e) => {
                    work.reason_string = Some(e.message.clone());
                    work.reasons.push(fail(if e.bad_filter {
                        ReasonCode::TOPIC_FILTER_INVALID
                    } else {
                        ReasonCode::IMPLEMENTATION_SPECIFIC_ERROR
                    }));
                    continue;
                }
            };
            if shared.is_some() && activation.is_some() {
                work.reason_string = Some("shared subscriptions cannot be event-activated".into());
                work.reasons
                    .push(fail(ReasonCode::IMPLEMENTATION_SPECIFIC_ERROR));
                continue;
            }
            if let Err(why) = self.subscription_quota(key, filter.as_str()) {
                Metrics::add(&self.metrics.quota_exceeded, 1);
                work.reason_string = Some(why.to_string());
                work.reasons.push(fail(ReasonCode::QUOTA_EXCEEDED));
                continue;
            }
            let granted = options.qos.min(self.maximum_qos);
            let options = SubscriptionOptions {
                qos: granted,
                ..options
            };
            // A service may gate the subscription (presence watchers): switchable by the
            // service only, pending until it says otherwise.
            let gate = if shared.is_none() {
                self.services_gate(now, key, filter.as_str())
            } else {
                None
            };
            let activation = match gate {
                Some(active) => {
                    if !active {
                        work.pending.push(filter.to_string());
                    }
                    Some(Activation::gated(active))
                }
                None => activation.map(|mut a| {
                    a.active = self.initial_state(now, &a);
                    a
                }),
            };
            let active = activation.as_ref().is_none_or(|a| a.active);
            let existed =
                self.add_subscription(key, &filter, shared.as_ref(), options, id, activation);
            work.reasons.push(ReasonCode(granted as u8));
            let replay = shared.is_none()
                && active
                && match options.retain_handling {
                    RetainHandling::SendAtSubscribe => true,
                    RetainHandling::SendIfNew => !existed,
                    RetainHandling::DoNotSend => false,
                };
            if replay {
                replays.push((filter.clone(), granted, id));
            }
            granted_filters.push((filter, granted));
        }
        let last = work.filters.len() == 0;
        let mut held = None;
        if last && self.sessions.contains(key) {
            let properties = AckProperties {
                reason_string: work.reason_string.take().filter(|_| v5),
                user_properties: if v5 {
                    std::mem::take(&mut work.pending)
                        .into_iter()
                        .map(|f| ("pending".to_owned(), f))
                        .collect()
                } else {
                    Vec::new()
                },
            };
            let suback = SubAck {
                pkid: work.pkid,
                reasons: std::mem::take(&mut work.reasons),
                properties,
            };
            match work.wait.filter(|_| !granted_filters.is_empty()) {
                Some(wait) => held = Some((suback, wait)),
                None => self.send_change_ack(key, Packet::SubAck(suback)),
            }
        }
        for (filter, qos, id) in replays {
            self.replay_retained(now, key, &filter, qos, id);
        }
        for (f, qos) in granted_filters {
            self.services_subscribe(now, key, f.as_str(), qos);
        }
        if let Some((suback, wait)) = held {
            self.hold_suback(now, key, suback, wait);
        }
        if !last {
            self.defer_subscribe(now, key, work);
        }
    }

    /// Sends the retained messages matching `filter` with RETAIN set [MQTT-3.3.1-9].
    pub(super) fn replay_retained(
        &mut self,
        now: Instant,
        key: usize,
        filter: &TopicFilter,
        qos: QoS,
        id: Option<u32>,
    ) {
        let mut found = Vec::new();
        self.retained.for_each_match(filter, |_, r| {
            if !r.msg.expired(now) {
                found.push(r.msg.clone());
            }
        });
        for k in &self.kept {
            k.for_each_match(now, filter, &mut |_, m| found.push(m.clone()));
        }
        if self.access.checks_deliveries() {
            found.retain(|m| self.may_deliver(key, &m.topic));
        }
        let Some(s) = self.sessions.get_mut(key) else {
            return;
        };
        for msg in found {
            s.replay_push(Delivery {
                seq: 0,
                qos: qos.min(msg.qos),
                retain: true,
                sub_ids: id.into_iter().collect(),
                msg,
            });
        }
        let dropped = s.pump_replay(&self.limits, now, &mut self.journal);
        Metrics::add(&self.metrics.messages_dropped, dropped as u64);
    }

    /// Adds or replaces a subscription; returns whether one existed for the filter
    /// [MQTT-3.8.4-3]. An inactive event-activated subscription goes into the trigger
    /// index only, not into the matching trie.
    pub(super) fn add_subscription(
        &mut self,
        key: usize,
        filter: &TopicFilter,
        shared: Option<&SharedFilter>,
        options: SubscriptionOptions,
        id: Option<u32>,
        activation: Option<Activation>,
    ) -> bool {
        let existed = self.remove_subscription(key, filter.as_str());
        let name: Arc<str> = Arc::from(filter.as_str());
        let Some(s) = self.sessions.get_mut(key) else {
            return false;
        };
        let entry = SubEntry {
            options,
            identifier: id,
            activation: activation.map(Box::new),
        };
        let active = entry.active();
        if let Some(a) = &entry.activation {
            let a = a.clone();
            s.subscriptions.insert(name.clone(), entry);
            self.add_triggers(key, &name, &a);
        } else {
            s.subscriptions.insert(name.clone(), entry);
        }
        self.subscription_count += 1;
        self.persist_subscription(key, &name);
        if !active {
            self.inactive_count += 1;
            return existed;
        }
        match shared {
            None => {
                self.subs.insert(
                    filter,
                    Subscriber::Direct {
                        session: key,
                        options,
                        id,
                    },
                );
            }
            Some(sh) => {
                let gk = match self.group_index.get(&name) {
                    Some(&gk) => gk,
                    None => {
                        let gk = self.groups.insert(SharedGroup {
                            members: Vec::new(),
                            next: 0,
                            epoch: 0,
                        });
                        self.group_index.insert(name, gk);
                        self.subs
                            .insert(&sh.filter, Subscriber::Shared { group: gk });
                        gk
                    }
                };
                if let Some(g) = self.groups.get_mut(gk) {
                    g.members.retain(|(s, _, _)| *s != key);
                    g.members.push((key, options, id));
                }
            }
        }
        existed
    }

    /// Removes a subscription from the trie (or its shared group) and its triggers;
    /// returns whether it existed.
    pub(super) fn remove_subscription(&mut self, key: usize, filter: &str) -> bool {
        let Some(s) = self.sessions.get_mut(key) else {
            return false;
        };
        let Some((name, entry)) = s.subscriptions.remove_entry(filter) else {
            return false;
        };
        self.subscription_count = self.subscription_count.saturating_sub(1);
        self.persist_subscription(key, &name);
        if let Some(a) = &entry.activation {
            self.remove_triggers(key, filter, a);
            if !a.active {
                self.inactive_count = self.inactive_count.saturating_sub(1);
                return true;
            }
        }
        let Ok(tf) = TopicFilter::new(filter) else {
            return true;
        };
        match SharedFilter::parse(&tf) {
            Ok(Some(sh)) => {
                if let Some(&gk) = self.group_index.get(filter) {
                    let empty = match self.groups.get_mut(gk) {
                        Some(g) => {
                            g.members.retain(|(s, _, _)| *s != key);
                            g.members.is_empty()
                        }
                        None => false,
                    };
                    if empty {
                        self.subs.remove_where(
                            &sh.filter,
                            |v| matches!(v, Subscriber::Shared { group } if *group == gk),
                        );
                        self.group_index.remove(filter);
                        self.groups.try_remove(gk);
                    }
                }
            }
            _ => {
                self.subs.remove_where(
                    &tf,
                    |v| matches!(v, Subscriber::Direct { session, .. } if *session == key),
                );
            }
        }
        true
    }

    pub(super) fn on_unsubscribe(&mut self, now: Instant, key: usize, unsub: Unsubscribe) {
        let Some(s) = self.sessions.get(key) else {
            return;
        };
        let v5 = s.conn.as_ref().is_some_and(|c| c.protocol.is_v5());
        let mut reasons = Vec::new();
        for f in &unsub.filters {
            let existed = self.remove_subscription(key, f.as_str());
            if existed {
                self.services_unsubscribe(now, key, f.as_str());
            }
            if v5 {
                reasons.push(if existed {
                    ReasonCode::SUCCESS
                } else {
                    ReasonCode::NO_SUBSCRIPTION_EXISTED
                });
            }
        }
        let unsuback = Packet::UnsubAck(UnsubAck {
            pkid: unsub.pkid,
            reasons,
            properties: AckProperties::default(),
        });
        self.send_change_ack(key, unsuback);
    }

    /// Asks the access seam whether session `key` may receive a message on `topic`.
    pub(super) fn may_deliver(&self, key: usize, topic: &str) -> bool {
        self.sessions.contains(key)
            && self
                .access_check(key, &crate::access::Request::Deliver { topic })
                .is_ok()
    }

    /// Asks the access seam whether session `key` may subscribe to `filter`.
    pub(super) fn subscribe_allowed(
        &self,
        key: usize,
        filter: &str,
    ) -> Result<(), crate::access::Denied> {
        self.access_check(key, &crate::access::Request::Subscribe { filter })
    }

    /// Asks the access seam about `req` for session `key`: its client id and
    /// authenticated user, and which clients are connected here.
    pub(super) fn access_check(
        &self,
        key: usize,
        req: &crate::access::Request<'_>,
    ) -> Result<(), crate::access::Denied> {
        let s = self.sessions.get(key);
        let who = crate::access::Who {
            client_id: s.map_or("", |s| &s.client_id),
            user: s.and_then(|s| s.user.as_deref()),
            bridge: s.is_some_and(|s| s.bridge),
        };
        let online_here = |id: &str| {
            self.by_id
                .get(id)
                .and_then(|&k| self.sessions.get(k))
                .is_some_and(|s| s.online())
        };
        self.access.check(&who, req, &online_here)
    }

    /// Sends DISCONNECT with `reason` (5.0) and closes the connection of `key`.
    pub(super) fn kick(&mut self, key: usize, reason: ReasonCode, why: &str) {
        let Some(s) = self.sessions.get(key) else {
            return;
        };
        tracing::info!(client_id = %s.client_id, %reason, why, "disconnecting client");
        Metrics::add(&self.metrics.protocol_errors, 1);
        if let Some(c) = &s.conn {
            c.outbox
                .push(Outgoing::Disconnect(reason, Some(why.to_string())));
        }
    }
}
