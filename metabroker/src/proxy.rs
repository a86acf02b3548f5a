//! The pump's proxy subscriptions: which remote filters `interest = true` routes hold, kept
//! in step with the local broker's interest document (docs/interest.md).
//!
//! Owns: the last document seen, each interest route's proxy set, the filters subscribed on
//! the remote session (`sent`, also written to `<queue dir>/proxied.json` so that a restarted
//! metabroker removes what its previous run left in its persistent remote session), and the
//! `interest/...` counters. On every remote (re)connection the whole set is subscribed again
//! and everything else it ever subscribed is unsubscribed: never a patch on top of a state
//! the remote may have lost. Must never route messages or ack them (the pump does).
//!
//! Also owns propagation confirmations: which proxy filters the remote acknowledged with a
//! confirmed SUBACK on the current connection, and the document version reported back to the
//! local broker on `$interest/applied/<name>` once every filter of the current set is
//! confirmed (the local broker releases the SUBACKs waiting for it).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::Ordering::Relaxed;

use canopy_client::adapter::new_publish;
use rumqttc::v5::mqttbytes::QoS;

use crate::bridge::{Pump, qos};
use crate::interest::{self, APPLIED_PREFIX, Document, ProxySet};
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
    /// Filters whose last SUBSCRIBE on the current remote connection got a confirmed SUBACK.
    confirmed: BTreeSet<String>,
    /// Filter -> SUBSCRIBEs sent on the current remote connection awaiting their SUBACK.
    outstanding: BTreeMap<String, u32>,
    /// The version last reported on `$interest/applied/<name>` to the current local
    /// connection.
    applied: Option<u64>,
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
            confirmed: BTreeSet::new(),
            outstanding: BTreeMap::new(),
            applied: None,
        }
    }

    /// The remote link went down: no SUBACK of it will come, every filter is sent again.
    pub(crate) fn remote_down(&mut self) {
        self.confirmed.clear();
        self.outstanding.clear();
    }

    /// The local link came up: report the applied version to it again.
    pub(crate) fn local_up(&mut self) {
        self.applied = None;
    }

    /// Whether every filter of the current set is confirmed: the version to report, if it
    /// was not reported yet.
    fn to_report(&self) -> Option<u64> {
        let version = self.doc.as_ref()?.version;
        let done = self
            .sent
            .iter()
            .all(|f| self.confirmed.contains(f) && !self.outstanding.contains_key(f));
        (done && self.applied != Some(version)).then_some(version)
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
        self.proxy.confirmed.retain(|f| desired.contains_key(f));
        for (f, q) in &desired {
            // A filter the remote could not confirm is asked again at the next change.
            let retry =
                !self.proxy.confirmed.contains(f) && !self.proxy.outstanding.contains_key(f);
            if full || retry || !self.proxy.sent.contains(f) {
                *self.proxy.outstanding.entry(f.clone()).or_default() += 1;
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
        self.report_applied();
    }

    /// The remote acknowledged a proxy SUBSCRIBE of `filter`.
    pub(crate) fn on_proxy_suback(&mut self, filter: String, confirmed: bool) {
        tracing::debug!(bridge = %self.config.name, %filter, confirmed, "proxy SUBACK");
        if let Some(n) = self.proxy.outstanding.get_mut(&filter) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.proxy.outstanding.remove(&filter);
            }
        }
        if confirmed {
            self.proxy.confirmed.insert(filter);
        } else {
            self.proxy.confirmed.remove(&filter);
        }
        self.report_applied();
    }

    /// Tells the local broker which document version is applied and confirmed upstream
    /// (`$interest/applied/<name>`, `{"version":n}`), once per version.
    fn report_applied(&mut self) {
        if !self.remote_connected() || !self.local_connected() {
            return;
        }
        let Some(version) = self.proxy.to_report() else {
            return;
        };
        tracing::debug!(bridge = %self.config.name, version, "interest applied upstream");
        let topic = format!("{APPLIED_PREFIX}{}", self.config.name);
        let payload = serde_json::json!({ "version": version }).to_string();
        let note = new_publish(topic, QoS::AtMostOnce, false, payload, None);
        if self.local.try_publish(note) {
            self.proxy.applied = Some(version);
        }
    }
}
