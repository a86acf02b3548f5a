//! Device status as a topic: the document kept retained at `$status/<client-id>`.
//!
//! Owns the [`StatusBook`], a read-mostly table of the latest document per client that the
//! router writes and the DNS listener reads; the document's shape is `canopy_model::status`. The
//! router publishes the documents; this module never routes anything itself.

use std::collections::HashMap;
use std::sync::RwLock;

pub use canopy_model::status::{STATUS_PREFIX, State, StatusDoc};

/// The latest status of every client seen since start (and restored retained ones).
#[derive(Debug, Default)]
pub struct StatusBook {
    docs: RwLock<HashMap<String, StatusDoc>>,
}

impl StatusBook {
    /// An empty book.
    pub fn new() -> StatusBook {
        StatusBook::default()
    }

    /// Records the latest document of `client_id`.
    pub fn set(&self, client_id: &str, doc: StatusDoc) {
        let mut docs = self.docs.write().unwrap_or_else(|p| p.into_inner());
        docs.insert(client_id.to_string(), doc);
    }

    /// The latest document of `client_id`, if the client was ever seen.
    pub fn get(&self, client_id: &str) -> Option<StatusDoc> {
        let docs = self.docs.read().unwrap_or_else(|p| p.into_inner());
        docs.get(client_id).cloned()
    }

    /// Looks a client up ignoring ASCII case (DNS names are case-insensitive); an exact
    /// match wins.
    pub fn get_ignore_case(&self, client_id: &str) -> Option<StatusDoc> {
        let docs = self.docs.read().unwrap_or_else(|p| p.into_inner());
        docs.get(client_id).cloned().or_else(|| {
            docs.iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(client_id))
                .map(|(_, v)| v.clone())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn book_returns_the_latest_document() {
        let b = StatusBook::new();
        b.set("dev1", StatusDoc::now(State::Online, "n", "connected"));
        b.set(
            "dev1",
            StatusDoc::now(State::Offline, "n", "connection lost"),
        );
        assert_eq!(b.get("dev1").map(|d| d.state), Some(State::Offline));
        assert_eq!(
            b.get_ignore_case("DEV1").map(|d| d.state),
            Some(State::Offline)
        );
        assert!(b.get("dev2").is_none());
    }
}
