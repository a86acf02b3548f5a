//! The `[dashboard]` table: where the built-in web dashboard listens.
//!
//! Owns this key's name, default and the checks that involve it (its address against the
//! `[[listener]]` binds, and its part in the anonymous-access default). Must never serve
//! anything itself: `server::dashboard` serves the page and MQTT over WebSocket on it.

use std::net::SocketAddr;

use serde::Deserialize;

use super::error::Violation;
use super::values::opt_socket_addr;
use super::{Config, ListenerConfig};

/// The web dashboard (`[dashboard]`, see docs/dashboard.md): one HTTP port serving the page
/// at `/` and MQTT over WebSocket at `/mqtt`, through which the page logs in like any client.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DashboardConfig {
    /// TCP address of the dashboard (`"ip:port"`; port 0 picks a free port). Unset (default):
    /// no dashboard.
    #[serde(deserialize_with = "opt_socket_addr")]
    pub listen: Option<SocketAddr>,
}

impl DashboardConfig {
    /// The dashboard's MQTT-over-WebSocket endpoint seen as a listener, for the rules that
    /// look at every address MQTT is served on (anonymous access by default only when all
    /// of them are loopback).
    pub fn as_listener(&self) -> Option<ListenerConfig> {
        self.listen.map(|bind| ListenerConfig {
            bind,
            websocket: true,
            ..ListenerConfig::default()
        })
    }
}

impl Config {
    /// Whether clients without a user name are accepted: [`super::AuthConfig::anonymous_allowed`]
    /// over every `[[listener]]` and the dashboard's endpoint, which serves MQTT too.
    pub fn anonymous_allowed(&self) -> bool {
        let mut all = self.listener.clone();
        all.extend(self.dashboard.as_listener());
        self.auth.anonymous_allowed(&all)
    }
}

/// `[dashboard] listen` must not be the bind of a `[[listener]]` (port 0 excepted).
pub(super) fn check(config: &Config) -> Result<(), Violation> {
    let Some(listen) = config.dashboard.listen.filter(|a| a.port() != 0) else {
        return Ok(());
    };
    match config.listener.iter().position(|l| l.bind == listen) {
        Some(i) => Err(Violation {
            key: "dashboard.listen".to_owned(),
            message: format!("{listen} is already bound by listener[{i}]"),
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{addr, fail, parse};

    #[test]
    fn absent_dashboard_table_means_no_dashboard() {
        assert_eq!(parse("").dashboard.listen, None);
        assert_eq!(parse("[dashboard]\n").dashboard.listen, None);
    }

    #[test]
    fn dashboard_listen_is_read() {
        let config = parse("[dashboard]\nlisten = \"127.0.0.1:8080\"\n");
        assert_eq!(config.dashboard.listen, Some(addr("127.0.0.1:8080")));
    }

    #[test]
    fn dashboard_rejects_unknown_keys_and_bad_addresses() {
        let err = fail("[dashboard]\nport = 8080\n").to_string();
        assert!(err.contains("dashboard.port"), "{err}");
        let err = fail("[dashboard]\nlisten = \"localhost:8080\"\n").to_string();
        assert!(
            err.contains("canopy.toml:2:") && err.contains("dashboard.listen"),
            "{err}"
        );
    }

    #[test]
    fn dashboard_cannot_share_a_listener_bind() {
        let err = fail(
            "[[listener]]\nbind = \"127.0.0.1:1883\"\n[dashboard]\nlisten = \"127.0.0.1:1883\"\n",
        )
        .to_string();
        assert!(err.contains("dashboard.listen"), "{err}");
        assert!(err.contains("already bound by listener[0]"), "{err}");
    }

    #[test]
    fn a_public_dashboard_turns_the_anonymous_default_off() {
        let loopback = parse("[dashboard]\nlisten = \"127.0.0.1:8080\"\n");
        assert!(loopback.anonymous_allowed());
        let public = parse("[dashboard]\nlisten = \"0.0.0.0:8080\"\n");
        assert!(!public.anonymous_allowed());
        let explicit =
            parse("[auth]\nallow_anonymous = true\n[dashboard]\nlisten = \"0.0.0.0:8080\"\n");
        assert!(explicit.anonymous_allowed());
    }
}
