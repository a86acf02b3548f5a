//! `TestBroker`: the broker a test talks to.
//!
//! Owns starting an in-process Canopy on 127.0.0.1:0 with test settings, or pointing at an
//! external broker when `CANOPY_TEST_EXTERNAL=host:port` is set (to validate the raw cases
//! against another implementation such as Mosquitto). It must never bind a fixed port, and
//! never apply settings silently to an external broker: cases that need Canopy-specific
//! settings are skipped (with a line on stderr) in external mode.

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Environment variable naming an external broker (`host:port`).
pub const EXTERNAL_ENV: &str = "CANOPY_TEST_EXTERNAL";

/// Broker limits a test may set; `None` keeps the broker's default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settings {
    /// `limits.max_packet_size`.
    pub max_packet_size: Option<u32>,
    /// `limits.receive_maximum`.
    pub receive_maximum: Option<u16>,
    /// `limits.max_inflight`.
    pub max_inflight: Option<u16>,
    /// `limits.max_queued_messages`.
    pub max_queued_messages: Option<usize>,
    /// `limits.topic_alias_maximum`.
    pub topic_alias_maximum: Option<u16>,
    /// `limits.max_keep_alive`.
    pub max_keep_alive: Option<u16>,
    /// `limits.max_session_expiry`.
    pub max_session_expiry: Option<u32>,
    /// `sys_interval`.
    pub sys_interval: Option<Duration>,
}

/// A broker under test. Dropping it shuts an in-process broker down in the background;
/// [`TestBroker::shutdown`] does it gracefully and waits.
pub struct TestBroker {
    addr: SocketAddr,
    #[cfg(feature = "in-process")]
    handle: Option<canopy_broker::BrokerHandle>,
}

/// The external broker's address, if `CANOPY_TEST_EXTERNAL` is set.
pub fn external_addr() -> Option<SocketAddr> {
    let v = std::env::var(EXTERNAL_ENV).ok()?;
    let addr = v
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .unwrap_or_else(|| panic!("{EXTERNAL_ENV}={v} is not host:port"));
    Some(addr)
}

/// True when the tests run against an external broker.
pub fn is_external() -> bool {
    std::env::var_os(EXTERNAL_ENV).is_some()
}

impl TestBroker {
    /// Starts a broker with default settings (or uses the external one).
    pub async fn start() -> Self {
        match external_addr() {
            Some(addr) => Self::external(addr),
            None => Self::in_process(Settings::default()).await,
        }
    }

    /// Starts a broker with `settings`. Returns `None` in external mode, where the
    /// settings cannot be applied: the caller's test is Canopy-specific and is skipped.
    pub async fn start_with(settings: Settings, test: &str) -> Option<Self> {
        if is_external() {
            eprintln!("skipped in external mode (needs Canopy settings): {test}");
            return None;
        }
        Some(Self::in_process(settings).await)
    }

    /// Starts a broker with `settings` in process; in external mode uses the external broker
    /// with its own defaults. For tests that read the effective limit from CONNACK.
    pub async fn start_prefer(settings: Settings) -> Self {
        match external_addr() {
            Some(addr) => Self::external(addr),
            None => Self::in_process(settings).await,
        }
    }

    /// Returns `None` (and logs a skip) in external mode: for tests of Canopy policy that
    /// the specification leaves open.
    pub async fn start_canopy_only(test: &str) -> Option<Self> {
        Self::start_with(Settings::default(), test).await
    }

    fn external(addr: SocketAddr) -> Self {
        Self {
            addr,
            #[cfg(feature = "in-process")]
            handle: None,
        }
    }

    #[cfg(feature = "in-process")]
    async fn in_process(settings: Settings) -> Self {
        Self::start_config(|cfg| apply(settings, cfg)).await
    }

    #[cfg(not(feature = "in-process"))]
    async fn in_process(_settings: Settings) -> Self {
        panic!("built without the `in-process` feature: set {EXTERNAL_ENV}=host:port")
    }

    /// Starts an in-process broker from `Config::ephemeral()` edited by `edit`.
    #[cfg(feature = "in-process")]
    pub async fn start_config(edit: impl FnOnce(&mut canopy_broker::config::Config)) -> Self {
        let mut cfg = canopy_broker::config::Config::ephemeral();
        edit(&mut cfg);
        let handle = tokio::time::timeout(Duration::from_secs(10), canopy_broker::start(cfg))
            .await
            .unwrap_or_else(|_| panic!("broker start timed out"))
            .unwrap_or_else(|e| panic!("broker failed to start: {e}"));
        Self {
            addr: handle.mqtt_addr(),
            handle: Some(handle),
        }
    }

    /// The MQTT listener's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The broker counter `name` (as in `canopy_broker::metrics::Metrics`), in process only.
    #[cfg(feature = "in-process")]
    pub fn counter(&self, name: &str) -> Option<u64> {
        let handle = self.handle.as_ref()?;
        handle
            .metrics()
            .snapshot()
            .into_iter()
            .find(|(n, _, _)| *n == name)
            .map(|(_, _, v)| v)
    }

    /// Shuts an in-process broker down gracefully and waits (bounded). No-op when external.
    pub async fn shutdown(mut self) {
        #[cfg(feature = "in-process")]
        if let Some(h) = self.handle.take() {
            let done = tokio::time::timeout(Duration::from_secs(10), h.shutdown()).await;
            assert!(done.is_ok(), "broker shutdown took more than 10 s");
        }
        let _ = &mut self;
    }
}

#[cfg(feature = "in-process")]
fn apply(s: Settings, cfg: &mut canopy_broker::config::Config) {
    if let Some(v) = s.max_packet_size {
        cfg.limits.max_packet_size = v;
    }
    if let Some(v) = s.receive_maximum {
        cfg.limits.receive_maximum = v;
    }
    if let Some(v) = s.max_inflight {
        cfg.limits.max_inflight = v;
    }
    if let Some(v) = s.max_queued_messages {
        cfg.limits.max_queued_messages = v;
    }
    if let Some(v) = s.topic_alias_maximum {
        cfg.limits.topic_alias_maximum = v;
    }
    if let Some(v) = s.max_keep_alive {
        cfg.limits.max_keep_alive = v;
    }
    if let Some(v) = s.max_session_expiry {
        cfg.limits.max_session_expiry = v;
    }
    if let Some(v) = s.sys_interval {
        cfg.sys_interval = v;
    }
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        #[cfg(feature = "in-process")]
        if let (Some(h), Ok(rt)) = (self.handle.take(), tokio::runtime::Handle::try_current()) {
            rt.spawn(h.shutdown());
        }
    }
}

/// A name unique in this process and across runs (for topics and client ids), so tests
/// sharing an external broker, or retained state from earlier runs, never interfere.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros())
        .unwrap_or(0)
        % 1_000_000_000;
    format!("{prefix}-{}-{t}-{n}", std::process::id())
}
