//! The randomized interest test (docs/interest.md, "Tests"): root -> 2 sites -> 4 leaves,
//! `interest` routes on every edge, each bridge's remote link through a TCP cutter. Seeded
//! random steps: subscribe (with a SUBACK that waits for propagation, then a publish at the
//! root that must arrive at once), unsubscribe, activate / deactivate, cut a link while both
//! ends stay up, restart a site (sessions lost), the root or a leaf (persistent stores),
//! restart a bridge with a change below while it is away. After every step: the proxy sets
//! of every link and what the upper brokers really hold equal the oracle's, a publish at the
//! root on every topic reaches exactly the matching subscribers, and the count forwarded on
//! every link equals the oracle's.
//!
//! Rerun a seed: `CANOPY_SEED=<n> cargo test -p canopy-metabroker --test interest_random --
//! --nocapture` (the seed is printed first; `CANOPY_STEPS` changes the 24 steps).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use canopy_broker::BrokerHandle;
use canopy_metabroker::{BridgeConfig, BridgeHandle, Direction};
use common::interest::*;
use common::*;
use rumqttc::v5::AsyncClient;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::SubscribeProperties;
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::sync::watch;

/// Filters subscribed at random, and for each the one probe topic it matches.
const POOL: [(&str, &str); 4] = [
    ("map/a", "map/a"),
    ("map/b", "map/b"),
    ("map/c/#", "map/c/1"),
    ("map/+/x", "map/d/x"),
];

/// Published at the root after every step.
const TOPICS: [&str; 8] = [
    "map/a", "map/b", "map/c/1", "map/d/x", "map/act0", "map/act1", "map/act2", "map/act3",
];

/// A broker restarted on its port: its data directory when it keeps state.
struct Node {
    handle: Option<BrokerHandle>,
    addr: SocketAddr,
    dir: Option<PathBuf>,
}

impl Node {
    async fn durable(tag: &str) -> Node {
        let dir = temp_dir(tag);
        let handle = durable_broker("127.0.0.1:0".parse().unwrap(), &dir).await;
        Node {
            addr: handle.mqtt_addr(),
            handle: Some(handle),
            dir: Some(dir),
        }
    }

    async fn ephemeral() -> Node {
        let handle = broker().await;
        Node {
            addr: handle.mqtt_addr(),
            handle: Some(handle),
            dir: None,
        }
    }

    /// Stops and starts again on the same port: with its store, or empty.
    async fn restart(&mut self) {
        if let Some(old) = self.handle.take() {
            old.shutdown().await;
        }
        self.handle = Some(match &self.dir {
            Some(dir) => durable_broker(self.addr, dir).await,
            None => {
                let mut cfg = canopy_broker::Config::ephemeral();
                cfg.listener[0].bind = self.addr;
                canopy_broker::start(cfg).await.unwrap()
            }
        });
    }
}

/// A bridge's remote side seen through a cutter.
struct Cut {
    cut: watch::Sender<u64>,
    accepted: Arc<AtomicU64>,
    rounds: u64,
}

/// Receives messages until `n` carry the payload `tag` (others are left over from earlier
/// steps), then asserts no more with `tag` arrive for a while.
async fn take_tagged(rx: &mut UnboundedReceiver<Got>, tag: &str, n: usize, what: &str) {
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + T;
    while got.len() < n {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(g)) if &g.payload[..] == tag.as_bytes() => got.push(g.topic),
            Ok(Some(_)) => {}
            _ => panic!("{what}: got {got:?}, {n} expected"),
        }
    }
    let quiet = tokio::time::Instant::now() + Duration::from_millis(300);
    while let Ok(Some(g)) = tokio::time::timeout_at(quiet, rx.recv()).await {
        assert!(
            &g.payload[..] != tag.as_bytes(),
            "{what}: extra {} after {got:?}",
            g.topic
        );
    }
}

fn forwarded(h: &[Option<BridgeHandle>]) -> Vec<u64> {
    h.iter()
        .map(|b| {
            b.as_ref()
                .map_or(0, |b| b.stats().routes[0].forwarded.load(Relaxed))
        })
        .collect()
}

/// The forwarded counts once nothing moved for 200 ms.
async fn settled(h: &[Option<BridgeHandle>]) -> Vec<u64> {
    let deadline = tokio::time::Instant::now() + T;
    let mut last = forwarded(h);
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = forwarded(h);
        if now == last {
            return now;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "counters never settle"
        );
        last = now;
    }
}

/// Subscribes asking for a SUBACK that waits for propagation; whether it was confirmed.
async fn subscribe_waiting(
    c: &AsyncClient,
    subacks: &mut UnboundedReceiver<Vec<(String, String)>>,
    filter: &str,
) -> bool {
    // SUBACKs of earlier plain SUBSCRIBEs are not this one's.
    while subacks.try_recv().is_ok() {}
    let props = SubscribeProperties {
        id: None,
        user_properties: vec![("canopy-wait-interest".into(), "10000".into())],
    };
    c.subscribe_with_properties(filter, QoS::AtLeastOnce, props)
        .await
        .unwrap();
    let props = tokio::time::timeout(T, subacks.recv())
        .await
        .expect("a SUBACK")
        .unwrap();
    props
        .iter()
        .any(|(k, v)| k == "canopy-interest" && v == "confirmed")
}

fn steps() -> usize {
    std::env::var("CANOPY_STEPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(24)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_steps_with_cuts_and_restarts_converge_to_the_oracle() {
    init_log();
    let seed = std::env::var("CANOPY_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_1234_u64);
    println!("seed {seed} (rerun with CANOPY_SEED={seed})");
    let mut rng = Rng(seed.max(1));
    let mut root = Node::durable("rroot").await;
    let mut sites = [Node::ephemeral().await, Node::ephemeral().await];
    let mut leaves = Vec::new();
    for i in 0..4 {
        leaves.push(Node::durable(&format!("rleaf{i}")).await);
    }
    // Bridge k: 0, 1 the sites' (to the root); 2..6 the leaves' (leaf i to site i / 2). Each
    // one's remote link goes through its own cutter.
    let mut configs: Vec<BridgeConfig> = Vec::new();
    let mut cuts = Vec::new();
    for k in 0..6 {
        let (name, local, remote) = match k {
            0 | 1 => (format!("rsite{k}"), &sites[k], &root),
            _ => (
                format!("rleaf{}", k - 2),
                &leaves[k - 2],
                &sites[(k - 2) / 2],
            ),
        };
        let (via, cut, accepted) = cutter(remote.addr).await;
        let mut r = route(Direction::In, "map/#", None, 1);
        r.interest = true;
        configs.push(bridge(&name, &url(local.addr), &url(via), vec![r]));
        cuts.push(Cut {
            cut,
            accepted,
            rounds: 0,
        });
    }
    let mut h: Vec<Option<BridgeHandle>> = canopy_metabroker::spawn(configs.clone())
        .unwrap()
        .into_iter()
        .map(Some)
        .collect();
    let all_connected = |h: &[Option<BridgeHandle>]| h.iter().flatten().all(connected);
    wait_until(T, "bridges connected", || all_connected(&h)).await;

    let mut users = Vec::new();
    for (i, leaf) in leaves.iter().enumerate() {
        // Persistent sessions: a restarted leaf keeps them (and their subscriptions).
        let (c, rx, mut subacks) = client_v5(leaf.addr, &format!("ru{i}"), false);
        // One event-activated subscription per leaf, inactive at first.
        let props = SubscribeProperties {
            id: None,
            user_properties: vec![
                ("activate-on".into(), format!("ctl/{i}/on")),
                ("deactivate-on".into(), format!("ctl/{i}/off")),
            ],
        };
        c.subscribe_with_properties(format!("map/act{i}"), QoS::AtLeastOnce, props)
            .await
            .unwrap();
        tokio::time::timeout(T, subacks.recv()).await.unwrap();
        users.push((c, rx, subacks));
    }
    let mut subscribed: Vec<BTreeSet<String>> = vec![BTreeSet::new(); 4];
    let mut active = [false; 4];
    let oracle = |subscribed: &[BTreeSet<String>], active: &[bool; 4], leaf: usize| {
        let mut s = subscribed[leaf].clone();
        if active[leaf] {
            s.insert(format!("map/act{leaf}"));
        }
        s
    };
    let started = std::time::Instant::now();
    for step in 0..steps() {
        let leaf = rng.below(4);
        let op = rng.below(10);
        let what = match op {
            0 | 1 => {
                let (f, probe) = POOL[rng.below(POOL.len())];
                let (c, rx, subacks) = &mut users[leaf];
                assert!(
                    subscribe_waiting(c, subacks, f).await,
                    "step {step}: SUBACK of {f} at leaf {leaf} not confirmed"
                );
                subscribed[leaf].insert(f.to_owned());
                // The guarantee: published at the root right after the SUBACK, delivered.
                let p = publisher(root.addr, &format!("rg{step}")).await;
                let tag = format!("g{step}");
                p.publish(probe, QoS::AtLeastOnce, false, tag.clone())
                    .await
                    .unwrap();
                take_tagged(rx, &tag, 1, &format!("step {step}: {probe} after SUBACK")).await;
                let _ = p.disconnect().await;
                format!("subscribe {f} (confirmed, then delivered)")
            }
            2 => {
                let (f, _) = POOL[rng.below(POOL.len())];
                users[leaf].0.unsubscribe(f).await.unwrap();
                subscribed[leaf].remove(f);
                format!("unsubscribe {f}")
            }
            3 => {
                let on = !active[leaf];
                let t = format!("ctl/{leaf}/{}", if on { "on" } else { "off" });
                users[leaf]
                    .0
                    .publish(t, QoS::AtLeastOnce, false, "")
                    .await
                    .unwrap();
                active[leaf] = on;
                format!(
                    "{} map/act{leaf}",
                    if on { "activate" } else { "deactivate" }
                )
            }
            4 => {
                // Cut one bridge's remote link; both brokers stay up.
                let k = rng.below(6);
                let c = &mut cuts[k];
                let before = c.accepted.load(Relaxed);
                c.rounds += 1;
                c.cut.send(c.rounds).unwrap();
                wait_until(T, "the cut link back", || c.accepted.load(Relaxed) > before).await;
                format!("cut the remote link of bridge {k}")
            }
            5 => {
                // A site restarts empty: its sessions and subscriptions are lost.
                let s = rng.below(2);
                sites[s].restart().await;
                format!("restart site {s} (sessions lost)")
            }
            6 => {
                root.restart().await;
                "restart the root (store kept)".to_owned()
            }
            7 => {
                leaves[leaf].restart().await;
                "restart the leaf (store kept)".to_owned()
            }
            _ => {
                // Restart one bridge; change interest below it while it is away.
                let k = rng.below(configs.len());
                if let Some(b) = h[k].take() {
                    b.shutdown().await;
                }
                let (f, _) = POOL[rng.below(POOL.len())];
                let c = &users[leaf].0;
                let change = if rng.below(2) == 0 {
                    c.subscribe(f, QoS::AtLeastOnce).await.unwrap();
                    subscribed[leaf].insert(f.to_owned());
                    "subscribe"
                } else {
                    c.unsubscribe(f).await.unwrap();
                    subscribed[leaf].remove(f);
                    "unsubscribe"
                };
                tokio::time::sleep(Duration::from_millis(50)).await;
                h[k] = Some(
                    canopy_metabroker::Bridge::new(configs[k].clone())
                        .start()
                        .unwrap(),
                );
                format!("restart bridge {k}, {change} {f} meanwhile")
            }
        };
        println!("step {step}: leaf {leaf}: {what}");
        wait_until(T, "bridges connected", || all_connected(&h)).await;
        let want: Vec<BTreeSet<String>> = (0..4).map(|l| oracle(&subscribed, &active, l)).collect();
        let below = |s: usize| -> BTreeSet<String> {
            want[2 * s].union(&want[2 * s + 1]).cloned().collect()
        };
        wait_until(
            T,
            &format!("proxy sets match the oracle after step {step}"),
            || {
                (0..4).all(|l| {
                    h[2 + l]
                        .as_ref()
                        .is_some_and(|b| b.stats().proxied() == want[l])
                }) && (0..2).all(|s| {
                    h[s].as_ref()
                        .is_some_and(|b| b.stats().proxied() == below(s))
                })
            },
        )
        .await;
        // What the upper brokers really hold for each bridge's remote client.
        for l in 0..4 {
            held_converges(sites[l / 2].addr, &format!("rleaf{l}-remote"), &want[l]).await;
        }
        for s in 0..2 {
            held_converges(root.addr, &format!("rsite{s}-remote"), &below(s)).await;
        }
        // Interest has propagated everywhere: a publish at the root on every topic reaches
        // exactly the subscribers matching it, once, and each link carries what the oracle
        // says.
        let before = settled(&h).await;
        let p = publisher(root.addr, &format!("rc{step}")).await;
        let tag = format!("c{step}");
        for t in TOPICS {
            p.publish(t, QoS::AtLeastOnce, false, tag.clone())
                .await
                .unwrap();
        }
        let count = |filters: &BTreeSet<String>| {
            TOPICS
                .iter()
                .filter(|t| filters.iter().any(|f| matches(f, t)))
                .count() as u64
        };
        for (l, (_, rx, _)) in users.iter_mut().enumerate() {
            let n = count(&want[l]) as usize;
            take_tagged(rx, &tag, n, &format!("step {step}: leaf {l}")).await;
        }
        let _ = p.disconnect().await;
        let after = settled(&h).await;
        let expect: Vec<u64> = (0..6)
            .map(|k| match k {
                0 | 1 => count(&below(k)),
                _ => count(&want[k - 2]),
            })
            .collect();
        let carried: Vec<u64> = after.iter().zip(&before).map(|(a, b)| a - b).collect();
        assert_eq!(carried, expect, "step {step}: messages per link");
    }
    println!(
        "seed {seed}: {} steps in {:.1} s",
        steps(),
        started.elapsed().as_secs_f64()
    );
    for b in h.into_iter().flatten() {
        b.shutdown().await;
    }
}
