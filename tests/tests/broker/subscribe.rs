//! SUBSCRIBE / UNSUBSCRIBE: granted QoS, wildcards, `$` topics, invalid filters,
//! overlapping subscriptions, shared subscriptions.

use std::time::Duration;

use canopy_tests::wire::{self, Props, V5, V311};
use canopy_tests::{QUIET, RawClient, TestBroker, unique};

both_versions!(
    suback_grants_requested_qos,
    plus_matches_exactly_one_level,
    hash_matches_parent_and_all_descendants,
    hash_does_not_match_sys_topics,
    invalid_filter_closes_the_connection,
    overlapping_subscriptions_deliver_with_maximum_qos,
    unsubscribe_stops_delivery,
    shared_subscription_delivers_each_message_once_round_robin,
);

async fn suback_grants_requested_qos(v: u8) {
    // [MQTT-3.8.4-5]/[MQTT-3.9.3-1]: one return code per filter, in order; the granted QoS is
    // the requested maximum (Canopy supports QoS 2, so no downgrade).
    let b = TestBroker::start().await;
    let mut c = RawClient::connect(b.addr(), v, &unique("suback")).await;
    let t = unique("sq");
    let filters = [
        (format!("{t}/0"), 0),
        (format!("{t}/1"), 1),
        (format!("{t}/2"), 2),
    ];
    let f: Vec<(&str, u8)> = filters.iter().map(|(s, q)| (s.as_str(), *q)).collect();
    c.send(&wire::subscribe(v, 0x1234, &f, Props::new())).await;
    if v == V311 {
        c.expect_bytes(&[0x90, 0x05, 0x12, 0x34, 0x00, 0x01, 0x02])
            .await;
    } else {
        let p = c.recv().await;
        let s = wire::parse_suback(v, &p);
        assert_eq!((s.first, s.pid, s.codes), (0x90, 0x1234, vec![0, 1, 2]));
    }
}

/// Publishes each of `topics` at QoS 0 from a second client, then a sentinel on `sentinel`,
/// and returns the topics `sub` received before the sentinel.
async fn received_before_sentinel(
    b: &TestBroker,
    v: u8,
    sub: &mut RawClient,
    topics: &[String],
    sentinel: &str,
) -> Vec<String> {
    let mut p = RawClient::connect(b.addr(), v, &unique("pub")).await;
    for t in topics {
        p.publish(t, b"m", 0, false).await;
    }
    p.publish(sentinel, b"end", 1, false).await;
    let mut got = Vec::new();
    loop {
        let m = sub.recv_publish().await;
        if m.topic == sentinel {
            return got;
        }
        got.push(m.topic);
    }
}

/// The topics, relative to a fresh root, that a subscriber of `filter` (relative to the
/// same root) receives when each of `topics` is published once, in order.
async fn matched(v: u8, filter: &str, topics: &[&str]) -> Vec<String> {
    let b = TestBroker::start().await;
    let r = unique("match");
    let mut s = RawClient::connect(b.addr(), v, &unique("s")).await;
    s.subscribe(&format!("{r}/{filter}"), 0).await;
    s.subscribe(&format!("{r}/end"), 0).await;
    let topics: Vec<String> = topics.iter().map(|t| format!("{r}/{t}")).collect();
    let got = received_before_sentinel(&b, v, &mut s, &topics, &format!("{r}/end")).await;
    got.iter()
        .map(|t| t.strip_prefix(&format!("{r}/")).unwrap_or(t).to_owned())
        .collect()
}

async fn plus_matches_exactly_one_level(v: u8) {
    // [MQTT-4.7.1-3]: `+` matches one whole level, including an empty one.
    let topics = ["x/c", "x/y/c", "c", "x/c/d", "/c", "y/c"];
    assert_eq!(matched(v, "+/c", &topics).await, ["x/c", "/c", "y/c"]);
}

async fn hash_matches_parent_and_all_descendants(v: u8) {
    // [MQTT-4.7.1-2]: `#` matches the parent level and any number of child levels.
    let topics = ["a", "a/b", "a/b/c", "b", "ab"];
    assert_eq!(matched(v, "a/#", &topics).await, ["a", "a/b", "a/b/c"]);
}

async fn hash_does_not_match_sys_topics(v: u8) {
    // [MQTT-4.7.2-1]: filters starting with a wildcard do not match topics beginning with
    // `$`. A `$SYS/#` subscriber proves $SYS traffic exists during the window.
    let b = TestBroker::start().await;
    let mut all = RawClient::connect(b.addr(), v, &unique("all")).await;
    all.subscribe("#", 0).await;
    let mut plus = RawClient::connect(b.addr(), v, &unique("plus")).await;
    plus.subscribe("+/broker/#", 0).await;
    let mut sys = RawClient::connect(b.addr(), v, &unique("sys")).await;
    sys.subscribe("$SYS/#", 0).await;
    let m = sys.recv_publish().await;
    assert!(m.topic.starts_with("$SYS/"), "{m:?}");
    // Let a full $SYS period (1 s in-process) pass through both wildcard subscribers.
    let seen = all.collect_publishes(Duration::from_millis(1500)).await;
    assert!(
        seen.iter().all(|m| !m.topic.starts_with('$')),
        "# matched a $ topic: {:?}",
        seen.iter().find(|m| m.topic.starts_with('$'))
    );
    let seen = plus.collect_publishes(QUIET).await;
    assert!(seen.is_empty(), "+/broker/# matched: {seen:?}");
}

async fn invalid_filter_closes_the_connection(v: u8) {
    // A filter that breaks [MQTT-4.7.1-1]/[MQTT-4.7.1-2] makes the SUBSCRIBE malformed:
    // 3.1.1 closes the connection [MQTT-4.8.0-1]; 5.0 sends DISCONNECT 0x8F (Topic Filter
    // invalid) first. Other clients carry on. (Canopy's policy, documented in
    // docs/mqtt-support.md; Mosquitto also closes.)
    for bad in ["a/#/b", "a/b#", "a+/b"] {
        let b = TestBroker::start().await;
        let mut c = RawClient::connect(b.addr(), v, &unique("badf")).await;
        let ok = unique("okf");
        c.send(&wire::subscribe(v, 3, &[(bad, 0), (&ok, 1)], Props::new()))
            .await;
        c.expect_rejected(&[0x8F]).await;
        canopy_tests::assert_broker_works(b.addr()).await;
    }
}

async fn overlapping_subscriptions_deliver_with_maximum_qos(v: u8) {
    // [MQTT-3.3.5-1]: overlapping subscriptions -> delivered respecting the maximum QoS of
    // the matching subscriptions (once, or once per subscription in 5.0; never lost).
    let b = TestBroker::start().await;
    let r = unique("ov");
    let mut s = RawClient::connect(b.addr(), v, &unique("s")).await;
    s.subscribe(&format!("{r}/#"), 0).await;
    s.subscribe(&format!("{r}/+"), 1).await;
    let mut p = RawClient::connect(b.addr(), v, &unique("p")).await;
    p.publish(&format!("{r}/x"), b"o", 2, false).await;
    let got = s.collect_publishes(Duration::from_millis(500)).await;
    assert!(!got.is_empty() && got.len() <= 2, "{got:?}");
    assert_eq!(got.iter().map(|m| m.qos).max(), Some(1), "{got:?}");
    assert!(got.iter().all(|m| m.payload == b"o"));
}

async fn unsubscribe_stops_delivery(v: u8) {
    // [MQTT-3.10.4-1]/[MQTT-3.10.4-4]: UNSUBACK with the same packet id, and the server stops
    // adding messages for the deleted subscription.
    let b = TestBroker::start().await;
    let r = unique("unsub");
    let mut s = RawClient::connect(b.addr(), v, &unique("s")).await;
    s.subscribe(&format!("{r}/gone"), 1).await;
    s.subscribe(&format!("{r}/end"), 1).await;
    s.send(&wire::unsubscribe(v, 0x0102, &[&format!("{r}/gone")]))
        .await;
    if v == V311 {
        s.expect_bytes(&[0xB0, 0x02, 0x01, 0x02]).await;
    } else {
        let u = wire::parse_suback(v, &s.recv().await);
        assert_eq!((u.first, u.pid, u.codes), (0xB0, 0x0102, vec![0x00]));
    }
    let got =
        received_before_sentinel(&b, v, &mut s, &[format!("{r}/gone")], &format!("{r}/end")).await;
    assert!(got.is_empty(), "{got:?}");
}

#[tokio::test]
async fn unsuback_reports_no_subscription_existed_v5() {
    // 5.0 3.11.3: reason 0x11 No subscription existed, per filter.
    let b = TestBroker::start().await;
    let mut s = RawClient::connect(b.addr(), V5, &unique("s")).await;
    let known = unique("known");
    s.subscribe(&known, 0).await;
    s.send(&wire::unsubscribe(V5, 9, &[&unique("unknown"), &known]))
        .await;
    let u = wire::parse_suback(V5, &s.recv().await);
    assert_eq!((u.first, u.pid, u.codes), (0xB0, 9, vec![0x11, 0x00]));
}

async fn shared_subscription_delivers_each_message_once_round_robin(v: u8) {
    // 5.0 4.8.2: each message goes to exactly one member of the share group; Canopy (like
    // Mosquitto) rotates round robin. A plain subscriber to the same filter gets all.
    let b = TestBroker::start().await;
    let t = unique("shared");
    let group = unique("g");
    let mut m1 = RawClient::connect(b.addr(), v, &unique("m1")).await;
    let mut m2 = RawClient::connect(b.addr(), v, &unique("m2")).await;
    let mut plain = RawClient::connect(b.addr(), v, &unique("plain")).await;
    m1.subscribe(&format!("$share/{group}/{t}"), 0).await;
    m2.subscribe(&format!("$share/{group}/{t}"), 0).await;
    plain.subscribe(&t, 0).await;
    let mut p = RawClient::connect(b.addr(), v, &unique("p")).await;
    for i in 0..10u8 {
        p.publish(&t, &[i], 1, false).await;
    }
    let mut all = Vec::new();
    for _ in 0..10 {
        all.push(plain.recv_publish().await.payload[0]);
    }
    assert_eq!(all, (0..10).collect::<Vec<u8>>());
    let a = m1.collect_publishes(QUIET).await;
    let c = m2.collect_publishes(QUIET).await;
    let mut got: Vec<u8> = a.iter().chain(c.iter()).map(|m| m.payload[0]).collect();
    got.sort_unstable();
    assert_eq!(
        got,
        (0..10).collect::<Vec<u8>>(),
        "each message exactly once in the group"
    );
    assert!(
        a.len().abs_diff(c.len()) <= 1,
        "not round robin: {} vs {}",
        a.len(),
        c.len()
    );
}
