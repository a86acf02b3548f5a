//! Redirect to the assigned broker (SPEC §6, docs/cluster.md): three brokers in this process,
//! a root and two nodes `n1` and `n2` joined to it (`[cluster] join`), share their load
//! records at `$cluster/nodes/<id>`. An admin (`[config] admins = ["ops"]`) pins the client
//! `sensor-7` to `n2` with a retained `$cluster/assign/sensor-7`; the MQTT 5.0 client then
//! connects to `n1`, which answers CONNACK 0x9C (Use another server) with Server Reference =
//! `n2`'s address, and the client library (`canopy_client::link::Link::open`, what `canopy
//! pub/sub` use) follows it to `n2`. A 3.1.1 client pinned to `n2` that connects to `n1`
//! cannot be redirected: `n1` proxies its bytes to `n2`, which serves it.
//!
//! What to watch in the output:
//! - `every node sees root, n1, n2 up` (the records went up to the root and back down);
//! - `n1 answers CONNACK 0x9C, Server Reference <n2's address>` (asked with the library's
//!   probe, the same question `Link::open` asks), then `redirected to ...` (printed by the
//!   library) and `connected to <n2's address> (n2)`;
//! - `sensor-7 reads $status/sensor-7: online at node n2`: the session lives on `n2`;
//! - `legacy-9 (3.1.1) connected through n1; $status/legacy-9: online at node n2`: proxied.
//!
//! Everything runs in this process on loopback ports and stops by itself (at most 30 s).
//!
//! Run: `cargo run -p canopy-examples --example cluster_redirect`.

#[path = "support/mod.rs"]
mod support;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use canopy_broker::BrokerHandle;
use canopy_broker::config::Config;
use canopy_client::cli::{ProtocolVersion, Qos};
use canopy_client::link::{FilterRequest, Link, LinkEvent, SubscribeRequest};
use canopy_client::options::ConnectSettings;
use canopy_client::redirect;
use serde_json::Value;
use support::{BoxError, Clock, Peer, Seen};

/// A free TCP port on 127.0.0.1 (the join URL and the advertised address need it before
/// the broker starts).
fn free_port() -> Result<u16, BoxError> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Starts node `id`; `join`: the root's address (none for the root itself).
async fn node(id: &str, join: Option<SocketAddr>) -> Result<(BrokerHandle, PathBuf), BoxError> {
    let port = free_port()?;
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
    let mut cfg = Config::from_toml(&text, "cluster_redirect.toml")?;
    let dir = std::env::temp_dir().join(format!(
        "canopy-example-cluster-redirect-{}-{id}",
        std::process::id()
    ));
    cfg.data_dir = dir.clone();
    Ok((canopy_broker::start(cfg).await?, dir))
}

/// Waits (at most 10 s) until `check` holds.
async fn wait_for(what: &str, mut check: impl FnMut() -> bool) -> Result<(), BoxError> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !check() {
        if tokio::time::Instant::now() > deadline {
            return Err(format!("not within 10 s: {what}").into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// The admin pins `client` to `node` (as `canopy cluster assign` does) at `addr` and waits
/// until every broker knows the pin.
async fn pin(
    brokers: &[&BrokerHandle],
    addr: SocketAddr,
    client: &str,
    node: &str,
    clock: Clock,
) -> Result<(), BoxError> {
    let ops = Peer::connect("ops", addr, None).await?;
    ops.client
        .publish(
            format!("$cluster/assign/{client}"),
            rumqttc::QoS::AtLeastOnce,
            true,
            node.as_bytes().to_vec(),
        )
        .await?;
    wait_for(&format!("every node knows the pin of {client}"), || {
        brokers.iter().all(|b| {
            b.cluster()
                .is_some_and(|c| c.pin(client).as_deref() == Some(node))
        })
    })
    .await?;
    clock.say(
        "ops",
        format!("pins {client} to {node}: $cluster/assign/{client} = {node} (retained)"),
    );
    ops.client.disconnect().await?;
    Ok(())
}

/// The `node` field of a `$status` document, or an error.
fn status_node(payload: &[u8]) -> Result<(String, String), BoxError> {
    let doc: Value = serde_json::from_slice(payload)?;
    Ok((
        doc["state"].as_str().unwrap_or("?").to_owned(),
        doc["node"].as_str().unwrap_or("?").to_owned(),
    ))
}

/// The 5.0 client: connects to `n1` with the library's redirect-following connection and
/// reads its own `$status` where it ended up.
async fn five(n1: SocketAddr, n2: SocketAddr, clock: Clock) -> Result<(), BoxError> {
    let settings = ConnectSettings {
        host: n1.ip().to_string(),
        port: n1.port(),
        version: ProtocolVersion::V5,
        client_id: "sensor-7".to_owned(),
        credentials: None,
        keepalive: 30,
        clean: true,
        session_expiry: None,
        will: None,
        connect_timeout: Duration::from_secs(5),
    };
    let probe = redirect::Probe::of_settings(&settings).ok_or("a 5.0 client is probed")?;
    let reference = probe.ask().await.ok_or("n1 did not redirect sensor-7")?;
    clock.say(
        "sensor-7",
        format!("n1 answers CONNACK 0x9C, Server Reference {reference}"),
    );
    if reference != n2.to_string() {
        return Err(format!("expected Server Reference {n2}, got {reference}").into());
    }
    clock.say("sensor-7", format!("connects to n1 ({n1}) with MQTT 5.0"));
    let (mut link, _, reached) = Link::open(&settings).await?;
    let node = if reached.addr() == n2.to_string() {
        "n2"
    } else {
        "?"
    };
    clock.say(
        "sensor-7",
        format!("connected to {} ({node})", reached.addr()),
    );
    if node != "n2" {
        return Err(format!("expected to end up at {n2}, reached {}", reached.addr()).into());
    }
    link.sender()
        .subscribe(SubscribeRequest {
            filters: vec![FilterRequest {
                filter: "$status/sensor-7".to_owned(),
                qos: Qos::AtLeastOnce,
                no_local: false,
                retain_as_published: false,
                retain_handling: 0,
            }],
            subscription_id: None,
            user_properties: Vec::new(),
        })
        .await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match tokio::time::timeout_at(deadline, link.next_event()).await {
            Ok(Some(LinkEvent::Message(m))) => {
                let (state, at) = status_node(&m.payload)?;
                clock.say(
                    "sensor-7",
                    format!("reads {}: {state} at node {at}", m.topic),
                );
                if (state.as_str(), at.as_str()) != ("online", "n2") {
                    return Err("sensor-7 should be online at n2".into());
                }
                break;
            }
            Ok(Some(LinkEvent::Failed(f))) => return Err(format!("sensor-7: {f:?}").into()),
            Ok(Some(_)) => continue,
            _ => return Err("sensor-7: no $status document within 10 s".into()),
        }
    }
    link.disconnect().await?;
    Ok(())
}

/// The 3.1.1 client: connects to `n1`, is proxied to `n2`, reads its own `$status`.
async fn three(n1: SocketAddr, clock: Clock) -> Result<(), BoxError> {
    let mut legacy = Peer::connect("legacy-9", n1, None).await?;
    let (granted, early) = legacy.subscribe("$status/legacy-9").await?;
    if !granted {
        return Err("legacy-9: subscription to its own $status refused".into());
    }
    let mut seen = early;
    if seen.is_empty() {
        seen = legacy.expect(1).await;
    }
    let payload = seen
        .iter()
        .find_map(|s| match s {
            Seen::Message { payload, .. } => Some(payload.clone()),
            _ => None,
        })
        .ok_or("legacy-9: no $status document within 10 s")?;
    let (state, at) = status_node(&payload)?;
    clock.say(
        "legacy-9",
        format!("(3.1.1) connected through n1; $status/legacy-9: {state} at node {at}"),
    );
    if (state.as_str(), at.as_str()) != ("online", "n2") {
        return Err("legacy-9 should be served by n2 (proxied through n1)".into());
    }
    legacy.client.disconnect().await?;
    Ok(())
}

async fn run(brokers: [&BrokerHandle; 3], clock: Clock) -> Result<(), BoxError> {
    let [root, n1, n2] = brokers;
    wait_for("every node sees root, n1 and n2 up", || {
        brokers.iter().all(|b| {
            b.cluster().is_some_and(|c| {
                let nodes = c.nodes();
                ["root", "n1", "n2"]
                    .iter()
                    .all(|id| nodes.iter().any(|r| r.node == *id && r.is_up()))
            })
        })
    })
    .await?;
    clock.say("cluster", "every node sees root, n1, n2 up");

    pin(&brokers, root.mqtt_addr(), "sensor-7", "n2", clock).await?;
    five(n1.mqtt_addr(), n2.mqtt_addr(), clock).await?;

    pin(&brokers, root.mqtt_addr(), "legacy-9", "n2", clock).await?;
    three(n1.mqtt_addr(), clock).await?;
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let (root, d0) = node("root", None).await?;
    let (n1, d1) = node("n1", Some(root.mqtt_addr())).await?;
    let (n2, d2) = node("n2", Some(root.mqtt_addr())).await?;
    println!(
        "root on {}, n1 on {}, n2 on {} (n1 and n2 join the root)\n",
        root.mqtt_addr(),
        n1.mqtt_addr(),
        n2.mqtt_addr()
    );
    let result = tokio::time::timeout(
        Duration::from_secs(30),
        run([&root, &n1, &n2], Clock::start()),
    )
    .await;
    for b in [n2, n1, root] {
        b.shutdown().await;
    }
    for d in [d0, d1, d2] {
        let _ = std::fs::remove_dir_all(d);
    }
    result.map_err(|_| "the example did not finish within 30 s")??;
    println!("\nsensor-7 (5.0) was redirected to n2; legacy-9 (3.1.1) was proxied to n2");
    Ok(())
}
