//! The size of a connection task's future: every idle connection keeps one.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};

use super::serve;
use crate::auth::Auth;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::server::admission::{Admission, Admit};
use crate::server::{Counted, ServerCtx};

/// What a connection task's whole future may take (528 bytes in a debug build). It was
/// about 2,400 in release while the handshake's futures and a router send holding a
/// command were part of it; in debug 984 for `serve` alone (plus the spawned block's
/// copies of its arguments) while it held a keep-alive timer and a notification future,
/// which the broker's keep-alive wheel and the outbox's waker replaced.
const SERVE_FUTURE_MAX: usize = 600;

#[tokio::test]
async fn an_idle_connection_task_future_stays_small() {
    let config = Arc::new(Config::default());
    let metrics = Arc::new(Metrics::default());
    let (router, _rx) = mpsc::channel(1);
    let (_stop, shutdown) = watch::channel(false);
    let ctx = Arc::new(ServerCtx {
        router,
        anonymous: true,
        auth: Arc::new(Auth::load(&config.auth).unwrap()),
        config: config.clone(),
        metrics: metrics.clone(),
        open: AtomicUsize::new(0),
        next_assigned: AtomicU64::new(1),
        shutdown,
        cluster: None,
        admission: Admission::new(&config.limits, metrics),
        keep_alive: Arc::default(),
    });
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stream = TcpStream::connect(addr).await.unwrap();
    // As `spawn_connection` spawns it: the task's whole future.
    let future = serve(stream, addr, Counted::new(ctx), Admit::exempt());
    let size = std::mem::size_of_val(&future);
    assert!(
        size <= SERVE_FUTURE_MAX,
        "a connection task's future is {size} bytes (at most {SERVE_FUTURE_MAX}): box what is \
         awaited only during the handshake or a burst"
    );
}
