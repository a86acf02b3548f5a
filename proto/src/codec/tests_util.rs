//! Helpers shared by the codec's unit tests.

use bytes::BytesMut;

use super::{DecodeLimits, decode, encode, encoded_len};
use crate::error::ProtoError;
use crate::packet::{Packet, Protocol};

pub const LIMITS: DecodeLimits = DecodeLimits {
    max_packet_size: 1 << 20,
};

/// Decodes `bytes` as one whole packet; leftover input is a test failure.
pub fn dec(bytes: &[u8], protocol: Protocol) -> Result<Packet, ProtoError> {
    let mut buf = BytesMut::from(bytes);
    let packet = decode(&mut buf, protocol, &LIMITS)?.expect("complete packet");
    assert!(buf.is_empty(), "decoder left {} bytes", buf.len());
    Ok(packet)
}

/// Decodes `bytes`, expecting an error.
pub fn dec_err(bytes: &[u8], protocol: Protocol) -> ProtoError {
    let mut buf = BytesMut::from(bytes);
    match decode(&mut buf, protocol, &LIMITS) {
        Err(e) => e,
        Ok(p) => panic!("expected an error, decoded {p:?}"),
    }
}

/// Encodes `packet`.
pub fn enc(packet: &Packet, protocol: Protocol) -> Vec<u8> {
    let mut out = BytesMut::new();
    encode(packet, protocol, &mut out).expect("encodable");
    assert_eq!(
        encoded_len(packet, protocol),
        out.len(),
        "encoded_len disagrees"
    );
    out.to_vec()
}

/// `packet` encodes to exactly `bytes` and `bytes` decodes to exactly `packet`.
pub fn exact(packet: Packet, protocol: Protocol, bytes: &[u8]) {
    assert_eq!(enc(&packet, protocol), bytes, "encoding of {packet:?}");
    assert_eq!(dec(bytes, protocol).expect("decodes"), packet);
}
