//! Helpers for driving real MQTT clients (rumqttc's 3.1.1 and 5.0 APIs) through the
//! workspace's rumqttc adapter (`canopy_client::adapter`), one face for both versions.
//!
//! Owns one spawned task per client that polls the adapter's connection and forwards
//! incoming packets into channels, so a test never publishes from the polling task (rumqttc
//! deadlocks when it does). It never reconnects: the task ends at the first error.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use canopy_client::adapter::{Client, Filter, Options, new_publish};
pub use canopy_client::adapter::{Event, Publish, QoS, Version};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::timeout;

use crate::raw::TIMEOUT;

/// A connected rumqttc client of either version.
pub struct RealClient {
    /// The request half (publish, subscribe, ...).
    pub client: Client,
    /// The CONNACK's session-present flag.
    pub session_present: bool,
    /// Received PUBLISH packets (5.0 form; a 3.1.1 one has no properties).
    publishes: mpsc::UnboundedReceiver<Publish>,
    /// Every other event (SUBACK, PUBACK, ...).
    events: mpsc::UnboundedReceiver<Event>,
    task: JoinHandle<()>,
}

/// Connects a rumqttc 3.1.1 client with `client_id` and Clean Session `clean`.
pub async fn v4_connect(addr: SocketAddr, client_id: &str, clean: bool) -> RealClient {
    connect(addr, Version::V311, client_id, clean, None).await
}

/// Connects a rumqttc 5.0 client; `session_expiry` > 0 keeps the session after disconnect.
pub async fn v5_connect(
    addr: SocketAddr,
    client_id: &str,
    clean_start: bool,
    session_expiry: u32,
) -> RealClient {
    connect(
        addr,
        Version::V5,
        client_id,
        clean_start,
        Some(session_expiry),
    )
    .await
}

/// Connects a rumqttc client of `version` with a 30 s keep-alive and waits (bounded) for
/// the CONNACK.
pub async fn connect(
    addr: SocketAddr,
    version: Version,
    client_id: &str,
    clean: bool,
    session_expiry: Option<u32>,
) -> RealClient {
    let mut options = Options::new(version, client_id, addr.ip().to_string(), addr.port());
    options.clean = clean;
    options.keep_alive = Some(Duration::from_secs(30));
    options.session_expiry = session_expiry;
    let (client, mut connection) = options.connect();
    let (pub_tx, publishes) = mpsc::unbounded_channel();
    let (ev_tx, events) = mpsc::unbounded_channel();
    let (ack_tx, ack_rx) = oneshot::channel();
    let task = tokio::spawn(async move {
        let mut ack_tx = Some(ack_tx);
        loop {
            match connection.poll().await {
                Ok(Event::ConnAck { session_present }) => {
                    if let Some(tx) = ack_tx.take() {
                        let _ = tx.send(Ok(session_present));
                    }
                }
                Ok(Event::Publish(p)) => {
                    let _ = pub_tx.send(*p);
                }
                Ok(event) => {
                    let _ = ev_tx.send(event);
                }
                Err(e) => {
                    if let Some(tx) = ack_tx.take() {
                        let _ = tx.send(Err(e.message));
                    }
                    return;
                }
            }
        }
    });
    let session_present = match timeout(TIMEOUT, ack_rx).await {
        Ok(Ok(Ok(present))) => present,
        other => panic!("rumqttc {version:?} connect failed: {other:?}"),
    };
    RealClient {
        client,
        session_present,
        publishes,
        events,
        task,
    }
}

impl RealClient {
    /// Queues a PUBLISH without properties.
    pub async fn publish(&self, topic: &str, qos: QoS, retain: bool, payload: impl Into<Bytes>) {
        self.client
            .publish(new_publish(topic, qos, retain, payload, None))
            .await
            .unwrap_or_else(|e| panic!("publish: {e}"));
    }

    /// Subscribes and waits for the SUBACK.
    pub async fn subscribe(&mut self, filter: &str, qos: QoS) {
        self.client
            .subscribe(vec![Filter::new(filter, qos)], None)
            .await
            .unwrap_or_else(|e| panic!("subscribe: {e}"));
        self.wait_event(|e| matches!(e, Event::SubAck { .. })).await;
    }

    /// Waits (bounded) for an incoming non-PUBLISH event matching `pred`.
    pub async fn wait_event(&mut self, pred: impl Fn(&Event) -> bool) -> Event {
        let r = timeout(TIMEOUT, async {
            while let Some(e) = self.events.recv().await {
                if pred(&e) {
                    return Some(e);
                }
            }
            None
        })
        .await;
        match r {
            Ok(Some(e)) => e,
            other => panic!("rumqttc: expected event not received: {other:?}"),
        }
    }

    /// The next received PUBLISH, within [`TIMEOUT`].
    pub async fn next_publish(&mut self) -> Publish {
        match timeout(TIMEOUT, self.publishes.recv()).await {
            Ok(Some(p)) => p,
            other => panic!("rumqttc: no publish received: {other:?}"),
        }
    }

    /// Sends DISCONNECT and waits (bounded) for the event loop to end.
    pub async fn disconnect(mut self) {
        let _ = self.client.disconnect().await;
        let _ = timeout(TIMEOUT, &mut self.task).await;
    }
}

impl Drop for RealClient {
    fn drop(&mut self) {
        self.task.abort();
    }
}
