//! A session's subscriptions by filter: a short list for the few most sessions have,
//! a hash map beyond that.
//!
//! Most sessions hold one to a few subscriptions, for which a hash map's smallest
//! table (four buckets and their control bytes, about 180 bytes for one entry) is most
//! of the cost; a list allocated to fit holds one in 40 bytes and is searched as fast
//! at that size. Past [`SMALL`] entries the list becomes a map, so a session with
//! 100,000 filters keeps O(1) lookups. This module owns only the representation; what
//! a subscription means stays with `session.rs` and the router.

use std::collections::HashMap;
use std::sync::Arc;

use super::session::SubEntry;

/// Most entries kept in the list; one more turns it into a map.
pub const SMALL: usize = 8;

/// Subscriptions by filter string (see the module documentation).
#[derive(Debug, Clone)]
pub enum SubMap {
    /// Up to [`SMALL`] entries, unordered, allocated to fit.
    Small(Vec<(Arc<str>, SubEntry)>),
    /// More.
    #[expect(
        clippy::box_collection,
        reason = "boxed so that the enum is a list's three words, not a map's six"
    )]
    Large(Box<HashMap<Arc<str>, SubEntry>>),
}

impl Default for SubMap {
    fn default() -> SubMap {
        SubMap::new()
    }
}

impl SubMap {
    /// No subscriptions (allocates nothing).
    pub const fn new() -> SubMap {
        SubMap::Small(Vec::new())
    }

    /// Number of subscriptions.
    pub fn len(&self) -> usize {
        match self {
            SubMap::Small(v) => v.len(),
            SubMap::Large(m) => m.len(),
        }
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The filter as stored and its entry.
    pub fn get_key_value(&self, filter: &str) -> Option<(&Arc<str>, &SubEntry)> {
        match self {
            SubMap::Small(v) => v.iter().find(|(k, _)| **k == *filter).map(|(k, e)| (k, e)),
            SubMap::Large(m) => m.get_key_value(filter),
        }
    }

    /// The entry of `filter`.
    pub fn get(&self, filter: &str) -> Option<&SubEntry> {
        self.get_key_value(filter).map(|(_, e)| e)
    }

    /// The entry of `filter`, to change.
    pub fn get_mut(&mut self, filter: &str) -> Option<&mut SubEntry> {
        match self {
            SubMap::Small(v) => v.iter_mut().find(|(k, _)| **k == *filter).map(|(_, e)| e),
            SubMap::Large(m) => m.get_mut(filter),
        }
    }

    /// Whether `filter` is subscribed.
    pub fn contains_key(&self, filter: &str) -> bool {
        self.get_key_value(filter).is_some()
    }

    /// Adds or replaces the entry of `filter`; returns the one it replaced.
    pub fn insert(&mut self, filter: Arc<str>, entry: SubEntry) -> Option<SubEntry> {
        match self {
            SubMap::Small(v) => {
                if let Some((_, e)) = v.iter_mut().find(|(k, _)| *k == filter) {
                    return Some(std::mem::replace(e, entry));
                }
                if v.len() < SMALL {
                    // Grow by one: a session's list stays allocated to fit.
                    v.reserve_exact(1);
                    v.push((filter, entry));
                    return None;
                }
                let mut m: HashMap<Arc<str>, SubEntry> = v.drain(..).collect();
                m.insert(filter, entry);
                *self = SubMap::Large(Box::new(m));
                None
            }
            SubMap::Large(m) => m.insert(filter, entry),
        }
    }

    /// Removes the entry of `filter`, returning the filter as stored and the entry.
    pub fn remove_entry(&mut self, filter: &str) -> Option<(Arc<str>, SubEntry)> {
        let removed = match self {
            SubMap::Small(v) => {
                let i = v.iter().position(|(k, _)| **k == *filter)?;
                let kv = v.swap_remove(i);
                if v.is_empty() {
                    *v = Vec::new();
                }
                Some(kv)
            }
            SubMap::Large(m) => m.remove_entry(filter),
        };
        if let SubMap::Large(m) = self
            && m.is_empty()
        {
            *self = SubMap::new();
        }
        removed
    }

    /// Every filter, in no particular order.
    pub fn keys(&self) -> impl Iterator<Item = &Arc<str>> {
        self.iter().map(|(k, _)| k)
    }

    /// Every filter and its entry, in no particular order.
    pub fn iter(&self) -> Iter<'_> {
        match self {
            SubMap::Small(v) => Iter::Small(v.iter()),
            SubMap::Large(m) => Iter::Large(m.iter()),
        }
    }
}

/// Iterator over a [`SubMap`].
#[derive(Debug)]
pub enum Iter<'a> {
    /// Over the list.
    Small(std::slice::Iter<'a, (Arc<str>, SubEntry)>),
    /// Over the map.
    Large(std::collections::hash_map::Iter<'a, Arc<str>, SubEntry>),
}

impl<'a> Iterator for Iter<'a> {
    type Item = (&'a Arc<str>, &'a SubEntry);

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            Iter::Small(i) => i.next().map(|(k, e)| (k, e)),
            Iter::Large(i) => i.next(),
        }
    }
}

impl<'a> IntoIterator for &'a SubMap {
    type Item = (&'a Arc<str>, &'a SubEntry);
    type IntoIter = Iter<'a>;

    fn into_iter(self) -> Iter<'a> {
        self.iter()
    }
}

#[cfg(test)]
mod tests {
    use canopy_proto::SubscriptionOptions;

    use super::*;

    fn entry(id: u32) -> SubEntry {
        SubEntry {
            options: SubscriptionOptions::default(),
            identifier: Some(id),
            activation: None,
        }
    }

    #[test]
    fn one_subscription_takes_a_list_allocated_to_fit() {
        let mut m = SubMap::new();
        assert!(m.insert("a/b".into(), entry(1)).is_none());
        let SubMap::Small(v) = &m else {
            panic!("one entry should be a list");
        };
        assert_eq!(v.capacity(), 1);
        assert_eq!(m.get("a/b").and_then(|e| e.identifier), Some(1));
        assert!(m.get("a/c").is_none());
    }

    #[test]
    fn past_the_list_it_becomes_a_map_and_keeps_every_entry() {
        let mut m = SubMap::new();
        for i in 0..100u32 {
            assert!(m.insert(format!("f/{i}").into(), entry(i)).is_none());
        }
        assert!(matches!(m, SubMap::Large(_)));
        assert_eq!(m.len(), 100);
        for i in 0..100u32 {
            assert_eq!(m.get(&format!("f/{i}")).and_then(|e| e.identifier), Some(i));
        }
        assert_eq!(m.iter().count(), 100);
        for i in 0..100u32 {
            let (k, e) = m.remove_entry(&format!("f/{i}")).unwrap();
            assert_eq!((&*k, e.identifier), (&*format!("f/{i}"), Some(i)));
        }
        assert!(m.is_empty());
        assert!(matches!(&m, SubMap::Small(v) if v.capacity() == 0));
    }

    #[test]
    fn inserting_a_filter_again_replaces_its_entry() {
        for n in [1usize, SMALL + 3] {
            let mut m = SubMap::new();
            for i in 0..n {
                m.insert(format!("f/{i}").into(), entry(0));
            }
            let old = m.insert("f/0".into(), entry(7));
            assert_eq!(old.and_then(|e| e.identifier), Some(0));
            assert_eq!(m.len(), n);
            assert_eq!(m.get("f/0").and_then(|e| e.identifier), Some(7));
            m.get_mut("f/0").unwrap().identifier = Some(9);
            assert_eq!(
                m.get_key_value("f/0").map(|(k, e)| (&**k, e.identifier)),
                Some(("f/0", Some(9)))
            );
            assert!(m.contains_key("f/0"));
            assert!(m.remove_entry("nope").is_none());
        }
    }

    #[test]
    fn the_map_is_two_words_in_a_session() {
        assert!(std::mem::size_of::<SubMap>() <= 24);
    }
}
