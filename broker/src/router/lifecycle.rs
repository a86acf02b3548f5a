//! Session lifecycle: CONNECT (new, resumed, clean start, take-over), the end of a
//! connection (will, will delay, session expiry), timers, and the session record in the
//! store.

use std::sync::Arc;
use std::time::{Duration, Instant};

use canopy_proto::{ReasonCode, TopicFilter, Will};

use super::session::{Activation, Conn, Delivery, Session};
use super::{ConnectReply, ConnectRequest, Router, Timer};
use crate::message::Message;
use crate::metrics::Metrics;
use crate::outbox::Outgoing;
use crate::store::{DeliveryState, Mutation, StoredSession};
use canopy_proto::session::OutState;

impl Router {
    pub(super) fn on_connect(&mut self, now: Instant, req: ConnectRequest) {
        let conn_id = self.next_conn;
        self.next_conn += 1;
        let mut session_present = false;
        if let Some(&key) = self.by_id.get(&req.client_id) {
            if let Some(s) = self.sessions.get_mut(key) {
                if let Some(old) = s.conn.take() {
                    // Take-over [MQTT-3.1.4-2]: the old connection is closed; 5.0 is told.
                    tracing::info!(client_id = %s.client_id, "session taken over");
                    old.outbox
                        .push(Outgoing::Disconnect(ReasonCode::SESSION_TAKEN_OVER, None));
                    // Its will is due now unless it has a delay, which the new
                    // connection interrupts [MQTT-3.1.3-9].
                    if let Some(w) = s.will.take()
                        && w.properties.will_delay_interval.unwrap_or(0) == 0
                    {
                        let author = WillAuthor::of(s);
                        self.publish_will(now, &author, *w);
                    }
                } else {
                    // A delayed will is cancelled by the new connection.
                    s.will = None;
                }
            }
            if req.clean_start {
                self.end_session(now, key, false);
            } else {
                session_present = true;
            }
        }
        let key = match self.by_id.get(&req.client_id) {
            Some(&key) => key,
            None => {
                let mut session =
                    Session::new(req.client_id.clone(), req.session_expiry, self.max_inflight);
                session.set_own_limits(self.bridge_limits.get(&*req.client_id).copied());
                let key = self.sessions.insert(session);
                self.by_id.insert(req.client_id.clone(), key);
                key
            }
        };
        let window = req.receive_maximum.min(self.max_inflight);
        let Some(s) = self.sessions.get_mut(key) else {
            return;
        };
        let was_persistent = s.expiry_interval > 0 && session_present;
        s.conn = Some(Conn {
            id: conn_id,
            outbox: req.outbox,
            protocol: req.protocol,
            max_packet_size: req.max_packet_size.and_then(std::num::NonZeroU32::new),
            topic_aliases: req.protocol.is_v5() && req.topic_alias_maximum > 0,
        });
        s.user = req.user;
        s.bridge = req.bridge;
        s.assigned_id = req.assigned;
        s.expiry_interval = req.session_expiry;
        s.set_expires_at(None);
        s.will = req.will.map(Box::new);
        s.set_will_at(None);
        s.window.set_capacity(window);
        let reply = ConnectReply {
            session: key,
            conn: conn_id,
            session_present,
        };
        if req.reply.send(reply).is_err() {
            // The connection went away while we were deciding; it will never send
            // Disconnected, so end it here.
            self.on_disconnected(now, key, true, None, "connection lost");
            return;
        }
        if session_present {
            s.resend_in_flight();
            let dropped = s.pump(now, &mut self.journal);
            Metrics::add(&self.metrics.messages_dropped, dropped as u64);
        }
        // A taken-over or resumed subscriber starts with a fresh slow-consumer clock.
        self.release_holds(key);
        if req.session_expiry > 0 {
            self.persist_session(key);
        } else if was_persistent {
            self.journal
                .record(|| Mutation::DeleteSession(req.client_id.clone()));
            self.forget_stored(key);
        }
        if let Some(info) = self
            .sessions
            .get(key)
            .map(|s| super::hosting::client_info(s, None))
        {
            self.services_connect(now, &info, session_present);
        }
    }

    pub(super) fn on_disconnected(
        &mut self,
        now: Instant,
        key: usize,
        publish_will: bool,
        expiry: Option<u32>,
        reason: &'static str,
    ) {
        let Some(s) = self.sessions.get_mut(key) else {
            return;
        };
        let Some(conn) = s.conn.take() else { return };
        s.last_conn = conn.id;
        let author = WillAuthor::of(s);
        let info = super::hosting::client_info(s, Some(&conn));
        self.gone_offline(key);
        self.services_disconnect(now, &info, reason);
        let Some(s) = self.sessions.get_mut(key) else {
            return;
        };
        if let Some(e) = expiry {
            s.expiry_interval = e;
        }
        let will = s.will.take().filter(|_| publish_will);
        if s.expiry_interval == 0 {
            if let Some(w) = will {
                self.publish_will(now, &author, *w);
            }
            self.end_session(now, key, true);
            return;
        }
        if s.expiry_interval != u32::MAX {
            let at = now + Duration::from_secs(u64::from(s.expiry_interval));
            s.set_expires_at(Some(at));
            self.timers.insert((
                at,
                Timer::Expire {
                    session: key,
                    conn: conn.id,
                },
            ));
        }
        let mut due_now = None;
        if let Some(w) = will {
            let delay = w.properties.will_delay_interval.unwrap_or(0);
            if delay == 0 {
                due_now = Some(w);
            } else {
                // Published when the delay ends, or when the session ends if sooner
                // [MQTT-3.1.3-9].
                let at = now + Duration::from_secs(u64::from(delay));
                s.will = Some(w);
                s.set_will_at(Some(at));
                self.timers.insert((
                    at,
                    Timer::Will {
                        session: key,
                        conn: conn.id,
                    },
                ));
            }
        }
        self.persist_session(key);
        if let Some(w) = due_now {
            self.publish_will(now, &author, *w);
        }
    }

    pub(super) fn fire_timers(&mut self, now: Instant) {
        while let Some(&(at, timer)) = self.timers.first() {
            if at > now {
                break;
            }
            self.timers.pop_first();
            match timer {
                Timer::Will { session, conn } => {
                    let Some(s) = self
                        .sessions
                        .get_mut(session)
                        .filter(|s| s.conn.is_none() && s.last_conn == conn)
                    else {
                        continue;
                    };
                    s.set_will_at(None);
                    if let Some(w) = s.will.take() {
                        let author = WillAuthor::of(s);
                        self.persist_session(session);
                        self.publish_will(now, &author, *w);
                    }
                }
                Timer::SlowConsumer { session, conn } => self.slow_consumer(now, session, conn),
                Timer::SubAck { ticket } => self.release_suback(ticket, false),
                Timer::Expire { session, conn } => {
                    let due = self
                        .sessions
                        .get(session)
                        .is_some_and(|s| s.conn.is_none() && s.last_conn == conn);
                    if due {
                        tracing::debug!(session, "session expired");
                        self.end_session(now, session, true);
                    }
                }
            }
        }
    }

    /// Ends a session: its pending will goes out [MQTT-3.1.3-9], its subscriptions
    /// leave the trie, its queue is dropped and the store forgets it. A session with more
    /// than [`super::ending::LARGE`] subscriptions ends the same way for everything a
    /// client can see, but its subscriptions leave the index over the next turns
    /// (`ending.rs`); its shared ones leave now, so that no group picks a member that is
    /// gone.
    pub(super) fn end_session(&mut self, now: Instant, key: usize, publish_pending_will: bool) {
        let Some(s) = self.sessions.get_mut(key) else {
            return;
        };
        if s.ending {
            return;
        }
        let will = s.will.take();
        let stored = s.expiry_interval > 0 || s.expires_at().is_some();
        let large = s.subscriptions.len() > super::ending::LARGE;
        if large {
            // Nothing of it is journaled from now on: `DeleteSession` below removes its rows.
            s.expiry_interval = 0;
            s.set_expires_at(None);
            s.set_will_at(None);
            s.record_dirty = false;
            s.clear_dirty_filters();
        }
        let leaving_now: Vec<Arc<str>> = s
            .subscriptions
            .keys()
            .filter(|f| !large || f.starts_with("$share/"))
            .cloned()
            .collect();
        self.forget_deferred(key);
        for f in leaving_now {
            self.remove_subscription(key, &f);
        }
        self.release_holds(key);
        let Some(s) = self.sessions.get_mut(key) else {
            return;
        };
        let lost = s.queue.len() + s.window.len();
        let author = WillAuthor::of(s);
        self.by_id.remove(&s.client_id);
        if large {
            s.ending = true;
            s.queue.clear();
            s.replay_clear();
        } else {
            self.sessions.try_remove(key);
        }
        if stored {
            let id = author.client_id.clone();
            self.journal.record(|| Mutation::DeleteSession(id));
        }
        if lost > 0 {
            Metrics::add(&self.metrics.messages_dropped, lost as u64);
        }
        if publish_pending_will && let Some(w) = will {
            self.publish_will(now, &author, *w);
        }
        self.services_session_end(now, &author.client_id);
        if large {
            self.end_later(now, key);
        }
    }

    /// Publishes a will message as if its client had sent it, if the access seam lets
    /// that client publish there (a will is a PUBLISH deferred, not a privilege).
    /// `author` is the session as it was when the will was left.
    pub(super) fn publish_will(&mut self, now: Instant, author: &WillAuthor, w: Will) {
        let client_id = &*author.client_id;
        let who = crate::access::Who {
            client_id,
            user: author.user.as_deref(),
            bridge: author.bridge,
        };
        let req = crate::access::Request::Will { topic: &w.topic };
        if let Err(why) = self.access.check(&who, &req, &|_| false) {
            Metrics::add(&self.metrics.publish_denied, 1);
            tracing::info!(%client_id, topic = %w.topic, why = why.0, "will not published");
            return;
        }
        let p = w.properties;
        let msg = Arc::new(Message {
            topic: w.topic,
            qos: w.qos,
            retain: w.retain,
            properties: canopy_proto::PublishProperties {
                payload_format_indicator: p.payload_format_indicator,
                message_expiry_interval: p.message_expiry_interval,
                topic_alias: None,
                response_topic: p.response_topic,
                correlation_data: p.correlation_data,
                user_properties: p.user_properties,
                subscription_identifiers: Vec::new(),
                content_type: p.content_type,
            }
            .into(),
            payload: w.payload,
            expires_at: Message::expiry_from(now, p.message_expiry_interval),
        });
        if msg.topic.starts_with('$')
            && self.services_publish(now, None, &msg) == crate::services::Disposition::Consume
        {
            return;
        }
        if msg.retain {
            self.set_retained(&msg, true);
        }
        self.route(now, None, &msg);
        self.fire_triggers(now, &msg.topic);
    }

    /// Recreates a session from the store at start-up. A session that was connected
    /// when the broker stopped counts as disconnected now: its expiry starts now and its
    /// will (if it had one) is published after its delay, as after any lost connection.
    pub(super) fn restore_session(&mut self, now: Instant, stored: StoredSession) {
        let rec = stored.record;
        let mut session = Session::new(
            rec.client_id.clone(),
            rec.expiry_interval,
            self.max_inflight,
        );
        session.set_own_limits(self.bridge_limits.get(&*rec.client_id).copied());
        let key = self.sessions.insert(session);
        self.by_id.insert(rec.client_id.clone(), key);
        for sub in rec.subscriptions {
            let Ok(filter) = TopicFilter::new(&sub.filter) else {
                continue;
            };
            let shared = canopy_proto::SharedFilter::parse(&filter).ok().flatten();
            let activation = sub.activation.as_ref().and_then(Activation::from_record);
            self.add_subscription(
                key,
                &filter,
                shared.as_ref(),
                sub.options,
                sub.identifier,
                activation,
            );
        }
        let Some(s) = self.sessions.get_mut(key) else {
            return;
        };
        let was_connected = rec.expires_at.is_none() && rec.will_at.is_none();
        if rec.expiry_interval != u32::MAX {
            let at = rec
                .expires_at
                .unwrap_or_else(|| now + Duration::from_secs(u64::from(rec.expiry_interval)));
            s.set_expires_at(Some(at));
            self.timers.insert((
                at,
                Timer::Expire {
                    session: key,
                    conn: 0,
                },
            ));
        }
        if let Some(w) = rec.will {
            let at = rec.will_at.unwrap_or_else(|| {
                let delay = if was_connected {
                    w.properties.will_delay_interval.unwrap_or(0)
                } else {
                    0
                };
                now + Duration::from_secs(u64::from(delay))
            });
            s.will = Some(Box::new(w));
            s.set_will_at(Some(at));
            self.timers.insert((
                at,
                Timer::Will {
                    session: key,
                    conn: 0,
                },
            ));
        }
        let mut max_seq = 0;
        for d in stored.deliveries {
            max_seq = max_seq.max(d.seq);
            let delivery = Delivery {
                seq: d.seq,
                msg: d.msg,
                qos: d.qos,
                retain: d.retain,
                sub_ids: d.sub_ids,
            };
            match d.state {
                DeliveryState::Queued => {
                    s.queue.push_back(delivery);
                }
                DeliveryState::AwaitPubAck(pkid) => {
                    s.window.restore(pkid, OutState::AwaitPubAck, delivery)
                }
                DeliveryState::AwaitPubRec(pkid) => {
                    s.window.restore(pkid, OutState::AwaitPubRec, delivery)
                }
                DeliveryState::AwaitPubComp(pkid) => {
                    s.window.restore(pkid, OutState::AwaitPubComp, delivery)
                }
            }
        }
        s.next_seq = max_seq + 1;
        for pkid in stored.incoming {
            s.incoming.on_publish(pkid);
        }
        self.mark_restored(key);
    }
}

/// Who left a will: what the access seam needs of its session once the session is gone.
pub(super) struct WillAuthor {
    client_id: Arc<str>,
    user: Option<Arc<str>>,
    bridge: bool,
}

impl WillAuthor {
    fn of(s: &Session) -> WillAuthor {
        WillAuthor {
            client_id: s.client_id.clone(),
            user: s.user.clone(),
            bridge: s.bridge,
        }
    }
}
