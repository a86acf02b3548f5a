//! Keep-alive supervision of every connection by one broker-wide wheel [MQTT-3.1.2-24].
//!
//! Owns the [`Liveness`] a connection shares through its outbox (when it last heard its
//! client, and its grace: one and a half times the keep alive) and the [`Wheel`] of those
//! liveness records ordered by deadline. A connection records each packet with one
//! relaxed store and holds no timer of its own while idle: the wheel looks at a connection
//! only when its deadline comes, and either finds it heard from since (and files it under
//! its new deadline) or marks it expired and wakes it; the connection then says goodbye
//! itself. The wheel is sans-IO ([`Wheel::sweep`] takes the time); [`run`] is its task.
//! It never touches the socket, the router or the outbox's queue.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, watch};

use crate::outbox::Outbox;

/// Deadlines are filed in slots this wide (rounded up): a connection is closed at most
/// this much after its deadline, and connections due together are checked together.
pub const SLOT: Duration = Duration::from_millis(100);

/// `heard` while the connection reads nothing on purpose (back-pressure): silence is
/// then the broker's, not the client's, and the deadline moves on.
const PAUSED: u64 = u64::MAX;

/// Milliseconds since the process's first use of this clock (what [`Liveness`] stores).
fn millis(at: Instant) -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let epoch = *EPOCH.get_or_init(Instant::now);
    u64::try_from(at.saturating_duration_since(epoch).as_millis()).unwrap_or(u64::MAX - 1)
}

/// What one connection shares with the wheel.
#[derive(Debug, Default)]
pub struct Liveness {
    /// When the client was last heard from ([`millis`]), or [`PAUSED`].
    heard: AtomicU64,
    /// One and a half times the keep alive, in milliseconds; 0: not supervised (keep
    /// alive 0, or the connection is over).
    grace: AtomicU32,
    /// Set by the wheel when the deadline passed; the connection closes.
    expired: AtomicBool,
}

/// What the wheel finds when a connection's deadline comes.
#[derive(Debug, PartialEq, Eq)]
enum Due {
    /// Supervision is off: forget the connection.
    Off,
    /// Heard from since: look again at this deadline.
    At(u64),
    /// Silent for longer than its grace.
    Expired,
}

impl Liveness {
    /// Starts supervising a keep alive of `secs` seconds (0: none) from `now`.
    pub fn start(&self, secs: u16, now: Instant) {
        let grace = canopy_proto::session::keep_alive_grace(secs).unwrap_or_default();
        self.heard.store(millis(now), Ordering::Relaxed);
        self.grace.store(
            u32::try_from(grace.as_millis()).unwrap_or(u32::MAX),
            Ordering::Relaxed,
        );
    }

    /// Records that a packet arrived at `now`.
    pub fn heard(&self, now: Instant) {
        self.heard.store(millis(now), Ordering::Relaxed);
    }

    /// The connection stops reading (back-pressure) until [`Liveness::heard`] again.
    pub fn pause(&self) {
        self.heard.store(PAUSED, Ordering::Relaxed);
    }

    /// Ends supervision (the connection is over); the wheel forgets it on its next look.
    pub fn stop(&self) {
        self.grace.store(0, Ordering::Relaxed);
    }

    /// Whether the wheel found the connection silent too long (and clears that).
    pub fn take_expired(&self) -> bool {
        self.expired.swap(false, Ordering::AcqRel)
    }

    /// The deadline now, if supervised; a paused connection's is one grace from `now`.
    fn deadline(&self, now: u64) -> Option<u64> {
        let grace = u64::from(self.grace.load(Ordering::Relaxed));
        if grace == 0 {
            return None;
        }
        match self.heard.load(Ordering::Relaxed) {
            PAUSED => Some(now.saturating_add(grace)),
            heard => Some(heard.saturating_add(grace)),
        }
    }

    fn check(&self, now: u64) -> Due {
        match self.deadline(now) {
            None => Due::Off,
            Some(d) if now >= d => {
                self.expired.store(true, Ordering::Release);
                self.grace.store(0, Ordering::Relaxed);
                Due::Expired
            }
            Some(d) => Due::At(d),
        }
    }
}

/// Connections by deadline slot.
#[derive(Debug, Default)]
pub struct Wheel {
    slots: BTreeMap<u64, Vec<Weak<Outbox>>>,
}

impl Wheel {
    fn file(&mut self, deadline: u64, outbox: Weak<Outbox>) {
        let slot = SLOT.as_millis() as u64;
        let key = deadline.div_ceil(slot).saturating_mul(slot);
        self.slots.entry(key).or_default().push(outbox);
    }

    /// Files `outbox` under its deadline; `false` when it is not supervised.
    pub fn watch(&mut self, outbox: &Arc<Outbox>, now: Instant) -> bool {
        match outbox.liveness().deadline(millis(now)) {
            Some(d) => {
                self.file(d, Arc::downgrade(outbox));
                true
            }
            None => false,
        }
    }

    /// When the next connection is due.
    pub fn next_due(&self) -> Option<Instant> {
        let (&due, _) = self.slots.first_key_value()?;
        let now = Instant::now();
        Some(now + Duration::from_millis(due.saturating_sub(millis(now))))
    }

    /// Looks at every connection due by `now`: the silent ones are marked expired and
    /// woken, the others filed under their new deadlines, the ended ones forgotten.
    /// Returns how many expired.
    pub fn sweep(&mut self, now: Instant) -> usize {
        let now = millis(now);
        let mut expired = 0;
        while let Some(entry) = self.slots.first_entry() {
            if *entry.key() > now {
                break;
            }
            for weak in entry.remove() {
                let Some(outbox) = weak.upgrade() else {
                    continue;
                };
                match outbox.liveness().check(now) {
                    Due::Off => {}
                    Due::At(d) => self.file(d, weak),
                    Due::Expired => {
                        expired += 1;
                        outbox.wake();
                    }
                }
            }
        }
        expired
    }

    /// How many connections are filed (ended ones included until their slot comes).
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.slots.values().map(Vec::len).sum()
    }

    /// Whether nothing is filed.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }
}

/// The wheel shared by the connections and its task.
#[derive(Debug, Default)]
pub struct Supervisor {
    wheel: Mutex<Wheel>,
    /// Wakes the task when a deadline earlier than the one it sleeps for is filed.
    rearm: Notify,
}

impl Supervisor {
    fn lock(&self) -> std::sync::MutexGuard<'_, Wheel> {
        self.wheel.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Supervises the connection of `outbox` (after [`Liveness::start`]).
    pub fn watch(&self, outbox: &Arc<Outbox>, now: Instant) {
        let earlier = {
            let mut wheel = self.lock();
            let before = wheel.slots.first_key_value().map(|(&k, _)| k);
            wheel.watch(outbox, now) && wheel.slots.first_key_value().map(|(&k, _)| k) != before
        };
        if earlier {
            self.rearm.notify_one();
        }
    }
}

/// The wheel's task: sleeps until the next deadline, sweeps, until shutdown.
pub async fn run(supervisor: Arc<Supervisor>, mut shutdown: watch::Receiver<bool>) {
    loop {
        let next = supervisor.lock().next_due();
        let sleep = async {
            match next {
                Some(t) => tokio::time::sleep_until(t.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = sleep => {}
            _ = supervisor.rearm.notified() => {}
            _ = shutdown.changed() => return,
        }
        let expired = supervisor.lock().sweep(Instant::now());
        if expired > 0 {
            tracing::debug!(expired, "keep-alive deadlines passed");
        }
    }
}

#[cfg(test)]
#[path = "keepalive_tests.rs"]
mod tests;
