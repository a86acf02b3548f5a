use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::oneshot;

use crate::server::ServerCtx;
use crate::server::test_ctx as ctx;

async fn until_open(ctx: &ServerCtx, n: usize) {
    for _ in 0..200 {
        if ctx.open.load(Ordering::Relaxed) == n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!(
        "open stayed {}, expected {n}",
        ctx.open.load(Ordering::Relaxed)
    );
}

#[tokio::test]
async fn a_task_that_ends_leaves_the_count_and_the_set() {
    let ctx = ctx();
    let (go, wait) = oneshot::channel::<()>();
    ctx.spawn(|held| async move {
        let _held = held;
        let _ = wait.await;
    });
    assert_eq!(ctx.open.load(Ordering::Relaxed), 1);
    assert!(!ctx.tasks.is_empty());
    go.send(()).unwrap();
    until_open(&ctx, 0).await;
    assert!(ctx.tasks.is_empty());
}

#[tokio::test]
async fn a_task_that_ends_at_once_is_not_kept() {
    // It may end before its handle is filed: the handle must not be kept for it.
    let ctx = ctx();
    for _ in 0..100 {
        ctx.spawn(|held| async move { drop(held) });
    }
    until_open(&ctx, 0).await;
    assert!(ctx.tasks.is_empty());
}

#[tokio::test]
async fn a_panicking_task_leaves_the_count_and_the_set() {
    let ctx = ctx();
    ctx.spawn(|held| async move {
        let _held = held;
        panic!("a connection task panics");
    });
    until_open(&ctx, 0).await;
    assert!(ctx.tasks.is_empty());
}

#[tokio::test]
async fn stop_waits_for_tasks_that_end_within_the_grace_and_aborts_the_rest() {
    let ctx = ctx();
    ctx.spawn(|held| async move {
        let _held = held;
        tokio::time::sleep(Duration::from_millis(50)).await;
    });
    ctx.spawn(|held| async move {
        let _held = held;
        std::future::pending::<()>().await;
    });
    let started = std::time::Instant::now();
    ctx.tasks.stop(Duration::from_millis(300)).await;
    assert!(started.elapsed() >= Duration::from_millis(300));
    until_open(&ctx, 0).await;
    assert!(ctx.tasks.is_empty());

    ctx.spawn(|held| async move {
        let _held = held;
        tokio::time::sleep(Duration::from_millis(20)).await;
    });
    let started = std::time::Instant::now();
    ctx.tasks.stop(Duration::from_secs(10)).await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "stop returns when all ended"
    );
    assert_eq!(ctx.open.load(Ordering::Relaxed), 0);
}
