//! The literal children of one trie node, by level: what both tries keep per node.
//!
//! Owns only the edge table of one node, kept small for the common case: most nodes have
//! one or a few children (`dev/<id>` has one, `cmd`), searched in a tight list; a node with
//! many (`dev` itself, with one child per device) switches to a hash map. An empty table
//! allocates nothing, and a small one exactly what it holds; a level of up to
//! [`INLINE`] bytes (`cmd`, `status`, a short id) is kept in place of the pointer to it.
//! It never validates levels (the tries' callers did) and never panics on any string.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};

/// Children beyond this many go into a hash map.
const FEW: usize = 8;

/// Levels up to this many bytes are kept in the key itself, with no allocation.
const INLINE: usize = 7;

/// A level as a child's key, compared and hashed as its bytes. As small as a boxed
/// string (two words), but a short level needs no allocation of its own.
#[derive(Debug, Clone)]
pub(crate) enum Key {
    /// A level of at most [`INLINE`] bytes, in place.
    Inline {
        /// Bytes used.
        len: u8,
        /// The level, then zeros.
        bytes: [u8; INLINE],
    },
    /// A longer level.
    Heap(Box<[u8]>),
}

impl Key {
    fn new(level: &str) -> Key {
        let b = level.as_bytes();
        let mut bytes = [0; INLINE];
        match (u8::try_from(b.len()), bytes.get_mut(..b.len())) {
            (Ok(len), Some(dst)) => {
                dst.copy_from_slice(b);
                Key::Inline { len, bytes }
            }
            _ => Key::Heap(b.into()),
        }
    }

    fn as_bytes(&self) -> &[u8] {
        match self {
            Key::Inline { len, bytes } => bytes.get(..usize::from(*len)).unwrap_or_default(),
            Key::Heap(b) => b,
        }
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Key) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for Key {}

impl Hash for Key {
    /// As its bytes, so that a map of keys is searched by `&[u8]` ([`Borrow`]).
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_bytes().hash(state);
    }
}

impl Borrow<[u8]> for Key {
    fn borrow(&self) -> &[u8] {
        self.as_bytes()
    }
}

/// Child node indices by level.
#[derive(Debug)]
pub(crate) enum Children {
    /// At most [`FEW`] children, in insertion order, allocated to fit.
    Few(Vec<(Key, usize)>),
    /// More than [`FEW`] (boxed: most nodes never need it).
    #[expect(
        clippy::box_collection,
        reason = "boxed so that an empty one costs a pointer, not an empty map's 48 bytes"
    )]
    Many(Box<HashMap<Key, usize>>),
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
            Children::Few(v) => v
                .iter()
                .find(|(l, _)| l.as_bytes() == level.as_bytes())
                .map(|&(_, c)| c),
            Children::Many(m) => m.get(level.as_bytes()).copied(),
        }
    }

    /// Adds the child `c` for `level`, which has none yet.
    pub(crate) fn insert(&mut self, level: &str, c: usize) {
        match self {
            Children::Few(v) if v.len() < FEW => {
                // Exactly what is held: a node with one child keeps one slot, not four.
                v.reserve_exact(1);
                v.push((Key::new(level), c));
            }
            Children::Few(v) => {
                let mut m: HashMap<Key, usize> = std::mem::take(v).into_iter().collect();
                m.insert(Key::new(level), c);
                *self = Children::Many(Box::new(m));
            }
            Children::Many(m) => {
                m.insert(Key::new(level), c);
            }
        }
    }

    /// Removes the child for `level`, if any.
    pub(crate) fn remove(&mut self, level: &str) {
        match self {
            Children::Few(v) => {
                v.retain(|(l, _)| l.as_bytes() != level.as_bytes());
                if v.is_empty() {
                    *v = Vec::new();
                }
            }
            Children::Many(m) => {
                m.remove(level.as_bytes());
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
    fn short_and_long_levels_are_found_and_a_key_stays_two_words() {
        assert_eq!(std::mem::size_of::<Key>(), 16);
        let levels = [
            "",
            "a",
            "cmd",
            "1234567",
            "12345678",
            "ünïcödé",
            "a-much-longer-level",
        ];
        for many in [false, true] {
            let mut c = Children::default();
            if many {
                for i in 0..FEW {
                    c.insert(&format!("pad{i}"), 100 + i);
                }
            }
            for (i, l) in levels.iter().enumerate() {
                c.insert(l, i);
            }
            assert_eq!(matches!(c, Children::Many(_)), many);
            for (i, l) in levels.iter().enumerate() {
                assert_eq!(c.get(l), Some(i), "{l:?}");
            }
            assert_eq!(c.get("cm"), None);
            assert_eq!(c.get("cmd\0"), None);
            assert_eq!(c.get("1234567\0"), None);
            for l in levels {
                c.remove(l);
                assert_eq!(c.get(l), None);
            }
        }
        assert!(matches!(Key::new("1234567"), Key::Inline { len: 7, .. }));
        assert!(matches!(Key::new("12345678"), Key::Heap(_)));
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
