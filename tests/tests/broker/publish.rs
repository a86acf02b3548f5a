//! PUBLISH flows: QoS 0/1/2 byte-exact, exactly-once, QoS downgrade, ordering, fan-out,
//! wildcard topic names.

use canopy_tests::wire::{self, Publish, V5, V311};
use canopy_tests::{RawClient, Settings, TestBroker, unique};

both_versions!(
    qos0_is_delivered_byte_exact,
    qos1_flow_is_byte_exact,
    qos2_flow_is_byte_exact,
    qos2_duplicate_before_pubrel_is_delivered_once,
    delivered_qos_is_minimum_of_publish_and_subscription,
    messages_on_one_topic_keep_their_order,
    fan_out_reaches_every_subscriber,
    publish_to_wildcard_topic_is_rejected,
    burst_beyond_receive_maximum_is_slowed_not_dropped,
);

/// The exact bytes of a PUBLISH as the broker should forward it (no properties).
fn forwarded(v: u8, first: u8, topic: &str, pid: Option<u16>, payload: &[u8]) -> Vec<u8> {
    let mut body = wire::string(topic);
    if let Some(id) = pid {
        body.extend(id.to_be_bytes());
    }
    if v == V5 {
        body.push(0);
    }
    body.extend_from_slice(payload);
    wire::packet(first, &body)
}

async fn qos0_is_delivered_byte_exact(v: u8) {
    // [MQTT-3.3.1-12]/[MQTT-4.3.1]: QoS 0, retain 0 on a live subscription, no packet id.
    let b = TestBroker::start().await;
    let t = unique("q0");
    let mut s = RawClient::connect(b.addr(), v, &unique("s")).await;
    s.subscribe(&t, 0).await;
    let mut p = RawClient::connect(b.addr(), v, &unique("p")).await;
    p.send(&Publish::new(v, &t, b"hello").encode()).await;
    s.expect_bytes(&forwarded(v, 0x30, &t, None, b"hello"))
        .await;
}

async fn qos1_flow_is_byte_exact(v: u8) {
    // [MQTT-4.3.2-2]: PUBACK with the PUBLISH's packet id; the subscriber gets QoS 1 with a
    // non-zero packet id [MQTT-2.3.1-1] and its PUBACK is accepted.
    let b = TestBroker::start().await;
    let t = unique("q1");
    let mut s = RawClient::connect(b.addr(), v, &unique("s")).await;
    s.subscribe(&t, 1).await;
    let mut p = RawClient::connect(b.addr(), v, &unique("p")).await;
    p.send(&Publish::new(v, &t, b"one").qos(1, 0x0A0B).encode())
        .await;
    if v == V311 {
        p.expect_bytes(&[0x40, 0x02, 0x0A, 0x0B]).await;
    } else {
        p.expect_ack(wire::PUBACK, 0x0A0B).await;
    }
    let raw = s.recv().await;
    let m = wire::parse_publish(v, &raw);
    let pid = m.pid.expect("packet id");
    assert_eq!(raw, forwarded(v, 0x32, &t, Some(pid), b"one"));
    s.send(&wire::ack(wire::PUBACK, pid)).await;
    s.ping().await;
}

async fn qos2_flow_is_byte_exact(v: u8) {
    // [MQTT-4.3.3-2]/[MQTT-4.3.3-11]: PUBREC, then PUBCOMP for the PUBREL, same packet id;
    // towards the subscriber the server sends PUBREL (flags 0010) after PUBREC [MQTT-3.6.1-1].
    let b = TestBroker::start().await;
    let t = unique("q2");
    let mut s = RawClient::connect(b.addr(), v, &unique("s")).await;
    s.subscribe(&t, 2).await;
    let mut p = RawClient::connect(b.addr(), v, &unique("p")).await;
    p.send(&Publish::new(v, &t, b"two").qos(2, 9).encode())
        .await;
    if v == V311 {
        p.expect_bytes(&[0x50, 0x02, 0x00, 0x09]).await;
        p.send(&[0x62, 0x02, 0x00, 0x09]).await;
        p.expect_bytes(&[0x70, 0x02, 0x00, 0x09]).await;
    } else {
        p.expect_ack(wire::PUBREC, 9).await;
        p.send(&[0x62, 0x02, 0x00, 0x09]).await;
        p.expect_ack(wire::PUBCOMP, 9).await;
    }
    let raw = s.recv().await;
    let m = wire::parse_publish(v, &raw);
    let pid = m.pid.expect("packet id");
    assert_eq!(raw, forwarded(v, 0x34, &t, Some(pid), b"two"));
    s.send(&wire::ack(wire::PUBREC, pid)).await;
    if v == V311 {
        s.expect_bytes(&wire::ack(wire::PUBREL, pid)).await;
    } else {
        s.expect_ack(wire::PUBREL, pid).await;
    }
    s.send(&wire::ack(wire::PUBCOMP, pid)).await;
    s.ping().await;
}

async fn qos2_duplicate_before_pubrel_is_delivered_once(v: u8) {
    // [MQTT-4.3.3-10] (3.1.1 [MQTT-4.3.3-2] method B): a re-sent PUBLISH (DUP=1) with the
    // same packet id before PUBREL is acknowledged again but not delivered again.
    let b = TestBroker::start().await;
    let t = unique("once");
    let mut s = RawClient::connect(b.addr(), v, &unique("s")).await;
    s.subscribe(&t, 0).await;
    let mut p = RawClient::connect(b.addr(), v, &unique("p")).await;
    let publish = Publish::new(v, &t, b"x").qos(2, 5);
    p.send(&publish.encode()).await;
    p.expect_ack(wire::PUBREC, 5).await;
    p.send(&publish.clone().dup().encode()).await;
    p.expect_ack(wire::PUBREC, 5).await;
    p.send(&wire::ack(wire::PUBREL, 5)).await;
    p.expect_ack(wire::PUBCOMP, 5).await;
    p.publish(&t, b"sentinel", 1, false).await;
    assert_eq!(s.recv_publish().await.payload, b"x");
    assert_eq!(
        s.recv_publish().await.payload,
        b"sentinel",
        "duplicate delivered"
    );
}

async fn delivered_qos_is_minimum_of_publish_and_subscription(v: u8) {
    // [MQTT-3.8.4-6] (3.1.1) / 5.0 3.8.4: delivered QoS = min(published, granted).
    let b = TestBroker::start().await;
    for sub_qos in 0..=2u8 {
        let t = unique("minq");
        let mut s = RawClient::connect(b.addr(), v, &unique("s")).await;
        s.subscribe(&t, sub_qos).await;
        let mut p = RawClient::connect(b.addr(), v, &unique("p")).await;
        for pub_qos in 0..=2u8 {
            p.publish(&t, &[pub_qos], pub_qos, false).await;
            let m = s.recv_publish().await;
            assert_eq!(
                (m.payload[0], m.qos),
                (pub_qos, pub_qos.min(sub_qos)),
                "sub {sub_qos}"
            );
            match m.qos {
                1 => s.send(&wire::ack(wire::PUBACK, m.pid.unwrap_or(0))).await,
                2 => {
                    let pid = m.pid.unwrap_or(0);
                    s.send(&wire::ack(wire::PUBREC, pid)).await;
                    s.expect_ack(wire::PUBREL, pid).await;
                    s.send(&wire::ack(wire::PUBCOMP, pid)).await;
                }
                _ => {}
            }
        }
    }
}

async fn messages_on_one_topic_keep_their_order(v: u8) {
    // [MQTT-4.6.0-5]: messages on one topic from one client are forwarded in order.
    let b = TestBroker::start().await;
    let t = unique("order");
    let mut s = RawClient::connect(b.addr(), v, &unique("s")).await;
    s.subscribe(&t, 1).await;
    let mut p = RawClient::connect(b.addr(), v, &unique("p")).await;
    for i in 1..=50u16 {
        p.send(&Publish::new(v, &t, &i.to_be_bytes()).qos(1, i).encode())
            .await;
    }
    for i in 1..=50u16 {
        p.expect_ack(wire::PUBACK, i).await;
    }
    for i in 1..=50u16 {
        let m = s.recv_publish().await;
        assert_eq!(m.payload, i.to_be_bytes(), "out of order");
        s.send(&wire::ack(wire::PUBACK, m.pid.unwrap_or(0))).await;
    }
}

async fn fan_out_reaches_every_subscriber(v: u8) {
    // Every matching subscription gets its own copy (3.3.4): 20 subscribers, 5 messages.
    let b = TestBroker::start().await;
    let t = unique("fan");
    let mut subs = Vec::new();
    for i in 0..20 {
        let mut s = RawClient::connect(b.addr(), v, &unique(&format!("s{i}"))).await;
        s.subscribe(&t, 1).await;
        subs.push(s);
    }
    let mut p = RawClient::connect(b.addr(), v, &unique("p")).await;
    for i in 0..5u8 {
        p.publish(&t, &[i], 1, false).await;
    }
    for s in &mut subs {
        for i in 0..5u8 {
            let m = s.recv_publish().await;
            assert_eq!(m.payload, [i]);
            s.send(&wire::ack(wire::PUBACK, m.pid.unwrap_or(0))).await;
        }
    }
}

async fn publish_to_wildcard_topic_is_rejected(v: u8) {
    // [MQTT-3.3.2-2]: the Topic Name MUST NOT contain wildcards. 3.1.1: close; 5.0:
    // DISCONNECT then close. The specification names no code; Canopy's policy is 0x90
    // Topic Name invalid (Mosquitto sends 0x82), so other codes pass only in external mode.
    let reasons: &[u8] = if canopy_tests::is_external() {
        &[0x81, 0x82, 0x90]
    } else {
        &[0x90]
    };
    let b = TestBroker::start().await;
    for topic in ["a/+/b", "a/#"] {
        let mut p = RawClient::connect(b.addr(), v, &unique("wild")).await;
        p.send(&Publish::new(v, topic, b"x").encode()).await;
        p.expect_rejected(reasons).await;
    }
    canopy_tests::assert_broker_works(b.addr()).await;
}

async fn burst_beyond_receive_maximum_is_slowed_not_dropped(v: u8) {
    // Issue 3's flow control: a publisher with more QoS 1 messages in flight than the
    // broker's Receive Maximum (a 3.1.1 client has no such limit; a 5.0 one breaks it
    // [MQTT-3.3.4-7]) is slowed by the broker reading less from its socket, never
    // acknowledged-and-discarded: every message is acknowledged in order
    // [MQTT-4.6.0-2] and delivered in order [MQTT-4.6.0-5]. Canopy policy.
    let settings = Settings {
        receive_maximum: Some(4),
        ..Settings::default()
    };
    let Some(b) = TestBroker::start_with(settings, "burst_beyond_receive_maximum").await else {
        return;
    };
    let topic = unique("burst");
    let mut sub = RawClient::connect(b.addr(), v, &unique("bs")).await;
    sub.subscribe(&topic, 1).await;
    let mut publisher = RawClient::connect(b.addr(), v, &unique("bp")).await;
    let n: u16 = 300;
    let mut burst = Vec::new();
    for pid in 1..=n {
        burst.extend(
            Publish::new(v, &topic, &pid.to_be_bytes())
                .qos(1, pid)
                .encode(),
        );
    }
    publisher.send(&burst).await;
    for pid in 1..=n {
        let p = publisher.recv().await;
        let a = wire::parse_ack(&p);
        assert_eq!((a.first, a.pid), (wire::PUBACK, pid), "PUBACK order");
        assert!(a.reason < 0x80, "refused: {:#04x}", a.reason);
    }
    let got = sub.receive_and_ack(usize::from(n)).await;
    let order: Vec<u16> = got
        .iter()
        .map(|m| u16::from_be_bytes([m.payload[0], m.payload[1]]))
        .collect();
    assert_eq!(order, (1..=n).collect::<Vec<_>>());
}

/// A 5.0 client with more QoS 2 messages awaiting PUBREL than the broker's Receive Maximum
/// gets DISCONNECT 0x93 (Receive Maximum exceeded, MQTT 5.0 §4.9) — and can read it while
/// it is still writing its burst: the broker stops reading only after the client closed
/// (or a short linger), so the client sees the DISCONNECT and an orderly end of stream,
/// never a reset that would discard it. This is the Paho 5.0 suite's `test_flow_control2`
/// case, with a burst long enough to outlast the broker's decision.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qos2_beyond_receive_maximum_gets_a_readable_disconnect_0x93() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let settings = Settings {
        receive_maximum: Some(4),
        ..Settings::default()
    };
    let Some(b) = TestBroker::start_with(settings, "qos2_beyond_receive_maximum").await else {
        return;
    };
    let mut stream = tokio::net::TcpStream::connect(b.addr()).await.unwrap();
    stream
        .write_all(&wire::Connect::v5(&unique("rm")).encode())
        .await
        .unwrap();
    let (mut rd, mut wr) = stream.into_split();
    let topic = unique("rm");
    let payload = vec![b'x'; 2048];
    // 400 QoS 2 PUBLISHes (about 800 KB), none of them ever released, written in small
    // batches over tens of milliseconds: the client is still writing after the broker's
    // DISCONNECT, as Paho's test is. Every write must succeed (no broken pipe).
    let writer = tokio::spawn(async move {
        for pid in 1..=400u16 {
            let p = Publish::new(V5, &topic, &payload).qos(2, pid).encode();
            wr.write_all(&p).await?;
            if pid % 20 == 0 {
                tokio::time::sleep(std::time::Duration::from_millis(2)).await;
            }
        }
        Ok::<_, std::io::Error>(())
    });
    let mut bytes = Vec::new();
    let ended = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        let mut chunk = [0u8; 4096];
        loop {
            match rd.read(&mut chunk).await {
                Ok(0) => return Ok(()),
                Ok(n) => bytes.extend_from_slice(&chunk[..n]),
                Err(e) => return Err(e),
            }
        }
    })
    .await
    .expect("the broker closes the connection");
    let written = tokio::time::timeout(std::time::Duration::from_secs(10), writer)
        .await
        .expect("the writer finishes")
        .unwrap();
    assert!(written.is_ok(), "every write succeeds: {written:?}");
    let mut packets = Vec::new();
    let mut rest = &bytes[..];
    while !rest.is_empty() {
        let (len, n) = wire::decode_varint(&rest[1..]).expect("a whole packet");
        packets.push(rest[..1 + n + len].to_vec());
        rest = &rest[1 + n + len..];
    }
    let last = packets.last().expect("packets before the end");
    assert_eq!(last[0], 0xE0, "the last packet is a DISCONNECT: {last:?}");
    assert_eq!(wire::parse_disconnect(last).reason, 0x93);
    assert!(ended.is_ok(), "an orderly end of stream, not {ended:?}");
    canopy_tests::assert_broker_works(b.addr()).await;
}
