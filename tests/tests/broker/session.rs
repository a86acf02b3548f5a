//! Sessions: persistence across connections, Session Present, clean start, resending
//! unacknowledged messages, 5.0 session expiry.

use canopy_tests::wire::{self, Connect, Props, V5, prop};
use canopy_tests::{QUIET, RawClient, TestBroker, unique};

both_versions!(
    persistent_session_queues_qos1_and_qos2_while_offline,
    clean_start_discards_stored_session,
    unacknowledged_publishes_are_resent_with_dup_in_order,
    unacknowledged_pubrel_is_resent_after_reconnect,
);

/// A CONNECT that keeps its session: CleanSession 0 (3.1.1), or Clean Start 0 with a
/// session expiry of 300 s (5.0).
pub fn persistent(v: u8, id: &str) -> Connect {
    let c = Connect::new(v, id).clean(false);
    if v == V5 {
        c.props(Props::new().u32(prop::SESSION_EXPIRY, 300))
    } else {
        c
    }
}

async fn persistent_session_queues_qos1_and_qos2_while_offline(v: u8) {
    // [MQTT-3.1.2-4]/[MQTT-3.1.2-5]: the session (subscriptions, queued QoS 1/2 messages)
    // outlives the connection; [MQTT-3.2.2-3] Session Present 0 the first time,
    // [MQTT-3.2.2-2] 1 when the session was found.
    let b = TestBroker::start().await;
    let id = unique("persist");
    let t = unique("pq");
    let (mut s, ack) = RawClient::connect_with(b.addr(), &persistent(v, &id)).await;
    assert!(!ack.session_present, "new session must not be present");
    s.subscribe(&format!("{t}/1"), 1).await;
    s.subscribe(&format!("{t}/2"), 2).await;
    s.disconnect().await;
    let mut p = RawClient::connect(b.addr(), v, &unique("p")).await;
    p.publish(&format!("{t}/1"), b"a", 1, false).await;
    p.publish(&format!("{t}/2"), b"b", 2, false).await;
    p.publish(&format!("{t}/1"), b"c", 1, false).await;
    let (mut s, ack) = RawClient::connect_with(b.addr(), &persistent(v, &id)).await;
    if v == wire::V311 {
        assert_eq!(
            wire::parse_connack(v, &[0x20, 0x02, 0x01, 0x00]),
            ack,
            "CONNACK must be 20 02 01 00"
        );
    }
    assert!(
        ack.session_present,
        "[MQTT-3.2.2-2] session present must be 1"
    );
    let got: Vec<_> = s
        .receive_and_ack(3)
        .await
        .into_iter()
        .map(|m| {
            (
                m.topic.rsplit('/').next().unwrap_or("").to_string(),
                m.qos,
                m.payload,
            )
        })
        .collect();
    let ones: Vec<_> = got
        .iter()
        .filter(|g| g.0 == "1")
        .map(|g| (g.1, g.2.clone()))
        .collect();
    let twos: Vec<_> = got
        .iter()
        .filter(|g| g.0 == "2")
        .map(|g| (g.1, g.2.clone()))
        .collect();
    assert_eq!(
        ones,
        vec![(1, b"a".to_vec()), (1, b"c".to_vec())],
        "[MQTT-4.6.0-5] order per topic"
    );
    assert_eq!(twos, vec![(2, b"b".to_vec())]);
    s.expect_nothing(QUIET).await;
}

async fn clean_start_discards_stored_session(v: u8) {
    // [MQTT-3.1.2-6] (3.1.1) / [MQTT-3.1.2-4] (5.0): Clean Session/Start 1 discards any
    // existing session: Session Present 0 [MQTT-3.2.2-1], no queued messages, no
    // subscriptions.
    let b = TestBroker::start().await;
    let id = unique("discard");
    let t = unique("dq");
    let (mut s, _) = RawClient::connect_with(b.addr(), &persistent(v, &id)).await;
    s.subscribe(&t, 1).await;
    s.disconnect().await;
    let mut p = RawClient::connect(b.addr(), v, &unique("p")).await;
    p.publish(&t, b"queued", 1, false).await;
    let (mut s, ack) = RawClient::connect_with(b.addr(), &Connect::new(v, &id)).await;
    assert!(!ack.session_present);
    let sentinel = unique("sentinel");
    s.subscribe(&sentinel, 0).await;
    p.publish(&t, b"live", 1, false).await;
    p.publish(&sentinel, b"end", 1, false).await;
    let m = s.recv_publish().await;
    assert_eq!(
        (m.topic.as_str(), m.payload.as_slice()),
        (sentinel.as_str(), &b"end"[..]),
        "old session leaked"
    );
}

async fn unacknowledged_publishes_are_resent_with_dup_in_order(v: u8) {
    // [MQTT-4.4.0-1]: on reconnect with a kept session the server re-sends unacknowledged
    // PUBLISH packets with their original packet ids; [MQTT-3.3.1-1] DUP=1 on re-delivery;
    // [MQTT-4.6.0-1]: re-sent in the order originally sent.
    let b = TestBroker::start().await;
    let id = unique("resend");
    let t = unique("rs");
    let (mut s, _) = RawClient::connect_with(b.addr(), &persistent(v, &id)).await;
    s.subscribe(&t, 1).await;
    let mut p = RawClient::connect(b.addr(), v, &unique("p")).await;
    for i in 0..3u8 {
        p.publish(&t, &[i], 1, false).await;
    }
    let mut first = Vec::new();
    for i in 0..3u8 {
        let m = s.recv_publish().await;
        assert_eq!((m.payload.as_slice(), m.dup), (&[i][..], false));
        first.push(m.pid);
    }
    drop(s);
    let (mut s, ack) = RawClient::connect_with(b.addr(), &persistent(v, &id)).await;
    assert!(ack.session_present);
    for i in 0..3u8 {
        let m = s.recv_publish().await;
        assert_eq!(
            (m.payload.as_slice(), m.dup, m.qos),
            (&[i][..], true, 1),
            "re-sent message {i}"
        );
        assert_eq!(m.pid, first[usize::from(i)], "original packet id");
        s.send(&wire::ack(wire::PUBACK, m.pid.unwrap_or(0))).await;
    }
    s.expect_nothing(QUIET).await;
}

async fn unacknowledged_pubrel_is_resent_after_reconnect(v: u8) {
    // [MQTT-4.4.0-1]: unacknowledged PUBREL packets are re-sent too, same packet id.
    let b = TestBroker::start().await;
    let id = unique("pubrel");
    let t = unique("pr");
    let (mut s, _) = RawClient::connect_with(b.addr(), &persistent(v, &id)).await;
    s.subscribe(&t, 2).await;
    let mut p = RawClient::connect(b.addr(), v, &unique("p")).await;
    p.publish(&t, b"q2", 2, false).await;
    let m = s.recv_publish().await;
    let pid = m.pid.unwrap_or(0);
    s.send(&wire::ack(wire::PUBREC, pid)).await;
    s.expect_ack(wire::PUBREL, pid).await;
    drop(s);
    let (mut s, ack) = RawClient::connect_with(b.addr(), &persistent(v, &id)).await;
    assert!(ack.session_present);
    s.expect_ack(wire::PUBREL, pid).await;
    s.send(&wire::ack(wire::PUBCOMP, pid)).await;
    s.expect_nothing(QUIET).await;
}

#[tokio::test]
async fn session_expiry_zero_ends_session_at_disconnect_v5() {
    // [MQTT-3.1.2-23] (5.0): Session Expiry Interval absent (0) -> the session ends when the
    // network connection closes, even with Clean Start 0.
    let b = TestBroker::start().await;
    let id = unique("exp0");
    let t = unique("e0");
    let (mut s, _) = RawClient::connect_with(b.addr(), &Connect::v5(&id).clean(false)).await;
    s.subscribe(&t, 1).await;
    s.disconnect().await;
    let mut p = RawClient::connect(b.addr(), V5, &unique("p")).await;
    p.publish(&t, b"lost", 1, false).await;
    let (mut s, ack) = RawClient::connect_with(b.addr(), &Connect::v5(&id).clean(false)).await;
    assert!(!ack.session_present);
    s.expect_nothing(QUIET).await;
}

#[tokio::test]
async fn session_expiry_interval_keeps_session_v5() {
    // [MQTT-3.1.2-23]: with a non-zero Session Expiry Interval the session is kept after
    // DISCONNECT and resumed (Session Present 1) with its queued messages.
    let b = TestBroker::start().await;
    let id = unique("exp60");
    let t = unique("e60");
    let c = RawClient::park_v5_session(b.addr(), &id, &t, 60).await;
    let mut p = RawClient::connect(b.addr(), V5, &unique("p")).await;
    p.publish(&t, b"kept", 1, false).await;
    let (mut s, ack) = RawClient::connect_with(b.addr(), &c).await;
    assert!(ack.session_present);
    assert_eq!(s.recv_publish().await.payload, b"kept");
}
