//! A metabroker whose remote broker is a Canopy cluster (docs/cluster.md, "Clients follow"):
//! its link follows Server Reference on CONNACK 0x9C to the node its client id is pinned
//! to, follows DISCONNECT 0x9C when the pin moves, and goes back to the configured server
//! when the node it was sent to dies, which sends it on to the live node.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use canopy_metabroker::Direction;
use common::mosq;
use common::*;
use rumqttc::v5::mqttbytes::QoS;

const T: Duration = Duration::from_secs(20);

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A cluster node with a plain listener (its `mqtt_addr`); with `pki`, also a TLS listener
/// on the returned port, which is what the node advertises (`localhost:<port>`).
async fn node_tls(
    id: &str,
    join: Option<SocketAddr>,
    pki: Option<&mosq::Pki>,
) -> (canopy_broker::BrokerHandle, u16) {
    let (plain, tls) = (free_port(), free_port());
    let join = join.map_or(String::new(), |r| format!("join = \"mqtt://{r}\"\n"));
    let tls_listener = pki.map_or(String::new(), |p| {
        format!(
            "[[listener]]\nbind = \"127.0.0.1:{tls}\"\ntls = {{ cert = \"{}\", key = \"{}\" }}\n",
            p.server_cert.display(),
            p.server_key.display()
        )
    });
    let advertise = pki.map_or(String::new(), |_| {
        format!("advertise = \"localhost:{tls}\"\n")
    });
    let text = format!(
        "node_id = \"{id}\"\ndurability = \"memory\"\n[[listener]]\nbind = \"127.0.0.1:{plain}\"\n\
         {tls_listener}[config]\nadmins = [\"ops-local\"]\n[cluster]\nload_interval = \"300ms\"\n\
         {advertise}{join}"
    );
    let mut cfg = canopy_broker::config::Config::from_toml(&text, "cluster.toml").unwrap();
    cfg.data_dir = temp_dir(&format!("cluster-{id}"));
    (canopy_broker::start(cfg).await.unwrap(), tls)
}

async fn node(id: &str, join: Option<SocketAddr>) -> canopy_broker::BrokerHandle {
    node_tls(id, join, None).await.0
}

async fn all_up(nodes: &[&canopy_broker::BrokerHandle]) {
    wait_until(T, "every node up everywhere", || {
        nodes.iter().all(|b| {
            let records = b.cluster().unwrap().nodes();
            records.len() == nodes.len() && records.iter().all(|r| r.is_up())
        })
    })
    .await;
}

/// Pins `client` to `node` as the admin `ops-local`, at `root`; returns once every node in
/// `nodes` knows the pin.
async fn pin(
    root: &canopy_broker::BrokerHandle,
    nodes: &[&canopy_broker::BrokerHandle],
    client: &str,
    node: &str,
) {
    let ops = publisher(root.mqtt_addr(), "ops-local").await;
    ops.publish(
        format!("$cluster/assign/{client}"),
        QoS::AtLeastOnce,
        true,
        node.to_owned(),
    )
    .await
    .unwrap();
    wait_until(
        T,
        &format!("pin {client} -> {node} seen by every node"),
        || {
            nodes
                .iter()
                .all(|b| b.cluster().unwrap().pin(client).as_deref() == Some(node))
        },
    )
    .await;
    ops.disconnect().await.unwrap();
}

/// Publishes `payload` at `addr` until `rx` receives it (the link may still be moving).
async fn delivered_through(
    addr: SocketAddr,
    topic: &str,
    payload: &str,
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<Got>,
) {
    let publisher = publisher(addr, &format!("pub-{payload}-local")).await;
    let got = tokio::time::timeout(T, async {
        loop {
            publisher
                .publish(topic, QoS::AtLeastOnce, false, payload.to_owned())
                .await
                .unwrap();
            let wait = tokio::time::sleep(Duration::from_millis(300));
            tokio::pin!(wait);
            loop {
                tokio::select! {
                    got = rx.recv() => {
                        if got.as_ref().is_some_and(|g| &g.payload[..] == payload.as_bytes()) {
                            return;
                        }
                    }
                    () = &mut wait => break,
                }
            }
        }
    })
    .await;
    assert!(
        got.is_ok(),
        "{payload:?} published at {addr} never crossed the bridge"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metabroker_link_follows_server_reference_across_a_cluster() {
    init_log();
    let root = node("root", None).await;
    let n2 = node("n2", Some(root.mqtt_addr())).await;
    let n3 = node("n3", Some(root.mqtt_addr())).await;
    all_up(&[&root, &n2, &n3]).await;

    // The test's own clients end in `-local`, so that no node redirects them (see above).
    // The bridge's remote client id is pinned to n2 before it connects to the root.
    pin(&root, &[&root, &n2, &n3], "site-uplink", "n2").await;

    let local = broker().await;
    let (_sub, mut below) =
        subscriber(local.mqtt_addr(), "below", &["redir/#"], QoS::AtLeastOnce).await;
    let mut config = bridge(
        "mb",
        &url(local.mqtt_addr()),
        &url(root.mqtt_addr()),
        vec![route(Direction::In, "redir/#", None, 1)],
    );
    // `<name>-remote`, the default, marks a link between brokers, which a cluster never
    // redirects; a site's uplink with its own id is placed like any client.
    config.remote.client_id = Some("site-uplink".into());
    let handles = canopy_metabroker::spawn(vec![config]).unwrap();
    wait_until(T, "bridge connected", || handles.iter().all(connected)).await;

    // CONNACK 0x9C at the root: the link is at n2, where a publish reaches the bridge
    // (the cluster's join links carry `$cluster/#` only).
    delivered_through(n2.mqtt_addr(), "redir/a", "at-n2", &mut below).await;

    // The pin moves to n3: n2 sends DISCONNECT 0x9C and the link follows to n3.
    pin(&root, &[&root, &n2, &n3], "site-uplink", "n3").await;
    delivered_through(n3.mqtt_addr(), "redir/b", "at-n3", &mut below).await;

    // n3 dies with the link on it: the link goes back to the configured server (the root),
    // which keeps it once the pin names the root; retrying n3 would never get through.
    n3.shutdown().await;
    pin(&root, &[&root, &n2], "site-uplink", "root").await;
    delivered_through(root.mqtt_addr(), "redir/c", "at-root", &mut below).await;

    for h in handles {
        h.shutdown().await;
    }
    n2.shutdown().await;
    root.shutdown().await;
    local.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metabroker_link_follows_server_reference_over_tls() {
    init_log();
    let dir = temp_dir("cluster-pki");
    std::fs::create_dir_all(&dir).unwrap();
    let pki = mosq::pki(&dir);
    let (root, root_tls) = node_tls("root", None, Some(&pki)).await;
    let (n2, _) = node_tls("n2", Some(root.mqtt_addr()), Some(&pki)).await;
    all_up(&[&root, &n2]).await;
    pin(&root, &[&root, &n2], "tls-uplink", "n2").await;

    let local = broker().await;
    let (_sub, mut below) =
        subscriber(local.mqtt_addr(), "below", &["redir/#"], QoS::AtLeastOnce).await;
    let mut config = bridge(
        "tlsmb",
        &url(local.mqtt_addr()),
        &format!("mqtts://localhost:{root_tls}"),
        vec![route(Direction::In, "redir/#", None, 1)],
    );
    config.remote.client_id = Some("tls-uplink".into());
    config.remote.ca_file = Some(pki.ca.clone());
    let handles = canopy_metabroker::spawn(vec![config]).unwrap();
    wait_until(T, "bridge connected", || handles.iter().all(connected)).await;

    // The root's CONNACK 0x9C names n2's TLS listener; the link reached it over TLS.
    delivered_through(n2.mqtt_addr(), "redir/tls", "over-tls-at-n2", &mut below).await;

    for h in handles {
        h.shutdown().await;
    }
    n2.shutdown().await;
    root.shutdown().await;
    local.shutdown().await;
}
