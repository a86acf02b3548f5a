//! Canopy's metabroker: a client of a local and a remote MQTT broker that forwards
//! messages between them by routes, acknowledging each message to its source only once its
//! destination acknowledged it or it is in the bounded on-disk queue, and never looping.
//!
//! Owns: starting bridges ([`spawn`], [`Bridge`]) and the public API (config, transforms,
//! counters). Must never block the runtime for long or panic on network input.
#![warn(missing_docs)]

mod bridge;
pub mod config;
pub mod interest;
pub mod link;
pub mod message;
mod proxy;
pub mod queue;
pub mod remap;
pub mod stats;
pub mod transform;
pub mod transport;

use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

pub use config::{BridgeConfig, ConfigError, Direction, RemoteWill, RouteConfig};
pub use message::{HOPS_PROPERTY, Message};
pub use stats::BridgeStats;
pub use transform::Transform;

use crate::bridge::{Pump, Route};
use crate::link::{Link, Side};

/// Why a bridge could not start.
#[derive(Debug, thiserror::Error)]
pub enum BridgeError {
    /// A route's remap rule is unusable.
    #[error("route: {0}")]
    Route(remap::RemapError),
    /// A broker endpoint is unusable (URL or TLS material).
    #[error("{side}: {message}")]
    Url {
        /// `local` or `remote`.
        side: &'static str,
        /// What is wrong.
        message: String,
    },
    /// A transform was attached to a route that does not exist.
    #[error("transform for route {0}, which does not exist")]
    NoSuchRoute(usize),
    /// The on-disk queue could not be opened.
    #[error(transparent)]
    Queue(#[from] queue::QueueError),
}

/// A bridge being assembled: its configuration plus custom transforms.
pub struct Bridge {
    config: BridgeConfig,
    custom: Vec<(usize, Box<dyn Transform>)>,
}

impl Bridge {
    /// A bridge from `config`.
    pub fn new(config: BridgeConfig) -> Bridge {
        Bridge {
            config,
            custom: Vec::new(),
        }
    }

    /// Adds `transform` to route `route` (0-based, configuration order), after its built-in
    /// sub-sampling and rate limit.
    pub fn with_transform(mut self, route: usize, transform: impl Transform) -> Bridge {
        self.custom.push((route, Box::new(transform)));
        self
    }

    /// Connects both links and starts forwarding. Needs a Tokio runtime.
    pub fn start(self) -> Result<BridgeHandle, BridgeError> {
        let Bridge { mut config, custom } = self;
        config.routes = config.effective_routes();
        config.hierarchy = false;
        let mut per_route: Vec<Vec<Box<dyn Transform>>> =
            (0..config.routes.len()).map(|_| Vec::new()).collect();
        for (i, t) in custom {
            per_route
                .get_mut(i)
                .ok_or(BridgeError::NoSuchRoute(i))?
                .push(t);
        }
        let routes = config
            .routes
            .iter()
            .zip(per_route)
            .map(|(r, t)| Route::build(r, t))
            .collect::<Result<Vec<_>, _>>()?;
        let dir = config
            .queue
            .dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(format!("canopy-metabroker-{}", config.name)));
        let queue = queue::Queue::open(&dir, config.queue.max_messages, config.queue.max_bytes)?;
        let stats = Arc::new(BridgeStats::new(routes.len()));
        let (tx, rx) = mpsc::unbounded_channel();
        let (local_id, remote_id) = (config.local_client_id(), config.remote_client_id());
        let local = Link::start(
            Side::Local,
            &config.local,
            &local_id,
            config.backoff,
            config.max_inflight,
            Some(bridge::will(&config)),
            tx.clone(),
        )
        .map_err(|message| BridgeError::Url {
            side: "local",
            message,
        })?;
        let remote = Link::start(
            Side::Remote,
            &config.remote,
            &remote_id,
            config.backoff,
            config.max_inflight,
            config.remote_will.as_ref().map(bridge::remote_will),
            tx,
        )
        .map_err(|message| BridgeError::Url {
            side: "remote",
            message,
        })?;
        let (stop, stop_rx) = watch::channel(false);
        let name = config.name.clone();
        let proxy_file = Some(dir.join("proxied.json"));
        let pump = Pump::new(
            config,
            routes,
            local,
            remote,
            queue,
            stats.clone(),
            proxy_file,
        );
        let task = tokio::spawn(pump.run(rx, stop_rx));
        Ok(BridgeHandle {
            name,
            stats,
            stop,
            task,
        })
    }
}

/// A running bridge.
#[derive(Debug)]
pub struct BridgeHandle {
    name: String,
    stats: Arc<BridgeStats>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl BridgeHandle {
    /// The bridge's node id.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Live counters.
    pub fn stats(&self) -> &Arc<BridgeStats> {
        &self.stats
    }

    /// Publishes the `disconnected` state, disconnects both links and waits for the pump.
    /// Messages not yet acknowledged stay unacknowledged at their source (or on disk).
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// Starts every bridge in `configs` (the broker's `[[bridge]]` sections or the metabroker's
/// `--config` files). Needs a Tokio runtime.
pub fn spawn(configs: Vec<BridgeConfig>) -> Result<Vec<BridgeHandle>, BridgeError> {
    configs
        .into_iter()
        .map(|c| Bridge::new(c).start())
        .collect()
}
