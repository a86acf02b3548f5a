//! Tests for the `[cluster]` table: absent means no cluster, defaults, every key set, and
//! each bad value or bad combination reported with its line and dotted key.

use std::time::Duration;

use super::tests::{fail, parse};
use super::*;

fn assert_at(err: &ConfigError, line: usize, key: &str) {
    assert_eq!(err.line(), Some(line), "{err}");
    assert_eq!(err.key(), Some(key), "{err}");
}

#[test]
fn no_cluster_table_means_no_cluster() {
    assert_eq!(parse("").cluster, None);
}

#[test]
fn a_bare_cluster_table_takes_the_defaults() {
    let c = parse("[cluster]\n").cluster.unwrap();
    assert_eq!(c, ClusterConfig::default());
    assert_eq!(c.policy, ClusterPolicy::Redirect);
    assert_eq!(c.capacity, 10_000);
    assert_eq!(c.load_interval, Duration::from_secs(2));
    assert_eq!(c.move_rate, 500);
    assert_eq!(c.imbalance, Ratio(1200));
    assert_eq!(c.service, "mqtt");
    assert!(!c.rebalance && c.join.is_none() && c.advertise.is_none());
}

#[test]
fn every_cluster_key_can_be_set() {
    let c = parse(
        r#"
[cluster]
policy = "accept"
advertise = "mqtt-2.example.com:1884"
capacity = 5000
load_interval = "500ms"
join = "mqtts://root.example.com:8883"
join_user = "cluster"
join_password_file = "join.pw"
join_ca_file = "ca.pem"
imbalance = 1.5
move_rate = 50
service = "Broker"
"#,
    )
    .cluster
    .unwrap();
    assert_eq!(c.policy, ClusterPolicy::Accept);
    assert_eq!(c.advertise.as_deref(), Some("mqtt-2.example.com:1884"));
    assert_eq!((c.capacity, c.move_rate), (5000, 50));
    assert_eq!(c.load_interval, Duration::from_millis(500));
    assert_eq!(c.join.as_deref(), Some("mqtts://root.example.com:8883"));
    assert_eq!(c.join_user.as_deref(), Some("cluster"));
    assert_eq!(c.imbalance.get(), 1.5);
    assert_eq!(c.service, "broker");
    assert!(
        parse("[cluster]\nrebalance = true\n")
            .cluster
            .unwrap()
            .rebalance
    );
    assert_eq!(
        parse("[cluster]\nimbalance = 2\n")
            .cluster
            .unwrap()
            .imbalance,
        Ratio(2000)
    );
}

#[test]
fn bad_cluster_values_name_line_and_key() {
    for (text, line, key) in [
        ("[cluster]\npolicy = \"proxy\"\n", 2, "cluster.policy"),
        (
            "[cluster]\nadvertise = \"nohost\"\n",
            2,
            "cluster.advertise",
        ),
        ("[cluster]\nadvertise = \"h:0\"\n", 2, "cluster.advertise"),
        (
            "[cluster]\nadvertise = \"::1:1883\"\n",
            2,
            "cluster.advertise",
        ),
        ("[cluster]\ncapacity = 0\n", 2, "cluster.capacity"),
        (
            "[cluster]\nload_interval = \"10ms\"\n",
            2,
            "cluster.load_interval",
        ),
        ("[cluster]\njoin = \"http://x:1\"\n", 2, "cluster.join"),
        ("[cluster]\njoin = \"ws://x:1/mqtt\"\n", 2, "cluster.join"),
        ("[cluster]\nimbalance = 1.0\n", 2, "cluster.imbalance"),
        ("[cluster]\nmove_rate = 0\n", 2, "cluster.move_rate"),
        ("[cluster]\nservice = \"a.b\"\n", 2, "cluster.service"),
        ("[cluster]\nservice = \"\"\n", 2, "cluster.service"),
        ("[cluster]\nstate = \"up\"\n", 2, "cluster.state"),
    ] {
        assert_at(&fail(text), line, key);
    }
}

#[test]
fn advertise_accepts_names_addresses_and_bracketed_ipv6() {
    for a in [
        "h:1",
        "10.0.0.5:1883",
        "[::1]:1883",
        "mqtt.example.com:65535",
    ] {
        let text = format!("[cluster]\nadvertise = \"{a}\"\n");
        assert_eq!(parse(&text).cluster.unwrap().advertise.as_deref(), Some(a));
    }
}

#[test]
fn combinations_that_cannot_work_are_refused() {
    for (text, key) in [
        (
            "[[listener]]\nbind = \"0.0.0.0:1883\"\n[cluster]\ncapacity = 5\n",
            "cluster.advertise",
        ),
        ("[cluster]\njoin_user = \"u\"\n", "cluster.join_user"),
        (
            "[cluster]\njoin = \"mqtt://r:1\"\njoin_password_file = \"p\"\n",
            "cluster.join_password_file",
        ),
        (
            "[cluster]\njoin = \"mqtt://r:1\"\njoin_ca_file = \"ca\"\n",
            "cluster.join_ca_file",
        ),
        (
            "[cluster]\njoin = \"mqtt://r:1\"\nrebalance = true\n",
            "cluster.rebalance",
        ),
        (
            "[[listener]]\nbind = \"127.0.0.1:0\"\nwebsocket = true\n[cluster]\njoin = \"mqtt://r:1\"\n",
            "cluster.join",
        ),
    ] {
        let err = fail(text);
        assert_eq!(err.key(), Some(key), "{text:?}: {err}");
    }
    let ok = parse("[[listener]]\nbind = \"0.0.0.0:1883\"\n[cluster]\nadvertise = \"h:1883\"\n");
    assert!(ok.cluster.is_some());
}

#[test]
fn join_files_are_named_for_the_start_up_check() {
    let c = parse(
        "[cluster]\njoin = \"mqtts://r:1\"\njoin_user = \"u\"\njoin_password_file = \"pw\"\njoin_ca_file = \"ca\"\n",
    );
    let names: Vec<String> = c.named_files().into_iter().map(|(k, _)| k).collect();
    assert_eq!(
        names,
        ["cluster.join_password_file", "cluster.join_ca_file"]
    );
}
