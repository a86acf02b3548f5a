//! The size of a connection task's future: every idle connection keeps one.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::net::{TcpListener, TcpStream};

use super::serve;
use crate::server::admission::Admit;

/// What a connection task's whole future may take (528 bytes in a debug build). It was
/// about 2,400 in release while the handshake's futures and a router send holding a
/// command were part of it; in debug 984 for `serve` alone (plus the spawned block's
/// copies of its arguments) while it held a keep-alive timer and a notification future,
/// which the broker's keep-alive wheel and the outbox's waker replaced.
const SERVE_FUTURE_MAX: usize = 600;

#[tokio::test]
async fn an_idle_connection_task_future_stays_small() {
    let ctx = crate::server::test_ctx();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stream = TcpStream::connect(addr).await.unwrap();
    // As `spawn_connection` spawns it, with its span: the task's whole future.
    let size = Arc::new(AtomicUsize::new(0));
    let measured = size.clone();
    ctx.spawn(|ctx| {
        let future = serve(stream, addr, ctx, Admit::exempt());
        measured.store(std::mem::size_of_val(&future), Ordering::Relaxed);
        future
    });
    let size = size.load(Ordering::Relaxed);
    assert!(
        size <= SERVE_FUTURE_MAX,
        "a connection task's future is {size} bytes (at most {SERVE_FUTURE_MAX}): box what is \
         awaited only during the handshake or a burst"
    );
}
