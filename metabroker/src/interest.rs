//! Proxy subscriptions (docs/interest.md): from the local broker's interest document to the
//! set of filters an `interest = true` route subscribes on the remote broker.
//!
//! Owns: parsing the document, the part of a route's filter each local subscription wants,
//! reference counts per remote filter, and merging into covering wildcards above
//! `max_proxy_filters`. Pure functions only: the pump holds the state and talks to the links;
//! this module never does IO.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;

use crate::remap::{Remap, filters_overlap};

/// Where a Canopy broker publishes its interest document (retained, QoS 1).
pub const INTEREST_TOPIC: &str = "$interest/subscriptions";

/// Where the metabroker tells the local broker the last document version whose proxy set
/// the remote confirmed: `$interest/applied/<bridge name>`, payload `{"version":n}`.
pub const APPLIED_PREFIX: &str = "$interest/applied/";

/// The local broker's interest document: active subscriptions by filter.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Document {
    /// Incremented by the broker at every change.
    pub version: u64,
    /// Filter -> client ids holding an active subscription to it.
    pub filters: BTreeMap<String, Vec<String>>,
}

/// Parses a document; `None` if it is not one.
pub fn parse(payload: &[u8]) -> Option<Document> {
    serde_json::from_slice(payload).ok()
}

fn levels(f: &str) -> Vec<&str> {
    f.split('/').collect()
}

/// Whether every topic matching `b` matches `a` (`a/#` covers `a`; a filter starting with a
/// wildcard covers no `$` topic).
pub fn covers(a: &str, b: &str) -> bool {
    let (a, b) = (levels(a), levels(b));
    if b.first().is_some_and(|l| l.starts_with('$'))
        && a.first().is_some_and(|l| *l == "+" || *l == "#")
    {
        return false;
    }
    for (i, al) in a.iter().enumerate() {
        if *al == "#" {
            return true;
        }
        let Some(bl) = b.get(i) else {
            return false;
        };
        match (*al, *bl) {
            (_, "#") => return false,
            ("+", _) => {}
            (x, y) if x == y => {}
            _ => return false,
        }
    }
    a.len() == b.len()
}

/// The part of `route` (a filter) that a subscription to `sub` wants: `sub` itself when
/// the route covers it, the whole route when `sub` is wider or they only partly overlap,
/// nothing when they are disjoint.
pub fn wanted(route: &str, sub: &str) -> Option<String> {
    if covers(route, sub) {
        Some(sub.to_owned())
    } else if filters_overlap(route, sub) {
        Some(route.to_owned())
    } else {
        None
    }
}

/// The remote filters one route proxies, with how many (filter, client) pairs below ask
/// for each, and whether they had to be merged.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProxySet {
    /// Remote filter -> reference count.
    pub filters: BTreeMap<String, usize>,
    /// More than `max` distinct filters were wanted: these are covering wildcards.
    pub merged: bool,
}

/// The proxy set of a route whose local filter is `route` and whose local -> remote mapping
/// is `out_map`, from `doc`, ignoring the subscriptions of `own` (this bridge's local
/// client). At most `max` filters (at least one).
pub fn proxy_set(doc: &Document, own: &str, route: &str, out_map: &Remap, max: usize) -> ProxySet {
    let whole = out_map.filter_image(route);
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for (sub, clients) in &doc.filters {
        let n = clients.iter().filter(|c| c.as_str() != own).count();
        if n == 0 {
            continue;
        }
        let Some(local) = wanted(route, sub) else {
            continue;
        };
        let remote = out_map.filter_image(&local);
        *counts.entry(remote).or_default() += n;
    }
    let filters = minimal(counts);
    if filters.len() <= max.max(1) {
        return ProxySet {
            filters,
            merged: false,
        };
    }
    ProxySet {
        filters: merge(filters, &whole, max.max(1)),
        merged: true,
    }
}

/// Drops filters covered by another one in the set (their counts go to the wider one), so
/// the remote broker never delivers one message twice through two proxy subscriptions.
fn minimal(counts: BTreeMap<String, usize>) -> BTreeMap<String, usize> {
    let keys: Vec<String> = counts.keys().cloned().collect();
    let mut out: BTreeMap<String, usize> = BTreeMap::new();
    for (f, n) in counts {
        let wider = keys
            .iter()
            .filter(|k| **k != f && covers(k, &f) && !(covers(&f, k) && **k > f))
            .min_by_key(|k| k.len());
        let target = wider.cloned().unwrap_or(f);
        *out.entry(target).or_default() += n;
    }
    out
}

/// Truncates filters to fewer levels (`a/b/c` -> `a/b/#`) until at most `max` remain, never
/// wider than the route's own remote filter `whole`; the last resort is `whole` itself.
fn merge(filters: BTreeMap<String, usize>, whole: &str, max: usize) -> BTreeMap<String, usize> {
    let deepest = filters.keys().map(|f| levels(f).len()).max().unwrap_or(1);
    let floor = levels(whole).len();
    for depth in (floor..deepest).rev() {
        let mut cut: BTreeMap<String, usize> = BTreeMap::new();
        for (f, n) in &filters {
            let l = levels(f);
            let t = if l.len() > depth {
                let mut head: Vec<&str> = l.iter().take(depth).copied().collect();
                head.push("#");
                head.join("/")
            } else {
                f.clone()
            };
            *cut.entry(t).or_default() += n;
        }
        let cut = minimal(cut);
        if cut.len() <= max && cut.keys().all(|k| covers(whole, k)) {
            return cut;
        }
    }
    let total = filters.values().sum();
    BTreeMap::from([(whole.to_owned(), total)])
}

/// Every remote filter of a set of proxy sets, once.
pub fn union<'a>(sets: impl IntoIterator<Item = &'a ProxySet>) -> BTreeSet<String> {
    sets.into_iter()
        .flat_map(|s| s.filters.keys().cloned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(entries: &[(&str, &[&str])]) -> Document {
        Document {
            version: 1,
            filters: entries
                .iter()
                .map(|(f, c)| (f.to_string(), c.iter().map(|s| s.to_string()).collect()))
                .collect(),
        }
    }

    fn keys(p: &ProxySet) -> Vec<&str> {
        p.filters.keys().map(String::as_str).collect()
    }

    #[test]
    fn covering_follows_the_matching_rules() {
        let rows = [
            ("a/#", "a/b", true),
            ("a/#", "a", true),
            ("a/+", "a/b", true),
            ("a/+", "a/+", true),
            ("a/+", "a/#", false),
            ("a/b", "a/+", false),
            ("#", "$SYS/x", false),
            ("+/x", "a/x", true),
            ("a/b", "a/b/c", false),
        ];
        for (a, b, want) in rows {
            assert_eq!(covers(a, b), want, "{a} covers {b}");
        }
    }

    #[test]
    fn a_route_proxies_only_what_local_subscribers_want() {
        let m = Remap::prefix("map/#", "up/").unwrap();
        let d = doc(&[
            ("map/1", &["a", "b"]),
            ("map/2/#", &["c"]),
            ("fx/1", &["a"]),
            ("map/3", &["me"]),
        ]);
        let p = proxy_set(&d, "me", "map/#", &m, 10);
        assert_eq!(keys(&p), ["up/map/1", "up/map/2/#"]);
        assert_eq!(p.filters["up/map/1"], 2);
        assert!(!p.merged);
    }

    #[test]
    fn a_wider_or_partly_overlapping_subscription_wants_the_whole_route() {
        let m = Remap::prefix("map/+/x", "").unwrap();
        let p = proxy_set(&doc(&[("#", &["a"])]), "me", "map/+/x", &m, 10);
        assert_eq!(keys(&p), ["map/+/x"]);
        let p = proxy_set(&doc(&[("map/1/+", &["a"])]), "me", "map/+/x", &m, 10);
        assert_eq!(keys(&p), ["map/+/x"]);
    }

    #[test]
    fn placeholder_routes_map_proxy_filters_level_by_level() {
        let m = Remap::new("cmd/+/set/#", "ctl/{1}/{2}").unwrap();
        let p = proxy_set(
            &doc(&[("cmd/lamp/set/#", &["a"])]),
            "me",
            "cmd/+/set/#",
            &m,
            10,
        );
        assert_eq!(keys(&p), ["ctl/lamp/#"]);
    }

    #[test]
    fn covered_filters_fold_into_the_wider_one() {
        let m = Remap::prefix("m/#", "").unwrap();
        let p = proxy_set(
            &doc(&[("m/a/1", &["x"]), ("m/a/#", &["y"]), ("m/b", &["z"])]),
            "me",
            "m/#",
            &m,
            10,
        );
        assert_eq!(keys(&p), ["m/a/#", "m/b"]);
        assert_eq!(p.filters["m/a/#"], 2);
    }

    #[test]
    fn above_the_limit_filters_merge_into_covering_wildcards() {
        let m = Remap::prefix("m/#", "").unwrap();
        let d = doc(&[
            ("m/a/1", &["x"]),
            ("m/a/2", &["x"]),
            ("m/b/1", &["x"]),
            ("m/b/2", &["x"]),
        ]);
        let p = proxy_set(&d, "me", "m/#", &m, 2);
        assert!(p.merged);
        assert_eq!(keys(&p), ["m/a/#", "m/b/#"]);
        let p = proxy_set(&d, "me", "m/#", &m, 1);
        assert_eq!(keys(&p), ["m/#"]);
        assert_eq!(p.filters["m/#"], 4);
    }

    #[test]
    fn documents_parse_and_garbage_does_not() {
        let d = parse(br#"{"version":3,"filters":{"a":["x"]}}"#).unwrap();
        assert_eq!(d.version, 3);
        assert!(parse(b"nope").is_none());
    }
}
