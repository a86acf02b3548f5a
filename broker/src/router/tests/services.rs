//! Services driven by the router: status documents, configuration documents, the
//! access seam's answers as a client sees them, and QoS 1 acknowledgement flow.

use canopy_proto::{Packet, PublishProperties, QoS, ReasonCode};

use super::{Conn, Harness};

fn forwarded() -> PublishProperties {
    PublishProperties {
        user_properties: vec![(canopy_model::hops::HOPS_PROPERTY.into(), "1".into())],
        ..Default::default()
    }
}

#[test]
fn status_documents_follow_the_connection_and_reach_the_status_book() {
    let mut h = Harness::new(|_| {});
    h.connect("dev", Conn::default());
    let doc = h.status.get("dev").unwrap();
    assert_eq!(doc.reason, "connected");
    h.disconnect("dev", true, "keepalive timeout");
    assert_eq!(h.status.get("dev").unwrap().reason, "keepalive timeout");
}

#[test]
fn forwarded_status_documents_are_learnt_but_local_truth_wins() {
    let mut h = Harness::new(|_| {});
    h.connect("bridge", Conn::default());
    h.connect("near", Conn::default());
    let far = r#"{"state":"online","since":5,"node":"site","reason":"connected"}"#;
    h.publish(
        "bridge",
        "$status/far",
        far,
        QoS::AtMostOnce,
        true,
        forwarded(),
    );
    assert_eq!(h.status.get("far").map(|d| d.node), Some("site".into()));
    h.publish(
        "bridge",
        "$status/near",
        far,
        QoS::AtLeastOnce,
        true,
        forwarded(),
    );
    assert_eq!(
        h.status.get("near").map(|d| d.reason),
        Some("connected".into())
    );
    assert_ne!(h.status.get("near").map(|d| d.node), Some("site".into()));
    let acks = h.packets("bridge");
    assert!(
        acks.iter()
            .any(|p| matches!(p, Packet::PubAck(a) if a.reason == ReasonCode::NOT_AUTHORIZED)),
        "{acks:?}"
    );
}

#[test]
fn a_client_without_a_document_gets_the_default_on_its_own_topic() {
    let mut h = Harness::new(|c| c.config_docs.admins = vec!["admin".into()]);
    h.connect("admin", Conn::default());
    h.connect("dev", Conn::default());
    h.publish(
        "admin",
        "$config/default",
        "{\"v\":1}",
        QoS::AtMostOnce,
        true,
        PublishProperties::default(),
    );
    h.subscribe("dev", "$config/dev", QoS::AtLeastOnce);
    let got = h.received("dev");
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].topic, "$config/dev");
    assert!(got[0].retain);
    // A new default reaches the watcher too, at the granted QoS.
    h.publish(
        "admin",
        "$config/default",
        "{\"v\":2}",
        QoS::AtLeastOnce,
        true,
        PublishProperties::default(),
    );
    let got = h.received("dev");
    assert_eq!(got.len(), 1);
    assert_eq!(&got[0].payload[..], b"{\"v\":2}");
    assert_eq!(got[0].qos, QoS::AtLeastOnce);
    h.puback("dev", got[0].pkid.unwrap());
    // Once it has its own document, the default no longer reaches it.
    h.publish(
        "admin",
        "$config/dev",
        "{\"own\":1}",
        QoS::AtMostOnce,
        true,
        PublishProperties::default(),
    );
    h.received("dev");
    h.publish(
        "admin",
        "$config/default",
        "{\"v\":3}",
        QoS::AtMostOnce,
        true,
        PublishProperties::default(),
    );
    assert!(h.received("dev").is_empty());
}

#[test]
fn registration_errors_are_readable_only_by_their_own_client() {
    let mut h = Harness::new(|_| {});
    h.connect("a", Conn::default());
    h.connect("b", Conn::default());
    h.subscribe("b", "$ctl/errors/a", QoS::AtMostOnce);
    h.subscribe("a", "$ctl/errors/a", QoS::AtMostOnce);
    h.publish(
        "a",
        "$ctl/subscribe",
        "not json",
        QoS::AtMostOnce,
        false,
        PublishProperties::default(),
    );
    assert_eq!(h.received("a").len(), 1, "own error document");
    assert!(h.received("b").is_empty(), "another client's errors");
}

#[test]
fn a_will_on_a_broker_topic_is_not_published() {
    let mut h = Harness::new(|_| {});
    h.connect("s", Conn::default());
    h.subscribe("s", "$status/#", QoS::AtMostOnce);
    h.connect(
        "w",
        Conn {
            will: Some(super::will("$status/victim", "{\"state\":\"online\"}", 0)),
            ..Conn::default()
        },
    );
    h.received("s");
    h.disconnect("w", true, "connection lost");
    let topics: Vec<String> = h.received("s").into_iter().map(|g| g.topic).collect();
    assert_eq!(
        topics,
        vec!["$status/w".to_string()],
        "forged will published"
    );
}

#[test]
fn a_client_whose_id_the_broker_assigned_leaves_no_status_document() {
    let mut h = Harness::new(|_| {});
    h.connect("w", Conn::default());
    h.subscribe("w", "$status/#", QoS::AtMostOnce);
    h.received("w");
    h.connect(
        "canopy-1883-7",
        Conn {
            assigned: true,
            ..Conn::default()
        },
    );
    h.disconnect("canopy-1883-7", false, "disconnected");
    assert!(h.received("w").is_empty());
    assert!(h.status.get("canopy-1883-7").is_none());
}

#[test]
fn the_interest_table_shares_the_sessions_filter_string() {
    let mut h = Harness::new(|_| {});
    h.connect("dev", Conn::default());
    h.subscribe_burst("dev", &["a/b".to_string()]);
    let key = h.router.by_id["dev"];
    let (filter, _) = h.router.sessions[key]
        .subscriptions
        .get_key_value("a/b")
        .unwrap();
    assert_eq!(
        std::sync::Arc::strong_count(filter),
        2,
        "the session and the interest table hold one string, not a copy each"
    );
}

#[test]
fn one_document_per_status_topic_whether_kept_or_forwarded() {
    let mut h = Harness::new(|_| {});
    h.connect("bridge", Conn::default());
    h.connect("roamer", Conn::default());
    h.disconnect("roamer", false, "disconnected");
    // The client turns up below another broker: its forwarded document replaces the kept one.
    let far = r#"{"state":"online","since":5,"node":"site","reason":"connected"}"#;
    h.publish(
        "bridge",
        "$status/roamer",
        far,
        QoS::AtMostOnce,
        true,
        forwarded(),
    );
    let read = |h: &mut Harness, who: &str| -> Vec<String> {
        h.connect(who, Conn::default());
        h.subscribe(who, "$status/roamer", QoS::AtMostOnce);
        h.received(who)
            .into_iter()
            .map(|g| String::from_utf8(g.payload.to_vec()).unwrap())
            .collect()
    };
    assert_eq!(read(&mut h, "w1"), [far.to_string()]);
    assert_eq!(h.status.get("roamer").map(|d| d.node), Some("site".into()));
    // Back here: the kept document replaces the forwarded one.
    h.connect("roamer", Conn::default());
    let got = read(&mut h, "w2");
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(got[0].contains("\"reason\":\"connected\"") && !got[0].contains("site"));
    assert!(
        h.router
            .retained
            .iter()
            .all(|(t, _)| t.as_str() != "$status/roamer"),
        "the forwarded copy left the retained trie"
    );
}
