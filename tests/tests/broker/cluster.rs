//! Load distribution (SPEC §6, docs/cluster.md): three brokers on loopback, a root and two
//! nodes joined to it, share their load records; a pinned 5.0 client is redirected with
//! CONNACK 0x9C and its node's Server Reference; a pin moved by an admin sends a connected
//! client away with DISCONNECT 0x9C. Canopy feature: in-process only.

use std::net::SocketAddr;
use std::time::Duration;

use canopy_broker::BrokerHandle;
use canopy_tests::wire::{Connect, V311, parse_disconnect};
use canopy_tests::{RawClient, TIMEOUT, unique, wait_until};

/// MQTT 5.0 Server Reference property.
const SERVER_REFERENCE: u8 = 0x1C;
/// CONNACK / DISCONNECT reason: Use another server.
const USE_ANOTHER_SERVER: u8 = 0x9C;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap()
}

/// Starts node `id` on a free port; `join`: the root's address.
async fn node(id: &str, join: Option<SocketAddr>) -> BrokerHandle {
    let port = free_port();
    let join = join.map_or(String::new(), |r| format!("join = \"mqtt://{r}\"\n"));
    let text = format!(
        r#"
node_id = "{id}"
durability = "memory"
[[listener]]
bind = "127.0.0.1:{port}"
[config]
admins = ["ops"]
[cluster]
load_interval = "300ms"
{join}"#
    );
    let mut cfg = canopy_broker::config::Config::from_toml(&text, "cluster.toml").unwrap();
    cfg.data_dir = std::env::temp_dir().join(unique(&format!("cluster-{id}")));
    canopy_broker::start(cfg).await.unwrap()
}

/// Waits until every broker's book lists `ids` up.
async fn all_see(brokers: &[&BrokerHandle], ids: &[&str]) -> bool {
    wait_until(Duration::from_secs(15), || {
        brokers.iter().all(|b| {
            let nodes = b.cluster().unwrap().nodes();
            ids.iter()
                .all(|id| nodes.iter().any(|r| r.node == *id && r.is_up()))
        })
    })
    .await
}

/// An admin pins `client` to `node` at `addr` (retained, as `canopy cluster assign` does).
/// Over 3.1.1, which is served wherever it connects (no redirect without Server Reference).
async fn pin(addr: SocketAddr, client: &str, node: &str) {
    let mut ops = RawClient::connect(addr, V311, "ops").await;
    ops.publish(
        &format!("$cluster/assign/{client}"),
        node.as_bytes(),
        1,
        true,
    )
    .await;
    ops.disconnect().await;
}

async fn pinned_everywhere(brokers: &[&BrokerHandle], client: &str, node: &str) -> bool {
    wait_until(Duration::from_secs(10), || {
        brokers
            .iter()
            .all(|b| b.cluster().unwrap().pin(client).as_deref() == Some(node))
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_brokers_share_records_redirect_and_move_clients() {
    let root = node("root", None).await;
    let n1 = node("n1", Some(root.mqtt_addr())).await;
    let n2 = node("n2", Some(root.mqtt_addr())).await;
    let all = [&root, &n1, &n2];
    assert!(
        all_see(&all, &["root", "n1", "n2"]).await,
        "records: root {:?} n1 {:?} n2 {:?}",
        root.cluster().unwrap().nodes(),
        n1.cluster().unwrap().nodes(),
        n2.cluster().unwrap().nodes()
    );

    // Every record is retained on every node, with the node's advertised address.
    let mut watch = RawClient::connect(n1.mqtt_addr(), V311, &unique("watch")).await;
    watch.subscribe("$cluster/nodes/+", 0).await;
    let records = watch.collect_publishes(Duration::from_millis(500)).await;
    let mut named: Vec<(String, String)> = records
        .iter()
        .filter(|m| m.retain)
        .filter_map(|m| {
            let v: serde_json::Value = serde_json::from_slice(&m.payload).ok()?;
            Some((
                v["node"].as_str()?.to_owned(),
                v["advertise"].as_str()?.to_owned(),
            ))
        })
        .collect();
    named.sort();
    named.dedup();
    assert_eq!(
        named,
        [
            ("n1".to_owned(), n1.mqtt_addr().to_string()),
            ("n2".to_owned(), n2.mqtt_addr().to_string()),
            ("root".to_owned(), root.mqtt_addr().to_string()),
        ]
    );

    // A pinned 5.0 client connecting to the wrong node is sent to its own.
    pin(root.mqtt_addr(), "dev", "n2").await;
    assert!(pinned_everywhere(&all, "dev", "n2").await);
    let (_c, ack) = RawClient::handshake(n1.mqtt_addr(), &Connect::v5("dev")).await;
    assert_eq!(ack.code, USE_ANOTHER_SERVER, "{ack:?}");
    assert_eq!(
        ack.props.str(SERVER_REFERENCE),
        Some(n2.mqtt_addr().to_string().as_str())
    );
    let (_c, ack) = RawClient::handshake(n2.mqtt_addr(), &Connect::v5("dev")).await;
    assert_eq!(ack.code, 0, "served at its node");

    // Moving the pin of a connected client sends it away with DISCONNECT 0x9C.
    pin(root.mqtt_addr(), "mover", "n1").await;
    assert!(pinned_everywhere(&all, "mover", "n1").await);
    let (mut mover, ack) = RawClient::handshake(n1.mqtt_addr(), &Connect::v5("mover")).await;
    assert_eq!(ack.code, 0);
    pin(n2.mqtt_addr(), "mover", "n2").await;
    let got = mover.recv_within(TIMEOUT * 3).await.unwrap();
    let d = parse_disconnect(&got);
    assert_eq!(d.reason, USE_ANOTHER_SERVER);
    assert_eq!(
        d.props.str(SERVER_REFERENCE),
        Some(n2.mqtt_addr().to_string().as_str())
    );

    // A client may not pin itself anywhere.
    let mut dev = RawClient::connect(n2.mqtt_addr(), V311, &unique("plain")).await;
    dev.publish("$cluster/assign/dev", b"n1", 1, true).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(root.cluster().unwrap().pin("dev").as_deref(), Some("n2"));

    for b in [n2, n1, root] {
        b.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_node_publishes_its_down_record_and_its_pins_stop_counting() {
    let root = node("root", None).await;
    let n1 = node("n1", Some(root.mqtt_addr())).await;
    assert!(all_see(&[&root, &n1], &["root", "n1"]).await);
    pin(root.mqtt_addr(), "dev", "n1").await;
    assert!(pinned_everywhere(&[&root], "dev", "n1").await);
    let (_c, ack) = RawClient::handshake(root.mqtt_addr(), &Connect::v5("dev")).await;
    assert_eq!(ack.code, USE_ANOTHER_SERVER);
    // A graceful stop publishes the join link's will itself before its DISCONNECT: the
    // root has n1's down record (the will's: no timestamp) rather than counting it down
    // when its record goes stale (that keeps the last record's timestamp).
    n1.shutdown().await;
    let down = wait_until(Duration::from_secs(15), || {
        root.cluster()
            .unwrap()
            .nodes()
            .iter()
            .any(|r| r.node == "n1" && !r.is_up() && r.ts == 0)
    })
    .await;
    assert!(down, "{:?}", root.cluster().unwrap().nodes());
    let (_c, ack) = RawClient::handshake(root.mqtt_addr(), &Connect::v5("dev")).await;
    assert_eq!(
        ack.code, 0,
        "the pin names a down node: served by a live one"
    );
    root.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drained_node_sends_its_clients_away_and_says_so_in_its_record() {
    let root = node("root", None).await;
    let n1 = node("n1", Some(root.mqtt_addr())).await;
    assert!(all_see(&[&root, &n1], &["root", "n1"]).await);
    pin(root.mqtt_addr(), "d", "n1").await;
    assert!(pinned_everywhere(&[&root, &n1], "d", "n1").await);
    let (mut d, ack) = RawClient::handshake(n1.mqtt_addr(), &Connect::v5("d")).await;
    assert_eq!(ack.code, 0);
    // `canopy cluster drain n1`, as the admin, at the root.
    let mut ops = RawClient::connect(root.mqtt_addr(), V311, "ops").await;
    ops.publish("$cluster/drain/n1", b"drain", 1, true).await;
    let got = d.recv_within(TIMEOUT * 3).await.unwrap();
    let m = parse_disconnect(&got);
    assert_eq!(m.reason, USE_ANOTHER_SERVER);
    assert_eq!(
        m.props.str(SERVER_REFERENCE),
        Some(root.mqtt_addr().to_string().as_str())
    );
    let draining = wait_until(Duration::from_secs(10), || {
        root.cluster()
            .unwrap()
            .nodes()
            .iter()
            .any(|r| r.node == "n1" && r.state == canopy_model::cluster::NodeState::Draining)
    })
    .await;
    assert!(draining, "{:?}", root.cluster().unwrap().nodes());
    // New 5.0 connections at the draining node go elsewhere, whatever their id.
    let (_c, ack) = RawClient::handshake(n1.mqtt_addr(), &Connect::v5(&unique("new"))).await;
    assert_eq!(ack.code, USE_ANOTHER_SERVER);
    // Taking the order back makes it take clients again.
    ops.publish("$cluster/drain/n1", b"", 1, true).await;
    let up = wait_until(Duration::from_secs(10), || {
        n1.cluster()
            .unwrap()
            .nodes()
            .iter()
            .any(|r| r.node == "n1" && r.is_up())
    })
    .await;
    assert!(up);
    let (_c, ack) = RawClient::handshake(n1.mqtt_addr(), &Connect::v5("d")).await;
    assert_eq!(ack.code, 0, "pinned here again");
    n1.shutdown().await;
    root.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_root_tells_its_nodes_it_is_down_before_its_record_could_go_stale() {
    let root = node("root", None).await;
    let n1 = node("n1", Some(root.mqtt_addr())).await;
    assert!(all_see(&[&root, &n1], &["root", "n1"]).await);
    // The root's last record says down and reaches n1 ahead of the join link's DISCONNECT.
    // A stale record counts down only after 6 s: seeing it sooner means the record came.
    root.shutdown().await;
    let down = wait_until(Duration::from_secs(4), || {
        n1.cluster()
            .unwrap()
            .nodes()
            .iter()
            .any(|r| r.node == "root" && !r.is_up())
    })
    .await;
    assert!(down, "{:?}", n1.cluster().unwrap().nodes());
    n1.shutdown().await;
}
