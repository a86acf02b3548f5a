//! Test support shared by the two tries' tests (subscriptions in `topic_tree`, retained
//! messages in `retain`): topic and filter constructors, the proptest strategies that draw
//! colliding topics and filters, and the reference matcher both tries are checked against.
//!
//! Compiled for tests only. Owns no trie; must never reimplement matching (the oracle is
//! `canopy_proto::topic::matches`, written independently of both tries).

use canopy_proto::{TopicFilter, TopicName};
use proptest::prelude::*;

/// A filter from a test literal.
pub(crate) fn f(s: &str) -> TopicFilter {
    TopicFilter::new(s).unwrap()
}

/// A topic name from a test literal.
pub(crate) fn t(s: &str) -> TopicName {
    TopicName::new(s).unwrap()
}

/// The reference matcher: whether `filter` matches `topic` [MQTT-4.7.1-1], [MQTT-4.7.2-1].
pub(crate) fn oracle(filter: &str, topic: &str) -> bool {
    canopy_proto::topic::matches(filter, topic)
}

/// Levels drawn from a small alphabet so that filters and topics collide often (empty
/// levels and `$` ones included).
fn level() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec!["a", "b", "", "$x", "$"])
}

/// Valid topic names of one to four levels.
pub(crate) fn topic_strategy() -> impl Strategy<Value = String> {
    prop::collection::vec(level(), 1..5)
        .prop_map(|levels| levels.join("/"))
        .prop_filter("topic must be valid", |s| TopicName::validate(s).is_ok())
}

/// Valid filters of up to four levels with `+` among them, `#` last or not at all.
pub(crate) fn filter_strategy() -> impl Strategy<Value = String> {
    let filter_level = prop_oneof![3 => level(), 1 => Just("+")];
    (prop::collection::vec(filter_level, 0..5), any::<bool>())
        .prop_map(|(mut levels, hash)| {
            if hash {
                levels.push("#");
            }
            levels.join("/")
        })
        .prop_filter("filter must be valid", |s| TopicFilter::validate(s).is_ok())
}
