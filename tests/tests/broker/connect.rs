//! CONNECT / CONNACK, take-over, keep-alive and PINGREQ.
//!
//! Canopy-specific (skipped in external mode): `server_keep_alive_caps_keep_alive` (needs
//! `limits.max_keep_alive`).

use std::time::{Duration, Instant};

use canopy_tests::wire::{self, Connect, Props, V5, V311, prop};
use canopy_tests::{QUIET, RawClient, RecvError, Settings, TestBroker, unique};

both_versions!(
    pingreq_gets_pingresp,
    second_connect_closes_connection,
    take_over_closes_old_connection,
    keep_alive_expiry_closes_connection,
    pings_keep_connection_alive,
);

#[tokio::test]
async fn connack_v311_is_exact_four_bytes() {
    // [MQTT-3.2.2-1]: clean session accepted -> session present 0, return code 0.
    let b = TestBroker::start().await;
    let mut c = RawClient::open(b.addr(), V311).await;
    c.send(&Connect::v311(&unique("c")).encode()).await;
    c.expect_bytes(&[0x20, 0x02, 0x00, 0x00]).await;
    c.ping().await;
}

#[tokio::test]
async fn connack_v5_success_is_well_formed() {
    // 5.0 CONNACK: flags 0, reason 0x00, then a property list that must parse exactly
    // (parse_connack checks the remaining length and property lengths).
    let b = TestBroker::start().await;
    let mut c = RawClient::open(b.addr(), V5).await;
    c.send(&Connect::v5(&unique("c")).encode()).await;
    let p = c.recv().await;
    assert_eq!(&p[..1], &[0x20]);
    let ack = wire::parse_connack(V5, &p);
    assert!(
        !ack.session_present,
        "[MQTT-3.2.2-2] clean start -> session present 0"
    );
    assert_eq!(ack.code, 0x00);
    assert_eq!(
        ack.props.get(prop::ASSIGNED_CLIENT_ID),
        None,
        "client id was given, none assigned"
    );
    c.ping().await;
}

#[tokio::test]
async fn unsupported_protocol_level_gets_connack_0x01_then_close_v311() {
    // [MQTT-3.1.2-2] (3.1.1): unsupported level -> CONNACK 0x01 and disconnect.
    let b = TestBroker::start().await;
    let mut c = RawClient::open(b.addr(), V311).await;
    c.send(&Connect::new(6, &unique("c")).encode()).await;
    c.expect_bytes(&[0x20, 0x02, 0x00, 0x01]).await;
    c.expect_closed().await;
}

#[tokio::test]
async fn unsupported_protocol_level_is_refused_then_closed_v5() {
    // [MQTT-3.1.2-2] (5.0): the server MAY send CONNACK 0x84 and MUST close. A server that
    // cannot tell the client's version may answer in the 3.1.1 form (0x01) instead.
    let b = TestBroker::start().await;
    let mut c = RawClient::open(b.addr(), V5).await;
    let mut connect = Connect::new(7, &unique("c"));
    connect.props = Props::new();
    c.send(&connect.encode()).await;
    match c.recv_within(canopy_tests::TIMEOUT).await {
        Ok(p) => assert!(
            p == [0x20, 0x02, 0x00, 0x01] || p == [0x20, 0x03, 0x00, 0x84, 0x00],
            "unexpected refusal {p:02x?}"
        ),
        Err(RecvError::Closed(rest)) => assert!(rest.is_empty()),
        Err(e) => panic!("no refusal: {e:?}"),
    }
    c.expect_closed().await;
}

async fn pingreq_gets_pingresp(v: u8) {
    // [MQTT-3.12.4-1]: the server MUST send PINGRESP in response to PINGREQ.
    let b = TestBroker::start().await;
    let mut c = RawClient::connect(b.addr(), v, &unique("ping")).await;
    c.send(&wire::PINGREQ).await;
    c.expect_bytes(&[0xD0, 0x00]).await;
}

async fn second_connect_closes_connection(v: u8) {
    // [MQTT-3.1.0-2]: a second CONNECT is a protocol violation; the server closes
    // (5.0 may send DISCONNECT 0x82 Protocol Error first).
    let b = TestBroker::start().await;
    let id = unique("twice");
    let mut c = RawClient::connect(b.addr(), v, &id).await;
    c.send(&Connect::new(v, &id).encode()).await;
    c.expect_closed_maybe_disconnect(&[0x82]).await;
    canopy_tests::assert_broker_works(b.addr()).await;
}

#[tokio::test]
async fn first_packet_not_connect_closes_connection() {
    // [MQTT-3.1.0-1]: the first packet from the client MUST be CONNECT.
    let b = TestBroker::start().await;
    let mut c = RawClient::open(b.addr(), V311).await;
    c.send(&wire::PINGREQ).await;
    c.expect_closed().await;
    let mut c = RawClient::open(b.addr(), V311).await;
    c.send(&wire::Publish::new(V311, "a/b", b"x").encode())
        .await;
    c.expect_closed().await;
    canopy_tests::assert_broker_works(b.addr()).await;
}

#[tokio::test]
async fn empty_client_id_gets_assigned_identifier_v5() {
    // [MQTT-3.1.3-6] / [MQTT-3.2.2-16]: zero-length client id -> the server assigns one and
    // returns it in Assigned Client Identifier.
    let b = TestBroker::start().await;
    let (mut c, ack) = RawClient::connect_with(b.addr(), &Connect::v5("")).await;
    let id = ack
        .props
        .str(prop::ASSIGNED_CLIENT_ID)
        .expect("Assigned Client Identifier");
    assert!(!id.is_empty());
    c.ping().await;
}

#[tokio::test]
async fn empty_client_id_with_clean_session_is_accepted_v311() {
    // [MQTT-3.1.3-6]: zero-length id with CleanSession=1 is accepted.
    let b = TestBroker::start().await;
    let mut c = RawClient::open(b.addr(), V311).await;
    c.send(&Connect::v311("").encode()).await;
    c.expect_bytes(&[0x20, 0x02, 0x00, 0x00]).await;
    c.ping().await;
}

#[tokio::test]
async fn empty_client_id_without_clean_session_is_refused_v311() {
    // [MQTT-3.1.3-8]: zero-length id with CleanSession=0 -> CONNACK 0x02, then close.
    let b = TestBroker::start().await;
    let mut c = RawClient::open(b.addr(), V311).await;
    c.send(&Connect::v311("").clean(false).encode()).await;
    c.expect_bytes(&[0x20, 0x02, 0x00, 0x02]).await;
    c.expect_closed().await;
}

async fn take_over_closes_old_connection(v: u8) {
    // [MQTT-3.1.4-2] (3.1.1) / [MQTT-3.1.4-3] (5.0): the existing connection with the same
    // client id is closed; a 5.0 client is first told DISCONNECT 0x8E Session taken over.
    let b = TestBroker::start().await;
    let id = unique("takeover");
    let mut old = RawClient::connect(b.addr(), v, &id).await;
    let mut new = RawClient::connect(b.addr(), v, &id).await;
    if v == V5 {
        old.expect_disconnect(0x8E).await;
    } else {
        old.expect_closed().await;
    }
    new.ping().await;
}

async fn keep_alive_expiry_closes_connection(v: u8) {
    // [MQTT-3.1.2-24]: no packet for 1.5 x keep alive -> the server disconnects (5.0 may
    // send DISCONNECT 0x8D Keep Alive timeout first). Keep alive 1 s: closed after 1.5 s,
    // allow scheduling slack, but not before 1 s.
    let b = TestBroker::start().await;
    let id = unique("ka");
    let (mut c, _) = RawClient::connect_with(b.addr(), &Connect::new(v, &id).keep_alive(1)).await;
    let start = Instant::now();
    c.expect_nothing(Duration::from_millis(1000)).await;
    match c.recv_within(Duration::from_millis(2500)).await {
        Err(RecvError::Closed(rest)) => assert!(rest.is_empty()),
        Ok(p) if v == V5 => {
            assert_eq!(wire::parse_disconnect(&p).reason, 0x8D);
            c.expect_closed().await;
        }
        other => panic!("keep alive not enforced: {other:?}"),
    }
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_millis(1000),
        "closed too early: {waited:?}"
    );
}

async fn pings_keep_connection_alive(v: u8) {
    // [MQTT-3.1.2-23]: a client that sends a packet within the keep alive stays connected.
    let b = TestBroker::start().await;
    let (mut c, _) =
        RawClient::connect_with(b.addr(), &Connect::new(v, &unique("ka")).keep_alive(1)).await;
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(600)).await;
        c.ping().await;
    }
}

#[tokio::test]
async fn server_keep_alive_caps_keep_alive_v5() {
    // [MQTT-3.2.2-21]/[MQTT-3.2.2-22]: when the server limits keep alive it returns Server
    // Keep Alive, and that value applies.
    let s = Settings {
        max_keep_alive: Some(10),
        ..Settings::default()
    };
    let Some(b) = TestBroker::start_with(s, "server_keep_alive_caps_keep_alive_v5").await else {
        return;
    };
    let (mut c, ack) =
        RawClient::connect_with(b.addr(), &Connect::v5(&unique("ska")).keep_alive(60)).await;
    assert_eq!(ack.props.int(prop::SERVER_KEEP_ALIVE), Some(10));
    c.expect_nothing(QUIET).await;
    c.ping().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_tells_clients_and_closes() {
    // SPEC.md 2 (SIGTERM / shutdown): 5.0 clients get DISCONNECT 0x8B Server shutting down,
    // 3.1.1 clients see the connection closed.
    let Some(b) = TestBroker::start_canopy_only("graceful_shutdown_tells_clients_and_closes").await
    else {
        return;
    };
    let mut c5 = RawClient::connect(b.addr(), V5, &unique("c5")).await;
    let mut c3 = RawClient::connect(b.addr(), V311, &unique("c3")).await;
    b.shutdown().await;
    c5.expect_disconnect(0x8B).await;
    c3.expect_closed().await;
}
