//! The resources' topics and payloads (docs/resources.md): request topics, answer and
//! summary documents, and the retained state document a restart reads back.
//!
//! Owns every topic spelling and JSON field name of the service. Pure functions only: must
//! never publish, read a clock or hold state.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::state::{Answer, Ms, Snapshot};

/// Prefix of every resource topic.
pub const PREFIX: &str = "$resource/";

/// Version of the retained state document's format.
pub const STATE_VERSION: u32 = 1;

/// What a client asks of a resource.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verb {
    /// `$resource/<name>/acquire`.
    Acquire,
    /// `$resource/<name>/reserve`.
    Reserve,
    /// `$resource/<name>/release`.
    Release,
}

/// The resource name and verb of a request topic `$resource/<name>/<verb>`, if it is one.
pub fn parse_request(topic: &str) -> Option<(&str, Verb)> {
    let rest = topic.strip_prefix(PREFIX)?;
    let (name, verb) = rest.split_once('/')?;
    if name.is_empty() {
        return None;
    }
    let verb = match verb {
        "acquire" => Verb::Acquire,
        "reserve" => Verb::Reserve,
        "release" => Verb::Release,
        _ => return None,
    };
    Some((name, verb))
}

/// Where `client` gets its answers when it gave no Response Topic.
pub fn client_topic(name: &str, client: &str) -> String {
    format!("{PREFIX}{name}/client/{client}")
}

/// The retained summary of resource `name`.
pub fn summary_topic(name: &str) -> String {
    format!("{PREFIX}{name}")
}

/// The retained state document of resource `name`, read back at start-up. Clients may
/// neither read nor write it (the access seam's rule).
pub fn state_topic(name: &str) -> String {
    format!("{PREFIX}{name}/state")
}

/// The `$SYS` topic of counter `what` of resource `name`.
pub fn sys_topic(name: &str, what: &str) -> String {
    format!("$SYS/broker/resources/{name}/{what}")
}

/// The lease an `acquire` payload asks for: empty (or `{}`) means the configured lease;
/// `{"lease":"30s"}` asks for 30 seconds (capped at the configured lease).
pub fn parse_lease(payload: &[u8]) -> Result<Option<Ms>, String> {
    if payload.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let value: Value =
        serde_json::from_slice(payload).map_err(|e| format!("payload is not JSON: {e}"))?;
    let Value::Object(map) = value else {
        return Err("payload must be a JSON object".to_owned());
    };
    match map.get("lease") {
        None => Ok(None),
        Some(Value::String(text)) => {
            let d = humantime::parse_duration(text.trim())
                .map_err(|e| format!("lease {text:?}: {e}"))?;
            let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
            if ms == 0 {
                return Err("lease must be at least 1ms".to_owned());
            }
            Ok(Some(ms))
        }
        Some(_) => Err("lease must be a duration string such as \"30s\"".to_owned()),
    }
}

/// The JSON document of an answer.
pub fn answer_json(answer: &Answer) -> Value {
    match answer {
        Answer::Granted { grant, expires } => {
            json!({"state": "granted", "grant": grant, "expires": expires})
        }
        Answer::Queued { position } => json!({"state": "queued", "position": position}),
        Answer::Scheduled { start, end } => {
            json!({"state": "scheduled", "slot_start": start, "slot_end": end})
        }
        Answer::Refused { reason } => json!({"state": "refused", "reason": reason}),
        Answer::Released { grant } => with_grant("released", *grant),
        Answer::Expired { grant } => with_grant("expired", *grant),
    }
}

fn with_grant(state: &str, grant: Option<u64>) -> Value {
    match grant {
        Some(g) => json!({"state": state, "grant": g}),
        None => json!({"state": state}),
    }
}

/// The retained summary document.
pub fn summary_json(in_use: usize, max: usize, queued: usize, next_slot: Option<Ms>) -> Value {
    json!({"in_use": in_use, "max": max, "queued": queued, "next_slot": next_slot})
}

/// The retained state document: a versioned [`Snapshot`].
#[derive(Debug, Serialize, Deserialize)]
struct StateDoc {
    v: u32,
    #[serde(flatten)]
    snapshot: Snapshot,
}

/// Encodes `snapshot` as the state document.
pub fn encode_state(snapshot: &Snapshot) -> Vec<u8> {
    let doc = StateDoc {
        v: STATE_VERSION,
        snapshot: snapshot.clone(),
    };
    serde_json::to_vec(&doc).unwrap_or_default()
}

/// Decodes a state document; an unknown version or a damaged document is an error (the
/// resource then starts empty, with a log line).
pub fn decode_state(payload: &[u8]) -> Result<Snapshot, String> {
    let doc: StateDoc = serde_json::from_slice(payload).map_err(|e| e.to_string())?;
    if doc.v != STATE_VERSION {
        return Err(format!("unknown state version {}", doc.v));
    }
    Ok(doc.snapshot)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_topics_have_exactly_three_levels() {
        assert_eq!(
            parse_request("$resource/lic/acquire"),
            Some(("lic", Verb::Acquire))
        );
        assert_eq!(
            parse_request("$resource/lic/reserve"),
            Some(("lic", Verb::Reserve))
        );
        assert_eq!(
            parse_request("$resource/lic/release"),
            Some(("lic", Verb::Release))
        );
        for t in [
            "$resource/lic",
            "$resource//acquire",
            "$resource/lic/acquire/x",
            "$resource/lic/client/a",
            "$resource/lic/state",
            "resource/lic/acquire",
        ] {
            assert_eq!(parse_request(t), None, "{t}");
        }
    }

    #[test]
    fn lease_payloads_parse_or_say_why_not() {
        assert_eq!(parse_lease(b""), Ok(None));
        assert_eq!(parse_lease(b" \n"), Ok(None));
        assert_eq!(parse_lease(b"{}"), Ok(None));
        assert_eq!(parse_lease(br#"{"lease":"30s"}"#), Ok(Some(30_000)));
        assert_eq!(parse_lease(br#"{"lease":"1m 500ms"}"#), Ok(Some(60_500)));
        assert!(parse_lease(br#"{"lease":30}"#).is_err());
        assert!(parse_lease(br#"{"lease":"0s"}"#).is_err());
        assert!(parse_lease(br#"{"lease":"soon"}"#).is_err());
        assert!(parse_lease(b"[1]").is_err());
        assert!(parse_lease(b"\xff").is_err());
    }

    #[test]
    fn answers_use_the_documented_fields() {
        assert_eq!(
            answer_json(&Answer::Granted {
                grant: 7,
                expires: 1000
            })
            .to_string(),
            r#"{"expires":1000,"grant":7,"state":"granted"}"#
        );
        assert_eq!(
            answer_json(&Answer::Queued { position: 2 }).to_string(),
            r#"{"position":2,"state":"queued"}"#
        );
        assert_eq!(
            answer_json(&Answer::Scheduled { start: 5, end: 9 }).to_string(),
            r#"{"slot_end":9,"slot_start":5,"state":"scheduled"}"#
        );
        assert_eq!(
            answer_json(&Answer::Refused {
                reason: "queue full"
            })
            .to_string(),
            r#"{"reason":"queue full","state":"refused"}"#
        );
        assert_eq!(
            answer_json(&Answer::Expired { grant: None }).to_string(),
            r#"{"state":"expired"}"#
        );
        assert_eq!(
            summary_json(1, 2, 3, None).to_string(),
            r#"{"in_use":1,"max":2,"next_slot":null,"queued":3}"#
        );
    }

    #[test]
    fn state_documents_round_trip_and_reject_other_versions() {
        let snap = Snapshot {
            next_grant: 4,
            ..Snapshot::default()
        };
        assert_eq!(decode_state(&encode_state(&snap)), Ok(snap));
        assert!(decode_state(br#"{"v":2,"next_grant":1,"holders":[]}"#).is_err());
        assert!(decode_state(b"{").is_err());
    }
}
