//! The retained-message trie: one value per topic name, found by topic filter
//! (MQTT 5.0 sections 3.3.1.3 and 4.7).
//!
//! Owns only the lookup structure: what a value is (message, expiry) is the caller's
//! business. It never validates topics (the [`TopicName`] and [`TopicFilter`] newtypes
//! already did), never allocates while matching, and never recurses, so neither a topic with
//! 65,535 levels nor a `#` over 100,000 entries can exhaust the stack.
//!
//! Layout (after mosquitto `retain.c`): topic levels are nodes in a [`Slab`] arena; a node
//! holds the entry for the topic ending there, if any. Children are found by level in a map
//! and are also threaded as a doubly linked sibling list, so `+` and `#` can enumerate them
//! and resume where they left off without a stack or an iterator to keep. Topics starting with
//! `$` hang under a second root that filters starting with a wildcard never visit
//! [MQTT-4.7.2-1].
//!
//! Walking without a stack: each node records its parent, and the position in the filter is a
//! byte offset that can step back one level, so a walk backtracks through parent and sibling
//! links. Invariant: every leaf other than a root holds an entry, so the walk never wanders
//! through dead branches.
//!
//! Slab indexing: every index stored in a node refers to a live node (a node leaves the slab
//! only after it has been unlinked from its parent and siblings), and no index is ever taken
//! from input, so indexing the slab cannot panic on any topic or filter a peer can send.

use canopy_proto::{TopicFilter, TopicName};
use slab::Slab;

use crate::levels::children::Children;
use crate::levels::{Levels, ROOT, SYS_ROOT, root_for};

/// One topic level.
#[derive(Debug)]
struct Node<V> {
    /// Children by level (possibly empty: `a//b` has a real empty level).
    children: Children,
    /// Head of the list of children threaded through `next` / `prev`, for `+` and `#`.
    first_child: Option<usize>,
    /// Next sibling under the same parent.
    next: Option<usize>,
    /// Previous sibling, so a child can be unlinked in constant time.
    prev: Option<usize>,
    /// The parent's index; a root points at itself.
    parent: usize,
    /// The retained entry for the topic ending at this node.
    entry: Option<(TopicName, V)>,
}

impl<V> Node<V> {
    fn new(parent: usize) -> Self {
        Node {
            children: Children::default(),
            first_child: None,
            next: None,
            prev: None,
            parent,
            entry: None,
        }
    }
}

/// Retained values keyed by topic name, matched by topic filter.
#[derive(Debug)]
pub struct RetainTree<V> {
    /// The arena; slots [`ROOT`] and [`SYS_ROOT`] are the two roots and are never removed.
    nodes: Slab<Node<V>>,
    /// Number of entries stored.
    len: usize,
}

impl<V> Default for RetainTree<V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<V> RetainTree<V> {
    /// An empty tree.
    pub fn new() -> Self {
        let mut nodes = Slab::with_capacity(2);
        let root = nodes.insert(Node::new(ROOT));
        let sys = nodes.insert(Node::new(SYS_ROOT));
        debug_assert_eq!((root, sys), (ROOT, SYS_ROOT));
        RetainTree { nodes, len: 0 }
    }

    /// Stores `value` for `topic`, returning the value it replaces.
    pub fn insert(&mut self, topic: &TopicName, value: V) -> Option<V> {
        let mut n = root_for(topic);
        for level in topic.levels() {
            n = self.child_or_insert(n, level);
        }
        let old = self.nodes[n]
            .entry
            .replace((topic.clone(), value))
            .map(|(_, v)| v);
        if old.is_none() {
            self.len += 1;
        }
        old
    }

    /// Removes the value stored for `topic` and prunes the nodes this left empty.
    pub fn remove(&mut self, topic: &TopicName) -> Option<V> {
        let n = self.find(topic)?;
        let (stored, value) = self.nodes[n].entry.take()?;
        self.len -= 1;
        self.prune(n, &stored);
        Some(value)
    }

    /// The value stored for `topic`.
    pub fn get(&self, topic: &TopicName) -> Option<&V> {
        let n = self.find(topic)?;
        self.nodes[n].entry.as_ref().map(|(_, v)| v)
    }

    /// Calls `f(topic, value)` for every stored topic that `filter` matches. Allocates nothing.
    ///
    /// `#` matches the level it stands at and everything below, so `a/#` matches `a`
    /// [MQTT-4.7.1-1]; `+` matches exactly one level, possibly empty [MQTT-4.7.1-2]; a filter
    /// starting with `+` or `#` never matches a topic starting with `$` [MQTT-4.7.2-1].
    pub fn for_each_match(&self, filter: &TopicFilter, mut f: impl FnMut(&TopicName, &V)) {
        let top = root_for(filter);
        let mut levels = Levels::new(filter.as_str());
        let mut n = top;
        // Invariant: `n` is at depth d and `levels` points at filter level d (or past the end).
        'visit: loop {
            let node = &self.nodes[n];
            let first_child = match levels.current() {
                None => {
                    if let Some((topic, value)) = &node.entry {
                        f(topic, value);
                    }
                    None
                }
                Some("#") => {
                    self.for_each_below(n, &mut f);
                    None
                }
                Some("+") => node.first_child,
                Some(level) => node.children.get(level),
            };
            if let Some(child) = first_child {
                levels.advance();
                n = child;
                continue;
            }
            // Backtrack: under `+` move on to the next sibling, otherwise up to the parent.
            loop {
                if n == top {
                    return;
                }
                let node = &self.nodes[n];
                levels.retreat();
                let sibling = if levels.current() == Some("+") {
                    node.next
                } else {
                    None
                };
                if let Some(sibling) = sibling {
                    levels.advance();
                    n = sibling;
                    continue 'visit;
                }
                n = node.parent;
            }
        }
    }

    /// Removes every entry for which `pred` is true (message expiry, for instance), prunes the
    /// nodes this left empty and returns how many were removed.
    pub fn remove_if(&mut self, mut pred: impl FnMut(&TopicName, &V) -> bool) -> usize {
        let doomed: Vec<usize> = self
            .nodes
            .iter()
            .filter(|(_, node)| node.entry.as_ref().is_some_and(|(t, v)| pred(t, v)))
            .map(|(i, _)| i)
            .collect();
        // Pruning removes only nodes without an entry, so the doomed nodes still to be handled
        // stay alive until their turn.
        for &n in &doomed {
            if let Some((topic, _)) = self.nodes[n].entry.take() {
                self.len -= 1;
                self.prune(n, &topic);
            }
        }
        doomed.len()
    }

    /// Every stored entry, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&TopicName, &V)> {
        self.nodes
            .iter()
            .filter_map(|(_, node)| node.entry.as_ref().map(|(t, v)| (t, v)))
    }

    /// Number of entries stored.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no entry is stored.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Number of trie nodes, roots included; for tests of pruning.
    #[cfg(test)]
    fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// Calls `f` for the entry at `top` and every entry below it, in pre-order.
    fn for_each_below(&self, top: usize, f: &mut impl FnMut(&TopicName, &V)) {
        let mut n = top;
        loop {
            let node = &self.nodes[n];
            if let Some((topic, value)) = &node.entry {
                f(topic, value);
            }
            if let Some(child) = node.first_child {
                n = child;
                continue;
            }
            loop {
                if n == top {
                    return;
                }
                let node = &self.nodes[n];
                if let Some(sibling) = node.next {
                    n = sibling;
                    break;
                }
                n = node.parent;
            }
        }
    }

    /// The node for `topic`, if the path exists.
    fn find(&self, topic: &TopicName) -> Option<usize> {
        let mut n = root_for(topic);
        for level in topic.levels() {
            n = self.nodes[n].children.get(level)?;
        }
        Some(n)
    }

    /// The child of `n` for `level`, created and linked first among its siblings if missing.
    fn child_or_insert(&mut self, n: usize, level: &str) -> usize {
        if let Some(c) = self.nodes[n].children.get(level) {
            return c;
        }
        let old_first = self.nodes[n].first_child;
        let mut child = Node::new(n);
        child.next = old_first;
        let c = self.nodes.insert(child);
        if let Some(old) = old_first {
            self.nodes[old].prev = Some(c);
        }
        let parent = &mut self.nodes[n];
        parent.first_child = Some(c);
        parent.children.insert(level, c);
        c
    }

    /// Removes `n` and its ancestors while they hold no entry and no child. `n` is the node
    /// for `topic`, whose levels, read backwards, name the edges on the way up, so the walk
    /// ends at the root, which is never removed.
    fn prune(&mut self, mut n: usize, topic: &TopicName) {
        for level in topic.rsplit('/') {
            let node = &self.nodes[n];
            if node.entry.is_some() || node.first_child.is_some() {
                return;
            }
            let node = self.nodes.remove(n);
            match node.prev {
                Some(prev) => self.nodes[prev].next = node.next,
                None => self.nodes[node.parent].first_child = node.next,
            }
            if let Some(next) = node.next {
                self.nodes[next].prev = node.prev;
            }
            self.nodes[node.parent].children.remove(level);
            n = node.parent;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::levels::testing::{f, filter_strategy, oracle, t, topic_strategy};
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    /// The topics `filter` matches, sorted.
    fn matched<V>(tree: &RetainTree<V>, filter: &str) -> Vec<String> {
        let mut out = Vec::new();
        tree.for_each_match(&f(filter), |topic, _| out.push(topic.to_string()));
        out.sort();
        out
    }

    fn tree_of(topics: &[&str]) -> RetainTree<()> {
        let mut tree = RetainTree::new();
        for topic in topics {
            tree.insert(&t(topic), ());
        }
        tree
    }

    #[test]
    fn hash_matches_parent_and_all_descendants() {
        // [MQTT-4.7.1-1]
        let tree = tree_of(&[
            "sport",
            "sport/tennis/player1",
            "sport/tennis/player1/ranking",
            "sports",
        ]);
        assert_eq!(
            matched(&tree, "sport/tennis/player1/#"),
            ["sport/tennis/player1", "sport/tennis/player1/ranking"]
        );
        assert_eq!(
            matched(&tree, "sport/#"),
            [
                "sport",
                "sport/tennis/player1",
                "sport/tennis/player1/ranking"
            ]
        );
        assert_eq!(matched(&tree, "#").len(), 4);
    }

    #[test]
    fn plus_matches_exactly_one_level() {
        // [MQTT-4.7.1-2]
        let tree = tree_of(&[
            "sport",
            "sport/",
            "sport/tennis",
            "sport/tennis/player1",
            "/finance",
        ]);
        assert_eq!(matched(&tree, "sport/+"), ["sport/", "sport/tennis"]);
        assert_eq!(matched(&tree, "sport/tennis/+"), ["sport/tennis/player1"]);
        assert_eq!(matched(&tree, "+"), ["sport"]);
        assert_eq!(
            matched(&tree, "+/+"),
            ["/finance", "sport/", "sport/tennis"]
        );
        assert_eq!(matched(&tree, "/+"), ["/finance"]);
        assert_eq!(matched(&tree, "+/+/+/#"), ["sport/tennis/player1"]);
    }

    #[test]
    fn empty_levels_are_real_levels() {
        let tree = tree_of(&["a//b", "a/b", "/a", "a/"]);
        assert_eq!(matched(&tree, "a//b"), ["a//b"]);
        assert_eq!(matched(&tree, "a/+/b"), ["a//b"]);
        assert_eq!(matched(&tree, "a/+"), ["a/", "a/b"]);
        assert_eq!(matched(&tree, "+/a"), ["/a"]);
        assert!(matched(&tree, "a").is_empty());
    }

    #[test]
    fn wildcards_at_root_do_not_match_dollar_topics() {
        // [MQTT-4.7.2-1]
        let tree = tree_of(&["$SYS/broker/uptime", "$SYS", "x/broker/uptime", "a/$x"]);
        assert_eq!(matched(&tree, "#"), ["a/$x", "x/broker/uptime"]);
        assert_eq!(matched(&tree, "+/broker/uptime"), ["x/broker/uptime"]);
        assert_eq!(matched(&tree, "$SYS/#"), ["$SYS", "$SYS/broker/uptime"]);
        assert_eq!(matched(&tree, "$SYS/+/uptime"), ["$SYS/broker/uptime"]);
        assert_eq!(
            matched(&tree, "a/+"),
            ["a/$x"],
            "only a leading $ is special"
        );
    }

    #[test]
    fn insert_replaces_and_returns_the_previous_value() {
        let mut tree = RetainTree::new();
        assert_eq!(tree.insert(&t("a/b"), 1), None);
        assert_eq!(tree.insert(&t("a/b"), 2), Some(1));
        assert_eq!(tree.get(&t("a/b")), Some(&2));
        assert_eq!(tree.get(&t("a")), None, "an inner node holds no entry");
        assert_eq!(tree.len(), 1);
    }

    #[test]
    fn remove_prunes_empty_nodes_but_keeps_used_ones() {
        let mut tree = RetainTree::new();
        for (i, topic) in ["a/b/c", "a/b", "a//", "$SYS/x", "b"].iter().enumerate() {
            tree.insert(&t(topic), i);
        }
        assert_eq!(tree.remove(&t("a/b/c")), Some(0));
        assert_eq!(tree.remove(&t("a/b/c")), None);
        assert_eq!(tree.remove(&t("a/b/c/d")), None);
        assert_eq!(tree.get(&t("a/b")), Some(&1));
        assert_eq!(matched(&tree, "a/#"), ["a//", "a/b"]);
        for topic in ["a/b", "a//", "$SYS/x", "b"] {
            assert!(tree.remove(&t(topic)).is_some(), "{topic}");
        }
        assert_eq!(tree.node_count(), 2, "only the two roots remain");
        assert!(tree.is_empty());
    }

    #[test]
    fn remove_if_removes_matching_entries_and_prunes() {
        let mut tree = RetainTree::new();
        for i in 0..50 {
            tree.insert(&t(&format!("x/{i}/y")), i);
        }
        tree.insert(&t("$SYS/x"), 100);
        assert_eq!(tree.remove_if(|_, &v| v % 2 == 0), 26);
        assert_eq!(tree.len(), 25);
        assert_eq!(matched(&tree, "x/+/y").len(), 25);
        assert_eq!(tree.remove_if(|topic, _| topic.starts_with("x/")), 25);
        assert_eq!(tree.remove_if(|_, _| true), 0);
        assert_eq!(tree.node_count(), 2);
    }

    #[test]
    fn iter_yields_every_entry_once() {
        let tree = tree_of(&["a", "a/b", "$SYS/x", "/"]);
        let mut all: Vec<&str> = tree.iter().map(|(topic, _)| topic.as_str()).collect();
        all.sort();
        assert_eq!(all, ["$SYS/x", "/", "a", "a/b"]);
        assert_eq!(tree.len(), 4);
    }

    #[test]
    fn hash_over_a_hundred_thousand_topics_finds_them_all() {
        let mut tree = RetainTree::new();
        for i in 0..100_000u32 {
            tree.insert(&t(&format!("r/{}/{}", i % 100, i)), i);
        }
        tree.insert(&t("s/1"), 0);
        let (mut count, mut sum) = (0u64, 0u64);
        tree.for_each_match(&f("r/#"), |_, &v| {
            count += 1;
            sum += u64::from(v);
        });
        assert_eq!(count, 100_000);
        assert_eq!(sum, (0..100_000u64).sum::<u64>());
        let mut plus = 0usize;
        tree.for_each_match(&f("r/+/+"), |_, _| plus += 1);
        assert_eq!(plus, 100_000);
        let mut one = 0;
        tree.for_each_match(&f("r/7/+"), |_, _| one += 1);
        assert_eq!(one, 1_000);
    }

    #[test]
    fn deepest_possible_topic_is_stored_matched_and_pruned_without_recursion() {
        // 65,535 bytes of `/` is a valid topic of 65,536 empty levels.
        let deep = "/".repeat(canopy_proto::topic::MAX_TOPIC_LEN);
        let mut plus_filter = "+/".repeat(canopy_proto::topic::MAX_TOPIC_LEN / 2);
        plus_filter.push('#');
        let mut tree = RetainTree::new();
        tree.insert(&t(&deep), 1);
        assert_eq!(matched(&tree, "#").len(), 1);
        assert_eq!(matched(&tree, &plus_filter).len(), 1);
        assert_eq!(matched(&tree, &deep).len(), 1);
        assert_eq!(tree.remove(&t(&deep)), Some(1));
        assert_eq!(tree.node_count(), 2);
    }

    /// Checks every filter against the oracle over the model's entries.
    fn check_against_oracle(
        tree: &RetainTree<usize>,
        model: &BTreeMap<String, usize>,
        filters: &[String],
    ) {
        for filter in filters {
            let expected: Vec<(String, usize)> = model
                .iter()
                .filter(|(topic, _)| oracle(filter, topic))
                .map(|(topic, &v)| (topic.clone(), v))
                .collect();
            let mut got = Vec::new();
            tree.for_each_match(&f(filter), |topic, &v| got.push((topic.to_string(), v)));
            got.sort();
            assert_eq!(got, expected, "filter {filter:?}");
        }
        assert_eq!(tree.len(), model.len());
        let mut all: Vec<(String, usize)> = tree
            .iter()
            .map(|(topic, &v)| (topic.to_string(), v))
            .collect();
        all.sort();
        let expected: Vec<(String, usize)> = model.iter().map(|(k, &v)| (k.clone(), v)).collect();
        assert_eq!(all, expected);
    }

    proptest! {
        #[test]
        fn matches_agree_with_the_reference_matcher(
            topics in prop::collection::vec(topic_strategy(), 0..24),
            filters in prop::collection::vec(filter_strategy(), 1..16),
            removals in prop::collection::vec(topic_strategy(), 0..24),
            expire_below in 0usize..24,
        ) {
            let mut tree = RetainTree::new();
            let mut model = BTreeMap::new();
            for (i, topic) in topics.iter().enumerate() {
                prop_assert_eq!(tree.insert(&t(topic), i), model.insert(topic.clone(), i));
            }
            check_against_oracle(&tree, &model, &filters);
            for topic in &removals {
                prop_assert_eq!(tree.remove(&t(topic)), model.remove(topic));
            }
            check_against_oracle(&tree, &model, &filters);
            let before = model.len();
            model.retain(|_, v| *v >= expire_below);
            prop_assert_eq!(tree.remove_if(|_, &v| v < expire_below), before - model.len());
            check_against_oracle(&tree, &model, &filters);
            for topic in model.keys() {
                prop_assert!(tree.remove(&t(topic)).is_some());
            }
            prop_assert_eq!(tree.node_count(), 2);
            prop_assert!(tree.is_empty());
        }
    }
}
