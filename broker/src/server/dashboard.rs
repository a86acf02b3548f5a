//! The dashboard's port (`[dashboard] listen`): a minimal HTTP/1.1 server for the page's
//! assets, compiled into the binary, and MQTT over WebSocket at `/mqtt` on the same port.
//!
//! Owns the accept loop of that port and the split of each connection by its request head:
//! a WebSocket upgrade on `/mqtt` goes to the broker's own WebSocket transport (`ws::accept`)
//! and then to the ordinary connection task — the same CONNECT handshake, authentication,
//! ACLs and limits as a `[[listener]]` with `websocket = true`; any other request gets an
//! asset, 404 or 405 and the connection closes. Must never read MQTT bytes, never answer
//! with anything but the built-in assets (no file system), and never let a page from
//! another origin open the WebSocket (cross-site WebSocket hijacking).

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

use super::layers::Layers;
use super::transport::Polled;
use super::{ServerCtx, connection, ws};
use crate::config::Config;
use crate::metrics::Metrics;

/// Largest request head read (request line and headers).
const MAX_HEAD: usize = 8 * 1024;

/// One built-in asset: path, content type, body.
type Asset = (&'static str, &'static str, &'static [u8]);

/// The page and everything it loads; nothing else is served.
const ASSETS: [Asset; 4] = [
    (
        "/",
        "text/html; charset=utf-8",
        include_bytes!("../../dashboard/index.html"),
    ),
    (
        "/app.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../dashboard/app.js"),
    ),
    (
        "/mqtt.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../dashboard/mqtt.js"),
    ),
    (
        "/style.css",
        "text/css; charset=utf-8",
        include_bytes!("../../dashboard/style.css"),
    ),
];

/// Headers on every asset: no caching across broker versions, no framing by other sites,
/// scripts and connections only from this origin.
const SECURITY_HEADERS: &str = "Cache-Control: no-cache\r\n\
X-Content-Type-Options: nosniff\r\n\
Referrer-Policy: no-referrer\r\n\
Content-Security-Policy: default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; frame-ancestors 'none'\r\n";

/// What a request head asks for.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Route {
    /// A WebSocket upgrade on [`ws::PATH`] from this origin (or from no browser at all).
    Mqtt,
    /// An asset (`HEAD` sends the headers only).
    Asset {
        /// Index into [`ASSETS`].
        index: usize,
        /// Whether the body is left out.
        head_only: bool,
    },
    /// An HTTP status with a one-line text body.
    Status(u16, &'static str),
}

/// Decides what the request head `head` (up to and including the blank line) asks for.
pub(crate) fn route(head: &str) -> Route {
    let mut lines = head.split("\r\n");
    let mut request = lines.next().unwrap_or_default().split(' ');
    let (method, target) = (request.next().unwrap_or_default(), request.next());
    let Some(target) = target else {
        return Route::Status(400, "bad request");
    };
    let path = target.split(['?', '#']).next().unwrap_or_default();
    let mut upgrade = false;
    let mut origin = None;
    let mut host = None;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match name.trim().to_ascii_lowercase().as_str() {
            "upgrade" => upgrade = value.eq_ignore_ascii_case("websocket"),
            "origin" => origin = Some(value),
            "host" => host = Some(value),
            _ => {}
        }
    }
    if path == ws::PATH {
        if !upgrade || method != "GET" {
            return Route::Status(426, "MQTT over WebSocket only (subprotocol mqtt)");
        }
        // A browser names the page that opens the socket; only our own page may.
        return match origin {
            Some(o) if !same_origin(o, host) => {
                Route::Status(403, "cross-origin WebSocket refused")
            }
            _ => Route::Mqtt,
        };
    }
    let path = if path == "/index.html" { "/" } else { path };
    match ASSETS.iter().position(|(p, _, _)| *p == path) {
        Some(index) if method == "GET" || method == "HEAD" => Route::Asset {
            index,
            head_only: method == "HEAD",
        },
        Some(_) => Route::Status(405, "method not allowed"),
        None => Route::Status(404, "not found"),
    }
}

/// Whether `origin` (`http://host:port`) names the `Host` the request was sent to.
fn same_origin(origin: &str, host: Option<&str>) -> bool {
    let bare = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"));
    matches!((bare, host), (Some(o), Some(h)) if o.eq_ignore_ascii_case(h))
}

/// Binds `[dashboard] listen` when it is set: the listener, its bound address and the
/// largest WebSocket message accepted (as a `[[listener]]` with `websocket = true` would).
pub async fn bind(
    config: &Config,
) -> Result<Option<(TcpListener, SocketAddr, usize)>, crate::BrokerError> {
    let Some(as_listener) = config.dashboard.as_listener() else {
        return Ok(None);
    };
    let fail = |reason| crate::BrokerError::Bind {
        addr: as_listener.bind,
        key: "dashboard.listen".to_owned(),
        reason,
    };
    let listener = TcpListener::bind(as_listener.bind).await.map_err(fail)?;
    let addr = listener.local_addr().map_err(fail)?;
    let max_ws = Layers::load(&as_listener, &config.limits)
        .map_or(64 * 1024, |layers| layers.max_ws_message);
    Ok(Some((listener, addr, max_ws)))
}

/// Accepts connections on the dashboard port until shutdown; each runs in a connection
/// task ([`ServerCtx::spawn`]), so the broker's shutdown waits for it like for any other. Admission is
/// the listeners' own (`super::admission`): a socket ticket and the total connection rate
/// before `accept`, the rate per address and the place in the admission FIFO after it, so
/// MQTT over the dashboard's WebSocket counts against `max_connections` like any other.
pub async fn accept_loop(listener: TcpListener, ctx: Arc<ServerCtx>, max_ws_message: usize) {
    let mut next = super::Acceptor::new(&listener, &ctx);
    while let Some((stream, peer, admit)) = next.accept().await {
        let _ = stream.set_nodelay(true);
        ctx.spawn(|ctx| async move {
            serve(stream, peer, &ctx, max_ws_message, admit).await;
        });
    }
}

/// Serves one connection of the dashboard port.
async fn serve(
    mut tcp: TcpStream,
    peer: SocketAddr,
    ctx: &ServerCtx,
    max_ws_message: usize,
    admit: super::admission::Admit,
) {
    let connect_timeout = ctx.config.limits.connect_timeout;
    let head = match tokio::time::timeout(connect_timeout, read_head(&mut tcp)).await {
        Ok(Ok(Some(head))) => head,
        Ok(Ok(None)) | Ok(Err(_)) | Err(_) => return,
    };
    let text = String::from_utf8_lossy(&head);
    let end = text.find("\r\n\r\n").map_or(text.len(), |i| i + 4);
    match route(text.get(..end).unwrap_or_default()) {
        Route::Mqtt => {
            let stream = Prefixed::new(Bytes::from(head), tcp);
            match tokio::time::timeout(connect_timeout, ws::accept(stream, max_ws_message)).await {
                Ok(Ok(w)) => connection::serve(Polled::new(w), peer, ctx, admit).await,
                Ok(Err(e)) => {
                    tracing::info!(%peer, error = %e, "dashboard WebSocket upgrade failed");
                    Metrics::add(&ctx.metrics.connections_refused, 1);
                }
                Err(_) => Metrics::add(&ctx.metrics.connections_refused, 1),
            }
        }
        Route::Asset { index, head_only } => {
            if let Some((_, kind, body)) = ASSETS.get(index) {
                let _ = respond(&mut tcp, 200, "OK", kind, body, head_only).await;
            }
        }
        Route::Status(code, why) => {
            let reason = match code {
                403 => "Forbidden",
                404 => "Not Found",
                405 => "Method Not Allowed",
                426 => "Upgrade Required",
                _ => "Bad Request",
            };
            let body = format!("{why}\n");
            let kind = "text/plain; charset=utf-8";
            let _ = respond(&mut tcp, code, reason, kind, body.as_bytes(), false).await;
        }
    }
}

/// Reads until the blank line that ends the request head: `None` if the peer closed first
/// or the head is larger than [`MAX_HEAD`]. What was read past the head is kept.
async fn read_head(tcp: &mut TcpStream) -> io::Result<Option<Vec<u8>>> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let n = tcp.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
        if buf.windows(4).any(|w| w == b"\r\n\r\n") {
            return Ok(Some(buf));
        }
        if buf.len() > MAX_HEAD {
            return Ok(None);
        }
    }
}

async fn respond(
    tcp: &mut TcpStream,
    code: u16,
    reason: &str,
    kind: &str,
    body: &[u8],
    head_only: bool,
) -> io::Result<()> {
    let head = format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\n{SECURITY_HEADERS}Connection: close\r\n\r\n",
        body.len()
    );
    tcp.write_all(head.as_bytes()).await?;
    if !head_only {
        tcp.write_all(body).await?;
    }
    tcp.shutdown().await
}

/// A stream whose first bytes were already read (the request head, handed back to the
/// WebSocket handshake): reads return `prefix` first, then the stream.
#[derive(Debug)]
pub(crate) struct Prefixed<S> {
    prefix: Bytes,
    inner: S,
}

impl<S> Prefixed<S> {
    /// `inner`, with `prefix` read again first.
    pub(crate) fn new(prefix: Bytes, inner: S) -> Prefixed<S> {
        Prefixed { prefix, inner }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(self.prefix.get(..n).unwrap_or_default());
            self.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
#[path = "dashboard_tests.rs"]
mod tests;
