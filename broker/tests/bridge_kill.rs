//! An embedded metabroker (`[[bridge]]`) under QoS 1 load while its remote broker — the
//! real `canopy-broker` binary with `durability = "sync"` — is killed with SIGKILL and
//! restarted: every message arrives at the remote's persistent subscriber, in order per
//! publisher (duplicates allowed at QoS 1), nothing lost (issue 6).

#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use canopy_proto::{Packet, QoS};
use support::{BrokerProcess, Client, free_port, temp_dir};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_killed_and_restarted_under_qos1_load_loses_nothing() {
    let dir = temp_dir("bridge-kill");
    let remote_port = free_port();
    let remote = BrokerProcess::start(&dir, remote_port, "sync").await;
    {
        let mut sub = Client::connect(remote.addr, "far-sub", true, 3600)
            .await
            .unwrap();
        sub.subscribe("sites/#", QoS::AtLeastOnce).await.unwrap();
    }
    let local_port = free_port();
    let text = format!(
        r#"
durability = "memory"
sys_interval = "0s"
[[listener]]
bind = "127.0.0.1:{local_port}"
[[bridge]]
name = "edge"
[bridge.local]
url = "mqtt://127.0.0.1:{local_port}"
[bridge.remote]
url = "mqtt://127.0.0.1:{remote_port}"
[bridge.backoff]
base = "50ms"
cap = "500ms"
[[bridge.route]]
direction = "out"
local = "edge/#"
remote_prefix = "sites/"
qos = 1
"#
    );
    let mut cfg = canopy_broker::config::Config::from_toml(&text, "edge.toml").unwrap();
    cfg.data_dir = dir.join("edge");
    let local = canopy_broker::start(cfg).await.unwrap();

    // Wait until the bridge is up (its retained state says so): before that, nobody
    // subscribes to `edge/#` and messages would rightly go nowhere.
    let mut w = Client::connect(local.mqtt_addr(), "watch", true, 0)
        .await
        .unwrap();
    w.subscribe("$SYS/metabroker/edge/state", QoS::AtMostOnce)
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "bridge never connected"
        );
        if let Some(Packet::Publish(m)) = w.recv_timeout(Duration::from_secs(1)).await.unwrap() {
            let s = String::from_utf8_lossy(&m.payload).into_owned();
            if s.contains("connected") && !s.contains("disconnected") {
                break;
            }
        }
    }

    // 2,000 numbered QoS 1 messages, the broker killed after the first 500 are sent.
    let n = 2000u32;
    let mut p = Client::connect(local.mqtt_addr(), "edge-pub", true, 0)
        .await
        .unwrap();
    let mut remote = Some(remote);
    for i in 0..n {
        p.publish(
            "edge/seq",
            &i.to_be_bytes(),
            QoS::AtLeastOnce,
            (i % 60000 + 1) as u16,
        )
        .await
        .unwrap();
        match p.recv().await.unwrap() {
            Some(Packet::PubAck(_)) => {}
            other => panic!("expected PUBACK, got {other:?}"),
        }
        if i == 500 {
            remote.take().unwrap().kill9();
        }
        if i == 1200 {
            remote = Some(BrokerProcess::start(&dir, remote_port, "sync").await);
        }
    }
    let remote = remote.unwrap();

    let mut sub = Client::connect(remote.addr, "far-sub", false, 3600)
        .await
        .unwrap();
    assert!(sub.session_present);
    let mut order = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while seen.len() < n as usize && tokio::time::Instant::now() < deadline {
        let Some(pkt) = sub.recv_timeout(Duration::from_secs(5)).await.unwrap() else {
            break;
        };
        sub.ack(&pkt).await.unwrap();
        if let Packet::Publish(m) = pkt {
            assert_eq!(m.topic.as_ref().map(|t| t.as_str()), Some("sites/edge/seq"));
            let i = u32::from_be_bytes(m.payload[..4].try_into().unwrap());
            if seen.insert(i) {
                order.push(i);
            }
        }
    }
    let missing: Vec<u32> = (0..n).filter(|i| !seen.contains(i)).take(10).collect();
    assert!(
        missing.is_empty(),
        "lost across the kill: {missing:?} ({} of {n} arrived)",
        seen.len()
    );
    assert!(
        order.windows(2).all(|w| w[0] < w[1]),
        "first arrivals out of order"
    );
    local.shutdown().await;
    let _ = remote.terminate();
    let _ = std::fs::remove_dir_all(&dir);
}
