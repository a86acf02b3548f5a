//! The mover: clients connected here that may belong elsewhere wait in a queue and are sent
//! away at most `move_rate` per second (a token bucket refilled from the router's clock,
//! bursting at most one tick's worth), never all at once.
//!
//! Owns the queue and the budget. Must never decide where a client belongs (the caller's
//! closure does, at the moment of the move, so a client whose situation changed meanwhile
//! stays) and never reads a clock of its own.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::Host;

/// How often queued moves are worked off.
pub(super) const TICK: Duration = Duration::from_millis(100);

/// Queued clients and the rate budget.
#[derive(Debug)]
pub(super) struct Mover {
    rate: u32,
    queue: VecDeque<Arc<str>>,
    queued: HashSet<Arc<str>>,
    tokens: f64,
    last: Instant,
}

impl Mover {
    /// A mover allowing `rate` moves per second, its budget full at `now`.
    pub(super) fn new(rate: u32, now: Instant) -> Mover {
        let mut m = Mover {
            rate,
            queue: VecDeque::new(),
            queued: HashSet::new(),
            tokens: 0.0,
            last: now,
        };
        m.tokens = m.burst();
        m
    }

    /// The most moves in one go: one tick's worth, at least one.
    fn burst(&self) -> f64 {
        (f64::from(self.rate) * TICK.as_secs_f64()).max(1.0)
    }

    /// Queues `client_id` once (a client already waiting keeps its place).
    pub(super) fn enqueue(&mut self, client_id: Arc<str>) {
        if self.queued.insert(client_id.clone()) {
            self.queue.push_back(client_id);
        }
    }

    /// Whether nobody waits.
    pub(super) fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// When [`Mover::run`] has work, if anyone waits.
    pub(super) fn due(&self) -> Option<Instant> {
        (!self.queue.is_empty()).then(|| self.last + TICK)
    }

    /// Refills the budget to the host's time and moves queued clients while it lasts:
    /// `target(id)` names the Server Reference of a client that must go (`None`: it stays,
    /// costing nothing). A client without an open connection costs nothing either.
    pub(super) fn run(
        &mut self,
        host: &mut dyn Host,
        mut target: impl FnMut(&str) -> Option<String>,
    ) {
        let now = host.now();
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * f64::from(self.rate)).min(self.burst());
        self.last = now;
        while self.tokens >= 1.0 {
            let Some(id) = self.queue.pop_front() else {
                break;
            };
            self.queued.remove(&id);
            if let Some(reference) = target(&id)
                && host.move_client(&id, &reference)
            {
                self.tokens -= 1.0;
            }
        }
    }
}
