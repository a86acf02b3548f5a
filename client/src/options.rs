//! Connection settings: validates [`ConnectArgs`] once, then builds the rumqttc adapter's
//! [`adapter::Options`] (and from them rumqttc's `MqttOptions` for 3.1.1 or 5.0).
//!
//! Owns every rule about which connection options fit together. It must never open a
//! connection, and it must never hand rumqttc a value its builders `assert!` on (keep-alive
//! below their minimum, clean session off with an empty client id): those are checked here and
//! returned as [`CliError`] instead of panicking.

use std::time::Duration;

use crate::adapter;
use crate::cli::{ConnectArgs, ProtocolVersion, Qos};
use crate::error::CliError;
use crate::url::host_for_connect;

/// Largest packet MQTT can encode (remaining length 268,435,455 plus a 5-byte fixed header);
/// rumqttc's default of 10 KiB would refuse ordinary files.
pub const MAX_PACKET_SIZE: u32 = 268_435_460;

/// Capacity of rumqttc's request channel for CLI connections.
pub const REQUEST_CAPACITY: usize = 64;

/// The will message registered in CONNECT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Will {
    /// Topic the broker publishes the will to.
    pub topic: String,
    /// Will payload.
    pub payload: Vec<u8>,
    /// Will QoS.
    pub qos: Qos,
    /// Whether the will is retained.
    pub retain: bool,
}

/// Validated, version-independent connection settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectSettings {
    /// Host name or IP literal (no brackets).
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// Protocol version.
    pub version: ProtocolVersion,
    /// Client identifier; may be empty only with 5.0 and a clean start.
    pub client_id: String,
    /// User name and password (password may be empty).
    pub credentials: Option<(String, String)>,
    /// Keep-alive in seconds.
    pub keepalive: u16,
    /// Clean session (3.1.1) / clean start (5.0).
    pub clean: bool,
    /// 5.0 session expiry interval; `None` sends no property (expires at disconnect).
    pub session_expiry: Option<u32>,
    /// Optional will message.
    pub will: Option<Will>,
    /// Time allowed for TCP connect plus CONNACK.
    pub connect_timeout: Duration,
}

impl ConnectSettings {
    /// Validates connection arguments.
    pub fn from_args(args: &ConnectArgs) -> Result<Self, CliError> {
        let v5 = args.protocol_version == ProtocolVersion::V5;
        let (mut host, mut port) = (args.host.clone(), args.port);
        let (mut username, mut password) = (args.username.clone(), args.password.clone());
        if let Some(url) = &args.url {
            host.clone_from(&url.host);
            port = url.port;
            if url.username.is_some() {
                username.clone_from(&url.username);
                password.clone_from(&url.password);
            }
        }
        let credentials = match (username, password) {
            (Some(user), pass) => Some((user, pass.unwrap_or_default())),
            (None, Some(_)) => {
                return Err(CliError::Usage(
                    "a password (-P) needs a user name (-u)".into(),
                ));
            }
            (None, None) => None,
        };
        if args.session_expiry.is_some() && !v5 {
            return Err(CliError::RequiresV5("--session-expiry (-x)"));
        }
        if args.disable_clean_session && args.id.as_deref().is_none_or(str::is_empty) {
            return Err(CliError::Usage(
                "a persistent session (-c) needs a client id (-i)".into(),
            ));
        }
        if v5 && args.keepalive < 5 {
            return Err(CliError::Usage(
                "with MQTT 5.0 the keep-alive (-k) must be at least 5 seconds".into(),
            ));
        }
        if args.connect_timeout == 0 {
            return Err(CliError::Usage(
                "--connect-timeout must be at least 1".into(),
            ));
        }
        // Without -i the session is clean (-c needs -i): send no id, the broker assigns
        // one [MQTT-3.1.3-6], [MQTT-3.1.3-7], and a throw-away session leaves no
        // `$status` document behind.
        let client_id = args.id.clone().unwrap_or_default();
        let session_expiry = match (args.session_expiry, args.disable_clean_session) {
            (Some(secs), _) => Some(secs),
            (None, true) if v5 => Some(u32::MAX),
            (None, _) => None,
        };
        let will = args.will_topic.as_ref().map(|topic| Will {
            topic: topic.clone(),
            payload: args.will_payload.clone().unwrap_or_default().into_bytes(),
            qos: args.will_qos,
            retain: args.will_retain,
        });
        if let Some(will) = &will
            && !rumqttc::valid_topic(&will.topic)
        {
            return Err(CliError::Usage(format!(
                "invalid will topic `{}`",
                will.topic
            )));
        }
        Ok(Self {
            host,
            port,
            version: args.protocol_version,
            client_id,
            credentials,
            keepalive: args.keepalive,
            clean: !args.disable_clean_session,
            session_expiry,
            will,
            connect_timeout: Duration::from_secs(args.connect_timeout),
        })
    }

    /// `host:port` for messages.
    pub fn addr(&self) -> String {
        format!("{}:{}", host_for_connect(&self.host), self.port)
    }

    /// Options for the rumqttc adapter (a request channel of [`REQUEST_CAPACITY`], no
    /// reconnect backoff: the CLI reports the first failure).
    pub fn adapter_options(&self) -> adapter::Options {
        let version = match self.version {
            ProtocolVersion::V311 => adapter::Version::V311,
            ProtocolVersion::V5 => adapter::Version::V5,
        };
        let mut o = adapter::Options::new(
            version,
            self.client_id.clone(),
            host_for_connect(&self.host),
            self.port,
        );
        // from_args guarantees keepalive >= 5 with 5.0, rumqttc's v5 minimum.
        let keep_alive = match self.version {
            ProtocolVersion::V311 => self.keepalive,
            ProtocolVersion::V5 => self.keepalive.max(5),
        };
        o.keep_alive = Some(Duration::from_secs(u64::from(keep_alive)));
        // from_args guarantees a non-empty client id whenever `clean` is false on 3.1.1.
        o.clean = self.clean;
        o.session_expiry = self.session_expiry;
        o.credentials.clone_from(&self.credentials);
        o.will = self.will.as_ref().map(|will| {
            adapter::LastWill::new(
                will.topic.clone(),
                will.payload.clone(),
                v5_qos(will.qos),
                will.retain,
                None,
            )
        });
        o.max_packet_size = Some(MAX_PACKET_SIZE);
        o.connection_timeout = Some(self.connect_timeout);
        o.request_capacity = REQUEST_CAPACITY;
        o
    }

    /// rumqttc options for MQTT 3.1.1.
    pub fn v4_options(&self) -> rumqttc::MqttOptions {
        let mut o = self.adapter_options();
        o.keep_alive = Some(Duration::from_secs(u64::from(self.keepalive)));
        o.v4()
    }

    /// rumqttc options for MQTT 5.0.
    pub fn v5_options(&self) -> rumqttc::v5::MqttOptions {
        let mut o = self.adapter_options();
        o.keep_alive = Some(Duration::from_secs(u64::from(self.keepalive.max(5))));
        o.v5()
    }
}

/// rumqttc v5 QoS for a [`Qos`].
pub fn v5_qos(qos: Qos) -> rumqttc::v5::mqttbytes::QoS {
    match qos {
        Qos::AtMostOnce => rumqttc::v5::mqttbytes::QoS::AtMostOnce,
        Qos::AtLeastOnce => rumqttc::v5::mqttbytes::QoS::AtLeastOnce,
        Qos::ExactlyOnce => rumqttc::v5::mqttbytes::QoS::ExactlyOnce,
    }
}

#[cfg(test)]
#[path = "options_tests.rs"]
mod tests;
