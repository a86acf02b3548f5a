//! Listeners and connection admission.
//!
//! Owns the accept loops (one per `[[listener]]`), the connection count and rate
//! limits, and the context every connection task shares. It spawns one task per
//! connection and never touches routing state: that is reached only through the
//! router's command channel.

pub mod admission;
mod connection;
pub mod dashboard;
mod handshake;
pub mod layers;
mod preconnect;
pub mod prometheus;
pub mod proxy;
mod shaping;
pub mod tasks;
pub mod tls;
pub mod transport;
pub mod ws;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};

use crate::config::Config;
use crate::metrics::Metrics;
use crate::router::Command;

/// What every connection task shares.
#[derive(Debug)]
pub struct ServerCtx {
    /// The router's command channel (bounded: a full channel pauses readers).
    pub router: mpsc::Sender<Command>,
    /// The configuration in force.
    pub config: Arc<Config>,
    /// Broker-wide counters.
    pub metrics: Arc<Metrics>,
    /// Whether clients without a user name may connect.
    pub anonymous: bool,
    /// Password file, ACL file and failed-login throttle (reloaded on SIGHUP).
    pub auth: Arc<crate::auth::Auth>,
    /// Open TCP connections, for `max_connections`.
    pub open: AtomicUsize,
    /// Counter for assigned client identifiers.
    pub next_assigned: AtomicU64,
    /// Flips to `true` when the broker stops.
    pub shutdown: watch::Receiver<bool>,
    /// The cluster view (`[cluster]`), consulted on CONNECT.
    pub cluster: Option<Arc<crate::services::cluster::ClusterBook>>,
    /// Socket tickets, the admission FIFO and the connection rates.
    pub admission: admission::Admission,
    /// The keep-alive wheel every established connection is filed in.
    pub keep_alive: Arc<crate::keepalive::Supervisor>,
    /// The live connection tasks ([`ServerCtx::spawn`]).
    pub tasks: tasks::Tasks,
}

/// Time a write may block before the peer is cut off as a slow consumer.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// QoS 0 messages that may wait in one connection's outbox: about 20 ms of a subscriber
/// receiving 400,000 messages a second, so a reader that keeps up on average rides out a
/// scheduling hiccup; a connection that stalls for longer loses what is beyond (counted).
/// Small encodings are copied into runs (at most 512 bytes each, so at most 4 MiB), larger
/// ones are shared with every other subscriber.
pub const QOS0_OUTBOX: usize = 8192;

/// Accepts connections on `listener` until shutdown, spawning a task per connection
/// ([`ServerCtx::spawn`]); TLS and WebSocket handshakes (`layers`) run in that task. A socket ticket
/// and the total connection rate are taken before `accept`, the connection's place in the
/// admission FIFO right after it (see [`admission`]).
pub async fn accept_loop(listener: TcpListener, ctx: Arc<ServerCtx>, layers: Arc<layers::Layers>) {
    let mut next = Acceptor::new(&listener, &ctx);
    while let Some((stream, peer, admit)) = next.accept().await {
        let _ = stream.set_nodelay(true);
        if layers.is_plain() {
            spawn_connection(&ctx, stream, peer, admit);
        } else {
            layers::spawn(&ctx, stream, peer, layers.clone(), admit);
        }
    }
}

/// The admission side of an accept loop, shared by the MQTT listeners and the dashboard
/// port: a socket ticket and the total connection rate before `accept`, a bounded back-off
/// on accept errors (waiting for one of our connections to close, never a fixed sleep), the
/// rate per address and the place in the admission FIFO after it.
pub(crate) struct Acceptor<'a> {
    listener: &'a TcpListener,
    ctx: &'a ServerCtx,
    shutdown: watch::Receiver<bool>,
    backoff: Duration,
}

impl<'a> Acceptor<'a> {
    /// Accepts on `listener` for `ctx`'s admission.
    pub(crate) fn new(listener: &'a TcpListener, ctx: &'a ServerCtx) -> Acceptor<'a> {
        Acceptor {
            listener,
            ctx,
            shutdown: ctx.shutdown.clone(),
            backoff: admission::Admission::first_backoff(),
        }
    }

    /// The next connection admitted to wait for its place; `None` at shutdown.
    pub(crate) async fn accept(&mut self) -> Option<(TcpStream, SocketAddr, admission::Admit)> {
        let admission = &self.ctx.admission;
        loop {
            let ticket = tokio::select! {
                t = admission.ticket() => t,
                _ = self.shutdown.changed() => return None,
            };
            let accepted = tokio::select! {
                r = self.listener.accept() => r,
                _ = self.shutdown.changed() => return None,
            };
            let (stream, peer) = match accepted {
                Ok(x) => x,
                Err(e) => {
                    // Out of file descriptors and the like: wait for one of ours to close,
                    // at most a bounded back-off, instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    drop(ticket);
                    self.backoff = tokio::select! {
                        b = admission.back_off(&e, self.backoff) => b,
                        _ = self.shutdown.changed() => return None,
                    };
                    continue;
                }
            };
            self.backoff = admission::Admission::first_backoff();
            if !admission.source_allowed(peer.ip()) {
                Metrics::add(&self.ctx.metrics.connections_refused, 1);
                tracing::debug!(%peer, "connection rate per address exceeded");
                drop(stream);
                continue;
            }
            return Some((stream, peer, admission.enter(ticket)));
        }
    }
}

/// Spawns the task that serves one connection over `stream`; `admit` is its place in
/// admission ([`admission::Admit::exempt`] for streams not from a listener).
pub fn spawn_connection<S: transport::Transport + 'static>(
    ctx: &Arc<ServerCtx>,
    stream: S,
    peer: SocketAddr,
    admit: admission::Admit,
) {
    let span = connection::span(peer);
    // A disabled span (log level above `info`) still takes 40 bytes in an instrumented
    // future: an idle connection whose lines nobody logs keeps none. The task's context
    // is passed whole to `run`, so the task keeps no second copy of its arguments.
    if span.is_disabled() {
        ctx.spawn(|ctx| connection::run(stream, peer, ctx, admit));
    } else {
        ctx.spawn(|ctx| {
            tracing::Instrument::instrument(connection::run(stream, peer, ctx, admit), span)
        });
    }
}

/// Binds every configured listener; returns them with their bound addresses. IPv6
/// listeners are IPv6-only (`IPV6_V6ONLY`), so `[::]:1883` and `0.0.0.0:1883` can both be
/// configured on a dual-stack host. A failure names the listener's key (`listener[1].bind`).
pub async fn bind_all(
    config: &Config,
) -> Result<Vec<(TcpListener, SocketAddr)>, crate::BrokerError> {
    let mut out = Vec::new();
    for (i, l) in config.listener.iter().enumerate() {
        let fail = |reason| crate::BrokerError::Bind {
            addr: l.bind,
            key: format!("listener[{i}].bind"),
            reason,
        };
        let listener = bind_tcp(l.bind).map_err(fail)?;
        let addr = listener.local_addr().map_err(fail)?;
        tracing::info!(%addr, "listening for MQTT");
        out.push((listener, addr));
    }
    Ok(out)
}

/// One listening socket: address reuse for quick restarts, IPv6-only on IPv6 addresses.
fn bind_tcp(addr: SocketAddr) -> std::io::Result<TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    #[cfg(unix)]
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    TcpListener::from_std(socket.into())
}

/// A context for unit tests: default configuration, a router channel nobody reads.
#[cfg(test)]
pub(crate) fn test_ctx() -> Arc<ServerCtx> {
    let config = Arc::new(Config::default());
    let metrics = Arc::new(Metrics::default());
    let (router, _rx) = mpsc::channel(1);
    let (_stop, shutdown) = watch::channel(false);
    Arc::new(ServerCtx {
        router,
        anonymous: true,
        auth: Arc::new(crate::auth::Auth::load(&config.auth).expect("no files to load")),
        config: config.clone(),
        metrics: metrics.clone(),
        open: AtomicUsize::new(0),
        next_assigned: AtomicU64::new(1),
        shutdown,
        cluster: None,
        admission: admission::Admission::new(&config.limits, metrics),
        keep_alive: Arc::default(),
        tasks: tasks::Tasks::default(),
    })
}
