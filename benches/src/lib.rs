//! canopy-bench: a load generator for MQTT brokers, in the style of emqtt-bench.
//!
//! Owns the scenarios (`fanin`, `fanout`, `latency`, `connections`, `wildcard`, `retained`,
//! `durable`), their flow control and their one-line JSON results. It drives any MQTT 3.1.1
//! broker through its own minimal client ([`client`]) on tokio. It never sends traffic to a
//! non-loopback address ([`target`] refuses one) and every phase is bounded in time.
#![warn(missing_docs)]

pub mod client;
mod flow;
pub mod hist;
pub mod progress;
pub mod report;
mod scenarios;

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use canopy_proto::QoS;

pub use report::Report;

/// Why a run failed.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// A socket error.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    /// The codec rejected a packet.
    #[error("protocol: {0}")]
    Proto(#[from] canopy_proto::ProtoError),
    /// A topic or filter the scenario built is invalid.
    #[error("topic: {0}")]
    Topic(String),
    /// The broker refused a connection or a subscription.
    #[error("refused by the broker: {0}")]
    Refused(String),
    /// The broker sent something the client did not expect.
    #[error("unexpected: {0}")]
    Unexpected(String),
    /// The broker closed a connection.
    #[error("connection closed by the broker")]
    Closed,
    /// A step took longer than its bound.
    #[error("timed out {0}")]
    Timeout(&'static str),
    /// The target is not a loopback address.
    #[error("refusing non-loopback target {0}: canopy-bench only loads brokers on this machine")]
    NotLoopback(String),
    /// The options do not make sense together.
    #[error("invalid options: {0}")]
    Options(String),
}

/// The scenarios.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scenario {
    /// N publishers (8) to one subscriber on `bench/#`.
    Fanin,
    /// One publisher to N subscribers (100) on one topic.
    Fanout,
    /// One publisher at a fixed rate (1,000 msg/s) to one subscriber; latency percentiles.
    Latency,
    /// N idle connections (10,000), each subscribed to `dev/<i>/cmd`; connect rate, RSS.
    Connections,
    /// One subscriber with N filters (10,000) `site/<i>/+/temp`; cold and warm publishes.
    Wildcard,
    /// N retained messages (100,000), then a new `r/#` subscriber: time to receive all.
    Retained,
    /// QoS 1 fan-in to a persistent session (so a durable broker writes every message),
    /// labelled with the broker's durability mode (`--label`).
    Durable,
    /// Fan-in with N inactive event-activated subscriptions (100,000; `--filters`)
    /// registered on the very topics being published; compare with `--filters 0`.
    Inactive,
}

/// Everything a run is parameterised by. `None` takes the scenario's default.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Options {
    /// The scenario.
    pub scenario: Scenario,
    /// Broker address (loopback only).
    pub target: SocketAddr,
    /// QoS of publishes and subscriptions (0 or 1).
    #[serde(serialize_with = "report::qos")]
    pub qos: QoS,
    /// Most messages a publisher keeps outstanding end to end (closed loop).
    pub inflight: usize,
    /// Open loop: messages per second over all publishers.
    pub rate: Option<f64>,
    /// Stop publishing after this long.
    #[serde(with = "report::secs_opt")]
    pub duration: Option<Duration>,
    /// Stop publishing after this many messages (over all publishers).
    pub count: Option<u64>,
    /// Publishers (fanin, durable, wildcard warm phase).
    pub publishers: Option<usize>,
    /// Subscribers (fanout).
    pub subscribers: Option<usize>,
    /// Payload bytes.
    pub payload: usize,
    /// Connections (connections scenario).
    pub connections: Option<usize>,
    /// Filters (wildcard scenario).
    pub filters: Option<usize>,
    /// Retained messages (retained scenario).
    pub retained: Option<usize>,
    /// PID of the broker, to read its RSS from /proc.
    pub broker_pid: Option<u32>,
    /// Free-form label copied into the result (broker name, durability mode).
    pub label: Option<String>,
    /// Concurrent handshakes in the connections scenario.
    pub connect_concurrency: usize,
    /// How long delivery may stall before the remaining messages are counted as lost.
    #[serde(with = "report::secs")]
    pub drain: Duration,
}

impl Options {
    /// Defaults for `scenario` against `target`: QoS 0, 100 in flight, 64-byte payloads,
    /// 10 s unless a count is given.
    pub fn new(scenario: Scenario, target: SocketAddr) -> Options {
        Options {
            scenario,
            target,
            qos: if scenario == Scenario::Durable {
                QoS::AtLeastOnce
            } else {
                QoS::AtMostOnce
            },
            inflight: 100,
            rate: None,
            duration: None,
            count: None,
            publishers: None,
            subscribers: None,
            payload: 64,
            connections: None,
            filters: None,
            retained: None,
            broker_pid: None,
            label: None,
            connect_concurrency: 64,
            drain: Duration::from_secs(2),
        }
    }
}

/// Resolves `host:port` and refuses anything that is not a loopback address.
pub async fn target(host: &str, port: u16) -> Result<SocketAddr, BenchError> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port)).await?.collect();
    let first = addrs
        .first()
        .copied()
        .ok_or_else(|| BenchError::NotLoopback(host.to_owned()))?;
    if addrs.iter().any(|a| !a.ip().is_loopback()) {
        return Err(BenchError::NotLoopback(host.to_owned()));
    }
    Ok(first)
}

/// Runs one scenario and returns its result.
pub async fn run(opts: &Options, progress: progress::Progress) -> Result<Report, BenchError> {
    if !opts.target.ip().is_loopback() {
        return Err(BenchError::NotLoopback(opts.target.to_string()));
    }
    if opts.qos == QoS::ExactlyOnce {
        return Err(BenchError::Options("QoS 2 is not supported".into()));
    }
    if opts.inflight == 0 {
        return Err(BenchError::Options("--inflight must be at least 1".into()));
    }
    if opts.rate.is_some_and(|r| !(r > 0.0 && r.is_finite())) {
        return Err(BenchError::Options("--rate must be positive".into()));
    }
    let _ = epoch();
    scenarios::run(opts, progress).await
}

/// The instant payload timestamps count from (fixed at the first call).
pub fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// Nanoseconds since [`epoch`].
pub fn now_ns() -> u64 {
    u64::try_from(epoch().elapsed().as_nanos()).unwrap_or(u64::MAX)
}
