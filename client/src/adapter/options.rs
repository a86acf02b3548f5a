//! [`Options`]: what a connection needs, for either protocol version, and its translation
//! into rumqttc's two `MqttOptions` types.
//!
//! Owns which rumqttc setter each option maps to. Must never hand rumqttc a value its
//! builders `assert!` on: a 3.1.1 session is kept only with a non-empty client id, and
//! unset options keep rumqttc's defaults.

use std::time::Duration;

use rumqttc::Transport;

use super::backoff::Backoff;
use super::connection::{Connection, Loop};
use super::follow::Follower;
use super::{Client, LastWill, Version, v4_will};

/// Connection options common to both versions; 5.0-only ones are ignored on 3.1.1.
#[derive(Clone)]
pub struct Options {
    /// Protocol version.
    pub version: Version,
    /// Client identifier (on 3.1.1 an empty one forces a clean session).
    pub client_id: String,
    /// Host, or the whole `ws://` URL for WebSockets (rumqttc's convention).
    pub host: String,
    /// Port.
    pub port: u16,
    /// Transport; `None` keeps TCP.
    pub transport: Option<Transport>,
    /// Keep-alive; `None` keeps rumqttc's default.
    pub keep_alive: Option<Duration>,
    /// Clean session (3.1.1) / clean start (5.0).
    pub clean: bool,
    /// 5.0 session expiry interval in seconds; `None` sends no property.
    pub session_expiry: Option<u32>,
    /// User name and password.
    pub credentials: Option<(String, String)>,
    /// Will message (its properties are dropped on 3.1.1).
    pub will: Option<LastWill>,
    /// The caller acknowledges incoming publishes itself ([`Client::ack`]).
    pub manual_acks: bool,
    /// Largest packet accepted and sent; `None` keeps rumqttc's default.
    pub max_packet_size: Option<u32>,
    /// Time allowed for TCP connect plus CONNACK; `None` keeps rumqttc's default.
    pub connection_timeout: Option<Duration>,
    /// Capacity of the request channel between [`Client`] and [`Connection`].
    pub request_capacity: usize,
    /// Outgoing QoS 1/2 publishes in flight at most; `None` keeps rumqttc's default.
    pub max_inflight: Option<u16>,
    /// 5.0 receive maximum announced to the broker; `None` sends no property.
    pub receive_maximum: Option<u16>,
    /// Pause between resent pending requests after a reconnect; `None` keeps rumqttc's.
    pub pending_throttle: Option<Duration>,
    /// Reconnect delays `(base, cap)` for [`Connection::pause`]; `None`: no delay.
    pub backoff: Option<(Duration, Duration)>,
    /// Follow Server Reference (5.0 over TCP or TLS; see `follow.rs`): after CONNACK or
    /// DISCONNECT 0x9C/0x9D the next attempt goes to the referenced server.
    pub follow_redirects: bool,
}

impl std::fmt::Debug for Options {
    // rumqttc's `Transport` has no `Debug` (it may hold TLS keys).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options")
            .field("version", &self.version)
            .field("client_id", &self.client_id)
            .field("host", &self.host)
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

impl Options {
    /// TCP options with rumqttc's defaults, a clean session and a request channel of 64.
    pub fn new(
        version: Version,
        client_id: impl Into<String>,
        host: impl Into<String>,
        port: u16,
    ) -> Options {
        Options {
            version,
            client_id: client_id.into(),
            host: host.into(),
            port,
            transport: None,
            keep_alive: None,
            clean: true,
            session_expiry: None,
            credentials: None,
            will: None,
            manual_acks: false,
            max_packet_size: None,
            connection_timeout: None,
            request_capacity: 64,
            max_inflight: None,
            receive_maximum: None,
            pending_throttle: None,
            backoff: None,
            follow_redirects: false,
        }
    }

    /// rumqttc options for MQTT 3.1.1.
    pub fn v4(&self) -> rumqttc::MqttOptions {
        let mut o = rumqttc::MqttOptions::new(self.client_id.clone(), self.host.clone(), self.port);
        if let Some(t) = &self.transport {
            o.set_transport(t.clone());
        }
        if let Some(k) = self.keep_alive {
            o.set_keep_alive(k);
        }
        // rumqttc asserts on a kept session without a client id.
        o.set_clean_session(self.clean || self.client_id.is_empty());
        if let Some((user, pass)) = &self.credentials {
            o.set_credentials(user.clone(), pass.clone());
        }
        if let Some(will) = &self.will {
            o.set_last_will(v4_will(will));
        }
        o.set_manual_acks(self.manual_acks);
        if let Some(max) = self.max_packet_size {
            let max = usize::try_from(max).unwrap_or(usize::MAX);
            o.set_max_packet_size(max, max);
        }
        o.set_request_channel_capacity(self.request_capacity);
        if let Some(n) = self.max_inflight {
            o.set_inflight(n);
        }
        if let Some(d) = self.pending_throttle {
            o.set_pending_throttle(d);
        }
        o
    }

    /// rumqttc options for MQTT 5.0.
    pub fn v5(&self) -> rumqttc::v5::MqttOptions {
        let mut o =
            rumqttc::v5::MqttOptions::new(self.client_id.clone(), self.host.clone(), self.port);
        if let Some(t) = &self.transport {
            o.set_transport(t.clone());
        }
        if let Some(k) = self.keep_alive {
            o.set_keep_alive(k);
        }
        o.set_clean_start(self.clean);
        if self.session_expiry.is_some() {
            o.set_session_expiry_interval(self.session_expiry);
        }
        if let Some((user, pass)) = &self.credentials {
            o.set_credentials(user.clone(), pass.clone());
        }
        if let Some(will) = &self.will {
            o.set_last_will(will.clone());
        }
        o.set_manual_acks(self.manual_acks);
        if self.max_packet_size.is_some() {
            o.set_max_packet_size(self.max_packet_size);
        }
        if let Some(t) = self.connection_timeout {
            o.set_connection_timeout(t.as_secs());
        }
        o.set_request_channel_capacity(self.request_capacity);
        if let Some(n) = self.max_inflight {
            o.set_outgoing_inflight_upper_limit(n);
        }
        if self.receive_maximum.is_some() {
            o.set_receive_maximum(self.receive_maximum);
        }
        if let Some(d) = self.pending_throttle {
            o.set_pending_throttle(d);
        }
        o
    }

    /// The request half and the event loop, not yet connected: the connection is made by
    /// the first [`Connection::poll`], in the task that owns the [`Connection`].
    pub fn connect(&self) -> (Client, Connection) {
        let backoff = self.backoff.map(|(base, cap)| Backoff::new(base, cap));
        let follower = self.follow_redirects.then(|| Follower::new(self)).flatten();
        match self.version {
            Version::V311 => {
                let (client, mut el) = rumqttc::AsyncClient::new(self.v4(), self.request_capacity);
                if let Some(t) = self.connection_timeout {
                    let mut network = el.network_options();
                    network.set_connection_timeout(t.as_secs());
                    el.set_network_options(network);
                }
                (
                    Client::V4(client),
                    Connection::new(Loop::V4(Box::new(el)), backoff, follower),
                )
            }
            Version::V5 => {
                let (client, el) = rumqttc::v5::AsyncClient::new(self.v5(), self.request_capacity);
                (
                    Client::V5(client),
                    Connection::new(Loop::V5(Box::new(el)), backoff, follower),
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapter::QoS;

    #[test]
    fn unset_options_keep_rumqttc_defaults() {
        let o = Options::new(Version::V5, "id", "localhost", 1883);
        let (d4, d5) = (
            rumqttc::MqttOptions::new("id", "localhost", 1883),
            rumqttc::v5::MqttOptions::new("id", "localhost", 1883),
        );
        assert_eq!(o.v4().keep_alive(), d4.keep_alive());
        assert_eq!(o.v4().inflight(), d4.inflight());
        assert_eq!(o.v5().keep_alive(), d5.keep_alive());
        assert_eq!(o.v5().session_expiry_interval(), None);
        assert_eq!(o.v5().max_packet_size(), d5.max_packet_size());
    }

    #[test]
    fn kept_3_1_1_session_needs_a_client_id() {
        let mut o = Options::new(Version::V311, "", "localhost", 1883);
        o.clean = false;
        assert!(o.v4().clean_session());
        o.client_id = "dev".into();
        assert!(!o.v4().clean_session());
    }

    #[test]
    fn set_options_reach_both_versions() {
        let mut o = Options::new(Version::V5, "id", "h", 1);
        o.keep_alive = Some(Duration::from_secs(7));
        o.clean = false;
        o.session_expiry = Some(60);
        o.max_inflight = Some(9);
        o.manual_acks = true;
        o.will = Some(LastWill::new("w", "x", QoS::AtLeastOnce, false, None));
        let (v4, v5) = (o.v4(), o.v5());
        assert_eq!(v4.keep_alive(), Duration::from_secs(7));
        assert_eq!(v5.keep_alive(), Duration::from_secs(7));
        assert!(!v4.clean_session() && !v5.clean_start());
        assert_eq!(v5.session_expiry_interval(), Some(60));
        assert_eq!(v4.inflight(), 9);
        assert!(v4.manual_acks() && v5.manual_acks());
        assert_eq!(v4.last_will().map(|w| w.topic), Some("w".to_owned()));
        assert!(v5.last_will().is_some());
    }
}
