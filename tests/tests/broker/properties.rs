//! MQTT 5.0 properties: pass-through (user properties, request/response, content type,
//! payload format), message expiry, topic aliases, subscription identifiers, no-local,
//! receive maximum and the client's maximum packet size.

use canopy_tests::wire::{self, Connect, Props, Publish, V5, prop, sub_opts};
use canopy_tests::{QUIET, RawClient, Settings, TestBroker, unique};

/// A subscriber on `t` (QoS 1) and a publisher, both 5.0.
async fn pair(b: &TestBroker, t: &str) -> (RawClient, RawClient) {
    let mut s = RawClient::connect(b.addr(), V5, &unique("s")).await;
    s.subscribe(t, 1).await;
    let p = RawClient::connect(b.addr(), V5, &unique("p")).await;
    (s, p)
}

#[tokio::test]
async fn user_properties_pass_through_in_order() {
    // [MQTT-3.3.2-17]/[MQTT-3.3.2-18]: user properties are forwarded unaltered, in order,
    // repeated keys included.
    let b = TestBroker::start().await;
    let t = unique("up");
    let (mut s, mut p) = pair(&b, &t).await;
    let props = Props::new()
        .user("a", "1")
        .user("b", "2")
        .user("a", "3")
        .user("", "");
    p.publish_packet(&Publish::new(V5, &t, b"x").qos(1, 1).props(props))
        .await;
    let m = s.recv_publish().await;
    let want: Vec<(String, String)> = [("a", "1"), ("b", "2"), ("a", "3"), ("", "")]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    assert_eq!(m.props.user(), want);
}

#[tokio::test]
async fn response_topic_and_correlation_data_pass_through() {
    // [MQTT-3.3.2-15]/[MQTT-3.3.2-16]: Response Topic and Correlation Data are forwarded
    // unaltered.
    let b = TestBroker::start().await;
    let t = unique("req");
    let (mut s, mut p) = pair(&b, &t).await;
    let props = Props::new()
        .string(prop::RESPONSE_TOPIC, "reply/here")
        .binary(prop::CORRELATION_DATA, &[0, 1, 0xFF]);
    p.publish_packet(&Publish::new(V5, &t, b"x").props(props))
        .await;
    let m = s.recv_publish().await;
    assert_eq!(m.props.str(prop::RESPONSE_TOPIC), Some("reply/here"));
    assert_eq!(
        m.props.bin(prop::CORRELATION_DATA),
        Some(&[0u8, 1, 0xFF][..])
    );
}

#[tokio::test]
async fn content_type_and_payload_format_pass_through() {
    // [MQTT-3.3.2-20] Content Type and [MQTT-3.3.2-4] Payload Format Indicator are
    // forwarded unaltered.
    let b = TestBroker::start().await;
    let t = unique("ct");
    let (mut s, mut p) = pair(&b, &t).await;
    let props = Props::new()
        .byte(prop::PAYLOAD_FORMAT, 1)
        .string(prop::CONTENT_TYPE, "application/json");
    p.publish_packet(&Publish::new(V5, &t, b"{}").props(props))
        .await;
    let m = s.recv_publish().await;
    assert_eq!(m.props.int(prop::PAYLOAD_FORMAT), Some(1));
    assert_eq!(m.props.str(prop::CONTENT_TYPE), Some("application/json"));
    assert_eq!(m.payload, b"{}");
}

/// Connects a 5.0 publisher and returns it with the server's Topic Alias Maximum.
async fn alias_publisher(b: &TestBroker) -> (RawClient, u16) {
    let (p, ack) = RawClient::connect_with(b.addr(), &Connect::v5(&unique("alias"))).await;
    let max = ack.props.int(prop::TOPIC_ALIAS_MAXIMUM).unwrap_or(0) as u16;
    assert!(
        max >= 1,
        "broker must advertise Topic Alias Maximum >= 1 for this test"
    );
    (p, max)
}

#[tokio::test]
async fn inbound_topic_alias_maps_empty_topic_to_registered_name() {
    // [MQTT-3.3.2-12]: a PUBLISH with a Topic Alias and a topic name sets the mapping; one
    // with a zero-length topic name and the alias uses it.
    let b = TestBroker::start_prefer(Settings {
        topic_alias_maximum: Some(10),
        ..Settings::default()
    })
    .await;
    let t = unique("ta");
    let mut s = RawClient::connect(b.addr(), V5, &unique("s")).await;
    s.subscribe(&t, 0).await;
    let (mut p, _) = alias_publisher(&b).await;
    let alias = Props::new().u16(prop::TOPIC_ALIAS, 1);
    p.publish_packet(&Publish::new(V5, &t, b"1").props(alias.clone()))
        .await;
    p.publish_packet(&Publish::new(V5, "", b"2").props(alias))
        .await;
    for want in [b"1", b"2"] {
        let m = s.recv_publish().await;
        assert_eq!(
            (m.topic.as_str(), m.payload.as_slice()),
            (t.as_str(), &want[..])
        );
        assert_eq!(
            m.props.get(prop::TOPIC_ALIAS),
            None,
            "client did not allow outbound aliases"
        );
    }
}

#[tokio::test]
async fn topic_alias_above_maximum_gets_disconnect_0x94() {
    // [MQTT-3.3.2-9]/[MQTT-3.3.2-10]: alias 0 or above Topic Alias Maximum -> DISCONNECT
    // 0x94 Topic Alias invalid.
    let b = TestBroker::start_prefer(Settings {
        topic_alias_maximum: Some(10),
        ..Settings::default()
    })
    .await;
    let (mut p, max) = alias_publisher(&b).await;
    p.send(
        &Publish::new(V5, "a/b", b"x")
            .props(Props::new().u16(prop::TOPIC_ALIAS, max + 1))
            .encode(),
    )
    .await;
    p.expect_disconnect(0x94).await;
    let (mut p, _) = alias_publisher(&b).await;
    p.send(
        &Publish::new(V5, "a/b", b"x")
            .props(Props::new().u16(prop::TOPIC_ALIAS, 0))
            .encode(),
    )
    .await;
    p.expect_disconnect(0x94).await;
    canopy_tests::assert_broker_works(b.addr()).await;
}

#[tokio::test]
async fn unknown_topic_alias_with_empty_topic_is_protocol_error() {
    // 5.0 3.3.4: an empty topic name with an alias that has no mapping is a Protocol Error.
    let b = TestBroker::start_prefer(Settings {
        topic_alias_maximum: Some(10),
        ..Settings::default()
    })
    .await;
    let (mut p, _) = alias_publisher(&b).await;
    p.send(
        &Publish::new(V5, "", b"x")
            .props(Props::new().u16(prop::TOPIC_ALIAS, 1))
            .encode(),
    )
    .await;
    p.expect_rejected(&[0x82, 0x94]).await;
}

#[tokio::test]
async fn subscription_identifiers_are_attached_to_deliveries() {
    // [MQTT-3.3.4-3]: the PUBLISH carries the Subscription Identifier of the matching
    // subscription; with two matching subscriptions delivered once, both identifiers
    // [MQTT-3.3.4-4]/[MQTT-3.3.4-5].
    let b = TestBroker::start().await;
    let r = unique("sid");
    let mut s = RawClient::connect(b.addr(), V5, &unique("s")).await;
    s.subscribe_opts(
        1,
        &[(&format!("{r}/a"), 1)],
        Props::new().varint(prop::SUBSCRIPTION_ID, 7),
    )
    .await;
    s.subscribe_opts(
        2,
        &[(&format!("{r}/+"), 1)],
        Props::new().varint(prop::SUBSCRIPTION_ID, 300),
    )
    .await;
    s.subscribe_opts(3, &[(&format!("{r}/b"), 1)], Props::new())
        .await;
    let mut p = RawClient::connect(b.addr(), V5, &unique("p")).await;
    p.publish(&format!("{r}/a"), b"a", 0, false).await;
    let got = s.collect_publishes(QUIET).await;
    let mut ids: Vec<usize> = got
        .iter()
        .flat_map(|m| m.props.subscription_ids())
        .collect();
    ids.sort_unstable();
    assert_eq!(ids, vec![7, 300], "{got:?}");
    if got.len() == 2 {
        assert!(
            got.iter().all(|m| m.props.subscription_ids().len() == 1),
            "{got:?}"
        );
    }
    p.publish(&format!("{r}/c"), b"c", 0, false).await;
    let m = s.recv_publish().await;
    assert_eq!(m.props.subscription_ids(), vec![300]);
}

#[tokio::test]
async fn no_local_suppresses_own_messages() {
    // [MQTT-3.8.3-3]: with No Local the server MUST NOT forward the client's own messages.
    let b = TestBroker::start().await;
    let t = unique("nl");
    let sentinel = unique("nl-end");
    let mut c = RawClient::connect(b.addr(), V5, &unique("c")).await;
    c.subscribe_opts(
        1,
        &[(&t, sub_opts(1, true, false, 0)), (&sentinel, 0)],
        Props::new(),
    )
    .await;
    c.publish(&t, b"mine", 1, false).await;
    let mut other = RawClient::connect(b.addr(), V5, &unique("o")).await;
    other.publish(&t, b"theirs", 1, false).await;
    let m = c.recv_publish().await;
    assert_eq!(m.payload, b"theirs", "own message was forwarded");
}

#[tokio::test]
async fn receive_maximum_limits_unacknowledged_deliveries() {
    // [MQTT-3.3.4-9]: the server MUST NOT send more unacknowledged QoS 1/2 PUBLISH packets
    // than the client's Receive Maximum; acknowledging one frees a slot.
    let b = TestBroker::start().await;
    let t = unique("rm");
    let c = Connect::v5(&unique("s")).props(Props::new().u16(prop::RECEIVE_MAXIMUM, 2));
    let (mut s, _) = RawClient::connect_with(b.addr(), &c).await;
    s.subscribe(&t, 1).await;
    let mut p = RawClient::connect(b.addr(), V5, &unique("p")).await;
    for i in 0..5u8 {
        p.publish(&t, &[i], 1, false).await;
    }
    let a = s.recv_publish().await;
    let b1 = s.recv_publish().await;
    assert_eq!((a.payload[0], b1.payload[0]), (0, 1));
    s.expect_nothing(QUIET).await;
    s.send(&wire::ack(wire::PUBACK, a.pid.unwrap_or(0))).await;
    let c3 = s.recv_publish().await;
    assert_eq!(c3.payload, [2]);
    s.expect_nothing(QUIET).await;
    s.send(&wire::ack(wire::PUBACK, b1.pid.unwrap_or(0))).await;
    s.send(&wire::ack(wire::PUBACK, c3.pid.unwrap_or(0))).await;
    for i in 3..5u8 {
        let m = s.recv_publish().await;
        assert_eq!(m.payload, [i]);
        s.send(&wire::ack(wire::PUBACK, m.pid.unwrap_or(0))).await;
    }
}

#[tokio::test]
async fn packets_above_client_maximum_packet_size_are_dropped() {
    // [MQTT-3.1.2-24]/[MQTT-3.1.2-25]: the server MUST NOT send a packet larger than the
    // client's Maximum Packet Size; it discards it and carries on.
    let b = TestBroker::start().await;
    let t = unique("mps");
    let c = Connect::v5(&unique("s")).props(Props::new().u32(prop::MAXIMUM_PACKET_SIZE, 128));
    let (mut s, _) = RawClient::connect_with(b.addr(), &c).await;
    s.subscribe(&t, 1).await;
    let mut p = RawClient::connect(b.addr(), V5, &unique("p")).await;
    p.publish(&t, &[b'x'; 500], 1, false).await;
    p.publish(&t, b"small", 1, false).await;
    let raw = s.recv().await;
    assert!(
        raw.len() <= 128,
        "packet of {} bytes exceeds 128",
        raw.len()
    );
    let m = wire::parse_publish(V5, &raw);
    assert_eq!(m.payload, b"small");
    s.send(&wire::ack(wire::PUBACK, m.pid.unwrap_or(0))).await;
    s.ping().await;
}
