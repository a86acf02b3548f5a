//! Argument handling of `canopy config get|set`: the plans they build, checked before any
//! connection is made.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use super::*;
use crate::cli::{Cli, Command};

fn args(line: &[&str]) -> ConfigArgs {
    let mut full = vec!["canopy", "config"];
    full.extend_from_slice(line);
    match Cli::try_parse_from(full).unwrap().command {
        Command::Config(args) => args,
        _ => panic!("not parsed as config"),
    }
}

fn get(line: &[&str]) -> Result<SubscribePlan, CliError> {
    let mut full = vec!["get"];
    full.extend_from_slice(line);
    match args(&full).action {
        ConfigAction::Get(get) => get_plan(&get),
        ConfigAction::Set(_) => panic!("not get"),
    }
}

fn set(line: &[&str]) -> Result<PublishPlan, CliError> {
    let mut full = vec!["set"];
    full.extend_from_slice(line);
    match args(&full).action {
        ConfigAction::Set(set) => set_plan(&set),
        ConfigAction::Get(_) => panic!("not set"),
    }
}

#[test]
fn get_reads_your_own_document_once_with_a_default_timeout() {
    let plan = get(&["-i", "dev1"]).unwrap();
    assert_eq!(plan.request.filters.len(), 1);
    assert_eq!(plan.request.filters[0].filter, "$config/dev1");
    assert_eq!(plan.request.filters[0].qos, Qos::AtLeastOnce);
    assert_eq!(plan.count, Some(1));
    assert_eq!(
        plan.timeout,
        Some(Duration::from_secs(DEFAULT_GET_TIMEOUT_SECS))
    );
    assert_eq!(plan.connect.client_id, "dev1");
    assert_eq!(plan.format, OutputFormat::Payload);
}

#[test]
fn get_for_another_client_and_timeout_and_watch() {
    let plan = get(&["-i", "admin", "--for", "dev7", "-W", "2"]).unwrap();
    assert_eq!(plan.request.filters[0].filter, "$config/dev7");
    assert_eq!(plan.timeout, Some(Duration::from_secs(2)));
    let plan = get(&["-i", "dev1", "--watch"]).unwrap();
    assert_eq!((plan.count, plan.timeout), (None, None));
    let plan = get(&["-i", "dev1", "--watch", "-W", "9", "-F", "json"]).unwrap();
    assert_eq!(
        (plan.count, plan.timeout),
        (None, Some(Duration::from_secs(9)))
    );
    assert_eq!(plan.format, OutputFormat::Json);
    let plan = get(&["--for", "default"]).unwrap();
    assert_eq!(plan.request.filters[0].filter, "$config/default");
}

#[test]
fn get_without_a_client_id_is_a_usage_error() {
    assert!(matches!(get(&[]), Err(CliError::Usage(_))));
    assert!(matches!(get(&["-V", "5"]), Err(CliError::Usage(_))));
    assert!(matches!(get(&["-i", ""]), Err(CliError::Usage(_))));
}

#[test]
fn ids_with_wildcards_cannot_name_a_document() {
    // [MQTT-3.3.2-2] a topic name must not contain wildcards.
    for id in ["a+b", "a/#", "+"] {
        assert!(
            matches!(get(&["--for", id]), Err(CliError::Usage(_))),
            "{id}"
        );
        assert!(
            matches!(set(&["--for", id, "-m", "x"]), Err(CliError::Usage(_))),
            "{id}"
        );
    }
    assert_eq!(config_topic("site/dev 1").unwrap(), "$config/site/dev 1");
}

#[test]
fn set_publishes_retained_at_qos_1() {
    let plan = set(&["-i", "admin", "--for", "dev1", "-m", "{\"rate\":5}"]).unwrap();
    assert_eq!(plan.topic, "$config/dev1");
    assert_eq!(plan.qos, Qos::AtLeastOnce);
    assert!(plan.retain);
    assert_eq!(plan.repeat, 1);
    assert_eq!(
        plan.source,
        Source::Message(Bytes::from_static(b"{\"rate\":5}"))
    );
    assert_eq!(plan.properties, PublishOptions::default());
    let plan = set(&["--for", "dev1", "-f", "conf.toml"]).unwrap();
    assert_eq!(plan.source, Source::File(PathBuf::from("conf.toml")));
    let plan = set(&["--for", "dev1", "-n"]).unwrap();
    assert_eq!(plan.source, Source::Null);
}

#[test]
fn set_needs_for_and_exactly_one_document_source() {
    let parse = |line: &[&str]| {
        let mut full = vec!["canopy", "config", "set"];
        full.extend_from_slice(line);
        Cli::try_parse_from(full)
    };
    assert!(parse(&["-m", "x"]).is_err(), "--for is required");
    assert!(parse(&["--for", "d"]).is_err(), "a source is required");
    assert!(parse(&["--for", "d", "-m", "x", "-f", "y"]).is_err());
    assert!(parse(&["--for", "d", "-m", "x", "-n"]).is_err());
}

#[test]
fn content_type_passes_through_on_5_0_only() {
    let plan = set(&[
        "-V",
        "5",
        "-i",
        "admin",
        "--for",
        "dev1",
        "-m",
        "{}",
        "--content-type",
        "application/json",
    ])
    .unwrap();
    assert_eq!(
        plan.properties.content_type.as_deref(),
        Some("application/json")
    );
    assert!(matches!(
        set(&[
            "--for",
            "dev1",
            "-m",
            "{}",
            "--content-type",
            "application/json"
        ]),
        Err(CliError::RequiresV5("--content-type"))
    ));
}

#[test]
fn h_is_the_host_in_config_subcommands_too() {
    let plan = get(&["-h", "broker.example", "-p", "1884", "-i", "d"]).unwrap();
    assert_eq!(
        (plan.connect.host.as_str(), plan.connect.port),
        ("broker.example", 1884)
    );
}

#[test]
fn a_refused_write_names_the_topic_and_the_admin_rule() {
    let err = CliError::ConfigWriteRefused {
        topic: "$config/dev1".into(),
        code: 0x87,
    };
    let text = err.to_string();
    assert!(text.contains("$config/dev1"), "{text}");
    assert!(text.contains("Not authorized (0x87)"), "{text}");
    assert!(text.contains("[config] admins"), "{text}");
    assert_eq!(err.exit_code(), 1);
}
