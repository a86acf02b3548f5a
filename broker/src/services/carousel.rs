//! The map carousel (SPEC §5): retained messages under a filter re-sent round after
//! round, spread evenly over `period`, so that late or lossy receivers fill their gaps.
//!
//! Owns each carousel's progress through its round and its next deadline. A round takes
//! the retained messages under the filter as they stand when it begins; the byte cap
//! stretches a round rather than bursting. It re-routes retained messages through its
//! [`Host`] and never changes them.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use canopy_proto::{TopicFilter, TopicName};

use super::{Host, Service};
use crate::config::CarouselConfig;

/// Shortest time between two shares of one carousel.
const MIN_TICK: Duration = Duration::from_millis(10);

/// One carousel's progress through its period.
#[derive(Debug)]
struct Carousel {
    filter: TopicFilter,
    period: Duration,
    max_bytes_per_sec: u64,
    /// Topics still to send in this round.
    pending: VecDeque<TopicName>,
    /// When this round began.
    round_start: Option<Instant>,
    /// Time between two shares.
    tick: Duration,
    /// Messages per share.
    per_tick: usize,
    /// When the next share is due.
    next: Instant,
}

/// Every configured carousel.
#[derive(Debug)]
pub struct Carousels {
    carousels: Vec<Carousel>,
}

impl Carousels {
    /// The carousels of `config`, each starting its first round at `now`.
    pub fn new(config: &[CarouselConfig], now: Instant) -> Carousels {
        Carousels {
            carousels: config
                .iter()
                .map(|c| Carousel {
                    filter: c.filter.clone(),
                    period: c.period,
                    max_bytes_per_sec: c.max_bytes_per_sec,
                    pending: VecDeque::new(),
                    round_start: None,
                    tick: c.period,
                    per_tick: 1,
                    next: now,
                })
                .collect(),
        }
    }
}

impl Service for Carousels {
    fn name(&self) -> &'static str {
        "carousel"
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.carousels.iter().map(|c| c.next).min()
    }

    fn handle_timeout(&mut self, host: &mut dyn Host) {
        let now = host.now();
        for c in &mut self.carousels {
            if c.next <= now {
                c.next = c.share(host, now);
            }
        }
    }
}

impl Carousel {
    /// Sends the next share and returns when the one after is due.
    fn share(&mut self, host: &mut dyn Host, now: Instant) -> Instant {
        if self.pending.is_empty() {
            if let Some(start) = self.round_start {
                let next = start + self.period;
                if now < next {
                    return next;
                }
            }
            let mut topics = VecDeque::new();
            host.for_each_retained(&self.filter, &mut |t, _| topics.push_back(t.clone()));
            self.round_start = Some(now);
            let n = u32::try_from(topics.len().max(1)).unwrap_or(u32::MAX);
            self.tick = (self.period / n).max(MIN_TICK);
            let ticks = (self.period.as_secs_f64() / self.tick.as_secs_f64()).max(1.0);
            self.per_tick = ((topics.len() as f64) / ticks).ceil().max(1.0) as usize;
            self.pending = topics;
            if self.pending.is_empty() {
                return now + self.period;
            }
        }
        let budget = if self.max_bytes_per_sec == 0 {
            u64::MAX
        } else {
            ((self.max_bytes_per_sec as f64) * self.tick.as_secs_f64()).max(1.0) as u64
        };
        let mut batch = Vec::with_capacity(self.per_tick);
        for _ in 0..self.per_tick {
            match self.pending.pop_front() {
                Some(t) => batch.push(t),
                None => break,
            }
        }
        let mut spent = 0u64;
        let mut sent = 0;
        for topic in &batch {
            if spent >= budget {
                break;
            }
            sent += 1;
            let Some(msg) = host.retained(topic) else {
                continue;
            };
            let deliveries = host.route(&msg) as u64;
            spent = spent.saturating_add(msg.payload.len() as u64 * deliveries);
        }
        // What the byte cap held back goes first next time.
        for t in batch.into_iter().skip(sent).rev() {
            self.pending.push_front(t);
        }
        let wait = if spent > budget && budget > 0 {
            self.tick.mul_f64((spent as f64 / budget as f64).min(100.0))
        } else {
            self.tick
        };
        now + wait
    }
}
