//! Connection admission: how many sockets the broker holds, which of them are served, and
//! in which order the others get in (SPEC §7).
//!
//! Owns three bounds, all taken in the accept loop, in accept order:
//! - a socket [`Ticket`] from a semaphore of `max_connections + admission_queue` permits,
//!   taken *before* `accept` (as mini-redis does): when all are out the listeners stop
//!   accepting, and new connections wait in the kernel's listen backlog;
//! - a place at the [`Gate`]: `max_connections` are served at once; the others wait in a
//!   FIFO for `admission_timeout`, before any byte of theirs is read;
//! - the connection rates: `connection_rate` in total (the accept loop waits for the next
//!   second) and `connection_rate_per_address` per source (closed at once).
//!
//! It never reads or writes a socket and never touches routing state: the connection task
//! reads the CONNECT (and refuses a connection whose wait timed out).

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{Notify, Semaphore, oneshot};
use tokio::time::Instant;

use crate::config::Limits;
use crate::metrics::Metrics;

/// Sources tracked per second for `connection_rate_per_address`; sources beyond it share
/// one budget (so rotating addresses gains at most one more source's worth).
const MAX_TRACKED_SOURCES: usize = 16_384;
/// First back-off after an accept error that is not the peer's (out of descriptors...).
const BACKOFF_MIN: Duration = Duration::from_millis(5);
/// Longest back-off after repeated accept errors.
const BACKOFF_MAX: Duration = Duration::from_secs(1);

/// Every bound on new connections, shared by all listeners.
#[derive(Debug)]
pub struct Admission {
    sockets: Arc<Sockets>,
    gate: Arc<Gate>,
    /// Queue length at which waiters that gave up are swept out of the FIFO.
    prune_at: usize,
    timeout: Duration,
    /// `connection_rate` and `connection_rate_per_address` (0: unlimited), read without
    /// taking the lock.
    total_rate: u32,
    per_address_rate: u32,
    rate: Mutex<Rates>,
    metrics: Arc<Metrics>,
}

/// The socket semaphore and the signal that one of its permits came back.
#[derive(Debug)]
struct Sockets {
    semaphore: Semaphore,
    released: Notify,
}

/// A socket the broker may hold (a permit of the socket semaphore), from accept to close.
/// One pointer: it lives in every connection task.
#[derive(Debug)]
pub struct Ticket {
    sockets: Arc<Sockets>,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.sockets.semaphore.add_permits(1);
        // Wakes an accept loop backing off after running out of descriptors.
        self.sockets.released.notify_waiters();
    }
}

/// What a connection task gets from the accept loop: one pointer (`None`: exempt), so
/// that each future it passes through stays small.
#[derive(Debug)]
pub struct Admit(Option<Box<AdmitInner>>);

#[derive(Debug)]
struct AdmitInner {
    ticket: Ticket,
    entry: Entry,
}

/// A connection's place at the gate.
#[derive(Debug)]
enum Entry {
    /// Served now.
    Now(Serving),
    /// Waiting in the FIFO.
    Wait(Waiting),
}

/// A place among the `max_connections` served; given back (to the next waiter, if any)
/// when dropped.
#[derive(Debug)]
pub struct Serving {
    gate: Option<Arc<Gate>>,
}

impl Drop for Serving {
    fn drop(&mut self) {
        if let Some(gate) = self.gate.take() {
            Gate::release(&gate);
        }
    }
}

/// A connection waiting for a place; keeps the `connections_waiting` gauge.
#[derive(Debug)]
struct Waiting {
    rx: oneshot::Receiver<Serving>,
    metrics: Arc<Metrics>,
}

impl Drop for Waiting {
    fn drop(&mut self) {
        self.metrics
            .connections_waiting
            .fetch_sub(1, Ordering::Relaxed);
    }
}

/// The admission queue gave up on a connection: it is to be refused. Holds its socket
/// ticket until then.
#[derive(Debug)]
pub struct TimedOut {
    _ticket: Ticket,
}

impl Admit {
    /// A connection not subject to admission (an in-process stream given to the broker).
    pub fn exempt() -> Admit {
        Admit(None)
    }

    /// Waits for a place among the served connections, at most `timeout`; the returned
    /// value is to be held until the connection ends.
    pub async fn admitted(self, timeout: Duration) -> Result<Admitted, TimedOut> {
        let Some(inner) = self.0 else {
            return Ok(Admitted { _held: None });
        };
        let AdmitInner { ticket, entry } = *inner;
        let serving = match entry {
            Entry::Now(s) => s,
            Entry::Wait(mut w) => match tokio::time::timeout(timeout, &mut w.rx).await {
                Ok(Ok(s)) => s,
                // The gate is gone (shutdown) or the wait timed out.
                Ok(Err(_)) | Err(_) => return Err(TimedOut { _ticket: ticket }),
            },
        };
        Ok(Admitted {
            _held: Some((serving, ticket)),
        })
    }
}

/// An admitted connection's place and socket ticket (`None`: exempt); dropped when the
/// connection ends, the place first, so that the accept loop woken by the ticket finds
/// the place free. Two pointers.
#[derive(Debug)]
pub struct Admitted {
    _held: Option<(Serving, Ticket)>,
}

/// The served count and the FIFO of connections waiting for a place.
#[derive(Debug)]
pub struct Gate {
    max: usize,
    state: Mutex<GateState>,
}

#[derive(Debug, Default)]
struct GateState {
    serving: usize,
    waiting: VecDeque<oneshot::Sender<Serving>>,
}

impl Gate {
    fn new(max: usize) -> Arc<Gate> {
        Arc::new(Gate {
            max,
            state: Mutex::new(GateState::default()),
        })
    }

    fn lock(&self) -> MutexGuard<'_, GateState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A place now, or a place in the queue behind everyone already waiting.
    fn enter(self: &Arc<Gate>, prune_at: usize) -> Result<Serving, oneshot::Receiver<Serving>> {
        let mut st = self.lock();
        if st.serving < self.max && st.waiting.is_empty() {
            st.serving += 1;
            return Ok(Serving {
                gate: Some(self.clone()),
            });
        }
        if st.waiting.len() >= prune_at {
            // Waiters that gave up leave their sender behind until a place frees up.
            st.waiting.retain(|tx| !tx.is_closed());
        }
        let (tx, rx) = oneshot::channel();
        st.waiting.push_back(tx);
        Err(rx)
    }

    /// Hands a freed place to the first waiter still waiting, or gives it back.
    fn release(self: &Arc<Gate>) {
        loop {
            let next = {
                let mut st = self.lock();
                match st.waiting.pop_front() {
                    Some(tx) => tx,
                    None => {
                        st.serving = st.serving.saturating_sub(1);
                        return;
                    }
                }
            };
            // Sent without the lock held: a place dropped by a waiter that just gave up
            // comes back here through `Serving::drop`.
            match next.send(Serving {
                gate: Some(self.clone()),
            }) {
                Ok(()) => return,
                Err(mut place) => place.gate = None,
            }
        }
    }

    /// Connections served now.
    pub fn serving(&self) -> usize {
        self.lock().serving
    }
}

/// The per-second connection counters.
#[derive(Debug)]
struct Rates {
    window_start: Instant,
    in_window: u32,
    sources: HashMap<u128, u32>,
    overflow: u32,
}

/// The source a per-address rate counts against: the IPv4 address, or the IPv6 /64.
fn source_key(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => match a.to_ipv4_mapped() {
            Some(v4) => u128::from(u32::from(v4)),
            None => (u128::from(a) >> 64) << 64 | 1 << 32,
        },
    }
}

impl Rates {
    fn roll(&mut self, now: Instant) {
        if now.duration_since(self.window_start) >= Duration::from_secs(1) {
            self.window_start = now;
            self.in_window = 0;
            self.sources.clear();
            self.overflow = 0;
        }
    }
}

impl Admission {
    /// The bounds of `limits`, counting into `metrics`.
    pub fn new(limits: &Limits, metrics: Arc<Metrics>) -> Admission {
        let sockets = limits
            .max_connections
            .saturating_add(limits.admission_queue)
            .min(Semaphore::MAX_PERMITS);
        Admission {
            sockets: Arc::new(Sockets {
                semaphore: Semaphore::new(sockets),
                released: Notify::new(),
            }),
            gate: Gate::new(limits.max_connections),
            prune_at: limits.admission_queue.saturating_mul(2).max(16),
            timeout: limits.admission_timeout,
            total_rate: limits.connection_rate,
            per_address_rate: limits.connection_rate_per_address,
            rate: Mutex::new(Rates {
                window_start: Instant::now(),
                in_window: 0,
                sources: HashMap::new(),
                overflow: 0,
            }),
            metrics,
        }
    }

    fn rates(&self) -> MutexGuard<'_, Rates> {
        self.rate.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits for a socket ticket, then for the total connection rate to allow one more
    /// accept. Called before `accept`.
    pub async fn ticket(&self) -> Ticket {
        match self.sockets.semaphore.acquire().await {
            // Given back by `Ticket::drop`.
            Ok(p) => p.forget(),
            // The semaphore is never closed; wait forever rather than accept unbounded.
            Err(_) => std::future::pending().await,
        }
        let ticket = Ticket {
            sockets: self.sockets.clone(),
        };
        if self.total_rate == 0 {
            return ticket;
        }
        loop {
            let wait_until = {
                let mut r = self.rates();
                r.roll(Instant::now());
                if r.in_window < self.total_rate {
                    r.in_window += 1;
                    return ticket;
                }
                r.window_start + Duration::from_secs(1)
            };
            tokio::time::sleep_until(wait_until).await;
        }
    }

    /// Whether `ip` is within `connection_rate_per_address`; counts a refusal.
    pub fn source_allowed(&self, ip: IpAddr) -> bool {
        if self.per_address_rate == 0 {
            return true;
        }
        let allowed = {
            let mut r = self.rates();
            r.roll(Instant::now());
            let limit = self.per_address_rate;
            let key = source_key(ip);
            let full = r.sources.len() >= MAX_TRACKED_SOURCES;
            let count = match r.sources.get_mut(&key) {
                Some(n) => n,
                None if full => &mut r.overflow,
                None => r.sources.entry(key).or_insert(0),
            };
            *count = count.saturating_add(1);
            *count <= limit
        };
        if !allowed {
            Metrics::add(&self.metrics.connections_rate_limited, 1);
        }
        allowed
    }

    /// Takes the connection's place at the gate, in accept order.
    pub fn enter(&self, ticket: Ticket) -> Admit {
        let entry = match self.gate.enter(self.prune_at) {
            Ok(s) => Entry::Now(s),
            Err(rx) => {
                Metrics::add(&self.metrics.connections_queued, 1);
                Metrics::add(&self.metrics.connections_waiting, 1);
                Entry::Wait(Waiting {
                    rx,
                    metrics: self.metrics.clone(),
                })
            }
        };
        Admit(Some(Box::new(AdmitInner { ticket, entry })))
    }

    /// `admission_timeout`.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Connections served now (for the `max_connections` check at CONNECT).
    pub fn serving(&self) -> usize {
        self.gate.serving()
    }

    /// Backs off after a failed accept: not at all for errors of one connection (reset or
    /// aborted before it was accepted); otherwise until a connection of ours closes (its
    /// descriptor is free again) or `backoff` passes, whichever is first. Returns the next
    /// back-off, doubled up to one second.
    pub async fn back_off(&self, error: &std::io::Error, backoff: Duration) -> Duration {
        use std::io::ErrorKind::{ConnectionAborted, ConnectionReset, Interrupted};
        if matches!(
            error.kind(),
            ConnectionAborted | ConnectionReset | Interrupted
        ) {
            return backoff;
        }
        let backoff = backoff.clamp(BACKOFF_MIN, BACKOFF_MAX);
        tokio::select! {
            _ = self.sockets.released.notified() => {}
            _ = tokio::time::sleep(backoff) => {}
        }
        (backoff * 2).min(BACKOFF_MAX)
    }

    /// The first back-off after an accept error.
    pub fn first_backoff() -> Duration {
        BACKOFF_MIN
    }
}

#[cfg(test)]
#[path = "admission_tests.rs"]
mod tests;
