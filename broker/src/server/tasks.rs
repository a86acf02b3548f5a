//! The connection tasks of one broker: spawned, counted, waited for and cut at shutdown.
//!
//! Owns one abort handle per live connection task (a pointer in a slab) and the count
//! of open connections. Each task owns a [`Counted`], the shared context plus its slab
//! key and generation, which takes it out of the slab and the count when the task's
//! future is dropped, however it ends (done, aborted, panicked). That costs an idle
//! connection 16 bytes in its future and 16 in the slab, where a `JoinSet` entry was a
//! separate allocation of about 64. It never looks inside a task, never spawns or drops
//! a task while holding its lock, and never waits while holding it.

use std::future::Future;
use std::ops::Deref;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use slab::Slab;
use tokio::sync::Notify;
use tokio::task::AbortHandle;

use super::ServerCtx;

/// One live task's entry: its handle once spawned, and the generation that tells its
/// [`Counted`] from that of an earlier task with the same key.
#[derive(Debug)]
struct Entry {
    generation: u32,
    task: Option<AbortHandle>,
}

/// The live connection tasks.
#[derive(Debug, Default)]
pub struct Tasks {
    live: Mutex<Live>,
    /// Woken when the last live task ends.
    idle: Notify,
}

#[derive(Debug, Default)]
struct Live {
    entries: Slab<Entry>,
    next_generation: u32,
}

impl Tasks {
    fn lock(&self) -> MutexGuard<'_, Live> {
        self.live.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether no connection task is alive.
    pub fn is_empty(&self) -> bool {
        self.lock().entries.is_empty()
    }

    /// Waits up to `grace` for every task to end, then aborts the rest.
    pub async fn stop(&self, grace: Duration) {
        let all_ended = async {
            loop {
                let idle = self.idle.notified();
                tokio::pin!(idle);
                idle.as_mut().enable();
                if self.is_empty() {
                    return;
                }
                idle.await;
            }
        };
        if tokio::time::timeout(grace, all_ended).await.is_err() {
            let tasks: Vec<AbortHandle> = self
                .lock()
                .entries
                .iter_mut()
                .filter_map(|(_, e)| e.task.take())
                .collect();
            for task in tasks {
                task.abort();
            }
        }
    }
}

impl ServerCtx {
    /// Spawns a connection task: `make` gets the task's [`Counted`] context, which it
    /// must keep for the task's life (pass it on, or hold it).
    pub fn spawn<F>(self: &Arc<Self>, make: impl FnOnce(Counted) -> F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let (key, generation) = {
            let mut live = self.tasks.lock();
            let generation = live.next_generation;
            live.next_generation = generation.wrapping_add(1);
            let entry = Entry {
                generation,
                task: None,
            };
            (live.entries.insert(entry), generation)
        };
        self.open.fetch_add(1, Ordering::Relaxed);
        let counted = Counted {
            ctx: self.clone(),
            key,
            generation,
        };
        let task = tokio::spawn(make(counted)).abort_handle();
        // The task may have ended already (then its entry is gone, or is another's).
        if let Some(e) = self.tasks.lock().entries.get_mut(key)
            && e.generation == generation
        {
            e.task = Some(task);
        }
    }
}

/// The shared context as a connection task owns it: counted in [`ServerCtx::open`] and
/// tracked in [`Tasks`] for as long as the task lives.
#[derive(Debug)]
pub struct Counted {
    ctx: Arc<ServerCtx>,
    key: usize,
    generation: u32,
}

impl Deref for Counted {
    type Target = ServerCtx;

    fn deref(&self) -> &ServerCtx {
        &self.ctx
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.ctx.open.fetch_sub(1, Ordering::Relaxed);
        let tasks = &self.ctx.tasks;
        let mut live = tasks.lock();
        let ours = live
            .entries
            .get(self.key)
            .is_some_and(|e| e.generation == self.generation);
        // The handle is dropped after the lock is let go.
        let _entry = ours.then(|| live.entries.remove(self.key));
        let idle = live.entries.is_empty();
        drop(live);
        if idle {
            tasks.idle.notify_waiters();
        }
    }
}

#[cfg(test)]
#[path = "tasks_tests.rs"]
mod tests;
