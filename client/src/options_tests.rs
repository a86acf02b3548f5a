//! Validation of connection arguments and the rumqttc options built from them.

use super::*;
use crate::cli::{Cli, Command};
use clap::Parser;

fn settings(args: &[&str]) -> Result<ConnectSettings, CliError> {
    let mut full = vec!["canopy", "sub", "-t", "a"];
    full.extend_from_slice(args);
    match Cli::try_parse_from(full).unwrap().command {
        Command::Sub(sub) => ConnectSettings::from_args(&sub.connect),
        _ => panic!("not parsed as sub"),
    }
}

#[test]
fn url_overrides_host_port_and_credentials() {
    let s = settings(&[
        "-h",
        "ignored",
        "-p",
        "1",
        "-u",
        "bob",
        "-L",
        "mqtt://alice:pw@h:1884",
    ])
    .unwrap();
    assert_eq!((s.host.as_str(), s.port), ("h", 1884));
    assert_eq!(s.credentials, Some(("alice".into(), "pw".into())));
    assert_eq!(s.addr(), "h:1884");
}

#[test]
fn password_without_user_is_refused() {
    assert!(matches!(
        settings(&["-P", "secret"]),
        Err(CliError::Usage(_))
    ));
    assert_eq!(
        settings(&["-u", "u"]).unwrap().credentials,
        Some(("u".into(), String::new()))
    );
}

#[test]
fn persistent_session_needs_a_client_id() {
    // [MQTT-3.1.3-7] a zero-byte client id requires CleanSession = 1.
    assert!(matches!(settings(&["-c"]), Err(CliError::Usage(_))));
    assert!(matches!(
        settings(&["-c", "-i", ""]),
        Err(CliError::Usage(_))
    ));
    let s = settings(&["-c", "-i", "me"]).unwrap();
    assert!(!s.clean);
    assert!(!s.v4_options().clean_session());
}

#[test]
fn without_an_id_the_broker_assigns_one_for_both_versions() {
    // [MQTT-3.1.3-6], [MQTT-3.1.3-7]: an empty id with a clean session.
    assert_eq!(settings(&[]).unwrap().client_id, "");
    assert_eq!(settings(&["-V", "5"]).unwrap().client_id, "");
}

#[test]
fn session_expiry_defaults_follow_mosquitto() {
    assert_eq!(settings(&["-V", "5"]).unwrap().session_expiry, None);
    let s = settings(&["-V", "5", "-c", "-i", "x"]).unwrap();
    assert_eq!(s.session_expiry, Some(u32::MAX));
    assert!(!s.v5_options().clean_start());
    assert_eq!(s.v5_options().session_expiry_interval(), Some(u32::MAX));
    assert_eq!(
        settings(&["-V", "5", "-x", "60"]).unwrap().session_expiry,
        Some(60)
    );
    assert!(matches!(
        settings(&["-x", "60"]),
        Err(CliError::RequiresV5(_))
    ));
}

#[test]
fn keepalive_below_rumqttc_minimum_is_an_error_not_a_panic() {
    assert!(matches!(
        settings(&["-V", "5", "-k", "4"]),
        Err(CliError::Usage(_))
    ));
    let s = settings(&["-k", "0"]).unwrap();
    assert_eq!(s.v4_options().keep_alive(), Duration::ZERO);
    assert_eq!(
        settings(&["-V", "5", "-k", "5"])
            .unwrap()
            .v5_options()
            .keep_alive()
            .as_secs(),
        5
    );
}

#[test]
fn will_is_carried_into_both_versions() {
    let s = settings(&[
        "--will-topic",
        "w/t",
        "--will-payload",
        "bye",
        "--will-qos",
        "2",
        "--will-retain",
    ])
    .unwrap();
    let will = s.v4_options().last_will().unwrap();
    assert_eq!(
        (will.topic.as_str(), &will.message[..]),
        ("w/t", &b"bye"[..])
    );
    assert!(will.retain);
    let will = settings(&["-V", "5", "--will-topic", "w/t"])
        .unwrap()
        .v5_options()
        .last_will()
        .unwrap();
    assert_eq!(&will.topic[..], b"w/t");
    assert!(will.message.is_empty());
    assert!(matches!(
        settings(&["--will-topic", "w/#"]),
        Err(CliError::Usage(_))
    ));
}

#[test]
fn ipv6_hosts_are_bracketed_for_rumqttc() {
    let s = settings(&["-h", "::1", "-p", "2000"]).unwrap();
    assert_eq!(s.v4_options().broker_address(), ("[::1]".to_owned(), 2000));
    assert_eq!(s.addr(), "[::1]:2000");
}

#[test]
fn packet_size_limits_allow_large_payloads() {
    let s = settings(&["-V", "5"]).unwrap();
    assert_eq!(s.v5_options().max_packet_size(), Some(MAX_PACKET_SIZE));
    assert_eq!(
        settings(&[]).unwrap().v4_options().max_packet_size(),
        MAX_PACKET_SIZE as usize
    );
}
