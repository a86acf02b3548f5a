//! One metabroker connection to a broker (MQTT 5.0 over rumqttc with manual acks): the task
//! that polls the rumqttc event loop, reconnect backoff, and the bookkeeping that turns
//! rumqttc's packet ids back into the pump's sequence numbers.
//!
//! Owns: the `EventLoop`, the packet id -> sequence map, QoS 2 duplicate suppression for
//! incoming messages, and the repair of rumqttc state across reconnects (see below).
//! Must never publish, subscribe or ack from the polling task (rumqttc deadlocks when the
//! request channel fills while nobody polls): everything is sent by the pump through the
//! [`AsyncClient`]; the polling task only reports [`LinkEvent`]s.
//!
//! rumqttc repairs done here, at each disconnect:
//! - it clears its memory of incoming QoS 2 packet ids, so the broker's PUBREL after a resumed
//!   session would be "unsolicited" and kill the connection forever: we re-register them;
//! - it resends in-flight publishes in packet-id order, which breaks publish order when ids
//!   wrapped: we sort them back into the order they were first sent;
//! - on a session that was not resumed it silently drops them: we hand them back (`lost`).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{Packet, PubAckReason, PubRecReason, Publish};
use rumqttc::v5::{AsyncClient, Event, EventLoop, MqttOptions};
use rumqttc::{Outgoing, TlsConfiguration, Transport};
use tokio::sync::mpsc;

use crate::backoff::Backoff;
use crate::config::{BackoffConfig, Endpoint};
use crate::transport::{Scheme, parse_url, tls_config};

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
}

/// The pump's handle on a link.
#[derive(Clone)]
pub struct Link {
    client: AsyncClient,
    side: Side,
    shared: Arc<Mutex<Correlation>>,
    epoch: Arc<AtomicU64>,
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
    events: mpsc::UnboundedSender<LinkEvent>,
}

impl Link {
    /// Starts the polling task for `endpoint` and returns the pump's handle.
    pub fn start(
        side: Side,
        endpoint: &Endpoint,
        client_id: &str,
        backoff: BackoffConfig,
        max_inflight: u16,
        will: Option<rumqttc::v5::mqttbytes::v5::LastWill>,
        events: mpsc::UnboundedSender<LinkEvent>,
    ) -> Result<Link, String> {
        let target = parse_url(&endpoint.url)?;
        let mut opts = match target.scheme {
            Scheme::Ws => MqttOptions::new(client_id, target.ws_url(), target.port),
            _ => MqttOptions::new(client_id, target.host.clone(), target.port),
        };
        match target.scheme {
            Scheme::Tcp => {}
            Scheme::Tls => {
                let config = tls_config(endpoint)?;
                opts.set_transport(Transport::Tls(TlsConfiguration::Rustls(config)));
            }
            Scheme::Ws => {
                opts.set_transport(Transport::Ws);
            }
        }
        opts.set_manual_acks(true)
            .set_clean_start(false)
            .set_session_expiry_interval(Some(u32::MAX))
            .set_keep_alive(endpoint.keep_alive.max(Duration::from_secs(5)))
            .set_receive_maximum(Some(1000))
            .set_pending_throttle(Duration::ZERO)
            .set_request_channel_capacity(usize::from(max_inflight) * 2 + 2048)
            .set_outgoing_inflight_upper_limit(max_inflight.saturating_add(1))
            .set_connection_timeout(5);
        if let (Some(u), Some(p)) = (&endpoint.username, &endpoint.password) {
            opts.set_credentials(u.clone(), p.clone());
        }
        if let Some(will) = will {
            opts.set_last_will(will);
        }
        let (client, eventloop) = AsyncClient::new(opts, usize::from(max_inflight) * 2 + 2048);
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
            events,
        };
        tokio::spawn(poller.run(eventloop, Backoff::new(backoff)));
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

    /// The rumqttc client (subscribe, QoS 0 publishes, disconnect).
    pub fn client(&self) -> &AsyncClient {
        &self.client
    }

    /// Publishes at QoS 1/2 tracked by `seq` (reported back as [`LinkEvent::Acked`]).
    pub async fn publish_tracked(&self, seq: u64, publish: Publish) -> bool {
        if let Ok(mut c) = self.shared.lock() {
            c.fifo.push_back(seq);
        }
        let props = publish.properties.clone().unwrap_or_default();
        self.client
            .publish_with_properties(
                String::from_utf8_lossy(&publish.topic).into_owned(),
                publish.qos,
                publish.retain,
                publish.payload,
                props,
            )
            .await
            .is_ok()
    }

    /// Acknowledges an incoming publish, unless its session is gone (then the broker no longer
    /// expects the ack and would resend nothing).
    pub async fn ack(&self, publish: &Publish, epoch: u64) {
        if epoch == self.epoch.load(Ordering::Acquire) {
            let _ = self.client.ack(publish).await;
        }
    }
}

impl Poller {
    async fn run(mut self, mut eventloop: EventLoop, mut backoff: Backoff) {
        let mut down = false;
        loop {
            match eventloop.poll().await {
                Ok(event) => {
                    if self.on_event(event, &mut backoff).is_err() {
                        return;
                    }
                    down = false;
                }
                Err(e) => {
                    self.repair(&mut eventloop);
                    if !down {
                        down = true;
                        let event = LinkEvent::Down {
                            side: self.side,
                            reason: e.to_string(),
                        };
                        if self.events.send(event).is_err() {
                            return;
                        }
                    }
                    tracing::debug!(side = ?self.side, error = %e, "link down");
                    tokio::time::sleep(backoff.next_delay()).await;
                    if self.events.is_closed() {
                        return;
                    }
                }
            }
        }
    }

    /// After rumqttc's own `clean()`: order pending publishes by first-send order, note which
    /// unnumbered requests were moved there, re-register incoming QoS 2 ids.
    fn repair(&mut self, eventloop: &mut EventLoop) {
        use rumqttc::v5::Request;
        let pending: Vec<Request> = eventloop.pending.drain(..).collect();
        let (mut publishes, others): (Vec<Request>, Vec<Request>) = pending
            .into_iter()
            .partition(|r| matches!(r, Request::Publish(p) if p.qos != QoS::AtMostOnce));
        let unnumbered = publishes
            .iter()
            .filter(|r| matches!(r, Request::Publish(p) if p.pkid == 0))
            .count();
        let fresh = unnumbered.saturating_sub(self.drained.len());
        if let Ok(mut c) = self.shared.lock() {
            for _ in 0..fresh {
                if let Some(seq) = c.fifo.pop_front() {
                    self.drained.push_back(seq);
                }
            }
        }
        let inflight = &self.inflight;
        publishes.sort_by_key(|r| match r {
            Request::Publish(p) if p.pkid != 0 => inflight.get(&p.pkid).copied().unwrap_or(0),
            _ => u64::MAX,
        });
        eventloop.pending.extend(others);
        eventloop.pending.extend(publishes);
        for pkid in &self.awaiting_rel {
            let mut fake = Publish::new("", QoS::ExactlyOnce, Vec::new(), None);
            fake.pkid = *pkid;
            if eventloop
                .state
                .handle_incoming_packet(Packet::Publish(fake))
                .is_ok()
            {
                eventloop.state.events.pop_back();
            }
        }
    }

    fn on_event(&mut self, event: Event, backoff: &mut Backoff) -> Result<(), ()> {
        let side = self.side;
        let out = match event {
            Event::Incoming(Packet::ConnAck(ack)) => {
                backoff.reset();
                let mut lost = Vec::new();
                if !ack.session_present {
                    self.epoch.fetch_add(1, Ordering::AcqRel);
                    lost.extend(self.inflight.drain().map(|(_, s)| s));
                    lost.extend(self.drained.drain(..));
                    lost.sort_unstable();
                    self.incoming_qos2.clear();
                    self.awaiting_rel.clear();
                }
                let session_present = ack.session_present && self.connected_once;
                self.connected_once = true;
                Some(LinkEvent::Up {
                    side,
                    session_present,
                    lost,
                })
            }
            Event::Incoming(Packet::Publish(p)) => {
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
                        publish: Box::new(p),
                        epoch: self.epoch.load(Ordering::Acquire),
                    })
                }
            }
            Event::Outgoing(Outgoing::PubRec(pkid)) => {
                self.incoming_qos2.remove(&pkid);
                self.awaiting_rel.insert(pkid);
                None
            }
            Event::Incoming(Packet::PubRel(rel)) => {
                self.awaiting_rel.remove(&rel.pkid);
                None
            }
            Event::Outgoing(Outgoing::Publish(pkid)) if pkid != 0 => {
                if !self.inflight.contains_key(&pkid) {
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
            Event::Incoming(Packet::PubAck(ack)) => {
                self.inflight.remove(&ack.pkid).map(|seq| LinkEvent::Acked {
                    side,
                    seq,
                    accepted: matches!(
                        ack.reason,
                        PubAckReason::Success | PubAckReason::NoMatchingSubscribers
                    ),
                })
            }
            Event::Incoming(Packet::PubRec(rec)) => {
                self.inflight.remove(&rec.pkid).map(|seq| LinkEvent::Acked {
                    side,
                    seq,
                    accepted: matches!(
                        rec.reason,
                        PubRecReason::Success | PubRecReason::NoMatchingSubscribers
                    ),
                })
            }
            _ => None,
        };
        match out {
            Some(e) => self.events.send(e).map_err(|_| ()),
            None => Ok(()),
        }
    }
}
