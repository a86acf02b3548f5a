//! Loop prevention: three brokers in a triangle with both-direction routes on every edge
//! (two Canopy brokers with a third Canopy or a Mosquitto). The hop marker's path of broker
//! ids keeps every message from re-entering a broker it has been on.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use canopy_metabroker::Direction;
use common::*;
use rumqttc::v5::mqttbytes::QoS;

const T: Duration = Duration::from_secs(10);

/// A triangle of `both` routes over three brokers at `addrs` (ids `@<host:port>`): a
/// message published at the first reaches it once (never back), and each other broker once
/// per loop-free path (directly, and the long way round).
async fn triangle_delivers_once_per_path(addrs: [std::net::SocketAddr; 3]) {
    let [a, b, c] = addrs;
    let edge = |name: &str, l: std::net::SocketAddr, r: std::net::SocketAddr| {
        let mut cfg = bridge(
            name,
            &url(l),
            &url(r),
            vec![route(Direction::Both, "t/#", None, 1)],
        );
        cfg.state_prefix = "metabroker".into(); // Mosquitto refuses client writes to $SYS
        cfg
    };
    let handles =
        canopy_metabroker::spawn(vec![edge("ab", a, b), edge("bc", b, c), edge("ca", c, a)])
            .unwrap();
    wait_until(T, "bridges connected", || handles.iter().all(connected)).await;
    let (_sa, mut at_a) = subscriber(a, "sa", &["t/#"], QoS::AtLeastOnce).await;
    let (_sb, mut at_b) = subscriber(b, "sb", &["t/#"], QoS::AtLeastOnce).await;
    let (_sc, mut at_c) = subscriber(c, "sc", &["t/#"], QoS::AtLeastOnce).await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    publisher(a, "pa")
        .await
        .publish("t/x", QoS::AtLeastOnce, false, "1")
        .await
        .unwrap();

    let got_a = take(&mut at_a, 1, T).await;
    let got_b = take(&mut at_b, 2, T).await;
    let got_c = take(&mut at_c, 2, T).await;
    for rx in [&mut at_a, &mut at_b, &mut at_c] {
        assert_quiet(rx, Duration::from_millis(700)).await;
    }
    let hops = |g: &Got| {
        g.user_properties
            .iter()
            .find(|(k, _)| k == canopy_metabroker::HOPS_PROPERTY)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let sorted = |g: &[Got]| {
        let mut v: Vec<String> = g.iter().map(hops).collect();
        v.sort();
        v
    };
    assert_eq!(sorted(&got_a), [""], "the origin sees its message once");
    let mut want_b = vec![format!("@{a},ab,@{b}"), format!("@{a},ca,@{c},bc,@{b}")];
    want_b.sort();
    assert_eq!(sorted(&got_b), want_b);
    let mut want_c = vec![format!("@{a},ab,@{b},bc,@{c}"), format!("@{a},ca,@{c}")];
    want_c.sort();
    assert_eq!(sorted(&got_c), want_c);
    let loops: u64 = handles
        .iter()
        .map(|h| h.stats().loops.load(Ordering::Relaxed))
        .sum();
    assert_eq!(loops, 2, "the two copies heading back to A stop before A");
    for h in handles {
        h.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn triangle_of_both_way_routes_never_returns_a_message_to_its_origin() {
    init_log();
    let (a, b, c) = (broker().await, broker().await, broker().await);
    triangle_delivers_once_per_path([a.mqtt_addr(), b.mqtt_addr(), c.mqtt_addr()]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn triangle_through_mosquitto_never_returns_a_message_to_its_origin() {
    init_log();
    let Some(bin) = mosq::mosquitto_path() else {
        assert!(
            std::env::var_os("CANOPY_SKIP_EXTERNAL").is_some(),
            "mosquitto is not installed: apt-get install -y mosquitto \
             (or set CANOPY_SKIP_EXTERNAL=1 to skip)"
        );
        return;
    };
    let m = mosq::start(&bin, 1, |ports, _| {
        format!("listener {} 127.0.0.1\nallow_anonymous true\n", ports[0])
    })
    .await;
    let (a, b) = (broker().await, broker().await);
    triangle_delivers_once_per_path([a.mqtt_addr(), b.mqtt_addr(), mosq::addr(m.ports[0])]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_hops_drops_messages_that_travelled_too_far() {
    let (a, b) = (broker().await, broker().await);
    let mut c = bridge(
        "mh",
        &url(a.mqtt_addr()),
        &url(b.mqtt_addr()),
        vec![route(Direction::Out, "t/#", None, 1)],
    );
    c.max_hops = 2;
    let h = canopy_metabroker::Bridge::new(c).start().unwrap();
    wait_until(T, "bridge connected", || connected(&h)).await;
    let (_s, mut at_b) = subscriber(b.mqtt_addr(), "sb", &["t/#"], QoS::AtLeastOnce).await;
    let p = publisher(a.mqtt_addr(), "pa").await;
    let props = |hops: &str| rumqttc::v5::mqttbytes::v5::PublishProperties {
        user_properties: vec![(canopy_metabroker::HOPS_PROPERTY.into(), hops.into())],
        ..Default::default()
    };
    p.publish_with_properties("t/far", QoS::AtLeastOnce, false, "x", props("n1,n2"))
        .await
        .unwrap();
    p.publish_with_properties("t/near", QoS::AtLeastOnce, false, "y", props("n1"))
        .await
        .unwrap();
    let got = take(&mut at_b, 1, T).await;
    assert_eq!(got[0].topic, "t/near");
    assert_quiet(&mut at_b, Duration::from_millis(500)).await;
    assert_eq!(h.stats().loops.load(Ordering::Relaxed), 1);
    h.shutdown().await;
}
