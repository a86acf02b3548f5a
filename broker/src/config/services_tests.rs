//! Tests for the `[dns]`, `[config]` and `[[carousel]]` tables: defaults, every key set, and
//! each kind of bad value reported with its line and dotted key.

use std::net::Ipv4Addr;
use std::time::Duration;

use super::services::DEFAULT_CAROUSEL_PERIOD;
use super::tests::{addr, fail, parse};
use super::*;

/// Asserts the error points at `line` and names `key`.
fn assert_at(err: &ConfigError, line: usize, key: &str) {
    assert_eq!(err.line(), Some(line), "{err}");
    assert_eq!(err.key(), Some(key), "{err}");
}

#[test]
fn absent_service_tables_mean_no_dns_no_admins_no_carousel() {
    let config = parse("");
    assert_eq!(config.dns.listen, None);
    assert_eq!(config.dns.zone, "canopy.local");
    assert_eq!(config.dns.good_ip, Ipv4Addr::new(127, 0, 0, 1));
    assert_eq!(config.dns.bad_ip, Ipv4Addr::new(127, 0, 0, 2));
    assert_eq!(config.dns.ttl, Duration::ZERO);
    assert!(config.config_docs.admins.is_empty());
    assert!(config.carousel.is_empty());
}

#[test]
fn every_service_key_can_be_set() {
    let config = parse(
        r#"
[dns]
listen = "127.0.0.1:0"
zone = "Devices.Example.ORG."
good_ip = "10.0.0.1"
bad_ip = "10.0.0.2"
ttl = "5s"

[config]
admins = ["admin", "ops"]

[[carousel]]
filter = "map/#"
period = "100ms"
max_bytes_per_sec = "64KiB"

[[carousel]]
filter = "fx/+/frames"
"#,
    );
    assert_eq!(config.dns.listen, Some(addr("127.0.0.1:0")));
    assert_eq!(
        config.dns.zone, "devices.example.org",
        "lower-cased, trailing dot dropped"
    );
    assert_eq!(config.dns.good_ip, Ipv4Addr::new(10, 0, 0, 1));
    assert_eq!(config.dns.bad_ip, Ipv4Addr::new(10, 0, 0, 2));
    assert_eq!(config.dns.ttl, Duration::from_secs(5));
    assert_eq!(config.config_docs.admins, ["admin", "ops"]);
    assert_eq!(config.carousel.len(), 2);
    assert_eq!(config.carousel[0].filter.as_str(), "map/#");
    assert_eq!(config.carousel[0].period, Duration::from_millis(100));
    assert_eq!(config.carousel[0].max_bytes_per_sec, 64 * 1024);
    assert_eq!(config.carousel[1].filter.as_str(), "fx/+/frames");
    assert_eq!(config.carousel[1].period, DEFAULT_CAROUSEL_PERIOD);
    assert_eq!(config.carousel[1].max_bytes_per_sec, 0, "0 = unlimited");
}

#[test]
fn unknown_keys_in_service_tables_are_errors() {
    assert_at(
        &fail("[dns]\nlisten_addr = \"127.0.0.1:53\"\n"),
        2,
        "dns.listen_addr",
    );
    assert_at(&fail("[config]\nadmin = [\"a\"]\n"), 2, "config.admin");
    assert_at(
        &fail("[[carousel]]\nfilter = \"m/#\"\nrate = 1\n"),
        3,
        "carousel[0].rate",
    );
}

#[test]
fn bad_dns_values_name_the_key() {
    assert_at(&fail("[dns]\nlisten = \"localhost:53\"\n"), 2, "dns.listen");
    for zone in [
        "",
        ".",
        "a..b",
        "-a.b",
        "a-.b",
        "a b",
        "ä.b",
        &"x".repeat(64),
        &"a.".repeat(101),
    ] {
        let err = fail(&format!("[dns]\nzone = {zone:?}\n"));
        assert_at(&err, 2, "dns.zone");
        assert!(
            matches!(err, ConfigError::Invalid { .. }),
            "{zone:?}: {err}"
        );
    }
    let err = fail("[dns]\ngood_ip = \"::1\"\n");
    assert_at(&err, 2, "dns.good_ip");
    assert!(err.to_string().contains("invalid IPv4 address"), "{err}");
    assert_at(&fail("[dns]\nbad_ip = 127\n"), 2, "dns.bad_ip");
    assert_at(&fail("[dns]\nttl = 5\n"), 2, "dns.ttl");
    assert_at(&fail("[dns]\nttl = \"2days\"\n"), 2, "dns.ttl");
}

#[test]
fn good_and_bad_ip_must_differ() {
    let err = fail("[dns]\nbad_ip = \"127.0.0.1\"\n");
    assert_at(&err, 2, "dns.bad_ip");
    let err = fail("[dns]\ngood_ip = \"127.0.0.2\"\n");
    assert_eq!(err.key(), Some("dns.bad_ip"), "{err}");
    assert_eq!(
        err.line(),
        Some(1),
        "the [dns] header when bad_ip is not written"
    );
}

#[test]
fn admins_must_be_distinct_non_empty_strings() {
    assert_at(
        &fail("[config]\nadmins = [\"a\", \"\"]\n"),
        2,
        "config.admins",
    );
    let err = fail("[config]\nadmins = [\"a\", \"b\", \"a\"]\n");
    assert_at(&err, 2, "config.admins");
    assert!(err.to_string().contains("\"a\" is listed twice"), "{err}");
    assert_at(&fail("[config]\nadmins = \"a\"\n"), 2, "config.admins");
}

#[test]
fn carousel_filter_is_required_and_must_be_a_plain_valid_filter() {
    let err = fail("[[carousel]]\nperiod = \"1s\"\n");
    assert!(err.to_string().contains("missing field `filter`"), "{err}");
    assert_eq!(err.line(), Some(1), "{err}");
    // [MQTT-4.7.1-1] '#' must be the last level; [MQTT-4.7.1-2] '+' must fill a level.
    for filter in ["", "map/#/x", "map+", "$share/g/map/#"] {
        let err = fail(&format!("[[carousel]]\nfilter = {filter:?}\n"));
        assert_at(&err, 2, "carousel[0].filter");
        assert!(
            matches!(err, ConfigError::Invalid { .. }),
            "{filter:?}: {err}"
        );
    }
}

#[test]
fn carousel_period_and_rate_have_ranges() {
    let err = fail("[[carousel]]\nfilter = \"m/#\"\nperiod = \"99ms\"\n");
    assert_at(&err, 3, "carousel[0].period");
    assert!(err.to_string().contains("between 100ms and 1day"), "{err}");
    assert_at(
        &fail("[[carousel]]\nfilter = \"m/#\"\nmax_bytes_per_sec = -1\n"),
        3,
        "carousel[0].max_bytes_per_sec",
    );
}

#[test]
fn two_carousels_may_not_share_a_filter() {
    let err = fail("[[carousel]]\nfilter = \"m/#\"\n[[carousel]]\nfilter = \"m/#\"\n");
    assert_at(&err, 4, "carousel[1].filter");
    assert!(
        err.to_string()
            .contains("already the filter of carousel[0]"),
        "{err}"
    );
}
