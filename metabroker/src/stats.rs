//! Counters of one bridge, shared between its pump (which writes) and whoever reads them
//! (tests, the embedding broker). Published under `<state_prefix>/<name>/` (default
//! `$SYS/metabroker/<name>/`) by the pump.
//!
//! Owns: the counter layout and topic names. Must never block (atomics, and one mutex held
//! only to copy the proxied filter set).

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Counters of one route.
#[derive(Debug, Default)]
pub struct RouteStats {
    /// Messages the destination accepted (or QoS 0 messages sent).
    pub forwarded: AtomicU64,
    /// Messages written to the on-disk queue.
    pub queued: AtomicU64,
    /// Messages dropped: queue full, QoS 0 while the destination was away, or refused by
    /// the destination (error reason code).
    pub dropped: AtomicU64,
    /// Messages removed by the route's rate limit, sub-sampling or transform.
    pub filtered: AtomicU64,
}

/// Counters of one bridge.
#[derive(Debug, Default)]
pub struct BridgeStats {
    /// One per route, in configuration order.
    pub routes: Vec<RouteStats>,
    /// Reconnections of the local link (after the first connection).
    pub reconnects_local: AtomicU64,
    /// Reconnections of the remote link (after the first connection).
    pub reconnects_remote: AtomicU64,
    /// Messages dropped by the loop guard (hop marker names this node or is too long).
    pub loops: AtomicU64,
    /// Messages waiting on disk for the remote (out lane).
    pub queue_out: AtomicU64,
    /// Messages waiting on disk for the local broker (in lane).
    pub queue_in: AtomicU64,
    /// Both links are up.
    pub connected: AtomicBool,
    /// Distinct remote filters proxied by `interest` routes now.
    pub interest_filters: AtomicU64,
    /// Times a proxy set had to be merged into covering wildcards (`max_proxy_filters`).
    pub interest_merges: AtomicU64,
    /// Times the whole proxy set was subscribed again after the remote link came up.
    pub interest_resyncs: AtomicU64,
    /// Version of the last interest document read from the local broker.
    pub interest_version: AtomicU64,
    /// The remote filters proxied now (what `interest_filters` counts).
    pub proxied: Mutex<BTreeSet<String>>,
}

impl BridgeStats {
    pub(crate) fn new(routes: usize) -> BridgeStats {
        BridgeStats {
            routes: (0..routes).map(|_| RouteStats::default()).collect(),
            ..BridgeStats::default()
        }
    }

    /// The remote filters proxied now by `interest` routes.
    pub fn proxied(&self) -> BTreeSet<String> {
        self.proxied.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Sum of a counter over all routes.
    pub fn total(&self, pick: impl Fn(&RouteStats) -> &AtomicU64) -> u64 {
        self.routes
            .iter()
            .map(|r| pick(r).load(Ordering::Relaxed))
            .sum()
    }

    /// `(topic suffix, value)` pairs as published under `<state_prefix>/<name>/`.
    pub fn snapshot(&self) -> Vec<(String, u64)> {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut out = vec![
            ("reconnects/local".to_owned(), get(&self.reconnects_local)),
            ("reconnects/remote".to_owned(), get(&self.reconnects_remote)),
            ("loops".to_owned(), get(&self.loops)),
            ("queue/out".to_owned(), get(&self.queue_out)),
            ("queue/in".to_owned(), get(&self.queue_in)),
            ("forwarded".to_owned(), self.total(|r| &r.forwarded)),
            ("queued".to_owned(), self.total(|r| &r.queued)),
            ("dropped".to_owned(), self.total(|r| &r.dropped)),
            ("interest/filters".to_owned(), get(&self.interest_filters)),
            ("interest/merges".to_owned(), get(&self.interest_merges)),
            ("interest/resyncs".to_owned(), get(&self.interest_resyncs)),
            ("interest/version".to_owned(), get(&self.interest_version)),
        ];
        for (i, r) in self.routes.iter().enumerate() {
            out.push((format!("route/{i}/forwarded"), get(&r.forwarded)));
            out.push((format!("route/{i}/queued"), get(&r.queued)));
            out.push((format!("route/{i}/dropped"), get(&r.dropped)));
            out.push((format!("route/{i}/filtered"), get(&r.filtered)));
        }
        out
    }
}

pub(crate) fn bump(a: &AtomicU64) {
    a.fetch_add(1, Ordering::Relaxed);
}
