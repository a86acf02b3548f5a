//! [`Follower`]: a reconnecting 5.0 connection that follows Server Reference (MQTT 5.0
//! §4.11), for the metabroker's links. After CONNACK or DISCONNECT 0x9C/0x9D it asks the
//! broker where the client belongs ([`crate::redirect::Probe`]) and points the event loop
//! there; when a server it was sent to fails, it goes back to the configured one, which
//! knows where the client belongs now (a cluster's assigned node may be dead or drained).
//!
//! Owns the address the event loop connects to and the redirect chain. Must never follow
//! more than [`MAX_REDIRECTS`] redirections in a row, return to a server the chain left, or
//! follow over WebSocket (the probe speaks TCP and TLS only).

use std::sync::Arc;
use std::time::Duration;

use rumqttc::{TlsConfiguration, Transport};

use super::{Options, Version};
use crate::redirect::{AFTER_DISCONNECT, Chain, MAX_REDIRECTS, Probe, parse_reference};

/// What the follower decided after a failure.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Decision {
    /// Connect next to this server, at once (no backoff).
    MoveTo(String, u16),
    /// Connect next to the configured server again, after the backoff.
    Home,
    /// Nothing changes.
    Stay,
}

/// The redirect state of one connection.
pub(super) struct Follower {
    home: Options,
    tls: Option<Arc<rustls::ClientConfig>>,
    at: Option<(String, u16)>,
    chain: Chain,
    skip_pause: bool,
}

impl Follower {
    /// A follower for `options`; `None` when they cannot be redirected (3.1.1, which a
    /// cluster proxies instead, or WebSocket).
    pub(super) fn new(options: &Options) -> Option<Follower> {
        if options.version != Version::V5 {
            return None;
        }
        let tls = match &options.transport {
            None | Some(Transport::Tcp) => None,
            Some(Transport::Tls(TlsConfiguration::Rustls(config))) => Some(config.clone()),
            Some(_) => return None,
        };
        Some(Follower {
            home: options.clone(),
            tls,
            at: None,
            chain: Chain::default(),
            skip_pause: false,
        })
    }

    /// The server connected to next.
    pub(super) fn target(&self) -> (&str, u16) {
        match &self.at {
            Some((host, port)) => (host, *port),
            None => (&self.home.host, self.home.port),
        }
    }

    /// A CONNACK accepted the client: the chain starts over.
    pub(super) fn connected(&mut self) {
        self.chain = Chain::default();
    }

    /// Whether the next reconnect skips the backoff (it follows a redirection), once.
    pub(super) fn take_skip_pause(&mut self) -> bool {
        std::mem::take(&mut self.skip_pause)
    }

    /// After a failure: `redirected` when the broker sent the client away. Returns the
    /// options to connect with next, when they change.
    pub(super) async fn after_failure(&mut self, redirected: bool) -> Option<Options> {
        let decision = if redirected {
            self.follow().await
        } else if self.at.is_some() {
            Decision::Home
        } else {
            Decision::Stay
        };
        let (from_host, from_port) = {
            let (h, p) = self.target();
            (h.to_owned(), p)
        };
        match decision {
            Decision::Stay => None,
            Decision::Home => {
                tracing::info!(from = %format!("{from_host}:{from_port}"),
                    home = %format!("{}:{}", self.home.host, self.home.port),
                    "back to the configured server");
                self.at = None;
                self.chain = Chain::default();
                Some(self.home.clone())
            }
            Decision::MoveTo(host, port) => {
                tracing::info!(from = %format!("{from_host}:{from_port}"),
                    to = %format!("{host}:{port}"), "following Server Reference");
                let mut next = self.home.clone();
                next.host.clone_from(&host);
                next.port = port;
                self.at = Some((host, port));
                self.skip_pause = true;
                Some(next)
            }
        }
    }

    /// Asks the current server where the client belongs and checks the chain.
    async fn follow(&mut self) -> Decision {
        // A DISCONNECT 0x9C arrives just before the broker ends the session's connection.
        tokio::time::sleep(AFTER_DISCONNECT).await;
        let (host, port) = {
            let (h, p) = self.target();
            (h.to_owned(), p)
        };
        let probe = Probe {
            host: host.clone(),
            port,
            client_id: self.home.client_id.clone(),
            credentials: self.home.credentials.clone(),
            clean: self.home.clean,
            keep_alive: self
                .home
                .keep_alive
                .map_or(60, |k| u16::try_from(k.as_secs()).unwrap_or(u16::MAX)),
            session_expiry: self.home.session_expiry,
            timeout: self
                .home
                .connection_timeout
                .unwrap_or(Duration::from_secs(5)),
            tls: self.tls.clone(),
        };
        let Some(reference) = probe.ask().await else {
            tracing::warn!(server = %format!("{host}:{port}"),
                "redirected without a usable Server Reference");
            return self.home_unless_there();
        };
        let Some((to_host, to_port)) = parse_reference(&reference, port) else {
            tracing::warn!(server = %format!("{host}:{port}"), reference = %reference,
                "unusable Server Reference");
            return self.home_unless_there();
        };
        if let Err(e) = self.chain.hop((&host, port), (&to_host, to_port)) {
            tracing::warn!(error = %e, max = MAX_REDIRECTS, "redirection not followed");
            self.chain = Chain::default();
            return self.home_unless_there();
        }
        Decision::MoveTo(to_host, to_port)
    }

    fn home_unless_there(&self) -> Decision {
        if self.at.is_some() {
            Decision::Home
        } else {
            Decision::Stay
        }
    }
}
