//! The ACL file end to end: allowed and denied × PUBLISH, SUBSCRIBE, will and (retained)
//! delivery × MQTT 3.1.1 and 5.0, for a `user` section, a `pattern` with `%u`, a `pattern`
//! with `%c` and the anonymous rules. Denials: PUBACK 0x87 (5.0) or acknowledged and
//! dropped (3.1.1); SUBACK 0x87 (5.0) or 0x80 (3.1.1); a denied will is never published; a
//! `#` subscription never delivers a topic the subscriber may not read.

#![allow(clippy::unwrap_used)]

mod security_support;

use std::time::Duration;

use canopy_model::password::hash_password;
use canopy_proto::{Protocol, QoS, TopicName, Will};
use security_support::*;

const ACL: &str = "\
# anonymous clients
topic readwrite anon/#

user alice
topic readwrite alice/#

user root
topic readwrite #

user watcher
topic read #

pattern readwrite users/%u/#
pattern readwrite clients/%c/#
";

/// Who is tested: user and password, client id, a topic prefix they may use and one they
/// may not.
struct Subject {
    rule: &'static str,
    user: Option<(&'static str, &'static str)>,
    id: String,
    allowed: String,
    denied: String,
}

fn subjects(tag: &str) -> Vec<Subject> {
    vec![
        Subject {
            rule: "user section",
            user: Some(("alice", "apple")),
            id: format!("alice-{tag}"),
            allowed: "alice/x".into(),
            denied: "bob/x".into(),
        },
        Subject {
            rule: "pattern %u",
            user: Some(("bob", "banana")),
            id: format!("bob-{tag}"),
            allowed: "users/bob/x".into(),
            denied: "users/alice/x".into(),
        },
        Subject {
            rule: "pattern %c",
            user: None,
            id: format!("dev-{tag}"),
            allowed: format!("clients/dev-{tag}/x"),
            denied: "clients/other/x".into(),
        },
        Subject {
            rule: "anonymous",
            user: None,
            id: format!("anon-{tag}"),
            allowed: "anon/x".into(),
            denied: "alice/x".into(),
        },
    ]
}

fn login(p: Protocol, id: &str, user: Option<(&str, &str)>) -> canopy_proto::Connect {
    connect(p, id, user.map(|u| u.0), user.map(|u| u.1.as_bytes()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acl_matrix_for_3_1_1_and_5_0() {
    let dir = Dir::new("acl");
    let users = [
        ("alice", "apple"),
        ("bob", "banana"),
        ("root", "r"),
        ("watcher", "w"),
    ];
    let passwd: String = users
        .iter()
        .map(|(u, p)| format!("{u}:{}\n", hash_password(p.as_bytes()).unwrap()))
        .collect();
    let mut cfg = config(vec![listener(None, false, false)]);
    cfg.auth.password_file = Some(dir.write("passwd", &passwd));
    cfg.auth.acl_file = Some(dir.write("acl", ACL));
    let broker = canopy_broker::start(cfg).await.unwrap();
    let addr = broker.mqtt_addr();
    let mut watcher =
        Raw::connect(addr, login(Protocol::V5, "watcher", Some(("watcher", "w")))).await;
    assert_eq!(watcher.subscribe("#").await, 1);
    let mut root = Raw::connect(addr, login(Protocol::V5, "root", Some(("root", "r")))).await;

    for (p, tag) in [(Protocol::V311, "v3"), (Protocol::V5, "v5")] {
        let refused_ack = if p == Protocol::V5 { 0x87 } else { 0x00 };
        let refused_sub = if p == Protocol::V5 { 0x87 } else { 0x80 };
        for s in subjects(tag) {
            let case = format!("{} {tag}", s.rule);
            let mut c = Raw::connect(addr, login(p, &s.id, s.user)).await;

            // PUBLISH: the denied one is refused (5.0) or dropped (3.1.1), never delivered.
            let denied = format!("{}/pub-{tag}", s.denied);
            let allowed = format!("{}/pub-{tag}", s.allowed);
            assert_eq!(
                c.publish(&denied, b"no", false).await,
                refused_ack,
                "{case}"
            );
            assert_eq!(c.publish(&allowed, b"yes", false).await, 0, "{case}");
            let seen = watcher.topics_until(&allowed).await;
            assert!(!seen.contains(&denied), "{case}: watcher saw {seen:?}");

            // SUBSCRIBE.
            assert_eq!(c.subscribe(&denied).await, refused_sub, "{case}");
            assert_eq!(c.subscribe(&format!("{}/#", s.allowed)).await, 1, "{case}");

            // Delivery, retained and live, through a `#` subscription.
            let ret_ok = format!("{}/ret-{tag}", s.allowed);
            let ret_no = format!("{}/ret-{tag}", s.denied);
            assert_eq!(root.publish(&ret_ok, b"r", true).await, 0);
            assert_eq!(root.publish(&ret_no, b"r", true).await, 0);
            let mut d = Raw::connect(addr, login(p, &format!("{}-d", s.id), s.user)).await;
            // The `%c` subject's allowed prefix names its own id, which `d` does not have.
            if s.rule != "pattern %c" {
                assert_eq!(d.subscribe("#").await, 1, "{case}");
                let live = format!("{}/live-{tag}", s.allowed);
                assert_eq!(root.publish(&live, b"l", false).await, 0);
                let seen = d.topics_until(&live).await;
                assert!(seen.contains(&ret_ok), "{case}: {seen:?}");
                assert!(
                    !seen.iter().any(|t| t.starts_with(&s.denied)),
                    "{case}: `#` delivered a denied topic: {seen:?}"
                );
            }
            drop(d);
            drop(c);

            // Wills: a denied will is not published; an allowed one is.
            let will_no = format!("{}/will-{tag}", s.denied);
            let will_ok = format!("{}/will-{tag}", s.allowed);
            for topic in [&will_no, &will_ok] {
                let mut w = login(p, &s.id, s.user);
                w.will = Some(Will {
                    topic: TopicName::new(topic).unwrap(),
                    payload: bytes::Bytes::from_static(b"gone"),
                    qos: QoS::AtLeastOnce,
                    retain: false,
                    properties: Default::default(),
                });
                let c = Raw::connect(addr, w).await;
                drop(c); // no DISCONNECT: the will is due
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            let seen = watcher.topics_until(&will_ok).await;
            assert!(
                !seen.contains(&will_no),
                "{case}: denied will published: {seen:?}"
            );
        }
    }
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acl_reload_applies_to_connected_clients() {
    let dir = Dir::new("acl-reload");
    let mut cfg = config(vec![listener(None, false, false)]);
    let acl = dir.write("acl", "topic readwrite a/#\n");
    cfg.auth.acl_file = Some(acl);
    let broker = canopy_broker::start(cfg).await.unwrap();
    let mut c = Raw::connect(broker.mqtt_addr(), connect(Protocol::V5, "c", None, None)).await;
    // 0x10: accepted, no matching subscribers.
    assert_eq!(c.publish("a/1", b"x", false).await, 0x10);
    assert_eq!(c.publish("b/1", b"x", false).await, 0x87);
    dir.write("acl", "topic readwrite b/#\n");
    assert!(broker.reload().is_empty());
    assert_eq!(c.publish("a/1", b"x", false).await, 0x87);
    assert_eq!(c.publish("b/1", b"x", false).await, 0x10);
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_acl_decides_who_may_acquire_a_resource() {
    let dir = Dir::new("acl-resource");
    let passwd: String = [("alice", "apple"), ("bob", "banana")]
        .iter()
        .map(|(u, p)| format!("{u}:{}\n", hash_password(p.as_bytes()).unwrap()))
        .collect();
    let acl = "\
pattern read $resource/lic
pattern read $resource/+/client/%c
user alice
topic write $resource/lic/acquire
user bob
topic write bob/#
";
    let mut cfg = config(vec![listener(None, false, false)]);
    cfg.auth.password_file = Some(dir.write("passwd", &passwd));
    cfg.auth.acl_file = Some(dir.write("acl", acl));
    let resource: canopy_broker::config::ResourceConfig =
        toml::from_str("name = \"lic\"\nmax_concurrent = 2\n").unwrap();
    cfg.resource = vec![resource];
    let broker = canopy_broker::start(cfg).await.unwrap();
    let addr = broker.mqtt_addr();
    for p in [Protocol::V311, Protocol::V5] {
        let refused = if p == Protocol::V5 { 0x87 } else { 0x00 };
        let mut bob = Raw::connect(addr, login(p, "bob-res", Some(("bob", "banana")))).await;
        assert_eq!(
            bob.publish("$resource/lic/acquire", b"", false).await,
            refused,
            "{p:?}: bob may not acquire"
        );
    }
    let mut alice = Raw::connect(
        addr,
        login(Protocol::V5, "alice-res", Some(("alice", "apple"))),
    )
    .await;
    assert_eq!(alice.publish("$resource/lic/acquire", b"", false).await, 0);
    assert_eq!(alice.subscribe("$resource/lic").await, 1);
    let summary = loop {
        match alice.recv(Duration::from_secs(5)).await {
            Some(canopy_proto::Packet::Publish(m))
                if m.topic.as_ref().map(TopicName::as_str) == Some("$resource/lic") =>
            {
                break String::from_utf8(m.payload.to_vec()).unwrap();
            }
            Some(_) => {}
            None => panic!("no summary"),
        }
    };
    assert!(
        summary.contains("\"in_use\":1"),
        "only alice holds a unit: {summary}"
    );
    broker.shutdown().await;
}
