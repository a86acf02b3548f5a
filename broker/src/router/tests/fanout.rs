//! Fan-out of one QoS 0 message to many subscribers: encoded once per wire form, and the
//! shared bytes are exactly the PUBLISH each subscriber would get on its own.

use bytes::BytesMut;
use canopy_proto::{Packet, Protocol, Publish, PublishProperties, QoS, SubscriptionOptions};

use super::{Conn, Harness};
use crate::outbox::Outgoing;

/// What the connection would write for this delivery on its own: the message's
/// properties (none for 3.x), no alias, no identifiers, no expiry.
fn alone(protocol: Protocol, retain: bool, props: &PublishProperties) -> Vec<u8> {
    let p = Publish {
        dup: false,
        qos: QoS::AtMostOnce,
        retain,
        topic: Some(canopy_proto::TopicName::new("t/x").unwrap()),
        pkid: None,
        properties: if protocol.is_v5() {
            props.clone()
        } else {
            PublishProperties::default()
        },
        payload: bytes::Bytes::from_static(b"hello"),
    };
    let mut out = BytesMut::new();
    canopy_proto::encode(&Packet::Publish(p), protocol, &mut out).unwrap();
    out.to_vec()
}

/// The one run of shared PUBLISHes queued for `id`.
fn run(h: &mut Harness, id: &str) -> Vec<u8> {
    let mut out = h.outgoing(id);
    assert_eq!(out.len(), 1, "{out:?}");
    match out.pop() {
        Some(Outgoing::Run { bytes, count: 1 }) => bytes.to_vec(),
        other => panic!("expected one shared PUBLISH, got {other:?}"),
    }
}

fn rap() -> SubscriptionOptions {
    SubscriptionOptions {
        retain_as_published: true,
        ..SubscriptionOptions::default()
    }
}

#[test]
fn a_qos0_publish_to_many_is_shared_and_each_gets_the_bytes_it_would_get_alone() {
    let mut h = Harness::new(|_| {});
    let v311 = Conn {
        protocol: Protocol::V311,
        ..Conn::default()
    };
    h.connect("old", v311);
    h.connect("new", Conn::default());
    h.connect("rap", Conn::default());
    h.connect("p", Conn::default());
    h.subscribe("old", "t/#", QoS::AtMostOnce);
    // Granted QoS 1, published at QoS 0: delivered at QoS 0 [MQTT-3.8.4-8].
    h.subscribe("new", "t/#", QoS::AtLeastOnce);
    h.subscribe_each("rap", &[("t/#".into(), rap(), None)]);
    for id in ["old", "new", "rap"] {
        h.outgoing(id);
    }
    let props = PublishProperties {
        payload_format_indicator: Some(1),
        content_type: Some("text/plain".into()),
        user_properties: vec![("k".into(), "v".into())],
        ..PublishProperties::default()
    };
    h.publish("p", "t/x", "hello", QoS::AtMostOnce, true, props.clone());
    assert_eq!(run(&mut h, "old"), alone(Protocol::V311, false, &props));
    assert_eq!(run(&mut h, "new"), alone(Protocol::V5, false, &props));
    // Retain As Published: only this subscriber's copy has the RETAIN bit [MQTT-3.3.1-12].
    assert_eq!(run(&mut h, "rap"), alone(Protocol::V5, true, &props));
}

#[test]
fn identifiers_an_expiry_or_a_lone_subscriber_are_shaped_per_delivery() {
    let mut h = Harness::new(|_| {});
    h.connect("plain", Conn::default());
    h.connect("ids", Conn::default());
    h.connect("p", Conn::default());
    h.subscribe("plain", "t/#", QoS::AtMostOnce);
    let options = SubscriptionOptions::default();
    h.subscribe_each("ids", &[("t/#".into(), options, Some(7))]);
    h.outgoing("plain");
    h.outgoing("ids");
    let none = PublishProperties::default();
    h.publish("p", "t/x", "a", QoS::AtMostOnce, false, none.clone());
    assert!(matches!(
        h.outgoing("plain").as_slice(),
        [Outgoing::Run { count: 1, .. }]
    ));
    match h.outgoing("ids").as_slice() {
        [Outgoing::Publish { sub_ids, .. }] => assert_eq!(sub_ids, &[7]),
        other => panic!("{other:?}"),
    }
    // An expiry is counted down per delivery [MQTT-3.3.2-6].
    h.publish("p", "t/x", "b", QoS::AtMostOnce, false, super::expiring(60));
    assert!(matches!(
        h.outgoing("plain").as_slice(),
        [Outgoing::Publish { .. }]
    ));
    h.outgoing("ids");
    // One subscriber: its connection encodes, nothing is shared.
    h.subscribe("plain", "solo/#", QoS::AtMostOnce);
    h.outgoing("plain");
    h.publish("p", "solo/x", "c", QoS::AtMostOnce, false, none);
    assert!(h.outgoing("ids").is_empty());
    assert!(matches!(
        h.outgoing("plain").as_slice(),
        [Outgoing::Publish { .. }]
    ));
}
