//! `[[bridge]]` in the broker's configuration runs the metabroker library inside the
//! broker (SPEC §4): messages flow out to the remote broker with the prefix remap, and the
//! bridge's state is retained under `$SYS/metabroker/<name>/state`, which only the
//! bridge's own client may write. Canopy feature: skipped in external mode.

use std::time::Duration;

use canopy_tests::wire::V311;
use canopy_tests::{RawClient, TestBroker, is_external, unique};

/// A free loopback port for a broker's listener (its embedded bridge's local side
/// points at it, so it must be known before the broker starts).
#[cfg(feature = "in-process")]
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits until the state of bridge `name` at `site` says connected.
#[cfg(feature = "in-process")]
async fn wait_bridge_connected(site: std::net::SocketAddr, name: &str) {
    let mut watch = RawClient::connect(site, V311, &unique("w")).await;
    watch
        .subscribe(&format!("$SYS/metabroker/{name}/state"), 0)
        .await;
    let mut state = String::new();
    for _ in 0..10 {
        let m = watch.recv_publish().await;
        state = String::from_utf8_lossy(&m.payload).into_owned();
        if state.contains("connected") && !state.contains("disconnected") {
            return;
        }
    }
    panic!("bridge {name} not connected; state: {state}");
}

/// Asserts that a status document of a device connecting to `site` reaches `root`.
#[cfg(feature = "in-process")]
async fn assert_status_reaches_root(site: std::net::SocketAddr, root: std::net::SocketAddr) {
    let dev = unique("dev");
    let mut st = RawClient::connect(root, V311, &unique("st")).await;
    st.subscribe(&format!("$status/{dev}"), 0).await;
    let _d = RawClient::connect(site, V311, &dev).await;
    let m = tokio::time::timeout(Duration::from_secs(10), st.recv_publish())
        .await
        .unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&m.payload).unwrap();
    assert_eq!(doc["state"], "online", "{doc}");
}

/// Asserts that a client's retained write of bridge `name`'s state is dropped.
#[cfg(feature = "in-process")]
async fn assert_state_not_forged(site: std::net::SocketAddr, forger: &mut RawClient, name: &str) {
    let topic = format!("$SYS/metabroker/{name}/state");
    forger.publish(&topic, b"disconnected", 1, true).await;
    let mut late = RawClient::connect(site, V311, &unique("late")).await;
    late.subscribe(&topic, 0).await;
    let m = late.recv_publish().await;
    assert_ne!(m.payload, b"disconnected");
}

#[cfg(feature = "in-process")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_bridge_forwards_out_with_prefix_and_publishes_its_state() {
    if is_external() {
        return;
    }
    let root = TestBroker::start().await;
    let port = free_port();
    let text = format!(
        r#"
durability = "memory"
[[listener]]
bind = "127.0.0.1:{port}"
[[bridge]]
name = "site7"
hierarchy = true
[bridge.local]
url = "mqtt://127.0.0.1:{port}"
[bridge.remote]
url = "mqtt://{root}"
[[bridge.route]]
direction = "out"
local = "site7/#"
remote_prefix = "sites/"
qos = 1
"#,
        root = root.addr()
    );
    let mut cfg = canopy_broker::config::Config::from_toml(&text, "site.toml").unwrap();
    cfg.data_dir = std::env::temp_dir().join(unique("bridge-site"));
    let site = canopy_broker::start(cfg).await.unwrap();
    let site_addr = site.mqtt_addr();

    wait_bridge_connected(site_addr, "site7").await;

    let mut r = RawClient::connect(root.addr(), V311, &unique("root-sub")).await;
    r.subscribe("sites/#", 1).await;
    let mut p = RawClient::connect(site_addr, V311, &unique("p")).await;
    for i in 0..5 {
        p.publish("site7/temp", format!("{i}").as_bytes(), 1, false)
            .await;
    }
    let got = tokio::time::timeout(Duration::from_secs(10), r.receive_and_ack(5))
        .await
        .unwrap();
    assert!(got.iter().all(|m| m.topic == "sites/site7/temp"));
    let payloads: Vec<_> = got
        .iter()
        .map(|m| String::from_utf8_lossy(&m.payload).into_owned())
        .collect();
    assert_eq!(payloads, ["0", "1", "2", "3", "4"]);

    // Hierarchy (SPEC §4): a device's status at the site reaches the root, although
    // clients may not write `$status` themselves.
    assert_status_reaches_root(site_addr, root.addr()).await;

    // Anyone else writing the bridge's state is refused (3.1.1: acknowledged, dropped).
    let mut forger = RawClient::connect(site_addr, V311, &unique("forger")).await;
    assert_state_not_forged(site_addr, &mut forger, "site7").await;
    site.shutdown().await;
}

/// An embedded bridge is trusted by the in-process identity the broker gives it, not by its
/// client id: on a broker with a password file it logs in without configured credentials
/// and carries the hierarchy, while a client that takes its id is refused (rc 2) and a
/// client writing its state is dropped.
#[cfg(feature = "in-process")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_bridge_is_trusted_by_its_in_process_identity_not_its_client_id() {
    if is_external() {
        return;
    }
    let root = TestBroker::start().await;
    let port = free_port();
    let dir = std::env::temp_dir().join(unique("bridge-auth"));
    std::fs::create_dir_all(&dir).unwrap();
    let passwd = dir.join("passwd");
    let hash = canopy_model::password::hash_password(b"apple").unwrap();
    std::fs::write(&passwd, format!("alice:{hash}\n")).unwrap();
    let text = format!(
        r#"
durability = "memory"
[[listener]]
bind = "127.0.0.1:{port}"
[auth]
password_file = "{passwd}"
[[bridge]]
name = "site8"
hierarchy = true
[bridge.local]
url = "mqtt://127.0.0.1:{port}"
[bridge.remote]
url = "mqtt://{root}"
"#,
        passwd = passwd.display(),
        root = root.addr()
    );
    let mut cfg = canopy_broker::config::Config::from_toml(&text, "site.toml").unwrap();
    cfg.data_dir = dir.join("data");
    let site = canopy_broker::start(cfg).await.unwrap();
    let site_addr = site.mqtt_addr();

    wait_bridge_connected(site_addr, "site8").await;

    // The hierarchy flows: a device's status at the site reaches the root.
    assert_status_reaches_root(site_addr, root.addr()).await;

    // Taking the bridge's client id is refused: identifier rejected (3.1.1 rc 2).
    let connect = canopy_tests::wire::Connect::v311("site8-local");
    let (_c, ack) = RawClient::handshake(site_addr, &connect).await;
    assert_eq!(ack.code, 2, "{ack:?}");
    // The in-process user name with a guessed token is a bad user name or password (rc 4).
    let guess = canopy_tests::wire::Connect::v311(&unique("guess"))
        .login("canopy-bridge:site8", b"0123456789abcdef");
    let (_g, ack) = RawClient::handshake(site_addr, &guess).await;
    assert_eq!(ack.code, 4, "{ack:?}");
    // alice, a real user, may not write the bridge's state either.
    let alice = canopy_tests::wire::Connect::v311(&unique("alice")).login("alice", b"apple");
    let (mut alice, _) = RawClient::connect_with(site_addr, &alice).await;
    assert_state_not_forged(site_addr, &mut alice, "site8").await;

    let mut forger = RawClient::connect(site_addr, V311, &unique("forger")).await;
    assert_state_not_forged(site_addr, &mut forger, "site8").await;
    site.shutdown().await;
}
