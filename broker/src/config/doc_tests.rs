//! Checks that `docs/configuration.md` (the user-facing contract) matches the code: the keys in
//! its reference tables, its defaults, its complete example and its error messages.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;

use canopy_proto::TopicFilter;

use super::tests::{addr, fail, listener, parse};
use super::{
    AuthConfig, CarouselConfig, Config, ConfigDocs, DnsConfig, ListenerConfig, ResourceConfig,
    ResourceMode, TlsConfig,
};

/// Every reference table: its heading and the TOML that opens its table.
const TABLES: [(&str, &str); 10] = [
    ("### Top level", ""),
    ("### `[[listener]]`", "[[listener]]\n"),
    ("### `[auth]`", "[auth]\n"),
    ("### `[limits]`", "[limits]\n"),
    ("### `[dns]`", "[dns]\n"),
    ("### `[config]`", "[config]\n"),
    ("### `[presence]`", "[presence]\n"),
    ("### `[[carousel]]`", "[[carousel]]\nfilter = \"a\"\n"),
    ("### `[[resource]]`", "[[resource]]\nname = \"a\"\n"),
    ("### `[dashboard]`", "[dashboard]\n"),
];

/// The top-level keys that open a table of their own (each with its own reference table).
const TABLE_KEYS: [&str; 10] = [
    "listener",
    "auth",
    "limits",
    "dns",
    "config",
    "presence",
    "carousel",
    "bridge",
    "resource",
    "dashboard",
];

/// The user-facing reference, checked against the code so that the two cannot drift apart.
const DOC: &str = include_str!("../../../docs/configuration.md");

/// The body of the first fenced block of `lang` after `heading` in the docs.
fn doc_block(heading: &str, lang: &str) -> &'static str {
    let section = &DOC[DOC.find(heading).unwrap()..];
    let fence = format!("```{lang}\n");
    let start = section.find(&fence).unwrap() + fence.len();
    let len = section[start..].find("```").unwrap();
    &section[start..start + len]
}

/// The keys listed in the reference table under `heading`, in order.
fn doc_table_keys(heading: &str) -> Vec<String> {
    let section = &DOC[DOC.find(heading).unwrap() + heading.len()..];
    let section = &section[..section.find("\n#").unwrap_or(section.len())];
    section
        .lines()
        .filter_map(|line| line.strip_prefix("| `"))
        .map(|rest| rest[..rest.find('`').unwrap()].to_owned())
        .collect()
}

/// The keys the parser accepts in the table opened by `prefix`, read from its unknown-key error.
fn accepted_keys(prefix: &str) -> Vec<String> {
    let message = fail(&format!("{prefix}zzz_unknown = 1\n")).to_string();
    let expected = &message[message.find("(expected").unwrap()..];
    expected
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

#[test]
fn reference_tables_list_exactly_the_accepted_keys() {
    for (heading, prefix) in TABLES {
        let mut documented = doc_table_keys(heading);
        let mut accepted = accepted_keys(prefix);
        if prefix.is_empty() {
            accepted.retain(|k| !TABLE_KEYS.contains(&k.as_str()));
        }
        documented.sort();
        accepted.sort();
        assert_eq!(documented, accepted, "reference table under {heading}");
    }
}

#[test]
fn documented_complete_example_parses_to_the_documented_values() {
    let config = parse(doc_block("## Complete example", "toml"));
    let expected = Config {
        node_id: "site-7".to_owned(),
        metrics_listen: Some(addr("127.0.0.1:9100")),
        log_level: Some("info".to_owned()),
        listener: vec![
            listener("0.0.0.0:1883"),
            listener("[::]:1883"),
            ListenerConfig {
                tls: Some(TlsConfig {
                    cert: PathBuf::from("server.pem"),
                    key: PathBuf::from("server.key"),
                    client_ca: Some(PathBuf::from("ca.pem")),
                }),
                ..listener("0.0.0.0:8883")
            },
        ],
        auth: AuthConfig {
            allow_anonymous: Some(false),
            password_file: Some(PathBuf::from("passwd")),
            acl_file: Some(PathBuf::from("acl")),
            bridge_users: vec!["site-bridge".to_string()],
        },
        dns: DnsConfig {
            listen: Some(addr("127.0.0.1:5353")),
            ..DnsConfig::default()
        },
        config_docs: ConfigDocs {
            admins: vec!["admin".to_owned(), "ops-console".to_owned()],
        },
        carousel: vec![CarouselConfig {
            filter: TopicFilter::new("map/#").unwrap(),
            period: Duration::from_secs(30),
            max_bytes_per_sec: 1024 * 1024,
        }],
        resource: vec![ResourceConfig {
            name: "license".to_owned(),
            max_concurrent: 5,
            lease: Duration::from_secs(60),
            queue_limit: 1000,
            mode: ResourceMode::Queue,
            slot: Duration::from_secs(60),
            grace: Duration::ZERO,
        }],
        ..Config::default()
    };
    assert_eq!(config, expected);
}

#[test]
fn documented_out_of_range_messages_match_the_code() {
    let shown = doc_block("give the line\nonly", "text");
    for (text, line) in [
        ("\n\n[limits]\nmax_packet_size = \"0\"\n", 0),
        ("[limits]\nmax_topic_levels = 0\n", 1),
        ("commit_interval = \"0s\"\n", 2),
        ("node_id = \"site 7\"\n", 3),
        ("listener = []\n", 4),
        (
            "[[listener]]\nbind = \"0.0.0.0:1883\"\n[[listener]]\nbind = \"0.0.0.0:1883\"\n",
            5,
        ),
        ("[[carousel]]\nfilter = \"map/#\"\nperiod = \"10ms\"\n", 6),
        (
            "[dns]\ngood_ip = \"127.0.0.1\"\nbad_ip = \"127.0.0.1\"\n",
            7,
        ),
    ] {
        let err = fail(text);
        assert_eq!(
            Some(err.to_string().as_str()),
            shown.lines().nth(line),
            "{text:?}"
        );
    }
}

#[test]
fn documented_parse_error_messages_match_the_code() {
    let shown = doc_block("also give the column:", "text");
    let typo = format!("{}[limits]\nmax_pakcet_size = 1\n", "#\n".repeat(10));
    for (text, line) in [
        (typo.as_str(), 0),
        (
            "[[listener]]\nbind = \"0.0.0.0:1883\"\ntls = { cert = \"c\" }\n",
            1,
        ),
        ("[cluster]\npolicy = \"redirect\"\n", 2),
        ("[limits]\nmax_connections = \"many\"\n", 3),
        ("sys_interval = 10\n", 4),
        ("sys_interval = \"10 parsecs\"\n", 5),
        ("[limits]\nmax_queued_bytes = \"12XB\"\n", 6),
        ("durability = \"fast\"\n", 7),
        ("[[listener]]\nbind = \"localhost:1883\"\n", 8),
        ("a = 1\na = 2\n", 9),
        ("node_id = site-7\n", 10),
        ("durability = fast\n", 11),
    ] {
        let err = fail(text);
        assert_eq!(
            Some(err.to_string().as_str()),
            shown.lines().nth(line),
            "{text:?}"
        );
    }
}

#[test]
fn documented_defaults_are_the_real_defaults() {
    let mut checked = 0;
    for (heading, prefix) in TABLES {
        // A carousel or resource exists only once written, so its defaults are those of a bare one.
        let baseline = parse(prefix);
        let section = &DOC[DOC.find(heading).unwrap() + heading.len()..];
        let section = &section[..section.find("\n#").unwrap_or(section.len())];
        for row in section.lines().filter(|l| l.starts_with("| `")) {
            let cells: Vec<&str> = row.split(" | ").collect();
            let (key, default) = (cells[0].trim_start_matches("| "), cells[2]);
            if default.starts_with("unset") || default == "required" {
                continue;
            }
            let text = format!(
                "{prefix}{} = {}\n",
                key.trim_matches('`'),
                default.trim_matches('`')
            );
            assert_eq!(parse(&text), baseline, "documented default {text:?}");
            checked += 1;
        }
    }
    assert_eq!(checked, 52, "rows with a literal default");
}

#[test]
fn bare_tables_give_the_default_configuration() {
    for (_, prefix) in TABLES.iter().filter(|(h, _)| !h.contains("[[")) {
        assert_eq!(parse(prefix), Config::default(), "{prefix:?}");
    }
    let dns = DnsConfig::default();
    assert_eq!(
        (dns.good_ip, dns.bad_ip),
        (Ipv4Addr::new(127, 0, 0, 1), Ipv4Addr::new(127, 0, 0, 2))
    );
}
