//! Typed MQTT packets for protocol levels 3 (3.1), 4 (3.1.1) and 5 (5.0).
//!
//! One struct per control packet and one property struct per packet kind, so a
//! property that a packet may not carry cannot be represented. 3.x packets use the same
//! types with empty properties and `SUCCESS` reason codes. Strings are validated UTF-8
//! by the decoder; topics are validated [`TopicName`]s / [`TopicFilter`]s, except where
//! a PUBLISH uses a topic alias with an empty topic (see [`Publish::topic`]).

use bytes::Bytes;

use crate::reason::ReasonCode;
use crate::topic::{TopicFilter, TopicName};

/// Protocol level from CONNECT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    /// MQTT 3.1, protocol name `MQIsdp`, level 3.
    V31,
    /// MQTT 3.1.1, protocol name `MQTT`, level 4.
    V311,
    /// MQTT 5.0, protocol name `MQTT`, level 5.
    V5,
}

impl Protocol {
    /// Whether this connection speaks MQTT 5.0 (properties, reason codes).
    pub fn is_v5(self) -> bool {
        self == Protocol::V5
    }

    /// The protocol level byte.
    pub fn level(self) -> u8 {
        match self {
            Protocol::V31 => 3,
            Protocol::V311 => 4,
            Protocol::V5 => 5,
        }
    }
}

/// Quality of service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum QoS {
    /// At most once.
    #[default]
    AtMostOnce = 0,
    /// At least once.
    AtLeastOnce = 1,
    /// Exactly once.
    ExactlyOnce = 2,
}

impl QoS {
    /// Parses the two QoS bits; 3 is invalid [MQTT-3.3.1-4].
    pub fn from_u8(v: u8) -> Option<QoS> {
        match v {
            0 => Some(QoS::AtMostOnce),
            1 => Some(QoS::AtLeastOnce),
            2 => Some(QoS::ExactlyOnce),
            _ => None,
        }
    }
}

/// A user property (name, value) pair, kept in order and passed through untouched
/// [MQTT-3.3.2-17].
pub type UserProperty = (String, String);

/// Any MQTT control packet.
#[derive(Debug, Clone, PartialEq)]
pub enum Packet {
    /// CONNECT (1).
    Connect(Box<Connect>),
    /// CONNACK (2).
    ConnAck(ConnAck),
    /// PUBLISH (3).
    Publish(Publish),
    /// PUBACK (4).
    PubAck(PubAck),
    /// PUBREC (5).
    PubRec(PubAck),
    /// PUBREL (6).
    PubRel(PubAck),
    /// PUBCOMP (7).
    PubComp(PubAck),
    /// SUBSCRIBE (8).
    Subscribe(Subscribe),
    /// SUBACK (9).
    SubAck(SubAck),
    /// UNSUBSCRIBE (10).
    Unsubscribe(Unsubscribe),
    /// UNSUBACK (11).
    UnsubAck(UnsubAck),
    /// PINGREQ (12).
    PingReq,
    /// PINGRESP (13).
    PingResp,
    /// DISCONNECT (14).
    Disconnect(Disconnect),
    /// AUTH (15), 5.0 only.
    Auth(Auth),
}

impl Packet {
    /// The packet type number (upper nibble of the first byte).
    pub fn packet_type(&self) -> u8 {
        match self {
            Packet::Connect(_) => 1,
            Packet::ConnAck(_) => 2,
            Packet::Publish(_) => 3,
            Packet::PubAck(_) => 4,
            Packet::PubRec(_) => 5,
            Packet::PubRel(_) => 6,
            Packet::PubComp(_) => 7,
            Packet::Subscribe(_) => 8,
            Packet::SubAck(_) => 9,
            Packet::Unsubscribe(_) => 10,
            Packet::UnsubAck(_) => 11,
            Packet::PingReq => 12,
            Packet::PingResp => 13,
            Packet::Disconnect(_) => 14,
            Packet::Auth(_) => 15,
        }
    }
}

/// CONNECT.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Connect {
    /// Protocol level; decides the encoding of every later packet on the connection.
    pub protocol: Option<Protocol>,
    /// Clean session (3.x) / clean start (5.0).
    pub clean_start: bool,
    /// Keep alive in seconds; 0 disables it.
    pub keep_alive: u16,
    /// Client identifier; may be empty (the server assigns one).
    pub client_id: String,
    /// Last will, if any.
    pub will: Option<Will>,
    /// User name, if the flag was set.
    pub username: Option<String>,
    /// Password, if the flag was set (binary data).
    pub password: Option<Bytes>,
    /// 5.0 properties.
    pub properties: ConnectProperties,
}

/// CONNECT properties (5.0 section 3.1.2.11).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ConnectProperties {
    /// Session Expiry Interval (0x11), seconds; absent means 0.
    pub session_expiry_interval: Option<u32>,
    /// Receive Maximum (0x21); 0 is a protocol error.
    pub receive_maximum: Option<u16>,
    /// Maximum Packet Size (0x27); 0 is a protocol error.
    pub maximum_packet_size: Option<u32>,
    /// Topic Alias Maximum (0x22).
    pub topic_alias_maximum: Option<u16>,
    /// Request Response Information (0x19), 0 or 1.
    pub request_response_information: Option<u8>,
    /// Request Problem Information (0x17), 0 or 1.
    pub request_problem_information: Option<u8>,
    /// User Property (0x26).
    pub user_properties: Vec<UserProperty>,
    /// Authentication Method (0x15).
    pub authentication_method: Option<String>,
    /// Authentication Data (0x16).
    pub authentication_data: Option<Bytes>,
}

/// The will message carried by CONNECT.
#[derive(Debug, Clone, PartialEq)]
pub struct Will {
    /// Will topic.
    pub topic: TopicName,
    /// Will payload.
    pub payload: Bytes,
    /// Will QoS.
    pub qos: QoS,
    /// Will retain flag.
    pub retain: bool,
    /// Will properties (5.0).
    pub properties: WillProperties,
}

/// Will properties (5.0 section 3.1.3.2).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct WillProperties {
    /// Will Delay Interval (0x18), seconds.
    pub will_delay_interval: Option<u32>,
    /// Payload Format Indicator (0x01).
    pub payload_format_indicator: Option<u8>,
    /// Message Expiry Interval (0x02), seconds.
    pub message_expiry_interval: Option<u32>,
    /// Content Type (0x03).
    pub content_type: Option<String>,
    /// Response Topic (0x08).
    pub response_topic: Option<TopicName>,
    /// Correlation Data (0x09).
    pub correlation_data: Option<Bytes>,
    /// User Property (0x26).
    pub user_properties: Vec<UserProperty>,
}

/// CONNACK.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ConnAck {
    /// Session present flag.
    pub session_present: bool,
    /// Reason code (5.0) or return code mapped from it (3.x, see
    /// [`ReasonCode::to_v3_connack`]; the decoder maps 3.x return codes back).
    pub reason: ReasonCode,
    /// 5.0 properties.
    pub properties: ConnAckProperties,
}

impl Default for ReasonCode {
    fn default() -> Self {
        ReasonCode::SUCCESS
    }
}

/// CONNACK properties (5.0 section 3.2.2.3).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ConnAckProperties {
    /// Session Expiry Interval (0x11).
    pub session_expiry_interval: Option<u32>,
    /// Receive Maximum (0x21).
    pub receive_maximum: Option<u16>,
    /// Maximum QoS (0x24), 0 or 1.
    pub maximum_qos: Option<u8>,
    /// Retain Available (0x25).
    pub retain_available: Option<u8>,
    /// Maximum Packet Size (0x27).
    pub maximum_packet_size: Option<u32>,
    /// Assigned Client Identifier (0x12).
    pub assigned_client_identifier: Option<String>,
    /// Topic Alias Maximum (0x22).
    pub topic_alias_maximum: Option<u16>,
    /// Reason String (0x1F).
    pub reason_string: Option<String>,
    /// User Property (0x26).
    pub user_properties: Vec<UserProperty>,
    /// Wildcard Subscription Available (0x28).
    pub wildcard_subscription_available: Option<u8>,
    /// Subscription Identifiers Available (0x29).
    pub subscription_identifiers_available: Option<u8>,
    /// Shared Subscription Available (0x2A).
    pub shared_subscription_available: Option<u8>,
    /// Server Keep Alive (0x13).
    pub server_keep_alive: Option<u16>,
    /// Response Information (0x1A).
    pub response_information: Option<String>,
    /// Server Reference (0x1C).
    pub server_reference: Option<String>,
    /// Authentication Method (0x15).
    pub authentication_method: Option<String>,
    /// Authentication Data (0x16).
    pub authentication_data: Option<Bytes>,
}

/// PUBLISH.
#[derive(Debug, Clone, PartialEq)]
pub struct Publish {
    /// DUP flag.
    pub dup: bool,
    /// QoS.
    pub qos: QoS,
    /// RETAIN flag.
    pub retain: bool,
    /// Topic name. `None` only for a 5.0 PUBLISH that sends an empty topic together
    /// with a Topic Alias, which the receiver resolves [MQTT-3.3.2-12].
    pub topic: Option<TopicName>,
    /// Packet identifier; present exactly when QoS > 0 [MQTT-2.2.1-2].
    pub pkid: Option<u16>,
    /// 5.0 properties.
    pub properties: PublishProperties,
    /// Application payload.
    pub payload: Bytes,
}

/// PUBLISH properties (5.0 section 3.3.2.3).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PublishProperties {
    /// Payload Format Indicator (0x01).
    pub payload_format_indicator: Option<u8>,
    /// Message Expiry Interval (0x02), seconds.
    pub message_expiry_interval: Option<u32>,
    /// Topic Alias (0x23); 0 is invalid [MQTT-3.3.2-8].
    pub topic_alias: Option<u16>,
    /// Response Topic (0x08).
    pub response_topic: Option<TopicName>,
    /// Correlation Data (0x09).
    pub correlation_data: Option<Bytes>,
    /// User Property (0x26).
    pub user_properties: Vec<UserProperty>,
    /// Subscription Identifier (0x0B); a client must not send one [MQTT-3.3.4-6].
    pub subscription_identifiers: Vec<u32>,
    /// Content Type (0x03).
    pub content_type: Option<String>,
}

/// PUBACK, PUBREC, PUBREL and PUBCOMP share one shape.
#[derive(Debug, Clone, PartialEq)]
pub struct PubAck {
    /// Packet identifier (non-zero).
    pub pkid: u16,
    /// Reason code (5.0); `SUCCESS` for 3.x.
    pub reason: ReasonCode,
    /// Reason String and User Properties.
    pub properties: AckProperties,
}

impl PubAck {
    /// A bare acknowledgement with reason Success.
    pub fn new(pkid: u16) -> PubAck {
        PubAck {
            pkid,
            reason: ReasonCode::SUCCESS,
            properties: AckProperties::default(),
        }
    }
}

/// Properties of PUBACK, PUBREC, PUBREL, PUBCOMP, SUBACK and UNSUBACK.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AckProperties {
    /// Reason String (0x1F).
    pub reason_string: Option<String>,
    /// User Property (0x26).
    pub user_properties: Vec<UserProperty>,
}

/// Retain Handling subscription option (5.0 section 3.8.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RetainHandling {
    /// 0: send retained messages at subscribe time.
    #[default]
    SendAtSubscribe,
    /// 1: send them only if the subscription did not exist.
    SendIfNew,
    /// 2: do not send them.
    DoNotSend,
}

/// Options of one subscription in SUBSCRIBE.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SubscriptionOptions {
    /// Maximum QoS.
    pub qos: QoS,
    /// No Local (5.0): do not send the subscriber's own messages back [MQTT-3.8.3-3].
    pub no_local: bool,
    /// Retain As Published (5.0).
    pub retain_as_published: bool,
    /// Retain Handling (5.0).
    pub retain_handling: RetainHandling,
}

/// SUBSCRIBE.
#[derive(Debug, Clone, PartialEq)]
pub struct Subscribe {
    /// Packet identifier.
    pub pkid: u16,
    /// At least one (filter, options) pair [MQTT-3.8.3-2].
    pub filters: Vec<(TopicFilter, SubscriptionOptions)>,
    /// 5.0 properties.
    pub properties: SubscribeProperties,
}

/// SUBSCRIBE properties (5.0 section 3.8.2.1).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SubscribeProperties {
    /// Subscription Identifier (0x0B), 1..=268,435,455.
    pub subscription_identifier: Option<u32>,
    /// User Property (0x26).
    pub user_properties: Vec<UserProperty>,
}

/// SUBACK.
#[derive(Debug, Clone, PartialEq)]
pub struct SubAck {
    /// Packet identifier.
    pub pkid: u16,
    /// One code per filter: granted QoS or a failure (3.1.1: 0x80).
    pub reasons: Vec<ReasonCode>,
    /// 5.0 properties.
    pub properties: AckProperties,
}

/// UNSUBSCRIBE.
#[derive(Debug, Clone, PartialEq)]
pub struct Unsubscribe {
    /// Packet identifier.
    pub pkid: u16,
    /// At least one filter [MQTT-3.10.3-2].
    pub filters: Vec<TopicFilter>,
    /// User Property (0x26), 5.0 only.
    pub user_properties: Vec<UserProperty>,
}

/// UNSUBACK.
#[derive(Debug, Clone, PartialEq)]
pub struct UnsubAck {
    /// Packet identifier.
    pub pkid: u16,
    /// One code per filter (5.0 only; empty for 3.x).
    pub reasons: Vec<ReasonCode>,
    /// 5.0 properties.
    pub properties: AckProperties,
}

/// DISCONNECT.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Disconnect {
    /// Reason code (5.0).
    pub reason: ReasonCode,
    /// 5.0 properties.
    pub properties: DisconnectProperties,
}

/// DISCONNECT properties (5.0 section 3.14.2.2).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DisconnectProperties {
    /// Session Expiry Interval (0x11); only from the client.
    pub session_expiry_interval: Option<u32>,
    /// Reason String (0x1F).
    pub reason_string: Option<String>,
    /// User Property (0x26).
    pub user_properties: Vec<UserProperty>,
    /// Server Reference (0x1C).
    pub server_reference: Option<String>,
}

/// AUTH (5.0 only).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Auth {
    /// Reason code: Success, Continue authentication or Re-authenticate.
    pub reason: ReasonCode,
    /// 5.0 properties.
    pub properties: AuthProperties,
}

/// AUTH properties (5.0 section 3.15.2.2).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AuthProperties {
    /// Authentication Method (0x15).
    pub authentication_method: Option<String>,
    /// Authentication Data (0x16).
    pub authentication_data: Option<Bytes>,
    /// Reason String (0x1F).
    pub reason_string: Option<String>,
    /// User Property (0x26).
    pub user_properties: Vec<UserProperty>,
}
