//! Replays the fuzz targets' committed seeds (`proto/fuzz/seeds/<target>/`) and every input
//! a fuzzer crashed on (`proto/fuzz/regressions/<target>/`, one file each, added when the
//! crash is fixed) through the same checks the targets run, so they hold under `cargo test`.

#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

#[path = "../fuzz/checks.rs"]
mod checks;

use std::path::Path;

fn replay(target: &str, check: fn(&[u8])) -> usize {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut n = 0;
    for dir in ["seeds", "regressions"] {
        let Ok(entries) = std::fs::read_dir(root.join(dir).join(target)) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.file_name().is_some_and(|f| f == ".gitkeep") {
                continue;
            }
            let data = std::fs::read(&path).unwrap();
            let outcome = std::panic::catch_unwind(|| check(&data));
            assert!(outcome.is_ok(), "{} fails its check", path.display());
            n += 1;
        }
    }
    n
}

#[test]
fn decode_seeds_and_regressions_roundtrip() {
    assert!(replay("decode", checks::decode_roundtrip) >= 10);
}

#[test]
fn topic_seeds_and_regressions_hold() {
    assert!(replay("topic", checks::topic_properties) >= 10);
}
