//! Decoding of one complete packet body into a typed [`Packet`].
//!
//! Owns the per-packet layouts and every validation rule that can be checked from the
//! bytes alone (header flags, QoS, packet identifiers, CONNECT flags, subscription
//! options, empty SUBSCRIBE/UNSUBSCRIBE). It must never panic on any input and never
//! copy a payload, password or binary property: those are slices of the frame.

use bytes::Bytes;

use super::properties as props;
use super::reader::Reader;
use crate::error::ProtoError;
use crate::packet::{
    Auth, ConnAck, Connect, Disconnect, Packet, Protocol, PubAck, Publish, QoS, RetainHandling,
    SubAck, Subscribe, SubscriptionOptions, UnsubAck, Unsubscribe, Will,
};
use crate::reason::ReasonCode;
use crate::topic::{TopicError, TopicFilter, TopicName};

/// Checks the packet type and the fixed-header flags [MQTT-2.2.2-1], [MQTT-2.2.2-2],
/// including the PUBLISH QoS and DUP bits [MQTT-3.3.1-4], [MQTT-3.3.1-2].
pub fn check_header(first: u8, protocol: Protocol) -> Result<(), ProtoError> {
    let packet_type = first >> 4;
    let flags = first & 0x0f;
    match packet_type {
        0 => Err(ProtoError::InvalidPacketType(0)),
        15 if !protocol.is_v5() => Err(ProtoError::InvalidPacketType(15)),
        3 => {
            let qos = (flags >> 1) & 0b11;
            if qos == 3 {
                Err(ProtoError::InvalidQos)
            } else if qos == 0 && flags & 0b1000 != 0 {
                Err(ProtoError::Malformed("DUP flag set on a QoS 0 PUBLISH"))
            } else {
                Ok(())
            }
        }
        6 | 8 | 10 if flags != 0b0010 => Err(ProtoError::InvalidHeaderFlags { packet_type, flags }),
        6 | 8 | 10 => Ok(()),
        _ if flags != 0 => Err(ProtoError::InvalidHeaderFlags { packet_type, flags }),
        _ => Ok(()),
    }
}

/// Decodes the body of a packet whose first byte passed [`check_header`].
pub fn packet(first: u8, body: Bytes, protocol: Protocol) -> Result<Packet, ProtoError> {
    let mut r = Reader::new(body);
    let v5 = protocol.is_v5();
    let packet = match first >> 4 {
        1 => Packet::Connect(Box::new(connect(&mut r)?)),
        2 => Packet::ConnAck(connack(&mut r, v5)?),
        3 => Packet::Publish(publish(&mut r, first, v5)?),
        4 => Packet::PubAck(ack(&mut r, v5, "property not allowed in PUBACK")?),
        5 => Packet::PubRec(ack(&mut r, v5, "property not allowed in PUBREC")?),
        6 => Packet::PubRel(ack(&mut r, v5, "property not allowed in PUBREL")?),
        7 => Packet::PubComp(ack(&mut r, v5, "property not allowed in PUBCOMP")?),
        8 => Packet::Subscribe(subscribe(&mut r, v5)?),
        9 => Packet::SubAck(suback(&mut r, v5)?),
        10 => Packet::Unsubscribe(unsubscribe(&mut r, v5)?),
        11 => Packet::UnsubAck(unsuback(&mut r, v5)?),
        12 => Packet::PingReq,
        13 => Packet::PingResp,
        14 => Packet::Disconnect(disconnect(&mut r, v5)?),
        15 if v5 => Packet::Auth(auth(&mut r)?),
        t => return Err(ProtoError::InvalidPacketType(t)),
    };
    r.finish()?;
    Ok(packet)
}

fn connect(r: &mut Reader) -> Result<Connect, ProtoError> {
    let name = r.string()?;
    let level = r.u8()?;
    let protocol = match (name.as_str(), level) {
        ("MQIsdp", 3) => Protocol::V31,
        ("MQTT", 4) => Protocol::V311,
        ("MQTT", 5) => Protocol::V5,
        _ => return Err(ProtoError::UnsupportedProtocol { name, level }),
    };
    let v5 = protocol.is_v5();
    let flags = r.u8()?;
    if flags & 0x01 != 0 {
        return Err(ProtoError::Malformed("CONNECT reserved flag is set"));
    }
    let will_flag = flags & 0x04 != 0;
    let will_qos = (flags >> 3) & 0b11;
    let will_retain = flags & 0x20 != 0;
    let password_flag = flags & 0x40 != 0;
    let username_flag = flags & 0x80 != 0;
    if !will_flag && will_qos != 0 {
        return Err(ProtoError::Malformed("Will QoS set without the Will Flag"));
    }
    if !will_flag && will_retain {
        return Err(ProtoError::Malformed(
            "Will Retain set without the Will Flag",
        ));
    }
    let will_qos = QoS::from_u8(will_qos).ok_or(ProtoError::InvalidQos)?;
    if !v5 && password_flag && !username_flag {
        return Err(ProtoError::Protocol(
            "Password Flag set without the User Name Flag",
        ));
    }
    let keep_alive = r.u16()?;
    let properties = if v5 {
        props::read_connect(r)?
    } else {
        Default::default()
    };
    let client_id = r.string()?;
    let will = if will_flag {
        let properties = if v5 {
            props::read_will(r)?
        } else {
            Default::default()
        };
        let topic = r.with_str(|s| Ok(TopicName::new(s)?))?;
        let payload = r.binary()?;
        Some(Will {
            topic,
            payload,
            qos: will_qos,
            retain: will_retain,
            properties,
        })
    } else {
        None
    };
    let username = if username_flag {
        Some(r.string()?)
    } else {
        None
    };
    let password = if password_flag {
        Some(r.binary()?)
    } else {
        None
    };
    Ok(Connect {
        protocol: Some(protocol),
        clean_start: flags & 0x02 != 0,
        keep_alive,
        client_id,
        will,
        username,
        password,
        properties,
    })
}

fn connack(r: &mut Reader, v5: bool) -> Result<ConnAck, ProtoError> {
    let flags = r.u8()?;
    if flags & 0xfe != 0 {
        return Err(ProtoError::Malformed("CONNACK reserved flags are set"));
    }
    let code = r.u8()?;
    let (reason, properties) = if v5 {
        (ReasonCode(code), props::read_connack(r)?)
    } else {
        let reason = match code {
            0 => ReasonCode::SUCCESS,
            1 => ReasonCode::UNSUPPORTED_PROTOCOL_VERSION,
            2 => ReasonCode::CLIENT_IDENTIFIER_NOT_VALID,
            3 => ReasonCode::SERVER_UNAVAILABLE,
            4 => ReasonCode::BAD_USER_NAME_OR_PASSWORD,
            5 => ReasonCode::NOT_AUTHORIZED,
            _ => return Err(ProtoError::Malformed("unknown CONNACK return code")),
        };
        (reason, Default::default())
    };
    Ok(ConnAck {
        session_present: flags & 1 != 0,
        reason,
        properties,
    })
}

fn publish(r: &mut Reader, first: u8, v5: bool) -> Result<Publish, ProtoError> {
    let qos = QoS::from_u8((first >> 1) & 0b11).ok_or(ProtoError::InvalidQos)?;
    let topic = r.with_str(|s| match s {
        "" if v5 => Ok(None),
        "" => Err(TopicError::InvalidName("empty").into()),
        s => Ok(Some(TopicName::new(s)?)),
    })?;
    let pkid = if qos == QoS::AtMostOnce {
        None
    } else {
        Some(r.pkid()?)
    };
    let properties = if v5 {
        props::read_publish(r)?
    } else {
        Default::default()
    };
    Ok(Publish {
        dup: first & 0b1000 != 0,
        qos,
        retain: first & 1 != 0,
        topic,
        pkid,
        properties,
        payload: r.rest(),
    })
}

/// PUBACK, PUBREC, PUBREL, PUBCOMP: 5.0 may omit the reason code (remaining length 2)
/// and the properties (remaining length 3).
fn ack(r: &mut Reader, v5: bool, not_allowed: &'static str) -> Result<PubAck, ProtoError> {
    let mut ack = PubAck::new(r.pkid()?);
    if v5 && !r.is_empty() {
        ack.reason = ReasonCode(r.u8()?);
        if !r.is_empty() {
            ack.properties = props::read_ack(r, not_allowed)?;
        }
    }
    Ok(ack)
}

fn filter(r: &mut Reader) -> Result<TopicFilter, ProtoError> {
    r.with_str(|s| Ok(TopicFilter::new(s)?))
}

/// Subscription options byte (5.0 section 3.8.3.1; 3.x carries only the QoS).
fn options(b: u8, v5: bool) -> Result<SubscriptionOptions, ProtoError> {
    let reserved = if v5 { 0xc0 } else { 0xfc };
    if b & reserved != 0 {
        return Err(ProtoError::Malformed(
            "reserved subscription option bits are set",
        ));
    }
    let qos = match QoS::from_u8(b & 0b11) {
        Some(q) => q,
        None if v5 => return Err(ProtoError::Protocol("subscription Maximum QoS of 3")),
        None => return Err(ProtoError::InvalidQos),
    };
    let retain_handling = match (b >> 4) & 0b11 {
        0 => RetainHandling::SendAtSubscribe,
        1 => RetainHandling::SendIfNew,
        2 => RetainHandling::DoNotSend,
        _ => return Err(ProtoError::Protocol("Retain Handling of 3")),
    };
    Ok(SubscriptionOptions {
        qos,
        no_local: b & 0x04 != 0,
        retain_as_published: b & 0x08 != 0,
        retain_handling,
    })
}

fn subscribe(r: &mut Reader, v5: bool) -> Result<Subscribe, ProtoError> {
    let pkid = r.pkid()?;
    let properties = if v5 {
        props::read_subscribe(r)?
    } else {
        Default::default()
    };
    let mut filters = Vec::new();
    while !r.is_empty() {
        let f = filter(r)?;
        let o = options(r.u8()?, v5)?;
        if o.no_local && f.starts_with("$share/") {
            return Err(ProtoError::Protocol("No Local on a shared subscription"));
        }
        filters.push((f, o));
    }
    if filters.is_empty() {
        return Err(ProtoError::Protocol("SUBSCRIBE without a topic filter"));
    }
    Ok(Subscribe {
        pkid,
        filters,
        properties,
    })
}

fn suback(r: &mut Reader, v5: bool) -> Result<SubAck, ProtoError> {
    let pkid = r.pkid()?;
    let properties = if v5 {
        props::read_ack(r, "property not allowed in SUBACK")?
    } else {
        Default::default()
    };
    let codes = r.rest();
    if codes.is_empty() {
        return Err(ProtoError::Protocol("SUBACK without a reason code"));
    }
    if !v5 && codes.iter().any(|&c| c > 2 && c != 0x80) {
        return Err(ProtoError::Malformed("invalid SUBACK return code"));
    }
    Ok(SubAck {
        pkid,
        reasons: codes.iter().map(|&c| ReasonCode(c)).collect(),
        properties,
    })
}

fn unsubscribe(r: &mut Reader, v5: bool) -> Result<Unsubscribe, ProtoError> {
    let pkid = r.pkid()?;
    let user_properties = if v5 {
        props::read_unsubscribe(r)?
    } else {
        Vec::new()
    };
    let mut filters = Vec::new();
    while !r.is_empty() {
        filters.push(filter(r)?);
    }
    if filters.is_empty() {
        return Err(ProtoError::Protocol("UNSUBSCRIBE without a topic filter"));
    }
    Ok(Unsubscribe {
        pkid,
        filters,
        user_properties,
    })
}

fn unsuback(r: &mut Reader, v5: bool) -> Result<UnsubAck, ProtoError> {
    let pkid = r.pkid()?;
    if !v5 {
        return Ok(UnsubAck {
            pkid,
            reasons: Vec::new(),
            properties: Default::default(),
        });
    }
    let properties = props::read_ack(r, "property not allowed in UNSUBACK")?;
    let reasons = r.rest().iter().map(|&c| ReasonCode(c)).collect();
    Ok(UnsubAck {
        pkid,
        reasons,
        properties,
    })
}

/// 5.0 DISCONNECT may omit the reason code (remaining length 0) and the properties
/// (remaining length 1); 3.x DISCONNECT is empty.
fn disconnect(r: &mut Reader, v5: bool) -> Result<Disconnect, ProtoError> {
    let mut d = Disconnect::default();
    if v5 && !r.is_empty() {
        d.reason = ReasonCode(r.u8()?);
        if !r.is_empty() {
            d.properties = props::read_disconnect(r)?;
        }
    }
    Ok(d)
}

/// AUTH may omit reason code and properties (remaining length 0).
fn auth(r: &mut Reader) -> Result<Auth, ProtoError> {
    let mut a = Auth::default();
    if !r.is_empty() {
        a.reason = ReasonCode(r.u8()?);
        if !r.is_empty() {
            a.properties = props::read_auth(r)?;
        }
    }
    Ok(a)
}
