//! Every scenario of canopy-bench, run for a tiny count against an in-process broker.
//!
//! Checks only that every message arrived and the result line is well formed: no timing
//! is asserted.
#![allow(clippy::unwrap_used)] // test and bench set-up: a failure should panic loudly

use std::time::Duration;

use canopy_bench::progress::Progress;
use canopy_bench::{BenchError, Options, Report, Scenario};
use canopy_broker::config::Config;
use canopy_proto::QoS;

async fn run(mut opts: Options) -> Report {
    opts.drain = Duration::from_secs(5);
    let report = canopy_bench::run(&opts, Progress::hidden()).await.unwrap();
    assert_eq!(report.lost, 0, "{report:?}");
    assert_eq!(report.delivered, report.expected, "{report:?}");
    assert!(report.delivered > 0, "{report:?}");
    let line = serde_json::to_string(&report).unwrap();
    assert!(!line.contains('\n'));
    let back: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert!(back["msgs_per_s"].as_f64().unwrap() > 0.0);
    report
}

fn opts(scenario: Scenario, broker: &canopy_broker::BrokerHandle) -> Options {
    let mut o = Options::new(scenario, broker.mqtt_addr());
    o.count = Some(200);
    o.broker_pid = Some(std::process::id());
    o
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_scenario_delivers_every_message() {
    let broker = canopy_broker::start(Config::ephemeral()).await.unwrap();

    for qos in [QoS::AtMostOnce, QoS::AtLeastOnce] {
        let mut o = opts(Scenario::Fanin, &broker);
        o.qos = qos;
        let r = run(o).await;
        assert_eq!(r.expected, 200);
        assert!(r.latency.samples == 200 && r.rss.is_some());
    }

    let mut o = opts(Scenario::Fanout, &broker);
    o.subscribers = Some(10);
    assert_eq!(run(o).await.expected, 2000);

    let mut o = opts(Scenario::Latency, &broker);
    o.count = Some(50);
    o.rate = Some(500.0);
    assert_eq!(run(o).await.sent, 50);

    let mut o = opts(Scenario::Connections, &broker);
    o.connections = Some(50);
    let r = run(o).await;
    assert!(r.extra["connect_per_s"].as_f64().unwrap() > 0.0);
    assert!(r.extra.contains_key("rss_per_conn_bytes"));

    let mut o = opts(Scenario::Wildcard, &broker);
    o.filters = Some(100);
    let r = run(o).await;
    assert_eq!(r.extra["first_publish_lost"], 0);

    let mut o = opts(Scenario::Retained, &broker);
    o.retained = Some(300);
    assert_eq!(run(o).await.delivered, 300);

    let mut o = opts(Scenario::Durable, &broker);
    o.label = Some("memory".into());
    let r = run(o).await;
    assert_eq!(r.params.qos, QoS::AtLeastOnce);
    assert_eq!(r.label.as_deref(), Some("memory"));

    let mut o = opts(Scenario::Inactive, &broker);
    o.filters = Some(1000);
    let r = run(o).await;
    assert_eq!(r.extra["inactive_subscriptions"], 1000);
    assert_eq!(
        r.lost, 0,
        "inactive subscriptions must not receive or disturb anything"
    );

    broker.shutdown().await;
}

#[tokio::test]
async fn non_loopback_targets_are_refused() {
    let o = Options::new(Scenario::Fanin, "192.0.2.1:1883".parse().unwrap());
    let err = canopy_bench::run(&o, Progress::hidden()).await.unwrap_err();
    assert!(matches!(err, BenchError::NotLoopback(_)), "{err}");
    let err = canopy_bench::target("192.0.2.1", 1883).await.unwrap_err();
    assert!(matches!(err, BenchError::NotLoopback(_)), "{err}");
}
