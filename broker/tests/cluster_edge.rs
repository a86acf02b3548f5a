//! The edge of a cluster end to end, two in-process brokers on loopback (the root `n1` and
//! `n2`, joined to it): a 3.1.1 client that belongs to `n2` but reaches `n1` is proxied there
//! transparently (its subscriptions and publishes take effect on `n2`, its `$status` names
//! `n2`), and the name service `mqtt.canopy.local` answers the least loaded live node, never
//! a draining or a down one —
//! asked with `dig` (Debian's `dnsutils`), or through hickory-proto when
//! `CANOPY_SKIP_EXTERNAL=1` (README, "Tests").

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use canopy_broker::BrokerHandle;
use canopy_broker::config::{ClusterConfig, Config};
use canopy_broker::metrics::Metrics;
use canopy_broker::services::cluster::Admission;
use canopy_model::cluster::NodeState;
use canopy_proto::{DecodeLimits, Packet, Protocol, QoS};
use support::Client;
use support::dns::{have_dig, lookup_a, wait_for_a};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const WAIT: Duration = Duration::from_secs(10);

fn cluster(edit: impl FnOnce(&mut ClusterConfig)) -> ClusterConfig {
    let mut c = ClusterConfig {
        load_interval: Duration::from_millis(200),
        ..ClusterConfig::default()
    };
    edit(&mut c);
    c
}

/// The admin of these tests: a `-local` id, which a cluster never redirects (a link's).
const OPS: &str = "ops-local";

/// The root `n1`, with the DNS listener on a free UDP port.
async fn root() -> BrokerHandle {
    let mut cfg = Config::ephemeral();
    cfg.node_id = "n1".into();
    cfg.config_docs.admins = vec![OPS.into()];
    cfg.cluster = Some(cluster(|_| {}));
    cfg.dns.listen = Some(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)));
    canopy_broker::start(cfg).await.unwrap()
}

/// Node `id` joined to `root`; `advertise` overrides its bound address.
async fn joined(root: &BrokerHandle, id: &str, advertise: Option<&str>) -> BrokerHandle {
    let mut cfg = Config::ephemeral();
    cfg.node_id = id.into();
    let join = format!("mqtt://{}", root.mqtt_addr());
    cfg.cluster = Some(cluster(|c| {
        c.join = Some(join);
        c.advertise = advertise.map(str::to_owned);
    }));
    canopy_broker::start(cfg).await.unwrap()
}

/// Waits until `on`'s cluster view holds `node` in `state`.
async fn wait_for_record(on: &BrokerHandle, node: &str, state: NodeState) {
    let book = on.cluster().expect("a cluster node");
    let deadline = Instant::now() + WAIT;
    while !book
        .nodes()
        .iter()
        .any(|r| r.node == node && r.state == state)
    {
        assert!(
            Instant::now() < deadline,
            "{node} not {state:?} in {:?}",
            book.nodes()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A client id `<prefix>-<n>` that `on` admits as `want` (`Local`, or sent on to node
/// `want`).
fn id_admitted(on: &BrokerHandle, prefix: &str, protocol: Protocol, want: Option<&str>) -> String {
    let book = on.cluster().unwrap();
    (0..10_000)
        .map(|k| format!("{prefix}-{k}"))
        .find(|id| match (book.admit(id, false, protocol, None), want) {
            (Admission::Local, None) => true,
            (Admission::Proxy(n) | Admission::Redirect(n), Some(w)) => n.node == w,
            _ => false,
        })
        .expect("some id maps there")
}

/// A raw 3.1.1 connection.
struct V311 {
    stream: TcpStream,
    rbuf: BytesMut,
}

impl V311 {
    async fn connect(addr: SocketAddr, id: &str) -> (V311, Packet) {
        V311::connect_after(addr, id, b"").await
    }

    /// Connects, sending `before` ahead of the CONNECT (a PROXY line).
    async fn connect_after(addr: SocketAddr, id: &str, before: &[u8]) -> (V311, Packet) {
        let mut body = vec![0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0, 60];
        body.extend_from_slice(&u16::try_from(id.len()).unwrap().to_be_bytes());
        body.extend_from_slice(id.as_bytes());
        let mut bytes = before.to_vec();
        bytes.extend_from_slice(&[0x10, u8::try_from(body.len()).unwrap()]);
        bytes.extend_from_slice(&body);
        let mut c = V311 {
            stream: TcpStream::connect(addr).await.unwrap(),
            rbuf: BytesMut::new(),
        };
        c.stream.write_all(&bytes).await.unwrap();
        let ack = c.next().await;
        (c, ack)
    }

    async fn write(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
    }

    async fn next(&mut self) -> Packet {
        let limits = DecodeLimits {
            max_packet_size: 1 << 20,
        };
        loop {
            if let Some(p) = canopy_proto::decode(&mut self.rbuf, Protocol::V311, &limits).unwrap()
            {
                return p;
            }
            let n = tokio::time::timeout(WAIT, self.stream.read_buf(&mut self.rbuf))
                .await
                .expect("a packet in time")
                .unwrap();
            assert_ne!(n, 0, "closed");
        }
    }
}

#[tokio::test]
async fn a_311_client_assigned_elsewhere_is_proxied_to_its_node() {
    let n1 = root().await;
    let n2 = joined(&n1, "n2", None).await;
    wait_for_record(&n1, "n2", NodeState::Up).await;
    wait_for_record(&n2, "n1", NodeState::Up).await;
    let id = id_admitted(&n1, "dev", Protocol::V311, Some("n2"));
    let before = Metrics::get(&n2.metrics().clients_connected);

    let (mut c, ack) = V311::connect(n1.mqtt_addr(), &id).await;
    assert!(
        matches!(&ack, Packet::ConnAck(a) if !a.reason.is_error()),
        "{ack:?}"
    );
    assert_eq!(Metrics::get(&n1.metrics().proxied_connections), 1);
    assert_eq!(Metrics::get(&n1.metrics().proxied_open), 1);
    // The session is n2's.
    let deadline = Instant::now() + WAIT;
    while Metrics::get(&n2.metrics().clients_connected) != before + 1 {
        assert!(Instant::now() < deadline, "n2 does not count the client");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Subscriptions and publishes take effect there: a client of n2 sees the publish.
    let watcher_id = id_admitted(&n2, "watcher", Protocol::V5, None);
    let mut watcher = Client::connect(n2.mqtt_addr(), &watcher_id, true, 0)
        .await
        .unwrap();
    watcher.subscribe("edge/#", QoS::AtMostOnce).await.unwrap();
    watcher
        .subscribe(&format!("$status/{id}"), QoS::AtMostOnce)
        .await
        .unwrap();
    let status = loop {
        match watcher.recv_timeout(WAIT).await.unwrap() {
            Some(Packet::Publish(p)) => break p,
            Some(_) => {}
            None => panic!("no $status for {id} on n2"),
        }
    };
    let doc: serde_json::Value = serde_json::from_slice(&status.payload).unwrap();
    assert_eq!(doc["node"], "n2", "{doc}");
    assert_eq!(doc["state"], "online", "{doc}");

    let topic = b"edge/x";
    let mut publish = vec![0x30, u8::try_from(2 + topic.len() + 2).unwrap(), 0, 6];
    publish.extend_from_slice(topic);
    publish.extend_from_slice(b"hi");
    c.write(&publish).await;
    let got = loop {
        match watcher.recv_timeout(WAIT).await.unwrap() {
            Some(Packet::Publish(p))
                if p.topic.as_ref().is_some_and(|t| t.as_str() == "edge/x") =>
            {
                break p;
            }
            Some(_) => {}
            None => panic!("the proxied publish did not reach n2"),
        }
    };
    assert_eq!(&got.payload[..], b"hi");

    drop(c);
    let deadline = Instant::now() + WAIT;
    while Metrics::get(&n1.metrics().proxied_open) != 0 {
        assert!(Instant::now() < deadline, "the splice did not end");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(Metrics::get(&n1.metrics().proxied_bytes) > 0);
    watcher.disconnect().await;
    n2.shutdown().await;
    n1.shutdown().await;
}

#[tokio::test]
async fn a_connection_another_node_proxied_is_served_here_never_sent_on() {
    let n1 = root().await;
    let n2 = joined(&n1, "n2", None).await;
    wait_for_record(&n1, "n2", NodeState::Up).await;
    let id = id_admitted(&n1, "dev", Protocol::V311, Some("n2"));
    let before = Metrics::get(&n1.metrics().clients_connected);
    // What n2 would send if it proxied this client to n1: n1 serves it, even though it
    // thinks the client is n2's, so two nodes that disagree cannot bounce it.
    let line = b"PROXY TCP4 10.9.9.9 127.0.0.1 40000 1883\r\n";
    let (_c, ack) = V311::connect_after(n1.mqtt_addr(), &id, line).await;
    assert!(
        matches!(&ack, Packet::ConnAck(a) if !a.reason.is_error()),
        "{ack:?}"
    );
    assert_eq!(Metrics::get(&n1.metrics().proxied_connections), 0);
    assert_eq!(Metrics::get(&n1.metrics().clients_connected), before + 1);
    n2.shutdown().await;
    n1.shutdown().await;
}

#[tokio::test]
async fn the_name_service_answers_the_least_loaded_live_node_never_a_draining_or_down_one() {
    if !have_dig() {
        eprintln!("note: `dig` not found (Debian package dnsutils); querying with hickory-proto");
    }
    let n1 = root().await;
    let dns = n1.dns_addr().unwrap();
    // Before any other record: this node's own address, never SERVFAIL.
    assert_eq!(lookup_a(dns, "mqtt.canopy.local").await, ["127.0.0.1"]);
    // n2 advertises 127.0.0.2 so that the answer tells the nodes apart; nobody connects
    // there.
    let n2 = joined(&n1, "n2", Some("127.0.0.2:1883")).await;
    wait_for_record(&n1, "n2", NodeState::Up).await;
    // Load n1: clients it serves itself.
    let mut held = Vec::new();
    let book = n1.cluster().unwrap();
    let local: Vec<String> = (0..10_000)
        .map(|k| format!("load-{k}"))
        .filter(|id| book.admit(id, false, Protocol::V5, None) == Admission::Local)
        .take(5)
        .collect();
    for id in &local {
        held.push(Client::connect(n1.mqtt_addr(), id, true, 0).await.unwrap());
    }
    wait_for_a(dns, "mqtt.canopy.local", "127.0.0.2").await;
    // A draining node is never named, however idle: `canopy cluster drain n2` at the root.
    let mut ops = Client::connect(n1.mqtt_addr(), OPS, true, 0).await.unwrap();
    ops.publish("$cluster/drain/n2", b"drain", QoS::AtLeastOnce, 1)
        .await
        .unwrap();
    wait_for_record(&n1, "n2", NodeState::Draining).await;
    wait_for_a(dns, "mqtt.canopy.local", "127.0.0.1").await;
    // The drain order lifted (an empty payload, `--undo`): named again.
    ops.publish("$cluster/drain/n2", b"", QoS::AtLeastOnce, 2)
        .await
        .unwrap();
    wait_for_record(&n1, "n2", NodeState::Up).await;
    wait_for_a(dns, "mqtt.canopy.local", "127.0.0.2").await;
    // A node that goes down is never named again.
    n2.shutdown().await;
    wait_for_record(&n1, "n2", NodeState::Down).await;
    wait_for_a(dns, "mqtt.canopy.local", "127.0.0.1").await;
    drop(held);
    n1.shutdown().await;
}
