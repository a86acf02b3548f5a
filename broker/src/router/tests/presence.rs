//! The presence agent driven by the router: gated watcher subscriptions (pending with a
//! SUBACK user property, no retained replay; activated by consent with the current
//! document; deactivated by revocation), and devices of ended connections turning
//! offline after the grace.

use std::time::Duration;

use canopy_proto::{Packet, Protocol, PublishProperties, QoS};

use super::{Conn, Harness};

const PHONE: &str = "$presence/alice/devices/phone";

fn set(h: &mut Harness, id: &str, topic: &str, payload: &str) {
    h.publish(
        id,
        topic,
        payload,
        QoS::AtLeastOnce,
        true,
        PublishProperties::default(),
    );
}

fn aggregates(h: &mut Harness, id: &str) -> Vec<serde_json::Value> {
    h.received(id)
        .into_iter()
        .filter(|g| g.topic == "$presence/alice")
        .map(|g| serde_json::from_slice(&g.payload).unwrap())
        .collect()
}

fn v311() -> Conn {
    Conn {
        protocol: Protocol::V311,
        ..Conn::default()
    }
}

#[test]
fn a_watcher_waits_pending_until_consent_and_stops_on_revocation() {
    for (conn, v5) in [(Conn::default(), true), (v311(), false)] {
        let mut h = Harness::new(|_| {});
        h.connect("alice-phone", Conn::default());
        set(
            &mut h,
            "alice-phone",
            PHONE,
            r#"{"availability":"busy","activity":"active"}"#,
        );
        h.connect("bob", conn);
        h.subscribe("bob", "$presence/alice", QoS::AtLeastOnce);
        let suback = h
            .packets("bob")
            .into_iter()
            .find_map(|p| match p {
                Packet::SubAck(s) => Some(s),
                _ => None,
            })
            .unwrap();
        assert_eq!(suback.reasons[0].0, 1, "granted, but pending");
        let pending = ("pending".to_owned(), "$presence/alice".to_owned());
        assert_eq!(suback.properties.user_properties.contains(&pending), v5);
        assert!(
            aggregates(&mut h, "bob").is_empty(),
            "no retained replay while pending"
        );
        // Alice's devices see the request.
        h.subscribe(
            "alice-phone",
            "$presence/alice/requests/+",
            QoS::AtLeastOnce,
        );
        let req = h.received("alice-phone");
        assert!(
            req.iter().any(|g| g.topic == "$presence/alice/requests/bob"
                && String::from_utf8_lossy(&g.payload).contains("\"pending\"")),
            "{req:?}"
        );
        // Consent: the current document arrives at once, then updates.
        set(
            &mut h,
            "alice-phone",
            "$presence/alice/watchers",
            r#"["bob"]"#,
        );
        let got = aggregates(&mut h, "bob");
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(got[0]["availability"], "busy");
        set(
            &mut h,
            "alice-phone",
            PHONE,
            r#"{"availability":"available","activity":"idle"}"#,
        );
        assert_eq!(aggregates(&mut h, "bob")[0]["availability"], "available");
        // Revocation: nothing more.
        set(&mut h, "alice-phone", "$presence/alice/watchers", "[]");
        set(
            &mut h,
            "alice-phone",
            PHONE,
            r#"{"availability":"busy","activity":"idle"}"#,
        );
        assert!(aggregates(&mut h, "bob").is_empty());
    }
}

#[test]
fn an_abnormal_disconnect_turns_the_device_offline_for_watchers_after_the_grace() {
    let mut h = Harness::new(|c| c.presence.offline_grace = Duration::from_secs(2));
    h.connect("alice-phone", Conn::default());
    set(&mut h, "alice-phone", "$presence/alice/watchers", "\"*\"");
    set(
        &mut h,
        "alice-phone",
        PHONE,
        r#"{"availability":"available","activity":"active"}"#,
    );
    h.connect("bob", Conn::default());
    h.subscribe("bob", "$presence/alice", QoS::AtLeastOnce);
    assert_eq!(aggregates(&mut h, "bob")[0]["availability"], "available");
    h.disconnect("alice-phone", true, "connection lost");
    h.advance(Duration::from_millis(1_999));
    assert!(aggregates(&mut h, "bob").is_empty());
    h.advance(Duration::from_millis(1));
    let got = aggregates(&mut h, "bob");
    assert_eq!(got[0]["availability"], "offline");
    assert_eq!(got[0]["devices"]["phone"]["availability"], "offline");
}

#[test]
fn a_client_cannot_write_an_aggregate_or_read_every_user() {
    let mut h = Harness::new(|_| {});
    h.connect("mallory", Conn::default());
    h.subscribe("mallory", "$presence/+", QoS::AtMostOnce);
    h.subscribe("mallory", "$presence/#", QoS::AtMostOnce);
    let refused = h
        .packets("mallory")
        .into_iter()
        .filter(|p| matches!(p, Packet::SubAck(s) if s.reasons[0].0 == 0x87))
        .count();
    assert_eq!(refused, 2);
    set(
        &mut h,
        "mallory",
        "$presence/alice",
        r#"{"availability":"available"}"#,
    );
    h.connect("bob", Conn::default());
    h.subscribe("bob", "$presence/alice", QoS::AtMostOnce);
    h.subscribe("bob", "$presence/alice/requests/bob", QoS::AtMostOnce);
    assert!(aggregates(&mut h, "bob").is_empty());
}

#[test]
fn a_ctl_registration_of_a_watcher_is_gated_too() {
    let mut h = Harness::new(|_| {});
    h.connect("alice-phone", Conn::default());
    set(
        &mut h,
        "alice-phone",
        PHONE,
        r#"{"availability":"busy","activity":"active"}"#,
    );
    h.connect("bob", v311());
    let reg = r#"{"filter":"$presence/alice","qos":1,"activate_on":"x/on","initial":"active"}"#;
    h.publish(
        "bob",
        "$ctl/subscribe",
        reg,
        QoS::AtMostOnce,
        false,
        PublishProperties::default(),
    );
    h.publish(
        "alice-phone",
        "x/on",
        "",
        QoS::AtMostOnce,
        false,
        PublishProperties::default(),
    );
    assert!(
        aggregates(&mut h, "bob").is_empty(),
        "pending despite its own triggers"
    );
    set(
        &mut h,
        "alice-phone",
        "$presence/alice/watchers",
        r#"["bob"]"#,
    );
    assert_eq!(aggregates(&mut h, "bob").len(), 1);
}
