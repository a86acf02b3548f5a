//! Variable Byte Integer (MQTT 5.0 section 1.5.5), used by the remaining length and by
//! property lengths and values.
//!
//! Owns reading a varint from a byte slice and computing its encoded size. It must never
//! accept more than four bytes or a non-minimal encoding [MQTT-1.5.5-1].

use crate::error::ProtoError;

/// Largest value a Variable Byte Integer can carry (four bytes).
pub const MAX: usize = 268_435_455;

/// Number of bytes the encoding of `v` takes (values above [`MAX`] count as four).
pub fn len(v: usize) -> usize {
    match v {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    }
}

/// Reads a varint from the front of `bytes`: `Ok(None)` when more bytes are needed,
/// `Ok(Some((value, bytes_used)))` when complete, and
/// [`ProtoError::MalformedRemainingLength`] when a fourth byte still has its continuation
/// bit set or the encoding is not minimal [MQTT-1.5.5-1].
pub fn read(bytes: &[u8]) -> Result<Option<(usize, usize)>, ProtoError> {
    let mut value = 0usize;
    for (i, &b) in bytes.iter().take(4).enumerate() {
        value |= usize::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            if i > 0 && b == 0 {
                return Err(ProtoError::MalformedRemainingLength);
            }
            return Ok(Some((value, i + 1)));
        }
    }
    if bytes.len() >= 4 {
        Err(ProtoError::MalformedRemainingLength)
    } else {
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boundaries_use_the_minimum_number_of_bytes() {
        for (v, n) in [
            (0, 1),
            (127, 1),
            (128, 2),
            (16_383, 2),
            (16_384, 3),
            (2_097_151, 3),
        ] {
            assert_eq!(len(v), n, "{v}");
        }
        assert_eq!(len(2_097_152), 4);
        assert_eq!(len(MAX), 4);
    }

    #[test]
    fn reads_spec_examples() {
        assert_eq!(read(&[0x00]).unwrap(), Some((0, 1)));
        assert_eq!(read(&[0x7f]).unwrap(), Some((127, 1)));
        assert_eq!(read(&[0x80, 0x01]).unwrap(), Some((128, 2)));
        assert_eq!(read(&[0xff, 0xff, 0xff, 0x7f]).unwrap(), Some((MAX, 4)));
        assert_eq!(read(&[0xff, 0xff]).unwrap(), None);
        assert_eq!(read(&[]).unwrap(), None);
    }

    #[test]
    fn fifth_byte_is_rejected_without_waiting_for_it() {
        assert_eq!(
            read(&[0xff, 0xff, 0xff, 0xff]),
            Err(ProtoError::MalformedRemainingLength)
        );
    }

    #[test]
    fn non_minimal_encoding_is_rejected() {
        // [MQTT-1.5.5-1]
        assert_eq!(
            read(&[0x80, 0x00]),
            Err(ProtoError::MalformedRemainingLength)
        );
    }
}
