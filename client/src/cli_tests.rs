//! Argument parsing of `canopy pub` / `canopy sub` through clap's `try_parse_from`.

use super::*;

fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
    Cli::try_parse_from(args)
}

fn pub_args(args: &[&str]) -> PubArgs {
    let mut full = vec!["canopy", "pub"];
    full.extend_from_slice(args);
    match parse(&full).unwrap().command {
        Command::Pub(args) => args,
        _ => panic!("not parsed as pub"),
    }
}

fn sub_args(args: &[&str]) -> SubArgs {
    let mut full = vec!["canopy", "sub"];
    full.extend_from_slice(args);
    match parse(&full).unwrap().command {
        Command::Sub(args) => args,
        _ => panic!("not parsed as sub"),
    }
}

#[test]
fn dash_h_is_the_host_as_in_mosquitto_pub() {
    let args = pub_args(&["-h", "broker.example", "-p", "1999", "-t", "a"]);
    assert_eq!(args.connect.host, "broker.example");
    assert_eq!(args.connect.port, 1999);
}

#[test]
fn long_help_still_prints_help() {
    let err = parse(&["canopy", "pub", "--help"]).unwrap_err();
    assert_eq!(err.kind(), clap::error::ErrorKind::DisplayHelp);
    let err = parse(&["canopy", "sub", "--help"]).unwrap_err();
    assert_eq!(err.kind(), clap::error::ErrorKind::DisplayHelp);
}

#[test]
fn connection_defaults_match_mosquitto() {
    let args = pub_args(&["-t", "a"]);
    assert_eq!(args.connect.host, "localhost");
    assert_eq!(args.connect.port, 1883);
    assert_eq!(args.connect.protocol_version, ProtocolVersion::V311);
    assert_eq!(args.connect.keepalive, 60);
    assert!(!args.connect.disable_clean_session);
    assert_eq!(args.qos, Qos::AtMostOnce);
}

#[test]
fn protocol_version_accepts_mosquitto_spellings() {
    for (text, version) in [
        ("3.1.1", ProtocolVersion::V311),
        ("mqttv311", ProtocolVersion::V311),
        ("311", ProtocolVersion::V311),
        ("5", ProtocolVersion::V5),
        ("mqttv5", ProtocolVersion::V5),
        ("MQTTv5", ProtocolVersion::V5),
    ] {
        assert_eq!(
            pub_args(&["-V", text, "-t", "a"]).connect.protocol_version,
            version,
            "{text}"
        );
    }
    assert!(parse(&["canopy", "pub", "-V", "3.1", "-t", "a"]).is_err());
    assert!(parse(&["canopy", "pub", "-V", "6", "-t", "a"]).is_err());
}

#[test]
fn qos_outside_0_to_2_is_refused() {
    assert_eq!(pub_args(&["-t", "a", "-q", "2"]).qos, Qos::ExactlyOnce);
    assert!(parse(&["canopy", "pub", "-t", "a", "-q", "3"]).is_err());
    assert!(parse(&["canopy", "sub", "-t", "a", "-q", "-1"]).is_err());
}

#[test]
fn only_one_message_source_may_be_given() {
    assert!(parse(&["canopy", "pub", "-t", "a", "-m", "x", "-f", "file"]).is_err());
    assert!(parse(&["canopy", "pub", "-t", "a", "-m", "x", "-n"]).is_err());
    assert!(parse(&["canopy", "pub", "-t", "a", "-s", "-l"]).is_err());
    assert!(parse(&["canopy", "pub", "-t", "a", "-l", "--repeat", "2"]).is_err());
    let args = pub_args(&["-t", "a", "-l"]);
    assert!(args.stdin_line && args.message.is_none());
}

#[test]
fn user_properties_repeat_and_keep_equals_in_values() {
    let args = pub_args(&[
        "-t",
        "a",
        "-U",
        "k=v",
        "--user-property",
        "k=a=b",
        "-U",
        "e=",
    ]);
    assert_eq!(
        args.user_properties,
        vec![
            ("k".to_owned(), "v".to_owned()),
            ("k".to_owned(), "a=b".to_owned()),
            ("e".to_owned(), String::new()),
        ]
    );
    assert!(parse(&["canopy", "pub", "-t", "a", "-U", "novalue"]).is_err());
    assert!(parse(&["canopy", "pub", "-t", "a", "-U", "=v"]).is_err());
}

#[test]
fn repeat_delay_takes_fractional_seconds() {
    let args = pub_args(&[
        "-t",
        "a",
        "-m",
        "x",
        "--repeat",
        "3",
        "--repeat-delay",
        "0.25",
    ]);
    assert_eq!(args.repeat, 3);
    assert_eq!(args.repeat_delay, Duration::from_millis(250));
    assert!(parse(&["canopy", "pub", "-t", "a", "--repeat-delay", "-1"]).is_err());
}

#[test]
fn session_expiry_accepts_minus_one_as_never() {
    let args = pub_args(&["-t", "a", "-x", "-1"]);
    assert_eq!(args.connect.session_expiry, Some(u32::MAX));
    assert_eq!(
        pub_args(&["-t", "a", "-x", "30"]).connect.session_expiry,
        Some(30)
    );
    assert!(parse(&["canopy", "pub", "-t", "a", "-x", "soon"]).is_err());
}

#[test]
fn will_options_need_a_will_topic() {
    assert!(parse(&["canopy", "pub", "-t", "a", "--will-payload", "bye"]).is_err());
    assert!(parse(&["canopy", "pub", "-t", "a", "--will-retain"]).is_err());
    let args = pub_args(&[
        "-t",
        "a",
        "--will-topic",
        "w",
        "--will-payload",
        "bye",
        "--will-qos",
        "1",
    ]);
    assert_eq!(args.connect.will_topic.as_deref(), Some("w"));
    assert_eq!(args.connect.will_qos, Qos::AtLeastOnce);
}

#[test]
fn url_is_parsed_at_argument_time() {
    let args = sub_args(&["--url", "mqtt://example:2883", "-t", "a"]);
    let url = args.connect.url.unwrap();
    assert_eq!((url.host.as_str(), url.port), ("example", 2883));
    assert!(parse(&["canopy", "sub", "--url", "http://x", "-t", "a"]).is_err());
}

#[test]
fn sub_takes_repeated_topics_and_stop_conditions() {
    let args = sub_args(&["-t", "a/#", "-t", "b", "-C", "3", "-W", "10", "-R", "-N"]);
    assert_eq!(args.topics, vec!["a/#", "b"]);
    assert_eq!(args.count, Some(3));
    assert_eq!(args.timeout, Some(10));
    assert!(args.no_retained && args.no_newline);
    assert!(parse(&["canopy", "sub", "-t", "a", "-C", "0"]).is_err());
}

#[test]
fn verbose_and_format_choose_the_output() {
    assert_eq!(
        sub_args(&["-t", "a"]).output_format(),
        OutputFormat::Payload
    );
    assert_eq!(
        sub_args(&["-t", "a", "-v"]).output_format(),
        OutputFormat::Verbose
    );
    assert_eq!(
        sub_args(&["-t", "a", "-F", "json"]).output_format(),
        OutputFormat::Json
    );
    assert_eq!(
        sub_args(&["-t", "a", "--format", "topic"]).output_format(),
        OutputFormat::Topic
    );
    assert!(parse(&["canopy", "sub", "-t", "a", "-v", "-F", "json"]).is_err());
    assert!(parse(&["canopy", "sub", "-t", "a", "-F", "xml"]).is_err());
}

#[test]
fn retain_handling_and_sub_id_are_range_checked() {
    assert_eq!(
        sub_args(&["-t", "a", "--retain-handling", "2"]).retain_handling,
        Some(2)
    );
    assert!(parse(&["canopy", "sub", "-t", "a", "--retain-handling", "3"]).is_err());
    assert_eq!(
        sub_args(&["-t", "a", "--sub-id", "268435455"]).sub_id,
        Some(268_435_455)
    );
    assert!(parse(&["canopy", "sub", "-t", "a", "--sub-id", "0"]).is_err());
    assert!(parse(&["canopy", "sub", "-t", "a", "--sub-id", "268435456"]).is_err());
}

#[test]
fn log_level_is_global() {
    let cli = parse(&["canopy", "sub", "-t", "a", "--log-level", "debug"]).unwrap();
    assert_eq!(cli.log_level.as_deref(), Some("debug"));
    let cli = parse(&["canopy", "--log-level", "trace", "pub", "-t", "a"]).unwrap();
    assert_eq!(cli.log_level.as_deref(), Some("trace"));
}
