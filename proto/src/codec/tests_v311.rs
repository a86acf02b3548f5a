//! Byte-exact encodings of every packet type for MQTT 3.1.1 (and the 3.1 CONNECT).

use bytes::Bytes;

use super::tests_util::{dec, enc, exact};
use crate::packet::*;
use crate::reason::ReasonCode;
use crate::topic::{TopicFilter, TopicName};

const V: Protocol = Protocol::V311;

fn name(s: &str) -> TopicName {
    TopicName::new(s).unwrap()
}

fn filter(s: &str) -> TopicFilter {
    TopicFilter::new(s).unwrap()
}

#[test]
fn connect_with_will_user_and_password() {
    let packet = Packet::Connect(Box::new(Connect {
        protocol: Some(V),
        clean_start: true,
        keep_alive: 60,
        client_id: "c1".into(),
        will: Some(Will {
            topic: name("w"),
            payload: Bytes::from_static(b"bye"),
            qos: QoS::AtLeastOnce,
            retain: true,
            properties: Default::default(),
        }),
        username: Some("u".into()),
        password: Some(Bytes::from_static(b"p")),
        properties: Default::default(),
    }));
    #[rustfmt::skip]
    let bytes = [
        0x10, 28,
        0, 4, b'M', b'Q', b'T', b'T', 4, 0xEE, 0, 60,
        0, 2, b'c', b'1',
        0, 1, b'w', 0, 3, b'b', b'y', b'e',
        0, 1, b'u',
        0, 1, b'p',
    ];
    exact(packet, V, &bytes);
}

#[test]
fn v31_connect_uses_mqisdp_level_3() {
    let packet = Packet::Connect(Box::new(Connect {
        protocol: Some(Protocol::V31),
        clean_start: true,
        keep_alive: 10,
        client_id: "a".into(),
        ..Default::default()
    }));
    #[rustfmt::skip]
    let bytes = [
        0x10, 15,
        0, 6, b'M', b'Q', b'I', b's', b'd', b'p', 3, 0x02, 0, 10,
        0, 1, b'a',
    ];
    exact(packet, Protocol::V31, &bytes);
}

#[test]
fn connect_protocol_comes_from_the_packet_not_the_connection() {
    #[rustfmt::skip]
    let bytes = [0x10, 13, 0, 4, b'M', b'Q', b'T', b'T', 5, 0x02, 0, 0, 0, 0, 0];
    let Packet::Connect(c) = dec(&bytes, Protocol::V311).unwrap() else {
        panic!("not CONNECT")
    };
    assert_eq!(c.protocol, Some(Protocol::V5));
}

#[test]
fn connack_session_present_success() {
    let packet = Packet::ConnAck(ConnAck {
        session_present: true,
        ..Default::default()
    });
    exact(packet, V, &[0x20, 2, 1, 0]);
}

#[test]
fn connack_return_codes_map_to_reason_codes() {
    let expected = [
        ReasonCode::SUCCESS,
        ReasonCode::UNSUPPORTED_PROTOCOL_VERSION,
        ReasonCode::CLIENT_IDENTIFIER_NOT_VALID,
        ReasonCode::SERVER_UNAVAILABLE,
        ReasonCode::BAD_USER_NAME_OR_PASSWORD,
        ReasonCode::NOT_AUTHORIZED,
    ];
    for (code, reason) in expected.into_iter().enumerate() {
        let packet = Packet::ConnAck(ConnAck {
            reason,
            ..Default::default()
        });
        exact(packet, V, &[0x20, 2, 0, code as u8]);
    }
}

#[test]
fn connack_encodes_5_0_reasons_as_nearest_return_code() {
    let packet = Packet::ConnAck(ConnAck {
        reason: ReasonCode::BANNED,
        ..Default::default()
    });
    assert_eq!(enc(&packet, V), [0x20, 2, 0, 5]);
    let packet = Packet::ConnAck(ConnAck {
        reason: ReasonCode::SERVER_BUSY,
        ..Default::default()
    });
    assert_eq!(enc(&packet, V), [0x20, 2, 0, 3]);
}

#[test]
fn publish_qos0() {
    let packet = Packet::Publish(Publish {
        dup: false,
        qos: QoS::AtMostOnce,
        retain: false,
        topic: Some(name("a/b")),
        pkid: None,
        properties: Default::default(),
        payload: Bytes::from_static(b"hi"),
    });
    exact(packet, V, &[0x30, 7, 0, 3, b'a', b'/', b'b', b'h', b'i']);
}

#[test]
fn publish_qos1_dup_retain() {
    let packet = Packet::Publish(Publish {
        dup: true,
        qos: QoS::AtLeastOnce,
        retain: true,
        topic: Some(name("a")),
        pkid: Some(10),
        properties: Default::default(),
        payload: Bytes::from_static(b"x"),
    });
    exact(packet, V, &[0x3B, 6, 0, 1, b'a', 0, 10, b'x']);
}

#[test]
fn publish_qos2_empty_payload() {
    let packet = Packet::Publish(Publish {
        dup: false,
        qos: QoS::ExactlyOnce,
        retain: false,
        topic: Some(name("t")),
        pkid: Some(0x0102),
        properties: Default::default(),
        payload: Bytes::new(),
    });
    exact(packet, V, &[0x34, 5, 0, 1, b't', 1, 2]);
}

#[test]
fn puback_pubrec_pubrel_pubcomp() {
    exact(Packet::PubAck(PubAck::new(10)), V, &[0x40, 2, 0, 10]);
    exact(Packet::PubRec(PubAck::new(11)), V, &[0x50, 2, 0, 11]);
    exact(Packet::PubRel(PubAck::new(12)), V, &[0x62, 2, 0, 12]);
    exact(Packet::PubComp(PubAck::new(13)), V, &[0x70, 2, 0, 13]);
}

#[test]
fn acks_drop_5_0_reason_codes_in_3_1_1() {
    let ack = PubAck {
        pkid: 1,
        reason: ReasonCode::NO_MATCHING_SUBSCRIBERS,
        properties: AckProperties {
            reason_string: Some("r".into()),
            ..Default::default()
        },
    };
    assert_eq!(enc(&Packet::PubAck(ack), V), [0x40, 2, 0, 1]);
}

#[test]
fn subscribe_two_filters() {
    let packet = Packet::Subscribe(Subscribe {
        pkid: 10,
        filters: vec![
            (
                filter("a/+"),
                SubscriptionOptions {
                    qos: QoS::AtLeastOnce,
                    ..Default::default()
                },
            ),
            (
                filter("#"),
                SubscriptionOptions {
                    qos: QoS::ExactlyOnce,
                    ..Default::default()
                },
            ),
        ],
        properties: Default::default(),
    });
    #[rustfmt::skip]
    let bytes = [0x82, 12, 0, 10, 0, 3, b'a', b'/', b'+', 1, 0, 1, b'#', 2];
    exact(packet, V, &bytes);
}

#[test]
fn suback_with_failure_0x80() {
    let packet = Packet::SubAck(SubAck {
        pkid: 10,
        reasons: vec![ReasonCode::GRANTED_QOS_1, ReasonCode::UNSPECIFIED_ERROR],
        properties: Default::default(),
    });
    exact(packet, V, &[0x90, 4, 0, 10, 1, 0x80]);
}

#[test]
fn suback_maps_every_5_0_failure_to_0x80() {
    let packet = Packet::SubAck(SubAck {
        pkid: 1,
        reasons: vec![ReasonCode::NOT_AUTHORIZED, ReasonCode::GRANTED_QOS_2],
        properties: Default::default(),
    });
    assert_eq!(enc(&packet, V), [0x90, 4, 0, 1, 0x80, 2]);
}

#[test]
fn unsubscribe_one_filter() {
    let packet = Packet::Unsubscribe(Unsubscribe {
        pkid: 10,
        filters: vec![filter("a/b")],
        user_properties: Vec::new(),
    });
    exact(packet, V, &[0xA2, 7, 0, 10, 0, 3, b'a', b'/', b'b']);
}

#[test]
fn unsuback_has_no_payload_in_3_1_1() {
    let packet = Packet::UnsubAck(UnsubAck {
        pkid: 10,
        reasons: vec![],
        properties: Default::default(),
    });
    exact(packet, V, &[0xB0, 2, 0, 10]);
    let with_reasons = Packet::UnsubAck(UnsubAck {
        pkid: 10,
        reasons: vec![ReasonCode::NO_SUBSCRIPTION_EXISTED],
        properties: Default::default(),
    });
    assert_eq!(enc(&with_reasons, V), [0xB0, 2, 0, 10]);
}

#[test]
fn pingreq_pingresp_disconnect() {
    exact(Packet::PingReq, V, &[0xC0, 0]);
    exact(Packet::PingResp, V, &[0xD0, 0]);
    exact(Packet::Disconnect(Disconnect::default()), V, &[0xE0, 0]);
}

#[test]
fn disconnect_drops_5_0_reason_in_3_1_1() {
    let d = Disconnect {
        reason: ReasonCode::DISCONNECT_WITH_WILL,
        ..Default::default()
    };
    assert_eq!(enc(&Packet::Disconnect(d), V), [0xE0, 0]);
}

#[test]
fn long_remaining_length_uses_two_bytes() {
    let packet = Packet::Publish(Publish {
        dup: false,
        qos: QoS::AtMostOnce,
        retain: false,
        topic: Some(name("t")),
        pkid: None,
        properties: Default::default(),
        payload: Bytes::from(vec![7u8; 200]),
    });
    let bytes = enc(&packet, V);
    assert_eq!(&bytes[..5], &[0x30, 0xCB, 0x01, 0, 1]);
    assert_eq!(bytes.len(), 3 + 203);
    assert_eq!(dec(&bytes, V).unwrap(), packet);
}
