//! What a listener puts between TCP and MQTT: TLS, WebSocket, both or neither.
//!
//! Owns the per-listener [`Layers`] (built from `[[listener]]` at start-up, TLS reloadable)
//! and the task that runs a new connection's TLS and WebSocket handshakes, bounded by the
//! CONNECT timeout, before handing the stream to the connection task. Must never read MQTT
//! bytes, and never let a client on a `use_identity_as_username` listener in without a
//! certificate Common Name.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpStream;

use super::admission::Admit;
use super::tls::{Tls, TlsError};
use super::transport::Polled;
use super::{ServerCtx, connection, ws};
use crate::config::{Limits, ListenerConfig};
use crate::metrics::Metrics;

/// One listener's layers.
#[derive(Debug)]
pub struct Layers {
    /// TLS acceptor, when `tls` is set.
    pub tls: Option<Arc<Tls>>,
    /// WebSocket upgrade on `/mqtt` (inside TLS when both are set).
    pub websocket: bool,
    /// The certificate's CN is the user name.
    pub identity_as_user: bool,
    /// Largest WebSocket message accepted.
    pub max_ws_message: usize,
}

impl Layers {
    /// Builds the layers of `listener`, loading its TLS files.
    pub fn load(listener: &ListenerConfig, limits: &Limits) -> Result<Layers, TlsError> {
        let tls = listener.tls.as_ref().map(Tls::load).transpose()?;
        // A message may carry more than one packet; allow two full-size packets.
        let max_packet = usize::try_from(limits.max_packet_size).unwrap_or(usize::MAX);
        Ok(Layers {
            tls: tls.map(Arc::new),
            websocket: listener.websocket,
            identity_as_user: listener.use_identity_as_username,
            max_ws_message: max_packet.saturating_mul(2).max(64 * 1024),
        })
    }

    /// Plain TCP: nothing between the socket and MQTT.
    pub fn is_plain(&self) -> bool {
        self.tls.is_none() && !self.websocket
    }
}

/// Spawns the task that runs the handshakes of `layers` over `tcp` and then serves MQTT.
pub fn spawn(
    ctx: &Arc<ServerCtx>,
    tcp: TcpStream,
    peer: SocketAddr,
    layers: Arc<Layers>,
    admit: Admit,
) {
    ctx.spawn(|ctx| async move {
        serve(tcp, peer, &ctx, &layers, admit).await;
    });
}

async fn serve(tcp: TcpStream, peer: SocketAddr, ctx: &ServerCtx, layers: &Layers, admit: Admit) {
    let connect_timeout = ctx.config.limits.connect_timeout;
    let refused = |why: &str, error: &dyn std::fmt::Display| {
        tracing::info!(%peer, %error, "{why}");
        Metrics::add(&ctx.metrics.connections_refused, 1);
    };
    let timed_out = |why: &str| {
        Metrics::add(&ctx.metrics.connect_timeouts, 1);
        refused(why, &"timed out (connect_timeout)");
    };
    let Some(tls) = &layers.tls else {
        match tokio::time::timeout(connect_timeout, ws::accept(tcp, layers.max_ws_message)).await {
            Ok(Ok(w)) => connection::serve(Polled::new(w), peer, ctx, admit).await,
            Ok(Err(e)) => refused("WebSocket upgrade failed", &e),
            Err(_) => timed_out("WebSocket upgrade failed"),
        }
        return;
    };
    let (stream, cn) = match tokio::time::timeout(connect_timeout, tls.accept(tcp)).await {
        Ok(Ok(x)) => x,
        Ok(Err(e)) => return refused("TLS handshake failed", &e),
        Err(_) => return timed_out("TLS handshake failed"),
    };
    let identity = if layers.identity_as_user {
        match cn {
            Some(cn) => Some(cn),
            None => return refused("TLS client refused", &"certificate without a Common Name"),
        }
    } else {
        None
    };
    if !layers.websocket {
        return connection::serve(Polled::with_identity(stream, identity), peer, ctx, admit).await;
    }
    match tokio::time::timeout(connect_timeout, ws::accept(stream, layers.max_ws_message)).await {
        Ok(Ok(w)) => connection::serve(Polled::with_identity(w, identity), peer, ctx, admit).await,
        Ok(Err(e)) => refused("WebSocket upgrade failed", &e),
        Err(_) => timed_out("WebSocket upgrade failed"),
    }
}
