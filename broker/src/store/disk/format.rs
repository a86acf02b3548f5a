//! The record encoding of the disk store: how messages, wills, sessions and deliveries
//! become the bytes of a table value, and back.
//!
//! Owns every byte layout below the table level (documented in `docs/persistence.md`).
//! Messages and wills reuse the MQTT 5.0 PUBLISH encoding of `canopy_proto`, so every
//! property round-trips exactly; a small header carries what PUBLISH cannot (expiry as
//! wall-clock time, delivery state, granted QoS, subscription identifiers, will delay).
//! Decoding never panics: every read is bounds-checked and any surprise is a
//! [`FormatError`]. It never touches the engine or the file system.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use canopy_proto::{
    DecodeLimits, Packet, Protocol, Publish, PublishProperties, QoS, RetainHandling,
    SubscriptionOptions, TopicName, Will, WillProperties,
};

use crate::message::Message;
use crate::store::{
    ActivationRecord, DeliveryRecord, DeliveryState, SessionRecord, SubscriptionRecord,
};

/// Version byte that starts every record value. A newer byte is refused as corrupt.
pub const RECORD_VERSION: u8 = 1;

/// Newest session record version: 2 adds event activation to subscriptions.
pub const SESSION_RECORD_VERSION: u8 = 2;

/// Why a record could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    /// The record ended before a field did.
    #[error("record truncated while reading {0}")]
    Truncated(&'static str),
    /// A field holds a value that this version never writes.
    #[error("invalid {0}")]
    Invalid(&'static str),
    /// The record was written by a newer record version.
    #[error("record version {0} is newer than the supported {RECORD_VERSION}")]
    NewerVersion(u8),
    /// The embedded PUBLISH encoding is not valid.
    #[error("embedded PUBLISH: {0}")]
    Publish(#[from] canopy_proto::ProtoError),
    /// Bytes were left over after the record.
    #[error("{0} trailing bytes after the record")]
    Trailing(usize),
}

/// Wall-clock unix milliseconds of `t`, converted at the time of the call (saturating at
/// the epoch and at `i64::MAX`).
pub fn instant_to_unix_ms(t: Instant) -> i64 {
    let (now_i, now_s) = (Instant::now(), SystemTime::now());
    let wall = if t >= now_i {
        now_s.checked_add(t - now_i)
    } else {
        now_s.checked_sub(now_i - t)
    };
    let ms = wall
        .and_then(|w| w.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_millis());
    i64::try_from(ms).unwrap_or(i64::MAX)
}

/// The `Instant` of wall-clock unix milliseconds `ms`, as seen now. Past times that
/// `Instant` cannot represent become now (they are due anyway); far futures saturate at
/// about 136 years from now.
pub fn unix_ms_to_instant(ms: i64) -> Instant {
    let (now_i, now_s) = (Instant::now(), SystemTime::now());
    let target = UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0));
    match target.duration_since(now_s) {
        Ok(ahead) => {
            let ahead = ahead.min(Duration::from_secs(u64::from(u32::MAX)));
            now_i.checked_add(ahead).unwrap_or(now_i)
        }
        Err(behind) => now_i.checked_sub(behind.duration()).unwrap_or(now_i),
    }
}

/// Appends fields to a record.
#[derive(Default)]
struct Writer(Vec<u8>);

impl Writer {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u16(&mut self, v: u16) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    fn i64(&mut self, v: i64) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    fn opt_u32(&mut self, v: Option<u32>) {
        match v {
            None => self.u8(0),
            Some(v) => {
                self.u8(1);
                self.u32(v);
            }
        }
    }
    fn opt_time(&mut self, t: Option<Instant>) {
        match t {
            None => self.u8(0),
            Some(t) => {
                self.u8(1);
                self.i64(instant_to_unix_ms(t));
            }
        }
    }
    fn bytes(&mut self, b: &[u8]) -> Result<(), FormatError> {
        let len = u32::try_from(b.len()).map_err(|_| FormatError::Invalid("field length"))?;
        self.u32(len);
        self.0.extend_from_slice(b);
        Ok(())
    }
}

/// Reads fields from a record; every read is bounds-checked.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], FormatError> {
        if self.0.len() < n {
            return Err(FormatError::Truncated(what));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], FormatError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N, what)?);
        Ok(a)
    }
    fn u8(&mut self, what: &'static str) -> Result<u8, FormatError> {
        Ok(self.array::<1>(what)?[0])
    }
    fn u16(&mut self, what: &'static str) -> Result<u16, FormatError> {
        Ok(u16::from_be_bytes(self.array(what)?))
    }
    fn u32(&mut self, what: &'static str) -> Result<u32, FormatError> {
        Ok(u32::from_be_bytes(self.array(what)?))
    }
    fn i64(&mut self, what: &'static str) -> Result<i64, FormatError> {
        Ok(i64::from_be_bytes(self.array(what)?))
    }
    fn flag(&mut self, what: &'static str) -> Result<bool, FormatError> {
        match self.u8(what)? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(FormatError::Invalid(what)),
        }
    }
    fn opt_u32(&mut self, what: &'static str) -> Result<Option<u32>, FormatError> {
        Ok(if self.flag(what)? {
            Some(self.u32(what)?)
        } else {
            None
        })
    }
    fn opt_time(&mut self, what: &'static str) -> Result<Option<Instant>, FormatError> {
        Ok(if self.flag(what)? {
            Some(unix_ms_to_instant(self.i64(what)?))
        } else {
            None
        })
    }
    fn bytes(&mut self, what: &'static str) -> Result<&'a [u8], FormatError> {
        let len = self.u32(what)? as usize;
        self.take(len, what)
    }
    fn str(&mut self, what: &'static str) -> Result<&'a str, FormatError> {
        std::str::from_utf8(self.bytes(what)?).map_err(|_| FormatError::Invalid(what))
    }
    fn version(&mut self) -> Result<(), FormatError> {
        match self.u8("record version")? {
            0 => Err(FormatError::Invalid("record version 0")),
            v if v > RECORD_VERSION => Err(FormatError::NewerVersion(v)),
            _ => Ok(()),
        }
    }
    /// Reads the version byte of a session record, which may be up to
    /// [`SESSION_RECORD_VERSION`].
    fn session_version(&mut self) -> Result<u8, FormatError> {
        match self.u8("record version")? {
            0 => Err(FormatError::Invalid("record version 0")),
            v if v > SESSION_RECORD_VERSION => Err(FormatError::NewerVersion(v)),
            v => Ok(v),
        }
    }
    fn finish(&self) -> Result<(), FormatError> {
        match self.0.len() {
            0 => Ok(()),
            n => Err(FormatError::Trailing(n)),
        }
    }
}

fn qos(v: u8) -> Result<QoS, FormatError> {
    QoS::from_u8(v).ok_or(FormatError::Invalid("qos"))
}

/// Writes a PUBLISH (5.0 encoding, packet id 1 when QoS > 0) as a length-prefixed field.
fn put_publish(
    w: &mut Writer,
    topic: &TopicName,
    qos: QoS,
    retain: bool,
    properties: PublishProperties,
    payload: Bytes,
) -> Result<(), FormatError> {
    let packet = Packet::Publish(Publish {
        dup: false,
        qos,
        retain,
        topic: Some(topic.clone()),
        pkid: (qos != QoS::AtMostOnce).then_some(1),
        properties,
        payload,
    });
    let mut out = BytesMut::new();
    canopy_proto::encode(&packet, Protocol::V5, &mut out)?;
    w.bytes(&out)
}

/// Reads back a field written by [`put_publish`], copying it out of the engine's buffer.
fn get_publish(r: &mut Reader) -> Result<(TopicName, Publish), FormatError> {
    let mut buf = BytesMut::from(r.bytes("publish")?);
    let limits = DecodeLimits {
        max_packet_size: usize::MAX,
    };
    let packet = canopy_proto::decode(&mut buf, Protocol::V5, &limits)?;
    if !buf.is_empty() {
        return Err(FormatError::Trailing(buf.len()));
    }
    match packet {
        Some(Packet::Publish(mut p)) => {
            let topic = p
                .topic
                .take()
                .ok_or(FormatError::Invalid("publish without topic"))?;
            Ok((topic, p))
        }
        Some(_) => Err(FormatError::Invalid("packet is not a PUBLISH")),
        None => Err(FormatError::Truncated("publish")),
    }
}

fn put_message(w: &mut Writer, m: &Message) -> Result<(), FormatError> {
    w.opt_time(m.expires_at);
    put_publish(
        w,
        &m.topic,
        m.qos,
        m.retain,
        (*m.properties).clone(),
        m.payload.clone(),
    )
}

fn get_message(r: &mut Reader) -> Result<Message, FormatError> {
    let expires_at = r.opt_time("message expiry")?;
    let (topic, p) = get_publish(r)?;
    Ok(Message {
        topic,
        qos: p.qos,
        retain: p.retain,
        properties: p.properties.into(),
        payload: p.payload,
        expires_at,
    })
}

/// Encodes a retained message (the table key is its topic).
pub fn encode_message(m: &Message) -> Result<Vec<u8>, FormatError> {
    let mut w = Writer::default();
    w.u8(RECORD_VERSION);
    put_message(&mut w, m)?;
    Ok(w.0)
}

/// Decodes a record written by [`encode_message`].
pub fn decode_message(b: &[u8]) -> Result<Message, FormatError> {
    let mut r = Reader(b);
    r.version()?;
    let m = get_message(&mut r)?;
    r.finish()?;
    Ok(m)
}

fn state_parts(s: DeliveryState) -> (u8, u16) {
    match s {
        DeliveryState::Queued => (0, 0),
        DeliveryState::AwaitPubAck(p) => (1, p),
        DeliveryState::AwaitPubRec(p) => (2, p),
        DeliveryState::AwaitPubComp(p) => (3, p),
    }
}

/// Encodes a delivery (the table key is client id + seq, so `seq` is not repeated).
pub fn encode_delivery(d: &DeliveryRecord) -> Result<Vec<u8>, FormatError> {
    let mut w = Writer::default();
    w.u8(RECORD_VERSION);
    w.u8(d.qos as u8);
    w.u8(u8::from(d.retain));
    let (tag, pkid) = state_parts(d.state);
    w.u8(tag);
    w.u16(pkid);
    let n = u32::try_from(d.sub_ids.len()).map_err(|_| FormatError::Invalid("sub id count"))?;
    w.u32(n);
    for id in &d.sub_ids {
        w.u32(*id);
    }
    put_message(&mut w, &d.msg)?;
    Ok(w.0)
}

/// Decodes a record written by [`encode_delivery`], for the delivery numbered `seq`.
pub fn decode_delivery(seq: u64, b: &[u8]) -> Result<DeliveryRecord, FormatError> {
    let mut r = Reader(b);
    r.version()?;
    let qos = qos(r.u8("delivery qos")?)?;
    let retain = r.flag("delivery retain")?;
    let tag = r.u8("delivery state")?;
    let pkid = r.u16("delivery packet id")?;
    let state = match (tag, pkid) {
        (0, 0) => DeliveryState::Queued,
        (1, p) if p != 0 => DeliveryState::AwaitPubAck(p),
        (2, p) if p != 0 => DeliveryState::AwaitPubRec(p),
        (3, p) if p != 0 => DeliveryState::AwaitPubComp(p),
        _ => return Err(FormatError::Invalid("delivery state")),
    };
    let n = r.u32("sub id count")? as usize;
    let mut sub_ids = Vec::with_capacity(n.min(r.0.len() / 4));
    for _ in 0..n {
        sub_ids.push(r.u32("sub id")?);
    }
    let msg = Arc::new(get_message(&mut r)?);
    r.finish()?;
    Ok(DeliveryRecord {
        seq,
        msg,
        qos,
        retain,
        sub_ids,
        state,
    })
}

fn put_will(w: &mut Writer, will: &Will) -> Result<(), FormatError> {
    let p = &will.properties;
    w.opt_u32(p.will_delay_interval);
    let props = PublishProperties {
        payload_format_indicator: p.payload_format_indicator,
        message_expiry_interval: p.message_expiry_interval,
        response_topic: p.response_topic.clone(),
        correlation_data: p.correlation_data.clone(),
        user_properties: p.user_properties.clone(),
        content_type: p.content_type.clone(),
        ..PublishProperties::default()
    };
    put_publish(
        w,
        &will.topic,
        will.qos,
        will.retain,
        props,
        will.payload.clone(),
    )
}

fn get_will(r: &mut Reader) -> Result<Will, FormatError> {
    let will_delay_interval = r.opt_u32("will delay")?;
    let (topic, p) = get_publish(r)?;
    let q = p.properties;
    if q.topic_alias.is_some() || !q.subscription_identifiers.is_empty() {
        return Err(FormatError::Invalid("will properties"));
    }
    Ok(Will {
        topic,
        payload: p.payload,
        qos: p.qos,
        retain: p.retain,
        properties: WillProperties {
            will_delay_interval,
            payload_format_indicator: q.payload_format_indicator,
            message_expiry_interval: q.message_expiry_interval,
            content_type: q.content_type,
            response_topic: q.response_topic,
            correlation_data: q.correlation_data,
            user_properties: q.user_properties,
        },
    })
}

fn options_byte(o: &SubscriptionOptions) -> u8 {
    let rh = match o.retain_handling {
        RetainHandling::SendAtSubscribe => 0,
        RetainHandling::SendIfNew => 1,
        RetainHandling::DoNotSend => 2,
    };
    (o.qos as u8) | (u8::from(o.no_local) << 2) | (u8::from(o.retain_as_published) << 3) | (rh << 4)
}

fn options_from(b: u8) -> Result<SubscriptionOptions, FormatError> {
    let retain_handling = match (b >> 4) & 0b11 {
        0 => RetainHandling::SendAtSubscribe,
        1 => RetainHandling::SendIfNew,
        2 => RetainHandling::DoNotSend,
        _ => return Err(FormatError::Invalid("retain handling")),
    };
    if b & 0xc0 != 0 {
        return Err(FormatError::Invalid("subscription options"));
    }
    Ok(SubscriptionOptions {
        qos: qos(b & 0b11)?,
        no_local: b & 0b100 != 0,
        retain_as_published: b & 0b1000 != 0,
        retain_handling,
    })
}

/// Encodes a session record (the table key is its client id).
pub fn encode_session(s: &SessionRecord) -> Result<Vec<u8>, FormatError> {
    let mut w = Writer::default();
    // Version 2 adds event activation per subscription; sessions without any are still
    // written as version 1, byte for byte.
    let v2 = s.subscriptions.iter().any(|sub| sub.activation.is_some());
    w.u8(if v2 {
        SESSION_RECORD_VERSION
    } else {
        RECORD_VERSION
    });
    w.u32(s.expiry_interval);
    w.opt_time(s.expires_at);
    w.opt_time(s.will_at);
    match &s.will {
        None => w.u8(0),
        Some(will) => {
            w.u8(1);
            put_will(&mut w, will)?;
        }
    }
    let n = u32::try_from(s.subscriptions.len())
        .map_err(|_| FormatError::Invalid("subscription count"))?;
    w.u32(n);
    for sub in &s.subscriptions {
        w.bytes(sub.filter.as_bytes())?;
        w.u8(options_byte(&sub.options));
        w.opt_u32(sub.identifier);
        if v2 {
            put_activation(&mut w, sub.activation.as_ref())?;
        }
    }
    Ok(w.0)
}

/// Decodes a record written by [`encode_session`] for `client_id`.
pub fn decode_session(client_id: &str, b: &[u8]) -> Result<SessionRecord, FormatError> {
    let mut r = Reader(b);
    let version = r.session_version()?;
    let expiry_interval = r.u32("session expiry interval")?;
    let expires_at = r.opt_time("session expiry")?;
    let will_at = r.opt_time("will time")?;
    let will = if r.flag("will flag")? {
        Some(get_will(&mut r)?)
    } else {
        None
    };
    let n = r.u32("subscription count")? as usize;
    let mut subscriptions = Vec::with_capacity(n.min(r.0.len() / 6));
    for _ in 0..n {
        let filter = r.str("subscription filter")?.to_owned();
        let options = options_from(r.u8("subscription options")?)?;
        let identifier = r.opt_u32("subscription identifier")?;
        let activation = if version >= 2 {
            get_activation(&mut r)?
        } else {
            None
        };
        subscriptions.push(SubscriptionRecord {
            filter,
            options,
            identifier,
            activation,
        });
    }
    r.finish()?;
    Ok(SessionRecord {
        client_id: Arc::from(client_id),
        expiry_interval,
        expires_at,
        will,
        will_at,
        subscriptions,
    })
}

/// Encodes one subscription (the table key is its client id and filter): a version
/// byte, the options byte, the identifier and the activation with its state.
pub fn encode_subscription(sub: &SubscriptionRecord) -> Result<Vec<u8>, FormatError> {
    let mut w = Writer::default();
    w.u8(RECORD_VERSION);
    w.u8(options_byte(&sub.options));
    w.opt_u32(sub.identifier);
    put_activation(&mut w, sub.activation.as_ref())?;
    Ok(w.0)
}

/// Decodes a record written by [`encode_subscription`] for `filter`.
pub fn decode_subscription(filter: &str, b: &[u8]) -> Result<SubscriptionRecord, FormatError> {
    let mut r = Reader(b);
    r.version()?;
    let options = options_from(r.u8("subscription options")?)?;
    let identifier = r.opt_u32("subscription identifier")?;
    let activation = get_activation(&mut r)?;
    r.finish()?;
    Ok(SubscriptionRecord {
        filter: filter.to_owned(),
        options,
        identifier,
        activation,
    })
}

fn put_activation(w: &mut Writer, a: Option<&ActivationRecord>) -> Result<(), FormatError> {
    match a {
        None => w.u8(0),
        Some(a) => {
            w.u8(1);
            w.bytes(a.activate_on.as_bytes())?;
            match &a.deactivate_on {
                None => w.u8(0),
                Some(d) => {
                    w.u8(1);
                    w.bytes(d.as_bytes())?;
                }
            }
            w.u8(u8::from(a.replay_retained));
            w.u8(u8::from(a.active));
        }
    }
    Ok(())
}

fn get_activation(r: &mut Reader<'_>) -> Result<Option<ActivationRecord>, FormatError> {
    if !r.flag("activation flag")? {
        return Ok(None);
    }
    Ok(Some(ActivationRecord {
        activate_on: r.str("activate-on filter")?.to_owned(),
        deactivate_on: if r.flag("deactivate-on flag")? {
            Some(r.str("deactivate-on filter")?.to_owned())
        } else {
            None
        },
        replay_retained: r.flag("replay flag")?,
        active: r.flag("active flag")?,
    }))
}
