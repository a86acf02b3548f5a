//! MQTT 3.1.1 peers: a Canopy broker bridged over a 3.1.1 link to Debian's `mosquitto`, and a
//! 3.1.1 local link to a Canopy broker, QoS 1 in both legal directions with exact counts (no
//! echo, no loss); and the real binary refusing a route set that would loop on a 3.1.1 side.
//! The mosquitto test fails with the install command when `mosquitto` is not installed
//! (unless `CANOPY_SKIP_EXTERNAL=1`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use canopy_metabroker::config::Protocol;
use canopy_metabroker::{BridgeHandle, Direction};
use common::mosq::{self, addr};
use common::*;
use rumqttc::v5::mqttbytes::QoS;

const T: Duration = Duration::from_secs(15);
const N: usize = 20;

fn routes() -> Vec<canopy_metabroker::RouteConfig> {
    vec![
        route(Direction::Out, "up/#", Some("site/"), 1),
        route(Direction::In, "down/#", None, 1),
    ]
}

/// Sends `N` QoS 1 messages each way through `h` and checks each side got exactly `N`, in
/// order, and nothing else. `local`/`remote` are where test clients connect (5.0).
/// `old_remote`: the remote side speaks 3.1.1 (else the local one does); what the bridge
/// forwards to that side arrives without properties, so without the hop marker.
async fn exact_both_ways(
    h: &BridgeHandle,
    local: SocketAddr,
    remote: SocketAddr,
    tag: &str,
    old_remote: bool,
) {
    wait_until(T, "bridge connected", || connected(h)).await;
    let (_a, mut at_remote) = subscriber(
        remote,
        &format!("{tag}-rs"),
        &["site/#", "up/#", "down/#"],
        QoS::AtLeastOnce,
    )
    .await;
    let (_b, mut at_local) = subscriber(
        local,
        &format!("{tag}-ls"),
        &["up/#", "down/#", "site/#"],
        QoS::AtLeastOnce,
    )
    .await;
    // The bridge subscribes right after connecting; give the SUBACKs a moment.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let lp = publisher(local, &format!("{tag}-lp")).await;
    let rp = publisher(remote, &format!("{tag}-rp")).await;
    for i in 0..N {
        lp.publish("up/t", QoS::AtLeastOnce, false, format!("{i}"))
            .await
            .unwrap();
        rp.publish("down/t", QoS::AtLeastOnce, false, format!("{i}"))
            .await
            .unwrap();
    }
    // Remote: its own N down/t plus N forwarded site/up/t. Local: N up/t plus N down/t.
    let got_remote = take(&mut at_remote, 2 * N, T).await;
    let got_local = take(&mut at_local, 2 * N, T).await;
    assert_quiet(&mut at_remote, Duration::from_millis(700)).await;
    assert_quiet(&mut at_local, Duration::from_millis(300)).await;
    let payloads = |got: &[Got], topic: &str| -> Vec<String> {
        got.iter()
            .filter(|g| g.topic == topic)
            .map(|g| String::from_utf8(g.payload.to_vec()).unwrap())
            .collect()
    };
    let want: Vec<String> = (0..N).map(|i| i.to_string()).collect();
    assert_eq!(payloads(&got_remote, "site/up/t"), want);
    assert_eq!(payloads(&got_remote, "down/t"), want);
    assert_eq!(payloads(&got_local, "up/t"), want);
    assert_eq!(payloads(&got_local, "down/t"), want);
    let (to_old, topic) = if old_remote {
        (&got_remote, "site/up/t")
    } else {
        (&got_local, "down/t")
    };
    let (to_new, new_topic) = if old_remote {
        (&got_local, "down/t")
    } else {
        (&got_remote, "site/up/t")
    };
    for g in to_old.iter().filter(|g| g.topic == topic) {
        assert!(
            g.user_properties.is_empty(),
            "3.1.1 carried properties: {g:?}"
        );
    }
    for g in to_new.iter().filter(|g| g.topic == new_topic) {
        assert!(
            !g.user_properties.is_empty(),
            "5.0 side lost the hop marker: {g:?}"
        );
    }
    let stats = h.stats();
    assert_eq!(
        stats.loops.load(std::sync::atomic::Ordering::Relaxed),
        0,
        "nothing came back to be caught by the hop guard"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v311_remote_mosquitto_gets_and_gives_exact_counts_without_echo() {
    let Some(bin) = mosq::require_mosquitto() else {
        return;
    };
    init_log();
    let m = mosq::start(&bin, 1, |p, _| {
        format!(
            "listener {} 127.0.0.1\nallow_anonymous true\npersistence false\n",
            p[0]
        )
    })
    .await;
    let canopy = broker().await;
    let mut config = bridge(
        "v311m",
        &url(canopy.mqtt_addr()),
        &format!("mqtt://127.0.0.1:{}", m.ports[0]),
        routes(),
    );
    config.remote.protocol = Protocol::V311;
    config.validate().unwrap();
    let h = canopy_metabroker::Bridge::new(config).start().unwrap();
    exact_both_ways(&h, canopy.mqtt_addr(), addr(m.ports[0]), "v311m", true).await;
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v311_local_canopy_link_forwards_both_ways_and_marks_hops_on_the_5_side() {
    init_log();
    let (local, remote) = (broker().await, broker().await);
    let mut config = bridge(
        "v311c",
        &url(local.mqtt_addr()),
        &url(remote.mqtt_addr()),
        routes(),
    );
    config.local.protocol = Protocol::V311;
    config.state_prefix = "metabroker".into();
    config.validate().unwrap();
    let h = canopy_metabroker::Bridge::new(config).start().unwrap();
    exact_both_ways(&h, local.mqtt_addr(), remote.mqtt_addr(), "v311c", false).await;

    // Forwarded to the 5.0 remote: the hop marker names this bridge.
    let (_s, mut at_remote) = subscriber(
        remote.mqtt_addr(),
        "v311c-hops",
        &["site/#"],
        QoS::AtLeastOnce,
    )
    .await;
    publisher(local.mqtt_addr(), "v311c-p2")
        .await
        .publish("up/h", QoS::AtLeastOnce, false, "h")
        .await
        .unwrap();
    let got = take(&mut at_remote, 1, T).await.remove(0);
    let path = format!("@{},v311c,@{}", local.mqtt_addr(), remote.mqtt_addr());
    assert!(
        got.user_properties
            .contains(&(canopy_metabroker::HOPS_PROPERTY.into(), path)),
        "{got:?}"
    );
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_refuses_a_looping_route_set_on_a_3_1_1_side_naming_the_routes() {
    let dir = temp_dir("v311-refuse");
    std::fs::create_dir_all(&dir).unwrap();
    let conf = dir.join("loop.toml");
    std::fs::write(
        &conf,
        "name = \"loopy\"\n[local]\nurl = \"mqtt://127.0.0.1:1\"\n\
         [remote]\nurl = \"mqtt://127.0.0.1:2\"\nprotocol = \"3.1.1\"\n\
         [[route]]\ndirection = \"out\"\nlocal = \"a/#\"\n\
         [[route]]\ndirection = \"in\"\nlocal = \"a/b/#\"\n",
    )
    .unwrap();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_canopy-metabroker"))
        .arg("--config")
        .arg(&conf)
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("route[1]: route[0] (out \"a/#\") and route[1] (in \"a/b/#\") overlap"),
        "{err}"
    );
}
