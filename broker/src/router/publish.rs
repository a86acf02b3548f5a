//! Routing of PUBLISH: retained-message bookkeeping, matching through the trie,
//! shared-group selection, per-session delivery, and the acknowledgement flows in both
//! directions (QoS 1 and the QoS 2 four-way handshake).

use std::sync::Arc;
use std::time::Instant;

use canopy_proto::session::AckOutcome;
use canopy_proto::{Packet, PubAck, Publish, QoS, ReasonCode, TopicName};

use super::session::{Delivery, Offer};
use super::{Match, Retained, Router, Subscriber};
use crate::message::Message;
use crate::metrics::Metrics;
use crate::outbox::Outgoing;
use crate::services::Disposition;
use crate::store::{DeliveryState, Mutation};

impl Router {
    pub(super) fn on_publish(&mut self, now: Instant, key: usize, conn: u64, p: Publish) {
        let Some(topic) = p.topic else { return };
        let Some(s) = self.sessions.get_mut(key) else {
            return;
        };
        let v5 = s.conn.as_ref().is_some_and(|c| c.protocol.is_v5());
        let pkid = p.pkid.unwrap_or(0);
        if p.qos == QoS::ExactlyOnce {
            if !s.incoming.on_publish(pkid) {
                // A resend of a message already received: acknowledge, do not deliver
                // again [MQTT-4.3.3-10].
                self.hold_ack(key, conn, Packet::PubRec(PubAck::new(pkid)));
                return;
            }
            if s.incoming.len() > usize::from(self.receive_maximum) {
                s.incoming.on_pubrel(pkid);
                if let Some(c) = &s.conn {
                    c.outbox.push(Outgoing::Disconnect(
                        ReasonCode::RECEIVE_MAXIMUM_EXCEEDED,
                        None,
                    ));
                }
                return;
            }
            if s.persistent() {
                self.journal
                    .record(|| Mutation::PutIncoming(s.client_id.clone(), pkid));
            }
        }
        if p.properties.user_properties.len() > self.max_user_properties {
            // docs/flow-control.md#user-properties: refused, not routed, counted.
            Metrics::add(&self.metrics.user_properties_exceeded, 1);
            tracing::debug!(
                count = p.properties.user_properties.len(),
                "publish over max_user_properties refused"
            );
            self.ack(key, conn, p.qos, pkid, v5, ReasonCode::QUOTA_EXCEEDED);
            return;
        }
        // A hop marker says a metabroker forwarded this message (loop guard, and the
        // hierarchy's documents, SPEC §4).
        let forwarded = p
            .properties
            .user_properties
            .iter()
            .any(|(k, _)| k == canopy_model::hops::HOPS_PROPERTY);
        let req = crate::access::Request::Publish {
            topic: &topic,
            forwarded,
        };
        if let Err(why) = self.access_check(key, &req) {
            Metrics::add(&self.metrics.publish_denied, 1);
            let client_id = self.sessions.get(key).map(|s| s.client_id.clone());
            tracing::debug!(?client_id, %topic, why = why.0, "publish denied");
            self.ack(key, conn, p.qos, pkid, v5, ReasonCode::NOT_AUTHORIZED);
            return;
        }
        if topic.starts_with("$ctl/") {
            // Registrations of event-activated subscriptions: handled, never routed.
            self.on_ctl(now, key, &topic, &p.payload);
            self.ack(key, conn, p.qos, pkid, v5, ReasonCode::SUCCESS);
            return;
        }
        let mut properties = p.properties;
        properties.topic_alias = None;
        properties.subscription_identifiers.clear();
        let expires_at = Message::expiry_from(now, properties.message_expiry_interval);
        let msg = Arc::new(Message {
            topic,
            qos: p.qos,
            retain: p.retain,
            properties: properties.into(),
            payload: p.payload,
            expires_at,
        });
        if msg.topic.starts_with('$') {
            let info = self
                .sessions
                .get(key)
                .map(|s| super::hosting::client_info(s, None));
            if self.services_publish(now, info.as_ref(), &msg) == Disposition::Consume {
                self.ack(key, conn, msg.qos, pkid, v5, ReasonCode::SUCCESS);
                return;
            }
        }
        if msg.retain {
            let owner = self.sessions.get(key).map(|s| s.client_id.clone());
            if let Some(o) = &owner
                && !msg.payload.is_empty()
                && let Err(why) = self.retained_quota(o, &msg)
            {
                self.refuse_over_quota(key, conn, msg.qos, pkid, v5, why);
                return;
            }
            self.set_retained_by(&msg, true, owner);
        }
        let delivered = self.route(now, Some(key), &msg);
        self.fire_triggers(now, &msg.topic);
        let reason = if delivered == 0 && v5 {
            ReasonCode::NO_MATCHING_SUBSCRIBERS
        } else {
            ReasonCode::SUCCESS
        };
        self.ack(key, conn, p.qos, pkid, v5, reason);
    }

    /// Stores or clears the retained message of `msg.topic` [MQTT-3.3.1-5], [MQTT-3.3.1-6].
    pub(super) fn set_retained(&mut self, msg: &Arc<Message>, durable: bool) {
        self.set_retained_by(msg, durable, None);
    }

    /// [`Router::set_retained`] for a message `owner`'s PUBLISH stored, counted against
    /// its retained quota (`quotas.rs`).
    pub(super) fn set_retained_by(
        &mut self,
        msg: &Arc<Message>,
        durable: bool,
        owner: Option<Arc<str>>,
    ) {
        if msg.payload.is_empty() {
            if let Some(old) = self.retained.remove(&msg.topic) {
                self.retained_usage
                    .released(old.owner.as_ref(), old.bytes());
                if durable {
                    self.journal
                        .record(|| Mutation::DeleteRetained(msg.topic.clone()));
                }
            }
        } else {
            let kept = msg.detached();
            if durable {
                self.journal.record(|| Mutation::PutRetained(kept.clone()));
            }
            self.retained_seq += 1;
            let seq = self.retained_seq;
            let r = Retained {
                msg: kept,
                seq,
                owner,
            };
            self.retained_usage.stored(r.owner.as_ref(), r.bytes());
            if let Some(old) = self.retained.insert(&msg.topic, r) {
                self.retained_usage
                    .released(old.owner.as_ref(), old.bytes());
            }
        }
    }

    /// Stores a retained document a service keeps itself (`Host::publish_kept`): written
    /// to the store (deleted when empty), and taken out of the router's memory, where an
    /// older retained message of its topic may be (a forwarded or restored one).
    pub(super) fn set_kept(&mut self, msg: &Arc<Message>) {
        self.forget_retained(&msg.topic);
        if msg.payload.is_empty() {
            self.journal
                .record(|| Mutation::DeleteRetained(msg.topic.clone()));
        } else {
            let kept = msg.detached();
            self.journal.record(|| Mutation::PutRetained(kept));
        }
    }

    /// Removes the retained message of `topic` from memory only (its stored copy stays).
    pub(super) fn forget_retained(&mut self, topic: &TopicName) -> Option<Arc<Message>> {
        let old = self.retained.remove(topic)?;
        self.retained_usage
            .released(old.owner.as_ref(), old.bytes());
        Some(old.msg)
    }

    /// Delivers `msg` to every matching subscription; returns how many sessions it was
    /// offered to.
    pub(super) fn route(
        &mut self,
        now: Instant,
        publisher: Option<usize>,
        msg: &Arc<Message>,
    ) -> usize {
        self.epoch = self.epoch.wrapping_add(1);
        let epoch = self.epoch;
        let mut matches = std::mem::take(&mut self.matches);
        let mut hit_groups = std::mem::take(&mut self.hit_groups);
        matches.clear();
        hit_groups.clear();
        {
            let sessions = &mut self.sessions;
            let groups = &mut self.groups;
            self.subs.for_each_match(&msg.topic, |sub| match sub {
                Subscriber::Direct {
                    session,
                    options,
                    id,
                } => {
                    if options.no_local && publisher == Some(*session) {
                        return; // [MQTT-3.8.3-3]
                    }
                    let Some(s) = sessions.get_mut(*session).filter(|s| !s.ending) else {
                        return;
                    };
                    let qos = options.qos.min(msg.qos);
                    if s.match_epoch == epoch {
                        // Overlapping subscriptions: one delivery with the highest QoS
                        // and every identifier [MQTT-3.3.4-2], [MQTT-3.3.4-3].
                        if let Some(m) = matches.get_mut(s.match_slot as usize) {
                            m.qos = m.qos.max(qos);
                            m.retain_as_published |= options.retain_as_published;
                            m.sub_ids.extend(id);
                        }
                    } else {
                        s.match_epoch = epoch;
                        // Sessions (and so matches) never reach 2^32: the slab would be
                        // over a terabyte.
                        s.match_slot = u32::try_from(matches.len()).unwrap_or(u32::MAX);
                        matches.push(Match {
                            session: *session,
                            qos,
                            retain_as_published: options.retain_as_published,
                            sub_ids: id.iter().copied().collect(),
                        });
                    }
                }
                Subscriber::Shared { group } => {
                    if let Some(g) = groups.get_mut(*group)
                        && g.epoch != epoch
                    {
                        g.epoch = epoch;
                        hit_groups.push(*group);
                    }
                }
            });
        }
        for &gk in &hit_groups {
            if let Some(m) = self.pick_member(gk, msg) {
                matches.push(m);
            }
        }
        if self.access.checks_deliveries() {
            // A subscription to `#` never delivers what the ACL does not let its
            // user read, retained messages included.
            matches.retain(|m| self.may_deliver(m.session, &msg.topic));
        }
        let n = matches.len();
        let mut dropped = 0usize;
        // A message kept for offline sessions is copied out of the read buffer once per
        // publish, however many offline subscribers share it.
        let mut kept: Option<Arc<Message>> = None;
        // A QoS 0 PUBLISH to several subscribers is encoded once per wire form and its
        // bytes are shared; a single subscriber's connection encodes its own.
        let mut wire = (n > 1).then(|| SharedWire::new(msg));
        for m in matches.drain(..) {
            let Some(s) = self.sessions.get_mut(m.session).filter(|s| !s.ending) else {
                continue;
            };
            let retain = m.retain_as_published && msg.retain;
            let plain = m.sub_ids.is_empty();
            if m.qos == QoS::AtMostOnce
                && let Some(bytes) = wire.as_mut().and_then(|w| w.for_session(s, plain))
            {
                if let Offer::Dropped(k) = s.offer_wire(bytes, retain) {
                    dropped += k;
                }
                continue;
            }
            let one = if s.conn.is_none() && m.qos != QoS::AtMostOnce {
                kept.get_or_insert_with(|| msg.detached()).clone()
            } else {
                msg.clone()
            };
            let d = Delivery {
                seq: 0,
                msg: one,
                qos: m.qos,
                retain,
                sub_ids: m.sub_ids,
            };
            match s.offer(d, &self.limits, now, &mut self.journal) {
                Offer::Dropped(k) => dropped += k,
                Offer::Overflow if publisher.is_some() => self.overflowed(now, m.session),
                Offer::Overflow | Offer::Accepted => {}
            }
        }
        if dropped > 0 {
            Metrics::add(&self.metrics.messages_dropped, dropped as u64);
        }
        self.matches = matches;
        self.hit_groups = hit_groups;
        n
    }

    /// Chooses one member of a shared group, round robin, preferring members with a
    /// live connection: each message goes to one session of the group (5.0 section 4.8.2).
    fn pick_member(&mut self, gk: usize, msg: &Message) -> Option<Match> {
        let g = self.groups.get_mut(gk)?;
        let n = g.members.len();
        if n == 0 {
            return None;
        }
        let sessions = &self.sessions;
        let start = g.next % n;
        let i = (0..n)
            .map(|step| (start + step) % n)
            .find(|&i| {
                g.members
                    .get(i)
                    .is_some_and(|m| sessions.get(m.0).is_some_and(|s| s.online()))
            })
            .unwrap_or(start);
        g.next = (i + 1) % n;
        let (session, options, id) = *g.members.get(i)?;
        Some(Match {
            session,
            qos: options.qos.min(msg.qos),
            retain_as_published: options.retain_as_published,
            sub_ids: id.into_iter().collect(),
        })
    }

    pub(super) fn on_puback(&mut self, now: Instant, key: usize, pkid: u16) {
        let Some(s) = self.sessions.get_mut(key) else {
            return;
        };
        if let AckOutcome::Completed(d) = s.window.on_puback(pkid) {
            self.completed(now, key, d.seq);
        }
    }

    /// A delivery left the window: forget it durably and send the next ones.
    fn completed(&mut self, now: Instant, key: usize, seq: u64) {
        let Some(s) = self.sessions.get_mut(key) else {
            return;
        };
        if s.persistent() {
            self.journal
                .record(|| Mutation::DeleteDelivery(s.client_id.clone(), seq));
        }
        let mut dropped = s.pump(now, &mut self.journal);
        if s.replay_pending() {
            dropped += s.pump_replay(&self.limits, now, &mut self.journal);
        }
        Metrics::add(&self.metrics.messages_dropped, dropped as u64);
        self.drained(key);
    }

    /// The connection wrote what was queued: send more of the retained replay.
    pub(super) fn on_drained(&mut self, now: Instant, key: usize) {
        let Some(s) = self.sessions.get_mut(key) else {
            return;
        };
        let dropped = s.pump_replay(&self.limits, now, &mut self.journal);
        Metrics::add(&self.metrics.messages_dropped, dropped as u64);
    }

    pub(super) fn on_pubrec(&mut self, now: Instant, key: usize, pkid: u16, failed: bool) {
        let Some(s) = self.sessions.get_mut(key) else {
            return;
        };
        match s.window.on_pubrec(pkid, failed) {
            AckOutcome::SendPubRel => {
                if s.persistent()
                    && let Some(f) = s.window.iter().find(|f| f.pkid == pkid)
                {
                    let rec = f.item.record(DeliveryState::AwaitPubComp(pkid));
                    self.journal
                        .record(|| Mutation::PutDelivery(s.client_id.clone(), rec));
                }
                // Held like an acknowledgement: under `sync` the PUBREL goes out only
                // once the AwaitPubComp state is on disk, so a restart never resends a
                // PUBLISH the receiver has already released [MQTT-4.3.3-10].
                if let Some(conn) = s.conn.as_ref().map(|c| c.id) {
                    self.held_acks
                        .push((key, conn, Packet::PubRel(PubAck::new(pkid))));
                }
            }
            AckOutcome::Completed(d) => self.completed(now, key, d.seq),
            AckOutcome::Unknown => {
                let v5 = s.conn.as_ref().is_some_and(|c| c.protocol.is_v5());
                // Answer so the client does not wait forever; 5.0 says why.
                let mut rel = PubAck::new(pkid);
                if v5 {
                    rel.reason = ReasonCode::PACKET_IDENTIFIER_NOT_FOUND;
                }
                s.send(Packet::PubRel(rel));
            }
        }
    }

    pub(super) fn on_pubrel(&mut self, key: usize, conn: u64, pkid: u16) {
        let Some(s) = self.sessions.get_mut(key) else {
            return;
        };
        let known = s.incoming.on_pubrel(pkid);
        if known && s.persistent() {
            self.journal
                .record(|| Mutation::DeleteIncoming(s.client_id.clone(), pkid));
        }
        let mut comp = PubAck::new(pkid);
        if !known && s.conn.as_ref().is_some_and(|c| c.protocol.is_v5()) {
            comp.reason = ReasonCode::PACKET_IDENTIFIER_NOT_FOUND;
        }
        // Held with the other acknowledgements so it never overtakes the PUBREC.
        self.held_acks.push((key, conn, Packet::PubComp(comp)));
    }

    pub(super) fn on_pubcomp(&mut self, now: Instant, key: usize, pkid: u16) {
        let Some(s) = self.sessions.get_mut(key) else {
            return;
        };
        if let AckOutcome::Completed(d) = s.window.on_pubcomp(pkid) {
            self.completed(now, key, d.seq);
        }
    }
}

/// The shared encodings of one routed message for its QoS 0 subscribers, one per wire
/// form (3.x, and 5.0 without topic aliases or subscription identifiers): the PUBLISH is
/// the same bytes for all of them but the RETAIN bit, which the outbox sets. Each is
/// built on first use.
struct SharedWire<'a> {
    msg: &'a Arc<Message>,
    /// `None` before the first use; `Some(None)` when the message cannot be shared.
    v3: Option<Option<Arc<[u8]>>>,
    v5: Option<Option<Arc<[u8]>>>,
}

impl<'a> SharedWire<'a> {
    fn new(msg: &'a Arc<Message>) -> SharedWire<'a> {
        SharedWire {
            msg,
            v3: None,
            v5: None,
        }
    }

    /// The bytes for `s`, if its connection takes a shared form: an online 3.x one, or
    /// a 5.0 one that uses no topic aliases, for a delivery without subscription
    /// identifiers (`plain`). Others encode per delivery.
    fn for_session(&mut self, s: &super::session::Session, plain: bool) -> Option<&Arc<[u8]>> {
        let conn = s.conn.as_ref()?;
        let msg = self.msg;
        let slot = if !conn.protocol.is_v5() {
            &mut self.v3
        } else if plain && !conn.topic_aliases {
            &mut self.v5
        } else {
            return None;
        };
        slot.get_or_insert_with(|| msg.shared_qos0(conn.protocol))
            .as_ref()
    }
}
