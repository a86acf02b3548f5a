//! Interest: the subscriptions this broker's clients hold, exposed to its bridges so that a
//! metabroker with `interest = true` routes subscribes upstream only to what someone here
//! wants (docs/interest.md).
//!
//! Owns the interest table (which client holds which active subscription) and its retained,
//! in-memory document at [`INTEREST_TOPIC`]: `{"version":n,"filters":{"<filter>":["<client>",
//! …]}}`, republished whole (never as a patch) after every change — changes within
//! [`COALESCE`] of each other go out as one document, so a burst of SUBSCRIBEs costs one. Event-activated
//! subscriptions count only while active. Must never decide who may read the document (the
//! access seam reserves `$interest` for bridges and admins) and never store it: it is
//! rebuilt from the sessions' subscriptions after a restart.
//!
//! Also owns propagation confirmations: the clients that read the document (metabrokers'
//! local clients), the version each reports as applied upstream on
//! `$interest/applied/<bridge>` (`{"version":n}`), and the SUBACKs waiting for them
//! (`router::held`): a waiter is released confirmed once every reader has applied a version
//! at least that of the first document containing its subscription.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use canopy_proto::QoS;

use super::{ClientInfo, Disposition, Host, Service};
use crate::message::Message;

/// The retained document listing every active subscription by filter.
pub const INTEREST_TOPIC: &str = "$interest/subscriptions";

/// Where a metabroker reports the last document version it applied upstream:
/// `$interest/applied/<bridge name>`, payload `{"version":n}` (consumed, never routed).
pub const APPLIED_PREFIX: &str = "$interest/applied/";

/// Changes closer together than this are published as one document.
pub const COALESCE: Duration = Duration::from_millis(20);

/// The interest service.
#[derive(Debug, Default)]
pub struct InterestService {
    /// (client id, filter as subscribed) of every subscription that counts; the filter it
    /// counts under (inside `$share/<g>/`) is read off the filter ([`interest_filter`]).
    /// Both strings are the session's own, shared (the filter as the session's
    /// subscription holds it, where the host has it): an entry costs its place only.
    subs: BTreeSet<(Arc<str>, Arc<str>)>,
    /// Incremented at every publication of the document.
    version: u64,
    /// When the pending change goes out, if one is pending.
    due: Option<Instant>,
    /// Clients holding a subscription that matches the document: the readers whose
    /// confirmation a waiting SUBACK needs.
    readers: BTreeSet<Arc<str>>,
    /// Reader -> last version it reported applied upstream.
    applied: HashMap<Arc<str>, u64>,
    /// SUBACKs waiting for propagation.
    waiters: Vec<Waiter>,
    /// A change happened while nobody read the document: it is built and published only
    /// when a reader comes (a broker without bridges never builds it).
    stale: bool,
}

/// A SUBACK held until every reader applied `target`.
#[derive(Debug)]
struct Waiter {
    ticket: u64,
    target: u64,
    /// After this the router has sent the SUBACK unconfirmed: forget the waiter.
    deadline: Instant,
}

/// Whether a subscription to `filter` receives the document.
fn reads_document(filter: &str) -> bool {
    canopy_proto::topic::matches(filter, INTEREST_TOPIC)
}

/// The version in an `$interest/applied/...` payload.
fn applied_version(payload: &[u8]) -> Option<u64> {
    serde_json::from_slice::<serde_json::Value>(payload)
        .ok()?
        .get("version")?
        .as_u64()
}

/// The filter a subscription expresses interest in: the part after `$share/<group>/`.
fn interest_filter(filter: &str) -> Option<&str> {
    let inner = match filter.strip_prefix("$share/") {
        Some(rest) => rest.split_once('/').map(|(_, f)| f)?,
        None => filter,
    };
    (!inner.is_empty() && !inner.starts_with("$interest")).then_some(inner)
}

impl InterestService {
    /// An empty table.
    pub fn new() -> InterestService {
        InterestService::default()
    }

    /// The document: filter -> sorted client ids.
    pub fn document(&self) -> serde_json::Value {
        let mut filters: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
        for (client, filter) in &self.subs {
            if let Some(inner) = interest_filter(filter) {
                filters.entry(inner).or_default().insert(client);
            }
        }
        serde_json::json!({"version": self.version, "filters": filters})
    }

    /// Schedules the document after a change, if anyone reads it. The document holds
    /// every filter, so beyond 1,000 subscriptions changes are gathered for longer as it
    /// grows: 10 µs more per subscription (100,000: about one document a second).
    fn changed(&mut self, host: &mut dyn Host) {
        if self.readers.is_empty() {
            self.stale = true;
            return;
        }
        if self.due.is_none() {
            let extra = u64::try_from(self.subs.len().saturating_sub(1000)).unwrap_or(u64::MAX);
            let gather = COALESCE + Duration::from_micros(extra.saturating_mul(10));
            self.due = Some(host.now() + gather);
        }
    }

    fn publish(&mut self, host: &mut dyn Host) {
        self.due = None;
        self.stale = false;
        self.version += 1;
        let Ok(topic) = canopy_proto::TopicName::new(INTEREST_TOPIC) else {
            return;
        };
        host.publish_transient(Message {
            topic,
            qos: QoS::AtLeastOnce,
            retain: true,
            properties: Default::default(),
            payload: Bytes::from(self.document().to_string()),
            expires_at: None,
        });
    }

    fn add(&mut self, host: &mut dyn Host, client: &Arc<str>, filter: &str) {
        if interest_filter(filter).is_none() {
            return;
        }
        let filter = host
            .subscription_filter(client, filter)
            .unwrap_or_else(|| filter.into());
        if self.subs.insert((client.clone(), filter)) {
            self.changed(host);
        }
    }

    /// Releases the waiters every reader has confirmed; forgets those past their deadline.
    fn release_confirmed(&mut self, host: &mut dyn Host) {
        let now = host.now();
        let readers = &self.readers;
        let applied = &self.applied;
        self.waiters.retain(|w| {
            if w.deadline <= now {
                return false;
            }
            let done = readers
                .iter()
                .all(|r| applied.get(r).is_some_and(|&v| v >= w.target));
            if done {
                host.release_suback(w.ticket, true);
            }
            !done
        });
    }

    fn remove(&mut self, host: &mut dyn Host, client: &str, filter: &str) {
        if self.subs.remove(&(Arc::from(client), Arc::from(filter))) {
            self.changed(host);
        }
    }
}

impl Service for InterestService {
    fn name(&self) -> &'static str {
        "interest"
    }

    fn topics(&self) -> &[&'static str] {
        &[APPLIED_PREFIX]
    }

    fn on_start(&mut self, host: &mut dyn Host) {
        // Sessions restored from the store keep their subscriptions: they are interest.
        let mut found: Vec<(Arc<str>, Arc<str>, bool)> = Vec::new();
        host.for_each_subscription(&mut |client, filter, active| {
            found.push((Arc::from(client), Arc::from(filter), active));
        });
        for (client, filter, active) in found {
            if reads_document(&filter) {
                self.readers.insert(client.clone());
            }
            if active && interest_filter(&filter).is_some() {
                self.subs.insert((client, filter));
            }
        }
        self.publish(host);
    }

    fn on_publish(
        &mut self,
        host: &mut dyn Host,
        from: Option<&ClientInfo>,
        msg: &Arc<Message>,
    ) -> Disposition {
        if let (Some(from), Some(v)) = (from, applied_version(&msg.payload)) {
            self.applied.insert(from.client_id.clone(), v);
            self.release_confirmed(host);
        }
        Disposition::Consume
    }

    fn on_wait_interest(
        &mut self,
        host: &mut dyn Host,
        _client: &ClientInfo,
        ticket: u64,
        deadline: Instant,
    ) -> bool {
        // The subscription is in the pending document if one is due, else in the last.
        let target = self.version + u64::from(self.due.is_some());
        self.waiters.push(Waiter {
            ticket,
            target,
            deadline,
        });
        self.release_confirmed(host);
        true
    }

    fn on_subscribe(&mut self, host: &mut dyn Host, client: &ClientInfo, filter: &str, _qos: QoS) {
        if reads_document(filter) {
            self.readers.insert(client.client_id.clone());
            if std::mem::take(&mut self.stale) {
                self.changed(host);
            }
        }
        if host.subscription_active(&client.client_id, filter) == Some(false) {
            self.remove(host, &client.client_id, filter);
        } else {
            self.add(host, &client.client_id, filter);
        }
    }

    fn on_unsubscribe(&mut self, host: &mut dyn Host, client: &ClientInfo, filter: &str) {
        self.remove(host, &client.client_id, filter);
        if reads_document(filter) {
            self.readers.remove(&client.client_id);
            self.release_confirmed(host);
        }
    }

    fn on_activation(
        &mut self,
        host: &mut dyn Host,
        client: &ClientInfo,
        filter: &str,
        active: bool,
    ) {
        if active {
            self.add(host, &client.client_id, filter);
        } else {
            self.remove(host, &client.client_id, filter);
        }
    }

    fn on_session_end(&mut self, host: &mut dyn Host, client_id: &str) {
        // The set is ordered by client id: its entries are one range, found in log time
        // (a scan of every client's entries per session end would grow with the broker).
        let from: (Arc<str>, Arc<str>) = (Arc::from(client_id), Arc::from(""));
        let mine: Vec<(Arc<str>, Arc<str>)> = self
            .subs
            .range(from..)
            .take_while(|(c, _)| &**c == client_id)
            .cloned()
            .collect();
        for entry in &mine {
            self.subs.remove(entry);
        }
        if !mine.is_empty() {
            self.changed(host);
        }
        self.applied.remove(client_id);
        if self.readers.remove(client_id) {
            self.release_confirmed(host);
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.due
    }

    fn handle_timeout(&mut self, host: &mut dyn Host) {
        if self.due.is_some_and(|t| t <= host.now()) {
            self.publish(host);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::services::testing::{FakeHost, fire_due};
    use canopy_proto::Protocol;

    /// The document after the pending change went out.
    fn doc(s: &mut InterestService, host: &mut FakeHost) -> serde_json::Value {
        host.advance(COALESCE);
        fire_due(s, host);
        let p = host.published_to(INTEREST_TOPIC);
        let last = p.last().expect("a document");
        serde_json::from_slice(last).expect("json")
    }

    /// A bridge's local client reading the document.
    fn reader(s: &mut InterestService, h: &mut FakeHost) {
        let r = h.connect("bridge", false, Protocol::V5);
        h.subscribe("bridge", INTEREST_TOPIC, QoS::AtMostOnce);
        s.on_subscribe(h, &r, INTEREST_TOPIC, QoS::AtMostOnce);
    }

    #[test]
    fn subscriptions_appear_and_disappear_in_the_document() {
        let mut h = FakeHost::new();
        let mut s = InterestService::new();
        s.on_start(&mut h);
        reader(&mut s, &mut h);
        assert_eq!(doc(&mut s, &mut h)["filters"], serde_json::json!({}));
        let a = h.connect("a", false, Protocol::V5);
        let b = h.connect("b", false, Protocol::V5);
        h.subscribe("a", "map/1", QoS::AtLeastOnce);
        s.on_subscribe(&mut h, &a, "map/1", QoS::AtLeastOnce);
        h.subscribe("b", "$share/g/map/1", QoS::AtLeastOnce);
        s.on_subscribe(&mut h, &b, "$share/g/map/1", QoS::AtLeastOnce);
        s.on_subscribe(&mut h, &b, "fx/#", QoS::AtLeastOnce);
        let d = doc(&mut s, &mut h);
        assert_eq!(
            d["filters"],
            serde_json::json!({"fx/#": ["b"], "map/1": ["a", "b"]})
        );
        assert_eq!(d["version"], 2, "one document for the burst");
        s.on_unsubscribe(&mut h, &a, "map/1");
        s.on_session_end(&mut h, "b");
        assert_eq!(doc(&mut s, &mut h)["filters"], serde_json::json!({}));
    }

    #[test]
    fn a_session_end_removes_that_client_only_even_with_ids_that_share_a_prefix() {
        let mut h = FakeHost::new();
        let mut s = InterestService::new();
        reader(&mut s, &mut h);
        for id in ["a", "b", "bb"] {
            let c = h.connect(id, false, Protocol::V5);
            s.on_subscribe(&mut h, &c, "x/1", QoS::AtMostOnce);
            s.on_subscribe(&mut h, &c, &format!("own/{id}"), QoS::AtMostOnce);
        }
        s.on_session_end(&mut h, "b");
        assert_eq!(
            doc(&mut s, &mut h)["filters"],
            serde_json::json!({"own/a": ["a"], "own/bb": ["bb"], "x/1": ["a", "bb"]})
        );
    }

    #[test]
    fn inactive_subscriptions_count_only_once_activated() {
        let mut h = FakeHost::new();
        let mut s = InterestService::new();
        reader(&mut s, &mut h);
        let a = h.connect("a", false, Protocol::V5);
        s.on_activation(&mut h, &a, "fx/1", true);
        assert_eq!(
            doc(&mut s, &mut h)["filters"],
            serde_json::json!({"fx/1": ["a"]})
        );
        s.on_activation(&mut h, &a, "fx/1", false);
        assert_eq!(doc(&mut s, &mut h)["filters"], serde_json::json!({}));
    }

    #[test]
    fn resubscribing_the_same_filter_publishes_nothing_new() {
        let mut h = FakeHost::new();
        let mut s = InterestService::new();
        reader(&mut s, &mut h);
        let a = h.connect("a", false, Protocol::V5);
        s.on_subscribe(&mut h, &a, "x", QoS::AtMostOnce);
        doc(&mut s, &mut h);
        s.on_subscribe(&mut h, &a, "x", QoS::AtLeastOnce);
        assert!(s.poll_timeout().is_none());
        assert_eq!(h.published_to(INTEREST_TOPIC).len(), 1);
    }

    #[test]
    fn without_readers_no_document_is_built_and_the_first_reader_gets_the_current_one() {
        let mut h = FakeHost::new();
        let mut s = InterestService::new();
        let a = h.connect("a", false, Protocol::V5);
        for i in 0..50 {
            s.on_subscribe(&mut h, &a, &format!("map/{i}"), QoS::AtLeastOnce);
        }
        assert!(
            s.poll_timeout().is_none(),
            "nothing scheduled without a reader"
        );
        assert!(h.published_to(INTEREST_TOPIC).is_empty());
        reader(&mut s, &mut h);
        let d = doc(&mut s, &mut h);
        assert_eq!(d["filters"].as_object().map(|f| f.len()), Some(50));
    }

    #[test]
    fn a_large_document_is_gathered_for_longer() {
        let mut h = FakeHost::new();
        let mut s = InterestService::new();
        let a = h.connect("a", false, Protocol::V5);
        for i in 0..11_000 {
            s.on_subscribe(&mut h, &a, &format!("map/{i}"), QoS::AtLeastOnce);
        }
        reader(&mut s, &mut h);
        let due = s.poll_timeout().expect("a document is due");
        assert_eq!(due - h.now(), COALESCE + Duration::from_millis(100));
    }
}
