//! Interest-based forwarding (docs/interest.md): `interest = true` routes subscribe upstream
//! only to what subscribers below want, across several levels, and follow subscriptions as
//! they come and go.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use canopy_broker::BrokerHandle;
use canopy_metabroker::{BridgeHandle, Direction};
use common::interest::*;
use common::*;
use rumqttc::v5::mqttbytes::QoS;

fn forwarded(h: &BridgeHandle) -> u64 {
    h.stats().routes[0].forwarded.load(Relaxed)
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

/// Root -> 2 sites -> 4 leaves each; `map/#` and `fx/#` routes down every edge. Subscribers
/// at 2 of the 8 leaves; the root publishes one message on each of 100 map layers and 20
/// effect streams. Returns (messages on the root's two links, on all ten links).
async fn measure(interest: bool) -> (u64, u64) {
    let root = broker().await;
    let sites = [broker().await, broker().await];
    let mut leaves = Vec::new();
    for _ in 0..8 {
        leaves.push(broker().await);
    }
    let edge = |name: String, local: &BrokerHandle, remote: &BrokerHandle| {
        let mut routes = vec![
            route(Direction::In, "map/#", None, 1),
            route(Direction::In, "fx/#", None, 1),
        ];
        for r in &mut routes {
            r.interest = interest;
        }
        bridge(
            &format!("{name}-{interest}"),
            &url(local.mqtt_addr()),
            &url(remote.mqtt_addr()),
            routes,
        )
    };
    let mut configs = vec![
        edge("m-site0".into(), &sites[0], &root),
        edge("m-site1".into(), &sites[1], &root),
    ];
    for (i, leaf) in leaves.iter().enumerate() {
        configs.push(edge(format!("m-leaf{i}"), leaf, &sites[i / 4]));
    }
    let h = canopy_metabroker::spawn(configs).unwrap();
    wait_until(T, "bridges connected", || h.iter().all(connected)).await;
    // Leaf 1 (site 0) wants 5 layers and 2 streams; leaf 6 (site 1) 3 layers and all of fx.
    let want: [(usize, Vec<String>); 2] = [
        (
            1,
            (0..5)
                .map(|i| format!("map/layer{i}"))
                .chain(["fx/s0".into(), "fx/s1".into()])
                .collect(),
        ),
        (
            6,
            ["map/layer3", "map/layer50", "map/layer99", "fx/#"]
                .iter()
                .map(|s| s.to_string())
                .collect(),
        ),
    ];
    let mut inboxes = Vec::new();
    for (leaf, filters) in &want {
        let f: Vec<&str> = filters.iter().map(String::as_str).collect();
        let (c, rx) = subscriber(
            leaves[*leaf].mqtt_addr(),
            &format!("user{leaf}"),
            &f,
            QoS::AtLeastOnce,
        )
        .await;
        inboxes.push((c, rx));
    }
    if interest {
        wait_until(T, "interest at the root's links", || {
            h[0].stats().proxied().len() == 7 && h[1].stats().proxied().len() == 4
        })
        .await;
    } else {
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let p = publisher(root.mqtt_addr(), "root-pub").await;
    let topics: Vec<String> = (0..100)
        .map(|i| format!("map/layer{i}"))
        .chain((0..20).map(|i| format!("fx/s{i}")))
        .collect();
    for t in &topics {
        p.publish(t.as_str(), QoS::AtLeastOnce, false, "x")
            .await
            .unwrap();
    }
    let expect = [7, 3 + 20];
    for (i, (_, rx)) in inboxes.iter_mut().enumerate() {
        take(rx, expect[i], T).await;
        assert_quiet(rx, Duration::from_millis(300)).await;
    }
    let total =
        |hs: &[BridgeHandle]| -> u64 { hs.iter().map(|b| b.stats().total(|r| &r.forwarded)).sum() };
    let wait_settled = Duration::from_millis(500);
    tokio::time::sleep(wait_settled).await;
    let counts = (total(&h[..2]), total(&h));
    for b in h {
        b.shutdown().await;
    }
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interest_cuts_the_root_links_for_100_layers_and_20_streams_at_2_of_8_leaves() {
    init_log();
    let (root_all, links_all) = measure(false).await;
    let (root_int, links_int) = measure(true).await;
    println!(
        "MEASURE root links: {root_all} without interest, {root_int} with; \
         all links: {links_all} without, {links_int} with"
    );
    assert_eq!(root_all, 2 * 120);
    assert_eq!(links_all, 10 * 120);
    // Site 0 carries leaf 1's 7; site 1 carries leaf 6's 3 layers and 20 streams.
    assert_eq!(root_int, 7 + 23);
    assert_eq!(links_int, 2 * (7 + 23));
}
