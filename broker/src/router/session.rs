//! One MQTT session as the router keeps it: subscriptions, the queue of messages not
//! yet sent, the outgoing in-flight window, incoming QoS 2 state, the will, and the live
//! connection if there is one.
//!
//! Owns the per-session delivery rules: bounded queueing with counted drops, moving
//! queued messages into the window as acknowledgements free it, resending in order after
//! a reconnect. It never touches another session, the tries or the store.

use std::collections::VecDeque;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Instant;

use canopy_proto::session::{IncomingQos2, OutState, Outgoing as Window};
use canopy_proto::{Packet, Protocol, PubAck, QoS, SubscriptionOptions, TopicFilter, Will};

use super::journal::Journal;
use super::queue::Queue;
use super::rare::Rare;
use super::submap::SubMap;
use crate::config::QueueFullPolicy;
use crate::message::Message;
use crate::outbox::{Outbox, Outgoing};
use crate::store::{DeliveryRecord, DeliveryState, Mutation};

impl Delivery {
    /// The store's record of this delivery in `state`.
    pub fn record(&self, state: DeliveryState) -> DeliveryRecord {
        DeliveryRecord {
            seq: self.seq,
            msg: self.msg.clone(),
            qos: self.qos,
            retain: self.retain,
            sub_ids: self.sub_ids.clone(),
            state,
        }
    }
}

/// QoS 1/2 retained replay moves into the queue only while the queue is shorter than
/// this; the in-flight window then paces it.
const REPLAY_QUEUE_LOW_WATER: usize = 64;

/// A message waiting for, or in, the in-flight window.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// Position in the session's delivery order; the store key of persistent
    /// deliveries. Assigned by [`Session::offer`].
    pub seq: u64,
    /// The message.
    pub msg: Arc<Message>,
    /// QoS of this delivery (min of published and granted).
    pub qos: QoS,
    /// RETAIN flag to send.
    pub retain: bool,
    /// Subscription identifiers to send.
    pub sub_ids: Vec<u32>,
}

/// A subscription as the session remembers it (the trie holds the matching copy
/// while it is active).
#[derive(Debug, Clone)]
pub struct SubEntry {
    /// Options.
    pub options: SubscriptionOptions,
    /// Subscription identifier.
    pub identifier: Option<u32>,
    /// Event activation (SPEC §3), if registered with one (boxed: most subscriptions
    /// have none, and inline it more than doubled every session's subscription map).
    pub activation: Option<Box<Activation>>,
}

impl SubEntry {
    /// Whether the subscription is in the matching index now.
    pub fn active(&self) -> bool {
        self.activation.as_ref().is_none_or(|a| a.active)
    }
}

/// How an event-activated subscription is switched on and off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Activation {
    /// PUBLISHes matching this filter activate the subscription.
    pub activate_on: Option<TopicFilter>,
    /// PUBLISHes matching this filter deactivate it.
    pub deactivate_on: Option<TopicFilter>,
    /// Whether activation delivers the retained messages matching the filter.
    pub replay_retained: bool,
    /// Whether it is active now.
    pub active: bool,
}

/// The live connection of a session.
#[derive(Debug)]
pub struct Conn {
    /// Generation number; commands from older connections are ignored.
    pub id: u64,
    /// Where to send packets.
    pub outbox: Arc<Outbox>,
    /// Protocol level of the connection.
    pub protocol: Protocol,
    /// The client's Maximum Packet Size, if it set one [MQTT-3.1.2-24] (never 0: the
    /// decoder refuses that; `NonZeroU32` so that the `Option` takes no extra word).
    pub max_packet_size: Option<NonZeroU32>,
    /// Whether the connection may replace topics by aliases in deliveries (5.0, the
    /// client's Topic Alias Maximum is above 0): then it encodes each PUBLISH itself.
    pub topic_aliases: bool,
}

/// Limits that apply to every session's queue.
#[derive(Debug, Clone, Copy)]
pub struct QueueLimits {
    /// Most messages queued.
    pub max_messages: usize,
    /// Most bytes queued (approximate, see [`Message::weight`]).
    pub max_bytes: usize,
    /// Which message goes when the queue is full.
    pub policy: QueueFullPolicy,
}

/// Outcome of offering a message to a session.
#[derive(Debug, PartialEq, Eq)]
pub enum Offer {
    /// Accepted (queued, in flight or written).
    Accepted,
    /// Queued beyond the queue limits of an online session: its publisher must be held
    /// back until the queue drains (docs/flow-control.md).
    Overflow,
    /// Dropped (counted by the caller): the queue was full, or it was QoS 0 for a
    /// session without a usable connection.
    Dropped(usize),
}

/// One session.
#[derive(Debug)]
pub struct Session {
    /// Client identifier.
    pub client_id: Arc<str>,
    /// The user the last connection authenticated as, if any: what the access seam
    /// checks deliveries against, also while the session is offline.
    pub user: Option<Arc<str>>,
    /// Whether the last connection was this broker's embedded bridge (in-process identity).
    pub bridge: bool,
    /// Whether the broker assigned the client identifier.
    pub assigned_id: bool,
    /// The live connection, if any.
    pub conn: Option<Conn>,
    /// Session Expiry Interval in seconds (`u32::MAX`: never) [MQTT-3.1.2-23].
    pub expiry_interval: u32,
    /// Subscriptions by filter string (shared ones keep their `$share/` prefix).
    pub subscriptions: SubMap,
    /// Messages not yet in flight, oldest first, and their approximate bytes.
    pub queue: Queue,
    /// Outgoing QoS 1/2 deliveries awaiting acknowledgement.
    pub window: Window<Delivery>,
    /// Incoming QoS 2 packet ids awaiting PUBREL.
    pub incoming: IncomingQos2,
    /// Will of the current (or last) connection (boxed: most sessions have none, and
    /// inline it was a third of every idle session).
    pub will: Option<Box<Will>>,
    /// Publish-matching epoch last seen, to merge overlapping subscriptions.
    pub match_epoch: u64,
    /// Index into the router's match list for `match_epoch` (`u32`: it shares a word
    /// with `expiry_interval`).
    pub match_slot: u32,
    /// Generation of the last connection that ended, to recognise stale timers.
    pub last_conn: u64,
    /// Next delivery sequence number.
    pub next_seq: u64,
    /// The retained replay, the session's own queue limits, its expiry and will timers,
    /// its back-pressure bookkeeping and the filters changed since the last journal
    /// batch: set for few sessions, so boxed together and allocated only while one is
    /// set (`rare.rs`, whose accessors read and set them).
    pub rare: Option<Box<Rare>>,
    /// The session's own fields changed since the last batch was submitted (the record,
    /// without subscriptions, is rebuilt once per batch, however many changes it holds).
    pub record_dirty: bool,
    /// Whether the session is in the router's list of sessions to journal.
    pub journal_queued: bool,
    /// The session has ended and its subscriptions are leaving the index a chunk per
    /// turn (`ending.rs`): nothing is delivered to it any more.
    pub ending: bool,
    /// Whether the store holds this session's record (and so its subscriptions). A
    /// session stored for the first time is written with all its subscriptions.
    pub stored: bool,
}

/// One acknowledgement a publisher waits for because a subscriber's queue is full.
#[derive(Debug)]
pub struct Gate {
    /// Identifies the gate among the publisher's.
    pub id: u64,
    /// The publisher's connection generation.
    pub conn: u64,
    /// PUBACK or PUBREC to release.
    pub packet: Packet,
    /// Subscriber queues still over their limit because of this message.
    pub waiting: u32,
}

/// Back-pressure state of a session, as a publisher and as a subscriber.
#[derive(Debug, Default)]
pub struct Pressure {
    /// As a publisher: acknowledgements held back, in the order they were made; one is
    /// released only when it and every one before it is free [MQTT-4.6.0-2].
    pub gates: VecDeque<Gate>,
    /// As a subscriber: the gates (publisher session, gate id) this session's full
    /// queue holds closed.
    pub holds: Vec<(usize, u64)>,
    /// As a subscriber: since when its queue has been over its limits while online.
    pub full_since: Option<Instant>,
}

impl Session {
    /// A fresh session.
    pub fn new(client_id: Arc<str>, expiry_interval: u32, window: u16) -> Session {
        Session {
            client_id,
            user: None,
            bridge: false,
            assigned_id: false,
            conn: None,
            expiry_interval,
            subscriptions: SubMap::new(),
            queue: Queue::default(),
            window: Window::new(window),
            incoming: IncomingQos2::default(),
            will: None,
            match_epoch: 0,
            match_slot: 0,
            last_conn: 0,
            next_seq: 1,
            rare: None,
            record_dirty: false,
            journal_queued: false,
            ending: false,
            stored: false,
        }
    }

    /// Whether a connection is attached and open.
    pub fn online(&self) -> bool {
        self.conn.as_ref().is_some_and(|c| !c.outbox.is_closed())
    }

    /// Whether the session outlives its connection, so its deliveries are journaled.
    pub fn persistent(&self) -> bool {
        self.expiry_interval > 0
    }

    /// Offers a delivery to the session at `now`: QoS 0 goes straight to the
    /// connection (or is dropped when there is none), QoS 1/2 is queued then pumped.
    /// For an offline session the caller passes a message that no longer shares a read
    /// buffer ([`Message::detached`], done once per publish by the router).
    pub fn offer(
        &mut self,
        d: Delivery,
        limits: &QueueLimits,
        now: Instant,
        journal: &mut Journal,
    ) -> Offer {
        if d.qos == QoS::AtMostOnce {
            let Some(conn) = &self.conn else {
                return Offer::Dropped(1);
            };
            if !fits(conn, &d) {
                return Offer::Dropped(1);
            }
            let ok = conn.outbox.push(Outgoing::Publish {
                msg: d.msg,
                qos: QoS::AtMostOnce,
                pkid: None,
                retain: d.retain,
                dup: false,
                sub_ids: d.sub_ids,
            });
            return if ok {
                Offer::Accepted
            } else {
                Offer::Dropped(1)
            };
        }
        let mut dropped = 0;
        let limits = &self.own_limits().copied().unwrap_or(*limits);
        let weight = d.msg.weight();
        let full = |s: &Session| {
            s.queue.len() >= limits.max_messages.max(1)
                || (s.queue.bytes() + weight > limits.max_bytes && !s.queue.is_empty())
        };
        if self.online() && full(self) && self.queue.len() < overflow_cap(limits) {
            // An online subscriber that is behind: keep the message and let the router
            // hold its publisher back, rather than acknowledge and discard.
            self.push_queued(d, journal);
            return Offer::Overflow;
        }
        while full(self) {
            match limits.policy {
                QueueFullPolicy::DropOldest => {
                    if let Some(old) = self.queue.pop_front() {
                        dropped += 1;
                        if self.persistent() {
                            journal.record(|| {
                                Mutation::DeleteDelivery(self.client_id.clone(), old.seq)
                            });
                        }
                    } else {
                        break;
                    }
                }
                QueueFullPolicy::DropNewest => return Offer::Dropped(dropped + 1),
            }
        }
        self.push_queued(d, journal);
        dropped += self.pump(now, journal);
        if dropped > 0 {
            Offer::Dropped(dropped)
        } else {
            Offer::Accepted
        }
    }

    /// Offers a QoS 0 delivery whose PUBLISH is already encoded, shared by every
    /// subscriber with this session's wire form ([`Message::shared_qos0`]); the same
    /// rules as a QoS 0 [`Session::offer`] (dropped offline, over the client's Maximum
    /// Packet Size, or beyond the outbox's QoS 0 bound).
    pub fn offer_wire(&self, bytes: &Arc<[u8]>, retain: bool) -> Offer {
        let Some(conn) = &self.conn else {
            return Offer::Dropped(1);
        };
        if conn
            .max_packet_size
            .is_some_and(|max| bytes.len() > max.get() as usize)
        {
            return Offer::Dropped(1);
        }
        if conn.outbox.push_encoded(bytes, retain) {
            Offer::Accepted
        } else {
            Offer::Dropped(1)
        }
    }

    /// Appends `d` to the queue with the next sequence number (journaled when persistent).
    fn push_queued(&mut self, mut d: Delivery, journal: &mut Journal) {
        d.seq = self.next_seq;
        self.next_seq += 1;
        if self.persistent() {
            journal.record(|| {
                Mutation::PutDelivery(self.client_id.clone(), d.record(DeliveryState::Queued))
            });
        }
        self.queue.push_back(d);
    }

    /// Whether the queue is within `limits` (the broker's, or the session's own).
    pub fn within_limits(&self, limits: &QueueLimits) -> bool {
        let limits = self.own_limits().unwrap_or(limits);
        self.queue.len() <= limits.max_messages.max(1)
            && (self.queue.bytes() <= limits.max_bytes || self.queue.len() <= 1)
    }

    /// Drops queued messages until the queue is within `limits`, by the `queue_full`
    /// policy (an online queue that overflowed becomes an offline one). Returns how many.
    pub fn trim(&mut self, limits: &QueueLimits, journal: &mut Journal) -> usize {
        let limits = *self.own_limits().unwrap_or(limits);
        let mut dropped = 0;
        while !self.within_limits(&limits) {
            let gone = match limits.policy {
                QueueFullPolicy::DropOldest => self.queue.pop_front(),
                QueueFullPolicy::DropNewest => self.queue.pop_back(),
            };
            let Some(old) = gone else { break };
            dropped += 1;
            if self.persistent() {
                journal.record(|| Mutation::DeleteDelivery(self.client_id.clone(), old.seq));
            }
        }
        dropped
    }

    /// Moves queued messages into the in-flight window while it has room and a
    /// connection is attached. Returns how many expired or oversized messages it
    /// dropped on the way [MQTT-3.3.2-5], [MQTT-3.1.2-25].
    pub fn pump(&mut self, now: Instant, journal: &mut Journal) -> usize {
        let mut dropped = 0;
        let persistent = self.persistent();
        let Some(conn) = &self.conn else { return 0 };
        while self.window.has_room() {
            let Some(d) = self.queue.pop_front() else {
                break;
            };
            if d.msg.expired(now) || !fits(conn, &d) {
                dropped += 1;
                if persistent {
                    journal.record(|| Mutation::DeleteDelivery(self.client_id.clone(), d.seq));
                }
                continue;
            }
            // A QoS 2 packet id must survive a restart so that a resend reuses it and
            // the receiver recognises the duplicate [MQTT-4.3.3-10]; QoS 1 may be
            // resent under a new id.
            let rec =
                (persistent && d.qos == QoS::ExactlyOnce).then(|| d.record(DeliveryState::Queued));
            let item = Outgoing::Publish {
                msg: d.msg.clone(),
                qos: d.qos,
                pkid: None,
                retain: d.retain,
                dup: false,
                sub_ids: d.sub_ids.clone(),
            };
            match self.window.push(d.qos == QoS::ExactlyOnce, d) {
                Ok(pkid) => {
                    if let Some(mut rec) = rec {
                        rec.state = DeliveryState::AwaitPubRec(pkid);
                        journal.record(|| Mutation::PutDelivery(self.client_id.clone(), rec));
                    }
                    let item = match item {
                        Outgoing::Publish {
                            msg,
                            qos,
                            retain,
                            dup,
                            sub_ids,
                            ..
                        } => Outgoing::Publish {
                            msg,
                            qos,
                            pkid: Some(pkid),
                            retain,
                            dup,
                            sub_ids,
                        },
                        other => other,
                    };
                    journal.deliver(&conn.outbox, item);
                }
                Err(d) => {
                    self.queue.push_front(d);
                    break;
                }
            }
        }
        dropped
    }

    /// Sends as much of the retained replay as the connection can take now: QoS 0 while
    /// the outbox has room, QoS 1/2 while the queue is short (then the window paces it).
    /// When something is left, asks the connection for a drain report. Without a
    /// connection, QoS 1/2 replay goes to the queue (limits apply) and QoS 0 is dropped.
    /// Returns how many were dropped.
    pub fn pump_replay(
        &mut self,
        limits: &QueueLimits,
        now: Instant,
        journal: &mut Journal,
    ) -> usize {
        let mut dropped = 0;
        // Ask before pushing: the connection may drain what we push before we return,
        // and a request made afterwards would then never be answered.
        if self.replay_pending()
            && let Some(c) = &self.conn
        {
            c.outbox.request_drain_notice();
        }
        while let Some(d) = self.replay_front() {
            let online = self.conn.as_ref().is_some_and(|c| !c.outbox.is_closed());
            if d.qos == QoS::AtMostOnce {
                if online && !self.conn.as_ref().is_some_and(|c| c.outbox.qos0_has_room()) {
                    break;
                }
            } else if online && self.queue.len() >= REPLAY_QUEUE_LOW_WATER {
                break;
            }
            let Some(d) = self.replay_pop() else {
                break;
            };
            if d.msg.expired(now) {
                continue;
            }
            if let Offer::Dropped(n) = self.offer(d, limits, now, journal) {
                dropped += n;
            }
        }
        dropped
    }

    /// Resends everything in flight, in order, after a reconnect: PUBLISH with DUP for
    /// deliveries not yet acknowledged, PUBREL for those past PUBREC [MQTT-4.4.0-1].
    pub fn resend_in_flight(&self) {
        let Some(conn) = &self.conn else { return };
        for f in self.window.iter() {
            let item = match f.state {
                OutState::AwaitPubAck | OutState::AwaitPubRec => Outgoing::Publish {
                    msg: f.item.msg.clone(),
                    qos: f.item.qos,
                    pkid: Some(f.pkid),
                    retain: f.item.retain,
                    dup: true,
                    sub_ids: f.item.sub_ids.clone(),
                },
                OutState::AwaitPubComp => Outgoing::Packet(Packet::PubRel(PubAck::new(f.pkid))),
            };
            conn.outbox.push(item);
        }
    }

    /// Queues a packet to the live connection, if any.
    pub fn send(&self, packet: Packet) {
        if let Some(conn) = &self.conn {
            conn.outbox.push(Outgoing::Packet(packet));
        }
    }
}

/// Most messages an online session's queue holds while its publishers are held back.
/// Each publisher adds at most its Receive Maximum before it stops, so this is only a
/// last bound against a flood from very many publishers; beyond it `queue_full` applies.
fn overflow_cap(limits: &QueueLimits) -> usize {
    limits
        .max_messages
        .max(1)
        .saturating_mul(2)
        .max(limits.max_messages + 4096)
}

/// Whether the delivery fits the client's Maximum Packet Size [MQTT-3.1.2-25].
fn fits(conn: &Conn, d: &Delivery) -> bool {
    let Some(max) = conn.max_packet_size else {
        return true;
    };
    let max = max.get() as usize;
    // Cheap upper bound first: fixed header (5) + topic (2 + len) + packet id (2) +
    // payload + properties (bounded by their parts).
    let p = &d.msg.properties;
    let props: usize = if conn.protocol.is_v5() {
        16 + p
            .user_properties
            .iter()
            .map(|(k, v)| 5 + k.len() + v.len())
            .sum::<usize>()
            + p.response_topic.as_ref().map_or(0, |t| 3 + t.len())
            + p.correlation_data.as_ref().map_or(0, |c| 3 + c.len())
            + p.content_type.as_ref().map_or(0, |c| 3 + c.len())
            + d.sub_ids.len() * 5
    } else {
        0
    };
    let bound = 5 + 2 + d.msg.topic.len() + 2 + props + d.msg.payload.len();
    if bound <= max {
        return true;
    }
    // Exact size, the message's own properties borrowed rather than copied.
    let hop = canopy_proto::Publish {
        dup: false,
        qos: d.qos,
        retain: d.retain,
        topic: Some(d.msg.topic.clone()),
        pkid: (d.qos != QoS::AtMostOnce).then_some(1),
        properties: canopy_proto::PublishProperties {
            subscription_identifiers: d.sub_ids.clone(),
            message_expiry_interval: d.msg.properties.message_expiry_interval,
            ..Default::default()
        },
        payload: d.msg.payload.clone(),
    };
    canopy_proto::encoded_publish_shared_len(&hop, &d.msg.properties, conn.protocol) <= max
}
