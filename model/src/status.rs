//! The status document kept retained at `$status/<client-id>` (SPEC §5): its shape, its
//! JSON text and how a received one is read back.
//!
//! Owns only the document. Must never decide when a document is published or keep a table
//! of them (the broker's status service and its `StatusBook` do).

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
    /// A document for `state` beginning now (wall clock).
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

    /// Reads a document back from its JSON value (a retained or forwarded copy): `None`
    /// unless `state` is `online`/`offline`, `since` a whole number and `node` a string;
    /// a missing `reason` reads as empty.
    pub fn from_value(v: &serde_json::Value) -> Option<StatusDoc> {
        let state = match v.get("state")?.as_str()? {
            "online" => State::Online,
            "offline" => State::Offline,
            _ => return None,
        };
        Some(StatusDoc {
            state,
            since: v.get("since")?.as_u64()?,
            node: v.get("node")?.as_str()?.to_string(),
            reason: v
                .get("reason")
                .and_then(|r| r.as_str())
                .unwrap_or_default()
                .to_string(),
        })
    }

    /// Reads a document from a PUBLISH payload; `None` when it is not one.
    pub fn from_payload(payload: &[u8]) -> Option<StatusDoc> {
        serde_json::from_slice::<serde_json::Value>(payload)
            .ok()
            .as_ref()
            .and_then(StatusDoc::from_value)
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
    fn document_reads_back_what_it_wrote() {
        let d = StatusDoc::now(State::Offline, "edge-1", "keepalive timeout");
        assert_eq!(StatusDoc::from_payload(d.to_json().as_bytes()), Some(d));
    }

    #[test]
    fn missing_reason_reads_as_empty() {
        let d = StatusDoc::from_payload(br#"{"state":"online","since":1,"node":"n"}"#);
        assert_eq!(d.map(|d| d.reason), Some(String::new()));
    }

    #[test]
    fn unknown_state_or_missing_fields_are_not_documents() {
        for text in [
            r#"{"state":"sleeping","since":1,"node":"n"}"#,
            r#"{"state":"online","node":"n"}"#,
            r#"{"state":"online","since":-1,"node":"n"}"#,
            r#"{"state":"online","since":1}"#,
            "not json",
        ] {
            assert_eq!(StatusDoc::from_payload(text.as_bytes()), None, "{text}");
        }
    }
}
