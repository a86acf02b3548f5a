//! Connection admission (SPEC §7, docs/flow-control.md#admission): `max_connections` with
//! the admission FIFO and its timeout, `connect_timeout` against a trickled CONNECT, a huge
//! length prefix before CONNECT, and `connection_rate_per_address`.
//!
//! Canopy-specific (in process only): every case needs `[limits]` settings and counters.

use std::time::Duration;

use canopy_tests::wire::{self, Connect, V5, V311};
use canopy_tests::{QUIET, RawClient, RecvError, TIMEOUT, TestBroker, unique, wait_until};

/// `100_000_000` as an MQTT variable byte integer.
const HUNDRED_MB: [u8; 4] = [0x80, 0xc2, 0xd7, 0x2f];

fn version_of(i: usize) -> u8 {
    if i.is_multiple_of(2) { V5 } else { V311 }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn above_max_connections_clients_wait_in_order_then_are_refused_at_admission_timeout() {
    // SPEC §7: 50 served, the rest wait before their CONNECT is read, get in in arrival
    // order as others leave, and at `admission_timeout` get CONNACK 0x97 (5.0) / 3 (3.1.1).
    let b = TestBroker::start_config(|c| {
        c.limits.max_connections = 50;
        c.limits.admission_queue = 150;
        c.limits.admission_timeout = Duration::from_secs(8);
    })
    .await;
    let mut clients = Vec::new();
    for i in 0..200 {
        let v = version_of(i);
        let mut c = RawClient::open(b.addr(), v).await;
        c.send(&Connect::new(v, &unique(&format!("adm{i}"))).encode())
            .await;
        clients.push(Some(c));
    }
    for (i, c) in clients.iter_mut().enumerate().take(50) {
        let c = c.as_mut().unwrap();
        let ack = wire::parse_connack(c.version, &c.recv().await);
        assert_eq!(ack.code, 0, "client {i} is within max_connections");
    }
    for i in [50, 199] {
        clients[i].as_mut().unwrap().expect_nothing(QUIET).await;
    }
    assert_eq!(b.counter("connections_waiting"), Some(150));
    // Ten leave: the ten oldest waiters get in, nobody else.
    for c in clients.iter_mut().take(10) {
        c.take().unwrap().disconnect().await;
    }
    for (i, c) in clients.iter_mut().enumerate().skip(50).take(10) {
        let c = c.as_mut().unwrap();
        let ack = wire::parse_connack(c.version, &c.recv().await);
        assert_eq!(ack.code, 0, "waiter {i} is admitted in arrival order");
    }
    clients[60].as_mut().unwrap().expect_nothing(QUIET).await;
    // The other 140 are refused at admission_timeout, in their own protocol version.
    for (i, c) in clients.iter_mut().enumerate().skip(60) {
        let c = c.as_mut().unwrap();
        let p = c
            .recv_within(Duration::from_secs(20))
            .await
            .unwrap_or_else(|e| panic!("client {i}: no refusal: {e:?}"));
        let ack = wire::parse_connack(c.version, &p);
        let want = if c.version == V5 { 0x97 } else { 0x03 };
        assert_eq!(ack.code, want, "client {i} (level {})", c.version);
        c.expect_closed().await;
    }
    assert_eq!(b.counter("admission_timeouts"), Some(140));
    assert_eq!(b.counter("connections_queued"), Some(150));
    assert_eq!(b.counter("connections_waiting"), Some(0));
    // The served ones still work, and a newcomer gets in once there is room.
    drop(clients);
    canopy_tests::assert_broker_works(b.addr()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connect_trickled_byte_by_byte_is_dropped_at_connect_timeout() {
    let b = TestBroker::start_config(|c| c.limits.connect_timeout = Duration::from_secs(1)).await;
    let mut c = RawClient::open(b.addr(), V311).await;
    let connect = Connect::v311(&unique("trickle")).encode();
    assert!(connect.len() > 20, "long enough to outlast the timeout");
    // One byte per 150 ms: the whole CONNECT would take more than 3 s.
    for byte in &connect {
        if c.try_send(&[*byte]).await.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    match c.recv_within(TIMEOUT).await {
        Err(RecvError::Closed(rest)) => assert!(rest.is_empty(), "no CONNACK: {rest:02x?}"),
        other => panic!("the trickled CONNECT must be dropped, got {other:?}"),
    }
    assert_eq!(b.counter("connect_timeouts"), Some(1));
    canopy_tests::assert_broker_works(b.addr()).await;
}

/// The process's virtual memory size in KiB (the broker runs in this process).
fn vm_size_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status")
        .expect("reading /proc/self/status: this test needs Linux procfs");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmSize:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmSize in /proc/self/status")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_megabyte_length_prefix_before_connect_costs_no_memory() {
    // Even with max_packet_size at its 256 MiB cap, a declared CONNECT size is not
    // reserved ahead of the bytes: 40 such prefixes would otherwise take 4 GB. The bound
    // leaves room for what other tests running in this process allocate meanwhile.
    let b = TestBroker::start_config(|c| {
        c.limits.max_packet_size = 256 * 1024 * 1024;
        c.limits.connect_timeout = Duration::from_secs(60);
    })
    .await;
    canopy_tests::assert_broker_works(b.addr()).await;
    let before_bytes = b.counter("bytes_received").unwrap();
    let before = vm_size_kib();
    let mut held = Vec::new();
    for _ in 0..40 {
        let mut c = RawClient::open(b.addr(), V311).await;
        let mut prefix = vec![0x10];
        prefix.extend_from_slice(&HUNDRED_MB);
        prefix.extend_from_slice(b"\x00\x04MQTT\x04");
        c.send(&prefix).await;
        held.push(c);
    }
    let read_all = wait_until(TIMEOUT, || {
        b.counter("bytes_received").unwrap() >= before_bytes + 40 * 12
    })
    .await;
    assert!(read_all, "the broker read every prefix");
    let grown_mib = vm_size_kib().saturating_sub(before) / 1024;
    assert!(
        grown_mib < 1000,
        "virtual memory grew by {grown_mib} MiB for 40 prefixes of 100 MB"
    );
    for c in &mut held {
        c.expect_nothing(Duration::from_millis(10)).await;
    }
    canopy_tests::assert_broker_works(b.addr()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_length_prefix_over_max_packet_size_closes_the_connection_at_once() {
    let b = TestBroker::start_config(|_| {}).await;
    let mut c = RawClient::open(b.addr(), V5).await;
    let mut prefix = vec![0x10];
    prefix.extend_from_slice(&HUNDRED_MB);
    c.send(&prefix).await;
    c.expect_closed().await;
    // A first packet that is not CONNECT is refused from its first byte [MQTT-3.1.0-1].
    let mut c = RawClient::open(b.addr(), V5).await;
    let mut prefix = vec![0x30];
    prefix.extend_from_slice(&HUNDRED_MB);
    c.send(&prefix).await;
    c.expect_closed().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_above_the_rate_per_address_are_closed_and_counted() {
    let b = TestBroker::start_config(|c| c.limits.connection_rate_per_address = 2).await;
    let (mut served, mut closed) = (0u64, 0u64);
    for i in 0..12 {
        let mut c = RawClient::open(b.addr(), V311).await;
        let _ = c
            .try_send(&Connect::v311(&unique(&format!("rate{i}"))).encode())
            .await;
        match c.recv_within(TIMEOUT).await {
            Ok(p) => {
                assert_eq!(wire::parse_connack(V311, &p).code, 0);
                served += 1;
            }
            Err(RecvError::Closed(rest)) => {
                assert!(rest.is_empty());
                closed += 1;
            }
            Err(e) => panic!("client {i}: {e:?}"),
        }
    }
    assert!(served >= 2, "the first two of a second are served");
    assert!(
        closed >= 1,
        "12 connections in a few seconds exceed 2 per second"
    );
    assert_eq!(b.counter("connections_rate_limited"), Some(closed));
}
