//! The literal children of one trie node, by level: what both tries keep per node.
//!
//! Owns only the edge table of one node, kept small for the common case: most nodes have
//! one or a few children (`dev/<id>` has one, `cmd`), searched in a tight list; a node with
//! many (`dev` itself, with one child per device) switches to a hash map. An empty table
//! allocates nothing, and a small one exactly what it holds. It never validates levels
//! (the tries' callers did) and never panics on any string.

use std::collections::HashMap;

/// Children beyond this many go into a hash map.
const FEW: usize = 8;

/// Child node indices by level.
#[derive(Debug)]
pub(crate) enum Children {
    /// At most [`FEW`] children, in insertion order, allocated to fit.
    Few(Vec<(Box<str>, usize)>),
    /// More than [`FEW`] (boxed: most nodes never need it).
    #[expect(
        clippy::box_collection,
        reason = "boxed so that an empty one costs a pointer, not an empty map's 48 bytes"
    )]
    Many(Box<HashMap<Box<str>, usize>>),
}

impl Default for Children {
    fn default() -> Self {
        Children::Few(Vec::new())
    }
}

impl Children {
    /// The child reached by `level`.
    pub(crate) fn get(&self, level: &str) -> Option<usize> {
        match self {
            Children::Few(v) => v.iter().find(|(l, _)| &**l == level).map(|&(_, c)| c),
            Children::Many(m) => m.get(level).copied(),
        }
    }

    /// Adds the child `c` for `level`, which has none yet.
    pub(crate) fn insert(&mut self, level: &str, c: usize) {
        match self {
            Children::Few(v) if v.len() < FEW => {
                // Exactly what is held: a node with one child keeps one slot, not four.
                v.reserve_exact(1);
                v.push((level.into(), c));
            }
            Children::Few(v) => {
                let mut m: HashMap<Box<str>, usize> = std::mem::take(v).into_iter().collect();
                m.insert(level.into(), c);
                *self = Children::Many(Box::new(m));
            }
            Children::Many(m) => {
                m.insert(level.into(), c);
            }
        }
    }

    /// Removes the child for `level`, if any.
    pub(crate) fn remove(&mut self, level: &str) {
        match self {
            Children::Few(v) => {
                v.retain(|(l, _)| &**l != level);
                if v.is_empty() {
                    *v = Vec::new();
                }
            }
            Children::Many(m) => {
                m.remove(level);
            }
        }
    }

    /// Whether there is no child.
    pub(crate) fn is_empty(&self) -> bool {
        match self {
            Children::Few(v) => v.is_empty(),
            Children::Many(m) => m.is_empty(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn children_are_found_by_level_below_and_beyond_the_small_list() {
        let mut c = Children::default();
        assert!(c.is_empty());
        for i in 0..20 {
            c.insert(&format!("l{i}"), i);
            for j in 0..=i {
                assert_eq!(c.get(&format!("l{j}")), Some(j), "after {i} inserts");
            }
            assert_eq!(c.get("absent"), None);
        }
        assert!(matches!(c, Children::Many(_)));
        for i in 0..20 {
            c.remove(&format!("l{i}"));
            assert_eq!(c.get(&format!("l{i}")), None);
        }
        assert!(c.is_empty());
    }

    #[test]
    fn a_single_child_takes_one_slot_and_an_empty_level_is_a_level() {
        let mut c = Children::default();
        c.insert("", 7);
        assert_eq!(c.get(""), Some(7));
        let Children::Few(v) = &c else {
            panic!("one child is a small list");
        };
        assert_eq!(v.capacity(), 1);
        c.remove("");
        assert!(c.is_empty());
        assert_eq!(c.get(""), None);
    }
}
