//! The device-side presence agent (SPEC §5, docs/presence.md "Device-side agent"): where the
//! broker runs no presence agent (a plain broker such as Mosquitto, or `[presence] enabled =
//! false`), one of a user's devices aggregates `$presence/<user>/devices/+` itself and
//! publishes the same retained `$presence/<user>` document.
//!
//! At most one device acts at a time: it holds the retained claim `$presence/<user>/agent` =
//! `{"agent":"<client-id>"}`, and its will replaces the claim with `{"released":"<client-id>"}`
//! when its connection dies, upon which the others race to claim (the broker's last retained
//! claim wins, and every agent sees the same last one). A release naming someone other than
//! the current holder is answered by the holder re-publishing its claim.
//!
//! Owns the claim protocol and the aggregation loop on its own connection (separate from the
//! device's own, whose will turns the device offline). Must never poll the event loop from the
//! task that sends requests: the [`Connection`] has a task of its own.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use canopy_model::presence::{Aggregate, DeviceDoc, DeviceEntry, aggregate};
use rumqttc::v5::mqttbytes::v5::LastWill;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::adapter::{self, Client, Connection, Event, Options, QoS};

/// How long the agent waits after its SUBACK for retained documents before it decides that
/// no claim exists.
pub const SETTLE: Duration = Duration::from_millis(300);

/// The claim document (`$presence/<user>/agent`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claim {
    /// The acting agent's client id, when claimed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// The client id whose claim its will released.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub released: Option<String>,
}

/// A running device-side agent.
#[derive(Debug)]
pub struct AgentHandle {
    acting: watch::Receiver<bool>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
    poller: JoinHandle<()>,
}

impl AgentHandle {
    /// Whether this agent is the user's acting agent now.
    pub fn is_acting(&self) -> bool {
        *self.acting.borrow()
    }

    /// Waits until [`AgentHandle::is_acting`] is `acting`, at most `within`; returns whether
    /// it got there.
    pub async fn wait_acting(&mut self, acting: bool, within: Duration) -> bool {
        tokio::time::timeout(within, self.acting.wait_for(|a| *a == acting))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Stops cleanly: releases the claim if held and disconnects.
    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let _ = tokio::time::timeout(Duration::from_secs(5), &mut self.task).await;
        self.task.abort();
        self.poller.abort();
    }

    /// Stops without a word, as a crash would: the connection drops and the broker
    /// publishes the will.
    pub fn kill(self) {
        self.task.abort();
        self.poller.abort();
    }
}

/// The broker's feature document.
pub const FEATURES_TOPIC: &str = "$SYS/broker/features";

/// Whether the broker at `options` runs its own presence agent: it keeps
/// `$SYS/broker/features` with `"presence": true` (a Canopy broker also says so in a 5.0
/// CONNACK user property `presence` = `agent`). A broker that has no such document within
/// `within` (Mosquitto) has none: run [`spawn`] on one of the user's devices.
pub async fn broker_runs_agent(options: Options, within: Duration) -> bool {
    let (client, connection) = options.connect();
    let (tx, mut events) = mpsc::channel(64);
    let poller = tokio::spawn(poll(connection, tx));
    let probe = async {
        while let Some(e) = events.recv().await {
            match e {
                Event::ConnAck { .. } => {
                    let f = adapter::filter(FEATURES_TOPIC, QoS::AtMostOnce, false, false, 0);
                    let _ = client.subscribe(vec![f], None).await;
                }
                Event::Publish(p) if &p.topic[..] == FEATURES_TOPIC.as_bytes() => {
                    let doc: serde_json::Value =
                        serde_json::from_slice(&p.payload).unwrap_or_default();
                    return doc["presence"] == true;
                }
                _ => {}
            }
        }
        false
    };
    let found = tokio::time::timeout(within, probe).await.unwrap_or(false);
    let _ = client.disconnect().await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    poller.abort();
    found
}

fn topic(user: &str, rest: &str) -> String {
    if rest.is_empty() {
        format!("$presence/{user}")
    } else {
        format!("$presence/{user}/{rest}")
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Starts the agent for `user` on a connection made from `options` (its will is set here;
/// `options.client_id` must be non-empty and unique among the user's agents).
pub fn spawn(mut options: Options, user: &str) -> AgentHandle {
    let me = options.client_id.clone();
    let claim_topic = topic(user, "agent");
    let release = serde_json::to_vec(&Claim {
        agent: None,
        released: Some(me.clone()),
    })
    .unwrap_or_default();
    options.will = Some(LastWill::new(
        claim_topic,
        release,
        QoS::AtLeastOnce,
        true,
        None,
    ));
    let (client, connection) = options.connect();
    let (events_tx, events) = mpsc::channel(256);
    let poller = tokio::spawn(poll(connection, events_tx));
    let (acting_tx, acting) = watch::channel(false);
    let (stop_tx, stop) = oneshot::channel();
    let agent = Agent {
        user: user.to_owned(),
        me,
        client,
        claim: None,
        devices: BTreeMap::new(),
        written: None,
        settled_at: None,
        acting: acting_tx,
    };
    let task = tokio::spawn(agent.run(events, stop));
    AgentHandle {
        acting,
        stop: Some(stop_tx),
        task,
        poller,
    }
}

/// Polls the event loop in a task of its own, reconnecting after failures.
async fn poll(mut connection: Connection, events: mpsc::Sender<Event>) {
    loop {
        match connection.poll().await {
            Ok(e) => {
                if events.send(e).await.is_err() {
                    return;
                }
            }
            Err(f) => {
                tracing::debug!(?f, "presence agent connection failed");
                connection.pause().await;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

struct Agent {
    user: String,
    me: String,
    client: Client,
    /// The holder named by the last claim document seen (`None`: unclaimed or released).
    claim: Option<String>,
    devices: BTreeMap<String, DeviceEntry>,
    written: Option<Aggregate>,
    /// When the retained documents are in (SUBACK + [`SETTLE`]).
    settled_at: Option<tokio::time::Instant>,
    acting: watch::Sender<bool>,
}

impl Agent {
    async fn run(mut self, mut events: mpsc::Receiver<Event>, mut stop: oneshot::Receiver<()>) {
        loop {
            let settle = self.settled_at;
            tokio::select! {
                _ = &mut stop => break,
                e = events.recv() => match e {
                    Some(e) => self.on_event(e).await,
                    None => return,
                },
                _ = async { tokio::time::sleep_until(settle.unwrap_or_else(tokio::time::Instant::now)).await }, if settle.is_some() => {
                    self.settled_at = None;
                    if self.claim.is_none() {
                        self.publish_claim().await;
                    }
                }
            }
        }
        if self.claim.as_deref() == Some(&self.me) {
            let released = serde_json::to_vec(&Claim {
                agent: None,
                released: Some(self.me.clone()),
            })
            .unwrap_or_default();
            self.publish(topic(&self.user, "agent"), released).await;
        }
        let _ = self.client.disconnect().await;
        // Let the poller write the DISCONNECT.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    async fn on_event(&mut self, e: Event) {
        match e {
            Event::ConnAck { .. } => {
                let filters = vec![
                    adapter::filter(
                        topic(&self.user, "agent"),
                        QoS::AtLeastOnce,
                        false,
                        false,
                        0,
                    ),
                    adapter::filter(
                        topic(&self.user, "devices/+"),
                        QoS::AtLeastOnce,
                        false,
                        false,
                        0,
                    ),
                ];
                let _ = self.client.subscribe(filters, None).await;
            }
            Event::SubAck { .. } => {
                self.settled_at = Some(tokio::time::Instant::now() + SETTLE);
            }
            Event::Publish(p) => {
                let t = String::from_utf8_lossy(&p.topic).into_owned();
                if t == topic(&self.user, "agent") {
                    self.on_claim(&p.payload).await;
                } else if let Some(device) = t
                    .strip_prefix(&topic(&self.user, "devices/"))
                    .filter(|d| !d.is_empty() && !d.contains('/'))
                {
                    let device = device.to_owned();
                    self.on_device(device, &p.payload).await;
                }
            }
            _ => {}
        }
    }

    async fn on_claim(&mut self, payload: &[u8]) {
        let claim: Claim = serde_json::from_slice(payload).unwrap_or(Claim {
            agent: None,
            released: None,
        });
        match (claim.agent, claim.released) {
            (Some(holder), _) => self.claim = Some(holder),
            (None, Some(released)) => {
                if self.claim.is_none() || self.claim.as_deref() == Some(released.as_str()) {
                    self.claim = None;
                    if self.settled_at.is_none() {
                        self.publish_claim().await;
                    }
                } else if self.claim.as_deref() == Some(&self.me) {
                    // Someone else's will overwrote my claim: restore it.
                    self.publish_claim().await;
                }
            }
            (None, None) => {
                self.claim = None;
                if self.settled_at.is_none() {
                    self.publish_claim().await;
                }
            }
        }
        let acting = self.claim.as_deref() == Some(&self.me);
        self.acting.send_replace(acting);
        if acting {
            self.write().await;
        } else {
            self.written = None;
        }
    }

    async fn on_device(&mut self, device: String, payload: &[u8]) {
        if payload.is_empty() {
            self.devices.remove(&device);
        } else if let Ok(d) = serde_json::from_slice::<DeviceDoc>(payload) {
            let entry = DeviceEntry {
                availability: d.availability,
                activity: d.activity,
                note: d.note,
                since: now_ms(),
            };
            self.devices.insert(device, entry);
        } else {
            return;
        }
        if self.claim.as_deref() == Some(&self.me) {
            self.write().await;
        }
    }

    async fn publish_claim(&mut self) {
        let claim = serde_json::to_vec(&Claim {
            agent: Some(self.me.clone()),
            released: None,
        })
        .unwrap_or_default();
        self.publish(topic(&self.user, "agent"), claim).await;
    }

    /// Publishes the aggregate if it changed (device `since` aside).
    async fn write(&mut self) {
        let agg = aggregate(&self.user, &self.devices);
        let same = |a: &Aggregate, b: &Aggregate| {
            let strip = |x: &Aggregate| {
                let mut x = x.clone();
                x.devices.values_mut().for_each(|d| d.since = 0);
                x
            };
            strip(a) == strip(b)
        };
        if self.written.as_ref().is_some_and(|w| same(w, &agg)) {
            return;
        }
        let payload = serde_json::to_vec(&agg).unwrap_or_default();
        self.written = Some(agg);
        self.publish(topic(&self.user, ""), payload).await;
    }

    async fn publish(&self, topic: String, payload: Vec<u8>) {
        let p = adapter::new_publish(topic, QoS::AtLeastOnce, true, payload, None);
        if self.client.publish(p).await.is_err() {
            tracing::debug!("presence agent: connection gone");
        }
    }
}
