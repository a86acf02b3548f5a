//! Tests for the `[[resource]]` tables: defaults, every key set, and each kind of bad value
//! reported with its line and dotted key.

use std::time::Duration;

use super::resources::{DEFAULT_LEASE, DEFAULT_MAX_CONCURRENT, DEFAULT_QUEUE_LIMIT};
use super::tests::{fail, parse};
use super::*;

fn assert_at(err: &ConfigError, line: usize, key: &str) {
    assert_eq!(err.line(), Some(line), "{err}");
    assert_eq!(err.key(), Some(key), "{err}");
}

#[test]
fn no_resource_by_default_and_a_bare_one_takes_the_defaults() {
    assert!(parse("").resource.is_empty());
    let config = parse("[[resource]]\nname = \"license\"\n");
    assert_eq!(
        config.resource,
        [ResourceConfig {
            name: "license".to_owned(),
            max_concurrent: DEFAULT_MAX_CONCURRENT,
            lease: DEFAULT_LEASE,
            queue_limit: DEFAULT_QUEUE_LIMIT,
            mode: ResourceMode::Queue,
            slot: DEFAULT_LEASE,
            grace: Duration::ZERO,
        }]
    );
}

#[test]
fn every_resource_key_can_be_set() {
    let config = parse(
        r#"
[[resource]]
name = "license"
max_concurrent = 5
lease = "30s"
queue_limit = 0
mode = "slots"
slot = "15m"
grace = "5s"
"#,
    );
    let r = &config.resource[0];
    assert_eq!(r.max_concurrent, 5);
    assert_eq!(r.lease, Duration::from_secs(30));
    assert_eq!(r.queue_limit, 0);
    assert_eq!(r.mode, ResourceMode::Slots);
    assert_eq!(r.slot, Duration::from_secs(900));
    assert_eq!(r.grace, Duration::from_secs(5));
}

#[test]
fn bad_resource_values_name_the_key() {
    let err = fail("[[resource]]\nmax_concurrent = 2\n");
    assert!(err.to_string().contains("missing field `name`"), "{err}");
    for name in ["", "a/b", "a+", "#", "a b"] {
        let err = fail(&format!("[[resource]]\nname = {name:?}\n"));
        assert_at(&err, 2, "resource[0].name");
        assert!(
            matches!(err, ConfigError::Invalid { .. }),
            "{name:?}: {err}"
        );
    }
    for (text, key) in [
        ("max_concurrent = 0", "resource[0].max_concurrent"),
        ("max_concurrent = \"2\"", "resource[0].max_concurrent"),
        ("lease = \"50ms\"", "resource[0].lease"),
        ("lease = 60", "resource[0].lease"),
        ("queue_limit = -1", "resource[0].queue_limit"),
        ("queue_limit = 10001", "resource[0].queue_limit"),
        ("mode = \"fifo\"", "resource[0].mode"),
        ("slot = \"8days\"", "resource[0].slot"),
        ("grace = \"2h\"", "resource[0].grace"),
        ("leases = \"1s\"", "resource[0].leases"),
    ] {
        let err = fail(&format!("[[resource]]\nname = \"r\"\n{text}\n"));
        assert_at(&err, 3, key);
    }
}

#[test]
fn two_resources_may_not_share_a_name() {
    let err = fail("[[resource]]\nname = \"r\"\n[[resource]]\nname = \"r\"\n");
    assert_at(&err, 4, "resource[1].name");
    assert!(
        err.to_string().contains("already the name of resource[0]"),
        "{err}"
    );
}
