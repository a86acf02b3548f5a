//! The hop marker: the MQTT 5.0 user property in which metabrokers list, comma separated,
//! the nodes a forwarded message went through (loop detection, SPEC §4): metabroker names,
//! and the ids of the brokers the message was on, written `@<broker-id>` (so the path of a
//! message published at broker `a` and carried by metabroker `ab` to broker `b` reads
//! `@a,ab,@b`). A metabroker never forwards into a broker on the path. The broker reads the
//! marker to tell forwarded publishes from local ones.
//!
//! Owns the property's name and its text form. Must never decide what a hop count means
//! (the metabroker's loop guard and the broker's access rules do).

/// The user property naming the metabroker nodes a message went through, comma separated.
pub const HOPS_PROPERTY: &str = "canopy-hops";

/// Whether `user_properties` carry a hop marker (the message was forwarded by a metabroker).
pub fn is_forwarded<K: AsRef<str>, V>(user_properties: &[(K, V)]) -> bool {
    user_properties
        .iter()
        .any(|(k, _)| k.as_ref() == HOPS_PROPERTY)
}

/// The node ids in the hop marker of `user_properties`, in order (empty names skipped).
pub fn hops(user_properties: &[(String, String)]) -> Vec<&str> {
    user_properties
        .iter()
        .filter(|(k, _)| k == HOPS_PROPERTY)
        .flat_map(|(_, v)| v.split(',').filter(|s| !s.is_empty()))
        .collect()
}

/// What marks a broker id in the marker; metabroker names never start with it.
pub const BROKER_MARK: char = '@';

/// Whether broker `id` is on the path of `user_properties`' hop marker.
pub fn on_path(user_properties: &[(String, String)], id: &str) -> bool {
    hops(user_properties)
        .iter()
        .any(|h| h.strip_prefix(BROKER_MARK) == Some(id))
}

/// How many metabrokers (entries that are not broker ids) the marker lists.
pub fn node_count(user_properties: &[(String, String)]) -> usize {
    hops(user_properties)
        .iter()
        .filter(|h| !h.starts_with(BROKER_MARK))
        .count()
}

/// Records one hop: from broker `from` (written unless the path already ends there), through
/// metabroker `node`, to broker `to`. One property, moved to the end, others kept in order.
pub fn push_path(user_properties: &mut Vec<(String, String)>, from: &str, node: &str, to: &str) {
    let from = format!("{BROKER_MARK}{from}");
    let mut list: Vec<String> = hops(user_properties)
        .into_iter()
        .map(str::to_owned)
        .collect();
    if list.last() != Some(&from) {
        list.push(from);
    }
    list.push(node.to_owned());
    list.push(format!("{BROKER_MARK}{to}"));
    user_properties.retain(|(k, _)| k != HOPS_PROPERTY);
    user_properties.push((HOPS_PROPERTY.to_owned(), list.join(",")));
}

/// Appends `node` to the hop marker of `user_properties`: one property, moved to the end,
/// other properties kept in order.
pub fn push_hop(user_properties: &mut Vec<(String, String)>, node: &str) {
    let mut list: Vec<String> = hops(user_properties)
        .into_iter()
        .map(str::to_owned)
        .collect();
    list.push(node.to_owned());
    user_properties.retain(|(k, _)| k != HOPS_PROPERTY);
    user_properties.push((HOPS_PROPERTY.to_owned(), list.join(",")));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_marker_appends_and_reads_back_in_order() {
        let mut props = vec![("app".to_owned(), "x".to_owned())];
        assert!(hops(&props).is_empty());
        assert!(!is_forwarded(&props));
        push_hop(&mut props, "a");
        push_hop(&mut props, "b");
        assert_eq!(hops(&props), ["a", "b"]);
        assert!(is_forwarded(&props));
        assert_eq!(props[0], ("app".to_owned(), "x".to_owned()));
        assert_eq!(props.len(), 2);
        assert_eq!(props[1].1, "a,b");
    }

    #[test]
    fn the_path_names_brokers_and_metabrokers_in_order() {
        let mut props = Vec::new();
        push_path(&mut props, "a", "ab", "b");
        push_path(&mut props, "b", "bc", "c");
        assert_eq!(hops(&props), ["@a", "ab", "@b", "bc", "@c"]);
        assert!(on_path(&props, "a") && on_path(&props, "c"));
        assert!(!on_path(&props, "ab") && !on_path(&props, "d"));
        assert_eq!(node_count(&props), 2);
        let mut props = vec![(HOPS_PROPERTY.to_owned(), "n1".to_owned())];
        push_path(&mut props, "x", "xy", "y");
        assert_eq!(hops(&props), ["n1", "@x", "xy", "@y"]);
    }

    #[test]
    fn empty_names_in_a_marker_are_skipped() {
        let props = vec![(HOPS_PROPERTY.to_owned(), ",a,,b,".to_owned())];
        assert_eq!(hops(&props), ["a", "b"]);
    }
}
