//! Byte-exact encodings of every packet type for MQTT 5.0, including the short forms
//! of the acknowledgements, DISCONNECT and AUTH.

use bytes::{Bytes, BytesMut};

use super::decode;
use super::tests_util::{LIMITS, dec, enc, exact};
use crate::packet::*;
use crate::reason::ReasonCode;
use crate::topic::{TopicFilter, TopicName};

const V: Protocol = Protocol::V5;

fn name(s: &str) -> TopicName {
    TopicName::new(s).unwrap()
}

#[test]
fn connect_with_session_expiry() {
    let packet = Packet::Connect(Box::new(Connect {
        protocol: Some(V),
        clean_start: true,
        keep_alive: 60,
        client_id: "c".into(),
        properties: ConnectProperties {
            session_expiry_interval: Some(120),
            ..Default::default()
        },
        ..Default::default()
    }));
    #[rustfmt::skip]
    let bytes = [
        0x10, 19,
        0, 4, b'M', b'Q', b'T', b'T', 5, 0x02, 0, 60,
        5, 0x11, 0, 0, 0, 120,
        0, 1, b'c',
    ];
    exact(packet, V, &bytes);
}

#[test]
fn connect_with_will_properties_and_password_without_user_name() {
    // 5.0 allows a password without a user name (section 3.1.2.9).
    let packet = Packet::Connect(Box::new(Connect {
        protocol: Some(V),
        clean_start: true,
        keep_alive: 0,
        client_id: String::new(),
        will: Some(Will {
            topic: name("t"),
            payload: Bytes::new(),
            qos: QoS::AtMostOnce,
            retain: false,
            properties: WillProperties {
                payload_format_indicator: Some(1),
                ..Default::default()
            },
        }),
        username: None,
        password: Some(Bytes::from_static(b"pw")),
        properties: Default::default(),
    }));
    #[rustfmt::skip]
    let bytes = [
        0x10, 25,
        0, 4, b'M', b'Q', b'T', b'T', 5, 0x46, 0, 0,
        0,
        0, 0,
        2, 0x01, 1,
        0, 1, b't', 0, 0,
        0, 2, b'p', b'w',
    ];
    exact(packet, V, &bytes);
}

#[test]
fn connack_with_receive_maximum() {
    let packet = Packet::ConnAck(ConnAck {
        session_present: false,
        reason: ReasonCode::SUCCESS,
        properties: ConnAckProperties {
            receive_maximum: Some(10),
            ..Default::default()
        },
    });
    exact(packet, V, &[0x20, 6, 0, 0, 3, 0x21, 0, 10]);
}

#[test]
fn connack_failure_keeps_the_5_0_reason_code() {
    let packet = Packet::ConnAck(ConnAck {
        reason: ReasonCode::BANNED,
        ..Default::default()
    });
    exact(packet, V, &[0x20, 3, 0, 0x8A, 0]);
}

#[test]
fn publish_with_alias_subscription_id_and_user_property() {
    let packet = Packet::Publish(Publish {
        dup: false,
        qos: QoS::AtLeastOnce,
        retain: false,
        topic: Some(name("a")),
        pkid: Some(7),
        properties: PublishProperties {
            topic_alias: Some(1),
            subscription_identifiers: vec![5],
            user_properties: vec![("k".into(), "v".into())],
            ..Default::default()
        },
        payload: Bytes::from_static(b"p"),
    });
    #[rustfmt::skip]
    let bytes = [
        0x32, 19,
        0, 1, b'a', 0, 7,
        12, 0x23, 0, 1, 0x26, 0, 1, b'k', 0, 1, b'v', 0x0B, 5,
        b'p',
    ];
    exact(packet, V, &bytes);
}

#[test]
fn publish_with_empty_topic_leaves_alias_resolution_to_the_receiver() {
    // [MQTT-3.3.2-12]: an empty topic with a Topic Alias.
    let packet = Packet::Publish(Publish {
        dup: false,
        qos: QoS::AtMostOnce,
        retain: false,
        topic: None,
        pkid: None,
        properties: PublishProperties {
            topic_alias: Some(2),
            ..Default::default()
        },
        payload: Bytes::from_static(b"x"),
    });
    exact(packet, V, &[0x30, 7, 0, 0, 3, 0x23, 0, 2, b'x']);
}

#[test]
fn publish_may_carry_several_subscription_identifiers() {
    #[rustfmt::skip]
    let bytes = [0x30, 8, 0, 1, b'a', 4, 0x0B, 1, 0x0B, 2];
    let Packet::Publish(p) = dec(&bytes, V).unwrap() else {
        panic!("not PUBLISH")
    };
    assert_eq!(p.properties.subscription_identifiers, vec![1, 2]);
}

#[test]
fn puback_short_form_when_success_without_properties() {
    exact(Packet::PubAck(PubAck::new(1)), V, &[0x40, 2, 0, 1]);
}

#[test]
fn puback_reason_without_properties() {
    let ack = PubAck {
        reason: ReasonCode::NO_MATCHING_SUBSCRIBERS,
        ..PubAck::new(1)
    };
    exact(Packet::PubAck(ack), V, &[0x40, 3, 0, 1, 0x10]);
}

#[test]
fn puback_with_reason_string() {
    let ack = PubAck {
        pkid: 1,
        reason: ReasonCode::NOT_AUTHORIZED,
        properties: AckProperties {
            reason_string: Some("r".into()),
            ..Default::default()
        },
    };
    exact(
        Packet::PubAck(ack),
        V,
        &[0x40, 8, 0, 1, 0x87, 4, 0x1F, 0, 1, b'r'],
    );
}

#[test]
fn puback_long_form_with_empty_properties_decodes() {
    assert_eq!(
        dec(&[0x40, 4, 0, 1, 0, 0], V).unwrap(),
        Packet::PubAck(PubAck::new(1))
    );
    assert_eq!(
        dec(&[0x40, 3, 0, 1, 0], V).unwrap(),
        Packet::PubAck(PubAck::new(1))
    );
}

#[test]
fn pubrec_pubrel_pubcomp() {
    let rec = PubAck {
        reason: ReasonCode::UNSPECIFIED_ERROR,
        ..PubAck::new(2)
    };
    exact(Packet::PubRec(rec), V, &[0x50, 3, 0, 2, 0x80]);
    exact(Packet::PubRel(PubAck::new(3)), V, &[0x62, 2, 0, 3]);
    let comp = PubAck {
        reason: ReasonCode::PACKET_IDENTIFIER_NOT_FOUND,
        ..PubAck::new(4)
    };
    exact(Packet::PubComp(comp), V, &[0x70, 3, 0, 4, 0x92]);
}

#[test]
fn subscribe_with_identifier_and_all_options() {
    let packet = Packet::Subscribe(Subscribe {
        pkid: 1,
        filters: vec![(
            TopicFilter::new("a/#").unwrap(),
            SubscriptionOptions {
                qos: QoS::ExactlyOnce,
                no_local: true,
                retain_as_published: true,
                retain_handling: RetainHandling::DoNotSend,
            },
        )],
        properties: SubscribeProperties {
            subscription_identifier: Some(7),
            ..Default::default()
        },
    });
    exact(
        packet,
        V,
        &[0x82, 11, 0, 1, 2, 0x0B, 7, 0, 3, b'a', b'/', b'#', 0x2E],
    );
}

#[test]
fn suback_with_reason_codes() {
    let packet = Packet::SubAck(SubAck {
        pkid: 1,
        reasons: vec![ReasonCode::GRANTED_QOS_2, ReasonCode::TOPIC_FILTER_INVALID],
        properties: Default::default(),
    });
    exact(packet, V, &[0x90, 5, 0, 1, 0, 2, 0x8F]);
}

#[test]
fn unsubscribe_with_user_property() {
    let packet = Packet::Unsubscribe(Unsubscribe {
        pkid: 1,
        filters: vec![TopicFilter::new("a").unwrap()],
        user_properties: vec![("k".into(), "v".into())],
    });
    #[rustfmt::skip]
    let bytes = [0xA2, 13, 0, 1, 7, 0x26, 0, 1, b'k', 0, 1, b'v', 0, 1, b'a'];
    exact(packet, V, &bytes);
}

#[test]
fn unsuback_with_reason_codes() {
    let packet = Packet::UnsubAck(UnsubAck {
        pkid: 1,
        reasons: vec![ReasonCode::NO_SUBSCRIPTION_EXISTED],
        properties: Default::default(),
    });
    exact(packet, V, &[0xB0, 4, 0, 1, 0, 0x11]);
}

#[test]
fn ping_packets_are_unchanged_in_5_0() {
    exact(Packet::PingReq, V, &[0xC0, 0]);
    exact(Packet::PingResp, V, &[0xD0, 0]);
}

#[test]
fn disconnect_short_forms() {
    exact(Packet::Disconnect(Disconnect::default()), V, &[0xE0, 0]);
    let with_will = Disconnect {
        reason: ReasonCode::DISCONNECT_WITH_WILL,
        ..Default::default()
    };
    // With a reason, the (empty) property length is written too, for rumqttc's sake.
    exact(Packet::Disconnect(with_will), V, &[0xE0, 2, 0x04, 0]);
    assert_eq!(
        dec(&[0xE0, 1, 0x04], V).unwrap(),
        Packet::Disconnect(Disconnect {
            reason: ReasonCode::DISCONNECT_WITH_WILL,
            ..Default::default()
        })
    );
    assert_eq!(
        dec(&[0xE0, 2, 0, 0], V).unwrap(),
        Packet::Disconnect(Disconnect::default())
    );
}

#[test]
fn disconnect_with_session_expiry() {
    let d = Disconnect {
        reason: ReasonCode::SESSION_TAKEN_OVER,
        properties: DisconnectProperties {
            session_expiry_interval: Some(0),
            ..Default::default()
        },
    };
    exact(
        Packet::Disconnect(d),
        V,
        &[0xE0, 7, 0x8E, 5, 0x11, 0, 0, 0, 0],
    );
}

#[test]
fn auth_short_and_long_forms() {
    exact(Packet::Auth(Auth::default()), V, &[0xF0, 0]);
    let a = Auth {
        reason: ReasonCode::CONTINUE_AUTHENTICATION,
        properties: AuthProperties {
            authentication_method: Some("SCR".into()),
            ..Default::default()
        },
    };
    exact(
        Packet::Auth(a),
        V,
        &[0xF0, 8, 0x18, 6, 0x15, 0, 3, b'S', b'C', b'R'],
    );
}

#[test]
fn publish_payload_and_binary_properties_are_slices_of_the_read_buffer() {
    #[rustfmt::skip]
    let bytes = [
        0x30, 13,
        0, 1, b'a',
        5, 0x09, 0, 2, b'c', b'd',
        b'p', b'q', b'r', b's',
    ];
    let mut buf = BytesMut::from(&bytes[..]);
    let range = buf.as_ptr() as usize..buf.as_ptr() as usize + buf.len();
    let Packet::Publish(p) = decode(&mut buf, V, &LIMITS).unwrap().unwrap() else {
        panic!("not PUBLISH")
    };
    assert_eq!(&p.payload[..], b"pqrs");
    assert!(
        range.contains(&(p.payload.as_ptr() as usize)),
        "payload was copied"
    );
    let corr = p.properties.correlation_data.unwrap();
    assert!(
        range.contains(&(corr.as_ptr() as usize)),
        "correlation data was copied"
    );
}

#[test]
fn encoding_appends_to_existing_output() {
    let mut out = BytesMut::from(&b"xy"[..]);
    super::encode(&Packet::PingReq, V, &mut out).unwrap();
    assert_eq!(&out[..], &[b'x', b'y', 0xC0, 0]);
    assert_eq!(enc(&Packet::PingResp, V), [0xD0, 0]);
}

#[test]
fn publish_with_shared_properties_encodes_as_the_merged_packet() {
    let shared = PublishProperties {
        payload_format_indicator: Some(1),
        message_expiry_interval: Some(999),
        topic_alias: Some(9),
        response_topic: Some(name("re/ply")),
        correlation_data: Some(Bytes::from_static(b"cd")),
        user_properties: vec![("k".into(), "v".into()), ("k".into(), "w".into())],
        subscription_identifiers: vec![77],
        content_type: Some("text/plain".into()),
    };
    let hop = Publish {
        dup: true,
        qos: QoS::AtLeastOnce,
        retain: true,
        topic: None,
        pkid: Some(5),
        properties: PublishProperties {
            message_expiry_interval: Some(3),
            topic_alias: Some(2),
            subscription_identifiers: vec![4, 300],
            ..PublishProperties::default()
        },
        payload: Bytes::from_static(b"payload"),
    };
    let merged = Publish {
        properties: PublishProperties {
            message_expiry_interval: Some(3),
            topic_alias: Some(2),
            subscription_identifiers: vec![4, 300],
            ..shared.clone()
        },
        ..hop.clone()
    };
    for protocol in [Protocol::V5, Protocol::V311] {
        let mut hop = hop.clone();
        let mut merged = merged.clone();
        if !protocol.is_v5() {
            hop.topic = Some(name("t"));
            merged.topic = Some(name("t"));
        }
        let mut a = BytesMut::new();
        crate::encode_publish_shared(&hop, &shared, protocol, &mut a).unwrap();
        let mut b = BytesMut::new();
        crate::encode(&Packet::Publish(merged), protocol, &mut b).unwrap();
        assert_eq!(a, b, "{protocol:?}");
    }
    let bad = Publish { pkid: None, ..hop };
    assert!(crate::encode_publish_shared(&bad, &shared, V, &mut BytesMut::new()).is_err());
}
