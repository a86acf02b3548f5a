//! Malformed input: each case ends only the offending connection (3.1.1: closed;
//! 5.0: DISCONNECT 0x81 Malformed Packet, or the reason the case names, then closed), and
//! the broker keeps serving other clients.
//!
//! Canopy-specific (skipped in external mode): `oversized_packet_is_rejected` (needs
//! `limits.max_packet_size`).

use canopy_tests::wire::{self, Connect, Props, Publish, V5, prop};
use canopy_tests::{RawClient, Settings, TestBroker, assert_broker_works, unique};

both_versions!(
    bad_remaining_length_is_rejected,
    wrong_reserved_flags_are_rejected,
    qos_3_publish_is_rejected,
    packet_id_zero_is_rejected,
    invalid_utf8_topic_is_rejected,
    null_character_in_topic_is_rejected,
    oversized_packet_is_rejected,
);

/// Connects a fresh client, sends `bytes`, expects the rejection with one of `reasons`
/// (5.0), then checks another client still works.
async fn reject(b: &TestBroker, v: u8, bytes: &[u8], reasons: &[u8]) {
    let mut c = RawClient::connect(b.addr(), v, &unique("bad")).await;
    c.send(bytes).await;
    c.expect_rejected(reasons).await;
    assert_broker_works(b.addr()).await;
}

async fn bad_remaining_length_is_rejected(v: u8) {
    // [MQTT-1.5.5-1]/2.2.3: a variable byte integer of more than four bytes is malformed.
    let b = TestBroker::start().await;
    reject(&b, v, &[0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01, 0x00], &[0x81]).await;
}

async fn wrong_reserved_flags_are_rejected(v: u8) {
    // [MQTT-2.2.2-2] (3.1.1) / 2.1.3 (5.0): invalid fixed-header flags -> malformed;
    // SUBSCRIBE must be 0x82 [MQTT-3.8.1-1], PUBREL 0x62 [MQTT-3.6.1-1], PINGREQ 0xC0.
    let b = TestBroker::start().await;
    let mut sub = wire::subscribe(v, 1, &[("a/b", 0)], Props::new());
    sub[0] = 0x80;
    reject(&b, v, &sub, &[0x81]).await;
    reject(&b, v, &[0x60, 0x02, 0x00, 0x01], &[0x81]).await;
    reject(&b, v, &[0xC1, 0x00], &[0x81]).await;
}

async fn qos_3_publish_is_rejected(v: u8) {
    // [MQTT-3.3.1-4]: a PUBLISH MUST NOT have both QoS bits set.
    let b = TestBroker::start().await;
    let mut p = Publish::new(v, "a/b", b"x").qos(1, 1).encode();
    p[0] = 0x36;
    reject(&b, v, &p, &[0x81]).await;
}

async fn packet_id_zero_is_rejected(v: u8) {
    // [MQTT-2.3.1-1] (3.1.1) / [MQTT-2.2.1-3] (5.0): QoS > 0 PUBLISH and SUBSCRIBE need a
    // non-zero packet id. 5.0 may call it Malformed (0x81) or Protocol Error (0x82).
    let b = TestBroker::start().await;
    reject(
        &b,
        v,
        &Publish::new(v, "a/b", b"x").qos(1, 0).encode(),
        &[0x81, 0x82],
    )
    .await;
    reject(
        &b,
        v,
        &wire::subscribe(v, 0, &[("a/b", 0)], Props::new()),
        &[0x81, 0x82],
    )
    .await;
}

async fn invalid_utf8_topic_is_rejected(v: u8) {
    // [MQTT-1.5.3-1]: ill-formed UTF-8 in a topic name -> malformed, close.
    let b = TestBroker::start().await;
    let mut body = vec![0x00, 0x02, 0xC3, 0x28];
    if v == V5 {
        body.push(0);
    }
    body.extend_from_slice(b"x");
    reject(&b, v, &wire::packet(0x30, &body), &[0x81]).await;
}

async fn null_character_in_topic_is_rejected(v: u8) {
    // [MQTT-1.5.3-2]: a UTF-8 string MUST NOT include U+0000.
    let b = TestBroker::start().await;
    reject(&b, v, &Publish::new(v, "a\0b", b"x").encode(), &[0x81]).await;
}

async fn oversized_packet_is_rejected(v: u8) {
    // 5.0 3.2.2.3.6: the server advertises Maximum Packet Size; a larger packet gets
    // DISCONNECT 0x95 Packet too large (5.0 3.1.2.11) / a closed connection (3.1.1).
    let s = Settings {
        max_packet_size: Some(1024),
        ..Settings::default()
    };
    let Some(b) = TestBroker::start_with(s, "oversized_packet_is_rejected").await else {
        return;
    };
    let (mut c, ack) = RawClient::connect_with(b.addr(), &Connect::new(v, &unique("big"))).await;
    if v == V5 {
        assert_eq!(ack.props.int(prop::MAXIMUM_PACKET_SIZE), Some(1024));
    }
    c.send(&Publish::new(v, "a/b", &[0u8; 2000]).encode()).await;
    c.expect_rejected(&[0x95]).await;
    assert_broker_works(b.addr()).await;
}

#[tokio::test]
async fn unknown_property_identifier_is_malformed_v5() {
    // 5.0 2.2.2.2: an unknown property identifier makes the packet malformed -> 0x81.
    let b = TestBroker::start().await;
    let p = Publish::new(V5, "a/b", b"x").props(Props::new().raw(&[0x7F, 0x00]));
    reject(&b, V5, &p.encode(), &[0x81]).await;
}

#[tokio::test]
async fn property_length_past_packet_end_is_malformed_v5() {
    // 5.0 2.2.2.1: a property length beyond the remaining length is malformed -> 0x81.
    let b = TestBroker::start().await;
    let mut body = wire::string("a/b");
    body.extend([0x20, 0x01]);
    reject(&b, V5, &wire::packet(0x30, &body), &[0x81]).await;
}

#[tokio::test]
async fn duplicated_property_is_rejected_v5() {
    // 5.0 2.2.2.2: a property that may appear once, included twice, is a Protocol Error.
    let b = TestBroker::start().await;
    let props = Props::new()
        .byte(prop::PAYLOAD_FORMAT, 0)
        .byte(prop::PAYLOAD_FORMAT, 0);
    reject(
        &b,
        V5,
        &Publish::new(V5, "a/b", b"x").props(props).encode(),
        &[0x81, 0x82],
    )
    .await;
}
