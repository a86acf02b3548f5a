use super::*;

const SAMPLE: &str = r#"
name = "site-7"

[local]
url = "mqtt://127.0.0.1:1883"

[remote]
url = "mqtt://hub.example:1883"
client_id = "site-7"

[[route]]
direction = "out"
local = "site7/#"
remote_prefix = "sites/"
qos = 1

[[route]]
direction = "in"
local = "a/+/b/#"
remote = "x/{1}/{2}"
qos = 2
"#;

#[test]
fn spec_sample_parses_with_defaults() {
    let c = BridgeConfig::from_toml(SAMPLE, "m.toml").unwrap();
    assert_eq!(c.name, "site-7");
    assert_eq!(c.routes.len(), 2);
    assert_eq!(
        c.routes[0].remap().unwrap().apply("site7/a").as_deref(),
        Some("sites/site7/a")
    );
    assert_eq!(c.max_hops, 8);
    assert_eq!(c.backoff.cap, Duration::from_secs(30));
    assert_eq!(c.local.protocol, Protocol::V5);
}

#[test]
fn hierarchy_shorthand_adds_up_and_down_routes() {
    let text = SAMPLE.replace("name = \"site-7\"", "name = \"site-7\"\nhierarchy = true");
    let c = BridgeConfig::from_toml(&text, "m.toml").unwrap();
    let routes = c.effective_routes();
    let extra: Vec<(Direction, &str)> = routes[2..]
        .iter()
        .map(|r| (r.direction, r.local.as_str()))
        .collect();
    assert_eq!(
        extra,
        [
            (Direction::Out, "$status/#"),
            (Direction::Out, "$presence/#"),
            (Direction::Out, "$cluster/#"),
            (Direction::In, "$config/#"),
            (Direction::In, "map/#"),
            (Direction::In, "fx/#"),
        ]
    );
}

#[test]
fn unknown_key_names_file_and_line() {
    let text = SAMPLE.replace("qos = 2", "qos = 2\nqso = 1");
    let e = BridgeConfig::from_toml(&text, "m.toml")
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("m.toml:22:"), "{e}");
    assert!(e.contains("qso"), "{e}");
}

#[test]
fn invalid_route_names_its_key_and_line() {
    let text = SAMPLE.replace("qos = 2", "qos = 3");
    let e = BridgeConfig::from_toml(&text, "m.toml").unwrap_err();
    assert_eq!(e.to_string(), "m.toml:21: route[1].qos: must be 0, 1 or 2");
    let text = SAMPLE.replace("x/{1}/{2}", "x/{2}/{1}");
    let e = BridgeConfig::from_toml(&text, "m.toml")
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("m.toml:20: route[1].remote:"), "{e}");
}

#[test]
fn bad_url_and_backoff_are_refused() {
    let text = SAMPLE.replace("mqtt://hub.example:1883", "http://hub");
    let e = BridgeConfig::from_toml(&text, "m.toml")
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("m.toml:8: remote.url:"), "{e}");
    let text = format!("{SAMPLE}\n[backoff]\nbase = \"2s\"\ncap = \"1s\"\n");
    assert!(BridgeConfig::from_toml(&text, "m.toml").is_err());
}

#[test]
fn tls_files_are_only_for_mqtts_and_cert_needs_key() {
    let tls = SAMPLE.replace("mqtt://hub.example:1883", "mqtts://hub.example:8883");
    let text = tls.replace(
        "client_id = \"site-7\"",
        "client_id = \"site-7\"\nca_file = \"ca.pem\"\ncert_file = \"c.pem\"\nkey_file = \"c.key\"",
    );
    let c = BridgeConfig::from_toml(&text, "m.toml").unwrap();
    assert_eq!(c.remote.ca_file.as_deref(), Some(Path::new("ca.pem")));
    let text = tls.replace("client_id = \"site-7\"", "cert_file = \"c.pem\"");
    let e = BridgeConfig::from_toml(&text, "m.toml")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("remote.cert_file: cert_file and key_file go together"),
        "{e}"
    );
    let text = SAMPLE.replace("client_id = \"site-7\"", "ca_file = \"ca.pem\"");
    let e = BridgeConfig::from_toml(&text, "m.toml")
        .unwrap_err()
        .to_string();
    assert!(e.contains("remote.ca_file: only for mqtts:// URLs"), "{e}");
}

const V311: &str = r#"
name = "b"
[local]
url = "mqtt://127.0.0.1:1883"
[remote]
url = "mqtt://127.0.0.1:1884"
protocol = "3.1.1"
"#;

#[test]
fn v311_remote_accepts_disjoint_directions() {
    let text = format!(
        "{V311}[[route]]\ndirection = \"out\"\nlocal = \"up/#\"\nremote_prefix = \"site/\"\n\
         [[route]]\ndirection = \"in\"\nlocal = \"down/#\"\n\
         [[route]]\ndirection = \"in\"\nlocal = \"cmd/#\"\nremote_prefix = \"site-cmd/\"\n"
    );
    let c = BridgeConfig::from_toml(&text, "m.toml").unwrap();
    assert_eq!(c.remote.protocol, Protocol::V311);
}

#[test]
fn v311_remote_refuses_a_both_route_naming_it() {
    let text = format!("{V311}[[route]]\ndirection = \"both\"\nlocal = \"t/#\"\n");
    let e = BridgeConfig::from_toml(&text, "m.toml")
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("m.toml:8: route[0]: route[0] (both \"t/#\") forwards both ways on the MQTT 3.1.1 remote"), "{e}");
}

#[test]
fn v311_remote_refuses_in_and_out_overlapping_after_remapping() {
    // out: up/x -> site/up/x on the remote; in subscribes site/# there: echo.
    let text = format!(
        "{V311}[[route]]\ndirection = \"out\"\nlocal = \"up/#\"\nremote_prefix = \"site/\"\n\
         [[route]]\ndirection = \"in\"\nlocal = \"x/#\"\nremote = \"site/{{1}}\"\n"
    );
    let e = BridgeConfig::from_toml(&text, "m.toml")
        .unwrap_err()
        .to_string();
    assert!(e.contains("route[1]: route[0] (out \"up/#\") and route[1] (in \"x/#\") overlap on the MQTT 3.1.1 remote"), "{e}");
}

#[test]
fn v311_local_refuses_overlap_and_own_state_topics() {
    let local = V311.replace("protocol = \"3.1.1\"\n", "").replace(
        "url = \"mqtt://127.0.0.1:1883\"",
        "url = \"mqtt://127.0.0.1:1883\"\nprotocol = \"3.1.1\"",
    );
    let text = format!(
        "{local}[[route]]\ndirection = \"in\"\nlocal = \"a/+/c\"\nremote_prefix = \"r/\"\n\
         [[route]]\ndirection = \"out\"\nlocal = \"a/b/#\"\nremote_prefix = \"s/\"\n"
    );
    let e = BridgeConfig::from_toml(&text, "m.toml")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(
            "route[1] (out \"a/b/#\") and route[0] (in \"a/+/c\") overlap on the MQTT 3.1.1 local"
        ),
        "{e}"
    );
    let text =
        format!("state_prefix = \"m\"\n{local}[[route]]\ndirection = \"out\"\nlocal = \"#\"\n");
    let e = BridgeConfig::from_toml(&text, "m.toml")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("covers the bridge's own state topics \"m/b/#\""),
        "{e}"
    );
}

#[test]
fn interest_is_for_in_and_both_routes_and_max_proxy_filters_positive() {
    let text = SAMPLE.replace("qos = 2", "qos = 2\ninterest = true");
    let c = BridgeConfig::from_toml(&text, "m.toml").unwrap();
    assert!(c.routes[1].interest);
    assert_eq!(c.max_proxy_filters, 64);
    let text = SAMPLE.replace("qos = 1", "qos = 1\ninterest = true");
    let e = BridgeConfig::from_toml(&text, "m.toml").unwrap_err();
    assert_eq!(
        e.to_string(),
        "m.toml:16: route[0].interest: only for routes with direction \"in\" or \"both\""
    );
    let text = SAMPLE.replace(
        "name = \"site-7\"",
        "name = \"site-7\"\nmax_proxy_filters = 0",
    );
    let e = BridgeConfig::from_toml(&text, "m.toml").unwrap_err();
    assert_eq!(e.to_string(), "m.toml:3: max_proxy_filters: must be > 0");
    let text = SAMPLE.replace("qos = 2", "qos = 2\ninterest = 1");
    let e = BridgeConfig::from_toml(&text, "m.toml")
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("m.toml:22:") && e.contains("bool"), "{e}");
}
