//! Decorrelated-jitter reconnect backoff: `next = min(cap, random(base, prev * 3))`.
//!
//! Owns: the delay sequence. Must never return a delay below `base` or above `cap`.

use std::time::Duration;

use rand::Rng;

use crate::config::BackoffConfig;

/// The reconnect delay generator of one link.
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    prev: Duration,
}

impl Backoff {
    /// Starts at `base`.
    pub fn new(config: BackoffConfig) -> Backoff {
        Backoff {
            base: config.base,
            cap: config.cap.max(config.base),
            prev: config.base,
        }
    }

    /// The next delay.
    pub fn next_delay(&mut self) -> Duration {
        let lo = self.base.as_micros() as u64;
        let hi = (self.prev.as_micros() as u64).saturating_mul(3).max(lo + 1);
        let pick = rand::rng().random_range(lo..hi);
        self.prev = Duration::from_micros(pick).min(self.cap);
        self.prev
    }

    /// Back to `base` after a successful connection.
    pub fn reset(&mut self) {
        self.prev = self.base;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_stay_between_base_and_cap_and_grow() {
        let mut b = Backoff::new(BackoffConfig {
            base: Duration::from_millis(10),
            cap: Duration::from_millis(500),
        });
        let delays: Vec<Duration> = (0..200).map(|_| b.next_delay()).collect();
        assert!(
            delays
                .iter()
                .all(|d| *d >= Duration::from_millis(10) && *d <= Duration::from_millis(500))
        );
        assert!(
            delays.iter().any(|d| *d > Duration::from_millis(100)),
            "never grew"
        );
        b.reset();
        assert!(b.next_delay() < Duration::from_millis(30));
    }
}
