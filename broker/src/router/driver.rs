//! The async driver of the router: receives commands in batches, sleeps until the
//! router's next deadline, and forwards commit completions from the store thread.
//!
//! Owns only the loop and the channels; every decision is the router's
//! ([`Router::handle`], [`Router::handle_timeout`], [`Router::end_turn`]). The clock is
//! read here and nowhere in the router.

use std::time::Instant;

use tokio::sync::mpsc;

use super::{Command, Router};
use crate::store::worker::Done;

/// Commands taken from the channel per turn.
const BATCH: usize = 256;
/// How long services' last words get to reach clients before the DISCONNECTs.
const FAREWELL: std::time::Duration = std::time::Duration::from_millis(200);

impl Router {
    /// Runs the loop until a `Shutdown` command or until every sender is gone.
    pub async fn run(mut self, mut rx: mpsc::Receiver<Command>, mut done: mpsc::Receiver<Done>) {
        let mut batch = Vec::with_capacity(BATCH);
        loop {
            let deadline = self.poll_timeout();
            tokio::select! {
                n = rx.recv_many(&mut batch, BATCH) => {
                    if n == 0 {
                        self.drain_store(&mut done).await;
                        return;
                    }
                    let now = Instant::now();
                    for cmd in batch.drain(..) {
                        if let Command::Shutdown(reply) = cmd {
                            if self.farewell(Instant::now()) {
                                tokio::time::sleep(FAREWELL).await;
                            }
                            self.disconnect_all(Instant::now());
                            self.drain_store(&mut done).await;
                            let _ = reply.send(());
                            return;
                        }
                        self.handle(now, cmd);
                    }
                    self.end_turn();
                }
                Some(d) = done.recv(), if self.in_flight.is_some() => {
                    self.on_commit_done(d);
                }
                _ = sleep_until(deadline), if deadline.is_some() => {
                    self.handle_timeout(Instant::now());
                    if self.split_work_pending() {
                        // Work split across turns (`ending.rs`) is due again at once: let
                        // the connection tasks that queued commands meanwhile run first.
                        tokio::task::yield_now().await;
                    }
                }
            }
        }
    }

    /// Waits for the batch in flight, then commits whatever is left and closes the
    /// store, so that the data directory can be opened again at once.
    async fn drain_store(&mut self, done: &mut mpsc::Receiver<Done>) {
        for _ in 0..2 {
            if let Some(batch) = self.in_flight {
                while let Some(d) = done.recv().await {
                    if d.batch == batch {
                        self.on_commit_done(d);
                        break;
                    }
                }
                self.in_flight = None;
            }
            self.submit();
        }
        self.release(false);
        self.committer.close();
        while let Some(d) = done.recv().await {
            if Some(d.batch) == self.in_flight {
                self.on_commit_done(d);
            }
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(t) => tokio::time::sleep_until(t.into()).await,
        None => std::future::pending().await,
    }
}
