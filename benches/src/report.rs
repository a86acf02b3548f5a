//! The one machine-readable result line of a run, and the broker's memory as /proc shows it.
//!
//! Owns the [`Report`] schema (printed as one JSON object per run) and the RSS sampler. It
//! never reads anything but `/proc/<pid>/status` of the PID it was given.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use canopy_proto::QoS;
use serde::Serialize;

use crate::hist::Histogram;

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Latency {
    /// Samples recorded.
    pub samples: u64,
    /// Median.
    pub p50_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
    /// 99.9th percentile.
    pub p999_us: f64,
    /// Largest.
    pub max_us: f64,
}

impl From<&Histogram> for Latency {
    fn from(h: &Histogram) -> Self {
        let us = |ns: u64| (ns as f64 / 1000.0 * 10.0).round() / 10.0;
        Latency {
            samples: h.count(),
            p50_us: us(h.quantile(0.50)),
            p99_us: us(h.quantile(0.99)),
            p999_us: us(h.quantile(0.999)),
            max_us: us(h.max()),
        }
    }
}

/// Broker memory, KiB, from `VmRSS`.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct Rss {
    /// Before the scenario connected anything.
    pub start_kib: u64,
    /// Largest value sampled (every 100 ms) during the run.
    pub peak_kib: u64,
    /// At the end of the measured phase.
    pub end_kib: u64,
}

/// The result of one run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Scenario name.
    pub scenario: crate::Scenario,
    /// `--label`, if given.
    pub label: Option<String>,
    /// Every option in force.
    pub params: crate::Options,
    /// Messages published per second (measured phase).
    pub msgs_per_s: f64,
    /// Messages received per second, over all subscribers.
    pub deliveries_per_s: f64,
    /// Messages published in the measured phase.
    pub sent: u64,
    /// Messages received in the measured phase, over all subscribers.
    pub delivered: u64,
    /// Deliveries expected (sent times matching subscribers).
    pub expected: u64,
    /// Deliveries that never arrived.
    pub lost: u64,
    /// Length of the measured phase, seconds.
    pub elapsed_s: f64,
    /// End-to-end latency (publisher write to subscriber read).
    pub latency: Latency,
    /// Broker RSS, when `--broker-pid` was given.
    pub rss: Option<Rss>,
    /// Scenario-specific figures (connect rate, RSS per connection, first-publish time, ...).
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// `VmRSS` of `pid`, KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Samples a PID's RSS every 100 ms until dropped.
#[derive(Debug)]
pub struct RssSampler {
    pid: u32,
    start: u64,
    peak: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl RssSampler {
    /// Starts sampling `pid`; `None` without a PID.
    pub fn start(pid: Option<u32>) -> Option<RssSampler> {
        let pid = pid?;
        let start = rss_kib(pid).unwrap_or(0);
        let peak = Arc::new(AtomicU64::new(start));
        let p = peak.clone();
        let task = tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(100)).await;
                if let Some(v) = rss_kib(pid) {
                    p.fetch_max(v, Ordering::Relaxed);
                }
            }
        });
        Some(RssSampler {
            pid,
            start,
            peak,
            task,
        })
    }

    /// RSS now, start and peak so far.
    pub fn finish(&self) -> Rss {
        let end = rss_kib(self.pid).unwrap_or(0);
        Rss {
            start_kib: self.start,
            peak_kib: self.peak.load(Ordering::Relaxed).max(end),
            end_kib: end,
        }
    }
}

impl Drop for RssSampler {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serialises a QoS as its number.
pub(crate) fn qos<S: serde::Serializer>(q: &QoS, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u8(*q as u8)
}

/// Durations as seconds.
pub(crate) mod secs {
    use std::time::Duration;

    pub(crate) fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }
}

/// Optional durations as seconds.
pub(crate) mod secs_opt {
    use std::time::Duration;

    pub(crate) fn serialize<S: serde::Serializer>(
        d: &Option<Duration>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(&d.as_secs_f64()),
            None => s.serialize_none(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_rss_is_read_from_proc() {
        let kib = rss_kib(std::process::id()).unwrap();
        assert!(kib > 0);
    }

    #[test]
    fn missing_pid_has_no_rss() {
        assert_eq!(rss_kib(u32::MAX), None);
    }
}
