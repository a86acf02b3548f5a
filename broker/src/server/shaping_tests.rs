//! Aliases, limits, Receive Maximum accounting and outgoing PUBLISH shape.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use canopy_proto::{
    Packet, Protocol, PubAck, Publish, PublishProperties, QoS, ReasonCode, TopicName,
};

use super::*;
use crate::config::Config;

fn publish(topic: Option<&str>, alias: Option<u16>) -> Publish {
    Publish {
        dup: false,
        qos: QoS::AtMostOnce,
        retain: false,
        topic: topic.map(|t| TopicName::new(t).unwrap()),
        pkid: None,
        properties: PublishProperties {
            topic_alias: alias,
            ..Default::default()
        },
        payload: Bytes::from_static(b"x"),
    }
}

#[test]
fn inbound_alias_is_learnt_then_resolved() {
    let limits = Config::default().limits;
    let mut a = Aliases::new(10, 0);
    inbound_publish(publish(Some("a/b"), Some(3)), &mut a, &limits).unwrap();
    let p = inbound_publish(publish(None, Some(3)), &mut a, &limits).unwrap();
    assert_eq!(p.topic.unwrap().as_str(), "a/b");
}

#[test]
fn inbound_alias_out_of_range_or_unknown_is_an_error() {
    // [MQTT-3.3.2-9], [MQTT-3.3.2-10]
    let limits = Config::default().limits;
    let mut a = Aliases::new(2, 0);
    let e = inbound_publish(publish(Some("t"), Some(3)), &mut a, &limits).unwrap_err();
    assert_eq!(e.0, ReasonCode::TOPIC_ALIAS_INVALID);
    let e = inbound_publish(publish(Some("t"), Some(0)), &mut a, &limits).unwrap_err();
    assert_eq!(e.0, ReasonCode::TOPIC_ALIAS_INVALID);
    let e = inbound_publish(publish(None, Some(1)), &mut a, &limits).unwrap_err();
    assert_eq!(e.0, ReasonCode::PROTOCOL_ERROR);
}

#[test]
fn subscription_identifier_in_publish_is_a_protocol_error() {
    // [MQTT-3.3.4-6]
    let limits = Config::default().limits;
    let mut p = publish(Some("t"), None);
    p.properties.subscription_identifiers = vec![1];
    let e = inbound_publish(p, &mut Aliases::default(), &limits).unwrap_err();
    assert_eq!(e.0, ReasonCode::PROTOCOL_ERROR);
}

#[test]
fn qos_and_retain_above_what_the_server_offers_are_refused() {
    // [MQTT-3.2.2-11], [MQTT-3.2.2-14]
    let mut limits = Config::default().limits;
    limits.maximum_qos = 0;
    limits.retain_available = false;
    let mut p = publish(Some("t"), None);
    p.qos = QoS::AtLeastOnce;
    p.pkid = Some(1);
    let e = inbound_publish(p, &mut Aliases::default(), &limits).unwrap_err();
    assert_eq!(e.0, ReasonCode::QOS_NOT_SUPPORTED);
    let mut p = publish(Some("t"), None);
    p.retain = true;
    let e = inbound_publish(p, &mut Aliases::default(), &limits).unwrap_err();
    assert_eq!(e.0, ReasonCode::RETAIN_NOT_SUPPORTED);
}

fn message(expiry: Option<Instant>) -> Arc<Message> {
    Arc::new(Message {
        topic: TopicName::new("x/y").unwrap(),
        qos: QoS::AtLeastOnce,
        retain: false,
        properties: Default::default(),
        payload: Bytes::from_static(b"p"),
        expires_at: expiry,
    })
}

fn delivery(msg: &Arc<Message>, qos: QoS) -> Delivery<'_> {
    Delivery {
        msg,
        qos,
        pkid: (qos != QoS::AtMostOnce).then_some(7),
        retain: false,
        dup: false,
        sub_ids: vec![4],
    }
}

#[test]
fn outbound_alias_replaces_the_topic_from_the_second_message_on() {
    let now = Instant::now();
    let msg = message(None);
    let mut a = Aliases::new(0, 5);
    let first =
        outbound_publish(delivery(&msg, QoS::AtMostOnce), Protocol::V5, &mut a, now).unwrap();
    assert_eq!(first.topic.as_ref().map(|t| t.as_str()), Some("x/y"));
    assert_eq!(first.properties.topic_alias, Some(1));
    let second =
        outbound_publish(delivery(&msg, QoS::AtMostOnce), Protocol::V5, &mut a, now).unwrap();
    assert!(second.topic.is_none());
    assert_eq!(second.properties.topic_alias, Some(1));
    assert_eq!(second.properties.subscription_identifiers, vec![4]);
}

#[test]
fn v311_gets_no_properties() {
    let msg = message(Some(Instant::now() + Duration::from_secs(9)));
    let mut a = Aliases::new(0, 5);
    let p = outbound_publish(
        delivery(&msg, QoS::AtLeastOnce),
        Protocol::V311,
        &mut a,
        Instant::now(),
    )
    .unwrap();
    assert_eq!(p.properties, PublishProperties::default());
    assert_eq!(p.pkid, Some(7));
}

#[test]
fn expired_qos0_is_not_sent_and_qos1_carries_the_time_left() {
    // [MQTT-3.3.2-5], [MQTT-3.3.2-6]
    let now = Instant::now();
    let gone = message(Some(now));
    assert!(
        outbound_publish(
            delivery(&gone, QoS::AtMostOnce),
            Protocol::V5,
            &mut Aliases::default(),
            now
        )
        .is_none()
    );
    let later = message(Some(now + Duration::from_millis(2500)));
    let p = outbound_publish(
        delivery(&later, QoS::AtLeastOnce),
        Protocol::V5,
        &mut Aliases::default(),
        now,
    )
    .unwrap();
    assert_eq!(p.properties.message_expiry_interval, Some(3));
}

#[test]
fn receive_maximum_pauses_until_puback_or_pubrec_is_written() {
    let mut u = Unacked::new(2);
    u.received(1);
    assert!(!u.full());
    u.received(2);
    assert!(u.full());
    u.answered(&Packet::PubRec(PubAck::new(1)));
    assert!(!u.full());
    u.answered(&Packet::PubComp(PubAck::new(2)));
    assert!(
        !u.full(),
        "PUBCOMP is not what frees the slot of 2, PUBACK/PUBREC is"
    );
}

#[test]
fn disconnect_is_for_v5_only_and_reason_strings_need_problem_information() {
    assert!(disconnect(Protocol::V311, ReasonCode::PROTOCOL_ERROR, None, true).is_none());
    let Some(Packet::Disconnect(d)) = disconnect(
        Protocol::V5,
        ReasonCode::PROTOCOL_ERROR,
        Some("why".into()),
        false,
    ) else {
        panic!("no DISCONNECT");
    };
    assert!(d.properties.reason_string.is_none());
}

#[test]
fn a_delivery_copies_none_of_the_messages_own_properties() {
    // Fan-out shares one message: each delivery carries only its per-hop properties,
    // and the message's user properties are written from the shared message.
    let users: Vec<(String, String)> = (0..1000)
        .map(|i| (format!("k{i}"), "v".to_owned()))
        .collect();
    let msg = Arc::new(Message {
        topic: TopicName::new("x/y").unwrap(),
        qos: QoS::AtLeastOnce,
        retain: false,
        properties: PublishProperties {
            user_properties: users.clone(),
            content_type: Some("text/plain".into()),
            ..Default::default()
        }
        .into(),
        payload: Bytes::from_static(b"m"),
        expires_at: None,
    });
    let mut wire = bytes::BytesMut::new();
    for _ in 0..10 {
        let p = outbound_publish(
            delivery(&msg, QoS::AtLeastOnce),
            Protocol::V5,
            &mut Aliases::default(),
            Instant::now(),
        )
        .unwrap();
        assert!(p.properties.user_properties.is_empty());
        assert_eq!(p.properties.content_type, None);
        wire.clear();
        canopy_proto::encode_publish_shared(&p, &msg.properties, Protocol::V5, &mut wire).unwrap();
    }
    assert_eq!(
        Arc::strong_count(&msg),
        1,
        "no delivery kept a copy of the message"
    );
    let limits = canopy_proto::DecodeLimits {
        max_packet_size: 1 << 20,
    };
    let Ok(Some(Packet::Publish(got))) = canopy_proto::decode(&mut wire, Protocol::V5, &limits)
    else {
        panic!("the delivery decodes as a PUBLISH");
    };
    assert_eq!(got.properties.user_properties, users);
    assert_eq!(got.properties.content_type.as_deref(), Some("text/plain"));
    assert_eq!(got.properties.subscription_identifiers, vec![4]);
}
