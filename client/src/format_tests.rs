//! Byte-exact rendering of received messages.

use super::*;

fn message(topic: &str, payload: &'static [u8]) -> Message {
    Message {
        topic: topic.to_owned(),
        payload: Bytes::from_static(payload),
        qos: 1,
        retain: false,
        properties: None,
    }
}

fn json(message: &Message) -> serde_json::Value {
    let out = Formatter::new(OutputFormat::Json, true).render(message);
    assert_eq!(out.last(), Some(&b'\n'));
    serde_json::from_slice(&out).unwrap()
}

#[test]
fn payload_format_prints_raw_bytes_and_a_newline() {
    let m = message("a/b", b"hello");
    assert_eq!(
        Formatter::new(OutputFormat::Payload, true).render(&m),
        b"hello\n"
    );
    assert_eq!(
        Formatter::new(OutputFormat::Payload, false).render(&m),
        b"hello"
    );
}

#[test]
fn verbose_prints_topic_space_payload() {
    let m = message("a/b", b"x y");
    assert_eq!(
        Formatter::new(OutputFormat::Verbose, true).render(&m),
        b"a/b x y\n"
    );
    assert_eq!(
        Formatter::new(OutputFormat::Topic, true).render(&m),
        b"a/b\n"
    );
}

#[test]
fn binary_payloads_are_written_unchanged() {
    let m = message("t", b"\x00\xff\n\x80");
    assert_eq!(
        Formatter::new(OutputFormat::Payload, false).render(&m),
        b"\x00\xff\n\x80"
    );
}

#[test]
fn json_of_a_3_1_1_message_has_no_5_0_fields() {
    let mut m = message("a/b", b"hi \"there\"");
    m.retain = true;
    assert_eq!(
        json(&m),
        serde_json::json!({"topic": "a/b", "payload": "hi \"there\"", "qos": 1, "retain": true})
    );
}

#[test]
fn json_uses_base64_for_non_utf8_payloads() {
    let v = json(&message("t", b"\xff\xfe\x00"));
    assert_eq!(v["payload_base64"], "//4A");
    assert!(v.get("payload").is_none());
}

#[test]
fn json_of_a_5_0_message_lists_properties() {
    let mut m = message("t", b"{}");
    m.properties = Some(MessageProperties {
        user_properties: vec![("k".into(), "v1".into()), ("k".into(), "v2".into())],
        content_type: Some("application/json".into()),
        response_topic: Some("reply/here".into()),
        correlation_data: Some(Bytes::from_static(b"\xff\x01")),
        message_expiry: Some(30),
        subscription_ids: vec![4],
    });
    assert_eq!(
        json(&m),
        serde_json::json!({
            "topic": "t", "payload": "{}", "qos": 1, "retain": false,
            "user_properties": [{"key": "k", "value": "v1"}, {"key": "k", "value": "v2"}],
            "content_type": "application/json",
            "response_topic": "reply/here",
            "correlation_data_base64": "/wE=",
            "message_expiry": 30,
            "subscription_ids": [4],
        })
    );
}

#[test]
fn json_of_a_5_0_message_without_properties_has_empty_user_properties() {
    let mut m = message("t", b"");
    m.properties = Some(MessageProperties::default());
    assert_eq!(
        json(&m),
        serde_json::json!({"topic": "t", "payload": "", "qos": 1, "retain": false, "user_properties": []})
    );
}

#[test]
fn base64_matches_rfc_4648_test_vectors() {
    for (plain, encoded) in [
        ("", ""),
        ("f", "Zg=="),
        ("fo", "Zm8="),
        ("foo", "Zm9v"),
        ("foob", "Zm9vYg=="),
        ("fooba", "Zm9vYmE="),
        ("foobar", "Zm9vYmFy"),
    ] {
        assert_eq!(base64(plain.as_bytes()), encoded, "{plain}");
    }
    assert_eq!(base64(&[0xfb, 0xff]), "+/8=");
}
