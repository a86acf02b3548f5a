//! Following Server Reference (MQTT 5.0 §4.11): a broker that answers CONNACK or DISCONNECT
//! 0x9C (Use another server) or 0x9D (Server moved) names the server to use instead. The
//! CLI follows such answers at most [`MAX_REDIRECTS`] times and never returns to a server it
//! was already sent away from (a loop).
//!
//! rumqttc reports the reason code but drops the Server Reference, so the reference is read
//! by a [`Probe`]: the same CONNECT (no will) sent once, over TCP or TLS, with Canopy's own
//! codec; a broker that redirects answers it again with the reference, and one that accepts
//! it is left at once with a normal DISCONNECT (the session ends or stays as the real
//! CONNECT would leave it). Used by the CLI ([`next`]) and by the adapter's reconnecting
//! connection (`crate::adapter`, for the metabroker's links). Owns the reference syntax,
//! the probe and the chain rules; must never probe over WebSocket (a `ws://` connection is
//! not redirected: the caller reports the refusal instead).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use canopy_proto::{
    Connect, ConnectProperties, DecodeLimits, Disconnect, Packet, Protocol, ReasonCode,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::cli::ProtocolVersion;
use crate::error::CliError;
use crate::options::ConnectSettings;

/// Most redirections followed for one connection attempt.
pub const MAX_REDIRECTS: usize = 5;

/// Whether a reason code sends the client elsewhere (0x9C, 0x9D).
pub fn is_redirect(code: u8) -> bool {
    matches!(code, 0x9C | 0x9D)
}

/// Reads a Server Reference: the first of a space-separated list, `host`, `host:port` or
/// `[v6]:port`; a missing port is `default_port`. `None` when it is not one.
pub fn parse_reference(reference: &str, default_port: u16) -> Option<(String, u16)> {
    let first = reference.split_whitespace().next()?;
    let (host, port) = if let Some(rest) = first.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().ok()?,
            None if after.is_empty() => default_port,
            None => return None,
        };
        (host, port)
    } else {
        match first.rsplit_once(':') {
            Some((host, port)) if !host.contains(':') => (host, port.parse().ok()?),
            Some(_) => return None,
            None => (first, default_port),
        }
    };
    (!host.is_empty() && port != 0).then(|| (host.to_owned(), port))
}

/// The servers a connection went through, to stop chains and loops.
#[derive(Debug, Default)]
pub struct Chain {
    visited: HashSet<(String, u16)>,
    hops: usize,
}

impl Chain {
    /// Records a redirection from `from` to `to`: an error when the chain is longer than
    /// [`MAX_REDIRECTS`] or `to` was visited already.
    pub fn hop(&mut self, from: (&str, u16), to: (&str, u16)) -> Result<(), CliError> {
        self.visited.insert((from.0.to_owned(), from.1));
        self.hops += 1;
        if self.hops > MAX_REDIRECTS {
            return Err(CliError::Refused(format!(
                "more than {MAX_REDIRECTS} redirections (last to {}:{})",
                to.0, to.1
            )));
        }
        if self.visited.contains(&(to.0.to_owned(), to.1)) {
            return Err(CliError::Refused(format!(
                "redirection loop: sent back to {}:{}",
                to.0, to.1
            )));
        }
        Ok(())
    }
}

/// What a probe sends and where: the client's own CONNECT without its will.
#[derive(Clone)]
pub struct Probe {
    /// Host name or IP literal (no brackets).
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// Client identifier.
    pub client_id: String,
    /// User name and password.
    pub credentials: Option<(String, String)>,
    /// Clean start.
    pub clean: bool,
    /// Keep-alive in seconds.
    pub keep_alive: u16,
    /// Session expiry interval; `None` sends no property.
    pub session_expiry: Option<u32>,
    /// Time allowed for connecting and the CONNACK.
    pub timeout: Duration,
    /// TLS configuration when the client speaks TLS to `host`; `None`: plain TCP.
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

impl std::fmt::Debug for Probe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Probe")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("client_id", &self.client_id)
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

impl Probe {
    /// The probe of a CLI connection; `None` for 3.1.1 (never redirected: it is proxied).
    pub fn of_settings(settings: &ConnectSettings) -> Option<Probe> {
        (settings.version == ProtocolVersion::V5).then(|| Probe {
            host: settings.host.clone(),
            port: settings.port,
            client_id: settings.client_id.clone(),
            credentials: settings.credentials.clone(),
            clean: settings.clean,
            keep_alive: settings.keepalive,
            session_expiry: settings.session_expiry,
            timeout: settings.connect_timeout,
            tls: None,
        })
    }

    /// Asks the broker where this client belongs: `Some(reference)` when it answers CONNACK
    /// 0x9C/0x9D with a Server Reference; `None` when it accepts the client, answers
    /// otherwise or cannot be reached in time.
    pub async fn ask(&self) -> Option<String> {
        tokio::time::timeout(self.timeout, self.ask_now())
            .await
            .ok()
            .flatten()
    }

    async fn ask_now(&self) -> Option<String> {
        let stream = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .ok()?;
        match &self.tls {
            None => self.exchange(stream).await,
            Some(config) => {
                let name = rustls::pki_types::ServerName::try_from(self.host.clone()).ok()?;
                let connector = tokio_rustls::TlsConnector::from(config.clone());
                let stream = connector.connect(name, stream).await.ok()?;
                self.exchange(stream).await
            }
        }
    }

    async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(&self, mut stream: S) -> Option<String> {
        let connect = Connect {
            protocol: Some(Protocol::V5),
            clean_start: self.clean,
            keep_alive: self.keep_alive,
            client_id: self.client_id.clone(),
            will: None,
            username: self.credentials.as_ref().map(|(u, _)| u.clone()),
            password: self
                .credentials
                .as_ref()
                .map(|(_, p)| Bytes::from(p.clone().into_bytes())),
            properties: ConnectProperties {
                session_expiry_interval: self.session_expiry,
                ..Default::default()
            },
        };
        let mut out = BytesMut::new();
        canopy_proto::encode(&Packet::Connect(Box::new(connect)), Protocol::V5, &mut out).ok()?;
        stream.write_all(&out).await.ok()?;
        let limits = DecodeLimits {
            max_packet_size: 1 << 20,
        };
        let mut buf = BytesMut::with_capacity(256);
        loop {
            match canopy_proto::decode(&mut buf, Protocol::V5, &limits) {
                Ok(Some(Packet::ConnAck(ack))) => {
                    if ack.reason == ReasonCode::SUCCESS {
                        let mut bye = BytesMut::new();
                        let d = Packet::Disconnect(Disconnect::default());
                        if canopy_proto::encode(&d, Protocol::V5, &mut bye).is_ok() {
                            let _ = stream.write_all(&bye).await;
                            let _ = stream.shutdown().await;
                        }
                        return None;
                    }
                    let code = ack.reason.0;
                    return ack
                        .properties
                        .server_reference
                        .filter(|_| is_redirect(code));
                }
                Ok(Some(_)) | Err(_) => return None,
                Ok(None) => {}
            }
            if stream.read_buf(&mut buf).await.ok()? == 0 {
                return None;
            }
        }
    }
}

/// Where to go after a redirection of `settings`: its probe's reference, checked against
/// `chain`. `why` names the answer that sent the client away, for the error.
pub async fn next(
    settings: &ConnectSettings,
    chain: &mut Chain,
    why: &str,
) -> Result<ConnectSettings, CliError> {
    let asked = match Probe::of_settings(settings) {
        Some(probe) => probe.ask().await,
        None => None,
    };
    let reference =
        asked.ok_or_else(|| CliError::Refused(format!("{why} (no Server Reference to follow)")))?;
    let (host, port) = parse_reference(&reference, settings.port).ok_or_else(|| {
        CliError::Refused(format!("{why}: unusable Server Reference {reference:?}"))
    })?;
    chain.hop((&settings.host, settings.port), (&host, port))?;
    tracing::info!(from = %settings.addr(), to = %reference, "following Server Reference");
    eprintln!("redirected to {host}:{port} ({why})");
    let mut next = settings.clone();
    next.host = host;
    next.port = port;
    Ok(next)
}

/// A pause before probing after a DISCONNECT, so the broker has ended the old connection.
pub const AFTER_DISCONNECT: Duration = Duration::from_millis(100);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_read_host_port_forms() {
        for (text, want) in [
            ("10.0.0.2:1884", Some(("10.0.0.2", 1884))),
            ("broker.example", Some(("broker.example", 1883))),
            ("[::1]:1885", Some(("::1", 1885))),
            ("[::1]", Some(("::1", 1883))),
            ("a:1 b:2", Some(("a", 1))),
            ("", None),
            ("h:0", None),
            ("h:x", None),
            ("::1:5", None),
            ("[::1", None),
        ] {
            let got = parse_reference(text, 1883);
            assert_eq!(
                got.as_ref().map(|(h, p)| (h.as_str(), *p)),
                want,
                "{text:?}"
            );
        }
    }

    #[test]
    fn chains_stop_at_the_limit_and_at_a_loop() {
        let mut c = Chain::default();
        assert!(c.hop(("a", 1), ("b", 1)).is_ok());
        assert!(c.hop(("b", 1), ("a", 1)).is_err(), "back to a");
        let mut c = Chain::default();
        for i in 0..MAX_REDIRECTS as u16 {
            assert!(c.hop(("h", i), ("h", i + 1)).is_ok());
        }
        assert!(c.hop(("h", 90), ("h", 91)).is_err());
    }

    #[test]
    fn only_0x9c_and_0x9d_redirect() {
        assert!(is_redirect(0x9C) && is_redirect(0x9D));
        assert!(!is_redirect(0x87) && !is_redirect(0));
    }
}
