//! Configuration documents (SPEC §5): where they live. `$config/<client-id>` holds one
//! client's document; `$config/default` is delivered to clients that have none.
//!
//! Owns the topic names only. Must never decide who may read or write them (the broker's
//! access rules do).

/// Prefix of configuration documents.
pub const CONFIG_PREFIX: &str = "$config/";

/// The document of clients that have none of their own.
pub const CONFIG_DEFAULT: &str = "$config/default";

/// The topic of `client_id`'s own document: `$config/<client-id>`.
pub fn config_topic(client_id: &str) -> String {
    format!("{CONFIG_PREFIX}{client_id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_document_lives_under_the_prefix() {
        assert_eq!(config_topic("default"), CONFIG_DEFAULT);
        assert_eq!(config_topic("dev-1"), "$config/dev-1");
    }
}
