//! Per-route transforms: the [`Transform`] trait that library users implement, and the
//! built-in rate limit and sub-sampler.
//!
//! Owns: deciding, message by message, what a route emits. Must never do IO, block or read
//! the clock itself (the time is passed in, so tests are deterministic).

use std::time::{Duration, Instant};

use crate::message::Message;

/// A payload/topic transform on a route: one message in, zero or more out.
///
/// Called on the route's pump task for every message that passed the route's filter, after
/// topic remapping, in arrival order. Messages it returns keep their place in that order.
/// Implementations must not block; they may keep state (`&mut self`).
pub trait Transform: Send + 'static {
    /// Transforms `message` received at `now`.
    fn apply(&mut self, message: Message, now: Instant) -> Vec<Message>;
}

/// Lets at most `max` messages through per `per` window (fixed windows); the rest are dropped
/// and counted by the route as `filtered`.
#[derive(Debug, Clone)]
pub struct RateLimit {
    max: u32,
    per: Duration,
    window_start: Option<Instant>,
    used: u32,
}

impl RateLimit {
    /// At most `max` messages per `per`.
    pub fn new(max: u32, per: Duration) -> RateLimit {
        RateLimit {
            max,
            per,
            window_start: None,
            used: 0,
        }
    }
}

impl Transform for RateLimit {
    fn apply(&mut self, message: Message, now: Instant) -> Vec<Message> {
        let fresh = self
            .window_start
            .is_none_or(|start| now.saturating_duration_since(start) >= self.per);
        if fresh {
            self.window_start = Some(now);
            self.used = 0;
        }
        if self.used < self.max {
            self.used += 1;
            vec![message]
        } else {
            Vec::new()
        }
    }
}

/// Keeps one message in every `every` (the first, then every `every`-th after it).
#[derive(Debug, Clone)]
pub struct SubSample {
    every: u32,
    seen: u32,
}

impl SubSample {
    /// One in `every` (0 and 1 both mean every message).
    pub fn new(every: u32) -> SubSample {
        SubSample {
            every: every.max(1),
            seen: 0,
        }
    }
}

impl Transform for SubSample {
    fn apply(&mut self, message: Message, _now: Instant) -> Vec<Message> {
        let keep = self.seen.is_multiple_of(self.every);
        self.seen = self.seen.wrapping_add(1);
        if keep { vec![message] } else { Vec::new() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(n: u32) -> Message {
        Message::new(format!("t/{n}"), n.to_string(), 1)
    }

    #[test]
    fn rate_limit_passes_max_per_window_and_resets() {
        let t0 = Instant::now();
        let mut r = RateLimit::new(2, Duration::from_secs(1));
        let out: usize = (0..5).map(|n| r.apply(msg(n), t0).len()).sum();
        assert_eq!(out, 2);
        assert_eq!(r.apply(msg(9), t0 + Duration::from_millis(999)).len(), 0);
        assert_eq!(r.apply(msg(9), t0 + Duration::from_secs(1)).len(), 1);
    }

    #[test]
    fn sub_sample_keeps_one_in_n_starting_with_the_first() {
        let t0 = Instant::now();
        let mut s = SubSample::new(3);
        let kept: Vec<String> = (0..7)
            .flat_map(|n| s.apply(msg(n), t0))
            .map(|m| m.topic)
            .collect();
        assert_eq!(kept, ["t/0", "t/3", "t/6"]);
        let mut all = SubSample::new(0);
        assert_eq!(
            (0..4).map(|n| all.apply(msg(n), t0).len()).sum::<usize>(),
            4
        );
    }
}
