//! Loop prevention: three brokers in a triangle with both-direction routes on every edge.
//! Without the hop marker every message would circle forever.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use canopy_metabroker::Direction;
use common::*;
use rumqttc::v5::mqttbytes::QoS;

const T: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn triangle_of_both_way_routes_delivers_exact_counts_and_stops() {
    init_log();
    let (a, b, c) = (broker().await, broker().await, broker().await);
    let edge = |name: &str, l: &canopy_broker::BrokerHandle, r: &canopy_broker::BrokerHandle| {
        bridge(
            name,
            &url(l.mqtt_addr()),
            &url(r.mqtt_addr()),
            vec![route(Direction::Both, "t/#", None, 1)],
        )
    };
    let handles = canopy_metabroker::spawn(vec![
        edge("ab", &a, &b),
        edge("bc", &b, &c),
        edge("ca", &c, &a),
    ])
    .unwrap();
    wait_until(T, "bridges connected", || handles.iter().all(connected)).await;
    let (_sa, mut at_a) = subscriber(a.mqtt_addr(), "sa", &["t/#"], QoS::AtLeastOnce).await;
    let (_sb, mut at_b) = subscriber(b.mqtt_addr(), "sb", &["t/#"], QoS::AtLeastOnce).await;
    let (_sc, mut at_c) = subscriber(c.mqtt_addr(), "sc", &["t/#"], QoS::AtLeastOnce).await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    publisher(a.mqtt_addr(), "pa")
        .await
        .publish("t/x", QoS::AtLeastOnce, false, "1")
        .await
        .unwrap();

    // A: the original and one copy back around each way; B and C: one copy each way.
    let got_a = take(&mut at_a, 3, T).await;
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
    let mut a_hops: Vec<String> = got_a.iter().map(hops).collect();
    a_hops.sort();
    assert_eq!(a_hops, ["", "ab,bc,ca", "ca,bc,ab"]);
    let mut b_hops: Vec<String> = got_b.iter().map(hops).collect();
    b_hops.sort();
    assert_eq!(b_hops, ["ab", "ca,bc"]);
    let mut c_hops: Vec<String> = got_c.iter().map(hops).collect();
    c_hops.sort();
    assert_eq!(c_hops, ["ab,bc", "ca"]);
    let loops: u64 = handles
        .iter()
        .map(|h| h.stats().loops.load(Ordering::Relaxed))
        .sum();
    assert_eq!(
        loops, 2,
        "the two copies back at A are dropped by the guard"
    );
    for h in handles {
        h.shutdown().await;
    }
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
