//! The properties the fuzz targets check, shared with `proto/tests/fuzz_regressions.rs`,
//! which replays the committed seeds and every input a fuzzer ever crashed on through these
//! same functions under `cargo test`. Each function panics when a property fails.

use bytes::BytesMut;
use canopy_proto::topic::matches;
use canopy_proto::{
    DecodeLimits, Packet, Protocol, SharedFilter, TopicFilter, TopicName, decode, encode,
    encoded_len,
};

const LIMITS: DecodeLimits = DecodeLimits {
    max_packet_size: 1 << 20,
};

/// Decodes `data` as each protocol level; every packet that decodes must re-encode, report
/// its exact size and decode back to itself.
pub fn decode_roundtrip(data: &[u8]) {
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
}

/// Topic names and filters: input is `filter\ntopic` (anything else is one string tried as
/// both). Validation must never panic; for a valid pair the reference matcher must agree
/// with properties that hold by definition: a filter without wildcards matches exactly
/// itself, `#` matches every topic not starting with `$` [MQTT-4.7.2-1], a filter not ending
/// in `#` matches only topics of its own depth, and a shared subscription's inner filter is
/// itself a valid filter.
pub fn topic_properties(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (filter, topic) = text.split_once('\n').unwrap_or((text, text));
    let name = TopicName::new(topic);
    let f = TopicFilter::new(filter);
    if let Ok(f) = &f {
        if let Ok(Some(shared)) = SharedFilter::parse(f) {
            assert!(TopicFilter::validate(shared.filter.as_str()).is_ok());
            assert!(!shared.group.contains(['/', '+', '#']));
        }
        assert_eq!(f.depth(), f.levels().count());
    }
    let (Ok(f), Ok(name)) = (f, name) else {
        return;
    };
    let m = matches(f.as_str(), name.as_str());
    assert_eq!(m, f.matches(&name));
    if !f.has_wildcards() {
        assert_eq!(m, f.as_str() == name.as_str(), "{f:?} {name:?}");
    }
    assert_eq!(matches("#", name.as_str()), !name.as_str().starts_with('$'));
    if m && !f.as_str().ends_with('#') {
        assert_eq!(f.depth(), name.depth(), "{f:?} {name:?}");
    }
}
