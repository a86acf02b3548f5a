//! SUBACKs that wait for interest propagation (`router::held`, docs/interest.md): held
//! until every reader of `$interest/subscriptions` reports on `$interest/applied/<bridge>` a
//! version containing the subscription, sent unconfirmed when the wait runs out.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use canopy_proto::{
    Packet, PublishProperties, QoS, SubAck, Subscribe, SubscribeProperties, SubscriptionOptions,
    TopicFilter,
};

use super::{Command, Conn, Harness, Router};
use crate::config::Config;
use crate::metrics::Metrics;
use crate::services::interest::{COALESCE, INTEREST_TOPIC};
use crate::services::status::StatusBook;
use crate::store::worker::Inline;
use crate::store::{MemoryStore, SessionRecord, Snapshot, StoredSession, SubscriptionRecord};

/// Subscribes `id` to `filter` asking for a SUBACK that waits `wait` (the property's value).
fn subscribe_waiting(h: &mut Harness, id: &str, filter: &str, wait: &str) {
    let (session, conn) = h.target(id);
    let pkid = h.pkid();
    let subscribe = Subscribe {
        pkid,
        filters: vec![(
            TopicFilter::new(filter).unwrap(),
            SubscriptionOptions {
                qos: QoS::AtLeastOnce,
                ..Default::default()
            },
        )],
        properties: SubscribeProperties {
            user_properties: vec![("canopy-wait-interest".into(), wait.into())],
            ..Default::default()
        },
    };
    h.send(Command::Subscribe {
        session,
        conn,
        subscribe,
    });
}

fn subacks(h: &mut Harness, id: &str) -> Vec<SubAck> {
    h.packets(id)
        .into_iter()
        .filter_map(|p| match p {
            Packet::SubAck(s) => Some(s),
            _ => None,
        })
        .collect()
}

fn result(s: &SubAck) -> Option<&str> {
    s.properties
        .user_properties
        .iter()
        .find(|(k, _)| k == "canopy-interest")
        .map(|(_, v)| v.as_str())
}

/// A metabroker's local client reading the interest document.
fn reader(h: &mut Harness, id: &str) {
    h.connect(id, Conn::default());
    h.subscribe(id, INTEREST_TOPIC, QoS::AtMostOnce);
    h.advance(COALESCE);
    h.received(id);
}

/// The version of the last document `id` received.
fn last_version(h: &mut Harness, id: &str) -> u64 {
    let docs: Vec<_> = h
        .received(id)
        .into_iter()
        .filter(|g| g.topic == INTEREST_TOPIC)
        .collect();
    let doc: serde_json::Value = serde_json::from_slice(&docs.last().unwrap().payload).unwrap();
    doc["version"].as_u64().unwrap()
}

fn applied(h: &mut Harness, id: &str, bridge: &str, version: u64) {
    h.publish(
        id,
        &format!("$interest/applied/{bridge}"),
        &format!(r#"{{"version":{version}}}"#),
        QoS::AtMostOnce,
        false,
        PublishProperties::default(),
    );
}

#[test]
fn without_readers_a_waiting_suback_is_confirmed_at_once() {
    let mut h = Harness::new(|_| {});
    h.connect("root-sub", Conn::default());
    subscribe_waiting(&mut h, "root-sub", "map/1", "");
    let s = subacks(&mut h, "root-sub");
    assert_eq!(s.len(), 1);
    assert_eq!(s[0].reasons[0].0, 1, "granted QoS 1");
    assert_eq!(result(&s[0]), Some("confirmed"));
}

#[test]
fn a_waiting_suback_goes_out_once_every_reader_applied_the_version() {
    let mut h = Harness::new(|_| {});
    reader(&mut h, "up-local");
    reader(&mut h, "side-local");
    h.connect("sub", Conn::default());
    subscribe_waiting(&mut h, "sub", "map/1", "5000");
    assert!(subacks(&mut h, "sub").is_empty(), "held");
    h.advance(COALESCE);
    let v = last_version(&mut h, "up-local");
    assert_eq!(last_version(&mut h, "side-local"), v);
    applied(&mut h, "up-local", "up", v - 1);
    applied(&mut h, "side-local", "side", v);
    assert!(
        subacks(&mut h, "sub").is_empty(),
        "an older version does not confirm"
    );
    applied(&mut h, "up-local", "up", v);
    let s = subacks(&mut h, "sub");
    assert_eq!(s.len(), 1);
    assert_eq!(result(&s[0]), Some("confirmed"));
    assert!(s[0].properties.reason_string.is_none());
    h.advance(Duration::from_secs(10));
    assert!(subacks(&mut h, "sub").is_empty(), "one SUBACK only");
    // The applied reports are consumed: nobody receives them.
    h.connect("spy", Conn::default());
    h.subscribe("spy", "$interest/#", QoS::AtMostOnce);
    applied(&mut h, "up-local", "up", v);
    assert!(
        h.received("spy")
            .iter()
            .all(|g| !g.topic.starts_with("$interest/applied"))
    );
}

#[test]
fn a_waiting_suback_goes_out_unconfirmed_when_the_wait_runs_out() {
    let mut h = Harness::new(|_| {});
    reader(&mut h, "up-local");
    h.connect("sub", Conn::default());
    subscribe_waiting(&mut h, "sub", "map/1", "1000");
    h.advance(Duration::from_millis(999));
    assert!(subacks(&mut h, "sub").is_empty(), "held until the deadline");
    h.advance(Duration::from_millis(1));
    let s = subacks(&mut h, "sub");
    assert_eq!(s.len(), 1);
    assert_eq!(s[0].reasons[0].0, 1, "the subscription is granted anyway");
    assert_eq!(result(&s[0]), Some("unconfirmed"));
    assert_eq!(
        s[0].properties.reason_string.as_deref(),
        Some("interest not confirmed upstream within 1000 ms")
    );
    let v = last_version(&mut h, "up-local");
    applied(&mut h, "up-local", "up", v);
    assert!(
        subacks(&mut h, "sub").is_empty(),
        "a late confirmation sends nothing"
    );
}

#[test]
fn the_subscription_routes_while_its_suback_waits() {
    let mut h = Harness::new(|_| {});
    reader(&mut h, "up-local");
    h.connect("sub", Conn::default());
    h.connect("pub", Conn::default());
    subscribe_waiting(&mut h, "sub", "map/1", "1000");
    h.publish(
        "pub",
        "map/1",
        "x",
        QoS::AtMostOnce,
        false,
        PublishProperties::default(),
    );
    assert_eq!(h.received("sub").len(), 1, "MQTT 5.0 §3.8.4 allows it");
}

#[test]
fn a_waiting_suback_is_not_sent_to_a_later_connection() {
    let mut h = Harness::new(|_| {});
    reader(&mut h, "up-local");
    h.connect(
        "sub",
        Conn {
            clean: false,
            expiry: 600,
            ..Conn::default()
        },
    );
    subscribe_waiting(&mut h, "sub", "map/1", "1000");
    h.disconnect("sub", false, "connection lost");
    h.connect(
        "sub",
        Conn {
            clean: false,
            expiry: 600,
            ..Conn::default()
        },
    );
    h.advance(Duration::from_secs(2));
    assert!(subacks(&mut h, "sub").is_empty());
}

/// A router started from a store holding the persistent session `id` subscribed to `filter`.
fn restored(id: &str, filter: &str) -> Harness {
    let config = Config::ephemeral();
    let now = Instant::now();
    let metrics = Arc::new(Metrics::default());
    let status = Arc::new(StatusBook::new());
    let services = crate::router::registered(&config, &metrics, &status, now);
    let record = SessionRecord {
        client_id: Arc::from(id),
        expiry_interval: 600,
        expires_at: Some(now + Duration::from_secs(600)),
        will: None,
        will_at: None,
        subscriptions: vec![SubscriptionRecord {
            filter: filter.into(),
            options: SubscriptionOptions::default(),
            identifier: None,
            activation: None,
        }],
    };
    let snapshot = Snapshot {
        retained: Vec::new(),
        sessions: vec![StoredSession {
            record,
            deliveries: Vec::new(),
            incoming: Vec::new(),
        }],
    };
    let committer = Box::new(Inline::new(Box::new(MemoryStore::new())));
    let router = Router::new(&config, snapshot, committer, metrics, services, now);
    let mut h = Harness {
        router,
        now,
        status,
        clients: HashMap::new(),
        next_pkid: 1,
    };
    h.advance(Duration::ZERO);
    h
}

#[test]
fn a_broker_restarted_from_its_store_lists_restored_subscriptions() {
    let mut h = restored("keep", "map/7");
    h.connect("up-local", Conn::default());
    h.subscribe("up-local", INTEREST_TOPIC, QoS::AtMostOnce);
    let docs: Vec<_> = h
        .received("up-local")
        .into_iter()
        .filter(|g| g.topic == INTEREST_TOPIC)
        .collect();
    let doc: serde_json::Value = serde_json::from_slice(&docs[0].payload).unwrap();
    assert_eq!(doc["filters"], serde_json::json!({"map/7": ["keep"]}));
}
