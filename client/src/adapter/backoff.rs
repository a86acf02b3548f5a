//! Decorrelated-jitter reconnect backoff: `next = min(cap, random(base, prev * 3))`.
//!
//! Owns: the delay sequence of one connection. Must never sleep itself (the connection
//! does, see [`super::Connection::pause`]) nor return a delay below `base` or above `cap`.

use std::time::Duration;

use rand::Rng;

/// The reconnect delay generator of one link.
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    prev: Duration,
}

impl Backoff {
    /// Starts at `base`; no delay exceeds `cap` (raised to `base` if smaller).
    pub fn new(base: Duration, cap: Duration) -> Backoff {
        Backoff {
            base,
            cap: cap.max(base),
            prev: base,
        }
    }

    /// The next delay.
    pub fn next_delay(&mut self) -> Duration {
        let lo = u64::try_from(self.base.as_micros()).unwrap_or(u64::MAX / 4);
        let prev = u64::try_from(self.prev.as_micros()).unwrap_or(u64::MAX / 4);
        let hi = prev.saturating_mul(3).max(lo.saturating_add(1));
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
        let mut b = Backoff::new(Duration::from_millis(10), Duration::from_millis(500));
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
