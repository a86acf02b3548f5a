//! A chain through Debian's `mosquitto`, with one metabroker running as the real
//! `canopy-metabroker` process: Canopy -> mosquitto -> Canopy, and the bridge state topic
//! (connected, then disconnected through the will when the process is killed) on mosquitto.
//! Fails with the install command when `mosquitto` is not installed (CI installs it),
//! unless `CANOPY_SKIP_EXTERNAL=1`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Stdio;
use std::time::Duration;

use canopy_metabroker::Direction;
use common::mosq;
use common::*;
use rumqttc::v5::mqttbytes::QoS;
use tokio::process::Command;

const T: Duration = Duration::from_secs(15);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chain_through_mosquitto_with_the_metabroker_binary_and_state_topic() {
    let Some(bin) = mosq::require_mosquitto() else {
        return;
    };
    init_log();
    let mut mosquitto = mosq::start(&bin, 1, |p, _| {
        format!(
            "listener {} 127.0.0.1\nallow_anonymous true\npersistence false\n",
            p[0]
        )
    })
    .await;
    let m_addr = mosq::addr(mosquitto.ports[0]);
    let (leaf, root) = (broker().await, broker().await);

    // leaf (Canopy) -> mosquitto, in process.
    let first = canopy_metabroker::Bridge::new(bridge(
        "leaf2m",
        &url(leaf.mqtt_addr()),
        &url(m_addr),
        vec![route(Direction::Out, "up/#", None, 1)],
    ))
    .start()
    .unwrap();

    // mosquitto -> root (Canopy), the real binary; its local broker is mosquitto.
    let dir = temp_dir("m2root");
    std::fs::create_dir_all(&dir).unwrap();
    let conf = dir.join("m2root.toml");
    std::fs::write(
        &conf,
        format!(
            "name = \"m2root\"\nstate_prefix = \"metabroker\"\n[local]\nurl = \"{}\"\n[remote]\nurl = \"{}\"\n\
             [queue]\ndir = \"{}\"\n[backoff]\nbase = \"20ms\"\ncap = \"300ms\"\n\
             [[route]]\ndirection = \"out\"\nlocal = \"up/#\"\nremote_prefix = \"leaves/\"\nqos = 1\n",
            url(m_addr),
            url(root.mqtt_addr()),
            dir.join("queue").display()
        ),
    )
    .unwrap();
    let mut metabroker = Command::new(env!("CARGO_BIN_EXE_canopy-metabroker"))
        .arg("--config")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();

    let (_st, mut state) = subscriber(
        m_addr,
        "state-watch",
        &["metabroker/m2root/state"],
        QoS::AtLeastOnce,
    )
    .await;
    let connected_doc = loop {
        let got = take(&mut state, 1, T).await.remove(0);
        if std::str::from_utf8(&got.payload)
            .unwrap()
            .contains("\"connected\"")
        {
            break got;
        }
    };
    assert!(connected_doc.retain || connected_doc.topic.ends_with("/state"));
    wait_until(T, "leaf bridge connected", || connected(&first)).await;

    let (_r, mut at_root) = subscriber(
        root.mqtt_addr(),
        "root-sink",
        &["leaves/#"],
        QoS::AtLeastOnce,
    )
    .await;
    let p = publisher(leaf.mqtt_addr(), "sensor").await;
    // The binary subscribes shortly after connecting; resend until the path is complete.
    let mut got = None;
    for i in 0..50 {
        p.publish("up/t", QoS::AtLeastOnce, false, format!("{i}"))
            .await
            .unwrap();
        if let Ok(Some(g)) = tokio::time::timeout(Duration::from_millis(200), at_root.recv()).await
        {
            got = Some(g);
            break;
        }
    }
    let got = got.expect("nothing crossed mosquitto");
    assert_eq!(got.topic, "leaves/up/t");
    let hops: Vec<&str> = got
        .user_properties
        .iter()
        .filter(|(k, _)| k == canopy_metabroker::HOPS_PROPERTY)
        .map(|(_, v)| v.as_str())
        .collect();
    let path = format!(
        "@{},leaf2m,@{m_addr},m2root,@{}",
        leaf.mqtt_addr(),
        root.mqtt_addr()
    );
    assert_eq!(hops, [path.as_str()]);

    // Killing the process makes mosquitto publish the will: disconnected.
    metabroker.kill().await.unwrap();
    let deadline = tokio::time::Instant::now() + T;
    loop {
        let got = tokio::time::timeout_at(deadline, state.recv())
            .await
            .expect("no disconnected state after the kill")
            .unwrap();
        if std::str::from_utf8(&got.payload)
            .unwrap()
            .contains("\"disconnected\"")
        {
            break;
        }
    }
    first.shutdown().await;
    let _ = mosquitto.child.kill().await;
}
