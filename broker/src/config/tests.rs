//! Tests for the configuration module: defaults, the supported subset of SPEC §8, every kind of
//! error (with origin, line and key path) and the value syntaxes.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::values::{format_size, parse_size};
use super::*;

const ORIGIN: &str = "canopy.toml";

pub(super) fn parse(text: &str) -> Config {
    match Config::from_toml(text, ORIGIN) {
        Ok(config) => config,
        Err(e) => panic!("expected {text:?} to parse, got: {e}"),
    }
}

pub(super) fn fail(text: &str) -> ConfigError {
    match Config::from_toml(text, ORIGIN) {
        Ok(config) => panic!("expected {text:?} to fail, got {config:?}"),
        Err(e) => e,
    }
}

/// Asserts the error's Display starts with `canopy.toml:<line>:` and names `key`.
fn assert_error(err: &ConfigError, line: usize, key: &str) {
    let shown = err.to_string();
    assert!(
        shown.starts_with(&format!("{ORIGIN}:{line}:")),
        "{shown:?} should start with {ORIGIN}:{line}:"
    );
    assert!(shown.contains(key), "{shown:?} should name {key}");
    assert_eq!(err.line(), Some(line), "{shown}");
    assert_eq!(err.key(), Some(key), "{shown}");
}

pub(super) fn addr(text: &str) -> SocketAddr {
    text.parse().unwrap()
}

pub(super) fn listener(bind: &str) -> ListenerConfig {
    ListenerConfig {
        bind: addr(bind),
        ..ListenerConfig::default()
    }
}

#[test]
fn unset_node_id_follows_the_first_listener_port_so_two_brokers_differ() {
    let site = parse("[[listener]]\nbind = \"127.0.0.1:1884\"\n");
    let root = parse("[[listener]]\nbind = \"127.0.0.1:1883\"\n");
    assert_eq!(site.node_id, "canopy-1884");
    assert_eq!(root.node_id, "canopy-1883");
    assert_eq!(
        parse("[[listener]]\nbind = \"127.0.0.1:0\"\n").node_id,
        "canopy"
    );
    let named = parse("node_id = \"canopy\"\n[[listener]]\nbind = \"127.0.0.1:1884\"\n");
    assert_eq!(named.node_id, "canopy");
}

#[test]
fn empty_file_gives_the_embedded_defaults() {
    let config = parse("");
    assert_eq!(config, Config::default());
    assert_eq!(config.node_id, "canopy-1883");
    assert_eq!(config.data_dir, PathBuf::from("./canopy-data"));
    assert_eq!(config.durability, Durability::Sync);
    assert_eq!(config.commit_interval, Duration::from_millis(10));
    assert_eq!(config.on_corrupt_store, OnCorruptStore::Quarantine);
    assert_eq!(config.sys_interval, Duration::from_secs(10));
    assert_eq!(config.metrics_listen, None);
    assert_eq!(config.log_level, None);
    assert_eq!(config.listener, vec![listener("127.0.0.1:1883")]);
    assert_eq!(config.auth, AuthConfig::default());
    let limits = &config.limits;
    assert_eq!(limits.max_packet_size, 1024 * 1024);
    assert_eq!(limits.max_topic_length, 65535);
    assert_eq!(limits.max_topic_levels, 128);
    assert_eq!(limits.max_client_id_length, 256);
    assert_eq!(limits.receive_maximum, 256);
    assert_eq!(limits.max_inflight, 64);
    assert_eq!(limits.max_queued_messages, 1000);
    assert_eq!(limits.max_queued_bytes, 16 * 1024 * 1024);
    assert_eq!(limits.queue_full, QueueFullPolicy::DropOldest);
    assert_eq!(limits.max_connections, 100_000);
    assert_eq!(limits.connection_rate, 0);
    assert_eq!(limits.max_keep_alive, 65535);
    assert_eq!(limits.topic_alias_maximum, 64);
    assert_eq!(limits.max_session_expiry, u32::MAX);
    assert!(limits.retain_available);
    assert_eq!(limits.maximum_qos, 2);
}

#[test]
fn empty_tables_and_comments_give_defaults() {
    let config = parse("# nothing set\n[auth]\n[limits]\n[[listener]]\n");
    assert_eq!(config, Config::default());
}

#[test]
fn spec_sample_subset_parses() {
    let config = parse(
        r#"
node_id = "site-7"
data_dir = "./canopy-data"
durability = "sync"
metrics_listen = "127.0.0.1:9100"

[[listener]]
bind = "0.0.0.0:1883"

[auth]
allow_anonymous = false
password_file = "passwd"
acl_file = "acl"

[limits]
max_packet_size = "1MiB"
max_queued_messages = 10000
max_connections = 100000
"#,
    );
    assert_eq!(config.node_id, "site-7");
    assert_eq!(config.metrics_listen, Some(addr("127.0.0.1:9100")));
    assert_eq!(config.listener, vec![listener("0.0.0.0:1883")]);
    assert_eq!(config.auth.allow_anonymous, Some(false));
    assert_eq!(config.auth.password_file, Some(PathBuf::from("passwd")));
    assert_eq!(config.auth.acl_file, Some(PathBuf::from("acl")));
    assert_eq!(config.limits.max_packet_size, 1024 * 1024);
    assert_eq!(config.limits.max_queued_messages, 10000);
    assert_eq!(config.limits.max_connections, 100000);
    assert_eq!(
        config.limits.receive_maximum, 256,
        "unset keys keep defaults"
    );
}

#[test]
fn every_key_can_be_set() {
    let config = parse(
        r#"
node_id = "edge-1"
data_dir = "/var/lib/canopy"
durability = "batched"
commit_interval = "5ms"
on_corrupt_store = "refuse"
sys_interval = "0s"
metrics_listen = "[::1]:9100"
log_level = "canopy_broker=debug,info"

[[listener]]
bind = "127.0.0.1:1883"

[[listener]]
bind = "[::]:1884"

[auth]
allow_anonymous = true

[limits]
max_packet_size = 65536
max_topic_length = 1024
max_topic_levels = 16
max_client_id_length = 64
receive_maximum = 100
max_inflight = 10
max_queued_messages = 50
max_queued_bytes = "1MB"
queue_full = "drop_newest"
max_connections = 10
connection_rate = 5
max_keep_alive = 300
topic_alias_maximum = 0
max_session_expiry = 3600
retain_available = false
maximum_qos = 1
"#,
    );
    assert_eq!(config.durability, Durability::Batched);
    assert_eq!(config.commit_interval, Duration::from_millis(5));
    assert_eq!(config.on_corrupt_store, OnCorruptStore::Refuse);
    assert_eq!(config.sys_interval, Duration::ZERO);
    assert_eq!(config.metrics_listen, Some(addr("[::1]:9100")));
    assert_eq!(
        config.log_level.as_deref(),
        Some("canopy_broker=debug,info")
    );
    assert_eq!(config.listener.len(), 2);
    assert_eq!(config.listener[1].bind, addr("[::]:1884"));
    let l = &config.limits;
    assert_eq!(l.max_packet_size, 65536);
    assert_eq!(l.max_queued_bytes, 1_000_000);
    assert_eq!(l.queue_full, QueueFullPolicy::DropNewest);
    assert_eq!((l.connection_rate, l.max_keep_alive), (5, 300));
    assert_eq!((l.topic_alias_maximum, l.max_session_expiry), (0, 3600));
    assert!(!l.retain_available);
    assert_eq!(l.maximum_qos, 1);
}

#[test]
fn unknown_top_level_key_names_file_line_and_key() {
    let err = fail("node_id = \"a\"\n\nnodeid = \"b\"\n");
    assert_error(&err, 3, "nodeid");
    assert!(
        err.to_string().contains("expected one of `node_id`"),
        "{err}"
    );
}

#[test]
fn unknown_nested_key_matches_the_documented_format() {
    let text = "# limits\n\n\n\n\n\n\n\n\n\n[limits]\nmax_pakcet_size = \"1MiB\"\n";
    let err = fail(text);
    assert_error(&err, 12, "limits.max_pakcet_size");
    assert!(
        err.to_string()
            .starts_with("canopy.toml:12:1: unknown key `limits.max_pakcet_size` (expected one of `max_packet_size`, "),
        "{err}"
    );
}

#[test]
fn later_feature_sections_are_rejected_as_unknown_keys() {
    let err = fail("node_id = \"x\"\n[cluster]\npolicy = \"redirect\"\n");
    assert_error(&err, 2, "cluster");
    assert!(err.to_string().contains("unknown key"), "{err}");
}

#[test]
fn presence_section_parses_with_its_defaults() {
    let config = parse("[presence]\noffline_grace = \"250ms\"\n");
    assert!(config.presence.enabled);
    assert_eq!(
        config.presence.offline_grace,
        std::time::Duration::from_millis(250)
    );
    assert!(!parse("[presence]\nenabled = false\n").presence.enabled);
    let err = fail("[presence]\noffline_grace = \"2days\"\n");
    assert_error(&err, 2, "presence.offline_grace");
}

#[test]
fn tls_and_websocket_listener_keys_parse() {
    let c = parse(
        "[[listener]]\nbind = \"0.0.0.0:8883\"\ntls = { cert = \"c.pem\", key = \"k.pem\", \
         client_ca = \"ca.pem\" }\nwebsocket = true\nuse_identity_as_username = true\n",
    );
    let l = &c.listener[0];
    let tls = l.tls.as_ref().unwrap();
    assert_eq!(tls.cert, PathBuf::from("c.pem"));
    assert_eq!(tls.key, PathBuf::from("k.pem"));
    assert_eq!(tls.client_ca, Some(PathBuf::from("ca.pem")));
    assert!(l.websocket && l.use_identity_as_username);
    let plain = parse("[[listener]]\nbind = \"0.0.0.0:1883\"\n");
    assert_eq!(plain.listener[0].tls, None);
    assert!(!plain.listener[0].websocket);
}

#[test]
fn tls_listener_errors_name_the_key() {
    let err = fail("[[listener]]\nbind = \"0.0.0.0:8883\"\ntls = { cert = \"c\" }\n");
    assert_error(&err, 3, "listener[0].tls");
    assert!(err.to_string().contains("key"), "{err}");
    let err = fail("[[listener]]\ntls = { cert = \"c\", key = \"k\", ca = \"x\" }\n");
    assert_error(&err, 2, "listener[0].tls.ca");
    let err = fail("[[listener]]\ntls = { cert = \"\", key = \"k\" }\n");
    assert_error(&err, 2, "listener[0].tls.cert");
    let err = fail(
        "[[listener]]\nbind = \"0.0.0.0:1883\"\n[[listener]]\nbind = \"0.0.0.0:8883\"\n\
         tls = { cert = \"c\", key = \"k\" }\nuse_identity_as_username = true\n",
    );
    assert_error(&err, 6, "listener[1].use_identity_as_username");
    assert!(err.to_string().contains("tls.client_ca"), "{err}");
}

#[test]
fn admission_keys_from_the_spec_sample_are_accepted_and_checked() {
    let l = parse(
        "[limits]\nmax_connections = 50\nadmission_queue = 150\nadmission_timeout = \"2s\"\n\
         connect_timeout = \"500ms\"\nconnection_rate_per_address = 20\n",
    )
    .limits;
    assert_eq!((l.max_connections, l.admission_queue), (50, 150));
    assert_eq!(l.admission_timeout, Duration::from_secs(2));
    assert_eq!(l.connect_timeout, Duration::from_millis(500));
    assert_eq!(l.connection_rate_per_address, 20);
    let d = Limits::default();
    assert_eq!(
        (d.admission_queue, d.connection_rate_per_address),
        (1000, 0)
    );
    assert_eq!(d.connect_timeout, Duration::from_secs(10));
    assert_eq!(d.admission_timeout, Duration::from_secs(10));
    let err = fail("[limits]\nconnect_timeout = \"10ms\"\n");
    assert_error(&err, 2, "limits.connect_timeout");
    let err = fail("[limits]\nadmission_queue = -1\n");
    assert_error(&err, 2, "limits.admission_queue");
}

#[test]
fn wrong_type_names_the_key() {
    let err = fail("[limits]\nmax_connections = \"many\"\n");
    assert_error(&err, 2, "limits.max_connections");
    assert!(err.to_string().contains("expected an integer"), "{err}");
    let err = fail("durability = \"sync\"\n[auth]\nallow_anonymous = \"yes\"\n");
    assert_error(&err, 3, "auth.allow_anonymous");
    let err = fail("limits = 5\n");
    assert_error(&err, 1, "limits");
}

#[test]
fn unknown_enum_value_lists_the_choices() {
    let err = fail("\ndurability = \"fast\"\n");
    assert_error(&err, 2, "durability");
    assert!(
        err.to_string().contains("`sync`, `batched`, `memory`"),
        "{err}"
    );
    let err = fail("[limits]\nqueue_full = \"drop_all\"\n");
    assert_error(&err, 2, "limits.queue_full");
}

#[test]
fn bad_duration_names_the_key() {
    let err = fail("node_id = \"n\"\nsys_interval = \"10 parsecs\"\n");
    assert_error(&err, 2, "sys_interval");
    assert!(
        err.to_string().contains("invalid duration \"10 parsecs\""),
        "{err}"
    );
    let err = fail("commit_interval = 10\n");
    assert_error(&err, 1, "commit_interval");
    assert!(err.to_string().contains("a duration string"), "{err}");
}

#[test]
fn bad_size_names_the_key() {
    let err = fail("[limits]\n\nmax_queued_bytes = \"12XB\"\n");
    assert_error(&err, 3, "limits.max_queued_bytes");
    assert!(err.to_string().contains("invalid size \"12XB\""), "{err}");
    let err = fail("[limits]\nmax_packet_size = 1.5\n");
    assert_error(&err, 2, "limits.max_packet_size");
}

#[test]
fn out_of_range_size_matches_the_documented_format() {
    let err = fail("node_id = \"a\"\n\n[limits]\nmax_packet_size = \"0\"\n");
    assert_eq!(
        err.to_string(),
        "canopy.toml:4: limits.max_packet_size: must be between 16 bytes and 256 MiB, got \"0\""
    );
    assert!(matches!(err, ConfigError::Invalid { line: Some(4), .. }));
    let err = fail("[limits]\nmax_packet_size = \"257MiB\"\n");
    assert_error(&err, 2, "limits.max_packet_size");
    let err = fail("[limits]\nmax_packet_size = 15\n");
    assert!(err.to_string().ends_with("got 15"), "{err}");
    let err = fail("[limits]\nmax_queued_bytes = -1\n");
    assert_error(&err, 2, "limits.max_queued_bytes");
}

#[test]
fn out_of_range_integers_are_reported_with_their_bounds() {
    for (text, key, bounds) in [
        (
            "[limits]\nreceive_maximum = 0\n",
            "limits.receive_maximum",
            "between 1 and 65535, got 0",
        ),
        (
            "[limits]\nreceive_maximum = 70000\n",
            "limits.receive_maximum",
            "got 70000",
        ),
        (
            "[limits]\nmaximum_qos = 3\n",
            "limits.maximum_qos",
            "between 0 and 2, got 3",
        ),
        (
            "[limits]\nmax_inflight = 0\n",
            "limits.max_inflight",
            "between 1 and 65535",
        ),
        (
            "[limits]\nmax_client_id_length = 22\n",
            "limits.max_client_id_length",
            "between 23 and",
        ),
        (
            "[limits]\nmax_connections = 0\n",
            "limits.max_connections",
            "at least 1, got 0",
        ),
        (
            "[limits]\nconnection_rate = -1\n",
            "limits.connection_rate",
            "got -1",
        ),
        (
            "[limits]\nmax_keep_alive = 0\n",
            "limits.max_keep_alive",
            "between 1 and 65535",
        ),
        (
            "[limits]\nmax_session_expiry = 4294967296\n",
            "limits.max_session_expiry",
            "got 4294967296",
        ),
        (
            "[limits]\nmax_topic_levels = 0\n",
            "limits.max_topic_levels",
            "between 1 and 65535",
        ),
    ] {
        let err = fail(text);
        assert_error(&err, 2, key);
        assert!(
            err.to_string().contains(bounds),
            "{err} should contain {bounds}"
        );
    }
}

#[test]
fn inline_and_dotted_tables_are_located_too() {
    let err = fail("\nlimits = { receive_maximum = 0 }\n");
    assert_error(&err, 2, "limits.receive_maximum");
    let err = fail("\n\nlimits.maximum_qos = 5\n");
    assert_error(&err, 3, "limits.maximum_qos");
}

#[test]
fn out_of_range_durations_are_reported() {
    let err = fail("commit_interval = \"0s\"\n");
    assert_eq!(
        err.to_string(),
        "canopy.toml:1: commit_interval: must be between 1ms and 1m, got \"0s\""
    );
    let err = fail("\nsys_interval = \"2days\"\n");
    assert_error(&err, 2, "sys_interval");
}

#[test]
fn empty_listener_list_is_invalid() {
    let err = fail("node_id = \"a\"\nlistener = []\n");
    assert_eq!(
        err.to_string(),
        "canopy.toml:2: listener: at least one [[listener]] is required"
    );
}

#[test]
fn duplicate_listener_binds_are_invalid_except_port_zero() {
    let err =
        fail("[[listener]]\nbind = \"0.0.0.0:1883\"\n[[listener]]\nbind = \"0.0.0.0:1883\"\n");
    assert_error(&err, 4, "listener[1].bind");
    assert!(
        err.to_string().contains("already bound by listener[0]"),
        "{err}"
    );
    let config =
        parse("[[listener]]\nbind = \"127.0.0.1:0\"\n[[listener]]\nbind = \"127.0.0.1:0\"\n");
    assert_eq!(config.listener.len(), 2);
}

#[test]
fn bad_socket_address_names_the_key() {
    let err = fail("[[listener]]\nbind = \"localhost:1883\"\n");
    assert_error(&err, 2, "listener[0].bind");
    assert!(
        err.to_string().contains("host names are not resolved"),
        "{err}"
    );
    let err = fail("metrics_listen = \"9100\"\n");
    assert_error(&err, 1, "metrics_listen");
}

#[test]
fn constrained_strings_are_checked() {
    assert_error(&fail("node_id = \"\"\n"), 1, "node_id");
    assert_error(&fail("node_id = \"a/b\"\n"), 1, "node_id");
    assert_error(&fail("node_id = \"a b\"\n"), 1, "node_id");
    assert_error(
        &fail(&format!("node_id = \"{}\"\n", "n".repeat(65))),
        1,
        "node_id",
    );
    assert_eq!(
        parse(&format!("node_id = \"{}\"\n", "n".repeat(64)))
            .node_id
            .len(),
        64
    );
    assert_error(&fail("data_dir = \"\"\n"), 1, "data_dir");
    assert_error(&fail("log_level = \" \"\n"), 1, "log_level");
    assert_error(
        &fail("[auth]\npassword_file = \"\"\n"),
        2,
        "auth.password_file",
    );
}

#[test]
fn toml_syntax_errors_give_line_and_column() {
    let err = fail("node_id = \"a\"\nlimits = \n");
    assert!(
        matches!(
            err,
            ConfigError::Parse {
                line: 2,
                key: Some(ref k),
                ..
            } if k == "limits"
        ),
        "{err:?}"
    );
    assert!(err.to_string().starts_with("canopy.toml:2:"), "{err}");
    let err = fail("a = 1\na = 2\n");
    assert_eq!(err.to_string(), "canopy.toml:2:1: duplicate key `a`");
}

#[test]
fn sizes_accept_several_spellings() {
    for (text, bytes) in [
        ("1048576", 1_048_576),
        ("1MiB", 1_048_576),
        ("1 MiB", 1_048_576),
        ("1mib", 1_048_576),
        ("256KiB", 262_144),
        ("64KB", 64_000),
        ("64kb", 64_000),
        ("2MB", 2_000_000),
        ("1GiB", 1_073_741_824),
        ("1GB", 1_000_000_000),
        ("100B", 100),
        (" 7 ", 7),
    ] {
        assert_eq!(parse_size(text), Ok(bytes), "{text}");
    }
    for text in [
        "",
        "MiB",
        "1.5MiB",
        "-1",
        "1 TiB",
        "1MiBs",
        "0x10",
        "99999999999999999999",
    ] {
        assert!(parse_size(text).is_err(), "{text:?} should be rejected");
    }
    assert!(parse_size("18446744073709551615GiB").is_err(), "overflow");
    let config = parse("[limits]\nmax_packet_size = \"256KiB\"\nmax_queued_bytes = 4096\n");
    assert_eq!(config.limits.max_packet_size, 262_144);
    assert_eq!(config.limits.max_queued_bytes, 4096);
}

#[test]
fn sizes_are_rendered_in_the_largest_exact_unit() {
    assert_eq!(format_size(16), "16 bytes");
    assert_eq!(format_size(2048), "2 KiB");
    assert_eq!(format_size(256 * 1024 * 1024), "256 MiB");
    assert_eq!(format_size(3 << 30), "3 GiB");
    assert_eq!(format_size(1000), "1000 bytes");
}

#[test]
fn durations_accept_several_spellings() {
    for (text, expected) in [
        ("500ms", Duration::from_millis(500)),
        ("10s", Duration::from_secs(10)),
        ("2m", Duration::from_secs(120)),
        ("2min", Duration::from_secs(120)),
        ("1h 30m", Duration::from_secs(5400)),
        ("1day", Duration::from_secs(86400)),
        ("0s", Duration::ZERO),
    ] {
        let config = parse(&format!("sys_interval = \"{text}\"\n"));
        assert_eq!(config.sys_interval, expected, "{text}");
    }
    for text in ["", "10", "ten seconds", "-1s"] {
        let err = fail(&format!("sys_interval = \"{text}\"\n"));
        assert_error(&err, 1, "sys_interval");
    }
}

#[test]
fn anonymous_allowed_by_default_only_on_loopback() {
    let auth = AuthConfig::default();
    assert!(auth.anonymous_allowed(&[listener("127.0.0.1:1883")]));
    assert!(auth.anonymous_allowed(&[listener("127.0.0.2:1883"), listener("[::1]:1883")]));
    assert!(auth.anonymous_allowed(&[listener("[::ffff:127.0.0.1]:1883")]));
    assert!(!auth.anonymous_allowed(&[listener("0.0.0.0:1883")]));
    assert!(!auth.anonymous_allowed(&[listener("[::]:1883")]));
    assert!(!auth.anonymous_allowed(&[listener("127.0.0.1:1883"), listener("10.0.0.7:1883")]));
}

#[test]
fn explicit_allow_anonymous_overrides_the_loopback_rule() {
    let allow = AuthConfig {
        allow_anonymous: Some(true),
        ..AuthConfig::default()
    };
    let deny = AuthConfig {
        allow_anonymous: Some(false),
        ..AuthConfig::default()
    };
    assert!(allow.anonymous_allowed(&[listener("0.0.0.0:1883")]));
    assert!(!deny.anonymous_allowed(&[listener("127.0.0.1:1883")]));
}

#[test]
fn ephemeral_uses_port_zero_memory_and_distinct_temp_dirs() {
    let a = Config::ephemeral();
    let b = Config::ephemeral();
    assert_eq!(a.listener, vec![listener("127.0.0.1:0")]);
    assert_eq!(a.durability, Durability::Memory);
    assert_eq!(a.sys_interval, Duration::from_secs(1));
    assert!(a.data_dir.starts_with(std::env::temp_dir()));
    assert_ne!(a.data_dir, b.data_dir);
    assert!(!a.data_dir.exists());
    assert!(a.auth.anonymous_allowed(&a.listener));
}

#[test]
fn load_reads_a_file_and_names_it_in_errors() {
    let dir = std::env::temp_dir().join(format!("canopy-config-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = dir.join("good.toml");
    std::fs::write(&good, "node_id = \"from-file\"\n").unwrap();
    assert_eq!(Config::load(&good).unwrap().node_id, "from-file");

    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "\n[limits]\nmaximum_qos = 9\n").unwrap();
    let err = Config::load(&bad).unwrap_err();
    assert!(
        err.to_string()
            .starts_with(&format!("{}:3: limits.maximum_qos:", bad.display())),
        "{err}"
    );

    let missing = dir.join("missing.toml");
    let err = Config::load(&missing).unwrap_err();
    assert!(matches!(err, ConfigError::Io { .. }), "{err:?}");
    assert!(err.to_string().contains("missing.toml"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}
