//! The subscription trie: values (subscriptions, activation triggers, routes) stored under
//! topic filters and found by topic name (MQTT 5.0 section 4.7).
//!
//! Owns only the matching structure. It never validates topics (the [`TopicName`] and
//! [`TopicFilter`] newtypes already did), never allocates while matching, and never recurses,
//! so a topic with 65,535 levels cannot exhaust the stack.
//!
//! Layout (after mosquitto `subs.c` and nats `sublist.go`): nodes live in a [`Slab`] arena;
//! each node keeps its literal children in a small list or, when there are many, a map
//! (`levels::children`) and its `+` child outside them. Values of
//! `a/#` live in node `a`'s `hash` list, which is how `a/#` also matches `a` itself
//! [MQTT-4.7.1-1]; values of `a` live in its `here` list. Filters whose first level starts
//! with `$` hang under a second root, and a `$` topic is walked from that root only, so a
//! filter starting with `+` or `#` can never match it [MQTT-4.7.2-1].
//!
//! Walking without a stack: matching is a depth-first search over the nodes that agree with
//! the topic so far. Every node records its parent and whether it is its parent's `+` child,
//! and the position in the topic is a byte offset that can step back one level, so the search
//! backtracks through parent links instead of a stack. It allocates nothing and uses constant
//! stack space whatever the depth.
//!
//! Slab indexing: every index stored in a node refers to a live node (a node leaves the slab
//! only after it has been unlinked from its parent), and no index is ever taken from input, so
//! indexing the slab cannot panic on any topic or filter a peer can send.

use std::num::NonZeroUsize;

use canopy_proto::{TopicFilter, TopicName};
use slab::Slab;

use crate::levels::children::Children;
use crate::levels::{Levels, ROOT, SYS_ROOT, root_for};

/// One level of the trie.
#[derive(Debug)]
struct Node<T> {
    /// Children reached by a literal level (possibly empty: `a//b` has a real empty level).
    children: Children,
    /// The child reached by `+`, kept outside `children` so matching needs no string compare.
    /// Never a root, so never index 0: the option costs no word of its own.
    plus: Option<NonZeroUsize>,
    /// Values whose filter is this node's path followed by `/#`; they match this node's topic
    /// and everything below it.
    hash: Vec<T>,
    /// Values whose filter ends exactly at this node.
    here: Vec<T>,
    /// The parent's index; a root points at itself. Lets the walk backtrack without a stack.
    parent: usize,
    /// Whether this node is its parent's `+` child (otherwise a literal child).
    via_plus: bool,
}

impl<T> Node<T> {
    fn new(parent: usize, via_plus: bool) -> Self {
        Node {
            children: Children::default(),
            plus: None,
            hash: Vec::new(),
            here: Vec::new(),
            parent,
            via_plus,
        }
    }

    /// The `+` child's index.
    fn plus(&self) -> Option<usize> {
        self.plus.map(NonZeroUsize::get)
    }

    /// A node with nothing in or below it can be pruned.
    fn is_empty(&self) -> bool {
        self.children.is_empty()
            && self.plus.is_none()
            && self.hash.is_empty()
            && self.here.is_empty()
    }
}

/// Values stored under topic filters, matched against topic names.
///
/// Several values may be stored under the same filter; they are kept in insertion order.
#[derive(Debug)]
pub struct TopicTree<T> {
    /// The arena; slots [`ROOT`] and [`SYS_ROOT`] are the two roots and are never removed.
    nodes: Slab<Node<T>>,
    /// Number of values stored, over all filters.
    len: usize,
}

impl<T> Default for TopicTree<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> TopicTree<T> {
    /// An empty tree.
    pub fn new() -> Self {
        let mut nodes = Slab::with_capacity(2);
        let root = nodes.insert(Node::new(ROOT, false));
        let sys = nodes.insert(Node::new(SYS_ROOT, false));
        debug_assert_eq!((root, sys), (ROOT, SYS_ROOT));
        TopicTree { nodes, len: 0 }
    }

    /// Adds `value` under `filter`. Values already stored under the same filter are kept.
    pub fn insert(&mut self, filter: &TopicFilter, value: T) {
        let mut n = root_for(filter);
        for level in filter.levels() {
            if level == "#" {
                push_fitted(&mut self.nodes[n].hash, value);
                self.len += 1;
                return;
            }
            n = self.child_or_insert(n, level);
        }
        push_fitted(&mut self.nodes[n].here, value);
        self.len += 1;
    }

    /// Removes and returns the first value stored under exactly `filter` for which `pred`
    /// is true, then prunes the nodes this left empty.
    pub fn remove_where(
        &mut self,
        filter: &TopicFilter,
        mut pred: impl FnMut(&T) -> bool,
    ) -> Option<T> {
        let (n, is_hash) = self.find(filter)?;
        let list = self.list_mut(n, is_hash);
        let i = list.iter().position(&mut pred)?;
        let value = list.remove(i);
        self.len -= 1;
        self.prune(n, filter, is_hash);
        Some(value)
    }

    /// Removes every value stored under exactly `filter` for which `pred` is true, prunes the
    /// nodes this left empty and returns how many were removed.
    pub fn remove_all_where(
        &mut self,
        filter: &TopicFilter,
        mut pred: impl FnMut(&T) -> bool,
    ) -> usize {
        let Some((n, is_hash)) = self.find(filter) else {
            return 0;
        };
        let list = self.list_mut(n, is_hash);
        let before = list.len();
        list.retain(|v| !pred(v));
        let removed = before - list.len();
        self.len -= removed;
        self.prune(n, filter, is_hash);
        removed
    }

    /// Calls `f` for every value whose filter matches `topic`. Allocates nothing.
    ///
    /// Filters starting with `+` or `#` never match topics starting with `$`
    /// [MQTT-4.7.2-1]; `a/#` matches `a` [MQTT-4.7.1-1]; `+` matches exactly one level,
    /// possibly empty [MQTT-4.7.1-2].
    pub fn for_each_match(&self, topic: &TopicName, mut f: impl FnMut(&T)) {
        let top = root_for(topic);
        let mut levels = Levels::new(topic.as_str());
        let mut n = top;
        // Invariant: `n` is at depth d and `levels` points at topic level d (or past the end).
        'visit: loop {
            let node = &self.nodes[n];
            node.hash.iter().for_each(&mut f);
            let first_child = match levels.current() {
                None => {
                    node.here.iter().for_each(&mut f);
                    None
                }
                Some(level) => node.children.get(level).or(node.plus()),
            };
            if let Some(child) = first_child {
                levels.advance();
                n = child;
                continue;
            }
            // Backtrack: after a literal child comes its `+` sibling (same depth), after a
            // `+` child the parent is finished.
            loop {
                if n == top {
                    return;
                }
                let node = &self.nodes[n];
                let plus_sibling = if node.via_plus {
                    None
                } else {
                    self.nodes[node.parent].plus()
                };
                if let Some(plus) = plus_sibling {
                    n = plus;
                    continue 'visit;
                }
                n = node.parent;
                levels.retreat();
            }
        }
    }

    /// The values stored under exactly `filter`, or `None` when there are none.
    pub fn get(&self, filter: &TopicFilter) -> Option<&[T]> {
        let (n, is_hash) = self.find(filter)?;
        let node = &self.nodes[n];
        let list = if is_hash { &node.hash } else { &node.here };
        (!list.is_empty()).then_some(list.as_slice())
    }

    /// Mutable access to the values stored under exactly `filter`, or `None` when there are
    /// none. A slice rather than the `Vec`, so the count and the pruning stay right: add with
    /// [`TopicTree::insert`], remove with [`TopicTree::remove_where`] or
    /// [`TopicTree::remove_all_where`].
    pub fn get_mut(&mut self, filter: &TopicFilter) -> Option<&mut [T]> {
        let (n, is_hash) = self.find(filter)?;
        let list = self.list_mut(n, is_hash);
        (!list.is_empty()).then_some(list.as_mut_slice())
    }

    /// Number of values stored, over all filters.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no value is stored.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Number of trie nodes, roots included; for tests of pruning.
    #[cfg(test)]
    fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// The node holding `filter`'s values and whether they are in its `hash` list.
    fn find(&self, filter: &TopicFilter) -> Option<(usize, bool)> {
        let mut n = root_for(filter);
        for level in filter.levels() {
            let node = &self.nodes[n];
            n = match level {
                "#" => return Some((n, true)),
                "+" => node.plus()?,
                _ => node.children.get(level)?,
            };
        }
        Some((n, false))
    }

    fn list_mut(&mut self, n: usize, is_hash: bool) -> &mut Vec<T> {
        let node = &mut self.nodes[n];
        if is_hash {
            &mut node.hash
        } else {
            &mut node.here
        }
    }

    /// The child of `n` for `level`, created if missing.
    fn child_or_insert(&mut self, n: usize, level: &str) -> usize {
        if level == "+" {
            if let Some(c) = self.nodes[n].plus() {
                return c;
            }
            let c = self.nodes.insert(Node::new(n, true));
            // Slot 0 is a root, never removed, so a new node's index is never 0.
            self.nodes[n].plus = NonZeroUsize::new(c);
            return c;
        }
        if let Some(c) = self.nodes[n].children.get(level) {
            return c;
        }
        let c = self.nodes.insert(Node::new(n, false));
        self.nodes[n].children.insert(level, c);
        c
    }

    /// Removes `n` and its ancestors while they are empty. `n` is the node `find(filter)`
    /// returned; the filter's levels, read backwards, name the edges on the way up, so the
    /// walk ends at the root, which is never removed.
    fn prune(&mut self, mut n: usize, filter: &TopicFilter, is_hash: bool) {
        let mut levels = filter.rsplit('/');
        if is_hash {
            levels.next();
        }
        for level in levels {
            if !self.nodes[n].is_empty() {
                return;
            }
            let parent = self.nodes.remove(n).parent;
            let p = &mut self.nodes[parent];
            if level == "+" {
                p.plus = None;
            } else {
                p.children.remove(level);
            }
            n = parent;
        }
    }
}

/// Pushes `value`, allocating exactly one slot for a list's first value (most filters
/// have one subscriber; a plain push would reserve four) and growing as usual after that.
fn push_fitted<T>(list: &mut Vec<T>, value: T) {
    if list.capacity() == 0 {
        list.reserve_exact(1);
    }
    list.push(value);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::levels::testing::{f, filter_strategy, oracle, t, topic_strategy};
    use proptest::prelude::*;

    #[test]
    fn a_node_stays_twelve_words() {
        // Two nodes per subscription to `dev/<n>/cmd`: every word here is paid per idle
        // connection (docs/performance.md, "Idle footprint").
        assert_eq!(std::mem::size_of::<Node<u64>>(), 96);
    }

    /// The values matching `topic`, sorted, duplicates kept.
    fn matched<T: Clone + Ord>(tree: &TopicTree<T>, topic: &str) -> Vec<T> {
        let mut out = Vec::new();
        tree.for_each_match(&t(topic), |v| out.push(v.clone()));
        out.sort();
        out
    }

    fn tree_of(filters: &[&str]) -> TopicTree<&'static str> {
        let mut tree = TopicTree::new();
        for &filter in filters {
            let leaked: &'static str = Box::leak(filter.to_owned().into_boxed_str());
            tree.insert(&f(filter), leaked);
        }
        tree
    }

    #[test]
    fn hash_matches_parent_and_all_descendants() {
        // [MQTT-4.7.1-1]: `sport/tennis/player1/#` matches `sport/tennis/player1` too.
        let tree = tree_of(&["sport/tennis/player1/#", "#", "sport/#"]);
        assert_eq!(
            matched(&tree, "sport/tennis/player1"),
            ["#", "sport/#", "sport/tennis/player1/#"]
        );
        assert_eq!(
            matched(&tree, "sport/tennis/player1/ranking/x"),
            ["#", "sport/#", "sport/tennis/player1/#"]
        );
        assert_eq!(matched(&tree, "sport"), ["#", "sport/#"]);
        assert_eq!(matched(&tree, "sports"), ["#"]);
    }

    #[test]
    fn plus_matches_exactly_one_level() {
        // [MQTT-4.7.1-2]
        let tree = tree_of(&["sport/tennis/+", "sport/+", "+/+", "/+", "+"]);
        assert_eq!(matched(&tree, "sport/tennis/player1"), ["sport/tennis/+"]);
        assert!(matched(&tree, "sport/tennis/player1/ranking").is_empty());
        assert_eq!(matched(&tree, "sport"), ["+"]);
        assert_eq!(matched(&tree, "sport/"), ["+/+", "sport/+"]);
        assert_eq!(matched(&tree, "/finance"), ["+/+", "/+"]);
    }

    #[test]
    fn empty_levels_are_real_levels() {
        let tree = tree_of(&["a//b", "a/+/b", "/a", "a/", "a/#"]);
        assert_eq!(matched(&tree, "a//b"), ["a/#", "a/+/b", "a//b"]);
        assert_eq!(matched(&tree, "a/b"), ["a/#"]);
        assert_eq!(matched(&tree, "/a"), ["/a"]);
        assert_eq!(matched(&tree, "a/"), ["a/", "a/#"]);
        assert_eq!(matched(&tree, "a"), ["a/#"]);
    }

    #[test]
    fn wildcards_at_root_do_not_match_dollar_topics() {
        // [MQTT-4.7.2-1]
        let tree = tree_of(&[
            "#",
            "+/broker/uptime",
            "+",
            "$SYS/#",
            "$SYS/+/uptime",
            "$SYS",
        ]);
        assert_eq!(
            matched(&tree, "$SYS/broker/uptime"),
            ["$SYS/#", "$SYS/+/uptime"]
        );
        assert_eq!(matched(&tree, "$SYS"), ["$SYS", "$SYS/#"]);
        assert_eq!(matched(&tree, "x/broker/uptime"), ["#", "+/broker/uptime"]);
        assert!(matched(&tree, "$other").is_empty());
    }

    #[test]
    fn dollar_inside_a_topic_is_matched_by_wildcards() {
        // Only a leading `$` is special [MQTT-4.7.2-1].
        let tree = tree_of(&["a/+", "a/#"]);
        assert_eq!(matched(&tree, "a/$x"), ["a/#", "a/+"]);
    }

    #[test]
    fn several_values_per_filter_all_match_and_are_removed_one_by_one() {
        let mut tree = TopicTree::new();
        for v in [1, 2, 3] {
            tree.insert(&f("a/+"), v);
        }
        tree.insert(&f("a/#"), 4);
        assert_eq!(tree.len(), 4);
        assert_eq!(matched(&tree, "a/b"), [1, 2, 3, 4]);
        assert_eq!(tree.remove_where(&f("a/+"), |&v| v == 2), Some(2));
        assert_eq!(tree.remove_where(&f("a/+"), |&v| v == 2), None);
        assert_eq!(tree.get(&f("a/+")), Some(&[1, 3][..]));
        assert_eq!(matched(&tree, "a/b"), [1, 3, 4]);
        assert_eq!(tree.len(), 3);
    }

    #[test]
    fn remove_where_takes_the_first_matching_value() {
        let mut tree = TopicTree::new();
        for v in [(1, 'x'), (2, 'y'), (3, 'y')] {
            tree.insert(&f("a"), v);
        }
        assert_eq!(tree.remove_where(&f("a"), |v| v.1 == 'y'), Some((2, 'y')));
        assert_eq!(tree.get(&f("a")), Some(&[(1, 'x'), (3, 'y')][..]));
    }

    #[test]
    fn remove_where_distinguishes_exact_filters() {
        let mut tree = TopicTree::new();
        tree.insert(&f("a/#"), 1);
        tree.insert(&f("a"), 2);
        tree.insert(&f("a/+"), 3);
        assert_eq!(tree.remove_where(&f("a/b"), |_| true), None);
        assert_eq!(tree.remove_where(&f("a"), |_| true), Some(2));
        assert_eq!(tree.remove_where(&f("a"), |_| true), None);
        assert_eq!(matched(&tree, "a"), [1]);
        assert_eq!(matched(&tree, "a/b"), [1, 3]);
    }

    #[test]
    fn removal_prunes_empty_nodes() {
        let mut tree = TopicTree::new();
        let filters = ["a/b/c", "a/+/c/#", "a//", "$SYS/x/+", "#", "+/+"];
        for (i, filter) in filters.iter().enumerate() {
            tree.insert(&f(filter), i);
        }
        assert!(tree.node_count() > 2);
        for (i, filter) in filters.iter().enumerate() {
            assert_eq!(tree.remove_where(&f(filter), |&v| v == i), Some(i));
        }
        assert_eq!(tree.node_count(), 2, "only the two roots remain");
        assert!(tree.is_empty());
    }

    #[test]
    fn removal_keeps_nodes_still_in_use() {
        let mut tree = TopicTree::new();
        tree.insert(&f("a/b/c"), 1);
        tree.insert(&f("a/b"), 2);
        let before = tree.node_count();
        assert_eq!(tree.remove_where(&f("a/b/c"), |_| true), Some(1));
        assert_eq!(tree.node_count(), before - 1);
        assert_eq!(matched(&tree, "a/b"), [2]);
    }

    #[test]
    fn remove_all_where_removes_every_match_and_prunes() {
        let mut tree = TopicTree::new();
        for v in 0..6 {
            tree.insert(&f("x/+/y"), v);
        }
        assert_eq!(tree.remove_all_where(&f("x/+/y"), |v| v % 2 == 0), 3);
        assert_eq!(tree.get(&f("x/+/y")), Some(&[1, 3, 5][..]));
        assert_eq!(tree.remove_all_where(&f("x/+/y"), |_| true), 3);
        assert_eq!(tree.remove_all_where(&f("x/+/y"), |_| true), 0);
        assert_eq!(tree.node_count(), 2);
        assert_eq!(tree.len(), 0);
    }

    #[test]
    fn get_mut_changes_values_in_place() {
        let mut tree = TopicTree::new();
        tree.insert(&f("a/#"), 1);
        tree.insert(&f("a/#"), 2);
        for v in tree.get_mut(&f("a/#")).unwrap() {
            *v *= 10;
        }
        assert_eq!(matched(&tree, "a/b"), [10, 20]);
        assert!(
            tree.get_mut(&f("a")).is_none(),
            "node exists but holds no value"
        );
        assert!(tree.get_mut(&f("b")).is_none());
    }

    #[test]
    fn len_counts_values_not_filters() {
        let mut tree = TopicTree::default();
        assert!(tree.is_empty());
        tree.insert(&f("a"), ());
        tree.insert(&f("a"), ());
        tree.insert(&f("#"), ());
        assert_eq!(tree.len(), 3);
        assert!(!tree.is_empty());
    }

    #[test]
    fn deepest_possible_topic_matches_without_recursion() {
        // 65,535 bytes of `/` is a valid topic of 65,536 empty levels.
        let deep = "/".repeat(canopy_proto::topic::MAX_TOPIC_LEN);
        let mut plus_filter = "+/".repeat(canopy_proto::topic::MAX_TOPIC_LEN / 2);
        plus_filter.push('#');
        let mut tree = TopicTree::new();
        tree.insert(&f(&deep), 1);
        tree.insert(&f(&plus_filter), 2);
        tree.insert(&f("/#"), 3);
        assert_eq!(matched(&tree, &deep), [1, 2, 3]);
        assert_eq!(
            matched(&tree, &deep[..100]),
            [3],
            "too few levels for the `+` filter"
        );
        assert_eq!(tree.remove_where(&f(&deep), |_| true), Some(1));
        assert_eq!(tree.remove_where(&f(&plus_filter), |_| true), Some(2));
        assert_eq!(tree.remove_where(&f("/#"), |_| true), Some(3));
        assert_eq!(tree.node_count(), 2);
    }

    /// Checks every topic against the oracle for the filters still present.
    fn check_against_oracle(
        tree: &TopicTree<usize>,
        filters: &[(String, bool)],
        topics: &[String],
    ) {
        for topic in topics {
            let expected: Vec<usize> = filters
                .iter()
                .enumerate()
                .filter(|(_, (filter, present))| *present && oracle(filter, topic))
                .map(|(i, _)| i)
                .collect();
            assert_eq!(matched(tree, topic), expected, "topic {topic:?}");
        }
        assert_eq!(tree.len(), filters.iter().filter(|(_, p)| *p).count());
    }

    proptest! {
        #[test]
        fn matches_agree_with_the_reference_matcher(
            filters in prop::collection::vec(filter_strategy(), 0..24),
            topics in prop::collection::vec(topic_strategy(), 1..16),
            removals in prop::collection::vec(any::<prop::sample::Index>(), 0..24),
        ) {
            let mut tree = TopicTree::new();
            let mut present: Vec<(String, bool)> = Vec::new();
            for (i, filter) in filters.iter().enumerate() {
                tree.insert(&f(filter), i);
                present.push((filter.clone(), true));
            }
            check_against_oracle(&tree, &present, &topics);
            if !present.is_empty() {
                for index in &removals {
                    let i = index.index(present.len());
                    let removed = tree.remove_where(&f(&present[i].0), |&v| v == i);
                    prop_assert_eq!(removed, present[i].1.then_some(i));
                    present[i].1 = false;
                }
            }
            check_against_oracle(&tree, &present, &topics);
            for (i, (filter, live)) in present.iter_mut().enumerate() {
                if *live {
                    prop_assert_eq!(tree.remove_where(&f(filter), |&v| v == i), Some(i));
                    *live = false;
                }
            }
            prop_assert_eq!(tree.node_count(), 2);
            prop_assert!(tree.is_empty());
        }
    }
}
