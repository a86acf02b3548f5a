//! The proxy against a real Canopy node (a broker on port 0): the client side is an in-memory
//! pipe wrapped as a [`Transport`], exactly as a listener's connection would be.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use canopy_proto::{DecodeLimits, Packet, Protocol};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::sync::watch;

use super::*;
use crate::config::Config;
use crate::server::transport::Polled;

const STEP: Duration = Duration::from_secs(5);

const PEER: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3)), 40000);

/// A 3.1.1 CONNECT with client id `id`, clean session, keep alive 30 s.
fn connect_311(id: &str) -> Bytes {
    let mut body = vec![0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0, 30];
    body.extend_from_slice(&u16::try_from(id.len()).unwrap().to_be_bytes());
    body.extend_from_slice(id.as_bytes());
    let mut out = vec![0x10, u8::try_from(body.len()).unwrap()];
    out.extend_from_slice(&body);
    Bytes::from(out)
}

/// SUBSCRIBE (3.1.1, packet id 1) to `filter` at QoS 0.
fn subscribe_311(filter: &str) -> Vec<u8> {
    let len = u8::try_from(2 + 2 + filter.len() + 1).unwrap();
    let mut out = vec![0x82, len, 0, 1];
    out.extend_from_slice(&u16::try_from(filter.len()).unwrap().to_be_bytes());
    out.extend_from_slice(filter.as_bytes());
    out.push(0);
    out
}

/// PUBLISH QoS 0 of `payload` on `topic`.
fn publish_311(topic: &str, payload: &[u8]) -> Vec<u8> {
    let len = u8::try_from(2 + topic.len() + payload.len()).unwrap();
    let mut out = vec![0x30, len];
    out.extend_from_slice(&u16::try_from(topic.len()).unwrap().to_be_bytes());
    out.extend_from_slice(topic.as_bytes());
    out.extend_from_slice(payload);
    out
}

/// Reads packets from `pipe` until one is decoded.
async fn next_packet(pipe: &mut DuplexStream, buf: &mut BytesMut) -> Packet {
    let limits = DecodeLimits {
        max_packet_size: 1 << 20,
    };
    loop {
        if let Some(p) = canopy_proto::decode(buf, Protocol::V311, &limits).unwrap() {
            return p;
        }
        let n = tokio::time::timeout(STEP, pipe.read_buf(buf))
            .await
            .expect("a packet in time")
            .unwrap();
        assert_ne!(n, 0, "the proxy closed the client side");
    }
}

type Splice = tokio::task::JoinHandle<Result<Spliced, ProxyError>>;

/// Starts a splice for a client whose CONNECT is `head`, towards `addr`; returns the
/// client's end of the pipe, the task, the broker-wide counters and the stop switch.
fn start_splice(
    addr: String,
    head: Bytes,
) -> (
    DuplexStream,
    Splice,
    std::sync::Arc<Metrics>,
    watch::Sender<bool>,
) {
    let (client, server) = tokio::io::duplex(64 * 1024);
    let metrics = std::sync::Arc::new(Metrics::default());
    let (stop, stop_rx) = watch::channel(false);
    let upstream = Upstream {
        node: "n2".to_owned(),
        addr,
    };
    let m = metrics.clone();
    let task = tokio::spawn(async move {
        let mut transport = Polled::new(server);
        splice(
            &mut transport,
            PEER,
            Protocol::V311,
            head,
            &upstream,
            &m,
            stop_rx,
        )
        .await
    });
    (client, task, metrics, stop)
}

async fn node() -> crate::BrokerHandle {
    crate::start(Config::ephemeral()).await.unwrap()
}

async fn wait_until(what: &str, cond: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + STEP;
    while !cond() {
        assert!(tokio::time::Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_311_client_is_served_by_the_assigned_node_through_the_splice() {
    let node = node().await;
    let (mut client, task, metrics, _stop) =
        start_splice(node.mqtt_addr().to_string(), connect_311("far-1"));
    let mut buf = BytesMut::new();
    match next_packet(&mut client, &mut buf).await {
        Packet::ConnAck(a) => assert!(!a.reason.is_error(), "{a:?}"),
        other => panic!("expected CONNACK, got {other:?}"),
    }
    // The session lives on the node: it counts the client, not this side.
    wait_until("the node counts the client", || {
        Metrics::get(&node.metrics().clients_connected) == 1
    })
    .await;
    assert_eq!(Metrics::get(&metrics.proxied_open), 1);
    client.write_all(&subscribe_311("a/b")).await.unwrap();
    assert!(matches!(
        next_packet(&mut client, &mut buf).await,
        Packet::SubAck(_)
    ));
    client.write_all(&publish_311("a/b", b"hi")).await.unwrap();
    match next_packet(&mut client, &mut buf).await {
        Packet::Publish(p) => assert_eq!(&p.payload[..], b"hi"),
        other => panic!("expected PUBLISH, got {other:?}"),
    }
    drop(client);
    let done = tokio::time::timeout(STEP, task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(done.closed_by, ClosedBy::Client);
    assert!(done.up > 0 && done.down > 0, "{done:?}");
    assert_eq!(Metrics::get(&metrics.proxied_connections), 1);
    assert_eq!(Metrics::get(&metrics.proxied_open), 0);
    assert_eq!(Metrics::get(&metrics.proxied_bytes), done.up + done.down);
    wait_until("the node sees the client go", || {
        Metrics::get(&node.metrics().clients_connected) == 0
    })
    .await;
    node.shutdown().await;
}

#[tokio::test]
async fn the_node_closing_closes_the_client_side() {
    let node = node().await;
    let (mut client, task, _metrics, _stop) =
        start_splice(node.mqtt_addr().to_string(), connect_311("far-2"));
    let mut buf = BytesMut::new();
    assert!(matches!(
        next_packet(&mut client, &mut buf).await,
        Packet::ConnAck(_)
    ));
    // A second CONNECT is a protocol violation: the node closes its side.
    client.write_all(&connect_311("far-2")).await.unwrap();
    let done = tokio::time::timeout(STEP, task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(done.closed_by, ClosedBy::Node);
    let mut rest = Vec::new();
    let n = tokio::time::timeout(STEP, client.read_to_end(&mut rest))
        .await
        .expect("the client side is closed")
        .unwrap();
    assert_eq!(n, 0, "nothing after the node closed: {rest:?}");
    node.shutdown().await;
}

#[tokio::test]
async fn an_unreachable_node_answers_connack_server_unavailable() {
    // A port that was just free: nothing listens there.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let (mut client, task, metrics, _stop) = start_splice(addr.to_string(), connect_311("far-3"));
    let mut got = Vec::new();
    tokio::time::timeout(STEP, client.read_to_end(&mut got))
        .await
        .unwrap()
        .unwrap();
    // 3.1.1 CONNACK, return code 3 "server unavailable", then the end of the stream.
    assert_eq!(got, [0x20, 2, 0, 3]);
    let err = tokio::time::timeout(STEP, task).await.unwrap().unwrap();
    assert!(
        matches!(err, Err(ProxyError::Unreachable { .. })),
        "{err:?}"
    );
    assert_eq!(Metrics::get(&metrics.proxy_unreachable), 1);
    assert_eq!(Metrics::get(&metrics.proxied_connections), 0);
}

#[tokio::test]
async fn stopping_the_broker_ends_the_splice() {
    let node = node().await;
    let (mut client, task, metrics, stop) =
        start_splice(node.mqtt_addr().to_string(), connect_311("far-4"));
    let mut buf = BytesMut::new();
    assert!(matches!(
        next_packet(&mut client, &mut buf).await,
        Packet::ConnAck(_)
    ));
    stop.send(true).unwrap();
    let done = tokio::time::timeout(STEP, task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(done.closed_by, ClosedBy::Shutdown);
    assert_eq!(metrics.proxied_open.load(Ordering::Relaxed), 0);
    node.shutdown().await;
}

#[tokio::test]
async fn the_node_learns_the_client_address_from_the_proxy_line() {
    // A plain TCP server in place of the node: what arrives is the PROXY line, then the
    // CONNECT byte for byte.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let head = connect_311("far-5");
    let (_client, _task, _metrics, _stop) = start_splice(addr.to_string(), head.clone());
    let (mut seen, _) = listener.accept().await.unwrap();
    let mut buf = BytesMut::new();
    loop {
        tokio::time::timeout(STEP, seen.read_buf(&mut buf))
            .await
            .unwrap()
            .unwrap();
        let mut probe = buf.clone();
        if let Preamble::Proxied(_) = take_preamble(&mut probe)
            && frame_len(&probe).is_some()
        {
            break;
        }
    }
    assert_eq!(take_preamble(&mut buf), Preamble::Proxied(Some(PEER)));
    assert_eq!(&buf[..], &head[..]);
}

#[test]
fn preamble_round_trips_and_is_recognised_only_at_the_start() {
    let node = SocketAddr::from(([127, 0, 0, 1], 1883));
    let line = preamble(PEER, node);
    assert_eq!(line, "PROXY TCP4 10.1.2.3 127.0.0.1 40000 1883\r\n");
    let mut buf = BytesMut::from(line.as_bytes());
    buf.extend_from_slice(&connect_311("x"));
    assert_eq!(take_preamble(&mut buf), Preamble::Proxied(Some(PEER)));
    assert_eq!(&buf[..], &connect_311("x")[..]);
    // MQTT from the first byte: nothing taken.
    let mut mqtt = BytesMut::from(&connect_311("x")[..]);
    assert_eq!(take_preamble(&mut mqtt), Preamble::Absent);
    assert_eq!(mqtt.len(), connect_311("x").len());
    assert_eq!(take_preamble(&mut BytesMut::new()), Preamble::Incomplete);
}

#[test]
fn partial_and_hostile_preambles() {
    assert_eq!(
        take_preamble(&mut BytesMut::from(&b"PRO"[..])),
        Preamble::Incomplete
    );
    assert_eq!(
        take_preamble(&mut BytesMut::from(&b"PROXY TCP4 1.2.3.4"[..])),
        Preamble::Incomplete
    );
    assert_eq!(
        take_preamble(&mut BytesMut::from(&[b'P'; 200][..])),
        Preamble::Absent,
        "not `PROXY `"
    );
    let mut long = BytesMut::from(&b"PROXY "[..]);
    long.extend_from_slice(&[b'1'; 150]);
    assert_eq!(take_preamble(&mut long), Preamble::Invalid);
    assert_eq!(
        take_preamble(&mut BytesMut::from(&b"PROXY nonsense\r\n"[..])),
        Preamble::Invalid
    );
    assert_eq!(
        take_preamble(&mut BytesMut::from(&b"PROXY UNKNOWN\r\n"[..])),
        Preamble::Proxied(None)
    );
    assert_eq!(
        take_preamble(&mut BytesMut::from(&b"PROXY TCP4 x y z w\r\n"[..])),
        Preamble::Proxied(None),
        "proxied, address unreadable"
    );
}

#[test]
fn frame_len_needs_the_whole_packet() {
    let c = connect_311("abc");
    assert_eq!(frame_len(&c), Some(c.len()));
    assert_eq!(frame_len(&c[..c.len() - 1]), None);
    assert_eq!(frame_len(&[0x10]), None);
    assert_eq!(frame_len(&[0xC0, 0]), Some(2));
    // Two-byte remaining length: 200 bytes of body.
    let mut big = vec![0x30, 0xC8, 0x01];
    big.extend_from_slice(&[0; 200]);
    assert_eq!(frame_len(&big), Some(203));
    // A length field longer than four bytes is malformed.
    assert_eq!(frame_len(&[0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01]), None);
}
