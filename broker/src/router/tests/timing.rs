//! The router's timing behaviours on a fake clock: will delay, session expiry, message
//! expiry, the retained sweep, offline status expiry, the carousel's spreading and byte
//! cap, and `$SYS` publication.

use std::time::Duration;

use canopy_proto::{PublishProperties, QoS};

use super::{Conn, Harness, expiring, will};
use crate::config::CarouselConfig;

const S: Duration = Duration::from_secs(1);

fn persistent(expiry: u32) -> Conn {
    Conn {
        clean: false,
        expiry,
        ..Conn::default()
    }
}

#[test]
fn delayed_will_is_published_when_the_delay_ends_not_before() {
    // [MQTT-3.1.3-9]
    let mut h = Harness::new(|_| {});
    h.connect("s", Conn::default());
    h.subscribe("s", "w/#", QoS::AtMostOnce);
    h.connect(
        "w",
        Conn {
            will: Some(will("w/gone", "gone", 5)),
            ..persistent(60)
        },
    );
    h.received("s");
    h.disconnect("w", true, "connection lost");
    h.advance(Duration::from_millis(4999));
    assert!(
        h.received("s").is_empty(),
        "will published before its delay"
    );
    h.advance(Duration::from_millis(1));
    let got = h.received("s");
    assert_eq!(got.len(), 1);
    assert_eq!(&got[0].payload[..], b"gone");
}

#[test]
fn reconnecting_within_the_will_delay_cancels_the_will() {
    // [MQTT-3.1.3-9]
    let mut h = Harness::new(|_| {});
    h.connect("s", Conn::default());
    h.subscribe("s", "w/#", QoS::AtMostOnce);
    let delayed = || Conn {
        will: Some(will("w/gone", "gone", 2)),
        ..persistent(60)
    };
    h.connect("w", delayed());
    h.disconnect("w", true, "connection lost");
    h.advance(S);
    assert!(h.connect("w", persistent(60)), "session resumed");
    h.advance(10 * S);
    assert!(h.received("s").is_empty(), "cancelled will was published");
}

#[test]
fn session_ending_before_the_will_delay_publishes_the_will_then() {
    // [MQTT-3.1.3-9]: the will goes out when the session ends, if that is sooner.
    let mut h = Harness::new(|_| {});
    h.connect("s", Conn::default());
    h.subscribe("s", "w/#", QoS::AtMostOnce);
    h.connect(
        "w",
        Conn {
            will: Some(will("w/gone", "gone", 100)),
            ..persistent(3)
        },
    );
    h.disconnect("w", true, "connection lost");
    h.advance(2 * S);
    assert!(h.received("s").is_empty());
    h.advance(S);
    assert_eq!(h.received("s").len(), 1, "will due at session end");
}

#[test]
fn session_is_discarded_when_its_expiry_interval_passes() {
    // [MQTT-4.1.0-2], [MQTT-3.1.2-23]
    let mut h = Harness::new(|_| {});
    h.connect("c", persistent(10));
    h.subscribe("c", "a", QoS::AtLeastOnce);
    h.disconnect("c", false, "disconnected");
    h.advance(9 * S);
    assert!(h.connect("c", persistent(10)), "session gone before expiry");
    h.disconnect("c", false, "disconnected");
    h.advance(10 * S);
    assert!(
        !h.connect("c", persistent(10)),
        "session outlived its expiry"
    );
}

#[test]
fn queued_message_expires_and_the_rest_carry_the_time_left() {
    // [MQTT-3.3.2-5]: an expired message is not delivered; [MQTT-3.3.2-6]: the interval
    // sent is the received one minus the time spent waiting.
    let mut h = Harness::new(|_| {});
    h.connect("s", persistent(60));
    h.subscribe("s", "t", QoS::AtLeastOnce);
    h.disconnect("s", false, "disconnected");
    h.connect("p", Conn::default());
    h.publish("p", "t", "short", QoS::AtLeastOnce, false, expiring(1));
    h.publish("p", "t", "long", QoS::AtLeastOnce, false, expiring(10));
    h.advance(3 * S);
    assert!(h.connect("s", persistent(60)));
    let got = h.received("s");
    let payloads: Vec<&[u8]> = got.iter().map(|g| &g.payload[..]).collect();
    assert_eq!(payloads, vec![&b"long"[..]]);
    assert_eq!(got[0].expiry_left, Some(7));
}

#[test]
fn expired_retained_messages_are_not_replayed_and_are_swept() {
    // [MQTT-3.3.2-5]
    let mut h = Harness::new(|c| c.sys_interval = Duration::ZERO);
    h.connect("p", Conn::default());
    h.connect("s", Conn::default());
    let before = h.router.stats().retained; // status documents
    h.publish("p", "r/a", "a", QoS::AtMostOnce, true, expiring(5));
    h.publish(
        "p",
        "r/b",
        "b",
        QoS::AtMostOnce,
        true,
        PublishProperties::default(),
    );
    assert_eq!(h.router.stats().retained, before + 2);
    h.advance(6 * S);
    h.subscribe("s", "r/#", QoS::AtMostOnce);
    let got = h.received("s");
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].topic, "r/b");
    h.advance(60 * S);
    assert_eq!(
        h.router.stats().retained,
        before + 1,
        "the sweep removes the expired one"
    );
}

#[test]
fn offline_status_documents_expire_after_a_day() {
    let mut h = Harness::new(|_| {});
    h.connect("dev", Conn::default());
    h.disconnect("dev", false, "disconnected");
    h.connect("w", Conn::default());
    h.subscribe("w", "$status/dev", QoS::AtMostOnce);
    let got = h.received("w");
    assert_eq!(got.len(), 1);
    assert!(
        std::str::from_utf8(&got[0].payload)
            .unwrap()
            .contains("offline")
    );
    assert_eq!(got[0].expiry_left, Some(86_400));
    h.advance(Duration::from_secs(86_400));
    h.subscribe("w", "$status/dev", QoS::AtMostOnce);
    assert!(
        h.received("w").is_empty(),
        "offline document outlived a day"
    );
}

#[test]
fn carousel_spreads_a_round_evenly_over_its_period() {
    let mut h = Harness::new(|c| {
        c.carousel = vec![CarouselConfig {
            filter: canopy_proto::TopicFilter::new("map/#").unwrap(),
            period: Duration::from_secs(10),
            max_bytes_per_sec: 0,
        }];
    });
    h.connect("p", Conn::default());
    for i in 0..10 {
        let t = format!("map/{i}");
        h.publish(
            "p",
            &t,
            "seg",
            QoS::AtMostOnce,
            true,
            PublishProperties::default(),
        );
    }
    h.connect("s", Conn::default());
    h.subscribe("s", "map/#", QoS::AtMostOnce);
    assert_eq!(h.received("s").len(), 10, "retained on subscribe");
    // The first round began at start-up with nothing retained; the next begins 10 s
    // after and sends one segment a second.
    h.advance(10 * S);
    let mut per_second = Vec::new();
    for _ in 0..10 {
        per_second.push(h.received("s").len());
        h.advance(S);
    }
    assert_eq!(per_second.iter().sum::<usize>(), 10, "{per_second:?}");
    assert!(per_second.iter().all(|&n| n <= 2), "bursty: {per_second:?}");
}

#[test]
fn carousel_byte_cap_stretches_the_round() {
    let mut h = Harness::new(|c| {
        c.carousel = vec![CarouselConfig {
            filter: canopy_proto::TopicFilter::new("map/#").unwrap(),
            period: Duration::from_secs(1),
            max_bytes_per_sec: 1000,
        }];
    });
    h.connect("p", Conn::default());
    let seg = "x".repeat(1000);
    for i in 0..5 {
        let t = format!("map/{i}");
        h.publish(
            "p",
            &t,
            &seg,
            QoS::AtMostOnce,
            true,
            PublishProperties::default(),
        );
    }
    h.connect("s", Conn::default());
    h.subscribe("s", "map/#", QoS::AtMostOnce);
    h.received("s");
    h.advance(S);
    let mut sent = 0;
    for _ in 0..3 {
        h.advance(S);
        sent += h.received("s").len();
    }
    // 1,000 bytes a second allow about one 1,000-byte segment a second, not five.
    assert!((2..=4).contains(&sent), "sent {sent} segments in 3 s");
}

#[test]
fn sys_topics_are_published_every_interval() {
    let mut h = Harness::new(|c| c.sys_interval = Duration::from_secs(10));
    h.connect("s", Conn::default());
    h.subscribe("s", "$SYS/broker/uptime", QoS::AtMostOnce);
    h.received("s");
    h.advance(9 * S);
    assert!(h.received("s").is_empty());
    h.advance(S);
    let got = h.received("s");
    assert_eq!(got.len(), 1);
    assert_eq!(&got[0].payload[..], b"10 seconds");
}
