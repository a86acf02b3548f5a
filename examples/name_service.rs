//! Name service by load (SPEC §6, docs/cluster.md "The name service"): three brokers in this
//! process, a root and two nodes `n1` and `n2` joined to it, each on its own loopback
//! address (root 127.0.0.1, n1 127.0.0.2, n2 127.0.0.3) so that an A record can tell them
//! apart. The root's DNS listener (`[dns] listen`, zone `canopy.local`) answers
//! `A mqtt.canopy.local` with the address of the up node with the lowest connections per
//! capacity in its view (ties: the lower node id), re-read from the load records for every
//! question. The nodes use `policy = "accept"` so the clients loading `n1` stay where they
//! connect (the redirect is the subject of the `cluster_redirect` example).
//!
//! What to watch in the output (queries made with hickory-proto, no `dig` needed):
//! - `A mqtt.canopy.local. -> 127.0.0.2 (n1)`: all idle, the tie goes to `n1`;
//! - 30 clients connect to `n1`; after its next load record (`load_interval = "500ms"`) the
//!   root's view says `n1 has 30 connections` and the answer moves to `127.0.0.3 (n2)`;
//! - `ops` drains `n2` (`$cluster/drain/n2`, retained): its record says `draining` and the
//!   answer is `127.0.0.1 (root)` in every one of the following questions, never `n2`.
//!
//! Needs the whole 127.0.0.0/8 on loopback (Linux has it; macOS needs
//! `sudo ifconfig lo0 alias 127.0.0.2 up` and `127.0.0.3`). Everything runs in this process
//! and stops by itself (at most 40 s).
//!
//! Run: `cargo run -p canopy-examples --example name_service`.

#[path = "support/mod.rs"]
mod support;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use canopy_broker::BrokerHandle;
use canopy_broker::config::Config;
use canopy_model::cluster::NodeState;
use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, RData, RecordType};
use support::{BoxError, Clock, Peer};
use tokio::net::UdpSocket;

const NAME: &str = "mqtt.canopy.local.";
/// How many clients load `n1`.
const LOAD: usize = 30;

/// A free TCP port on `ip`.
fn free_port(ip: &str) -> Result<u16, BoxError> {
    Ok(std::net::TcpListener::bind((ip, 0))?.local_addr()?.port())
}

/// Starts node `id` on `ip`; `join`: the root's address (none for the root, which also
/// runs the DNS listener).
async fn node(
    id: &str,
    ip: &str,
    join: Option<SocketAddr>,
) -> Result<(BrokerHandle, PathBuf), BoxError> {
    let port = free_port(ip)?;
    let extra = match join {
        Some(r) => format!("join = \"mqtt://{r}\"\n"),
        None => "[dns]\nlisten = \"127.0.0.1:0\"\nzone = \"canopy.local\"\n".to_owned(),
    };
    let text = format!(
        r#"
node_id = "{id}"
durability = "memory"
[[listener]]
bind = "{ip}:{port}"
[config]
admins = ["ops"]
[cluster]
policy = "accept"
capacity = 100
load_interval = "500ms"
{extra}"#
    );
    let mut cfg = Config::from_toml(&text, "name_service.toml")?;
    let dir = std::env::temp_dir().join(format!(
        "canopy-example-name-service-{}-{id}",
        std::process::id()
    ));
    cfg.data_dir = dir.clone();
    Ok((canopy_broker::start(cfg).await?, dir))
}

/// Asks `server` for the A record of [`NAME`] over UDP: the addresses answered.
async fn ask(server: SocketAddr) -> Result<Vec<String>, BoxError> {
    let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await?;
    let mut q = Message::new(0x4343, MessageType::Query, OpCode::Query);
    q.add_query(Query::query(Name::from_ascii(NAME)?, RecordType::A));
    socket.send_to(&q.to_vec()?, server).await?;
    let mut buf = [0u8; 1500];
    let (len, _) = tokio::time::timeout(Duration::from_secs(5), socket.recv_from(&mut buf))
        .await
        .map_err(|_| "no DNS answer within 5 s")??;
    let answer = Message::from_vec(buf.get(..len).ok_or("short datagram")?)?;
    Ok(answer
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.0.to_string()),
            _ => None,
        })
        .collect())
}

/// Asks once, prints the answer with the node it names; an error unless it is `want`.
async fn expect_answer(
    dns: SocketAddr,
    want: (&str, &str),
    nodes: &[(&str, &str)],
    clock: Clock,
) -> Result<(), BoxError> {
    let got = ask(dns).await?;
    let named: Vec<String> = got
        .iter()
        .map(|ip| {
            let node = nodes.iter().find(|(_, i)| i == ip).map_or("?", |(n, _)| n);
            format!("{ip} ({node})")
        })
        .collect();
    clock.say("dns", format!("A {NAME} -> {}", named.join(" ")));
    if got != [want.1] {
        return Err(format!("expected {} ({}), got {got:?}", want.1, want.0).into());
    }
    Ok(())
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

async fn run(brokers: [&BrokerHandle; 3], dns: SocketAddr, clock: Clock) -> Result<(), BoxError> {
    let [root, n1, _] = brokers;
    let ips = [
        ("root", "127.0.0.1"),
        ("n1", "127.0.0.2"),
        ("n2", "127.0.0.3"),
    ];
    let book = root.cluster().ok_or("the root has no cluster book")?;
    wait_for("every node sees root, n1 and n2 up", || {
        brokers.iter().all(|b| {
            b.cluster().is_some_and(|c| {
                let nodes = c.nodes();
                ips.iter()
                    .all(|(id, _)| nodes.iter().any(|r| r.node == *id && r.is_up()))
            })
        })
    })
    .await?;
    clock.say("cluster", "every node sees root, n1, n2 up, no connections");
    expect_answer(dns, ("n1", "127.0.0.2"), &ips, clock).await?;

    let mut load = Vec::with_capacity(LOAD);
    for i in 0..LOAD {
        load.push(Peer::connect(&format!("load-{i:02}"), n1.mqtt_addr(), None).await?);
    }
    clock.say("load", format!("{LOAD} clients connect to n1"));
    let connections = |id: &str| {
        book.nodes()
            .iter()
            .find(|r| r.node == id)
            .map_or(0, |r| r.connections)
    };
    wait_for("the root's view of n1 counts the clients", || {
        connections("n1") >= LOAD as u64
    })
    .await?;
    clock.say(
        "root",
        format!(
            "view after n1's next load record: n1 has {} connections, n2 {}, root {}",
            connections("n1"),
            connections("n2"),
            connections("root")
        ),
    );
    expect_answer(dns, ("n2", "127.0.0.3"), &ips, clock).await?;

    let ops = Peer::connect("ops", root.mqtt_addr(), None).await?;
    ops.client
        .publish(
            "$cluster/drain/n2",
            rumqttc::QoS::AtLeastOnce,
            true,
            b"drain".to_vec(),
        )
        .await?;
    clock.say("ops", "drains n2: $cluster/drain/n2 = drain (retained)");
    wait_for("the root's view says n2 is draining", || {
        book.nodes()
            .iter()
            .any(|r| r.node == "n2" && r.state == NodeState::Draining)
    })
    .await?;
    clock.say("root", "view: n2 is draining");
    for _ in 0..5 {
        expect_answer(dns, ("root", "127.0.0.1"), &ips, clock).await?;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    clock.say("dns", "n2 was never named while draining");
    ops.client.disconnect().await?;
    for p in load {
        p.client.disconnect().await?;
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let (root, d0) = node("root", "127.0.0.1", None).await?;
    let (n1, d1) = node("n1", "127.0.0.2", Some(root.mqtt_addr())).await?;
    let (n2, d2) = node("n2", "127.0.0.3", Some(root.mqtt_addr())).await?;
    let dns = root.dns_addr().ok_or("the DNS listener is not bound")?;
    println!(
        "root on {} (DNS on {dns}, zone canopy.local), n1 on {}, n2 on {}\n",
        root.mqtt_addr(),
        n1.mqtt_addr(),
        n2.mqtt_addr()
    );
    let result = tokio::time::timeout(
        Duration::from_secs(40),
        run([&root, &n1, &n2], dns, Clock::start()),
    )
    .await;
    for b in [n2, n1, root] {
        b.shutdown().await;
    }
    for d in [d0, d1, d2] {
        let _ = std::fs::remove_dir_all(d);
    }
    result.map_err(|_| "the example did not finish within 40 s")??;
    println!("\nthe answer followed the load records: n1, then n2, then root while n2 drained");
    Ok(())
}
