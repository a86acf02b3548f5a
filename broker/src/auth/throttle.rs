//! Growing delays for source addresses that keep failing to log in.
//!
//! Owns a fixed-capacity table of recent failures per source (an IPv4 address, or the /64 of
//! an IPv6 address so one host cannot rotate through its prefix). Must never grow past its
//! capacity (the entry whose last failure is oldest is evicted) and never read the clock
//! itself (`now` is passed in, so tests need no sleeping).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::time::{Duration, Instant};

/// The delay policy and the table's size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ThrottlePolicy {
    /// Failures from one source answered without delay.
    pub free_failures: u32,
    /// The delay after the first failure beyond the free ones; doubles with each further one.
    pub base_delay: Duration,
    /// The longest delay.
    pub max_delay: Duration,
    /// A source whose last failure is this old starts afresh.
    pub forget_after: Duration,
    /// Most sources remembered at once.
    pub capacity: usize,
}

impl Default for ThrottlePolicy {
    /// 3 free failures, then 0.5 s doubling up to 10 s, forgotten after 15 minutes, 4096
    /// sources (about 160 KiB at most).
    fn default() -> Self {
        ThrottlePolicy {
            free_failures: 3,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(10),
            forget_after: Duration::from_secs(15 * 60),
            capacity: 4096,
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    failures: u32,
    last: Instant,
}

/// Recent login failures by source, bounded by [`ThrottlePolicy::capacity`].
#[derive(Debug)]
pub struct LoginThrottle {
    policy: ThrottlePolicy,
    entries: HashMap<IpAddr, Entry>,
}

impl LoginThrottle {
    /// An empty table with this policy.
    pub fn new(policy: ThrottlePolicy) -> LoginThrottle {
        LoginThrottle {
            policy,
            entries: HashMap::new(),
        }
    }

    /// How long to wait before answering a login attempt from `peer` at `now`.
    pub fn delay(&self, peer: IpAddr, now: Instant) -> Duration {
        let Some(e) = self.entries.get(&source(peer)) else {
            return Duration::ZERO;
        };
        if now.saturating_duration_since(e.last) >= self.policy.forget_after {
            return Duration::ZERO;
        }
        let Some(over) = e.failures.checked_sub(self.policy.free_failures) else {
            return Duration::ZERO;
        };
        let factor = 1u32.checked_shl(over).unwrap_or(u32::MAX);
        self.policy
            .base_delay
            .saturating_mul(factor)
            .min(self.policy.max_delay)
    }

    /// Records a failed login from `peer` at `now`.
    pub fn failed(&mut self, peer: IpAddr, now: Instant) {
        let key = source(peer);
        let forget = self.policy.forget_after;
        if let Some(e) = self.entries.get_mut(&key) {
            if now.saturating_duration_since(e.last) >= forget {
                e.failures = 0;
            }
            e.failures = e.failures.saturating_add(1);
            e.last = now;
            return;
        }
        if self.policy.capacity == 0 {
            return;
        }
        if self.entries.len() >= self.policy.capacity {
            let oldest = self
                .entries
                .iter()
                .min_by_key(|(_, e)| e.last)
                .map(|(k, _)| *k);
            if let Some(k) = oldest {
                self.entries.remove(&k);
            }
        }
        self.entries.insert(
            key,
            Entry {
                failures: 1,
                last: now,
            },
        );
    }

    /// Number of sources remembered.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no source is remembered.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// The key for a peer: IPv4 (IPv4-mapped IPv6 included) as is, IPv6 by its /64.
fn source(peer: IpAddr) -> IpAddr {
    match peer.to_canonical() {
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn delay_grows_after_the_free_failures_and_is_capped() {
        let mut t = LoginThrottle::new(ThrottlePolicy::default());
        let now = Instant::now();
        let peer = ip("192.0.2.1");
        let mut seen = Vec::new();
        for _ in 0..10 {
            seen.push(t.delay(peer, now).as_millis());
            t.failed(peer, now);
        }
        assert_eq!(seen, [0, 0, 0, 500, 1000, 2000, 4000, 8000, 10_000, 10_000]);
        assert_eq!(t.delay(ip("192.0.2.2"), now), Duration::ZERO);
    }

    #[test]
    fn failures_are_forgotten_after_a_quiet_period() {
        let policy = ThrottlePolicy::default();
        let mut t = LoginThrottle::new(policy);
        let now = Instant::now();
        let peer = ip("192.0.2.1");
        for _ in 0..5 {
            t.failed(peer, now);
        }
        assert!(t.delay(peer, now) > Duration::ZERO);
        let later = now + policy.forget_after;
        assert_eq!(t.delay(peer, later), Duration::ZERO);
        t.failed(peer, later);
        assert_eq!(t.delay(peer, later), Duration::ZERO);
    }

    #[test]
    fn the_table_never_exceeds_its_capacity_and_evicts_the_oldest() {
        let policy = ThrottlePolicy {
            capacity: 8,
            free_failures: 0,
            ..ThrottlePolicy::default()
        };
        let mut t = LoginThrottle::new(policy);
        let start = Instant::now();
        for i in 0..1000u32 {
            let peer = IpAddr::from(i.to_be_bytes());
            t.failed(peer, start + Duration::from_millis(u64::from(i)));
            assert!(t.len() <= 8);
        }
        assert_eq!(t.len(), 8);
        let newest = IpAddr::from(999u32.to_be_bytes());
        let evicted = IpAddr::from(0u32.to_be_bytes());
        let now = start + Duration::from_secs(1);
        assert!(t.delay(newest, now) > Duration::ZERO);
        assert_eq!(t.delay(evicted, now), Duration::ZERO);
    }

    #[test]
    fn ipv6_hosts_are_grouped_by_their_64_and_mapped_ipv4_by_address() {
        let mut t = LoginThrottle::new(ThrottlePolicy {
            free_failures: 0,
            ..ThrottlePolicy::default()
        });
        let now = Instant::now();
        t.failed(ip("2001:db8:1:2::1"), now);
        assert!(t.delay(ip("2001:db8:1:2:ffff::9"), now) > Duration::ZERO);
        assert_eq!(t.delay(ip("2001:db8:1:3::1"), now), Duration::ZERO);
        t.failed(ip("::ffff:192.0.2.7"), now);
        assert!(t.delay(ip("192.0.2.7"), now) > Duration::ZERO);
    }
}
