//! What the newer examples share: an MQTT client whose event loop runs in a task of its own,
//! handing over what arrives as [`Seen`] items, and a clock for the output lines.
//!
//! Owns nothing of the broker; must never publish from the polling task (rumqttc would
//! deadlock when its request queue is full).
#![allow(dead_code)] // each example uses part of it

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, SubscribeReasonCode};
use tokio::sync::mpsc;

/// The error type of the examples' `main`.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What a client's event loop saw.
#[derive(Debug)]
pub enum Seen {
    /// An incoming PUBLISH.
    Message {
        /// Its topic.
        topic: String,
        /// Its payload.
        payload: Vec<u8>,
        /// Whether it came with the retain flag (a stored message, not a live one).
        retain: bool,
    },
    /// A SUBACK: `true` per filter that was granted.
    SubAck(Vec<bool>),
    /// The connection ended (refused, dropped or closed).
    Gone(String),
}

/// A connected client and what it receives.
pub struct Peer {
    /// Publishes and subscribes.
    pub client: AsyncClient,
    /// What the event loop saw, in order.
    pub inbox: mpsc::Receiver<Seen>,
    /// The task driving the event loop: aborting it drops the connection without DISCONNECT.
    pub task: tokio::task::JoinHandle<()>,
}

impl Peer {
    /// Connects `id` (with `login` as user name and password, if given) to `addr` and drives
    /// its event loop in a task of its own. Waits for the CONNACK: an error if refused.
    pub async fn connect(
        id: &str,
        addr: SocketAddr,
        login: Option<(&str, &str)>,
    ) -> Result<Peer, BoxError> {
        let mut opts = MqttOptions::new(id, addr.ip().to_string(), addr.port());
        opts.set_keep_alive(Duration::from_secs(30));
        if let Some((user, password)) = login {
            opts.set_credentials(user, password);
        }
        let (client, mut eventloop) = AsyncClient::new(opts, 64);
        let (tx, inbox) = mpsc::channel(256);
        let (connected_tx, connected_rx) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(async move {
            let mut connected = Some(connected_tx);
            loop {
                let seen = match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        if let Some(c) = connected.take() {
                            let _ = c.send(Ok(()));
                        }
                        continue;
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => Seen::Message {
                        topic: p.topic.clone(),
                        payload: p.payload.to_vec(),
                        retain: p.retain,
                    },
                    Ok(Event::Incoming(Packet::SubAck(s))) => Seen::SubAck(
                        s.return_codes
                            .iter()
                            .map(|c| matches!(c, SubscribeReasonCode::Success(_)))
                            .collect(),
                    ),
                    Ok(_) => continue,
                    Err(e) => {
                        if let Some(c) = connected.take() {
                            let _ = c.send(Err(e.to_string()));
                        }
                        let _ = tx.send(Seen::Gone(e.to_string())).await;
                        return;
                    }
                };
                if tx.send(seen).await.is_err() {
                    return;
                }
            }
        });
        match tokio::time::timeout(Duration::from_secs(10), connected_rx).await {
            Ok(Ok(Ok(()))) => Ok(Peer {
                client,
                inbox,
                task,
            }),
            Ok(Ok(Err(e))) => Err(format!("{id}: connection refused: {e}").into()),
            _ => Err(format!("{id}: no CONNACK within 10 s").into()),
        }
    }

    /// The next item, or `None` when nothing arrives within `wait`.
    pub async fn next(&mut self, wait: Duration) -> Option<Seen> {
        tokio::time::timeout(wait, self.inbox.recv())
            .await
            .ok()
            .flatten()
    }

    /// Subscribes to `filter` at QoS 1 and waits for its SUBACK: whether it was granted.
    /// Messages that arrive before the SUBACK are returned too.
    pub async fn subscribe(&mut self, filter: &str) -> Result<(bool, Vec<Seen>), BoxError> {
        self.client
            .subscribe(filter, rumqttc::QoS::AtLeastOnce)
            .await?;
        let mut early = Vec::new();
        loop {
            match self.next(Duration::from_secs(10)).await {
                Some(Seen::SubAck(codes)) => {
                    return Ok((codes.first().copied().unwrap_or(false), early));
                }
                Some(Seen::Gone(e)) => return Err(format!("connection lost: {e}").into()),
                Some(other) => early.push(other),
                None => return Err(format!("no SUBACK for {filter} within 10 s").into()),
            }
        }
    }

    /// Waits (at most 10 s, so a slow machine does not fail the example) for `n` messages,
    /// then takes whatever else arrives until nothing more comes for 300 ms.
    pub async fn expect(&mut self, n: usize) -> Vec<Seen> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let mut out = Vec::new();
        let count = |v: &Vec<Seen>| {
            v.iter()
                .filter(|s| matches!(s, Seen::Message { .. }))
                .count()
        };
        while count(&out) < n {
            match tokio::time::timeout_at(deadline, self.inbox.recv()).await {
                Ok(Some(s)) => out.push(s),
                _ => break,
            }
        }
        out.extend(self.drain(Duration::from_millis(300)).await);
        out
    }

    /// Every message that arrives until nothing more comes for `quiet` (at most 200 items).
    pub async fn drain(&mut self, quiet: Duration) -> Vec<Seen> {
        let mut out = Vec::new();
        while out.len() < 200 {
            match self.next(quiet).await {
                Some(s) => out.push(s),
                None => break,
            }
        }
        out
    }
}

/// Prints output lines as `[  1.23s] who   what`, seconds since the example began.
#[derive(Clone, Copy)]
pub struct Clock(Instant);

impl Clock {
    /// Starts the clock.
    pub fn start() -> Clock {
        Clock(Instant::now())
    }

    /// Prints one line.
    pub fn say(&self, who: &str, what: impl std::fmt::Display) {
        println!("[{:5.2}s] {who:<8} {what}", self.0.elapsed().as_secs_f64());
    }
}
