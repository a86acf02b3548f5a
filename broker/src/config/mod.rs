//! The broker's configuration: the TOML file's schema, its defaults and its validation.
//!
//! Owns every key name, default and accepted range (documented for users in
//! `docs/configuration.md`, which must be kept in step with this module). Every table rejects
//! unknown keys, and every error names the file, the line and the dotted key. Must never do
//! anything beyond reading the one file it is given: no sockets, no other files, and no shared
//! state except the counter that keeps `Config::ephemeral` directories distinct.

mod cluster;
mod error;
mod limits;
mod resources;
mod services;
mod values;

#[cfg(test)]
mod cluster_tests;
#[cfg(test)]
mod doc_tests;
#[cfg(test)]
mod resources_tests;
#[cfg(test)]
mod services_tests;
#[cfg(test)]
mod tests;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Deserialize;

pub use cluster::{ClusterConfig, ClusterPolicy, Ratio, plain_listener};
pub use error::ConfigError;
pub use limits::{Limits, QueueFullPolicy};
pub use resources::{ResourceConfig, ResourceMode};
pub use services::{CarouselConfig, ConfigDocs, DnsConfig, PresenceConfig};

use error::Violation;
use values::{
    duration, log_directive, node_id, non_empty_path, opt_non_empty_path, opt_socket_addr,
    socket_addr,
};

/// When an acknowledged QoS 1/2 message is safe from a crash.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Durability {
    /// PUBACK/PUBREC only after the message is on disk (group commit across publishers): a
    /// `kill -9` loses no acknowledged message. The default.
    #[default]
    Sync,
    /// Acknowledge at once and commit every `commit_interval`: a crash may lose the last
    /// interval's messages.
    Batched,
    /// Nothing is written to disk; a restart starts empty.
    Memory,
}

/// What the broker does when the store in `data_dir` cannot be read at start-up.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnCorruptStore {
    /// Move the unreadable files aside inside `data_dir` (kept, never deleted), log an error
    /// and start with an empty store. The default.
    #[default]
    Quarantine,
    /// Refuse to start, leaving the files untouched.
    Refuse,
}

/// One MQTT listener (`[[listener]]`).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ListenerConfig {
    /// Address and port to listen on, as `"ip:port"` (`"0.0.0.0:1883"`, `"[::]:1883"`; port 0
    /// picks a free port). Host names are not resolved. Default `"127.0.0.1:1883"`.
    #[serde(deserialize_with = "socket_addr")]
    pub bind: SocketAddr,
    /// TLS on this listener (`tls = { cert = "...", key = "..." }`). Unset (default): plain
    /// TCP. See [`TlsConfig`].
    pub tls: Option<TlsConfig>,
    /// Serve MQTT over WebSocket (path `/mqtt`, subprotocol `mqtt`) instead of bare MQTT;
    /// over TLS when `tls` is set too (`wss://`). Default false.
    pub websocket: bool,
    /// Take the client certificate's Common Name as the user name (no password is checked
    /// for these clients). Needs `tls.client_ca`. Default false.
    pub use_identity_as_username: bool,
}

impl Default for ListenerConfig {
    fn default() -> Self {
        ListenerConfig {
            bind: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 1883),
            tls: None,
            websocket: false,
            use_identity_as_username: false,
        }
    }
}

/// A listener's TLS files (PEM). All are re-read on SIGHUP; a set that fails to load keeps
/// the previous one.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// The server's certificate chain, leaf first.
    #[serde(deserialize_with = "non_empty_path")]
    pub cert: PathBuf,
    /// The server's private key (PKCS#8, PKCS#1 or SEC1).
    #[serde(deserialize_with = "non_empty_path")]
    pub key: PathBuf,
    /// CA certificates that sign client certificates. Set: every client must present a
    /// certificate signed by one of them. Unset (default): no client certificates.
    #[serde(default, deserialize_with = "opt_non_empty_path")]
    pub client_ca: Option<PathBuf>,
}

/// Who may connect and what they may do (`[auth]`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Whether clients without a user name are accepted. Unset (the default): accepted only
    /// when every listener binds a loopback address. See [`AuthConfig::anonymous_allowed`].
    pub allow_anonymous: Option<bool>,
    /// Password file (`user:argon2-hash` lines, written by `canopy passwd`). Unset (default):
    /// user names are not checked against any password. Relative paths are relative to the
    /// broker's working directory.
    #[serde(deserialize_with = "opt_non_empty_path")]
    pub password_file: Option<PathBuf>,
    /// ACL file (per-user and pattern rules with `%u` and `%c`). Unset (default): every
    /// accepted client may publish and subscribe to everything. Relative paths are relative
    /// to the broker's working directory.
    #[serde(deserialize_with = "opt_non_empty_path")]
    pub acl_file: Option<PathBuf>,
    /// Users whose connections are bridges (metabrokers): with a password file, only their
    /// messages that carry the hop marker are treated as forwarded hierarchy documents
    /// (`$status`, `$presence`, `$cluster` up, `$config` down). A hop marker from anyone
    /// else is a loop marker only. Without a password file every hop-marked message is
    /// treated as forwarded (loopback-only brokers). Default: empty.
    pub bridge_users: Vec<String>,
}

impl AuthConfig {
    /// Whether clients that send no user name are accepted with these `listeners`:
    /// `allow_anonymous` when set, otherwise only if every listener binds a loopback address
    /// (`127.0.0.0/8`, `::1`, or `::ffff:127.x.y.z`).
    pub fn anonymous_allowed(&self, listeners: &[ListenerConfig]) -> bool {
        self.allow_anonymous.unwrap_or_else(|| {
            listeners
                .iter()
                .all(|l| l.bind.ip().to_canonical().is_loopback())
        })
    }
}

/// The whole broker configuration. Every key is optional: a missing key or table takes its
/// default, so an empty file is [`Config::default()`].
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// This broker's name, used in `$SYS`, status topics and by other brokers. 1 to 64
    /// characters, no whitespace, control characters, `/`, `+` or `#`. Default
    /// `"canopy-<port>"` with the first listener's port (`"canopy-1883"`; `"canopy"` for port
    /// 0), so two brokers on one machine differ; see [`default_node_id`].
    #[serde(deserialize_with = "node_id")]
    pub node_id: String,
    /// Directory of the embedded store (created if missing). Default `"./canopy-data"`,
    /// relative to the broker's working directory.
    #[serde(deserialize_with = "non_empty_path")]
    pub data_dir: PathBuf,
    /// When acknowledged messages are safe: `sync` (default), `batched` or `memory`.
    pub durability: Durability,
    /// How often `batched` durability commits to disk; unused by `sync` (which commits as soon
    /// as a batch is ready) and `memory`. Default `"10ms"`; 1ms to 1m.
    #[serde(deserialize_with = "duration::<_, 1, 60_000>")]
    pub commit_interval: Duration,
    /// What to do when the store cannot be read at start-up: `quarantine` (default) or
    /// `refuse`.
    pub on_corrupt_store: OnCorruptStore,
    /// How often `$SYS/broker/...` topics are published; `"0s"` disables them. Default
    /// `"10s"`; 0s to 1day.
    #[serde(deserialize_with = "duration::<_, 0, 86_400_000>")]
    pub sys_interval: Duration,
    /// Address of the Prometheus endpoint (`"ip:port"`, serving `/metrics`). Unset (default):
    /// no endpoint.
    #[serde(deserialize_with = "opt_socket_addr")]
    pub metrics_listen: Option<SocketAddr>,
    /// Log filter as a `tracing` EnvFilter directive (`"info"`, `"canopy_broker=debug"`);
    /// `RUST_LOG` and `--log-level` take precedence. Unset (default): `info`.
    #[serde(deserialize_with = "log_directive")]
    pub log_level: Option<String>,
    /// The MQTT listeners (`[[listener]]`); at least one, binds not repeated (except port 0).
    /// Default: one listener on `127.0.0.1:1883`.
    pub listener: Vec<ListenerConfig>,
    /// Authentication and authorisation (`[auth]`).
    pub auth: AuthConfig,
    /// Limits on clients (`[limits]`).
    pub limits: Limits,
    /// The DNS status listener (`[dns]`).
    pub dns: DnsConfig,
    /// Configuration documents (`[config]`).
    #[serde(rename = "config")]
    pub config_docs: ConfigDocs,
    /// The presence agent (`[presence]`).
    pub presence: PresenceConfig,
    /// Map carousels (`[[carousel]]`); default none.
    pub carousel: Vec<CarouselConfig>,
    /// Metabrokers run inside the broker (`[[bridge]]`, the same schema as a
    /// `canopy-metabroker` file; see docs/metabroker.md); default none.
    pub bridge: Vec<canopy_metabroker::BridgeConfig>,
    /// Scarce resources (`[[resource]]`, SPEC §7; see docs/resources.md); default none.
    pub resource: Vec<ResourceConfig>,
    /// Load distribution across brokers (`[cluster]`, SPEC §6; see docs/cluster.md). Absent
    /// (default): this broker is no cluster node.
    pub cluster: Option<ClusterConfig>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            node_id: default_node_id(&[ListenerConfig::default()]),
            data_dir: PathBuf::from("./canopy-data"),
            durability: Durability::Sync,
            commit_interval: Duration::from_millis(10),
            on_corrupt_store: OnCorruptStore::Quarantine,
            sys_interval: Duration::from_secs(10),
            metrics_listen: None,
            log_level: None,
            listener: vec![ListenerConfig::default()],
            auth: AuthConfig::default(),
            limits: Limits::default(),
            dns: DnsConfig::default(),
            config_docs: ConfigDocs::default(),
            presence: PresenceConfig::default(),
            carousel: Vec::new(),
            bridge: Vec::new(),
            resource: Vec::new(),
            cluster: None,
        }
    }
}

/// The node id of a file that sets none: `canopy-<port>` with the first listener's port, or
/// `canopy` when that port is 0 (picked by the system) or there is no listener.
pub fn default_node_id(listeners: &[ListenerConfig]) -> String {
    match listeners.first().map(|l| l.bind.port()) {
        Some(port) if port != 0 => format!("canopy-{port}"),
        _ => "canopy".to_owned(),
    }
}

/// Whether `text` writes a top-level `node_id` key (the text is known to be valid TOML).
fn text_sets_node_id(text: &str) -> bool {
    toml::de::DeTable::parse(text).is_ok_and(|root| root.get_ref().contains_key("node_id"))
}

impl Config {
    /// Reads and validates a TOML file; errors name the file, line and key.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Config::from_toml(&text, &path.display().to_string())
    }

    /// Parses TOML text; `origin` is the file name used in error messages.
    pub fn from_toml(text: &str, origin: &str) -> Result<Config, ConfigError> {
        let mut config: Config =
            canopy_model::config_error::from_toml(text, origin, Config::check_consistency)?;
        if !text_sets_node_id(text) {
            config.node_id = default_node_id(&config.listener);
        }
        Ok(config)
    }

    /// A config for tests: one listener on 127.0.0.1:0, durability memory, data_dir in a fresh
    /// unique directory under [`std::env::temp_dir()`], sys_interval 1s.
    ///
    /// The directory is only named, not created; nothing removes it afterwards.
    pub fn ephemeral() -> Config {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let name = format!(
            "canopy-test-{}-{}-{nanos}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        Config {
            node_id: "canopy".to_owned(),
            data_dir: std::env::temp_dir().join(name),
            durability: Durability::Memory,
            sys_interval: Duration::from_secs(1),
            listener: vec![ListenerConfig {
                bind: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0),
                ..ListenerConfig::default()
            }],
            ..Config::default()
        }
    }

    /// Every file the configuration names, with its dotted key (`auth.password_file`,
    /// `bridge[0].remote.ca_file`), for a caller that checks they can be read before
    /// starting (`--check-config` does). Nothing here touches the disk.
    pub fn named_files(&self) -> Vec<(String, PathBuf)> {
        let mut files = Vec::new();
        if let Some(p) = &self.auth.password_file {
            files.push(("auth.password_file".to_owned(), p.clone()));
        }
        if let Some(p) = &self.auth.acl_file {
            files.push(("auth.acl_file".to_owned(), p.clone()));
        }
        for (i, b) in self.bridge.iter().enumerate() {
            for (side, ep) in [("local", &b.local), ("remote", &b.remote)] {
                for (k, p) in [
                    ("ca_file", &ep.ca_file),
                    ("cert_file", &ep.cert_file),
                    ("key_file", &ep.key_file),
                ] {
                    if let Some(p) = p {
                        files.push((format!("bridge[{i}].{side}.{k}"), p.clone()));
                    }
                }
            }
        }
        if let Some(c) = &self.cluster {
            for (k, p) in [
                ("join_password_file", &c.join_password_file),
                ("join_ca_file", &c.join_ca_file),
            ] {
                if let Some(p) = p {
                    files.push((format!("cluster.{k}"), p.clone()));
                }
            }
        }
        files
    }

    /// Checks that span several keys (each key's own range is checked while parsing).
    fn check_consistency(&self) -> Result<(), Violation> {
        if self.listener.is_empty() {
            return Err(Violation {
                key: "listener".to_owned(),
                message: "at least one [[listener]] is required".to_owned(),
            });
        }
        for (i, l) in self.listener.iter().enumerate() {
            let has_client_ca = l.tls.as_ref().is_some_and(|t| t.client_ca.is_some());
            if l.use_identity_as_username && !has_client_ca {
                return Err(Violation {
                    key: format!("listener[{i}].use_identity_as_username"),
                    message: "needs tls.client_ca (client certificates) on this listener"
                        .to_owned(),
                });
            }
        }
        for (i, later) in self.listener.iter().enumerate() {
            let earlier = self
                .listener
                .iter()
                .take(i)
                .position(|l| l.bind == later.bind);
            if let Some(j) = earlier.filter(|_| later.bind.port() != 0) {
                return Err(Violation {
                    key: format!("listener[{i}].bind"),
                    message: format!("{} is already bound by listener[{j}]", later.bind),
                });
            }
        }
        if self.dns.good_ip == self.dns.bad_ip {
            return Err(Violation {
                key: "dns.bad_ip".to_owned(),
                message: format!(
                    "must differ from dns.good_ip (both are {})",
                    self.dns.bad_ip
                ),
            });
        }
        for (i, later) in self.carousel.iter().enumerate() {
            let earlier = self
                .carousel
                .iter()
                .take(i)
                .position(|c| c.filter == later.filter);
            if let Some(j) = earlier {
                return Err(Violation {
                    key: format!("carousel[{i}].filter"),
                    message: format!(
                        "{:?} is already the filter of carousel[{j}]",
                        later.filter.as_str()
                    ),
                });
            }
        }
        for (i, later) in self.resource.iter().enumerate() {
            let earlier = self
                .resource
                .iter()
                .take(i)
                .position(|r| r.name == later.name);
            if let Some(j) = earlier {
                return Err(Violation {
                    key: format!("resource[{i}].name"),
                    message: format!("{:?} is already the name of resource[{j}]", later.name),
                });
            }
        }
        if let Some(c) = &self.cluster {
            c.check(&self.listener)
                .map_err(|(key, message)| Violation { key, message })?;
        }
        for (i, b) in self.bridge.iter().enumerate() {
            b.validate().map_err(|(key, message)| Violation {
                key: format!("bridge[{i}].{key}"),
                message,
            })?;
        }
        Ok(())
    }
}
