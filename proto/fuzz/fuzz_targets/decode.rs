//! Fuzz target: decode arbitrary bytes as each protocol level; every packet that decodes must
//! re-encode, report its exact size and decode back to itself (see `checks.rs`).
#![no_main]

#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::decode_roundtrip(data));
