//! Tests of the resources service through a [`FakeHost`]: topics, payloads, Response Topic
//! and Correlation Data, sessions ending, lease expiry through the timeout, slots, `$SYS`
//! figures and a restart from the retained state documents.

use std::time::Duration;

use canopy_proto::Protocol;
use serde_json::{Value, json};

use super::*;
use crate::services::testing::{FakeHost, fire_due, message, message_with, offer};

const WALL: Ms = 1_700_000_000_000;

fn wall() -> Ms {
    WALL
}

fn config(toml: &str) -> Config {
    Config::from_toml(toml, "test").unwrap()
}

const ONE: &str = "[[resource]]\nname = \"lic\"\nmax_concurrent = 1\nlease = \"10s\"\n";

fn start(toml: &str) -> (ResourceService, FakeHost) {
    let mut s = ResourceService::with_wall_clock(&config(toml), wall);
    let mut h = FakeHost::new();
    s.on_start(&mut h);
    (s, h)
}

fn json_of(b: &[u8]) -> Value {
    serde_json::from_slice(b).unwrap()
}

/// The answers `client` got on its own topic of `lic`, emptied from the host's record.
fn answers(h: &mut FakeHost, client: &str) -> Vec<Value> {
    let topic = format!("$resource/lic/client/{client}");
    let (mine, rest): (Vec<Message>, Vec<Message>) = h
        .take_published()
        .into_iter()
        .partition(|m| m.topic.as_str() == topic);
    h.published = rest;
    mine.iter().map(|m| json_of(&m.payload)).collect()
}

fn request(s: &mut ResourceService, h: &mut FakeHost, client: &str, verb: &str, payload: &[u8]) {
    let from = h
        .client(client)
        .unwrap_or_else(|| h.connect(client, false, Protocol::V311));
    let msg = message(&format!("$resource/lic/{verb}"), payload);
    assert_eq!(
        offer(s, h, Some(&from), &msg),
        Some(Disposition::Consume),
        "requests are consumed, never routed"
    );
}

fn summary(h: &FakeHost) -> Value {
    json_of(&h.retained_payload("$resource/lic").unwrap())
}

#[test]
fn acquire_is_answered_on_the_client_topic_and_the_summary_follows() {
    let (mut s, mut h) = start(ONE);
    assert_eq!(
        summary(&h),
        json!({"in_use": 0, "max": 1, "queued": 0, "next_slot": null})
    );
    request(&mut s, &mut h, "a", "acquire", b"");
    assert_eq!(
        answers(&mut h, "a"),
        [json!({"state": "granted", "grant": 1, "expires": WALL + 10_000})]
    );
    request(&mut s, &mut h, "b", "acquire", br#"{"lease":"2s"}"#);
    assert_eq!(
        answers(&mut h, "b"),
        [json!({"state": "queued", "position": 1})]
    );
    assert_eq!(
        summary(&h),
        json!({"in_use": 1, "max": 1, "queued": 1, "next_slot": null})
    );
    h.advance(Duration::from_secs(1));
    request(&mut s, &mut h, "a", "release", b"");
    assert_eq!(
        answers(&mut h, "a"),
        [json!({"state": "released", "grant": 1})]
    );
    assert_eq!(
        answers(&mut h, "b"),
        [json!({"state": "granted", "grant": 2, "expires": WALL + 3_000})]
    );
}

#[test]
fn a_5_0_request_is_answered_on_its_response_topic_with_its_correlation_data() {
    let (mut s, mut h) = start(ONE);
    let from = h.connect("a", false, Protocol::V5);
    let props = PublishProperties {
        response_topic: Some(TopicName::new("replies/a").unwrap()),
        correlation_data: Some(Bytes::from_static(b"req-1")),
        ..PublishProperties::default()
    };
    let msg = message_with("$resource/lic/acquire", b"", props);
    offer(&mut s, &mut h, Some(&from), &msg);
    let answer = h
        .take_published()
        .into_iter()
        .find(|m| m.topic.as_str() == "replies/a")
        .unwrap();
    assert_eq!(
        answer.properties.correlation_data.as_deref(),
        Some(&b"req-1"[..])
    );
    assert_eq!(json_of(&answer.payload)["state"], "granted");
    assert_eq!(answer.qos, QoS::AtLeastOnce);
    assert!(!answer.retain);
}

#[test]
fn bad_and_unknown_requests_are_refused_and_other_client_writes_are_swallowed() {
    let (mut s, mut h) = start(ONE);
    request(&mut s, &mut h, "a", "acquire", b"{not json");
    assert_eq!(
        answers(&mut h, "a"),
        [json!({"state": "refused", "reason": "bad request"})]
    );
    let from = h.client("a").unwrap();
    let msg = message("$resource/nope/acquire", b"");
    offer(&mut s, &mut h, Some(&from), &msg);
    assert_eq!(
        h.published_to("$resource/nope/client/a")
            .iter()
            .map(|p| json_of(p))
            .collect::<Vec<_>>(),
        [json!({"state": "refused", "reason": "unknown resource"})]
    );
    for forged in [
        "$resource/lic",
        "$resource/lic/state",
        "$resource/lic/client/b",
    ] {
        let msg = message(forged, b"{}");
        assert_eq!(
            offer(&mut s, &mut h, Some(&from), &msg),
            Some(Disposition::Consume),
            "{forged}"
        );
    }
    let own = message("$resource/lic", b"{}");
    assert_eq!(offer(&mut s, &mut h, None, &own), Some(Disposition::Route));
}

#[test]
fn the_lease_ends_at_the_timeout_and_the_next_in_line_is_granted() {
    let (mut s, mut h) = start(ONE);
    request(&mut s, &mut h, "a", "acquire", br#"{"lease":"500ms"}"#);
    request(&mut s, &mut h, "b", "acquire", b"");
    h.take_published();
    h.advance(Duration::from_millis(499));
    assert!(!fire_due(&mut s, &mut h));
    h.advance(Duration::from_millis(1));
    assert!(fire_due(&mut s, &mut h));
    assert_eq!(
        answers(&mut h, "a"),
        [json!({"state": "expired", "grant": 1})]
    );
    assert_eq!(
        answers(&mut h, "b"),
        [json!({"state": "granted", "grant": 2, "expires": WALL + 10_500})]
    );
}

#[test]
fn a_clean_session_frees_at_disconnect_and_a_persistent_one_at_session_end() {
    let (mut s, mut h) = start(ONE);
    request(&mut s, &mut h, "a", "acquire", b"");
    request(&mut s, &mut h, "b", "acquire", b"");
    let a = h.disconnect("a").unwrap();
    s.on_disconnect(&mut h, &a, "connection lost");
    assert_eq!(
        s.resource("lic").unwrap().holders()[0].client,
        "b",
        "freed at once with grace 0"
    );
    let b = h.connect("b", true, Protocol::V5);
    s.on_connect(&mut h, &b, true);
    h.disconnect("b");
    let b = ClientInfo { online: false, ..b };
    s.on_disconnect(&mut h, &b, "disconnected");
    assert_eq!(s.resource("lic").unwrap().holders()[0].client, "b");
    h.end_session("b");
    s.on_session_end(&mut h, "b");
    assert!(s.resource("lic").unwrap().holders().is_empty());
}

#[test]
fn a_clean_session_keeps_its_grant_for_grace_and_a_reconnect_keeps_it_for_good() {
    let toml = format!("{ONE}grace = \"2s\"\n");
    let (mut s, mut h) = start(&toml);
    request(&mut s, &mut h, "a", "acquire", b"");
    let a = h.disconnect("a").unwrap();
    s.on_disconnect(&mut h, &a, "connection lost");
    s.on_session_end(&mut h, "a");
    h.advance(Duration::from_secs(1));
    let a = h.connect("a", false, Protocol::V311);
    s.on_connect(&mut h, &a, false);
    h.advance(Duration::from_secs(5));
    fire_due(&mut s, &mut h);
    assert_eq!(
        s.resource("lic").unwrap().holders().len(),
        1,
        "reconnected in time"
    );

    let a = h.disconnect("a").unwrap();
    s.on_disconnect(&mut h, &a, "connection lost");
    s.on_session_end(&mut h, "a");
    h.advance(Duration::from_millis(1999));
    fire_due(&mut s, &mut h);
    assert_eq!(s.resource("lic").unwrap().holders().len(), 1);
    h.advance(Duration::from_millis(1));
    assert!(fire_due(&mut s, &mut h));
    assert!(s.resource("lic").unwrap().holders().is_empty());
}

#[test]
fn slots_are_scheduled_then_granted_when_they_begin() {
    let toml = "[[resource]]\nname = \"lic\"\nmode = \"slots\"\nslot = \"1s\"\n";
    let (mut s, mut h) = start(toml);
    request(&mut s, &mut h, "a", "reserve", b"");
    request(&mut s, &mut h, "b", "reserve", b"");
    assert_eq!(
        answers(&mut h, "a"),
        [
            json!({"state": "scheduled", "slot_start": WALL, "slot_end": WALL + 1000}),
            json!({"state": "granted", "grant": 1, "expires": WALL + 1000}),
        ]
    );
    assert_eq!(
        answers(&mut h, "b"),
        [json!({"state": "scheduled", "slot_start": WALL + 1000, "slot_end": WALL + 2000})]
    );
    assert_eq!(summary(&h)["next_slot"], WALL + 2000);
    h.advance(Duration::from_secs(1));
    assert!(fire_due(&mut s, &mut h));
    assert_eq!(
        answers(&mut h, "b"),
        [json!({"state": "granted", "grant": 2, "expires": WALL + 2000})]
    );
    assert_eq!(
        answers(&mut h, "a"),
        [json!({"state": "expired", "grant": 1})]
    );
}

#[test]
fn sys_figures_are_published_for_each_resource() {
    let (mut s, mut h) = start(ONE);
    assert_eq!(
        h.retained_payload("$SYS/broker/resources/lic/in_use")
            .as_deref(),
        Some(&b"0"[..])
    );
    request(&mut s, &mut h, "a", "acquire", b"");
    request(&mut s, &mut h, "b", "acquire", b"");
    h.advance(Duration::from_secs(10));
    while fire_due(&mut s, &mut h) {}
    for (what, value) in [
        ("in_use", "1"),
        ("granted", "2"),
        ("expired", "1"),
        ("queued", "0"),
    ] {
        assert_eq!(
            h.retained_payload(&format!("$SYS/broker/resources/lic/{what}"))
                .as_deref(),
            Some(value.as_bytes()),
            "{what}"
        );
    }
}

#[test]
fn a_restart_brings_back_holders_and_waiters_from_the_retained_state() {
    let (mut s, mut h) = start("[[resource]]\nname = \"lic\"\nmax_concurrent = 2\n");
    h.connect("p1", true, Protocol::V5);
    h.connect("p2", true, Protocol::V5);
    for c in ["p1", "clean", "p2"] {
        request(&mut s, &mut h, c, "acquire", b"");
    }
    request(&mut s, &mut h, "p3", "acquire", b"");
    let state = h.retained_payload("$resource/lic/state").unwrap();
    assert!(json_of(&state)["v"] == 1, "a versioned document");

    // The broker stops; persistent sessions survive offline, clean ones do not.
    let mut h2 = FakeHost::with_retained(h.retained_messages());
    h2.set_now(h.now() + Duration::from_secs(1));
    for c in ["p1", "p2"] {
        h2.connect(c, true, Protocol::V5);
        h2.disconnect(c);
    }
    let mut s2 = ResourceService::with_wall_clock(
        &config("[[resource]]\nname = \"lic\"\nmax_concurrent = 2\n"),
        || WALL + 1000,
    );
    s2.on_start(&mut h2);
    let r = s2.resource("lic").unwrap();
    let held: Vec<(&str, u64)> = r
        .holders()
        .iter()
        .map(|h| (h.client.as_str(), h.grant))
        .collect();
    assert_eq!(
        held,
        [("p1", 1), ("p2", 3)],
        "clean's unit went to p2, waiting at restart"
    );
    assert_eq!(
        answers(&mut h2, "p2").last(),
        Some(&json!({"state": "granted", "grant": 3, "expires": WALL + 61_000}))
    );
    assert_eq!(
        summary(&h2),
        json!({"in_use": 2, "max": 2, "queued": 0, "next_slot": null})
    );
    answers(&mut h2, "p3");
    request(&mut s2, &mut h2, "p3", "acquire", b"");
    request(&mut s2, &mut h2, "p1", "release", b"");
    assert_eq!(
        answers(&mut h2, "p3"),
        [
            json!({"state": "queued", "position": 1}),
            json!({"state": "granted", "grant": 4, "expires": WALL + 61_000}),
        ],
        "grant numbers keep growing across the restart"
    );
}

#[test]
fn state_of_a_resource_no_longer_configured_is_cleared_at_start() {
    let mut h = FakeHost::new();
    h.set_retained(Message {
        retain: true,
        ..(*message(
            "$resource/old/state",
            br#"{"v":1,"next_grant":3,"holders":[]}"#,
        ))
        .clone()
    });
    let mut s = ResourceService::with_wall_clock(&config(ONE), wall);
    s.on_start(&mut h);
    assert_eq!(h.retained_payload("$resource/old/state"), None);
    assert!(h.retained_payload("$resource/lic/state").is_some());
}
