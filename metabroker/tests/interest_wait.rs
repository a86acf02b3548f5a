//! A SUBACK that waits for interest propagation (docs/interest.md, "Waiting for
//! propagation"): with the user property `canopy-wait-interest`, a leaf's SUBACK comes once
//! every metabroker on the way to the root confirmed the subscription upstream, so a message
//! published at the root right after it is delivered; when that cannot be confirmed in time,
//! the SUBACK comes anyway, marked `unconfirmed`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::interest::*;
use common::*;
use rumqttc::v5::AsyncClient;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::SubscribeProperties;
use tokio::sync::mpsc::UnboundedReceiver;

/// Subscribes to `filter` asking for a SUBACK that waits at most `wait_ms`; returns the
/// SUBACK's `canopy-interest` property.
async fn subscribe_waiting(
    c: &AsyncClient,
    subacks: &mut UnboundedReceiver<Vec<(String, String)>>,
    filter: &str,
    wait_ms: u64,
) -> Option<String> {
    let props = SubscribeProperties {
        id: None,
        user_properties: vec![("canopy-wait-interest".into(), wait_ms.to_string())],
    };
    c.subscribe_with_properties(filter, QoS::AtLeastOnce, props)
        .await
        .unwrap();
    let props = tokio::time::timeout(T, subacks.recv())
        .await
        .expect("a SUBACK")
        .unwrap();
    props
        .into_iter()
        .find(|(k, _)| k == "canopy-interest")
        .map(|(_, v)| v)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_root_publish_right_after_a_confirmed_suback_at_a_leaf_is_delivered() {
    init_log();
    let (root, site, leaf) = (broker().await, broker().await, broker().await);
    let h = canopy_metabroker::spawn(vec![
        interest_bridge("wsite", &site, &root),
        interest_bridge("wleaf", &leaf, &site),
    ])
    .unwrap();
    wait_until(T, "bridges connected", || h.iter().all(connected)).await;
    let (c, mut rx, mut subacks) = client_v5(leaf.mqtt_addr(), "wu", true);
    let p = publisher(root.mqtt_addr(), "wroot-pub").await;
    for i in 0..10 {
        let f = format!("map/w{i}");
        let result = subscribe_waiting(&c, &mut subacks, &f, 10_000).await;
        assert_eq!(result.as_deref(), Some("confirmed"), "{f}");
        // No pause: the root publishes as soon as the leaf's subscriber has its SUBACK.
        p.publish(f.as_str(), QoS::AtLeastOnce, false, f.clone())
            .await
            .unwrap();
        let got = take(&mut rx, 1, T).await;
        assert_eq!(got[0].topic, f);
    }
    // The site's link to the root proxies exactly the ten filters.
    assert_eq!(h[0].stats().proxied().len(), 10);
    for b in h {
        b.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_suback_that_cannot_be_confirmed_comes_after_the_wait_marked_unconfirmed() {
    init_log();
    let (root, site, leaf) = (broker().await, broker().await, broker().await);
    let h = canopy_metabroker::spawn(vec![
        interest_bridge("usite", &site, &root),
        interest_bridge("uleaf", &leaf, &site),
    ])
    .unwrap();
    wait_until(T, "bridges connected", || h.iter().all(connected)).await;
    let mut h = h.into_iter();
    let (upper, lower) = (h.next().unwrap(), h.next().unwrap());
    // The site's bridge to the root stops; its persistent session on the site still reads
    // the site's interest document, and will never confirm anything.
    upper.shutdown().await;
    let (c, mut rx, mut subacks) = client_v5(leaf.mqtt_addr(), "uu", true);
    let started = Instant::now();
    let result = subscribe_waiting(&c, &mut subacks, "map/u", 1000).await;
    let waited = started.elapsed();
    assert_eq!(result.as_deref(), Some("unconfirmed"));
    assert!(waited >= Duration::from_millis(900), "waited {waited:?}");
    assert!(waited < Duration::from_secs(10), "waited {waited:?}");
    // The subscription works anyway below the cut.
    let p = publisher(site.mqtt_addr(), "usite-pub").await;
    p.publish("map/u", QoS::AtLeastOnce, false, "x")
        .await
        .unwrap();
    take(&mut rx, 1, T).await;
    lower.shutdown().await;
}
