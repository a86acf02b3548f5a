//! Reason and return codes: rumqttc's enums turned back into wire values, and wire values
//! turned into the names the MQTT specifications give them, for error messages.
//!
//! Owns naming only; it must never decide what a code means for the command (success or
//! failure thresholds live with the callers).

use rumqttc::v5::mqttbytes::v5 as p5;

/// The MQTT 5.0 name of a reason code (section 2.4), or `Unknown` for unassigned values.
pub fn reason_name(code: u8) -> &'static str {
    match code {
        0x00 => "Success",
        0x01 => "Granted QoS 1",
        0x02 => "Granted QoS 2",
        0x04 => "Disconnect with Will Message",
        0x10 => "No matching subscribers",
        0x11 => "No subscription existed",
        0x80 => "Unspecified error",
        0x81 => "Malformed Packet",
        0x82 => "Protocol Error",
        0x83 => "Implementation specific error",
        0x84 => "Unsupported Protocol Version",
        0x85 => "Client Identifier not valid",
        0x86 => "Bad User Name or Password",
        0x87 => "Not authorized",
        0x88 => "Server unavailable",
        0x89 => "Server busy",
        0x8A => "Banned",
        0x8B => "Server shutting down",
        0x8C => "Bad authentication method",
        0x8D => "Keep Alive timeout",
        0x8E => "Session taken over",
        0x8F => "Topic Filter invalid",
        0x90 => "Topic Name invalid",
        0x91 => "Packet Identifier in use",
        0x92 => "Packet Identifier not found",
        0x93 => "Receive Maximum exceeded",
        0x94 => "Topic Alias invalid",
        0x95 => "Packet too large",
        0x96 => "Message rate too high",
        0x97 => "Quota exceeded",
        0x98 => "Administrative action",
        0x99 => "Payload format invalid",
        0x9A => "Retain not supported",
        0x9B => "QoS not supported",
        0x9C => "Use another server",
        0x9D => "Server moved",
        0x9E => "Shared Subscriptions not supported",
        0x9F => "Connection rate exceeded",
        0xA0 => "Maximum connect time",
        0xA1 => "Subscription Identifiers not supported",
        0xA2 => "Wildcard Subscriptions not supported",
        _ => "Unknown",
    }
}

/// `Name (0xNN)` for a 5.0 reason code.
pub fn describe(code: u8) -> String {
    format!("{} (0x{code:02X})", reason_name(code))
}

/// `Name (0xNN)` for a SUBACK code; on 3.1.1 the only failure is 0x80 `Failure`.
pub fn describe_suback(code: u8, v5: bool) -> String {
    if !v5 && code == 0x80 {
        "Failure (0x80)".to_owned()
    } else {
        describe(code)
    }
}

/// Text for a refused 3.1.1 CONNACK, with the return code of [MQTT-3.2.2-5] table 3.1.
pub fn connack_v4(code: rumqttc::ConnectReturnCode) -> String {
    use rumqttc::ConnectReturnCode as C;
    let (value, name) = match code {
        C::Success => (0, "Connection Accepted"),
        C::RefusedProtocolVersion => (1, "unacceptable protocol version"),
        C::BadClientId => (2, "identifier rejected"),
        C::ServiceUnavailable => (3, "server unavailable"),
        C::BadUserNamePassword => (4, "bad user name or password"),
        C::NotAuthorized => (5, "not authorized"),
    };
    format!("{name} (return code {value})")
}

/// Text for a refused 5.0 CONNACK.
pub fn connack_v5(code: p5::ConnectReturnCode) -> String {
    use p5::ConnectReturnCode as C;
    let value = match code {
        C::Success => 0x00,
        C::RefusedProtocolVersion | C::UnsupportedProtocolVersion => 0x84,
        C::BadClientId | C::ClientIdentifierNotValid => 0x85,
        C::ServiceUnavailable | C::ServerUnavailable => 0x88,
        C::UnspecifiedError => 0x80,
        C::MalformedPacket => 0x81,
        C::ProtocolError => 0x82,
        C::ImplementationSpecificError => 0x83,
        C::BadUserNamePassword => 0x86,
        C::NotAuthorized => 0x87,
        C::ServerBusy => 0x89,
        C::Banned => 0x8A,
        C::BadAuthenticationMethod => 0x8C,
        C::TopicNameInvalid => 0x90,
        C::PacketTooLarge => 0x95,
        C::QuotaExceeded => 0x97,
        C::PayloadFormatInvalid => 0x99,
        C::RetainNotSupported => 0x9A,
        C::QoSNotSupported => 0x9B,
        C::UseAnotherServer => 0x9C,
        C::ServerMoved => 0x9D,
        C::ConnectionRateExceeded => 0x9F,
    };
    describe(value)
}

/// Text for a 5.0 DISCONNECT reason code.
pub fn disconnect_reason(code: p5::DisconnectReasonCode) -> String {
    describe(code as u8)
}

/// Wire value of a 5.0 PUBACK reason.
pub fn puback_reason(reason: &p5::PubAckReason) -> u8 {
    use p5::PubAckReason as R;
    match reason {
        R::Success => 0x00,
        R::NoMatchingSubscribers => 0x10,
        R::UnspecifiedError => 0x80,
        R::ImplementationSpecificError => 0x83,
        R::NotAuthorized => 0x87,
        R::TopicNameInvalid => 0x90,
        R::PacketIdentifierInUse => 0x91,
        R::QuotaExceeded => 0x97,
        R::PayloadFormatInvalid => 0x99,
    }
}

/// Wire value of a 5.0 PUBREC reason.
pub fn pubrec_reason(reason: &p5::PubRecReason) -> u8 {
    use p5::PubRecReason as R;
    match reason {
        R::Success => 0x00,
        R::NoMatchingSubscribers => 0x10,
        R::UnspecifiedError => 0x80,
        R::ImplementationSpecificError => 0x83,
        R::NotAuthorized => 0x87,
        R::TopicNameInvalid => 0x90,
        R::PacketIdentifierInUse => 0x91,
        R::QuotaExceeded => 0x97,
        R::PayloadFormatInvalid => 0x99,
    }
}

/// Wire value of a 5.0 PUBCOMP reason.
pub fn pubcomp_reason(reason: &p5::PubCompReason) -> u8 {
    match reason {
        p5::PubCompReason::Success => 0x00,
        p5::PubCompReason::PacketIdentifierNotFound => 0x92,
    }
}

/// Wire value of a 3.1.1 SUBACK return code.
pub fn suback_v4(code: &rumqttc::SubscribeReasonCode) -> u8 {
    match code {
        rumqttc::SubscribeReasonCode::Success(qos) => *qos as u8,
        rumqttc::SubscribeReasonCode::Failure => 0x80,
    }
}

/// Wire value of a 5.0 SUBACK reason code.
pub fn suback_v5(code: &p5::SubscribeReasonCode) -> u8 {
    use p5::SubscribeReasonCode as R;
    match code {
        R::Success(qos) => *qos as u8,
        R::Failure | R::Unspecified => 0x80,
        R::ImplementationSpecific => 0x83,
        R::NotAuthorized => 0x87,
        R::TopicFilterInvalid => 0x8F,
        R::PkidInUse => 0x91,
        R::QuotaExceeded => 0x97,
        R::SharedSubscriptionsNotSupported => 0x9E,
        R::SubscriptionIdNotSupported => 0xA1,
        R::WildcardSubscriptionsNotSupported => 0xA2,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suback_failures_are_named_per_version() {
        assert_eq!(describe_suback(0x80, false), "Failure (0x80)");
        assert_eq!(describe_suback(0x87, true), "Not authorized (0x87)");
        assert_eq!(
            describe_suback(0xA2, true),
            "Wildcard Subscriptions not supported (0xA2)"
        );
    }

    #[test]
    fn rumqttc_reasons_map_back_to_wire_values() {
        assert_eq!(puback_reason(&p5::PubAckReason::NotAuthorized), 0x87);
        assert_eq!(pubrec_reason(&p5::PubRecReason::QuotaExceeded), 0x97);
        assert_eq!(
            suback_v5(&p5::SubscribeReasonCode::TopicFilterInvalid),
            0x8F
        );
        assert_eq!(
            suback_v4(&rumqttc::SubscribeReasonCode::Success(
                rumqttc::QoS::ExactlyOnce
            )),
            2
        );
        assert_eq!(connack_v5(p5::ConnectReturnCode::Banned), "Banned (0x8A)");
        assert_eq!(
            connack_v4(rumqttc::ConnectReturnCode::BadUserNamePassword),
            "bad user name or password (return code 4)"
        );
    }
}
