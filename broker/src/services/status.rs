//! Device status as a topic: the document kept retained at `$status/<client-id>`.
//!
//! Owns the status document's shape and the [`StatusBook`], a read-mostly table of the
//! latest document per client that the router writes and the DNS listener reads. The
//! router publishes the documents; this module never routes anything itself.

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

/// Topic prefix of status documents.
pub const STATUS_PREFIX: &str = "$status/";

/// Whether a client is connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// A connection is open.
    Online,
    /// No connection is open.
    Offline,
}

/// The JSON document at `$status/<client-id>`:
/// `{"state":"online"|"offline","since":<unix ms>,"node":"<node id>","reason":…}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StatusDoc {
    /// Online or offline.
    pub state: State,
    /// When this state began, Unix milliseconds.
    pub since: u64,
    /// The broker node that saw it.
    pub node: String,
    /// Why the state changed: `connected`, `disconnected`, `keepalive timeout`,
    /// `connection lost`, `protocol error`, `disconnected by the broker`, `shutdown`,
    /// `broker restart`.
    pub reason: String,
}

impl StatusDoc {
    /// A document for `state` beginning now.
    pub fn now(state: State, node: &str, reason: &str) -> StatusDoc {
        let since = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        StatusDoc {
            state,
            since,
            node: node.to_string(),
            reason: reason.to_string(),
        }
    }

    /// The JSON text published on the topic.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

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
    fn document_serialises_with_the_spec_field_names() {
        let d = StatusDoc {
            state: State::Online,
            since: 5,
            node: "n1".into(),
            reason: "connected".into(),
        };
        assert_eq!(
            d.to_json(),
            r#"{"state":"online","since":5,"node":"n1","reason":"connected"}"#
        );
    }

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
