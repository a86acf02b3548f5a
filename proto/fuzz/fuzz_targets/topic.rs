//! Fuzz target: topic name and filter validation and matching (see `checks.rs`); input is
//! `filter\ntopic`.
#![no_main]

#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::topic_properties(data));
