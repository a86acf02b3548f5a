//! Hand-written MQTT 3.1.1 / 5.0 wire encoding and decoding for tests.
//!
//! Owns the byte builders (CONNECT, PUBLISH, SUBSCRIBE, ...) and small parsers for what a
//! broker sends back. It must never use `canopy-proto`: the point of these helpers is to
//! check Canopy's codec against an independent reading of the specification. Parsers
//! panic with a message on unexpected input, because a test that sees one has failed.

/// Protocol level byte of MQTT 3.1.1.
pub const V311: u8 = 4;
/// Protocol level byte of MQTT 5.0.
pub const V5: u8 = 5;

/// MQTT 5.0 property identifiers used by the tests.
pub mod prop {
    /// Payload Format Indicator (byte).
    pub const PAYLOAD_FORMAT: u8 = 0x01;
    /// Message Expiry Interval (four-byte integer).
    pub const MESSAGE_EXPIRY: u8 = 0x02;
    /// Content Type (UTF-8 string).
    pub const CONTENT_TYPE: u8 = 0x03;
    /// Response Topic (UTF-8 string).
    pub const RESPONSE_TOPIC: u8 = 0x08;
    /// Correlation Data (binary).
    pub const CORRELATION_DATA: u8 = 0x09;
    /// Subscription Identifier (variable byte integer).
    pub const SUBSCRIPTION_ID: u8 = 0x0B;
    /// Session Expiry Interval (four-byte integer).
    pub const SESSION_EXPIRY: u8 = 0x11;
    /// Assigned Client Identifier (UTF-8 string).
    pub const ASSIGNED_CLIENT_ID: u8 = 0x12;
    /// Server Keep Alive (two-byte integer).
    pub const SERVER_KEEP_ALIVE: u8 = 0x13;
    /// Will Delay Interval (four-byte integer).
    pub const WILL_DELAY: u8 = 0x18;
    /// Reason String (UTF-8 string).
    pub const REASON_STRING: u8 = 0x1F;
    /// Receive Maximum (two-byte integer).
    pub const RECEIVE_MAXIMUM: u8 = 0x21;
    /// Topic Alias Maximum (two-byte integer).
    pub const TOPIC_ALIAS_MAXIMUM: u8 = 0x22;
    /// Topic Alias (two-byte integer).
    pub const TOPIC_ALIAS: u8 = 0x23;
    /// User Property (UTF-8 string pair).
    pub const USER_PROPERTY: u8 = 0x26;
    /// Maximum Packet Size (four-byte integer).
    pub const MAXIMUM_PACKET_SIZE: u8 = 0x27;
}

/// Encodes `n` as an MQTT variable byte integer.
pub fn varint(mut n: usize) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let mut b = (n % 128) as u8;
        n /= 128;
        if n > 0 {
            b |= 0x80;
        }
        out.push(b);
        if n == 0 {
            return out;
        }
    }
}

/// Decodes a variable byte integer at the start of `b`: `(value, bytes used)`, or `None`
/// when it is incomplete or longer than four bytes.
pub fn decode_varint(b: &[u8]) -> Option<(usize, usize)> {
    let mut value = 0usize;
    for (i, byte) in b.iter().enumerate().take(4) {
        value |= ((byte & 0x7F) as usize) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((value, i + 1));
        }
    }
    None
}

/// A length-prefixed UTF-8 string (two-byte big-endian length, then the bytes).
pub fn string(s: &str) -> Vec<u8> {
    binary(s.as_bytes())
}

/// Length-prefixed binary data (two-byte big-endian length, then the bytes).
pub fn binary(b: &[u8]) -> Vec<u8> {
    let mut out = (b.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(b);
    out
}

/// A whole packet: the first byte, the remaining length, then `body`.
pub fn packet(first: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![first];
    out.extend(varint(body.len()));
    out.extend_from_slice(body);
    out
}

/// Builder of an MQTT 5.0 property list, in the order the calls are made.
#[derive(Debug, Clone, Default)]
pub struct Props(Vec<u8>);

impl Props {
    /// An empty property list.
    pub fn new() -> Self {
        Self::default()
    }
    /// Adds a byte property.
    pub fn byte(mut self, id: u8, v: u8) -> Self {
        self.0.extend([id, v]);
        self
    }
    /// Adds a two-byte integer property.
    pub fn u16(mut self, id: u8, v: u16) -> Self {
        self.0.push(id);
        self.0.extend(v.to_be_bytes());
        self
    }
    /// Adds a four-byte integer property.
    pub fn u32(mut self, id: u8, v: u32) -> Self {
        self.0.push(id);
        self.0.extend(v.to_be_bytes());
        self
    }
    /// Adds a variable byte integer property.
    pub fn varint(mut self, id: u8, v: usize) -> Self {
        self.0.push(id);
        self.0.extend(varint(v));
        self
    }
    /// Adds a UTF-8 string property.
    pub fn string(mut self, id: u8, v: &str) -> Self {
        self.0.push(id);
        self.0.extend(string(v));
        self
    }
    /// Adds a binary data property.
    pub fn binary(mut self, id: u8, v: &[u8]) -> Self {
        self.0.push(id);
        self.0.extend(binary(v));
        self
    }
    /// Adds a User Property (key, value).
    pub fn user(mut self, k: &str, v: &str) -> Self {
        self.0.push(prop::USER_PROPERTY);
        self.0.extend(string(k));
        self.0.extend(string(v));
        self
    }
    /// Adds raw bytes as they are (for malformed-property tests).
    pub fn raw(mut self, bytes: &[u8]) -> Self {
        self.0.extend_from_slice(bytes);
        self
    }
    /// The encoded list: property length, then the properties.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = varint(self.0.len());
        out.extend_from_slice(&self.0);
        out
    }
}

/// One decoded property value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PropValue {
    /// Byte.
    Byte(u8),
    /// Two-byte integer.
    U16(u16),
    /// Four-byte integer.
    U32(u32),
    /// Variable byte integer.
    Varint(usize),
    /// UTF-8 string.
    Str(String),
    /// Binary data.
    Bin(Vec<u8>),
    /// UTF-8 string pair (user property).
    Pair(String, String),
}

/// A decoded property list, in wire order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RxProps(pub Vec<(u8, PropValue)>);

impl RxProps {
    /// The first value of property `id`.
    pub fn get(&self, id: u8) -> Option<&PropValue> {
        self.0.iter().find(|(i, _)| *i == id).map(|(_, v)| v)
    }
    /// Every value of property `id`, in order.
    pub fn all(&self, id: u8) -> Vec<&PropValue> {
        self.0
            .iter()
            .filter(|(i, _)| *i == id)
            .map(|(_, v)| v)
            .collect()
    }
    /// Integer value of property `id` (any integer width).
    pub fn int(&self, id: u8) -> Option<u64> {
        match self.get(id)? {
            PropValue::Byte(v) => Some(u64::from(*v)),
            PropValue::U16(v) => Some(u64::from(*v)),
            PropValue::U32(v) => Some(u64::from(*v)),
            PropValue::Varint(v) => Some(*v as u64),
            _ => None,
        }
    }
    /// String value of property `id`.
    pub fn str(&self, id: u8) -> Option<&str> {
        match self.get(id)? {
            PropValue::Str(s) => Some(s),
            _ => None,
        }
    }
    /// Binary value of property `id`.
    pub fn bin(&self, id: u8) -> Option<&[u8]> {
        match self.get(id)? {
            PropValue::Bin(b) => Some(b),
            _ => None,
        }
    }
    /// All user properties, in order.
    pub fn user(&self) -> Vec<(String, String)> {
        self.0
            .iter()
            .filter_map(|(_, v)| match v {
                PropValue::Pair(k, v) => Some((k.clone(), v.clone())),
                _ => None,
            })
            .collect()
    }
    /// All subscription identifiers, in order.
    pub fn subscription_ids(&self) -> Vec<usize> {
        self.all(prop::SUBSCRIPTION_ID)
            .into_iter()
            .filter_map(|v| match v {
                PropValue::Varint(n) => Some(*n),
                _ => None,
            })
            .collect()
    }
}

/// A cursor over received bytes that panics with context on truncation.
struct Reader<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> &'a [u8] {
        let end = self.pos + n;
        assert!(
            end <= self.b.len(),
            "packet truncated: need {end} bytes, have {:?}",
            self.b
        );
        let out = &self.b[self.pos..end];
        self.pos = end;
        out
    }
    fn u8(&mut self) -> u8 {
        self.take(1)[0]
    }
    fn u16(&mut self) -> u16 {
        let b = self.take(2);
        u16::from_be_bytes([b[0], b[1]])
    }
    fn u32(&mut self) -> u32 {
        let b = self.take(4);
        u32::from_be_bytes([b[0], b[1], b[2], b[3]])
    }
    fn varint(&mut self) -> usize {
        let (v, n) = decode_varint(&self.b[self.pos..]).expect("bad variable byte integer");
        self.pos += n;
        v
    }
    fn bin(&mut self) -> Vec<u8> {
        let n = self.u16() as usize;
        self.take(n).to_vec()
    }
    fn string(&mut self) -> String {
        String::from_utf8(self.bin()).expect("server sent invalid UTF-8 string")
    }
    fn rest(&mut self) -> &'a [u8] {
        let out = &self.b[self.pos..];
        self.pos = self.b.len();
        out
    }
    fn at_end(&self) -> bool {
        self.pos >= self.b.len()
    }
    fn props(&mut self) -> RxProps {
        let len = self.varint();
        let end = self.pos + len;
        assert!(
            end <= self.b.len(),
            "property length {len} past end of packet"
        );
        let mut out = Vec::new();
        while self.pos < end {
            let id = self.u8();
            let v = match id {
                0x01 | 0x17 | 0x19 | 0x24 | 0x25 | 0x28 | 0x29 | 0x2A => PropValue::Byte(self.u8()),
                0x13 | 0x21 | 0x22 | 0x23 => PropValue::U16(self.u16()),
                0x02 | 0x11 | 0x18 | 0x27 => PropValue::U32(self.u32()),
                0x0B => PropValue::Varint(self.varint()),
                0x03 | 0x08 | 0x12 | 0x15 | 0x1A | 0x1C | 0x1F => PropValue::Str(self.string()),
                0x09 | 0x16 => PropValue::Bin(self.bin()),
                0x26 => PropValue::Pair(self.string(), self.string()),
                other => panic!("server sent unknown property id {other:#04x}"),
            };
            out.push((id, v));
        }
        assert_eq!(self.pos, end, "property list overran its length");
        RxProps(out)
    }
}

/// Splits a whole packet into (first byte, body), checking the remaining length.
fn split(p: &[u8]) -> (u8, &[u8]) {
    assert!(!p.is_empty(), "empty packet");
    let (len, n) = decode_varint(&p[1..]).expect("bad remaining length");
    assert_eq!(
        p.len(),
        1 + n + len,
        "remaining length does not match packet {p:?}"
    );
    (p[0], &p[1 + n..])
}

/// Last Will of a CONNECT packet.
#[derive(Debug, Clone)]
pub struct Will {
    /// Will topic.
    pub topic: String,
    /// Will payload.
    pub payload: Vec<u8>,
    /// Will QoS.
    pub qos: u8,
    /// Will retain flag.
    pub retain: bool,
    /// Will properties (5.0 only).
    pub props: Props,
}

impl Will {
    /// A QoS 0, non-retained will.
    pub fn new(topic: &str, payload: &[u8]) -> Self {
        Self {
            topic: topic.into(),
            payload: payload.into(),
            qos: 0,
            retain: false,
            props: Props::new(),
        }
    }
}

/// Builder of a CONNECT packet.
#[derive(Debug, Clone)]
pub struct Connect {
    /// Protocol level: [`V311`] or [`V5`] (or anything, for refusal tests).
    pub version: u8,
    /// Protocol name (normally "MQTT").
    pub protocol_name: String,
    /// Client identifier.
    pub client_id: String,
    /// Clean Session (3.1.1) / Clean Start (5.0).
    pub clean: bool,
    /// Keep alive in seconds.
    pub keep_alive: u16,
    /// CONNECT properties (5.0 only).
    pub props: Props,
    /// Last will.
    pub will: Option<Will>,
    /// User name and password.
    pub login: Option<(String, Vec<u8>)>,
}

impl Connect {
    /// A clean 3.1.1 CONNECT with keep alive 60.
    pub fn v311(client_id: &str) -> Self {
        Self::new(V311, client_id)
    }
    /// A clean-start 5.0 CONNECT with keep alive 60.
    pub fn v5(client_id: &str) -> Self {
        Self::new(V5, client_id)
    }
    /// A clean CONNECT of protocol level `version`.
    pub fn new(version: u8, client_id: &str) -> Self {
        Self {
            version,
            protocol_name: "MQTT".into(),
            client_id: client_id.into(),
            clean: true,
            keep_alive: 60,
            props: Props::new(),
            will: None,
            login: None,
        }
    }
    /// Sets the user name and password.
    pub fn login(mut self, user: &str, password: &[u8]) -> Self {
        self.login = Some((user.into(), password.to_vec()));
        self
    }
    /// Sets Clean Session / Clean Start.
    pub fn clean(mut self, clean: bool) -> Self {
        self.clean = clean;
        self
    }
    /// Sets the keep alive in seconds.
    pub fn keep_alive(mut self, secs: u16) -> Self {
        self.keep_alive = secs;
        self
    }
    /// Sets the CONNECT properties (5.0).
    pub fn props(mut self, props: Props) -> Self {
        self.props = props;
        self
    }
    /// Sets the last will.
    pub fn will(mut self, will: Will) -> Self {
        self.will = Some(will);
        self
    }
    /// Encodes the packet.
    pub fn encode(&self) -> Vec<u8> {
        let mut body = string(&self.protocol_name);
        body.push(self.version);
        let mut flags = if self.clean { 0x02 } else { 0 };
        if let Some(w) = &self.will {
            flags |= 0x04 | (w.qos << 3) | if w.retain { 0x20 } else { 0 };
        }
        if self.login.is_some() {
            flags |= 0xC0;
        }
        body.push(flags);
        body.extend(self.keep_alive.to_be_bytes());
        if self.version == V5 {
            body.extend(self.props.encode());
        }
        body.extend(string(&self.client_id));
        if let Some(w) = &self.will {
            if self.version == V5 {
                body.extend(w.props.encode());
            }
            body.extend(string(&w.topic));
            body.extend(binary(&w.payload));
        }
        if let Some((user, password)) = &self.login {
            body.extend(string(user));
            body.extend(binary(password));
        }
        packet(0x10, &body)
    }
}

/// Builder of a PUBLISH packet.
#[derive(Debug, Clone)]
pub struct Publish {
    /// Protocol level the packet is encoded for.
    pub version: u8,
    /// Topic name.
    pub topic: String,
    /// QoS 0..=2.
    pub qos: u8,
    /// Packet identifier (only written when qos > 0).
    pub pid: u16,
    /// Retain flag.
    pub retain: bool,
    /// DUP flag.
    pub dup: bool,
    /// Properties (5.0 only).
    pub props: Props,
    /// Payload.
    pub payload: Vec<u8>,
}

impl Publish {
    /// A QoS 0 PUBLISH.
    pub fn new(version: u8, topic: &str, payload: &[u8]) -> Self {
        Self {
            version,
            topic: topic.into(),
            qos: 0,
            pid: 0,
            retain: false,
            dup: false,
            props: Props::new(),
            payload: payload.into(),
        }
    }
    /// Sets QoS and packet identifier.
    pub fn qos(mut self, qos: u8, pid: u16) -> Self {
        self.qos = qos;
        self.pid = pid;
        self
    }
    /// Sets the retain flag.
    pub fn retain(mut self) -> Self {
        self.retain = true;
        self
    }
    /// Sets the DUP flag.
    pub fn dup(mut self) -> Self {
        self.dup = true;
        self
    }
    /// Sets the properties (5.0).
    pub fn props(mut self, props: Props) -> Self {
        self.props = props;
        self
    }
    /// Encodes the packet.
    pub fn encode(&self) -> Vec<u8> {
        let first = 0x30 | (u8::from(self.dup) << 3) | (self.qos << 1) | u8::from(self.retain);
        let mut body = string(&self.topic);
        if self.qos > 0 {
            body.extend(self.pid.to_be_bytes());
        }
        if self.version == V5 {
            body.extend(self.props.encode());
        }
        body.extend_from_slice(&self.payload);
        packet(first, &body)
    }
}

/// Subscription option byte: maximum QoS, No Local, Retain As Published, Retain Handling.
pub fn sub_opts(qos: u8, no_local: bool, rap: bool, retain_handling: u8) -> u8 {
    qos | (u8::from(no_local) << 2) | (u8::from(rap) << 3) | (retain_handling << 4)
}

/// A SUBSCRIBE packet; each filter comes with its option byte (the QoS in 3.1.1).
pub fn subscribe(version: u8, pid: u16, filters: &[(&str, u8)], props: Props) -> Vec<u8> {
    let mut body = pid.to_be_bytes().to_vec();
    if version == V5 {
        body.extend(props.encode());
    }
    for (f, o) in filters {
        body.extend(string(f));
        body.push(*o);
    }
    packet(0x82, &body)
}

/// An UNSUBSCRIBE packet.
pub fn unsubscribe(version: u8, pid: u16, filters: &[&str]) -> Vec<u8> {
    let mut body = pid.to_be_bytes().to_vec();
    if version == V5 {
        body.push(0);
    }
    for f in filters {
        body.extend(string(f));
    }
    packet(0xA2, &body)
}

/// First byte of PUBACK.
pub const PUBACK: u8 = 0x40;
/// First byte of PUBREC.
pub const PUBREC: u8 = 0x50;
/// First byte of PUBREL (reserved flags 0010).
pub const PUBREL: u8 = 0x62;
/// First byte of PUBCOMP.
pub const PUBCOMP: u8 = 0x70;

/// A two-byte-body acknowledgement (PUBACK, PUBREC, PUBREL, PUBCOMP) with reason success.
pub fn ack(first: u8, pid: u16) -> Vec<u8> {
    packet(first, &pid.to_be_bytes())
}

/// PINGREQ.
pub const PINGREQ: [u8; 2] = [0xC0, 0x00];
/// PINGRESP.
pub const PINGRESP: [u8; 2] = [0xD0, 0x00];
/// DISCONNECT of 3.1.1 (and 5.0 with reason 0x00 and no properties).
pub const DISCONNECT: [u8; 2] = [0xE0, 0x00];

/// A 5.0 DISCONNECT with a reason code and properties.
pub fn disconnect_v5(reason: u8, props: Props) -> Vec<u8> {
    let mut body = vec![reason];
    body.extend(props.encode());
    packet(0xE0, &body)
}

/// A PUBLISH as received from the broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RxPublish {
    /// DUP flag.
    pub dup: bool,
    /// QoS.
    pub qos: u8,
    /// RETAIN flag.
    pub retain: bool,
    /// Topic name (may be empty in 5.0 when an alias is used).
    pub topic: String,
    /// Packet identifier when qos > 0.
    pub pid: Option<u16>,
    /// Properties (empty for 3.1.1).
    pub props: RxProps,
    /// Payload.
    pub payload: Vec<u8>,
}

/// Parses a received PUBLISH; panics when it is anything else.
pub fn parse_publish(version: u8, p: &[u8]) -> RxPublish {
    let (first, body) = split(p);
    assert_eq!(first >> 4, 3, "expected PUBLISH, got {p:?}");
    let qos = (first >> 1) & 3;
    assert!(qos < 3, "server sent QoS 3");
    let mut r = Reader { b: body, pos: 0 };
    let topic = r.string();
    let pid = (qos > 0).then(|| r.u16());
    assert_ne!(pid, Some(0), "server sent packet id 0 [MQTT-2.3.1-1]");
    let props = if version == V5 {
        r.props()
    } else {
        RxProps::default()
    };
    RxPublish {
        dup: first & 0x08 != 0,
        qos,
        retain: first & 1 != 0,
        topic,
        pid,
        props,
        payload: r.rest().to_vec(),
    }
}

/// An acknowledgement with a packet id (PUBACK, PUBREC, PUBREL, PUBCOMP) as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RxAck {
    /// First byte.
    pub first: u8,
    /// Packet identifier.
    pub pid: u16,
    /// Reason code (0 when omitted).
    pub reason: u8,
    /// Properties.
    pub props: RxProps,
}

/// Parses a received PUBACK/PUBREC/PUBREL/PUBCOMP (either the short or the long 5.0 form).
pub fn parse_ack(p: &[u8]) -> RxAck {
    let (first, body) = split(p);
    let mut r = Reader { b: body, pos: 0 };
    let pid = r.u16();
    let reason = if r.at_end() { 0 } else { r.u8() };
    let props = if r.at_end() {
        RxProps::default()
    } else {
        r.props()
    };
    assert!(r.at_end(), "trailing bytes in ack {p:?}");
    RxAck {
        first,
        pid,
        reason,
        props,
    }
}

/// A CONNACK as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RxConnack {
    /// Session Present flag.
    pub session_present: bool,
    /// Return code (3.1.1) / reason code (5.0).
    pub code: u8,
    /// Properties (5.0).
    pub props: RxProps,
}

/// Parses a received CONNACK of `version`.
pub fn parse_connack(version: u8, p: &[u8]) -> RxConnack {
    let (first, body) = split(p);
    assert_eq!(first, 0x20, "expected CONNACK, got {p:?}");
    let mut r = Reader { b: body, pos: 0 };
    let flags = r.u8();
    assert_eq!(flags & 0xFE, 0, "reserved CONNACK flags set");
    let code = r.u8();
    let props = if version == V5 {
        r.props()
    } else {
        RxProps::default()
    };
    assert!(r.at_end(), "trailing bytes in CONNACK {p:?}");
    RxConnack {
        session_present: flags & 1 == 1,
        code,
        props,
    }
}

/// A SUBACK or UNSUBACK as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RxSuback {
    /// First byte (0x90 or 0xB0).
    pub first: u8,
    /// Packet identifier.
    pub pid: u16,
    /// Properties (5.0).
    pub props: RxProps,
    /// One return/reason code per filter (empty for a 3.1.1 UNSUBACK).
    pub codes: Vec<u8>,
}

/// Parses a received SUBACK or UNSUBACK of `version`.
pub fn parse_suback(version: u8, p: &[u8]) -> RxSuback {
    let (first, body) = split(p);
    assert!(
        first == 0x90 || first == 0xB0,
        "expected SUBACK/UNSUBACK, got {p:?}"
    );
    let mut r = Reader { b: body, pos: 0 };
    let pid = r.u16();
    let props = if version == V5 {
        r.props()
    } else {
        RxProps::default()
    };
    RxSuback {
        first,
        pid,
        props,
        codes: r.rest().to_vec(),
    }
}

/// A 5.0 DISCONNECT as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RxDisconnect {
    /// Reason code (0 when omitted).
    pub reason: u8,
    /// Properties.
    pub props: RxProps,
}

/// Parses a received DISCONNECT.
pub fn parse_disconnect(p: &[u8]) -> RxDisconnect {
    let (first, body) = split(p);
    assert_eq!(first, 0xE0, "expected DISCONNECT, got {p:?}");
    let mut r = Reader { b: body, pos: 0 };
    let reason = if r.at_end() { 0 } else { r.u8() };
    let props = if r.at_end() {
        RxProps::default()
    } else {
        r.props()
    };
    RxDisconnect { reason, props }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varint_round_trips_boundaries() {
        for n in [
            0,
            127,
            128,
            16_383,
            16_384,
            2_097_151,
            2_097_152,
            268_435_455,
        ] {
            let b = varint(n);
            assert_eq!(decode_varint(&b), Some((n, b.len())));
        }
        assert_eq!(varint(321), vec![0xC1, 0x02]);
    }

    #[test]
    fn connect_v311_matches_spec_example_layout() {
        let p = Connect::v311("a").keep_alive(10).encode();
        assert_eq!(
            p,
            [
                0x10, 13, 0, 4, b'M', b'Q', b'T', b'T', 4, 2, 0, 10, 0, 1, b'a'
            ]
        );
    }
}
