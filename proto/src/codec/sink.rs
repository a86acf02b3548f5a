//! Where the encoder writes: either a [`BytesMut`] or a [`Counter`] that only adds up
//! sizes and notes fields too long to encode.
//!
//! One description of each packet body drives both, so `encoded_len` and `encode` can
//! never disagree and property lengths are known before the properties are written,
//! without an intermediate buffer. It must never allocate per packet.

use bytes::{BufMut, BytesMut};

use super::varint;
use crate::error::ProtoError;
use crate::packet::UserProperty;

/// Counts the bytes an encoding would take and records the first field that cannot be
/// encoded.
#[derive(Default)]
pub struct Counter {
    /// Bytes counted so far.
    pub n: usize,
    /// First encoding error seen.
    pub err: Option<ProtoError>,
}

impl Counter {
    fn fail(&mut self, e: ProtoError) {
        if self.err.is_none() {
            self.err = Some(e);
        }
    }
}

/// Something that values of an MQTT encoding can be written to.
pub trait Sink {
    fn put_u8(&mut self, v: u8);
    fn put_u16(&mut self, v: u16);
    fn put_u32(&mut self, v: u32);
    fn put_raw(&mut self, b: &[u8]);
    /// A Variable Byte Integer; values above [`varint::MAX`] are an error.
    fn put_varint(&mut self, v: usize);
    /// The two-byte length of a string or binary field; above 65,535 is an error.
    fn put_len16(&mut self, len: usize);

    fn put_str(&mut self, s: &str) {
        self.put_len16(s.len());
        self.put_raw(s.as_bytes());
    }

    fn put_bin(&mut self, b: &[u8]) {
        self.put_len16(b.len());
        self.put_raw(b);
    }

    fn prop_u8(&mut self, id: u8, v: Option<u8>) {
        if let Some(v) = v {
            self.put_u8(id);
            self.put_u8(v);
        }
    }

    fn prop_u16(&mut self, id: u8, v: Option<u16>) {
        if let Some(v) = v {
            self.put_u8(id);
            self.put_u16(v);
        }
    }

    fn prop_u32(&mut self, id: u8, v: Option<u32>) {
        if let Some(v) = v {
            self.put_u8(id);
            self.put_u32(v);
        }
    }

    fn prop_varint(&mut self, id: u8, v: Option<u32>) {
        if let Some(v) = v {
            self.put_u8(id);
            self.put_varint(v as usize);
        }
    }

    fn prop_str(&mut self, id: u8, v: Option<&str>) {
        if let Some(v) = v {
            self.put_u8(id);
            self.put_str(v);
        }
    }

    fn prop_bin(&mut self, id: u8, v: Option<&[u8]>) {
        if let Some(v) = v {
            self.put_u8(id);
            self.put_bin(v);
        }
    }

    fn prop_users(&mut self, id: u8, users: &[UserProperty]) {
        for (k, v) in users {
            self.put_u8(id);
            self.put_str(k);
            self.put_str(v);
        }
    }
}

impl Sink for Counter {
    fn put_u8(&mut self, _: u8) {
        self.n += 1;
    }
    fn put_u16(&mut self, _: u16) {
        self.n += 2;
    }
    fn put_u32(&mut self, _: u32) {
        self.n += 4;
    }
    fn put_raw(&mut self, b: &[u8]) {
        self.n += b.len();
    }
    fn put_varint(&mut self, v: usize) {
        if v > varint::MAX {
            self.fail(ProtoError::Malformed(
                "value too large for a variable byte integer",
            ));
        }
        self.n += varint::len(v);
    }
    fn put_len16(&mut self, len: usize) {
        if len > usize::from(u16::MAX) {
            self.fail(ProtoError::Malformed(
                "string or binary field longer than 65535 bytes",
            ));
        }
        self.n += 2;
    }
}

impl Sink for BytesMut {
    fn put_u8(&mut self, v: u8) {
        BufMut::put_u8(self, v);
    }
    fn put_u16(&mut self, v: u16) {
        BufMut::put_u16(self, v);
    }
    fn put_u32(&mut self, v: u32) {
        BufMut::put_u32(self, v);
    }
    fn put_raw(&mut self, b: &[u8]) {
        self.put_slice(b);
    }
    fn put_varint(&mut self, mut v: usize) {
        loop {
            let mut byte = (v % 128) as u8;
            v /= 128;
            if v > 0 {
                byte |= 0x80;
            }
            BufMut::put_u8(self, byte);
            if v == 0 {
                break;
            }
        }
    }
    fn put_len16(&mut self, len: usize) {
        BufMut::put_u16(self, len as u16);
    }
}
