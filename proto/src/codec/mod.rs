//! MQTT wire codec (placeholder signatures; the implementation lands with the codec work).

use bytes::BytesMut;

use crate::error::ProtoError;
use crate::packet::{Packet, Protocol};

/// Limits enforced while decoding.
#[derive(Debug, Clone, Copy)]
pub struct DecodeLimits {
    /// Largest acceptable packet, fixed header included.
    pub max_packet_size: usize,
}

/// Decodes one packet from the front of `buf`.
pub fn decode(
    _buf: &mut BytesMut,
    _protocol: Protocol,
    _limits: &DecodeLimits,
) -> Result<Option<Packet>, ProtoError> {
    Err(ProtoError::Malformed("codec not implemented"))
}

/// Appends the encoding of `packet` to `out`.
pub fn encode(_packet: &Packet, _protocol: Protocol, _out: &mut BytesMut) -> Result<(), ProtoError> {
    Err(ProtoError::Malformed("codec not implemented"))
}

/// Size in bytes of the encoding of `packet`, fixed header included.
pub fn encoded_len(_packet: &Packet, _protocol: Protocol) -> usize {
    0
}
