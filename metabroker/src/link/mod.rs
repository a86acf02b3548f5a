//! One metabroker connection to a broker (MQTT 5.0 or 3.1.1 with manual acks, through the
//! workspace's rumqttc adapter `canopy_client::adapter`, which speaks 5.0 terms for both and
//! owns the reconnect backoff): the task that polls the connection, and the bookkeeping that
//! turns rumqttc's packet ids back into the pump's sequence numbers.
//!
//! Owns: the adapter's `Connection`, the packet id -> sequence map, QoS 2 duplicate
//! suppression for incoming messages, and the repair of rumqttc state across reconnects (see
//! below). Must never publish, subscribe or ack from the polling task (rumqttc deadlocks when
//! the request channel fills while nobody polls): everything is sent by the pump through the
//! adapter's `Client`; the polling task only reports [`LinkEvent`]s.
//!
//! rumqttc repairs done here, at each disconnect:
//! - it clears its memory of incoming QoS 2 packet ids, so the broker's PUBREL after a resumed
//!   session would be "unsolicited" and kill the connection forever: we re-register them;
//! - it resends in-flight publishes in packet-id order, which breaks publish order when ids
//!   wrapped: we sort them back into the order they were first sent [MQTT-4.6.0-1];
//! - it keeps the `OutgoingPublish` event of a publish whose write failed queued until after
//!   the reconnect: we take it before sorting, else that publish, unknown, would go first;
//! - on a session that was not resumed it silently drops them: we hand them back (`lost`).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use std::time::Duration;

use canopy_client::adapter::{self, Client, Connection, Event, Options, Version};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{LastWill, Publish};
use rumqttc::{TlsConfiguration, Transport};
use tokio::sync::mpsc;

use crate::config::{BackoffConfig, Endpoint, Protocol};
use crate::transport::{Scheme, parse_url, tls_config};

/// User property asking a Canopy broker for a SUBACK that waits for interest propagation.
pub const WAIT_PROPERTY: &str = "canopy-wait-interest";

/// How long a proxy SUBSCRIBE lets the broker above wait: the longest a Canopy broker
/// grants, so a waiting subscriber below always times out first.
pub const PROXY_WAIT_MS: u64 = 60_000;

/// Which side of the bridge a link serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    /// The broker the metabroker represents the remote one to.
    Local,
    /// The broker represented.
    Remote,
}

/// What a link tells the pump.
#[derive(Debug)]
pub enum LinkEvent {
    /// CONNACK received. `lost`: sequence numbers of publishes the broker will never see
    /// (session not resumed), oldest first; the pump must send them again.
    Up {
        /// The link.
        side: Side,
        /// The broker resumed the session.
        session_present: bool,
        /// Sequences to send again.
        lost: Vec<u64>,
    },
    /// The connection is gone; the link is reconnecting with backoff.
    Down {
        /// The link.
        side: Side,
        /// Why.
        reason: String,
    },
    /// An application message arrived (ack it with [`Link::ack`] once it is safe elsewhere).
    Message {
        /// The link.
        side: Side,
        /// The PUBLISH as received.
        publish: Box<Publish>,
        /// Session epoch the publish belongs to.
        epoch: u64,
    },
    /// SUBACK for a proxy subscription ([`Link::subscribe_proxy`]). `confirmed`: granted,
    /// and not marked `canopy-interest` = `unconfirmed` by a Canopy broker that could not
    /// confirm its own propagation upstream in time.
    ProxySubAck {
        /// The link.
        side: Side,
        /// The filter as subscribed.
        filter: String,
        /// Granted and confirmed.
        confirmed: bool,
    },
    /// The broker acknowledged the publish sent with sequence `seq` (PUBACK, or PUBREC for
    /// QoS 2: from then on the broker owns it). `accepted` is false on an error reason.
    Acked {
        /// The link.
        side: Side,
        /// The pump's sequence number.
        seq: u64,
        /// Reason code below 0x80.
        accepted: bool,
    },
}

/// Packet id bookkeeping shared between the pump (which pushes) and the polling task.
#[derive(Default)]
struct Correlation {
    /// Sequences of QoS 1/2 publishes handed to the client, not yet given a packet id.
    fifo: VecDeque<u64>,
    /// Filters handed to the client for SUBSCRIBE (and whether they are proxy ones), not
    /// yet given a packet id.
    subscribing: VecDeque<(String, bool)>,
}

/// The pump's handle on a link.
#[derive(Clone)]
pub struct Link {
    client: Client,
    side: Side,
    shared: Arc<Mutex<Correlation>>,
    epoch: Arc<AtomicU64>,
}

/// What the polling task reports to the shared bookkeeping.
enum Ev {
    ConnAck {
        session_present: bool,
    },
    Publish(Box<Publish>),
    OutgoingPubRec(u16),
    IncomingPubRel(u16),
    OutgoingPublish(u16),
    /// PUBACK or PUBREC for one of our publishes.
    Acked {
        pkid: u16,
        accepted: bool,
    },
    /// Our SUBSCRIBE left with this packet id.
    OutgoingSubscribe(u16),
    /// SUBACK: the first refusal code (0x80 or more), if any, and whether a Canopy broker
    /// said it could not confirm interest propagation.
    SubAck {
        pkid: u16,
        refused: Option<u8>,
        unconfirmed: bool,
    },
}

/// What the polling task keeps to itself.
struct Poller {
    side: Side,
    shared: Arc<Mutex<Correlation>>,
    epoch: Arc<AtomicU64>,
    /// Packet id -> sequence, for our QoS 1/2 publishes awaiting their ack.
    inflight: HashMap<u16, u64>,
    /// Sequences whose requests rumqttc moved to `pending` at the last disconnect.
    drained: VecDeque<u64>,
    /// Incoming QoS 2 ids handed to the pump and not yet PUBREC'd (duplicates are dropped).
    incoming_qos2: HashSet<u16>,
    /// Incoming QoS 2 ids PUBREC'd, waiting for PUBREL.
    awaiting_rel: HashSet<u16>,
    connected_once: bool,
    /// A `Down` was reported and no CONNACK came since.
    down: bool,
    events: mpsc::UnboundedSender<LinkEvent>,
    /// Our client id on this side, for the hint of a refused subscription.
    client_id: String,
    /// Packet id -> filter (and whether it is a proxy one) of our SUBSCRIBEs awaiting
    /// their SUBACK.
    subscribed: HashMap<u16, (String, bool)>,
}

/// Request channel capacity: room for the window, its acks and the pump's bursts.
fn channel_capacity(max_inflight: u16) -> usize {
    usize::from(max_inflight) * 2 + 2048
}

impl Link {
    /// Starts the polling task for `endpoint` (its `protocol` chooses 5.0 or 3.1.1) and
    /// returns the pump's handle.
    pub fn start(
        side: Side,
        endpoint: &Endpoint,
        client_id: &str,
        backoff: BackoffConfig,
        max_inflight: u16,
        will: Option<LastWill>,
        events: mpsc::UnboundedSender<LinkEvent>,
    ) -> Result<Link, String> {
        let target = parse_url(&endpoint.url)?;
        let transport = match target.scheme {
            Scheme::Tcp => Transport::Tcp,
            Scheme::Tls => Transport::Tls(TlsConfiguration::Rustls(tls_config(endpoint)?)),
            Scheme::Ws => Transport::Ws,
        };
        // rumqttc wants the whole URL as the host for WebSockets.
        let host = match target.scheme {
            Scheme::Ws => target.ws_url(),
            _ => target.host.clone(),
        };
        let version = match endpoint.protocol {
            Protocol::V5 => Version::V5,
            Protocol::V311 => Version::V311,
        };
        let mut options = Options::new(version, client_id, host, target.port);
        options.transport = Some(transport);
        options.manual_acks = true;
        options.clean = false;
        options.session_expiry = Some(u32::MAX);
        options.keep_alive = Some(endpoint.keep_alive.max(Duration::from_secs(5)));
        options.receive_maximum = Some(1000);
        options.pending_throttle = Some(Duration::ZERO);
        options.request_capacity = channel_capacity(max_inflight);
        options.max_inflight = Some(max_inflight.saturating_add(1));
        options.connection_timeout = Some(Duration::from_secs(5));
        options.backoff = Some((backoff.base, backoff.cap));
        if let (Some(u), Some(p)) = (&endpoint.username, &endpoint.password) {
            options.credentials = Some((u.clone(), p.clone()));
        }
        options.will = will;
        // A cluster node may send the link to the node its client id belongs to.
        options.follow_redirects = true;
        let (client, connection) = options.connect();
        let shared = Arc::new(Mutex::new(Correlation::default()));
        let epoch = Arc::new(AtomicU64::new(0));
        let poller = Poller {
            side,
            shared: shared.clone(),
            epoch: epoch.clone(),
            inflight: HashMap::new(),
            drained: VecDeque::new(),
            incoming_qos2: HashSet::new(),
            awaiting_rel: HashSet::new(),
            connected_once: false,
            down: false,
            events,
            client_id: client_id.to_owned(),
            subscribed: HashMap::new(),
        };
        tokio::spawn(poller.run(connection));
        Ok(Link {
            client,
            side,
            shared,
            epoch,
        })
    }

    /// The side served.
    pub fn side(&self) -> Side {
        self.side
    }

    /// Subscribes one filter (5.0: no-local and retain-as-published; 3.1.1 has neither).
    pub async fn subscribe(&self, path: String, qos: QoS) {
        if let Ok(mut c) = self.shared.lock() {
            c.subscribing.push_back((path.clone(), false));
        }
        let filter = adapter::filter(path, qos, true, true, 0);
        let _ = self.client.subscribe(vec![filter], None).await;
    }

    /// Subscribes one proxy filter (as [`Link::subscribe`], but retained messages are sent
    /// only when the subscription is new, so a resync replays nothing twice). On 5.0 it asks
    /// a Canopy broker for a SUBACK that waits until the interest has propagated above it
    /// (user property `canopy-wait-interest` = [`PROXY_WAIT_MS`]); the SUBACK is reported
    /// as [`LinkEvent::ProxySubAck`].
    pub async fn subscribe_proxy(&self, path: String, qos: QoS) {
        if let Ok(mut c) = self.shared.lock() {
            c.subscribing.push_back((path.clone(), true));
        }
        let filter = adapter::filter(path, qos, true, true, 1);
        let properties = adapter::SubscribeProperties {
            id: None,
            user_properties: vec![(WAIT_PROPERTY.to_owned(), PROXY_WAIT_MS.to_string())],
        };
        let _ = self.client.subscribe(vec![filter], Some(properties)).await;
    }

    /// Unsubscribes one filter.
    pub async fn unsubscribe(&self, path: String) {
        let _ = self.client.unsubscribe(path).await;
    }

    /// Publishes without waiting for room in the request channel (QoS 0, state notes);
    /// false when the channel is full. Properties are dropped on 3.1.1 links.
    pub fn try_publish(&self, publish: Publish) -> bool {
        self.client.try_publish(publish).is_ok()
    }

    /// Publishes at QoS 1/2 tracked by `seq` (reported back as [`LinkEvent::Acked`]).
    pub async fn publish_tracked(&self, seq: u64, publish: Publish) -> bool {
        if let Ok(mut c) = self.shared.lock() {
            c.fifo.push_back(seq);
        }
        self.client.publish(publish).await.is_ok()
    }

    /// Acknowledges an incoming publish, unless its session is gone (then the broker no longer
    /// expects the ack and would resend nothing).
    pub async fn ack(&self, publish: &Publish, epoch: u64) {
        if epoch != self.epoch.load(Ordering::Acquire) {
            return;
        }
        let _ = self.client.ack(publish).await;
    }

    /// Sends DISCONNECT (the will is not published).
    pub async fn disconnect(&self) {
        let _ = self.client.disconnect().await;
    }
}

/// The pump's view of an adapter event, if it needs one.
fn translate(event: Event) -> Option<Ev> {
    Some(match event {
        Event::ConnAck { session_present } => Ev::ConnAck { session_present },
        Event::Publish(p) => Ev::Publish(p),
        Event::OutgoingPubRec(pkid) => Ev::OutgoingPubRec(pkid),
        Event::PubRel { pkid } => Ev::IncomingPubRel(pkid),
        Event::OutgoingPublish(pkid) => Ev::OutgoingPublish(pkid),
        Event::OutgoingSubscribe(pkid) => Ev::OutgoingSubscribe(pkid),
        Event::SubAck {
            pkid,
            codes,
            user_properties,
        } => Ev::SubAck {
            pkid,
            refused: codes.into_iter().find(|c| *c >= 0x80),
            unconfirmed: user_properties
                .iter()
                .any(|(k, v)| k == "canopy-interest" && v == "unconfirmed"),
        },
        // Success and "no matching subscribers" are below 0x80 (3.1.1 acks read as 0).
        Event::PubAck { pkid, reason } | Event::PubRec { pkid, reason } => Ev::Acked {
            pkid,
            accepted: reason < 0x80,
        },
        _ => return None,
    })
}

impl Poller {
    /// Polls until the pump is gone: events go to the bookkeeping; after a failure, repairs
    /// rumqttc's state, reports `Down` and waits out the backoff before reconnecting.
    async fn run(mut self, mut connection: Connection) {
        loop {
            match connection.poll().await {
                Ok(event) => {
                    if let Some(ev) = translate(event)
                        && self.on_ev(ev).is_err()
                    {
                        return;
                    }
                }
                Err(failure) => {
                    self.repair(&mut connection);
                    if self.went_down(failure.message).is_err() {
                        return;
                    }
                    connection.pause().await;
                    if self.events.is_closed() {
                        return;
                    }
                }
            }
        }
    }

    /// After rumqttc's own clean-up at a disconnect: account for the publishes numbered on the
    /// dead connection whose event is still queued, order pending publishes by first-send
    /// order [MQTT-4.6.0-1], note which unnumbered requests were moved there, re-register
    /// incoming QoS 2 ids.
    fn repair(&mut self, connection: &mut Connection) {
        for event in connection.take_queued_publishes() {
            // Only a gone pump fails here; `went_down` reports it next.
            if let Some(ev) = translate(event) {
                let _ = self.on_ev(ev);
            }
        }
        let unnumbered = connection.reorder_pending(|pkid| self.first_sent(pkid));
        self.note_drained(unnumbered);
        for pkid in &self.awaiting_rel {
            connection.expect_pubrel(*pkid);
        }
    }

    /// The connection failed or broke: report `Down` once. Err when the pump is gone.
    fn went_down(&mut self, reason: String) -> Result<(), ()> {
        if !self.down {
            self.down = true;
            let event = LinkEvent::Down {
                side: self.side,
                reason: reason.clone(),
            };
            self.events.send(event).map_err(|_| ())?;
        }
        tracing::debug!(side = ?self.side, error = %reason, "link down");
        Ok(())
    }

    /// At a disconnect, after rumqttc moved `unnumbered` never-sent QoS 1/2 publishes to its
    /// pending list: note which sequences they carry.
    fn note_drained(&mut self, unnumbered: usize) {
        let fresh = unnumbered.saturating_sub(self.drained.len());
        if let Ok(mut c) = self.shared.lock() {
            for _ in 0..fresh {
                if let Some(seq) = c.fifo.pop_front() {
                    self.drained.push_back(seq);
                }
            }
        }
    }

    /// Order key of a numbered pending publish: when it was first sent. One never seen sent
    /// was numbered after all those seen: it goes after them (unnumbered ones go last).
    fn first_sent(&self, pkid: u16) -> u64 {
        self.inflight.get(&pkid).copied().unwrap_or(u64::MAX - 1)
    }

    fn on_ev(&mut self, ev: Ev) -> Result<(), ()> {
        let side = self.side;
        let out = match ev {
            Ev::ConnAck { session_present } => {
                self.down = false;
                let mut lost = Vec::new();
                if !session_present {
                    self.epoch.fetch_add(1, Ordering::AcqRel);
                    lost.extend(self.inflight.drain().map(|(_, s)| s));
                    lost.extend(self.drained.drain(..));
                    lost.sort_unstable();
                    self.incoming_qos2.clear();
                    self.awaiting_rel.clear();
                }
                let session_present = session_present && self.connected_once;
                self.connected_once = true;
                Some(LinkEvent::Up {
                    side,
                    session_present,
                    lost,
                })
            }
            Ev::Publish(p) => {
                if p.qos == QoS::ExactlyOnce
                    && (self.incoming_qos2.contains(&p.pkid) || self.awaiting_rel.contains(&p.pkid))
                {
                    None
                } else {
                    if p.qos == QoS::ExactlyOnce {
                        self.incoming_qos2.insert(p.pkid);
                    }
                    Some(LinkEvent::Message {
                        side,
                        publish: p,
                        epoch: self.epoch.load(Ordering::Acquire),
                    })
                }
            }
            Ev::OutgoingPubRec(pkid) => {
                self.incoming_qos2.remove(&pkid);
                self.awaiting_rel.insert(pkid);
                None
            }
            Ev::IncomingPubRel(pkid) => {
                self.awaiting_rel.remove(&pkid);
                None
            }
            Ev::OutgoingPublish(pkid) => {
                if pkid != 0 && !self.inflight.contains_key(&pkid) {
                    let seq = match self.drained.pop_front() {
                        Some(s) => Some(s),
                        None => self.shared.lock().ok().and_then(|mut c| c.fifo.pop_front()),
                    };
                    if let Some(seq) = seq {
                        self.inflight.insert(pkid, seq);
                    }
                }
                None
            }
            Ev::OutgoingSubscribe(pkid) => {
                if let Some(filter) = self
                    .shared
                    .lock()
                    .ok()
                    .and_then(|mut c| c.subscribing.pop_front())
                {
                    self.subscribed.insert(pkid, filter);
                }
                None
            }
            Ev::SubAck {
                pkid,
                refused,
                unconfirmed,
            } => {
                let Some((filter, proxy)) = self.subscribed.remove(&pkid) else {
                    return Ok(());
                };
                if let Some(code) = refused {
                    let reason = canopy_client::reason::describe(code);
                    tracing::error!(
                        "{}",
                        refusal_message(side, &filter, &reason, &self.client_id)
                    );
                }
                proxy.then(|| LinkEvent::ProxySubAck {
                    side,
                    filter,
                    confirmed: refused.is_none() && !unconfirmed,
                })
            }
            Ev::Acked { pkid, accepted } => {
                self.inflight.remove(&pkid).map(|seq| LinkEvent::Acked {
                    side,
                    seq,
                    accepted,
                })
            }
        };
        match out {
            Some(e) => self.events.send(e).map_err(|_| ()),
            None => Ok(()),
        }
    }
}

/// The log line for a subscription the `side` broker refused, saying what to configure.
fn refusal_message(side: Side, filter: &str, reason: &str, client_id: &str) -> String {
    let side = match side {
        Side::Local => "local",
        Side::Remote => "remote",
    };
    let hint = if filter.starts_with("$config") {
        format!(
            "; a Canopy broker lets only its [config] admins read other clients' \
             configuration documents: add \"{client_id}\" to `admins` in the [config] table of \
             the {side} broker's file (docs/config-documents.md)"
        )
    } else {
        format!("; check that the {side} broker allows client \"{client_id}\" to subscribe there")
    };
    format!(
        "the {side} broker refused the subscription to {filter:?} ({reason}), so nothing \
         from it will be forwarded{hint}"
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests;
