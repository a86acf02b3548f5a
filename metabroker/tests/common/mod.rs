//! Test support: in-process Canopy brokers, bridge configs, 5.0 subscribers (through the
//! workspace's rumqttc adapter) and bounded waits.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod interest;
pub mod mosq;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use canopy_client::adapter::{self, Event, Options, Version};
use canopy_metabroker::{BridgeConfig, Direction, RouteConfig};
use rumqttc::v5::AsyncClient;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::Filter;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};

pub async fn broker() -> canopy_broker::BrokerHandle {
    canopy_broker::start(canopy_broker::Config::ephemeral())
        .await
        .unwrap()
}

pub fn url(addr: std::net::SocketAddr) -> String {
    format!("mqtt://{addr}")
}

pub fn temp_dir(tag: &str) -> PathBuf {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let d = std::env::temp_dir().join(format!("canopy-mb-{tag}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

pub fn route(direction: Direction, local: &str, prefix: Option<&str>, qos: u8) -> RouteConfig {
    RouteConfig {
        direction,
        local: local.to_owned(),
        remote_prefix: prefix.map(str::to_owned),
        remote: None,
        qos,
        max_rate: None,
        sample_every: None,
        interest: false,
    }
}

pub fn bridge(name: &str, local: &str, remote: &str, routes: Vec<RouteConfig>) -> BridgeConfig {
    let mut c = BridgeConfig::new(name, local, remote);
    c.routes = routes;
    c.queue.dir = Some(temp_dir(name));
    c.backoff.base = Duration::from_millis(20);
    c.backoff.cap = Duration::from_millis(300);
    c
}

/// A received message: topic, payload, hop property.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Got {
    pub topic: String,
    pub payload: Bytes,
    pub retain: bool,
    pub user_properties: Vec<(String, String)>,
}

/// A 5.0 client subscribed to `filters`; messages arrive on the returned channel once the
/// SUBACK came back (this function waits for it).
pub async fn subscriber(
    addr: std::net::SocketAddr,
    id: &str,
    filters: &[&str],
    qos: QoS,
) -> (AsyncClient, mpsc::UnboundedReceiver<Got>) {
    subscriber_opts(addr, id, filters, qos, true).await
}

pub async fn subscriber_opts(
    addr: std::net::SocketAddr,
    id: &str,
    filters: &[&str],
    qos: QoS,
    clean: bool,
) -> (AsyncClient, mpsc::UnboundedReceiver<Got>) {
    let (client, rx, mut subacked) = client_v5(addr, id, clean);
    let filters: Vec<Filter> = filters.iter().map(|f| Filter::new(*f, qos)).collect();
    if !filters.is_empty() {
        client.subscribe_many(filters).await.unwrap();
        tokio::time::timeout(Duration::from_secs(10), subacked.recv())
            .await
            .expect("no SUBACK within 10 s");
    }
    (client, rx)
}

/// The user properties of each SUBACK a client receives.
pub type SubAcks = mpsc::UnboundedReceiver<Vec<(String, String)>>;

/// A 5.0 client (reconnecting every 50 ms; `clean` false: a one-hour session): messages on
/// the first channel, each SUBACK's user properties on the second.
pub fn client_v5(
    addr: std::net::SocketAddr,
    id: &str,
    clean: bool,
) -> (AsyncClient, mpsc::UnboundedReceiver<Got>, SubAcks) {
    let mut opts = Options::new(Version::V5, id, addr.ip().to_string(), addr.port());
    opts.clean = clean;
    if !clean {
        opts.session_expiry = Some(3600);
    }
    opts.request_capacity = 1000;
    // Reconnect every 50 ms: brokers in these tests stop and restart.
    opts.backoff = Some((Duration::from_millis(50), Duration::from_millis(50)));
    let (client, mut connection) = opts.connect();
    let adapter::Client::V5(client) = client else {
        unreachable!("a 5.0 Options builds a 5.0 client")
    };
    let (tx, rx) = mpsc::unbounded_channel();
    let (subacked_tx, subacked) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            match connection.poll().await {
                Ok(Event::Publish(p)) => {
                    let got = Got {
                        topic: String::from_utf8_lossy(&p.topic).into_owned(),
                        payload: p.payload.clone(),
                        retain: p.retain,
                        user_properties: p
                            .properties
                            .map(|p| p.user_properties)
                            .unwrap_or_default(),
                    };
                    if tx.send(got).is_err() {
                        return;
                    }
                }
                Ok(Event::SubAck {
                    user_properties, ..
                }) => {
                    let _ = subacked_tx.send(user_properties);
                }
                // Our own DISCONNECT: stop, never reconnect (a reconnection would take the
                // client id over from whoever uses it next).
                Ok(Event::OutgoingDisconnect) => return,
                Ok(_) => {}
                Err(_) => {
                    if tx.is_closed() {
                        return;
                    }
                    connection.pause().await;
                }
            }
        }
    });
    (client, rx, subacked)
}

/// A 5.0 publisher whose event loop runs in the background.
pub async fn publisher(addr: std::net::SocketAddr, id: &str) -> AsyncClient {
    let (client, _rx) = subscriber(addr, id, &[], QoS::AtMostOnce).await;
    client
}

/// Receives exactly `n` messages within `within`, panicking with what did arrive otherwise.
pub async fn take(rx: &mut mpsc::UnboundedReceiver<Got>, n: usize, within: Duration) -> Vec<Got> {
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + within;
    while out.len() < n {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(g)) => out.push(g),
            _ => panic!(
                "got {} of {n} messages: {:?}",
                out.len(),
                out.iter().map(|g| &g.topic).collect::<Vec<_>>()
            ),
        }
    }
    out
}

/// Asserts nothing more arrives during `quiet`.
pub async fn assert_quiet(rx: &mut mpsc::UnboundedReceiver<Got>, quiet: Duration) {
    if let Ok(Some(g)) = tokio::time::timeout(quiet, rx.recv()).await {
        panic!("unexpected extra message {g:?}");
    }
}

/// Polls `cond` every 20 ms for at most `within`.
pub async fn wait_until(within: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + within;
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub fn connected(h: &canopy_metabroker::BridgeHandle) -> bool {
    h.stats()
        .connected
        .load(std::sync::atomic::Ordering::Relaxed)
}

/// Logs to the test output when RUST_LOG is set.
pub fn init_log() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

/// A TCP proxy whose connections are all cut when `cut` changes.
pub async fn cutter(target: SocketAddr) -> (SocketAddr, watch::Sender<u64>, Arc<AtomicU64>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (cut, cut_rx) = watch::channel(0u64);
    let accepted = Arc::new(AtomicU64::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::Relaxed);
            let mut cut_rx = cut_rx.clone();
            cut_rx.borrow_and_update();
            tokio::spawn(async move {
                let Ok(mut outbound) = TcpStream::connect(target).await else {
                    return;
                };
                tokio::select! {
                    _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                    _ = cut_rx.changed() => {}
                }
                let _ = inbound.shutdown().await;
            });
        }
    });
    (addr, cut, accepted)
}

/// A Canopy broker with a disk store at `dir`, listening on `bind`.
pub async fn durable_broker(
    bind: SocketAddr,
    dir: &std::path::Path,
) -> canopy_broker::BrokerHandle {
    let mut c = canopy_broker::Config::ephemeral();
    c.listener[0].bind = bind;
    c.data_dir = dir.to_owned();
    c.durability = canopy_broker::config::Durability::Sync;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        match canopy_broker::start(c.clone()).await {
            Ok(h) => return h,
            Err(e) if tokio::time::Instant::now() < deadline => {
                eprintln!("restart retry: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("broker did not restart: {e}"),
        }
    }
}
