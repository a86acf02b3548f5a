//! Protocol errors raised while decoding or validating packets.
//!
//! Every error knows the MQTT 5.0 reason code that a DISCONNECT (or CONNACK) must
//! carry for it; 3.1.1 connections are simply closed.

use crate::reason::ReasonCode;
use crate::topic::TopicError;

/// Why a byte stream or a packet was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtoError {
    /// The remaining-length field is longer than four bytes or otherwise invalid.
    #[error("malformed remaining length")]
    MalformedRemainingLength,
    /// The packet is larger than the negotiated maximum packet size.
    #[error("packet of {size} bytes exceeds the maximum of {max}")]
    PacketTooLarge {
        /// Total size of the packet (fixed header included).
        size: usize,
        /// The limit in force.
        max: usize,
    },
    /// Unknown packet type (0 or 15 in 3.1.1, 0 in 5.0).
    #[error("invalid packet type {0}")]
    InvalidPacketType(u8),
    /// Reserved fixed-header flags are wrong [MQTT-2.2.2-1], [MQTT-2.2.2-2].
    #[error("invalid fixed header flags {flags:#x} for packet type {packet_type}")]
    InvalidHeaderFlags {
        /// Packet type.
        packet_type: u8,
        /// Lower nibble of the first byte.
        flags: u8,
    },
    /// The packet body ended before a field was complete, or had bytes left over.
    #[error("malformed packet: {0}")]
    Malformed(&'static str),
    /// A UTF-8 string field is not well-formed or contains U+0000 [MQTT-1.5.4-1], [MQTT-1.5.4-2].
    #[error("invalid UTF-8 string")]
    InvalidUtf8,
    /// A QoS value of 3 [MQTT-3.3.1-4].
    #[error("invalid QoS 3")]
    InvalidQos,
    /// Protocol name or level is not one we speak.
    #[error("unsupported protocol {name:?} level {level}")]
    UnsupportedProtocol {
        /// Protocol name from CONNECT.
        name: String,
        /// Protocol level from CONNECT.
        level: u8,
    },
    /// A property is unknown, duplicated or not allowed in this packet.
    #[error("invalid property: {0}")]
    InvalidProperty(&'static str),
    /// A packet identifier of zero [MQTT-2.2.1-3].
    #[error("packet identifier 0")]
    ZeroPacketId,
    /// A topic name or filter failed validation.
    #[error("{0}")]
    Topic(#[from] TopicError),
    /// A packet that breaks a protocol rule other than its encoding.
    #[error("protocol error: {0}")]
    Protocol(&'static str),
}

impl ProtoError {
    /// The MQTT 5.0 reason code to report this error with.
    pub fn reason_code(&self) -> ReasonCode {
        match self {
            ProtoError::PacketTooLarge { .. } => ReasonCode::PACKET_TOO_LARGE,
            ProtoError::UnsupportedProtocol { .. } => ReasonCode::UNSUPPORTED_PROTOCOL_VERSION,
            ProtoError::Topic(TopicError::InvalidName(_)) => ReasonCode::TOPIC_NAME_INVALID,
            ProtoError::Topic(TopicError::InvalidFilter(_)) => ReasonCode::TOPIC_FILTER_INVALID,
            ProtoError::Protocol(_) | ProtoError::ZeroPacketId | ProtoError::InvalidProperty(_) => {
                ReasonCode::PROTOCOL_ERROR
            }
            _ => ReasonCode::MALFORMED_PACKET,
        }
    }
}
