//! The metabroker's TOML configuration: one bridge between a local and a remote
//! broker, its routes, queue, backoff and loop guard.
//!
//! Owns: parsing, defaults, the `hierarchy = true` shorthand and validation, with errors that
//! name the file, the line and the key
//! (through [`canopy_model::config_error`], the same machinery as the broker's). Must never open a connection or touch the disk.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::remap::{Remap, RemapError};
use crate::transport::Scheme;

pub use canopy_model::config_error::ConfigError;
use canopy_model::config_error::Violation;

/// MQTT protocol version spoken to a broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
pub enum Protocol {
    /// MQTT 3.1.1 (no properties, no no-local: route sets that could echo are refused).
    #[serde(rename = "3.1.1")]
    V311,
    /// MQTT 5.0 (no-local and the hop marker).
    #[default]
    #[serde(rename = "5")]
    V5,
}

/// How to reach one broker.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Endpoint {
    /// `mqtt://host:port`, `mqtts://host:port` (TLS) or `ws://host:port/path` (WebSocket).
    pub url: String,
    /// The broker's id on hop-marker paths (`@<id>`); default `host:port` of `url`. Every
    /// metabroker touching a broker must name it alike.
    #[serde(default)]
    pub id: Option<String>,
    /// Client id; defaults to `<name>-local` / `<name>-remote`.
    #[serde(default)]
    pub client_id: Option<String>,
    /// User name.
    #[serde(default)]
    pub username: Option<String>,
    /// Password.
    #[serde(default)]
    pub password: Option<String>,
    /// `"5"` (default) or `"3.1.1"`.
    #[serde(default)]
    pub protocol: Protocol,
    /// Keep-alive interval.
    #[serde(default = "default_keep_alive", with = "humantime_serde_compat")]
    pub keep_alive: Duration,
    /// `mqtts://` only: PEM file of the CA certificate(s) to trust instead of the system roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// `mqtts://` only: PEM client certificate chain (with `key_file`).
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    /// `mqtts://` only: PEM private key of `cert_file` (PKCS#8, PKCS#1 or SEC1).
    #[serde(default)]
    pub key_file: Option<PathBuf>,
}

/// Which way a route forwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Remote -> local.
    In,
    /// Local -> remote.
    Out,
    /// Both ways.
    Both,
}

/// One `[[route]]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// `in`, `out` or `both`.
    pub direction: Direction,
    /// Filter in the local broker's namespace.
    pub local: String,
    /// Prefix the same topics carry on the remote side.
    #[serde(default)]
    pub remote_prefix: Option<String>,
    /// Placeholder template for the remote side (`x/{1}/{2}`); excludes `remote_prefix`.
    #[serde(default)]
    pub remote: Option<String>,
    /// Maximum QoS used on both legs (0, 1, 2).
    #[serde(default = "default_qos")]
    pub qos: u8,
    /// At most this many messages per second pass (excess dropped, counted as filtered).
    #[serde(default)]
    pub max_rate: Option<u32>,
    /// Keep one message in every N.
    #[serde(default)]
    pub sample_every: Option<u32>,
    /// `in`/`both` only: subscribe on the remote only to the part of `local` that the local
    /// broker's subscribers want (docs/interest.md); the whole filter on a plain broker.
    #[serde(default)]
    pub interest: bool,
}

impl RouteConfig {
    /// The local -> remote mapping of this route.
    pub fn remap(&self) -> Result<Remap, RemapError> {
        match (&self.remote, &self.remote_prefix) {
            (Some(t), _) => Remap::new(&self.local, t),
            (None, p) => Remap::prefix(&self.local, p.as_deref().unwrap_or("")),
        }
    }
}

/// `[queue]`: where and how much waits for an unreachable side.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueConfig {
    /// Directory of the queue database; default `./canopy-metabroker-<name>`.
    #[serde(default)]
    pub dir: Option<PathBuf>,
    /// Most messages kept per direction.
    #[serde(default = "default_max_messages")]
    pub max_messages: u64,
    /// Most topic+payload bytes kept per direction.
    #[serde(default = "default_max_bytes")]
    pub max_bytes: u64,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            dir: None,
            max_messages: default_max_messages(),
            max_bytes: default_max_bytes(),
        }
    }
}

/// `[backoff]`: decorrelated-jitter reconnect delays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackoffConfig {
    /// First and smallest delay.
    #[serde(default = "default_base", with = "humantime_serde_compat")]
    pub base: Duration,
    /// Largest delay.
    #[serde(default = "default_cap", with = "humantime_serde_compat")]
    pub cap: Duration,
}

impl Default for BackoffConfig {
    fn default() -> Self {
        BackoffConfig {
            base: default_base(),
            cap: default_cap(),
        }
    }
}

/// A whole bridge: the metabroker file, or one `[[bridge]]` of the broker's file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BridgeConfig {
    /// Node id: names the state topics and goes into the hop marker.
    pub name: String,
    /// The broker this metabroker represents the remote one to.
    pub local: Endpoint,
    /// The broker it represents.
    pub remote: Endpoint,
    /// Routes, in order.
    #[serde(default, rename = "route")]
    pub routes: Vec<RouteConfig>,
    /// Add the hierarchy routes (`$status/#`, `$presence/#`, `$cluster/#` out;
    /// `$config/#`, `map/#`, `fx/#` in).
    #[serde(default)]
    pub hierarchy: bool,
    /// The on-disk queue.
    #[serde(default)]
    pub queue: QueueConfig,
    /// Reconnect backoff.
    #[serde(default)]
    pub backoff: BackoffConfig,
    /// Drop a message whose hop marker already lists this many nodes.
    #[serde(default = "default_max_hops")]
    pub max_hops: usize,
    /// Where state and counters go on the local broker: `<state_prefix>/<name>/...`.
    /// Default `$SYS/metabroker`; brokers that refuse client writes under `$SYS` (Mosquitto)
    /// need another prefix, such as `metabroker`.
    #[serde(default = "default_state_prefix")]
    pub state_prefix: String,
    /// Most messages in flight to a destination at once.
    #[serde(default = "default_inflight")]
    pub max_inflight: u16,
    /// Most distinct proxy filters per `interest` route; above, they are merged into
    /// covering wildcards.
    #[serde(default = "default_max_proxy_filters")]
    pub max_proxy_filters: usize,
    /// A will left on the remote broker, retained at QoS 1 (set by programs only, never
    /// read from a file: the broker's cluster join link marks its node down with it).
    #[serde(skip)]
    pub remote_will: Option<RemoteWill>,
}

/// The will a bridge leaves on its remote broker ([`BridgeConfig::remote_will`]).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RemoteWill {
    /// Topic of the will.
    pub topic: String,
    /// Payload of the will.
    pub payload: String,
}

/// The hierarchy shorthand's routes, in the order they are added.
pub fn hierarchy_routes() -> Vec<RouteConfig> {
    let route = |direction, local: &str| RouteConfig {
        direction,
        local: local.to_owned(),
        remote_prefix: None,
        remote: None,
        qos: 1,
        max_rate: None,
        sample_every: None,
        interest: false,
    };
    vec![
        route(Direction::Out, "$status/#"),
        route(Direction::Out, "$presence/#"),
        route(Direction::Out, "$cluster/#"),
        route(Direction::In, "$config/#"),
        route(Direction::In, "map/#"),
        route(Direction::In, "fx/#"),
    ]
}

impl BridgeConfig {
    /// The client id on the local broker: `local.client_id`, else `<name>-local`.
    pub fn local_client_id(&self) -> String {
        canopy_model::bridge::local_client_id(&self.name, self.local.client_id.as_deref())
    }

    /// The client id on the remote broker: `remote.client_id`, else `<name>-remote`.
    pub fn remote_client_id(&self) -> String {
        canopy_model::bridge::remote_client_id(&self.name, self.remote.client_id.as_deref())
    }

    /// The id of the local (`remote == false`) or remote broker on hop-marker paths:
    /// the endpoint's `id`, else `host:port` of its URL.
    pub fn broker_id(&self, remote: bool) -> String {
        let ep = if remote { &self.remote } else { &self.local };
        if let Some(id) = &ep.id {
            return id.clone();
        }
        match crate::transport::parse_url(&ep.url) {
            Ok(t) => format!("{}:{}", t.host, t.port),
            Err(_) => ep.url.clone(),
        }
    }

    /// Reads and checks a file.
    pub fn load(path: &Path) -> Result<BridgeConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.to_owned(),
            source,
        })?;
        BridgeConfig::from_toml(&text, &path.display().to_string())
    }

    /// Parses and checks `text`; `origin` names it in errors.
    pub fn from_toml(text: &str, origin: &str) -> Result<BridgeConfig, ConfigError> {
        canopy_model::config_error::from_toml(text, origin, |c: &BridgeConfig| {
            c.check()
                .map_err(|(key, message)| Violation { key, message })
        })
    }

    /// A bridge with defaults and no routes, for programs that build one in code.
    pub fn new(name: &str, local_url: &str, remote_url: &str) -> BridgeConfig {
        let endpoint = |url: &str| Endpoint {
            url: url.to_owned(),
            id: None,
            client_id: None,
            username: None,
            password: None,
            protocol: Protocol::V5,
            keep_alive: default_keep_alive(),
            ca_file: None,
            cert_file: None,
            key_file: None,
        };
        BridgeConfig {
            name: name.to_owned(),
            local: endpoint(local_url),
            remote: endpoint(remote_url),
            routes: Vec::new(),
            hierarchy: false,
            queue: QueueConfig::default(),
            backoff: BackoffConfig::default(),
            max_hops: default_max_hops(),
            state_prefix: default_state_prefix(),
            max_inflight: default_inflight(),
            max_proxy_filters: default_max_proxy_filters(),
            remote_will: None,
        }
    }

    /// The routes that run: the configured ones, then the hierarchy routes when
    /// `hierarchy = true`.
    pub fn effective_routes(&self) -> Vec<RouteConfig> {
        let mut routes = self.routes.clone();
        if self.hierarchy {
            routes.extend(hierarchy_routes());
        }
        routes
    }

    /// Checks what parsing alone cannot; the error is (dotted key, message). Used by
    /// the broker for its embedded `[[bridge]]` sections.
    pub fn validate(&self) -> Result<(), (String, String)> {
        self.check()
    }

    fn check(&self) -> Result<(), (String, String)> {
        if self.name.is_empty()
            || self.name.contains(['/', '+', '#', ','])
            || self.name.starts_with(canopy_model::hops::BROKER_MARK)
        {
            return Err((
                "name".into(),
                "must be non-empty without / + # , and not start with @".into(),
            ));
        }
        for (side, ep) in [("local", &self.local), ("remote", &self.remote)] {
            let target =
                crate::transport::parse_url(&ep.url).map_err(|m| (format!("{side}.url"), m))?;
            if ep
                .id
                .as_ref()
                .is_some_and(|id| id.is_empty() || id.contains(','))
            {
                return Err((format!("{side}.id"), "must be non-empty without ,".into()));
            }
            let tls_keys = [
                ("ca_file", ep.ca_file.is_some()),
                ("cert_file", ep.cert_file.is_some()),
                ("key_file", ep.key_file.is_some()),
            ];
            if target.scheme != Scheme::Tls
                && let Some((k, _)) = tls_keys.iter().find(|(_, set)| *set)
            {
                return Err((format!("{side}.{k}"), "only for mqtts:// URLs".into()));
            }
            if ep.cert_file.is_some() != ep.key_file.is_some() {
                return Err((
                    format!("{side}.cert_file"),
                    "cert_file and key_file go together".into(),
                ));
            }
        }
        if self.state_prefix.is_empty() || self.state_prefix.contains(['+', '#']) {
            return Err((
                "state_prefix".into(),
                "must be a non-empty topic without wildcards".into(),
            ));
        }
        if self.backoff.base.is_zero() || self.backoff.cap < self.backoff.base {
            return Err(("backoff".into(), "need 0 < base <= cap".into()));
        }
        if self.max_proxy_filters == 0 {
            return Err(("max_proxy_filters".into(), "must be > 0".into()));
        }
        if self.max_hops == 0 || self.max_inflight == 0 {
            return Err((
                "max_hops".into(),
                "max_hops and max_inflight must be > 0".into(),
            ));
        }
        for (i, r) in self.routes.iter().enumerate() {
            let key = |k: &str| format!("route[{i}].{k}");
            if r.qos > 2 {
                return Err((key("qos"), "must be 0, 1 or 2".into()));
            }
            if r.remote.is_some() && r.remote_prefix.is_some() {
                return Err((
                    key("remote"),
                    "give remote or remote_prefix, not both".into(),
                ));
            }
            let remap = r.remap().map_err(|e| (key("local"), e.to_string()))?;
            if r.direction != Direction::Out {
                remap
                    .reverse()
                    .map_err(|e| (key("remote"), e.to_string()))?;
            }
            if r.interest && r.direction == Direction::Out {
                return Err((
                    key("interest"),
                    "only for routes with direction \"in\" or \"both\"".into(),
                ));
            }
            if r.max_rate == Some(0) {
                return Err((key("max_rate"), "must be > 0".into()));
            }
        }
        loops::check_311(self)
    }
}

fn default_keep_alive() -> Duration {
    Duration::from_secs(30)
}
fn default_qos() -> u8 {
    1
}
fn default_max_messages() -> u64 {
    100_000
}
fn default_max_bytes() -> u64 {
    256 * 1024 * 1024
}
fn default_base() -> Duration {
    Duration::from_millis(100)
}
fn default_cap() -> Duration {
    Duration::from_secs(30)
}
fn default_max_hops() -> usize {
    8
}
fn default_state_prefix() -> String {
    "$SYS/metabroker".to_owned()
}
fn default_inflight() -> u16 {
    64
}
fn default_max_proxy_filters() -> usize {
    64
}

/// `"30s"`-style durations through humantime.
mod humantime_serde_compat {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(&s).map_err(serde::de::Error::custom)
    }
}

mod loops;

#[cfg(test)]
mod tests;
