//! Interest-based forwarding (docs/interest.md): `interest = true` routes subscribe upstream
//! only to what subscribers below want, across several levels, and follow subscriptions as
//! they come and go.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use canopy_broker::BrokerHandle;
use canopy_metabroker::{BridgeConfig, BridgeHandle, Direction};
use common::*;
use rumqttc::v5::mqttbytes::QoS;

const T: Duration = Duration::from_secs(15);

fn interest_bridge(name: &str, local: &BrokerHandle, remote: &BrokerHandle) -> BridgeConfig {
    let mut r = route(Direction::In, "map/#", None, 1);
    r.interest = true;
    bridge(
        name,
        &url(local.mqtt_addr()),
        &url(remote.mqtt_addr()),
        vec![r],
    )
}

fn set(filters: &[&str]) -> BTreeSet<String> {
    filters.iter().map(|s| s.to_string()).collect()
}

fn forwarded(h: &BridgeHandle) -> u64 {
    h.stats().routes[0].forwarded.load(Relaxed)
}

/// Whether `topic` matches `filter` (no `$` topics here).
fn matches(filter: &str, topic: &str) -> bool {
    let (f, t): (Vec<&str>, Vec<&str>) = (filter.split('/').collect(), topic.split('/').collect());
    for (i, l) in f.iter().enumerate() {
        match *l {
            "#" => return true,
            "+" if i < t.len() => {}
            x if t.get(i) == Some(&x) => {}
            _ => return false,
        }
    }
    f.len() == t.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_level_tree_carries_a_root_publish_only_to_leaves_that_want_it() {
    init_log();
    let root = broker().await;
    let sites = [broker().await, broker().await];
    let leaves = [
        [broker().await, broker().await],
        [broker().await, broker().await],
    ];
    let mut configs = Vec::new();
    for (s, site) in sites.iter().enumerate() {
        configs.push(interest_bridge(&format!("site{s}"), site, &root));
        for (l, leaf) in leaves[s].iter().enumerate() {
            configs.push(interest_bridge(&format!("leaf{s}{l}"), leaf, site));
        }
    }
    // Handles: site0, leaf00, leaf01, site1, leaf10, leaf11.
    let h = canopy_metabroker::spawn(configs).unwrap();
    wait_until(T, "bridges connected", || h.iter().all(connected)).await;

    let subs: [[&[&str]; 2]; 2] = [[&["map/a"], &[]], [&["map/b/#"], &["map/a", "map/c/+"]]];
    let mut inboxes = Vec::new();
    let mut keep = Vec::new();
    for s in 0..2 {
        for l in 0..2 {
            let id = format!("user{s}{l}");
            let (c, rx) =
                subscriber(leaves[s][l].mqtt_addr(), &id, subs[s][l], QoS::AtLeastOnce).await;
            keep.push(c);
            inboxes.push(rx);
        }
    }
    let want_site = |s: usize| -> BTreeSet<String> {
        subs[s]
            .iter()
            .flat_map(|f| f.iter().map(|x| x.to_string()))
            .collect()
    };
    wait_until(T, "interest reached the root's links", || {
        h[0].stats().proxied() == want_site(0) && h[3].stats().proxied() == want_site(1)
    })
    .await;
    assert_eq!(h[1].stats().proxied(), set(&["map/a"]));
    assert!(h[2].stats().proxied().is_empty());

    let topics = ["map/a", "map/b/1", "map/b/2/x", "map/c/d", "map/z", "map/c"];
    let p = publisher(root.mqtt_addr(), "root-pub").await;
    for t in topics {
        p.publish(t, QoS::AtLeastOnce, false, t).await.unwrap();
    }
    // The oracle: a link carries a topic when a subscriber below it matches it.
    let wanted = |filters: &[&str], t: &str| filters.iter().any(|f| matches(f, t));
    for s in 0..2 {
        for l in 0..2 {
            let n = topics.iter().filter(|t| wanted(subs[s][l], t)).count();
            let rx = &mut inboxes[s * 2 + l];
            let got = take(rx, n, T).await;
            assert!(got.iter().all(|g| wanted(subs[s][l], &g.topic)));
            assert_quiet(rx, Duration::from_millis(300)).await;
        }
    }
    for s in 0..2 {
        let below: Vec<&str> = subs[s].iter().flat_map(|f| f.iter().copied()).collect();
        let site_n = topics.iter().filter(|t| wanted(&below, t)).count() as u64;
        assert_eq!(forwarded(&h[s * 3]), site_n, "root -> site{s}");
        for l in 0..2 {
            let n = topics.iter().filter(|t| wanted(subs[s][l], t)).count() as u64;
            assert_eq!(forwarded(&h[s * 3 + 1 + l]), n, "site{s} -> leaf{s}{l}");
        }
    }
    for b in h {
        b.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_filters_follow_subscribe_unsubscribe_and_merge_above_the_limit() {
    init_log();
    let (root, site) = (broker().await, broker().await);
    let mut c = interest_bridge("px", &site, &root);
    c.max_proxy_filters = 3;
    let h = canopy_metabroker::Bridge::new(c).start().unwrap();
    wait_until(T, "bridge connected", || connected(&h)).await;
    wait_until(T, "empty interest", || h.stats().proxied().is_empty()).await;

    let (a, _rx_a) = subscriber(site.mqtt_addr(), "a", &["map/x/1"], QoS::AtLeastOnce).await;
    let (_b, _rx_b) = subscriber(site.mqtt_addr(), "b", &["map/x/1"], QoS::AtLeastOnce).await;
    wait_until(T, "one filter", || h.stats().proxied() == set(&["map/x/1"])).await;
    // Reference counted: one of two subscribers leaving keeps the filter.
    a.unsubscribe("map/x/1").await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(h.stats().proxied(), set(&["map/x/1"]));

    let (_c, _rx_c) = subscriber(
        site.mqtt_addr(),
        "c",
        &["map/x/2", "map/y/1", "map/y/2"],
        QoS::AtLeastOnce,
    )
    .await;
    wait_until(T, "merged", || {
        h.stats().proxied() == set(&["map/x/#", "map/y/#"])
    })
    .await;
    assert!(h.stats().interest_merges.load(Relaxed) >= 1);
    assert!(h.stats().interest_version.load(Relaxed) >= 4);

    // Retained messages at the root reach a new subscriber below once.
    let p = publisher(root.mqtt_addr(), "root-pub").await;
    p.publish("map/r", QoS::AtLeastOnce, true, "kept")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (_d, mut rx_d) = subscriber(site.mqtt_addr(), "d", &["map/r"], QoS::AtLeastOnce).await;
    let got = take(&mut rx_d, 1, T).await;
    assert_eq!(&got[0].payload[..], b"kept");
    assert_quiet(&mut rx_d, Duration::from_millis(500)).await;
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_broker_below_gets_the_whole_filter() {
    let (root, site) = (broker().await, broker().await);
    // A document that never comes: the bridge reads interest from a broker that publishes
    // none (here: a Canopy broker whose document it may not read, as for Mosquitto).
    let mut c = interest_bridge("plain", &site, &root);
    c.local.client_id = Some("not-a-bridge-id".into());
    let h = canopy_metabroker::Bridge::new(c).start().unwrap();
    wait_until(T, "bridge connected", || connected(&h)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(h.stats().proxied(), set(&["map/#"]));
    h.shutdown().await;
}
