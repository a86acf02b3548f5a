//! One test per decoding rule: framing, the size limit and every validation the codec
//! performs, each checking the error and, where it matters, its 5.0 reason code.

use bytes::{Bytes, BytesMut};

use super::tests_util::{LIMITS, dec, dec_err};
use super::{DecodeLimits, decode, encode, encoded_len};
use crate::error::ProtoError;
use crate::packet::*;
use crate::reason::ReasonCode;
use crate::topic::TopicError;

const V3: Protocol = Protocol::V311;
const V5: Protocol = Protocol::V5;

/// A 3.1.1 / 5.0 CONNECT with `flags`, keep alive 0 and client id "c", followed by `rest`.
fn connect(level: u8, flags: u8, rest: &[u8]) -> Vec<u8> {
    let mut body = vec![0, 4, b'M', b'Q', b'T', b'T', level, flags, 0, 0];
    if level == 5 {
        body.push(0);
    }
    body.extend_from_slice(&[0, 1, b'c']);
    body.extend_from_slice(rest);
    let mut out = vec![0x10, body.len() as u8];
    out.extend(body);
    out
}

/// A 5.0 PUBLISH QoS 0 on topic "a" with the given property bytes.
fn publish_v5(props: &[u8]) -> Vec<u8> {
    let mut out = vec![
        0x30,
        (3 + 1 + props.len()) as u8,
        0,
        1,
        b'a',
        props.len() as u8,
    ];
    out.extend_from_slice(props);
    out
}

/// A 5.0 CONNECT with the given CONNECT property bytes.
fn connect_v5_props(props: &[u8]) -> Vec<u8> {
    let mut body = vec![
        0,
        4,
        b'M',
        b'Q',
        b'T',
        b'T',
        5,
        0x02,
        0,
        0,
        props.len() as u8,
    ];
    body.extend_from_slice(props);
    body.extend_from_slice(&[0, 1, b'c']);
    let mut out = vec![0x10, body.len() as u8];
    out.extend(body);
    out
}

#[test]
fn incomplete_fixed_header_needs_more_bytes_and_leaves_buffer_untouched() {
    for partial in [&[][..], &[0x30], &[0x30, 0x80], &[0x30, 0xff, 0xff, 0xff]] {
        let mut buf = BytesMut::from(partial);
        assert_eq!(decode(&mut buf, V3, &LIMITS), Ok(None));
        assert_eq!(&buf[..], partial);
    }
}

#[test]
fn remaining_length_with_a_fifth_byte_is_malformed() {
    let err = dec_err(&[0x30, 0xff, 0xff, 0xff, 0xff], V3);
    assert_eq!(err, ProtoError::MalformedRemainingLength);
    assert_eq!(err.reason_code(), ReasonCode::MALFORMED_PACKET);
}

#[test]
fn oversized_packet_is_rejected_before_its_body_arrives() {
    let limits = DecodeLimits {
        max_packet_size: 100,
    };
    let mut buf = BytesMut::from(&[0x30, 0xff, 0x7f][..]);
    let err = decode(&mut buf, V5, &limits).unwrap_err();
    assert_eq!(
        err,
        ProtoError::PacketTooLarge {
            size: 3 + 16_383,
            max: 100
        }
    );
    assert_eq!(err.reason_code(), ReasonCode::PACKET_TOO_LARGE);
}

#[test]
fn packet_exactly_at_the_limit_is_accepted() {
    let limits = DecodeLimits { max_packet_size: 2 };
    let mut buf = BytesMut::from(&[0xC0, 0][..]);
    assert_eq!(decode(&mut buf, V3, &limits), Ok(Some(Packet::PingReq)));
}

#[test]
fn incomplete_body_needs_more_bytes_and_leaves_buffer_untouched() {
    let partial = [0x30, 5, 0, 1, b'a'];
    let mut buf = BytesMut::from(&partial[..]);
    assert_eq!(decode(&mut buf, V3, &LIMITS), Ok(None));
    assert_eq!(&buf[..], &partial);
}

#[test]
fn decode_takes_one_packet_and_leaves_the_next() {
    let mut buf = BytesMut::from(&[0xC0, 0, 0xD0, 0, 0xE0][..]);
    assert_eq!(decode(&mut buf, V3, &LIMITS), Ok(Some(Packet::PingReq)));
    assert_eq!(decode(&mut buf, V3, &LIMITS), Ok(Some(Packet::PingResp)));
    assert_eq!(decode(&mut buf, V3, &LIMITS), Ok(None));
    assert_eq!(&buf[..], &[0xE0]);
}

#[test]
fn packet_type_0_is_invalid() {
    assert_eq!(dec_err(&[0x00, 0], V5), ProtoError::InvalidPacketType(0));
}

#[test]
fn auth_is_invalid_before_5_0() {
    assert_eq!(dec_err(&[0xF0, 0], V3), ProtoError::InvalidPacketType(15));
    assert_eq!(
        dec_err(&[0xF0, 0], Protocol::V31),
        ProtoError::InvalidPacketType(15)
    );
    assert_eq!(dec(&[0xF0, 0], V5).unwrap(), Packet::Auth(Auth::default()));
}

#[test]
fn pubrel_subscribe_unsubscribe_need_flags_0010() {
    // [MQTT-2.2.2-1], [MQTT-2.2.2-2], [MQTT-3.6.1-1], [MQTT-3.8.1-1], [MQTT-3.10.1-1]
    for first in [0x60u8, 0x80, 0xA0, 0x63, 0x8A] {
        let err = dec_err(&[first, 2, 0, 1], V3);
        assert_eq!(
            err,
            ProtoError::InvalidHeaderFlags {
                packet_type: first >> 4,
                flags: first & 0xf
            }
        );
        assert_eq!(err.reason_code(), ReasonCode::MALFORMED_PACKET);
    }
}

#[test]
fn other_packets_need_zero_flags() {
    // [MQTT-2.2.2-1], [MQTT-2.2.2-2]
    for first in [
        0x11u8, 0x22, 0x42, 0x51, 0x72, 0x92, 0xB2, 0xC1, 0xD8, 0xE2, 0xF1,
    ] {
        let err = dec_err(&[first, 0], V5);
        assert!(
            matches!(err, ProtoError::InvalidHeaderFlags { .. }),
            "{first:#x}: {err:?}"
        );
    }
}

#[test]
fn publish_qos_3_is_invalid() {
    // [MQTT-3.3.1-4]
    let err = dec_err(&[0x36, 5, 0, 1, b'a', 0, 1], V3);
    assert_eq!(err, ProtoError::InvalidQos);
    assert_eq!(err.reason_code(), ReasonCode::MALFORMED_PACKET);
}

#[test]
fn dup_on_qos0_publish_is_malformed() {
    // [MQTT-3.3.1-2]
    assert!(matches!(
        dec_err(&[0x38, 3, 0, 1, b'a'], V3),
        ProtoError::Malformed(_)
    ));
}

#[test]
fn packet_identifier_zero_is_rejected() {
    // [MQTT-2.2.1-3]
    for bytes in [
        &[0x32u8, 5, 0, 1, b'a', 0, 0][..],
        &[0x40, 2, 0, 0],
        &[0x62, 2, 0, 0],
        &[0x82, 6, 0, 0, 0, 1, b'a', 0],
        &[0xA2, 5, 0, 0, 0, 1, b'a'],
    ] {
        let err = dec_err(bytes, V3);
        assert_eq!(err, ProtoError::ZeroPacketId);
        assert_eq!(err.reason_code(), ReasonCode::PROTOCOL_ERROR);
    }
}

#[test]
fn connect_reserved_flag_must_be_zero() {
    // [MQTT-3.1.2-3]
    assert!(matches!(
        dec_err(&connect(4, 0x03, &[]), V3),
        ProtoError::Malformed(_)
    ));
}

#[test]
fn will_qos_without_will_flag_is_malformed() {
    // [MQTT-3.1.2-11]
    assert!(matches!(
        dec_err(&connect(4, 0x0A, &[]), V3),
        ProtoError::Malformed(_)
    ));
}

#[test]
fn will_qos_3_is_invalid() {
    // [MQTT-3.1.2-12]
    let will = [0, 1, b't', 0, 0];
    assert_eq!(
        dec_err(&connect(4, 0x1E, &will), V3),
        ProtoError::InvalidQos
    );
}

#[test]
fn will_retain_without_will_flag_is_malformed() {
    // [MQTT-3.1.2-13]
    assert!(matches!(
        dec_err(&connect(4, 0x22, &[]), V3),
        ProtoError::Malformed(_)
    ));
}

#[test]
fn will_flag_with_qos_and_retain_decodes() {
    let will = [0, 1, b't', 0, 1, b'x'];
    let Packet::Connect(c) = dec(&connect(4, 0x36, &will), V3).unwrap() else {
        panic!()
    };
    let w = c.will.unwrap();
    assert_eq!(
        (w.qos, w.retain, &w.payload[..]),
        (QoS::ExactlyOnce, true, &b"x"[..])
    );
}

#[test]
fn password_without_user_name_is_a_protocol_error_in_3_1_1() {
    // [MQTT-3.1.2-22]
    let err = dec_err(&connect(4, 0x42, &[0, 1, b'p']), V3);
    assert!(matches!(err, ProtoError::Protocol(_)), "{err:?}");
}

#[test]
fn password_without_user_name_is_allowed_in_5_0() {
    let Packet::Connect(c) = dec(&connect(5, 0x42, &[0, 1, b'p']), V3).unwrap() else {
        panic!()
    };
    assert_eq!(
        (c.username, c.password),
        (None, Some(Bytes::from_static(b"p")))
    );
}

#[test]
fn unsupported_protocol_names_and_levels_are_reported() {
    let err = dec_err(&connect(6, 0x02, &[]), V3);
    assert_eq!(
        err,
        ProtoError::UnsupportedProtocol {
            name: "MQTT".into(),
            level: 6
        }
    );
    assert_eq!(err.reason_code(), ReasonCode::UNSUPPORTED_PROTOCOL_VERSION);
    #[rustfmt::skip]
    let mqisdp4 = [0x10, 15, 0, 6, b'M', b'Q', b'I', b's', b'd', b'p', 4, 2, 0, 0, 0, 1, b'c'];
    let err = dec_err(&mqisdp4, V3);
    assert_eq!(
        err,
        ProtoError::UnsupportedProtocol {
            name: "MQIsdp".into(),
            level: 4
        }
    );
}

#[test]
fn invalid_utf8_is_malformed() {
    // [MQTT-1.5.4-1]
    let err = dec_err(&[0x30, 4, 0, 2, 0xC3, 0x28], V3);
    assert_eq!(err, ProtoError::InvalidUtf8);
    assert_eq!(err.reason_code(), ReasonCode::MALFORMED_PACKET);
    // An encoded surrogate (U+D800) is not well-formed UTF-8 either.
    assert_eq!(
        dec_err(&[0x30, 5, 0, 3, 0xED, 0xA0, 0x80], V3),
        ProtoError::InvalidUtf8
    );
}

#[test]
fn null_character_in_a_string_is_malformed() {
    // [MQTT-1.5.4-2]
    assert_eq!(
        dec_err(&[0x30, 4, 0, 2, b'a', 0], V3),
        ProtoError::InvalidUtf8
    );
    assert_eq!(
        dec_err(&connect(4, 0x82, &[0, 2, b'u', 0]), V3),
        ProtoError::InvalidUtf8
    );
}

#[test]
fn wildcards_in_a_publish_topic_are_a_topic_name_error() {
    // [MQTT-3.3.2-2]
    let err = dec_err(&[0x30, 5, 0, 3, b'a', b'/', b'+'], V5);
    assert!(
        matches!(err, ProtoError::Topic(TopicError::InvalidName(_))),
        "{err:?}"
    );
    assert_eq!(err.reason_code(), ReasonCode::TOPIC_NAME_INVALID);
    let err = dec_err(&[0x30, 3, 0, 1, b'#'], V3);
    assert!(
        matches!(err, ProtoError::Topic(TopicError::InvalidName(_))),
        "{err:?}"
    );
}

#[test]
fn empty_publish_topic_is_an_error_in_3_x() {
    // [MQTT-4.7.3-1]
    let err = dec_err(&[0x30, 2, 0, 0], V3);
    assert!(
        matches!(err, ProtoError::Topic(TopicError::InvalidName(_))),
        "{err:?}"
    );
}

#[test]
fn empty_publish_topic_decodes_to_none_in_5_0() {
    let Packet::Publish(p) = dec(&[0x30, 3, 0, 0, 0], V5).unwrap() else {
        panic!()
    };
    assert_eq!(p.topic, None);
}

#[test]
fn invalid_topic_filter_is_a_topic_filter_error() {
    // [MQTT-4.7.1-1]
    let err = dec_err(&[0x82, 7, 0, 1, 0, 2, b'a', b'#', 0], V3);
    assert!(
        matches!(err, ProtoError::Topic(TopicError::InvalidFilter(_))),
        "{err:?}"
    );
    assert_eq!(err.reason_code(), ReasonCode::TOPIC_FILTER_INVALID);
}

#[test]
fn subscribe_without_filters_is_a_protocol_error() {
    // [MQTT-3.8.3-2]
    assert!(matches!(
        dec_err(&[0x82, 2, 0, 1], V3),
        ProtoError::Protocol(_)
    ));
    assert!(matches!(
        dec_err(&[0x82, 3, 0, 1, 0], V5),
        ProtoError::Protocol(_)
    ));
}

#[test]
fn unsubscribe_without_filters_is_a_protocol_error() {
    // [MQTT-3.10.3-2]
    assert!(matches!(
        dec_err(&[0xA2, 2, 0, 1], V3),
        ProtoError::Protocol(_)
    ));
    assert!(matches!(
        dec_err(&[0xA2, 3, 0, 1, 0], V5),
        ProtoError::Protocol(_)
    ));
}

#[test]
fn subscription_option_reserved_bits_are_malformed() {
    // [MQTT-3.8.3-5]
    let err = dec_err(&[0x82, 7, 0, 1, 0, 0, 1, b'a', 0x40], V5);
    assert!(matches!(err, ProtoError::Malformed(_)), "{err:?}");
    assert_eq!(err.reason_code(), ReasonCode::MALFORMED_PACKET);
}

#[test]
fn subscription_options_beyond_qos_are_reserved_in_3_1_1() {
    // [MQTT-3-8.3-4] in 3.1.1: the upper six bits are reserved.
    let err = dec_err(&[0x82, 6, 0, 1, 0, 1, b'a', 0x04], V3);
    assert!(matches!(err, ProtoError::Malformed(_)), "{err:?}");
    assert_eq!(
        dec_err(&[0x82, 6, 0, 1, 0, 1, b'a', 0x03], V3),
        ProtoError::InvalidQos
    );
}

#[test]
fn retain_handling_3_is_a_protocol_error() {
    let err = dec_err(&[0x82, 7, 0, 1, 0, 0, 1, b'a', 0x30], V5);
    assert!(matches!(err, ProtoError::Protocol(_)), "{err:?}");
}

#[test]
fn no_local_on_a_shared_subscription_is_a_protocol_error() {
    // [MQTT-3.8.3-4]
    #[rustfmt::skip]
    let bytes = [0x82, 15, 0, 1, 0, 0, 9, b'$', b's', b'h', b'a', b'r', b'e', b'/', b'g', b'/', 0x04];
    let mut bytes = bytes.to_vec();
    bytes[1] = (bytes.len() - 2) as u8;
    let err = dec_err(&bytes, V5);
    assert!(matches!(err, ProtoError::Protocol(_)), "{err:?}");
}

#[test]
fn unknown_property_identifier_is_malformed() {
    let err = dec_err(&publish_v5(&[0x05, 0]), V5);
    assert!(matches!(err, ProtoError::Malformed(_)), "{err:?}");
}

#[test]
fn property_not_allowed_in_the_packet_is_invalid() {
    // Topic Alias (0x23) in CONNECT, Session Expiry (0x11) in PUBLISH.
    let err = dec_err(&connect_v5_props(&[0x23, 0, 1]), V5);
    assert!(matches!(err, ProtoError::InvalidProperty(_)), "{err:?}");
    let err = dec_err(&publish_v5(&[0x11, 0, 0, 0, 1]), V5);
    assert!(matches!(err, ProtoError::InvalidProperty(_)), "{err:?}");
    assert_eq!(err.reason_code(), ReasonCode::PROTOCOL_ERROR);
}

#[test]
fn duplicate_property_is_a_protocol_error() {
    let err = dec_err(&publish_v5(&[0x02, 0, 0, 0, 1, 0x02, 0, 0, 0, 2]), V5);
    assert!(matches!(err, ProtoError::Protocol(_)), "{err:?}");
    let err = dec_err(&[0x82, 11, 0, 1, 4, 0x0B, 1, 0x0B, 2, 0, 1, b'a', 0], V5);
    assert!(matches!(err, ProtoError::Protocol(_)), "{err:?}");
}

#[test]
fn user_property_may_repeat_and_keeps_its_order() {
    // [MQTT-3.3.2-17]
    #[rustfmt::skip]
    let props = [0x26, 0, 1, b'k', 0, 1, b'2', 0x26, 0, 1, b'k', 0, 1, b'1'];
    let Packet::Publish(p) = dec(&publish_v5(&props), V5).unwrap() else {
        panic!()
    };
    let expected = vec![("k".to_string(), "2".to_string()), ("k".into(), "1".into())];
    assert_eq!(p.properties.user_properties, expected);
}

#[test]
fn subscription_identifier_zero_is_a_protocol_error() {
    let err = dec_err(&publish_v5(&[0x0B, 0]), V5);
    assert!(matches!(err, ProtoError::Protocol(_)), "{err:?}");
    let err = dec_err(&[0x82, 9, 0, 1, 2, 0x0B, 0, 0, 1, b'a', 0], V5);
    assert!(matches!(err, ProtoError::Protocol(_)), "{err:?}");
}

#[test]
fn receive_maximum_zero_is_a_protocol_error() {
    let err = dec_err(&connect_v5_props(&[0x21, 0, 0]), V5);
    assert!(matches!(err, ProtoError::Protocol(_)), "{err:?}");
}

#[test]
fn maximum_packet_size_zero_is_a_protocol_error() {
    let err = dec_err(&connect_v5_props(&[0x27, 0, 0, 0, 0]), V5);
    assert!(matches!(err, ProtoError::Protocol(_)), "{err:?}");
}

#[test]
fn request_response_and_problem_information_must_be_0_or_1() {
    for props in [[0x19, 2], [0x17, 2]] {
        let err = dec_err(&connect_v5_props(&props), V5);
        assert!(matches!(err, ProtoError::Protocol(_)), "{err:?}");
    }
    assert!(dec(&connect_v5_props(&[0x19, 1, 0x17, 0]), V5).is_ok());
}

#[test]
fn payload_format_indicator_must_be_0_or_1() {
    let err = dec_err(&publish_v5(&[0x01, 2]), V5);
    assert!(matches!(err, ProtoError::Protocol(_)), "{err:?}");
}

#[test]
fn property_length_past_the_packet_is_malformed() {
    let err = dec_err(&[0x30, 4, 0, 1, b'a', 9], V5);
    assert!(matches!(err, ProtoError::Malformed(_)), "{err:?}");
    // A property value running past the property length.
    let err = dec_err(&[0x30, 7, 0, 1, b'a', 2, 0x02, 0, 0], V5);
    assert!(matches!(err, ProtoError::Malformed(_)), "{err:?}");
}

#[test]
fn bytes_left_over_at_the_end_are_malformed() {
    for (bytes, protocol) in [
        (&[0xC0u8, 1, 0][..], V3),
        (&[0x40, 3, 0, 1, 0][..], V3),
        (&[0xB0, 3, 0, 1, 0][..], V3),
        (&[0xE0, 1, 0][..], V3),
        (&[0x20, 3, 0, 0, 0][..], V3),
        (&[0x40, 5, 0, 1, 0, 0, 0][..], V5),
    ] {
        let err = dec_err(bytes, protocol);
        assert!(
            matches!(err, ProtoError::Malformed(_)),
            "{bytes:?}: {err:?}"
        );
    }
}

#[test]
fn truncated_fields_are_malformed() {
    for bytes in [
        &[0x30u8, 1, 0][..],
        &[0x40, 1, 0],
        &[0x20, 1, 0],
        &[0x32, 4, 0, 1, b'a', 0],
    ] {
        let err = dec_err(bytes, V3);
        assert!(
            matches!(err, ProtoError::Malformed(_)),
            "{bytes:?}: {err:?}"
        );
    }
}

#[test]
fn connack_reserved_flags_and_unknown_return_codes_are_malformed() {
    // [MQTT-3.2.2-1]
    assert!(matches!(
        dec_err(&[0x20, 2, 2, 0], V3),
        ProtoError::Malformed(_)
    ));
    assert!(matches!(
        dec_err(&[0x20, 2, 0, 6], V3),
        ProtoError::Malformed(_)
    ));
}

#[test]
fn suback_return_codes_are_checked_in_3_1_1() {
    // [MQTT-3.9.3-2]
    assert!(matches!(
        dec_err(&[0x90, 3, 0, 1, 3], V3),
        ProtoError::Malformed(_)
    ));
}

#[test]
fn encoding_a_string_longer_than_65535_bytes_fails() {
    let d = Disconnect {
        reason: ReasonCode::SUCCESS,
        properties: DisconnectProperties {
            reason_string: Some("x".repeat(70_000)),
            ..Default::default()
        },
    };
    let mut out = BytesMut::new();
    assert!(encode(&Packet::Disconnect(d), V5, &mut out).is_err());
    assert!(out.is_empty());
}

#[test]
fn remaining_length_above_the_varint_maximum_cannot_be_encoded() {
    assert!(super::check_remaining(super::varint::MAX).is_ok());
    let err = super::check_remaining(super::varint::MAX + 1).unwrap_err();
    assert!(matches!(err, ProtoError::PacketTooLarge { .. }));
}

#[test]
fn encoding_refuses_what_the_decoder_would_reject() {
    let publish = |qos, pkid, topic: Option<&str>| {
        Packet::Publish(Publish {
            dup: false,
            qos,
            retain: false,
            topic: topic.map(|t| crate::topic::TopicName::new(t).unwrap()),
            pkid,
            properties: Default::default(),
            payload: Bytes::new(),
        })
    };
    let mut out = BytesMut::new();
    let cases = [
        (publish(QoS::AtLeastOnce, None, Some("a")), V5),
        (publish(QoS::AtMostOnce, Some(1), Some("a")), V5),
        (publish(QoS::AtLeastOnce, Some(0), Some("a")), V5),
        (publish(QoS::AtMostOnce, None, None), V3),
        (Packet::PubAck(PubAck::new(0)), V5),
        (Packet::Auth(Auth::default()), V3),
    ];
    for (packet, protocol) in cases {
        assert!(encode(&packet, protocol, &mut out).is_err(), "{packet:?}");
    }
    assert!(out.is_empty());
    assert_eq!(encoded_len(&Packet::PingReq, V3), 2);
}
