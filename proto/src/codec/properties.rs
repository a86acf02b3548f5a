//! MQTT 5.0 properties (section 2.2.2): reading them into the per-packet property
//! structs and writing them back.
//!
//! Owns the identifier table, the per-value checks (0/1 flags, non-zero maxima and
//! subscription identifiers), duplicate detection and the "allowed in this packet" rule.
//! It must never accept a property that its packet may not carry, and never write one
//! whose length it has not counted first.

use bytes::Bytes;

use super::reader::Reader;
use super::sink::{Counter, Sink};
use crate::error::ProtoError;
use crate::packet::{
    AckProperties, AuthProperties, ConnAckProperties, ConnectProperties, DisconnectProperties,
    PublishProperties, SubscribeProperties, UserProperty, WillProperties,
};
use crate::topic::TopicName;

const PAYLOAD_FORMAT_INDICATOR: u8 = 0x01;
const MESSAGE_EXPIRY_INTERVAL: u8 = 0x02;
const CONTENT_TYPE: u8 = 0x03;
const RESPONSE_TOPIC: u8 = 0x08;
const CORRELATION_DATA: u8 = 0x09;
const SUBSCRIPTION_IDENTIFIER: u8 = 0x0B;
const SESSION_EXPIRY_INTERVAL: u8 = 0x11;
const ASSIGNED_CLIENT_IDENTIFIER: u8 = 0x12;
const SERVER_KEEP_ALIVE: u8 = 0x13;
const AUTHENTICATION_METHOD: u8 = 0x15;
const AUTHENTICATION_DATA: u8 = 0x16;
const REQUEST_PROBLEM_INFORMATION: u8 = 0x17;
const WILL_DELAY_INTERVAL: u8 = 0x18;
const REQUEST_RESPONSE_INFORMATION: u8 = 0x19;
const RESPONSE_INFORMATION: u8 = 0x1A;
const SERVER_REFERENCE: u8 = 0x1C;
const REASON_STRING: u8 = 0x1F;
const RECEIVE_MAXIMUM: u8 = 0x21;
const TOPIC_ALIAS_MAXIMUM: u8 = 0x22;
const TOPIC_ALIAS: u8 = 0x23;
const MAXIMUM_QOS: u8 = 0x24;
const RETAIN_AVAILABLE: u8 = 0x25;
const USER_PROPERTY: u8 = 0x26;
const MAXIMUM_PACKET_SIZE: u8 = 0x27;
const WILDCARD_SUBSCRIPTION_AVAILABLE: u8 = 0x28;
const SUBSCRIPTION_IDENTIFIER_AVAILABLE: u8 = 0x29;
const SHARED_SUBSCRIPTION_AVAILABLE: u8 = 0x2A;

/// One decoded property value; its variant follows from the identifier.
enum Value {
    Byte(u8),
    Two(u16),
    Four(u32),
    Var(u32),
    Str(String),
    Bin(Bytes),
    Pair(String, String),
}

/// Reads one value of the type that identifier `id` carries, checking the value rules
/// that hold wherever the property appears.
fn read_value(id: u8, r: &mut Reader) -> Result<Value, ProtoError> {
    let v = match id {
        PAYLOAD_FORMAT_INDICATOR
        | REQUEST_PROBLEM_INFORMATION
        | REQUEST_RESPONSE_INFORMATION
        | MAXIMUM_QOS
        | RETAIN_AVAILABLE
        | WILDCARD_SUBSCRIPTION_AVAILABLE
        | SUBSCRIPTION_IDENTIFIER_AVAILABLE
        | SHARED_SUBSCRIPTION_AVAILABLE => {
            let b = r.u8()?;
            if b > 1 {
                return Err(ProtoError::Protocol("property value must be 0 or 1"));
            }
            Value::Byte(b)
        }
        SERVER_KEEP_ALIVE | TOPIC_ALIAS_MAXIMUM | TOPIC_ALIAS => Value::Two(r.u16()?),
        RECEIVE_MAXIMUM => match r.u16()? {
            0 => return Err(ProtoError::Protocol("Receive Maximum of 0")),
            v => Value::Two(v),
        },
        MESSAGE_EXPIRY_INTERVAL | SESSION_EXPIRY_INTERVAL | WILL_DELAY_INTERVAL => {
            Value::Four(r.u32()?)
        }
        MAXIMUM_PACKET_SIZE => match r.u32()? {
            0 => return Err(ProtoError::Protocol("Maximum Packet Size of 0")),
            v => Value::Four(v),
        },
        SUBSCRIPTION_IDENTIFIER => match r.varint()? {
            0 => return Err(ProtoError::Protocol("Subscription Identifier of 0")),
            v => Value::Var(v as u32),
        },
        CONTENT_TYPE
        | RESPONSE_TOPIC
        | ASSIGNED_CLIENT_IDENTIFIER
        | AUTHENTICATION_METHOD
        | RESPONSE_INFORMATION
        | SERVER_REFERENCE
        | REASON_STRING => Value::Str(r.string()?),
        CORRELATION_DATA | AUTHENTICATION_DATA => Value::Bin(r.binary()?),
        USER_PROPERTY => Value::Pair(r.string()?, r.string()?),
        _ => return Err(ProtoError::Malformed("unknown property identifier")),
    };
    Ok(v)
}

/// Reads a property length and the properties it covers, handing each to `apply`,
/// which returns `false` for a property its packet may not carry. Duplicates other
/// than User Property (and Subscription Identifier when `multi_sub_id`) are a
/// protocol error.
fn read_props(
    r: &mut Reader,
    not_allowed: &'static str,
    multi_sub_id: bool,
    mut apply: impl FnMut(u8, Value) -> Result<bool, ProtoError>,
) -> Result<(), ProtoError> {
    let len = r.varint()?;
    if len > r.remaining() {
        return Err(ProtoError::Malformed(
            "property length runs past the end of the packet",
        ));
    }
    let mut props = Reader::new(r.take(len)?);
    let mut seen = 0u64;
    while !props.is_empty() {
        let id = props.u8()?;
        let value = read_value(id, &mut props)?;
        let repeatable = id == USER_PROPERTY || (multi_sub_id && id == SUBSCRIPTION_IDENTIFIER);
        let bit = 1u64 << (id & 63);
        if !repeatable && seen & bit != 0 {
            return Err(ProtoError::Protocol("property included more than once"));
        }
        seen |= bit;
        if !apply(id, value)? {
            return Err(ProtoError::InvalidProperty(not_allowed));
        }
    }
    Ok(())
}

fn topic(s: &str) -> Result<TopicName, ProtoError> {
    Ok(TopicName::new(s)?)
}

/// CONNECT properties.
pub fn read_connect(r: &mut Reader) -> Result<ConnectProperties, ProtoError> {
    let mut p = ConnectProperties::default();
    read_props(r, "property not allowed in CONNECT", false, |id, v| {
        match (id, v) {
            (SESSION_EXPIRY_INTERVAL, Value::Four(x)) => p.session_expiry_interval = Some(x),
            (RECEIVE_MAXIMUM, Value::Two(x)) => p.receive_maximum = Some(x),
            (MAXIMUM_PACKET_SIZE, Value::Four(x)) => p.maximum_packet_size = Some(x),
            (TOPIC_ALIAS_MAXIMUM, Value::Two(x)) => p.topic_alias_maximum = Some(x),
            (REQUEST_RESPONSE_INFORMATION, Value::Byte(x)) => {
                p.request_response_information = Some(x);
            }
            (REQUEST_PROBLEM_INFORMATION, Value::Byte(x)) => {
                p.request_problem_information = Some(x);
            }
            (USER_PROPERTY, Value::Pair(k, v)) => p.user_properties.push((k, v)),
            (AUTHENTICATION_METHOD, Value::Str(s)) => p.authentication_method = Some(s),
            (AUTHENTICATION_DATA, Value::Bin(b)) => p.authentication_data = Some(b),
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    Ok(p)
}

/// Will properties (in the CONNECT payload).
pub fn read_will(r: &mut Reader) -> Result<WillProperties, ProtoError> {
    let mut p = WillProperties::default();
    read_props(
        r,
        "property not allowed in Will Properties",
        false,
        |id, v| {
            match (id, v) {
                (WILL_DELAY_INTERVAL, Value::Four(x)) => p.will_delay_interval = Some(x),
                (PAYLOAD_FORMAT_INDICATOR, Value::Byte(x)) => p.payload_format_indicator = Some(x),
                (MESSAGE_EXPIRY_INTERVAL, Value::Four(x)) => p.message_expiry_interval = Some(x),
                (CONTENT_TYPE, Value::Str(s)) => p.content_type = Some(s),
                (RESPONSE_TOPIC, Value::Str(s)) => p.response_topic = Some(topic(&s)?),
                (CORRELATION_DATA, Value::Bin(b)) => p.correlation_data = Some(b),
                (USER_PROPERTY, Value::Pair(k, v)) => p.user_properties.push((k, v)),
                _ => return Ok(false),
            }
            Ok(true)
        },
    )?;
    Ok(p)
}

/// CONNACK properties.
pub fn read_connack(r: &mut Reader) -> Result<ConnAckProperties, ProtoError> {
    let mut p = ConnAckProperties::default();
    read_props(r, "property not allowed in CONNACK", false, |id, v| {
        match (id, v) {
            (SESSION_EXPIRY_INTERVAL, Value::Four(x)) => p.session_expiry_interval = Some(x),
            (RECEIVE_MAXIMUM, Value::Two(x)) => p.receive_maximum = Some(x),
            (MAXIMUM_QOS, Value::Byte(x)) => p.maximum_qos = Some(x),
            (RETAIN_AVAILABLE, Value::Byte(x)) => p.retain_available = Some(x),
            (MAXIMUM_PACKET_SIZE, Value::Four(x)) => p.maximum_packet_size = Some(x),
            (ASSIGNED_CLIENT_IDENTIFIER, Value::Str(s)) => {
                p.assigned_client_identifier = Some(s);
            }
            (TOPIC_ALIAS_MAXIMUM, Value::Two(x)) => p.topic_alias_maximum = Some(x),
            (REASON_STRING, Value::Str(s)) => p.reason_string = Some(s),
            (USER_PROPERTY, Value::Pair(k, v)) => p.user_properties.push((k, v)),
            (WILDCARD_SUBSCRIPTION_AVAILABLE, Value::Byte(x)) => {
                p.wildcard_subscription_available = Some(x);
            }
            (SUBSCRIPTION_IDENTIFIER_AVAILABLE, Value::Byte(x)) => {
                p.subscription_identifiers_available = Some(x);
            }
            (SHARED_SUBSCRIPTION_AVAILABLE, Value::Byte(x)) => {
                p.shared_subscription_available = Some(x);
            }
            (SERVER_KEEP_ALIVE, Value::Two(x)) => p.server_keep_alive = Some(x),
            (RESPONSE_INFORMATION, Value::Str(s)) => p.response_information = Some(s),
            (SERVER_REFERENCE, Value::Str(s)) => p.server_reference = Some(s),
            (AUTHENTICATION_METHOD, Value::Str(s)) => p.authentication_method = Some(s),
            (AUTHENTICATION_DATA, Value::Bin(b)) => p.authentication_data = Some(b),
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    Ok(p)
}

/// PUBLISH properties; Subscription Identifier may repeat here.
pub fn read_publish(r: &mut Reader) -> Result<PublishProperties, ProtoError> {
    let mut p = PublishProperties::default();
    read_props(r, "property not allowed in PUBLISH", true, |id, v| {
        match (id, v) {
            (PAYLOAD_FORMAT_INDICATOR, Value::Byte(x)) => p.payload_format_indicator = Some(x),
            (MESSAGE_EXPIRY_INTERVAL, Value::Four(x)) => p.message_expiry_interval = Some(x),
            (TOPIC_ALIAS, Value::Two(x)) => p.topic_alias = Some(x),
            (RESPONSE_TOPIC, Value::Str(s)) => p.response_topic = Some(topic(&s)?),
            (CORRELATION_DATA, Value::Bin(b)) => p.correlation_data = Some(b),
            (USER_PROPERTY, Value::Pair(k, v)) => p.user_properties.push((k, v)),
            (SUBSCRIPTION_IDENTIFIER, Value::Var(x)) => p.subscription_identifiers.push(x),
            (CONTENT_TYPE, Value::Str(s)) => p.content_type = Some(s),
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    Ok(p)
}

/// Properties of PUBACK, PUBREC, PUBREL, PUBCOMP, SUBACK and UNSUBACK.
pub fn read_ack(r: &mut Reader, not_allowed: &'static str) -> Result<AckProperties, ProtoError> {
    let mut p = AckProperties::default();
    read_props(r, not_allowed, false, |id, v| {
        match (id, v) {
            (REASON_STRING, Value::Str(s)) => p.reason_string = Some(s),
            (USER_PROPERTY, Value::Pair(k, v)) => p.user_properties.push((k, v)),
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    Ok(p)
}

/// SUBSCRIBE properties.
pub fn read_subscribe(r: &mut Reader) -> Result<SubscribeProperties, ProtoError> {
    let mut p = SubscribeProperties::default();
    read_props(r, "property not allowed in SUBSCRIBE", false, |id, v| {
        match (id, v) {
            (SUBSCRIPTION_IDENTIFIER, Value::Var(x)) => p.subscription_identifier = Some(x),
            (USER_PROPERTY, Value::Pair(k, v)) => p.user_properties.push((k, v)),
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    Ok(p)
}

/// UNSUBSCRIBE properties: User Property only.
pub fn read_unsubscribe(r: &mut Reader) -> Result<Vec<UserProperty>, ProtoError> {
    let mut users = Vec::new();
    read_props(r, "property not allowed in UNSUBSCRIBE", false, |id, v| {
        match (id, v) {
            (USER_PROPERTY, Value::Pair(k, v)) => users.push((k, v)),
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    Ok(users)
}

/// DISCONNECT properties.
pub fn read_disconnect(r: &mut Reader) -> Result<DisconnectProperties, ProtoError> {
    let mut p = DisconnectProperties::default();
    read_props(r, "property not allowed in DISCONNECT", false, |id, v| {
        match (id, v) {
            (SESSION_EXPIRY_INTERVAL, Value::Four(x)) => p.session_expiry_interval = Some(x),
            (REASON_STRING, Value::Str(s)) => p.reason_string = Some(s),
            (USER_PROPERTY, Value::Pair(k, v)) => p.user_properties.push((k, v)),
            (SERVER_REFERENCE, Value::Str(s)) => p.server_reference = Some(s),
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    Ok(p)
}

/// AUTH properties.
pub fn read_auth(r: &mut Reader) -> Result<AuthProperties, ProtoError> {
    let mut p = AuthProperties::default();
    read_props(r, "property not allowed in AUTH", false, |id, v| {
        match (id, v) {
            (AUTHENTICATION_METHOD, Value::Str(s)) => p.authentication_method = Some(s),
            (AUTHENTICATION_DATA, Value::Bin(b)) => p.authentication_data = Some(b),
            (REASON_STRING, Value::Str(s)) => p.reason_string = Some(s),
            (USER_PROPERTY, Value::Pair(k, v)) => p.user_properties.push((k, v)),
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    Ok(p)
}

/// A property struct that can describe itself to a [`Sink`].
pub trait Props {
    /// Writes every present property (identifier and value), without the length.
    fn write_to<S: Sink>(&self, s: &mut S);

    /// Size of the properties, without the length prefix.
    fn len(&self) -> usize {
        let mut c = Counter::default();
        self.write_to(&mut c);
        c.n
    }

    /// Whether no property is present.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Writes a property length followed by the properties. When `s` is a [`Counter`] the
/// properties are visited twice; that is cheap and keeps the writer allocation-free.
pub fn write<S: Sink, P: Props>(s: &mut S, p: &P) {
    s.put_varint(p.len());
    p.write_to(s);
}

impl Props for ConnectProperties {
    fn write_to<S: Sink>(&self, s: &mut S) {
        s.prop_u32(SESSION_EXPIRY_INTERVAL, self.session_expiry_interval);
        s.prop_u16(RECEIVE_MAXIMUM, self.receive_maximum);
        s.prop_u32(MAXIMUM_PACKET_SIZE, self.maximum_packet_size);
        s.prop_u16(TOPIC_ALIAS_MAXIMUM, self.topic_alias_maximum);
        s.prop_u8(
            REQUEST_RESPONSE_INFORMATION,
            self.request_response_information,
        );
        s.prop_u8(
            REQUEST_PROBLEM_INFORMATION,
            self.request_problem_information,
        );
        s.prop_users(USER_PROPERTY, &self.user_properties);
        s.prop_str(AUTHENTICATION_METHOD, self.authentication_method.as_deref());
        s.prop_bin(AUTHENTICATION_DATA, self.authentication_data.as_deref());
    }
}

impl Props for WillProperties {
    fn write_to<S: Sink>(&self, s: &mut S) {
        s.prop_u32(WILL_DELAY_INTERVAL, self.will_delay_interval);
        s.prop_u8(PAYLOAD_FORMAT_INDICATOR, self.payload_format_indicator);
        s.prop_u32(MESSAGE_EXPIRY_INTERVAL, self.message_expiry_interval);
        s.prop_str(CONTENT_TYPE, self.content_type.as_deref());
        s.prop_str(RESPONSE_TOPIC, self.response_topic.as_deref());
        s.prop_bin(CORRELATION_DATA, self.correlation_data.as_deref());
        s.prop_users(USER_PROPERTY, &self.user_properties);
    }
}

impl Props for ConnAckProperties {
    fn write_to<S: Sink>(&self, s: &mut S) {
        s.prop_u32(SESSION_EXPIRY_INTERVAL, self.session_expiry_interval);
        s.prop_u16(RECEIVE_MAXIMUM, self.receive_maximum);
        s.prop_u8(MAXIMUM_QOS, self.maximum_qos);
        s.prop_u8(RETAIN_AVAILABLE, self.retain_available);
        s.prop_u32(MAXIMUM_PACKET_SIZE, self.maximum_packet_size);
        s.prop_str(
            ASSIGNED_CLIENT_IDENTIFIER,
            self.assigned_client_identifier.as_deref(),
        );
        s.prop_u16(TOPIC_ALIAS_MAXIMUM, self.topic_alias_maximum);
        s.prop_str(REASON_STRING, self.reason_string.as_deref());
        s.prop_users(USER_PROPERTY, &self.user_properties);
        s.prop_u8(
            WILDCARD_SUBSCRIPTION_AVAILABLE,
            self.wildcard_subscription_available,
        );
        s.prop_u8(
            SUBSCRIPTION_IDENTIFIER_AVAILABLE,
            self.subscription_identifiers_available,
        );
        s.prop_u8(
            SHARED_SUBSCRIPTION_AVAILABLE,
            self.shared_subscription_available,
        );
        s.prop_u16(SERVER_KEEP_ALIVE, self.server_keep_alive);
        s.prop_str(RESPONSE_INFORMATION, self.response_information.as_deref());
        s.prop_str(SERVER_REFERENCE, self.server_reference.as_deref());
        s.prop_str(AUTHENTICATION_METHOD, self.authentication_method.as_deref());
        s.prop_bin(AUTHENTICATION_DATA, self.authentication_data.as_deref());
    }
}

impl Props for PublishProperties {
    fn write_to<S: Sink>(&self, s: &mut S) {
        s.prop_u8(PAYLOAD_FORMAT_INDICATOR, self.payload_format_indicator);
        s.prop_u32(MESSAGE_EXPIRY_INTERVAL, self.message_expiry_interval);
        s.prop_u16(TOPIC_ALIAS, self.topic_alias);
        s.prop_str(RESPONSE_TOPIC, self.response_topic.as_deref());
        s.prop_bin(CORRELATION_DATA, self.correlation_data.as_deref());
        s.prop_users(USER_PROPERTY, &self.user_properties);
        for &id in &self.subscription_identifiers {
            s.prop_varint(SUBSCRIPTION_IDENTIFIER, Some(id));
        }
        s.prop_str(CONTENT_TYPE, self.content_type.as_deref());
    }
}

/// PUBLISH properties split in two: those of one hop (Message Expiry Interval as sent,
/// Topic Alias, Subscription Identifiers) and those of the message, shared by every copy
/// (Payload Format Indicator, Response Topic, Correlation Data, User Properties, Content
/// Type). Written in the same order as [`PublishProperties`].
pub struct SharedPublish<'a> {
    /// The per-hop properties.
    pub hop: &'a PublishProperties,
    /// The message's own properties.
    pub shared: &'a PublishProperties,
}

impl Props for SharedPublish<'_> {
    fn write_to<S: Sink>(&self, s: &mut S) {
        let (hop, shared) = (self.hop, self.shared);
        s.prop_u8(PAYLOAD_FORMAT_INDICATOR, shared.payload_format_indicator);
        s.prop_u32(MESSAGE_EXPIRY_INTERVAL, hop.message_expiry_interval);
        s.prop_u16(TOPIC_ALIAS, hop.topic_alias);
        s.prop_str(RESPONSE_TOPIC, shared.response_topic.as_deref());
        s.prop_bin(CORRELATION_DATA, shared.correlation_data.as_deref());
        s.prop_users(USER_PROPERTY, &shared.user_properties);
        for &id in &hop.subscription_identifiers {
            s.prop_varint(SUBSCRIPTION_IDENTIFIER, Some(id));
        }
        s.prop_str(CONTENT_TYPE, shared.content_type.as_deref());
    }
}

impl Props for AckProperties {
    fn write_to<S: Sink>(&self, s: &mut S) {
        s.prop_str(REASON_STRING, self.reason_string.as_deref());
        s.prop_users(USER_PROPERTY, &self.user_properties);
    }
}

impl Props for SubscribeProperties {
    fn write_to<S: Sink>(&self, s: &mut S) {
        s.prop_varint(SUBSCRIPTION_IDENTIFIER, self.subscription_identifier);
        s.prop_users(USER_PROPERTY, &self.user_properties);
    }
}

/// UNSUBSCRIBE carries User Properties only.
pub struct UserOnly<'a>(pub &'a [UserProperty]);

impl Props for UserOnly<'_> {
    fn write_to<S: Sink>(&self, s: &mut S) {
        s.prop_users(USER_PROPERTY, self.0);
    }
}

impl Props for DisconnectProperties {
    fn write_to<S: Sink>(&self, s: &mut S) {
        s.prop_u32(SESSION_EXPIRY_INTERVAL, self.session_expiry_interval);
        s.prop_str(REASON_STRING, self.reason_string.as_deref());
        s.prop_users(USER_PROPERTY, &self.user_properties);
        s.prop_str(SERVER_REFERENCE, self.server_reference.as_deref());
    }
}

impl Props for AuthProperties {
    fn write_to<S: Sink>(&self, s: &mut S) {
        s.prop_str(AUTHENTICATION_METHOD, self.authentication_method.as_deref());
        s.prop_bin(AUTHENTICATION_DATA, self.authentication_data.as_deref());
        s.prop_str(REASON_STRING, self.reason_string.as_deref());
        s.prop_users(USER_PROPERTY, &self.user_properties);
    }
}
