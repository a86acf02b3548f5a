//! Presence (SPEC §5, docs/presence.md) on the wire: two users and three devices, the
//! aggregate, an abnormal disconnect turning a device offline after the grace, watchers
//! permitted / pending / approved / revoked (3.1.1 and 5.0 watchers; the 5.0 SUBACK says
//! `pending`), access denials, and the agent advertised in CONNACK and
//! `$SYS/broker/features`. Anonymous access: a device's user is the `<user>` level and a
//! watcher is named by its client id. Canopy features: skipped in external mode.

use std::time::Duration;

use canopy_broker::config::Config;
use canopy_tests::wire::{self, Connect, V5};
use canopy_tests::{RawClient, TestBroker, is_external};
use serde_json::Value;

both_versions!(
    a_watcher_is_pending_until_approved_and_stops_when_revoked,
    a_permitted_watcher_gets_the_aggregate_at_once,
    a_dropped_device_turns_offline_after_the_grace,
    presence_access_denials,
);

const SHORT: Duration = Duration::from_millis(300);

async fn broker(test: &str, edit: impl FnOnce(&mut Config)) -> Option<TestBroker> {
    if is_external() {
        eprintln!("skipped in external mode: {test}");
        return None;
    }
    Some(TestBroker::start_config(edit).await)
}

fn device(availability: &str, activity: &str) -> Vec<u8> {
    format!(r#"{{"availability":"{availability}","activity":"{activity}"}}"#).into_bytes()
}

/// Two users, three devices (all 5.0): alice's phone and laptop, bob's desk.
async fn two_users(b: &TestBroker) -> (RawClient, RawClient, RawClient) {
    let mut phone = RawClient::connect(b.addr(), V5, "alice-phone").await;
    let mut laptop = RawClient::connect(b.addr(), V5, "alice-laptop").await;
    let mut desk = RawClient::connect(b.addr(), V5, "bob-desk").await;
    phone
        .publish(
            "$presence/alice/devices/phone",
            &device("busy", "idle"),
            1,
            true,
        )
        .await;
    laptop
        .publish(
            "$presence/alice/devices/laptop",
            &device("do-not-disturb", "active"),
            1,
            true,
        )
        .await;
    desk.publish(
        "$presence/bob/devices/desk",
        &device("available", "away"),
        1,
        true,
    )
    .await;
    (phone, laptop, desk)
}

/// The aggregates of `user` among `got`, parsed.
fn aggregates(got: &[wire::RxPublish], user: &str) -> Vec<Value> {
    got.iter()
        .filter(|m| m.topic == format!("$presence/{user}"))
        .map(|m| serde_json::from_slice(&m.payload).unwrap())
        .collect()
}

async fn a_watcher_is_pending_until_approved_and_stops_when_revoked(v: u8) {
    let Some(b) = broker("pending", |_| {}).await else {
        return;
    };
    let (mut phone, _laptop, _desk) = two_users(&b).await;
    let mut carol = RawClient::connect(b.addr(), v, "carol").await;
    let s = carol
        .subscribe_opts(1, &[("$presence/alice", 1)], wire::Props::new())
        .await;
    assert_eq!(s.codes, vec![1]);
    let pending = ("pending".to_owned(), "$presence/alice".to_owned());
    assert_eq!(s.props.user().contains(&pending), v == V5, "{:?}", s.props);
    assert!(
        carol.collect_publishes(SHORT).await.is_empty(),
        "nothing while pending"
    );
    // Alice sees the request (on another of her connections).
    let mut tablet = RawClient::connect(b.addr(), V5, "alice-tablet").await;
    tablet.subscribe("$presence/alice/requests/+", 1).await;
    let req = tablet.receive_and_ack(1).await.remove(0);
    assert_eq!(req.topic, "$presence/alice/requests/carol");
    let doc: Value = serde_json::from_slice(&req.payload).unwrap();
    assert_eq!(doc["state"], "pending");
    assert_eq!(doc["clients"], serde_json::json!(["carol"]));
    // Consent: the current aggregate arrives.
    phone
        .publish("$presence/alice/watchers", br#"["carol"]"#, 1, true)
        .await;
    let got = carol.receive_and_ack(1).await;
    let agg = aggregates(&got, "alice");
    assert_eq!(agg[0]["availability"], "busy");
    let approved: Value =
        serde_json::from_slice(&tablet.receive_and_ack(1).await[0].payload).unwrap();
    assert_eq!(approved["state"], "approved");
    assert_eq!(agg[0]["activity"], "active");
    assert_eq!(agg[0]["devices"].as_object().unwrap().len(), 2);
    // Revoked: later changes do not reach carol.
    phone
        .publish("$presence/alice/watchers", b"[]", 1, true)
        .await;
    phone
        .publish(
            "$presence/alice/devices/phone",
            &device("available", "active"),
            1,
            true,
        )
        .await;
    let later = carol.collect_publishes(SHORT).await;
    assert!(aggregates(&later, "alice").is_empty(), "{later:?}");
}

async fn a_permitted_watcher_gets_the_aggregate_at_once(v: u8) {
    let Some(b) = broker("permitted", |_| {}).await else {
        return;
    };
    let (mut phone, _laptop, _desk) = two_users(&b).await;
    phone
        .publish("$presence/alice/watchers", b"\"*\"", 1, true)
        .await;
    let mut carol = RawClient::connect(b.addr(), v, "carol").await;
    let s = carol
        .subscribe_opts(1, &[("$presence/alice", 1)], wire::Props::new())
        .await;
    assert!(s.props.user().is_empty());
    let got = carol.receive_and_ack(1).await;
    assert!(got[0].retain);
    assert_eq!(aggregates(&got, "alice")[0]["availability"], "busy");
    // Bob's aggregate is his own (one device), and bob lists nobody.
    carol.subscribe("$presence/bob", 1).await;
    assert!(carol.collect_publishes(SHORT).await.is_empty());
}

async fn a_dropped_device_turns_offline_after_the_grace(v: u8) {
    let Some(b) = broker("grace", |c| {
        c.presence.offline_grace = Duration::from_millis(400)
    })
    .await
    else {
        return;
    };
    let (mut phone, laptop, _desk) = two_users(&b).await;
    phone
        .publish("$presence/alice/watchers", b"\"*\"", 1, true)
        .await;
    let mut carol = RawClient::connect(b.addr(), v, "carol").await;
    carol.subscribe("$presence/alice", 1).await;
    carol.receive_and_ack(1).await;
    drop(laptop); // no DISCONNECT: an abnormal end
    assert!(
        carol
            .collect_publishes(Duration::from_millis(200))
            .await
            .is_empty(),
        "no flicker within the grace"
    );
    let got = carol.receive_and_ack(1).await;
    let agg = &aggregates(&got, "alice")[0];
    assert_eq!(agg["devices"]["laptop"]["availability"], "offline");
    assert_eq!(agg["availability"], "busy");
    assert_eq!(agg["activity"], "idle");
}

async fn presence_access_denials(v: u8) {
    let Some(b) = broker("denials", |_| {}).await else {
        return;
    };
    let refused = if v == V5 { 0x87 } else { 0x80 };
    let mut m = RawClient::connect(b.addr(), v, "mallory").await;
    for (pid, filter) in [
        (1, "$presence/+"),
        (2, "$presence/#"),
        (3, "$presence/+/devices/+"),
    ] {
        let s = m
            .subscribe_opts(pid, &[(filter, 1)], wire::Props::new())
            .await;
        assert_eq!(s.codes, vec![refused], "{filter}");
    }
    // An aggregate written by a client is refused (5.0: PUBACK 0x87) and not kept.
    let p = wire::Publish::new(v, "$presence/alice", br#"{"availability":"available"}"#).qos(1, 9);
    m.send(&p.encode()).await;
    let ack = wire::parse_ack(&m.recv().await);
    assert_eq!(ack.pid, 9);
    if v == V5 {
        assert_eq!(ack.reason, 0x87);
    }
    let mut w = RawClient::connect(b.addr(), v, "alice-phone").await;
    w.subscribe("$presence/alice/#", 1).await;
    assert!(w.collect_publishes(SHORT).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_broker_advertises_its_presence_agent() {
    let Some(b) = broker("features", |_| {}).await else {
        return;
    };
    let (_c, ack) = RawClient::connect_with(b.addr(), &Connect::v5("probe")).await;
    assert!(
        ack.props
            .user()
            .contains(&("presence".to_owned(), "agent".to_owned())),
        "{:?}",
        ack.props
    );
    let mut c = RawClient::connect(b.addr(), V5, "probe2").await;
    c.subscribe("$SYS/broker/features", 0).await;
    let m = c.recv_publish().await;
    let doc: Value = serde_json::from_slice(&m.payload).unwrap();
    assert_eq!(doc["presence"], true);
    let Some(off) = broker("features off", |c| c.presence.enabled = false).await else {
        return;
    };
    let (_c, ack) = RawClient::connect_with(off.addr(), &Connect::v5("probe")).await;
    assert!(ack.props.user().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_flows_up_the_hierarchy_to_a_watcher_at_the_root() {
    let Some(root) = broker("hierarchy", |_| {}).await else {
        return;
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let text = format!(
        r#"
durability = "memory"
[[listener]]
bind = "127.0.0.1:{port}"
[[bridge]]
name = "leaf1"
hierarchy = true
[bridge.local]
url = "mqtt://127.0.0.1:{port}"
[bridge.remote]
url = "mqtt://{root}"
"#,
        root = root.addr()
    );
    let mut cfg = Config::from_toml(&text, "leaf.toml").unwrap();
    cfg.data_dir = std::env::temp_dir().join(canopy_tests::unique("presence-leaf"));
    let leaf = canopy_broker::start(cfg).await.unwrap();
    // A watcher at the root: pending until alice's list (published at the leaf) arrives.
    let mut carol = RawClient::connect(root.addr(), V5, "carol").await;
    let s = carol
        .subscribe_opts(1, &[("$presence/alice", 1)], wire::Props::new())
        .await;
    assert!(
        s.props
            .user()
            .contains(&("pending".to_owned(), "$presence/alice".to_owned()))
    );
    let mut phone = RawClient::connect(leaf.mqtt_addr(), V5, "alice-phone").await;
    phone
        .publish(
            "$presence/alice/devices/phone",
            &device("busy", "active"),
            1,
            true,
        )
        .await;
    phone
        .publish("$presence/alice/watchers", br#"["carol"]"#, 1, true)
        .await;
    let doc = tokio::time::timeout(Duration::from_secs(15), async {
        loop {
            let got = carol.receive_and_ack(1).await;
            if let Some(d) = aggregates(&got, "alice").pop() {
                return d;
            }
        }
    })
    .await
    .expect("the leaf's aggregate reaches the root watcher");
    assert_eq!(doc["availability"], "busy");
    assert_eq!(doc["devices"]["phone"]["activity"], "active");
    leaf.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_lists_and_pending_subscriptions_survive_a_restart() {
    if is_external() {
        eprintln!("skipped in external mode: restart");
        return;
    }
    let dir = std::env::temp_dir().join(canopy_tests::unique("presence-restart"));
    let start = || {
        let mut cfg = Config::ephemeral();
        cfg.data_dir = dir.clone();
        cfg.durability = canopy_broker::config::Durability::Sync;
        canopy_broker::start(cfg)
    };
    let b = start().await.unwrap();
    let mut phone = RawClient::connect(b.mqtt_addr(), V5, "alice-phone").await;
    phone
        .publish(
            "$presence/alice/devices/phone",
            &device("busy", "active"),
            1,
            true,
        )
        .await;
    // Bob's persistent session holds a pending subscription.
    let (mut bob, _) =
        RawClient::connect_with(b.mqtt_addr(), &Connect::v311("bob").clean(false)).await;
    bob.subscribe("$presence/alice", 1).await;
    bob.disconnect().await;
    b.shutdown().await;

    let b = start().await.unwrap();
    let mut tablet = RawClient::connect(b.mqtt_addr(), V5, "alice-tablet").await;
    tablet.subscribe("$presence/alice/requests/bob", 1).await;
    let req: Value = serde_json::from_slice(&tablet.receive_and_ack(1).await[0].payload).unwrap();
    assert_eq!(req["state"], "pending");
    let (mut bob, ack) =
        RawClient::connect_with(b.mqtt_addr(), &Connect::v311("bob").clean(false)).await;
    assert!(ack.session_present);
    assert!(
        bob.collect_publishes(SHORT).await.is_empty(),
        "still pending after the restart"
    );
    let mut laptop = RawClient::connect(b.mqtt_addr(), V5, "alice-laptop").await;
    laptop
        .publish("$presence/alice/watchers", br#"["bob"]"#, 1, true)
        .await;
    let got = bob.receive_and_ack(1).await;
    assert_eq!(
        aggregates(&got, "alice")[0]["devices"]["phone"]["activity"],
        "active"
    );
    b.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}
