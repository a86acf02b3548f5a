//! Helpers for driving real MQTT clients (rumqttc v4 = MQTT 3.1.1, v5 = MQTT 5.0).
//!
//! Owns one spawned task per client that polls the rumqttc event loop and forwards incoming
//! packets into channels, so a test never publishes from the polling task (rumqttc
//! deadlocks when it does). It never reconnects: the task ends at the first error.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::timeout;

use crate::raw::TIMEOUT;

/// A connected rumqttc MQTT 3.1.1 client.
pub struct V4Client {
    /// The client handle (publish, subscribe, ...).
    pub client: rumqttc::AsyncClient,
    /// The CONNACK.
    pub connack: rumqttc::ConnAck,
    /// Received PUBLISH packets.
    pub publishes: mpsc::UnboundedReceiver<rumqttc::Publish>,
    /// Every other incoming packet (SUBACK, PUBACK, ...).
    pub packets: mpsc::UnboundedReceiver<rumqttc::Packet>,
    task: JoinHandle<()>,
}

/// Connects a rumqttc v4 client with `client_id` and Clean Session `clean`.
pub async fn v4_connect(addr: SocketAddr, client_id: &str, clean: bool) -> V4Client {
    let mut opts = rumqttc::MqttOptions::new(client_id, addr.ip().to_string(), addr.port());
    opts.set_clean_session(clean)
        .set_keep_alive(Duration::from_secs(30));
    let (client, mut el) = rumqttc::AsyncClient::new(opts, 64);
    let (pub_tx, publishes) = mpsc::unbounded_channel();
    let (pk_tx, packets) = mpsc::unbounded_channel();
    let (ack_tx, ack_rx) = oneshot::channel();
    let task = tokio::spawn(async move {
        let mut ack_tx = Some(ack_tx);
        loop {
            match el.poll().await {
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(c))) => {
                    if let Some(tx) = ack_tx.take() {
                        let _ = tx.send(Ok(c));
                    }
                }
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::Publish(p))) => {
                    let _ = pub_tx.send(p);
                }
                Ok(rumqttc::Event::Incoming(p)) => {
                    let _ = pk_tx.send(p);
                }
                Ok(_) => {}
                Err(e) => {
                    if let Some(tx) = ack_tx.take() {
                        let _ = tx.send(Err(e.to_string()));
                    }
                    return;
                }
            }
        }
    });
    let connack = match timeout(TIMEOUT, ack_rx).await {
        Ok(Ok(Ok(c))) => c,
        other => panic!("rumqttc v4 connect failed: {other:?}"),
    };
    V4Client {
        client,
        connack,
        publishes,
        packets,
        task,
    }
}

impl V4Client {
    /// Subscribes and waits for the SUBACK.
    pub async fn subscribe(&mut self, filter: &str, qos: rumqttc::QoS) {
        self.client
            .subscribe(filter, qos)
            .await
            .unwrap_or_else(|e| panic!("subscribe: {e}"));
        self.wait_packet(|p| matches!(p, rumqttc::Packet::SubAck(_)))
            .await;
    }

    /// Waits (bounded) for an incoming non-PUBLISH packet matching `pred`.
    pub async fn wait_packet(
        &mut self,
        pred: impl Fn(&rumqttc::Packet) -> bool,
    ) -> rumqttc::Packet {
        let r = timeout(TIMEOUT, async {
            while let Some(p) = self.packets.recv().await {
                if pred(&p) {
                    return Some(p);
                }
            }
            None
        })
        .await;
        match r {
            Ok(Some(p)) => p,
            other => panic!("rumqttc v4: expected packet not received: {other:?}"),
        }
    }

    /// The next received PUBLISH, within [`TIMEOUT`].
    pub async fn next_publish(&mut self) -> rumqttc::Publish {
        match timeout(TIMEOUT, self.publishes.recv()).await {
            Ok(Some(p)) => p,
            other => panic!("rumqttc v4: no publish received: {other:?}"),
        }
    }

    /// Sends DISCONNECT and waits (bounded) for the event loop to end.
    pub async fn disconnect(mut self) {
        let _ = self.client.disconnect().await;
        let _ = timeout(TIMEOUT, &mut self.task).await;
    }
}

impl Drop for V4Client {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A connected rumqttc MQTT 5.0 client.
pub struct V5Client {
    /// The client handle.
    pub client: rumqttc::v5::AsyncClient,
    /// The CONNACK.
    pub connack: rumqttc::v5::mqttbytes::v5::ConnAck,
    /// Received PUBLISH packets.
    pub publishes: mpsc::UnboundedReceiver<rumqttc::v5::mqttbytes::v5::Publish>,
    /// Every other incoming packet.
    pub packets: mpsc::UnboundedReceiver<rumqttc::v5::mqttbytes::v5::Packet>,
    task: JoinHandle<()>,
}

/// Connects a rumqttc v5 client; `session_expiry` > 0 keeps the session after disconnect.
pub async fn v5_connect(
    addr: SocketAddr,
    client_id: &str,
    clean_start: bool,
    session_expiry: u32,
) -> V5Client {
    use rumqttc::v5::mqttbytes::v5::Packet;
    let mut opts = rumqttc::v5::MqttOptions::new(client_id, addr.ip().to_string(), addr.port());
    opts.set_clean_start(clean_start)
        .set_keep_alive(Duration::from_secs(30))
        .set_session_expiry_interval(Some(session_expiry));
    let (client, mut el) = rumqttc::v5::AsyncClient::new(opts, 64);
    let (pub_tx, publishes) = mpsc::unbounded_channel();
    let (pk_tx, packets) = mpsc::unbounded_channel();
    let (ack_tx, ack_rx) = oneshot::channel();
    let task = tokio::spawn(async move {
        let mut ack_tx = Some(ack_tx);
        loop {
            match el.poll().await {
                Ok(rumqttc::v5::Event::Incoming(Packet::ConnAck(c))) => {
                    if let Some(tx) = ack_tx.take() {
                        let _ = tx.send(Ok(c));
                    }
                }
                Ok(rumqttc::v5::Event::Incoming(Packet::Publish(p))) => {
                    let _ = pub_tx.send(p);
                }
                Ok(rumqttc::v5::Event::Incoming(p)) => {
                    let _ = pk_tx.send(p);
                }
                Ok(_) => {}
                Err(e) => {
                    if let Some(tx) = ack_tx.take() {
                        let _ = tx.send(Err(e.to_string()));
                    }
                    return;
                }
            }
        }
    });
    let connack = match timeout(TIMEOUT, ack_rx).await {
        Ok(Ok(Ok(c))) => c,
        other => panic!("rumqttc v5 connect failed: {other:?}"),
    };
    V5Client {
        client,
        connack,
        publishes,
        packets,
        task,
    }
}

impl V5Client {
    /// Subscribes and waits for the SUBACK.
    pub async fn subscribe(&mut self, filter: &str, qos: rumqttc::v5::mqttbytes::QoS) {
        use rumqttc::v5::mqttbytes::v5::Packet;
        self.client
            .subscribe(filter, qos)
            .await
            .unwrap_or_else(|e| panic!("subscribe: {e}"));
        let r = timeout(TIMEOUT, async {
            while let Some(p) = self.packets.recv().await {
                if matches!(p, Packet::SubAck(_)) {
                    return true;
                }
            }
            false
        })
        .await;
        assert_eq!(r, Ok(true), "rumqttc v5: no SUBACK");
    }

    /// The next received PUBLISH, within [`TIMEOUT`].
    pub async fn next_publish(&mut self) -> rumqttc::v5::mqttbytes::v5::Publish {
        match timeout(TIMEOUT, self.publishes.recv()).await {
            Ok(Some(p)) => p,
            other => panic!("rumqttc v5: no publish received: {other:?}"),
        }
    }

    /// Sends DISCONNECT and waits (bounded) for the event loop to end.
    pub async fn disconnect(mut self) {
        let _ = self.client.disconnect().await;
        let _ = timeout(TIMEOUT, &mut self.task).await;
    }
}

impl Drop for V5Client {
    fn drop(&mut self) {
        self.task.abort();
    }
}
