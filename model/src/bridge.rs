//! Bridge identities: the client ids a bridge (metabroker) uses on its two brokers when its
//! configuration names none, and how a broker recognises the default local one.
//!
//! Owns the naming rule `<name>-local` / `<name>-remote`. Must never grant anything by
//! itself: the broker's access rules decide what a recognised bridge may write.

/// Suffix of a bridge's default client id on its local broker.
const LOCAL_SUFFIX: &str = "-local";
/// Suffix of a bridge's default client id on its remote broker.
const REMOTE_SUFFIX: &str = "-remote";

/// The client id a bridge named `name` uses on its local broker: `configured` if set,
/// else `<name>-local`.
pub fn local_client_id(name: &str, configured: Option<&str>) -> String {
    configured.map_or_else(|| format!("{name}{LOCAL_SUFFIX}"), str::to_owned)
}

/// The client id a bridge named `name` uses on its remote broker: `configured` if set,
/// else `<name>-remote`.
pub fn remote_client_id(name: &str, configured: Option<&str>) -> String {
    configured.map_or_else(|| format!("{name}{REMOTE_SUFFIX}"), str::to_owned)
}

/// The bridge name in a default local client id (`site-local` → `site`), if it is one.
pub fn name_of_default_local(client_id: &str) -> Option<&str> {
    client_id.strip_suffix(LOCAL_SUFFIX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_ids_name_the_bridge_and_its_side() {
        assert_eq!(local_client_id("site", None), "site-local");
        assert_eq!(remote_client_id("site", None), "site-remote");
    }

    #[test]
    fn configured_ids_win() {
        assert_eq!(local_client_id("site", Some("gw")), "gw");
        assert_eq!(remote_client_id("site", Some("up")), "up");
    }

    #[test]
    fn default_local_id_reads_back_its_bridge_name() {
        assert_eq!(
            name_of_default_local(&local_client_id("site", None)),
            Some("site")
        );
        assert_eq!(name_of_default_local("site-remote"), None);
    }
}
