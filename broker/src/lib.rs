//! canopy-broker: an MQTT 3.1 / 3.1.1 / 5.0 broker.
//!
//! Layers, each talking only to the one below: `server` (sockets, one task per
//! connection, CONNECT handshake) -> `router` (the single owner of sessions,
//! subscriptions and retained messages, fed by a bounded channel) -> `store` (what
//! survives a restart). `start` and `run` are the whole public surface a program or a
//! test needs: `start(Config::ephemeral())` gives a broker on a free port.
#![warn(missing_docs)]

pub mod access;
pub mod auth;
mod bridges;
pub mod config;
mod error;
mod keepalive;
mod levels;
mod message;
pub mod metrics;
mod outbox;
pub mod retain;
mod router;
mod server;
pub mod services;
pub mod store;
pub mod topic_tree;
mod wbufs;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot, watch};

pub use config::Config;
pub use error::BrokerError;

use metrics::Metrics;
use router::{Command, Router};
use server::ServerCtx;

/// Capacity of the router's command channel. When it is full, connection tasks stop
/// reading their sockets until it drains: that is how publishers are slowed down.
const ROUTER_CHANNEL: usize = 4096;

/// How long shutdown waits for connection tasks to write their last packets.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// A running broker.
#[derive(Debug)]
pub struct BrokerHandle {
    addrs: Vec<SocketAddr>,
    router: mpsc::Sender<Command>,
    stop: watch::Sender<bool>,
    router_task: tokio::task::JoinHandle<()>,
    accept_tasks: Vec<tokio::task::JoinHandle<()>>,
    metrics: Arc<Metrics>,
    /// The bound UDP address of the DNS status listener, when `[dns] listen` is set.
    dns_addr: Option<SocketAddr>,
    /// The bound address of the dashboard, when `[dashboard] listen` is set.
    dashboard_addr: Option<SocketAddr>,
    /// Embedded metabrokers (`[[bridge]]`), stopped before the broker.
    bridges: Vec<canopy_metabroker::BridgeHandle>,
    /// The cluster view, when `[cluster]` is configured.
    cluster: Option<Arc<services::cluster::ClusterBook>>,
    /// What connection tasks share, for [`BrokerHandle::attach`].
    ctx: Arc<ServerCtx>,
    /// Password and ACL files, for [`BrokerHandle::reload`].
    auth: Arc<auth::Auth>,
    /// Each listener's TLS and WebSocket layers, in `[[listener]]` order.
    layers: Vec<Arc<server::layers::Layers>>,
}

impl BrokerHandle {
    /// The bound address of the first listener.
    pub fn mqtt_addr(&self) -> SocketAddr {
        self.addrs
            .first()
            .copied()
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    /// Bound addresses of every listener, in configuration order.
    pub fn mqtt_addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// The bound UDP address of the DNS status listener, `None` without `[dns] listen`.
    pub fn dns_addr(&self) -> Option<SocketAddr> {
        self.dns_addr
    }

    /// The cluster view (node records, pins, the admission rule), when `[cluster]` is
    /// configured.
    pub fn cluster(&self) -> Option<&Arc<services::cluster::ClusterBook>> {
        self.cluster.as_ref()
    }

    /// The bound address of the dashboard (page and MQTT over WebSocket), `None` without
    /// `[dashboard] listen`.
    pub fn dashboard_addr(&self) -> Option<SocketAddr> {
        self.dashboard_addr
    }

    /// Broker-wide counters.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Serves one MQTT connection over any byte stream (an in-memory pipe, a stream
    /// accepted elsewhere), exactly as a connection accepted by a listener; `peer` is
    /// what the logs name.
    pub fn attach<S>(&self, stream: S, peer: SocketAddr)
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        server::spawn_connection(
            &self.ctx,
            server::transport::Polled::new(stream),
            peer,
            server::admission::Admit::exempt(),
        );
    }

    /// Re-reads the password file, the ACL file and every listener's TLS files (SIGHUP).
    /// Open connections stay; a file that fails keeps its old contents, and its error is
    /// logged (file and line) and returned.
    pub fn reload(&self) -> Vec<String> {
        let mut errors: Vec<String> = self.auth.reload().iter().map(|e| e.to_string()).collect();
        for (l, layers) in self.ctx.config.listener.iter().zip(&self.layers) {
            if let Some(tls) = &layers.tls
                && let Err(e) = tls.reload()
            {
                errors.push(format!("listener {}: {e}", l.bind));
            }
        }
        for e in &errors {
            tracing::error!(error = %e, "reload failed; the previous contents stay in force");
        }
        tracing::info!(
            failed = errors.len(),
            "reloaded password, ACL and TLS files"
        );
        errors
    }

    /// Logins refused since start-up (wrong password, unknown user, anonymous refused).
    pub fn failed_logins(&self) -> u64 {
        self.auth.failed_logins()
    }

    /// Stops the broker: no new connections, DISCONNECT 0x8B to 5.0 clients, store
    /// flushed, connection tasks given a short grace period to write.
    pub async fn shutdown(self) {
        for b in self.bridges {
            b.shutdown().await;
        }
        let _ = self.stop.send(true);
        for t in &self.accept_tasks {
            t.abort();
        }
        // Wait until every listener is really closed, so that the port can be bound again
        // as soon as shutdown returns (a restart on the same address).
        for t in self.accept_tasks {
            let _ = t.await;
        }
        let (tx, rx) = oneshot::channel();
        if self.router.send(Command::Shutdown(tx)).await.is_ok() {
            let _ = rx.await;
        }
        let _ = self.router_task.await;
        self.ctx.tasks.stop(SHUTDOWN_GRACE).await;
        tracing::info!("broker stopped");
    }
}

/// Starts a broker with `config` and returns once every listener is bound. Every socket
/// (MQTT listeners, metrics, DNS) is bound before the store is opened, so a port in use
/// leaves `data_dir` untouched.
pub async fn start(config: Config) -> Result<BrokerHandle, BrokerError> {
    let config = Arc::new(config);
    let listeners = server::bind_all(&config).await?;
    let metrics_listener = match config.metrics_listen {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|reason| BrokerError::Bind {
                    addr,
                    key: "metrics_listen".to_owned(),
                    reason,
                })?,
        ),
        None => None,
    };
    let dns_socket = match config.dns.listen {
        Some(addr) => {
            let fail = |reason| BrokerError::Bind {
                addr,
                key: "dns.listen".to_owned(),
                reason,
            };
            let socket = tokio::net::UdpSocket::bind(addr).await.map_err(fail)?;
            let bound = socket.local_addr().map_err(fail)?;
            Some((socket, bound))
        }
        None => None,
    };
    let dashboard_listener = server::dashboard::bind(&config).await?;
    // Files the configuration names are read before the store is opened, so that a bad
    // one leaves no data directory behind.
    let auth = Arc::new(auth::Auth::load(&config.auth)?);
    let mut layers = Vec::new();
    for l in &config.listener {
        let loaded =
            server::layers::Layers::load(l, &config.limits).map_err(|source| BrokerError::Tls {
                addr: l.bind,
                source,
            })?;
        layers.push(Arc::new(loaded));
    }
    let metrics = Arc::new(Metrics::default());
    let mut store = store::open(&config)?;
    let snapshot = store.load()?;
    let (committer, commits) =
        store::worker::Committer::spawn(store).map_err(|source| store::StoreError::Io {
            path: "commit thread".into(),
            source,
        })?;
    let status = Arc::new(services::status::StatusBook::new());
    let now = Instant::now();
    let bound: Vec<SocketAddr> = listeners.iter().map(|(_, a)| *a).collect();
    let advertise = services::cluster::link::advertise(&config, &bound);
    let cluster = services::cluster::ClusterBook::new(&config, &advertise).map(Arc::new);
    if let Some(book) = &cluster {
        // 3.1.1 clients assigned elsewhere are spliced to their node (server/proxy.rs).
        book.set_proxying(true);
    }
    let services = router::registered(&config, &metrics, &status, cluster.as_ref(), now);
    let mut router = Router::new(
        &config,
        snapshot,
        Box::new(committer),
        metrics.clone(),
        services,
        now,
    );
    if config.auth.acl_file.is_some() {
        // The seam reads the current rules on every check, so a reload needs no router call.
        router.set_acl(Some(auth.clone()));
    }
    let (tx, rx) = mpsc::channel(ROUTER_CHANNEL);
    let (stop, stop_rx) = watch::channel(false);
    let router_task = tokio::spawn(router.run(rx, commits));
    let ctx = Arc::new(ServerCtx {
        router: tx.clone(),
        anonymous: config.anonymous_allowed(),
        auth: auth.clone(),
        config: config.clone(),
        metrics: metrics.clone(),
        open: AtomicUsize::new(0),
        next_assigned: AtomicU64::new(1),
        shutdown: stop_rx,
        cluster: cluster.clone(),
        admission: server::admission::Admission::new(&config.limits, metrics.clone()),
        keep_alive: Arc::default(),
        tasks: server::tasks::Tasks::default(),
    });
    let mut addrs = Vec::new();
    let mut accept_tasks = Vec::new();
    accept_tasks.push(tokio::spawn(keepalive::run(
        ctx.keep_alive.clone(),
        ctx.shutdown.clone(),
    )));
    for ((listener, addr), layers) in listeners.into_iter().zip(&layers) {
        addrs.push(addr);
        accept_tasks.push(tokio::spawn(server::accept_loop(
            listener,
            ctx.clone(),
            layers.clone(),
        )));
    }
    if let Some(listener) = metrics_listener {
        if let Ok(addr) = listener.local_addr() {
            tracing::info!(%addr, "serving Prometheus metrics");
        }
        accept_tasks.push(tokio::spawn(server::prometheus::serve(
            listener,
            metrics.clone(),
        )));
    }
    let dashboard_addr = dashboard_listener.map(|(listener, addr, max_ws)| {
        tracing::info!(%addr, url = %format!("http://{addr}/"), "serving the dashboard");
        accept_tasks.push(tokio::spawn(server::dashboard::accept_loop(
            listener,
            ctx.clone(),
            max_ws,
        )));
        addr
    });
    let mut dns_addr = None;
    if let Some((socket, bound)) = dns_socket {
        tracing::info!(addr = %bound, zone = %config.dns.zone, "serving DNS status");
        dns_addr = Some(bound);
        accept_tasks.push(tokio::spawn(services::dns::serve(
            socket,
            config.dns.clone(),
            status.clone(),
            cluster
                .clone()
                .and_then(|book| services::dns::name_service(&config, book)),
        )));
    }
    // Bridges connect to this broker like any client, so they start once it listens.
    // Their on-disk queues live in the broker's data directory unless configured.
    let mut bridge_configs = bridges::prepare(&config, &addrs, &auth);
    if let Some(c) = &config.cluster
        && c.join.is_some()
    {
        let password = match &c.join_password_file {
            Some(path) => Some(read_password(path)?),
            None => None,
        };
        bridge_configs.extend(
            services::cluster::link::join_bridge(&config, &bound, password).map(|mut b| {
                // The link's local side is this broker: it logs in with an in-process
                // identity, as an embedded `[[bridge]]` does.
                let (user, token) = auth.bridge_tokens().issue(&b.name, &b.local_client_id());
                b.local.username = Some(user);
                b.local.password = Some(token);
                b
            }),
        );
    }
    let bridges = canopy_metabroker::spawn(bridge_configs)?;
    tracing::info!(node_id = %config.node_id, durability = ?config.durability, bridges = bridges.len(), "broker started");
    Ok(BrokerHandle {
        cluster,
        ctx,
        auth,
        layers,
        bridges,
        addrs,
        router: tx,
        stop,
        router_task,
        accept_tasks,
        metrics,
        dns_addr,
        dashboard_addr,
    })
}

/// The first line of the cluster join link's password file.
fn read_password(path: &std::path::Path) -> Result<String, BrokerError> {
    let text = std::fs::read_to_string(path).map_err(|source| BrokerError::ClusterJoin {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(text.lines().next().unwrap_or_default().to_owned())
}

/// Runs a broker until `shutdown` completes, then stops it gracefully.
pub async fn run(
    config: Config,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), BrokerError> {
    let handle = start(config).await?;
    let handle = Arc::new(handle);
    let reloader = tokio::spawn(reload_on_sighup(Arc::clone(&handle)));
    shutdown.await;
    reloader.abort();
    let _ = reloader.await;
    match Arc::try_unwrap(handle) {
        Ok(handle) => handle.shutdown().await,
        Err(_) => tracing::error!("broker handle still shared at shutdown"),
    }
    Ok(())
}

/// Calls [`BrokerHandle::reload`] on every SIGHUP (Unix; elsewhere never).
async fn reload_on_sighup(handle: Arc<BrokerHandle>) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::hangup()) {
            Ok(mut hup) => {
                while hup.recv().await.is_some() {
                    tracing::info!("SIGHUP received; reloading");
                    handle.reload();
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot listen for SIGHUP; no reloads"),
        }
    }
    #[cfg(not(unix))]
    {
        let _ = handle;
        std::future::pending::<()>().await;
    }
}
