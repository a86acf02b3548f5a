//! The transparent proxy for clients that cannot be redirected (3.1/3.1.1 under
//! `[cluster] policy = "redirect"`, SPEC §6): the node a client reached opens a TCP
//! connection to the client's assigned node, sends the client's CONNECT there as it was
//! received (preceded by a PROXY protocol v1 line naming the client), and splices bytes both
//! ways until either side closes.
//!
//! Owns the upstream connection, the splice, its timeouts and its counters
//! (`proxied_connections`, `proxied_open`, `proxied_bytes`, `proxy_unreachable`), the
//! PROXY line in both directions ([`preamble`], [`take_preamble`]) and the framing helper
//! that cuts the raw CONNECT out of a read buffer ([`frame_len`]). It never decodes the
//! spliced bytes, never talks to the router and never decides where a client belongs:
//! keep-alive, will and session are the assigned node's, and the decision is the cluster
//! service's.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use canopy_proto::{ConnAck, ConnAckProperties, Packet, Protocol, ReasonCode};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::watch;

use super::transport::Transport;
use crate::metrics::Metrics;

/// Time allowed to open the connection to the assigned node.
pub const UPSTREAM_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Longest PROXY protocol v1 line, `\r\n` included (the specification's limit).
const PREAMBLE_MAX: usize = 107;

/// What starts a PROXY protocol v1 line.
const PREAMBLE_START: &[u8] = b"PROXY ";

/// How a CONNECT arrived: what the decision to proxy it, and the proxy, need.
#[derive(Debug, Default)]
pub struct Arrival {
    /// The CONNECT packet exactly as received.
    pub raw: Bytes,
    /// `Some` when another node proxied this connection (it is then served here, never
    /// proxied again), with the client's address when the PROXY line named it.
    pub via_proxy: Option<Option<SocketAddr>>,
}

/// Where a proxied client goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    /// The assigned node's id (for the log).
    pub node: String,
    /// Its advertised MQTT address, `host:port`.
    pub addr: String,
}

/// Why a proxied connection could not be served.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// The assigned node did not accept the connection in time (the client was answered
    /// CONNACK "server unavailable").
    #[error("node {node} at {addr} is unreachable: {reason}")]
    Unreachable {
        /// The node's id.
        node: String,
        /// The address tried.
        addr: String,
        /// What failed.
        reason: String,
    },
    /// The splice failed on one side after it started.
    #[error("splice failed: {0}")]
    Splice(#[from] io::Error),
}

/// How a splice ended, with the bytes it carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spliced {
    /// Bytes from the client to the node, the CONNECT included.
    pub up: u64,
    /// Bytes from the node to the client.
    pub down: u64,
    /// Which side closed first.
    pub closed_by: ClosedBy,
}

/// The side whose end finished a splice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClosedBy {
    /// The client closed (or its stream failed).
    Client,
    /// The assigned node closed (or its stream failed).
    Node,
    /// This broker is stopping.
    Shutdown,
}

/// What a read buffer starts with, as far as the PROXY line is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Preamble {
    /// No PROXY line: MQTT from the first byte.
    Absent,
    /// Nothing yet, or the start of a PROXY line not yet complete: read more.
    Incomplete,
    /// A complete line, removed from the buffer: the connection was proxied by another
    /// node for the client at this address (`None` for `PROXY UNKNOWN` or an address that
    /// does not parse).
    Proxied(Option<SocketAddr>),
    /// Starts like a PROXY line but is not one (too long, no `\r\n`, not text).
    Invalid,
}

/// The PROXY protocol v1 line that tells the assigned node who the client is and that the
/// connection is already proxied (so it is served there and never proxied again).
pub fn preamble(client: SocketAddr, node: SocketAddr) -> String {
    match (client, node) {
        (SocketAddr::V4(c), SocketAddr::V4(n)) => format!(
            "PROXY TCP4 {} {} {} {}\r\n",
            c.ip(),
            n.ip(),
            c.port(),
            n.port()
        ),
        (SocketAddr::V6(c), SocketAddr::V6(n)) => format!(
            "PROXY TCP6 {} {} {} {}\r\n",
            c.ip(),
            n.ip(),
            c.port(),
            n.port()
        ),
        _ => "PROXY UNKNOWN\r\n".to_owned(),
    }
}

/// Removes a PROXY protocol v1 line from the front of `buf`, if there is one. A CONNECT
/// starts with 0x10, so a buffer starting with `P` is never MQTT.
pub fn take_preamble(buf: &mut BytesMut) -> Preamble {
    let head = buf
        .get(..PREAMBLE_START.len().min(buf.len()))
        .unwrap_or_default();
    if head.is_empty() {
        return Preamble::Incomplete;
    }
    if !PREAMBLE_START.starts_with(head) {
        return Preamble::Absent;
    }
    let window = buf.get(..PREAMBLE_MAX.min(buf.len())).unwrap_or_default();
    let Some(end) = window.windows(2).position(|w| w == b"\r\n") else {
        return if buf.len() >= PREAMBLE_MAX {
            Preamble::Invalid
        } else {
            Preamble::Incomplete
        };
    };
    let line = buf.split_to(end + 2);
    let Ok(text) = std::str::from_utf8(line.get(..end).unwrap_or_default()) else {
        return Preamble::Invalid;
    };
    let fields: Vec<&str> = text.split(' ').collect();
    match fields.as_slice() {
        ["PROXY", "TCP4" | "TCP6", src, _dst, sport, _dport] => {
            let client = src
                .parse()
                .ok()
                .zip(sport.parse().ok())
                .map(|(ip, port)| SocketAddr::new(ip, port));
            Preamble::Proxied(client)
        }
        ["PROXY", "UNKNOWN", ..] => Preamble::Proxied(None),
        _ => Preamble::Invalid,
    }
}

/// The length of the first MQTT packet in `buf` (fixed header included) when all of it is
/// there; `None` while it is incomplete or the length field is malformed.
pub fn frame_len(buf: &[u8]) -> Option<usize> {
    let mut remaining = 0usize;
    for i in 0..4 {
        let b = *buf.get(1 + i)?;
        remaining |= usize::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            let total = 1 + (i + 1) + remaining;
            return (buf.len() >= total).then_some(total);
        }
    }
    None
}

/// Proxies one client to `upstream`: connects (within [`UPSTREAM_CONNECT_TIMEOUT`]), sends
/// the PROXY line and `head` (the client's CONNECT as received, and whatever followed it),
/// then splices bytes both ways until one side closes, and closes both. When the node cannot
/// be reached the client gets CONNACK "server unavailable" (return code 3 in 3.1.1) and the
/// error is returned.
pub async fn splice<S: Transport>(
    client: &mut S,
    peer: SocketAddr,
    protocol: Protocol,
    head: Bytes,
    upstream: &Upstream,
    metrics: &Metrics,
    mut shutdown: watch::Receiver<bool>,
) -> Result<Spliced, ProxyError> {
    let connected = tokio::time::timeout(
        UPSTREAM_CONNECT_TIMEOUT,
        TcpStream::connect(upstream.addr.as_str()),
    )
    .await;
    let mut node = match connected {
        Ok(Ok(node)) => node,
        failed => {
            let reason = match failed {
                Ok(Err(e)) => e.to_string(),
                _ => format!("no connection within {UPSTREAM_CONNECT_TIMEOUT:?}"),
            };
            Metrics::add(&metrics.proxy_unreachable, 1);
            tracing::warn!(node = %upstream.node, addr = %upstream.addr, %reason,
                "proxy: assigned node unreachable; answering server unavailable");
            unavailable(client, protocol).await;
            return Err(ProxyError::Unreachable {
                node: upstream.node.clone(),
                addr: upstream.addr.clone(),
                reason,
            });
        }
    };
    let _ = node.set_nodelay(true);
    let line = match node.peer_addr() {
        Ok(node_addr) => preamble(peer, node_addr),
        Err(_) => "PROXY UNKNOWN\r\n".to_owned(),
    };
    Metrics::add(&metrics.proxied_connections, 1);
    metrics.proxied_open.fetch_add(1, Ordering::Relaxed);
    tracing::info!(node = %upstream.node, addr = %upstream.addr, "proxying to the assigned node");
    let result = pump(client, &mut node, &line, head, metrics, &mut shutdown).await;
    metrics.proxied_open.fetch_sub(1, Ordering::Relaxed);
    let _ = node.shutdown().await;
    let _ = client.shutdown().await;
    match &result {
        Ok(s) => tracing::info!(node = %upstream.node, up = s.up, down = s.down,
            closed_by = ?s.closed_by, "proxied connection closed"),
        Err(e) => tracing::info!(node = %upstream.node, error = %e, "proxied connection failed"),
    }
    result
}

/// Serves a client the cluster sends to `node` ([`crate::services::cluster`]'s `Proxy`
/// admission): the CONNECT as received and whatever followed it in `rest` go first, then
/// the splice, until either side closes or the broker stops. The outcome is logged and
/// counted here.
pub async fn serve<S: Transport>(
    stream: &mut S,
    peer: SocketAddr,
    protocol: Protocol,
    arrival: Arrival,
    rest: BytesMut,
    node: &canopy_model::cluster::NodeRecord,
    ctx: &super::ServerCtx,
) {
    let mut head = BytesMut::with_capacity(arrival.raw.len() + rest.len());
    head.extend_from_slice(&arrival.raw);
    head.extend_from_slice(&rest);
    let upstream = Upstream {
        node: node.node.clone(),
        addr: node.advertise.clone(),
    };
    let shutdown = ctx.shutdown.clone();
    let _ = splice(
        stream,
        peer,
        protocol,
        head.freeze(),
        &upstream,
        &ctx.metrics,
        shutdown,
    )
    .await;
}

/// Sends the head, then copies both ways until the first side ends.
async fn pump<S: Transport>(
    client: &mut S,
    node: &mut TcpStream,
    line: &str,
    head: Bytes,
    metrics: &Metrics,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<Spliced, ProxyError> {
    let up = AtomicU64::new(0);
    let down = AtomicU64::new(0);
    node.write_all(line.as_bytes()).await?;
    node.write_all(&head).await?;
    let head_len = head.len() as u64;
    up.fetch_add(head_len, Ordering::Relaxed);
    Metrics::add(&metrics.proxied_bytes, head_len);
    let (mut node_r, node_w) = node.split();
    let (mut client_r, client_w) = tokio::io::split(TransportIo::new(client));
    let mut to_node = Counted {
        inner: node_w,
        mine: &up,
        total: &metrics.proxied_bytes,
    };
    let mut to_client = Counted {
        inner: client_w,
        mine: &down,
        total: &metrics.proxied_bytes,
    };
    let closed_by = tokio::select! {
        r = tokio::io::copy(&mut client_r, &mut to_node) => {
            r?;
            ClosedBy::Client
        }
        r = tokio::io::copy(&mut node_r, &mut to_client) => {
            r?;
            ClosedBy::Node
        }
        _ = shutdown.wait_for(|stop| *stop) => ClosedBy::Shutdown,
    };
    let _ = to_client.inner.flush().await;
    Ok(Spliced {
        up: up.load(Ordering::Relaxed),
        down: down.load(Ordering::Relaxed),
        closed_by,
    })
}

/// Answers the client CONNACK "server unavailable" and closes.
async fn unavailable<S: Transport>(client: &mut S, protocol: Protocol) {
    let ack = ConnAck {
        session_present: false,
        reason: ReasonCode::SERVER_UNAVAILABLE,
        properties: ConnAckProperties::default(),
    };
    let mut buf = BytesMut::new();
    if canopy_proto::encode(&Packet::ConnAck(ack), protocol, &mut buf).is_ok() {
        let _ = client.write_all(&buf).await;
        let _ = client.flush().await;
    }
    let _ = client.shutdown().await;
}

/// A writer that counts what it writes, into its own total and a broker-wide one.
struct Counted<'a, W> {
    inner: W,
    mine: &'a AtomicU64,
    total: &'a AtomicU64,
}

impl<W: AsyncWrite + Unpin> AsyncWrite for Counted<'_, W> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let n = ready!(Pin::new(&mut self.inner).poll_write(cx, buf))?;
        self.mine.fetch_add(n as u64, Ordering::Relaxed);
        Metrics::add(self.total, n as u64);
        Poll::Ready(Ok(n))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Any [`Transport`] as `AsyncRead + AsyncWrite`, for the copy loops.
struct TransportIo<'a, S> {
    inner: &'a mut S,
    /// Bytes read but not yet handed out (a read may bring more than the caller's room).
    pending: BytesMut,
}

impl<'a, S> TransportIo<'a, S> {
    fn new(inner: &'a mut S) -> Self {
        TransportIo {
            inner,
            pending: BytesMut::new(),
        }
    }
}

impl<S: Transport> AsyncRead for TransportIo<'_, S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            if !this.pending.is_empty() {
                let n = this.pending.len().min(buf.remaining());
                buf.put_slice(&this.pending.split_to(n));
                return Poll::Ready(Ok(()));
            }
            ready!(this.inner.poll_readable(cx))?;
            this.pending.reserve(buf.remaining().max(1));
            match this.inner.try_read_buf(&mut this.pending) {
                Ok(0) => return Poll::Ready(Ok(())),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl<S: Transport> AsyncWrite for TransportIo<'_, S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
#[path = "proxy_tests.rs"]
mod tests;
