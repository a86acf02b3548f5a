//! A bounds-checked cursor over one packet body.
//!
//! Owns every read the decoder makes: integers, UTF-8 strings, binary data and varints.
//! Binary data and the payload are returned as zero-copy slices of the frame. It must
//! never index without a bounds check: a short body is a [`ProtoError::Malformed`].

use bytes::{Buf, Bytes};

use super::varint;
use crate::error::ProtoError;

const TRUNCATED: ProtoError = ProtoError::Malformed("packet ended before a field was complete");

/// Cursor over the unread part of a packet body.
pub struct Reader {
    buf: Bytes,
}

impl Reader {
    /// Reads from `buf`.
    pub fn new(buf: Bytes) -> Self {
        Reader { buf }
    }

    /// Whether everything has been read.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Number of unread bytes.
    pub fn remaining(&self) -> usize {
        self.buf.len()
    }

    pub fn u8(&mut self) -> Result<u8, ProtoError> {
        if self.buf.is_empty() {
            return Err(TRUNCATED);
        }
        Ok(self.buf.get_u8())
    }

    pub fn u16(&mut self) -> Result<u16, ProtoError> {
        if self.buf.len() < 2 {
            return Err(TRUNCATED);
        }
        Ok(self.buf.get_u16())
    }

    pub fn u32(&mut self) -> Result<u32, ProtoError> {
        if self.buf.len() < 4 {
            return Err(TRUNCATED);
        }
        Ok(self.buf.get_u32())
    }

    /// A packet identifier, which must not be zero [MQTT-2.2.1-3].
    pub fn pkid(&mut self) -> Result<u16, ProtoError> {
        match self.u16()? {
            0 => Err(ProtoError::ZeroPacketId),
            id => Ok(id),
        }
    }

    /// The next `n` bytes as a zero-copy slice.
    pub fn take(&mut self, n: usize) -> Result<Bytes, ProtoError> {
        if n > self.buf.len() {
            return Err(TRUNCATED);
        }
        Ok(self.buf.split_to(n))
    }

    /// Two-byte length followed by that many bytes (Binary Data, section 1.5.6).
    pub fn binary(&mut self) -> Result<Bytes, ProtoError> {
        let n = self.u16()?;
        self.take(usize::from(n))
    }

    /// Reads a UTF-8 string, checks it is well formed without U+0000 [MQTT-1.5.4-1],
    /// [MQTT-1.5.4-2] and hands it to `f` without copying it first.
    pub fn with_str<T>(
        &mut self,
        f: impl FnOnce(&str) -> Result<T, ProtoError>,
    ) -> Result<T, ProtoError> {
        let raw = self.binary()?;
        let s = std::str::from_utf8(&raw).map_err(|_| ProtoError::InvalidUtf8)?;
        if s.contains('\0') {
            return Err(ProtoError::InvalidUtf8);
        }
        f(s)
    }

    /// A validated UTF-8 string, copied out.
    pub fn string(&mut self) -> Result<String, ProtoError> {
        self.with_str(|s| Ok(s.to_owned()))
    }

    /// A Variable Byte Integer inside the body.
    pub fn varint(&mut self) -> Result<usize, ProtoError> {
        match varint::read(&self.buf) {
            Ok(Some((v, n))) => {
                self.buf.advance(n);
                Ok(v)
            }
            Ok(None) => Err(TRUNCATED),
            Err(_) => Err(ProtoError::Malformed("invalid variable byte integer")),
        }
    }

    /// Everything left (the PUBLISH payload), zero-copy.
    pub fn rest(&mut self) -> Bytes {
        std::mem::take(&mut self.buf)
    }

    /// Fails when bytes are left over at the end of a packet.
    pub fn finish(&self) -> Result<(), ProtoError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(ProtoError::Malformed(
                "bytes left over at the end of the packet",
            ))
        }
    }
}
