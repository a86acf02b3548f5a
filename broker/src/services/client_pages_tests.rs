use canopy_proto::Protocol;

use super::*;
use crate::services::testing::{FakeHost, message, message_with, offer};

fn host_with(ids: &[&str]) -> FakeHost {
    let mut host = FakeHost::new();
    for id in ids {
        host.set_retained(Message {
            retain: true,
            ..(*message(
                &format!("$status/{id}"),
                br#"{"state":"online","since":1,"node":"n","reason":"connected"}"#,
            ))
            .clone()
        });
    }
    host
}

/// Sends `request` from client `ui` to a fresh service and returns the decoded answer and
/// where it went.
fn ask(host: &mut FakeHost, request: &str) -> (serde_json::Value, String) {
    let mut svc = ClientPages::new();
    ask_with(&mut svc, host, request)
}

fn ask_with(
    svc: &mut ClientPages,
    host: &mut FakeHost,
    request: &str,
) -> (serde_json::Value, String) {
    let ui = host.connect("ui", false, Protocol::V5);
    let props = PublishProperties {
        response_topic: Some(TopicName::new("ui/reply").unwrap()),
        correlation_data: Some(Bytes::from_static(b"c1")),
        ..PublishProperties::default()
    };
    let msg = message_with(REQUEST_TOPIC, request.as_bytes(), props);
    assert_eq!(
        offer(svc, host, Some(&ui), &msg),
        Some(Disposition::Consume)
    );
    let (to, answer, _, _) = host.delivered.pop().expect("an answer is delivered");
    assert_eq!(answer.topic.as_str(), "ui/reply");
    assert_eq!(
        answer.properties.correlation_data.as_deref(),
        Some(&b"c1"[..])
    );
    (serde_json::from_slice(&answer.payload).unwrap(), to)
}

fn ids(answer: &serde_json::Value) -> Vec<&str> {
    answer["clients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect()
}

#[test]
fn first_page_is_the_smallest_ids_in_order_with_a_cursor() {
    let mut host = host_with(&["d", "a", "c", "b", "e"]);
    let (answer, to) = ask(&mut host, r#"{"limit":2}"#);
    assert_eq!(to, "ui", "only the requester gets the answer");
    assert_eq!(ids(&answer), ["a", "b"]);
    assert_eq!(answer["total"], 5);
    assert_eq!(answer["next"], "b");
    assert_eq!(answer["clients"][0]["status"]["state"], "online");
    assert!(host.published.is_empty() && host.routed.is_empty());
}

#[test]
fn following_the_cursor_reaches_the_last_page() {
    let mut host = host_with(&["d", "a", "c", "b", "e"]);
    let (answer, _) = ask(&mut host, r#"{"after":"b","limit":2}"#);
    assert_eq!(ids(&answer), ["c", "d"]);
    assert_eq!(answer["next"], "d");
    let (answer, _) = ask(&mut host, r#"{"after":"d","limit":2}"#);
    assert_eq!(ids(&answer), ["e"]);
    assert_eq!(answer["next"], serde_json::Value::Null);
}

#[test]
fn search_keeps_matching_ids_and_counts_them() {
    let mut host = host_with(&["sensor-1", "lamp-1", "sensor-2"]);
    let (answer, _) = ask(&mut host, r#"{"search":"sensor"}"#);
    assert_eq!(ids(&answer), ["sensor-1", "sensor-2"]);
    assert_eq!(answer["total"], 2);
}

#[test]
fn limit_is_clamped_and_a_bad_request_gets_the_first_page() {
    let names: Vec<String> = (0..150).map(|i| format!("c{i:03}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let mut host = host_with(&refs);
    let (answer, _) = ask(&mut host, r#"{"limit":100000}"#);
    assert_eq!(ids(&answer).len(), MAX_LIMIT);
    let (answer, _) = ask(&mut host, "not json");
    assert_eq!(ids(&answer).len(), DEFAULT_LIMIT);
    assert_eq!(answer["total"], 150);
}

#[test]
fn other_dashboard_topics_are_routed_untouched() {
    let mut host = FakeHost::new();
    let ui = host.connect("ui", false, Protocol::V5);
    let mut svc = ClientPages::new();
    let msg = message("$dashboard/other", b"x");
    assert_eq!(
        offer(&mut svc, &mut host, Some(&ui), &msg),
        Some(Disposition::Route)
    );
    assert!(host.delivered.is_empty());
}

#[test]
fn a_page_holds_only_documents_the_requester_may_read() {
    let mut host = host_with(&["a", "b", "c"]);
    host.read_denied.push("$status/b".to_owned());
    let (answer, _) = ask(&mut host, "{}");
    assert_eq!(ids(&answer), ["a", "c"]);
    assert_eq!(answer["total"], 2);
}

#[test]
fn a_second_request_too_soon_is_told_to_wait() {
    let mut host = host_with(&["a"]);
    let mut svc = ClientPages::new();
    let (first, _) = ask_with(&mut svc, &mut host, "{}");
    assert_eq!(ids(&first), ["a"]);
    let (second, _) = ask_with(&mut svc, &mut host, "{}");
    assert_eq!(second["error"], "too many requests");
    assert!(second["retry_ms"].as_u64().unwrap() > 0);
    host.advance(MIN_INTERVAL);
    let (third, _) = ask_with(&mut svc, &mut host, "{}");
    assert_eq!(ids(&third), ["a"]);
}
