//! MQTT wire codec for protocol levels 3 (3.1), 4 (3.1.1) and 5 (5.0).
//!
//! Owns framing (fixed header, remaining length, the packet size limit) and dispatches
//! to the body decoder and encoder. It never performs IO and must never panic on any
//! input: every read is bounds-checked and every rule violation is a [`ProtoError`]
//! whose [`ProtoError::reason_code`] is the one MQTT 5.0 asks for.
//!
//! The size limit is enforced as soon as the fixed header is complete, before the body
//! is buffered, so a peer cannot make us allocate beyond it.

use bytes::BytesMut;

use crate::error::ProtoError;
use crate::packet::{Packet, Protocol, Publish, PublishProperties};

mod decode;
mod encode;
mod properties;
mod reader;
mod sink;
mod varint;

#[cfg(test)]
mod tests_util;
#[cfg(test)]
mod tests_v311;
#[cfg(test)]
mod tests_v5;
#[cfg(test)]
mod tests_validation;

/// Limits enforced while decoding.
#[derive(Debug, Clone, Copy)]
pub struct DecodeLimits {
    /// Largest acceptable packet, fixed header included.
    pub max_packet_size: usize,
}

/// Decodes one packet from the front of `buf`.
///
/// Returns `Ok(None)`, leaving `buf` untouched, while the fixed header or the body is
/// incomplete. A packet whose declared size exceeds `limits.max_packet_size` is
/// rejected as soon as its fixed header is complete. `protocol` decides the encoding of
/// every packet except CONNECT, whose own protocol name and level decide.
pub fn decode(
    buf: &mut BytesMut,
    protocol: Protocol,
    limits: &DecodeLimits,
) -> Result<Option<Packet>, ProtoError> {
    let Some(&first) = buf.first() else {
        return Ok(None);
    };
    let Some((remaining, len_bytes)) = varint::read(buf.get(1..).unwrap_or_default())? else {
        return Ok(None);
    };
    decode::check_header(first, protocol)?;
    let header = 1 + len_bytes;
    let total = header + remaining;
    if total > limits.max_packet_size {
        return Err(ProtoError::PacketTooLarge {
            size: total,
            max: limits.max_packet_size,
        });
    }
    if buf.len() < total {
        buf.reserve(total - buf.len());
        return Ok(None);
    }
    let mut frame = buf.split_to(total).freeze();
    let body = frame.split_off(header);
    decode::packet(first, body, protocol).map(Some)
}

/// The first byte and the total size (fixed header included) of the packet at the front of
/// `buf`, once its fixed header is complete; `Ok(None)` before. Reads nothing else and
/// reserves nothing: a caller that must not buffer ahead of the bytes received (a
/// connection before its CONNECT) checks the size here before calling [`decode`].
pub fn frame_size(buf: &[u8]) -> Result<Option<(u8, usize)>, ProtoError> {
    let Some(&first) = buf.first() else {
        return Ok(None);
    };
    let Some((remaining, len_bytes)) = varint::read(buf.get(1..).unwrap_or_default())? else {
        return Ok(None);
    };
    Ok(Some((first, 1 + len_bytes + remaining)))
}

/// Appends the encoding of `packet` to `out`.
///
/// Fails, writing nothing, when the packet cannot be represented in `protocol` (for
/// example a 3.x PUBLISH without a topic), a string is longer than 65,535 bytes or the
/// remaining length would exceed 268,435,455.
pub fn encode(packet: &Packet, protocol: Protocol, out: &mut BytesMut) -> Result<(), ProtoError> {
    encode::check(packet, protocol)?;
    let mut counter = sink::Counter::default();
    encode::body(packet, protocol, &mut counter);
    if let Some(e) = counter.err {
        return Err(e);
    }
    let remaining = counter.n;
    check_remaining(remaining)?;
    out.reserve(1 + varint::len(remaining) + remaining);
    sink::Sink::put_u8(out, encode::first_byte(packet));
    sink::Sink::put_varint(out, remaining);
    encode::body(packet, protocol, out);
    Ok(())
}

/// Appends the encoding of the PUBLISH `p` with its message-level properties (Payload
/// Format Indicator, Response Topic, Correlation Data, User Properties, Content Type) taken
/// from `shared` instead of `p.properties`, whose own values for those are ignored; the
/// per-hop ones (Message Expiry Interval, Topic Alias, Subscription Identifiers) come from
/// `p.properties`. The bytes are those [`encode`] writes for the merged packet. Lets one
/// message be sent to many subscribers without copying its properties for each.
pub fn encode_publish_shared(
    p: &Publish,
    shared: &PublishProperties,
    protocol: Protocol,
    out: &mut BytesMut,
) -> Result<(), ProtoError> {
    let v5 = protocol.is_v5();
    encode::check_publish(p, v5)?;
    let mut counter = sink::Counter::default();
    encode::publish_shared(p, shared, v5, &mut counter);
    if let Some(e) = counter.err {
        return Err(e);
    }
    let remaining = counter.n;
    check_remaining(remaining)?;
    out.reserve(1 + varint::len(remaining) + remaining);
    sink::Sink::put_u8(out, encode::publish_first_byte(p));
    sink::Sink::put_varint(out, remaining);
    encode::publish_shared(p, shared, v5, out);
    Ok(())
}

/// Exact size of what [`encode_publish_shared`] writes, fixed header included.
pub fn encoded_publish_shared_len(
    p: &Publish,
    shared: &PublishProperties,
    protocol: Protocol,
) -> usize {
    let mut counter = sink::Counter::default();
    encode::publish_shared(p, shared, protocol.is_v5(), &mut counter);
    1 + varint::len(counter.n) + counter.n
}

/// Exact size of the encoding, fixed header included (used to honour a peer's Maximum
/// Packet Size). Meaningful only for packets that [`encode`] accepts.
pub fn encoded_len(packet: &Packet, protocol: Protocol) -> usize {
    let mut counter = sink::Counter::default();
    encode::body(packet, protocol, &mut counter);
    1 + varint::len(counter.n) + counter.n
}

/// A remaining length must fit in a four-byte Variable Byte Integer.
fn check_remaining(remaining: usize) -> Result<(), ProtoError> {
    if remaining > varint::MAX {
        return Err(ProtoError::PacketTooLarge {
            size: 1 + varint::len(remaining) + remaining,
            max: 1 + 4 + varint::MAX,
        });
    }
    Ok(())
}
