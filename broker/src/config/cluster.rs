//! The `[cluster]` table (SPEC §6; see docs/cluster.md): load distribution across brokers.
//!
//! Owns these keys' names, defaults and accepted ranges (each range is the `deserialize_with`
//! attribute beside its field) and the checks that span them ([`ClusterConfig::check`]).
//! Must never run the cluster itself: the cluster service (`crate::services::cluster`), the
//! CONNECT path and the join link (`crate::lib`) read these values.

use std::path::PathBuf;
use std::time::Duration;

use canopy_model::config_error::invalid;
use serde::Deserialize;
use serde::de::Deserializer;

use super::ListenerConfig;
use super::values::{dns_zone_problem, duration, int, opt_non_empty_path};

/// What a node does with a client assigned to another node.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClusterPolicy {
    /// Send it to its node: CONNACK 0x9C with Server Reference (5.0), the proxy (3.1.1),
    /// and DISCONNECT 0x9C when its assignment moves. The default.
    #[default]
    Redirect,
    /// Serve every client here; records are still published and assignments still kept.
    Accept,
}

/// `[cluster]`: this broker is one node of a cluster. Absent (default): no cluster.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// `redirect` (default) or `accept`.
    pub policy: ClusterPolicy,
    /// What clients are told to connect to, `"host:port"` (a name or an address). Unset
    /// (default): the first listener's bound address, which must then not be a wildcard
    /// (`0.0.0.0`, `[::]`).
    #[serde(deserialize_with = "advertise")]
    pub advertise: Option<String>,
    /// How many client connections this node is meant to carry (the weight of its share).
    /// Default `10000`; 1 to 10000000.
    #[serde(deserialize_with = "int::<_, _, 1, 10_000_000>")]
    pub capacity: u64,
    /// How often the node publishes its load record. Default `"2s"`; 100ms to 1h.
    #[serde(deserialize_with = "duration::<_, 100, 3_600_000>")]
    pub load_interval: Duration,
    /// The root's URL, `mqtt://host:port` or `mqtts://host:port`, for a node that is not the
    /// root: an embedded bridge carries `$cluster/#` both ways. Unset (default): this node is
    /// the root.
    #[serde(deserialize_with = "join_url")]
    pub join: Option<String>,
    /// User name of the join link, on the root and on this broker. Unset (default): none.
    pub join_user: Option<String>,
    /// File holding the join link's password (first line). Needs `join_user`. Unset
    /// (default): none.
    #[serde(deserialize_with = "opt_non_empty_path")]
    pub join_password_file: Option<PathBuf>,
    /// `mqtts://` joins only: PEM CA certificates to trust instead of the system roots.
    #[serde(deserialize_with = "opt_non_empty_path")]
    pub join_ca_file: Option<PathBuf>,
    /// Run the rebalancer here (the root): re-pin the clients of down nodes and move the
    /// fewest clients when load per capacity spreads beyond `imbalance`. Default false.
    pub rebalance: bool,
    /// How far above the mean load per capacity a node may go before the rebalancer moves
    /// clients off it. Default `1.2`; 1.01 to 10.
    #[serde(deserialize_with = "ratio")]
    pub imbalance: Ratio,
    /// Most clients moved away per second (assignment changes, draining, rebalancing).
    /// Default `500`; 1 to 100000.
    #[serde(deserialize_with = "int::<_, _, 1, 100_000>")]
    pub move_rate: u32,
    /// The DNS label the name service answers for with the least loaded node
    /// (`<service>.<zone>`). Default `"mqtt"`; one DNS label.
    #[serde(deserialize_with = "service_label")]
    pub service: String,
}

/// A ratio kept in thousandths, so the configuration stays comparable (`Eq`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ratio(pub u32);

impl Ratio {
    /// The ratio as a number.
    pub fn get(self) -> f64 {
        f64::from(self.0) / 1000.0
    }
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            policy: ClusterPolicy::Redirect,
            advertise: None,
            capacity: 10_000,
            load_interval: Duration::from_secs(2),
            join: None,
            join_user: None,
            join_password_file: None,
            join_ca_file: None,
            rebalance: false,
            imbalance: Ratio(1200),
            move_rate: 500,
            service: "mqtt".to_owned(),
        }
    }
}

impl ClusterConfig {
    /// Checks that span keys: (dotted key, message) of the first problem.
    pub(super) fn check(&self, listeners: &[ListenerConfig]) -> Result<(), (String, String)> {
        if self.advertise.is_none()
            && listeners
                .first()
                .is_some_and(|l| l.bind.ip().is_unspecified())
        {
            return Err((
                "cluster.advertise".into(),
                "required when listener[0] binds a wildcard address (clients need an address they can reach)"
                    .into(),
            ));
        }
        if self.join_password_file.is_some() && self.join_user.is_none() {
            return Err((
                "cluster.join_password_file".into(),
                "needs cluster.join_user".into(),
            ));
        }
        let joins = self.join.is_some();
        for (key, set) in [
            ("join_user", self.join_user.is_some()),
            ("join_password_file", self.join_password_file.is_some()),
            ("join_ca_file", self.join_ca_file.is_some()),
        ] {
            if set && !joins {
                return Err((format!("cluster.{key}"), "needs cluster.join".into()));
            }
        }
        if self.join_ca_file.is_some()
            && !self
                .join
                .as_deref()
                .is_some_and(|j| j.starts_with("mqtts://"))
        {
            return Err((
                "cluster.join_ca_file".into(),
                "only for an mqtts:// join".into(),
            ));
        }
        if joins && plain_listener(listeners).is_none() {
            return Err((
                "cluster.join".into(),
                "needs a plain MQTT [[listener]] (no TLS, no WebSocket) for the link's local side"
                    .into(),
            ));
        }
        if self.rebalance && joins {
            return Err((
                "cluster.rebalance".into(),
                "runs on the root only (a node without cluster.join)".into(),
            ));
        }
        Ok(())
    }
}

/// The index of the first plain MQTT listener (what the join link's local side dials).
pub fn plain_listener(listeners: &[ListenerConfig]) -> Option<usize> {
    listeners
        .iter()
        .position(|l| l.tls.is_none() && !l.websocket)
}

/// `"host:port"`: a non-empty host (a name, an IPv4 address or a bracketed IPv6 one) and a
/// port 1 to 65535.
fn advertise<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let text = String::deserialize(d)?;
    let ok = text.rsplit_once(':').is_some_and(|(host, port)| {
        !host.is_empty()
            && !host.contains(['/', ' ', '@'])
            && port.parse::<u16>().is_ok_and(|p| p != 0)
            && (!host.contains(':') || (host.starts_with('[') && host.ends_with(']')))
    });
    if ok {
        Ok(Some(text))
    } else {
        Err(invalid(format_args!(
            "must be \"host:port\" such as \"10.0.0.5:1883\" or \"mqtt-1.example.com:1883\", got {text:?}"
        )))
    }
}

/// `mqtt://host:port` or `mqtts://host:port`.
fn join_url<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let text = String::deserialize(d)?;
    let scheme_ok = text.starts_with("mqtt://") || text.starts_with("mqtts://");
    match canopy_metabroker::transport::parse_url(&text) {
        Ok(_) if scheme_ok => Ok(Some(text)),
        Ok(_) => Err(invalid(format_args!(
            "must be an mqtt:// or mqtts:// URL, got {text:?}"
        ))),
        Err(e) => Err(invalid(e)),
    }
}

/// A ratio 1.01 to 10 (a TOML float or integer), kept in thousandths.
fn ratio<'de, D: Deserializer<'de>>(d: D) -> Result<Ratio, D::Error> {
    let value = f64::deserialize(d)?;
    if (1.01..=10.0).contains(&value) {
        Ok(Ratio((value * 1000.0).round() as u32))
    } else {
        Err(invalid(format_args!(
            "must be between 1.01 and 10, got {value}"
        )))
    }
}

/// One DNS label (letters, digits, `-`, `_`; 1 to 63 characters), lower-cased.
fn service_label<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let text = String::deserialize(d)?;
    match dns_zone_problem(&text) {
        None if !text.contains('.') => Ok(text.to_ascii_lowercase()),
        _ => Err(invalid(format_args!(
            "must be one DNS label (letters, digits, '-' and '_', 1 to 63 characters), got {text:?}"
        ))),
    }
}
