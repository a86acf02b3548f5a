//! The pump's proxy subscriptions: which remote filters `interest = true` routes hold, kept
//! in step with the local broker's interest document (docs/interest.md).
//!
//! Owns: the last document seen, each interest route's proxy set, the filters subscribed on
//! the remote session (`sent`, also written to `<queue dir>/proxied.json` so that a restarted
//! metabroker removes what its previous run left in its persistent remote session), and the
//! `interest/...` counters. On every remote (re)connection the whole set is subscribed again
//! and everything else it ever subscribed is unsubscribed: never a patch on top of a state
//! the remote may have lost. Must never route messages or ack them (the pump does).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::Ordering::Relaxed;

use crate::bridge::{Pump, qos};
use crate::interest::{self, Document, ProxySet};
use crate::link::Side;
use crate::stats::bump;

/// Proxy-subscription state of one bridge.
#[derive(Debug, Default)]
pub(crate) struct Proxy {
    /// The local broker's last document; `None` until one arrives (a plain broker never
    /// sends one: its routes subscribe their whole filter).
    doc: Option<Document>,
    /// Per route: its proxy set when the route has `interest = true`.
    sets: Vec<Option<ProxySet>>,
    /// Filters subscribed on the remote session by this bridge's proxies.
    sent: BTreeSet<String>,
    /// Where `sent` is kept across runs.
    file: Option<PathBuf>,
}

impl Proxy {
    /// State for `interest` flags per route; `file` keeps the remote filters across runs.
    pub(crate) fn new(interest: &[bool], file: Option<PathBuf>) -> Proxy {
        let sent = file
            .as_ref()
            .and_then(|f| std::fs::read(f).ok())
            .and_then(|b| serde_json::from_slice::<BTreeSet<String>>(&b).ok())
            .unwrap_or_default();
        Proxy {
            doc: None,
            sets: interest
                .iter()
                .map(|&i| i.then(ProxySet::default))
                .collect(),
            sent,
            file,
        }
    }

    /// Whether any route proxies.
    pub(crate) fn active(&self) -> bool {
        self.sets.iter().any(Option::is_some)
    }

    /// Whether route `i` proxies (its remote filter is not subscribed as a whole).
    pub(crate) fn proxies(&self, i: usize) -> bool {
        self.sets.get(i).is_some_and(Option::is_some)
    }

    fn save(&self) {
        if let Some(f) = &self.file
            && let Ok(text) = serde_json::to_vec(&self.sent)
            && let Err(e) = std::fs::write(f, text)
        {
            tracing::warn!(error = %e, file = %f.display(), "cannot keep the proxy filters");
        }
    }
}

impl Pump {
    /// A document arrived on the local link: recompute the sets and send the difference.
    pub(crate) async fn on_interest(&mut self, payload: &[u8]) {
        let Some(doc) = interest::parse(payload) else {
            tracing::warn!(bridge = %self.config.name, "unreadable interest document");
            return;
        };
        self.stats.interest_version.store(doc.version, Relaxed);
        self.proxy.doc = Some(doc);
        self.sync_proxies(false).await;
    }

    /// Recomputes every interest route's set; sends it when the remote link is up: the whole
    /// set after a (re)connection (`full`), else only what changed.
    pub(crate) async fn sync_proxies(&mut self, full: bool) {
        if !self.proxy.active() {
            return;
        }
        let own = self.config.local_client_id();
        let max = self.config.max_proxy_filters;
        let mut desired: BTreeMap<String, u8> = BTreeMap::new();
        for (i, route) in self.routes.iter().enumerate() {
            let Some(Some(old)) = self.proxy.sets.get(i) else {
                continue;
            };
            let set = match &self.proxy.doc {
                Some(d) => interest::proxy_set(d, &own, &route.local, &route.out_map, max),
                None => ProxySet {
                    filters: BTreeMap::from([(route.out_map.filter_image(&route.local), 1)]),
                    merged: false,
                },
            };
            if set.merged && (!old.merged || set.filters != old.filters) {
                bump(&self.stats.interest_merges);
            }
            for f in set.filters.keys() {
                let q = desired.entry(f.clone()).or_insert(0);
                *q = (*q).max(route.qos);
            }
            if let Some(slot) = self.proxy.sets.get_mut(i) {
                *slot = Some(set);
            }
        }
        self.stats
            .interest_filters
            .store(desired.len() as u64, Relaxed);
        if let Ok(mut now) = self.stats.proxied.lock() {
            *now = desired.keys().cloned().collect();
        }
        if !self.remote_connected() {
            return;
        }
        let fixed: BTreeSet<String> = self
            .filters(Side::Remote)
            .into_iter()
            .map(|(f, _)| f)
            .collect();
        for f in self.proxy.sent.iter() {
            if !desired.contains_key(f) && !fixed.contains(f) {
                self.remote.unsubscribe(f.clone()).await;
            }
        }
        for (f, q) in &desired {
            if full || !self.proxy.sent.contains(f) {
                self.remote.subscribe_proxy(f.clone(), qos(*q)).await;
            }
        }
        if full {
            bump(&self.stats.interest_resyncs);
        }
        let sent: BTreeSet<String> = desired.into_keys().collect();
        if sent != self.proxy.sent {
            self.proxy.sent = sent;
            self.proxy.save();
        }
    }
}
