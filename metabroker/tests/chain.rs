//! Chains of in-process Canopy brokers joined by metabrokers: hierarchy defaults, remapping,
//! retained flags and user properties across two hops.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use canopy_metabroker::Direction;
use common::*;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::PublishProperties;

const T: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_level_chain_carries_fx_down_and_leaf_topics_up_with_properties() {
    init_log();
    let (root, site, leaf) = (broker().await, broker().await, broker().await);
    let mut up = bridge(
        "site",
        &url(site.mqtt_addr()),
        &url(root.mqtt_addr()),
        vec![route(Direction::Out, "up/#", None, 1)],
    );
    up.hierarchy = true;
    let mut down = bridge(
        "leaf",
        &url(leaf.mqtt_addr()),
        &url(site.mqtt_addr()),
        vec![route(Direction::Out, "up/#", None, 1)],
    );
    down.hierarchy = true;
    let handles = canopy_metabroker::spawn(vec![up, down]).unwrap();
    wait_until(T, "bridges connected", || handles.iter().all(connected)).await;

    let (_l, mut at_leaf) =
        subscriber(leaf.mqtt_addr(), "leaf-user", &["fx/#"], QoS::AtLeastOnce).await;
    let (_r, mut at_root) =
        subscriber(root.mqtt_addr(), "root-user", &["up/#"], QoS::AtLeastOnce).await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    let p_root = publisher(root.mqtt_addr(), "fx-source").await;
    let props = PublishProperties {
        user_properties: vec![("ts".into(), "1234".into())],
        ..Default::default()
    };
    p_root
        .publish_with_properties("fx/rumble", QoS::AtLeastOnce, false, "{\"t\":1}", props)
        .await
        .unwrap();
    let got = take(&mut at_leaf, 1, T).await;
    assert_eq!(got[0].topic, "fx/rumble");
    assert_eq!(&got[0].payload[..], b"{\"t\":1}");
    assert!(
        got[0]
            .user_properties
            .contains(&("ts".into(), "1234".into()))
    );
    let hops: Vec<&(String, String)> = got[0]
        .user_properties
        .iter()
        .filter(|(k, _)| k == canopy_metabroker::HOPS_PROPERTY)
        .collect();
    assert_eq!(
        hops,
        [&(
            canopy_metabroker::HOPS_PROPERTY.to_owned(),
            format!(
                "@{},site,@{},leaf,@{}",
                root.mqtt_addr(),
                site.mqtt_addr(),
                leaf.mqtt_addr()
            )
        )]
    );

    let p_leaf = publisher(leaf.mqtt_addr(), "sensor").await;
    p_leaf
        .publish("up/temp", QoS::ExactlyOnce, true, "21")
        .await
        .unwrap();
    let got = take(&mut at_root, 1, T).await;
    assert_eq!(
        (got[0].topic.as_str(), &got[0].payload[..]),
        ("up/temp", &b"21"[..])
    );
    assert_quiet(&mut at_leaf, Duration::from_millis(300)).await;
    assert_quiet(&mut at_root, Duration::from_millis(300)).await;
    for h in handles {
        h.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefix_and_placeholder_routes_remap_both_ways() {
    let (local, remote) = (broker().await, broker().await);
    let mut c = bridge(
        "s7",
        &url(local.mqtt_addr()),
        &url(remote.mqtt_addr()),
        vec![route(Direction::Out, "site7/#", Some("sites/"), 1)],
    );
    let mut placeholder = route(Direction::In, "cmd/+/set/#", None, 1);
    placeholder.remote = Some("ctl/{1}/{2}".into());
    c.routes.push(placeholder);
    let h = canopy_metabroker::Bridge::new(c).start().unwrap();
    wait_until(T, "bridge connected", || connected(&h)).await;
    let (_a, mut at_remote) =
        subscriber(remote.mqtt_addr(), "r", &["sites/#"], QoS::AtLeastOnce).await;
    let (_b, mut at_local) = subscriber(local.mqtt_addr(), "l", &["cmd/#"], QoS::AtLeastOnce).await;
    publisher(local.mqtt_addr(), "pl")
        .await
        .publish("site7/a/b", QoS::AtLeastOnce, false, "x")
        .await
        .unwrap();
    assert_eq!(take(&mut at_remote, 1, T).await[0].topic, "sites/site7/a/b");
    publisher(remote.mqtt_addr(), "pr")
        .await
        .publish("ctl/lamp/on/now", QoS::AtLeastOnce, false, "y")
        .await
        .unwrap();
    assert_eq!(
        take(&mut at_local, 1, T).await[0].topic,
        "cmd/lamp/set/on/now"
    );
    h.shutdown().await;
}
