//! Fuzz target: decode arbitrary bytes as each protocol level; every packet that
//! decodes must re-encode, report its exact size and decode back to itself.
#![no_main]

use bytes::BytesMut;
use canopy_proto::{DecodeLimits, Packet, Protocol, decode, encode, encoded_len};
use libfuzzer_sys::fuzz_target;

const LIMITS: DecodeLimits = DecodeLimits {
    max_packet_size: 1 << 20,
};

fuzz_target!(|data: &[u8]| {
    for protocol in [Protocol::V31, Protocol::V311, Protocol::V5] {
        let mut buf = BytesMut::from(data);
        while let Ok(Some(packet)) = decode(&mut buf, protocol, &LIMITS) {
            // A CONNECT carries its own protocol level.
            let p = match &packet {
                Packet::Connect(c) => c.protocol.unwrap_or(protocol),
                _ => protocol,
            };
            let mut out = BytesMut::new();
            encode(&packet, p, &mut out).expect("a decoded packet re-encodes");
            assert_eq!(encoded_len(&packet, p), out.len());
            let again = decode(&mut out, p, &LIMITS).expect("re-encoding decodes");
            assert_eq!(again.as_ref(), Some(&packet));
            assert!(out.is_empty());
        }
    }
});
