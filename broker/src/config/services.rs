//! The tables of the services modelled as topics (SPEC §5): `[dns]`, `[config]` and
//! `[[carousel]]`.
//!
//! Owns these keys' names, defaults and accepted ranges (each range is the `deserialize_with`
//! attribute beside its field). Must never run a service itself: the DNS listener, the router's
//! `$config/...` access rule and the carousel read these values.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use canopy_proto::TopicFilter;
use serde::Deserialize;

use super::values::{
    UNBOUNDED, admin_ids, dns_zone, duration, ipv4, opt_socket_addr, size, topic_filter,
};

/// The DNS status listener (`[dns]`): answers `<client-id>.status.<zone>` over UDP.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DnsConfig {
    /// UDP address to answer DNS queries on (`"ip:port"`; port 0 picks a free port). Unset
    /// (default): no DNS listener.
    #[serde(deserialize_with = "opt_socket_addr")]
    pub listen: Option<SocketAddr>,
    /// The zone the listener is authoritative for, stored lower-case without a trailing dot.
    /// Default `"canopy.local"`; 1 to 127 labels of letters, digits, `-` and `_`, each 1 to 63
    /// characters, at most 200 characters in all (room for the client label).
    #[serde(deserialize_with = "dns_zone")]
    pub zone: String,
    /// The address an A query gets for a client that is online. Default `127.0.0.1`.
    #[serde(deserialize_with = "ipv4")]
    pub good_ip: Ipv4Addr,
    /// The address an A query gets for a client that is offline or was never seen. Default
    /// `127.0.0.2`.
    #[serde(deserialize_with = "ipv4")]
    pub bad_ip: Ipv4Addr,
    /// Time to live of every answer, in whole seconds (a fraction is dropped). Default `"0s"`
    /// (resolvers must not cache a status); 0s to 1day.
    #[serde(deserialize_with = "duration::<_, 0, 86_400_000>")]
    pub ttl: Duration,
}

impl Default for DnsConfig {
    fn default() -> Self {
        DnsConfig {
            listen: None,
            zone: "canopy.local".to_owned(),
            good_ip: Ipv4Addr::new(127, 0, 0, 1),
            bad_ip: Ipv4Addr::new(127, 0, 0, 2),
            ttl: Duration::ZERO,
        }
    }
}

/// The broker's presence agent (`[presence]`, SPEC §5; see docs/presence.md).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PresenceConfig {
    /// Whether the broker aggregates `$presence/<user>/devices/<device>` into
    /// `$presence/<user>` and gates watchers. Default `true`.
    pub enabled: bool,
    /// How long a device whose connection ended stays as it was before it turns offline
    /// (a device that reconnects within it does not flicker). Default `"5s"`; 0s to 1day.
    #[serde(deserialize_with = "duration::<_, 0, 86_400_000>")]
    pub offline_grace: Duration,
}

impl Default for PresenceConfig {
    fn default() -> Self {
        PresenceConfig {
            enabled: true,
            offline_grace: Duration::from_secs(5),
        }
    }
}

/// Configuration documents (`[config]`): who may write `$config/...`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConfigDocs {
    /// Who may write `$config/<client-id>` and `$config/default` and read every document:
    /// user names proved by a password (or a client certificate); on a broker without a
    /// `password_file`, where no password proves a user name, client ids. Default: none, so
    /// nobody can write configuration documents. Each entry must be non-empty; no repeats.
    #[serde(deserialize_with = "admin_ids")]
    pub admins: Vec<String>,
}

/// One map carousel (`[[carousel]]`): periodically re-sends the retained messages under
/// `filter` to their current subscribers.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CarouselConfig {
    /// Which retained messages to re-send; a valid topic filter, not a shared subscription
    /// (`$share/...`). Required.
    #[serde(deserialize_with = "topic_filter")]
    pub filter: TopicFilter,
    /// How long one round over every retained message under `filter` takes; the messages are
    /// spread evenly over it. Default `"30s"`; 100ms to 1day.
    #[serde(
        default = "default_carousel_period",
        deserialize_with = "duration::<_, 100, 86_400_000>"
    )]
    pub period: Duration,
    /// Most payload bytes per second this carousel re-sends, summed over all its subscribers; a
    /// round that would exceed it takes longer than `period`. Default `0`, meaning unlimited; a
    /// size or a number of bytes.
    #[serde(default, deserialize_with = "size::<_, _, 0, UNBOUNDED>")]
    pub max_bytes_per_sec: u64,
}

/// The default `[[carousel]] period`.
pub(super) const DEFAULT_CAROUSEL_PERIOD: Duration = Duration::from_secs(30);

fn default_carousel_period() -> Duration {
    DEFAULT_CAROUSEL_PERIOD
}
