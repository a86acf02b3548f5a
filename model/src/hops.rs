//! The hop marker: the MQTT 5.0 user property in which metabrokers list, comma separated,
//! the nodes a forwarded message went through (loop detection, SPEC §4). The broker reads
//! it to tell forwarded publishes from local ones.
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
    fn empty_names_in_a_marker_are_skipped() {
        let props = vec![(HOPS_PROPERTY.to_owned(), ",a,,b,".to_owned())];
        assert_eq!(hops(&props), ["a", "b"]);
    }
}
