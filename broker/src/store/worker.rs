//! Committing the router's mutations: the [`Commit`] trait the router talks to, the
//! commit thread ([`Committer`]) that production uses, and [`Inline`], which commits
//! on the caller's thread so that tests can run the router with no thread at all.
//!
//! The commit thread owns the store after start-up. The router submits the mutations of a turn and goes
//! on routing while the batch is fsynced; everything that piles up meanwhile becomes the
//! next batch. That is group commit: one fsync serves every publisher of a turn. It never
//! sees sessions or sockets, and never holds more than one batch.

use std::sync::mpsc as std_mpsc;

use tokio::sync::mpsc;

use super::{Mutation, Store, StoreError};

/// A finished commit.
#[derive(Debug)]
pub struct Done {
    /// The batch number given by [`Committer::submit`].
    pub batch: u64,
    /// What the store said.
    pub result: Result<(), StoreError>,
}

/// Where the router sends its batches of mutations.
pub trait Commit: Send {
    /// Hands a batch over; returns its number, or `None` if it can no longer commit.
    fn submit(&mut self, ops: Vec<Mutation>) -> Option<u64>;
    /// A completion that is ready without waiting (an inline committer's); threaded
    /// committers report on their channel instead and return `None`.
    fn ready(&mut self) -> Option<Done> {
        None
    }
    /// Stops accepting batches once what was given is committed.
    fn close(&mut self);
}

/// The router's handle on the commit thread.
#[derive(Debug)]
pub struct Committer {
    /// `None` once closed.
    tx: Option<std_mpsc::SyncSender<(u64, Vec<Mutation>)>>,
    next: u64,
}

impl Commit for Committer {
    fn submit(&mut self, ops: Vec<Mutation>) -> Option<u64> {
        Committer::submit(self, ops)
    }

    fn close(&mut self) {
        Committer::close(self);
    }
}

/// Commits on the caller's thread, at once: for tests that drive the router by hand.
pub struct Inline {
    store: Box<dyn Store>,
    next: u64,
    done: Option<Done>,
}

impl Inline {
    /// Commits into `store`.
    pub fn new(store: Box<dyn Store>) -> Inline {
        Inline {
            store,
            next: 1,
            done: None,
        }
    }
}

impl std::fmt::Debug for Inline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inline").field("next", &self.next).finish()
    }
}

impl Commit for Inline {
    fn submit(&mut self, mut ops: Vec<Mutation>) -> Option<u64> {
        let batch = self.next;
        self.next += 1;
        let result = self.store.commit(&mut ops);
        self.done = Some(Done { batch, result });
        Some(batch)
    }

    fn ready(&mut self) -> Option<Done> {
        self.done.take()
    }

    fn close(&mut self) {}
}

impl Committer {
    /// Moves `store` to a new thread; completions arrive on the returned receiver.
    pub fn spawn(mut store: Box<dyn Store>) -> std::io::Result<(Committer, mpsc::Receiver<Done>)> {
        let (tx, rx) = std_mpsc::sync_channel::<(u64, Vec<Mutation>)>(1);
        let (done_tx, done_rx) = mpsc::channel(2);
        std::thread::Builder::new()
            .name("canopy-store".into())
            .spawn(move || {
                while let Ok((batch, mut ops)) = rx.recv() {
                    let result = store.commit(&mut ops);
                    if let Err(e) = &result {
                        tracing::error!(error = %e, batch, "store commit failed");
                    }
                    if done_tx.blocking_send(Done { batch, result }).is_err() {
                        break;
                    }
                }
                // The store (and its file lock) goes first; the closed channel then
                // tells the router that the data directory is free.
                drop(store);
                drop(done_tx);
            })?;
        Ok((
            Committer {
                tx: Some(tx),
                next: 1,
            },
            done_rx,
        ))
    }

    /// Hands a batch to the thread; returns its number, or `None` if the thread is gone.
    pub fn submit(&mut self, ops: Vec<Mutation>) -> Option<u64> {
        let batch = self.next;
        self.next += 1;
        self.tx.as_ref()?.send((batch, ops)).ok().map(|()| batch)
    }

    /// Stops the thread once it has finished what it was given; the completion channel
    /// closes after the store is dropped.
    pub fn close(&mut self) {
        self.tx = None;
    }
}
