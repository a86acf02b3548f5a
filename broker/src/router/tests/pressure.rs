//! Back-pressure from subscriber to publisher: an online subscriber that is behind
//! slows its publishers instead of losing acknowledged messages; one that stays full
//! is cut off as a slow consumer (docs/flow-control.md).

use std::sync::atomic::Ordering;
use std::time::Duration;

use canopy_proto::{Packet, PublishProperties, QoS, ReasonCode};

use super::{Conn, Harness};
use crate::outbox::Outgoing;

fn harness() -> Harness {
    Harness::new(|c| {
        c.limits.max_inflight = 2;
        c.limits.max_queued_messages = 3;
        c.limits.slow_consumer_timeout = Duration::from_secs(30);
    })
}

fn none() -> PublishProperties {
    PublishProperties::default()
}

/// Packet ids of the PUBACKs queued for `id`, in order.
fn pubacks(h: &mut Harness, id: &str) -> Vec<u16> {
    h.packets(id)
        .into_iter()
        .filter_map(|p| match p {
            Packet::PubAck(a) => Some(a.pkid),
            _ => None,
        })
        .collect()
}

#[test]
fn a_subscriber_that_is_behind_holds_its_publisher_back_and_nothing_is_lost() {
    let mut h = harness();
    h.connect("s", Conn::default());
    h.subscribe("s", "t", QoS::AtLeastOnce);
    h.connect("p", Conn::default());
    h.packets("s");
    let sent: Vec<u16> = (0..10)
        .map(|i| {
            h.publish("p", "t", &i.to_string(), QoS::AtLeastOnce, false, none())
                .unwrap()
        })
        .collect();
    // Two in flight and three queued fit; the other five wait with their publisher.
    let mut acked = pubacks(&mut h, "p");
    assert_eq!(acked, sent[..5].to_vec(), "acknowledged beyond the queue");
    let mut got = Vec::new();
    for _ in 0..20 {
        let batch = h.received("s");
        if batch.is_empty() {
            break;
        }
        for g in batch {
            got.push(String::from_utf8(g.payload.to_vec()).unwrap());
            h.puback("s", g.pkid.unwrap());
        }
        acked.extend(pubacks(&mut h, "p"));
    }
    let want: Vec<String> = (0..10).map(|i| i.to_string()).collect();
    assert_eq!(got, want, "every message, in order");
    assert_eq!(acked, sent, "every PUBACK, in order [MQTT-4.6.0-2]");
    assert_eq!(h.metrics().messages_dropped.load(Ordering::Relaxed), 0);
    assert!(h.metrics().publishers_held.load(Ordering::Relaxed) >= 5);
}

#[test]
fn a_later_acknowledgement_never_overtakes_a_held_one() {
    // [MQTT-4.6.0-2]: PUBACKs in the order the PUBLISHes were received.
    let mut h = harness();
    h.connect("s", Conn::default());
    h.subscribe("s", "t", QoS::AtLeastOnce);
    h.connect("o", Conn::default());
    h.subscribe("o", "u", QoS::AtLeastOnce);
    h.connect("p", Conn::default());
    for i in 0..6 {
        h.publish("p", "t", &i.to_string(), QoS::AtLeastOnce, false, none());
    }
    let before = pubacks(&mut h, "p").len();
    assert_eq!(before, 5);
    h.publish("p", "u", "other", QoS::AtLeastOnce, false, none());
    assert!(pubacks(&mut h, "p").is_empty(), "ack overtook a held one");
    // Subscribers of other topics are not held up at all.
    assert_eq!(h.received("o").len(), 1);
    for g in h.received("s") {
        h.puback("s", g.pkid.unwrap());
    }
    assert_eq!(pubacks(&mut h, "p").len(), 2, "both released, in order");
}

#[test]
fn a_subscriber_full_for_the_timeout_is_cut_off_and_its_publisher_resumes() {
    let mut h = harness();
    h.connect(
        "s",
        Conn {
            clean: false,
            expiry: 3600,
            ..Conn::default()
        },
    );
    h.subscribe("s", "t", QoS::AtLeastOnce);
    h.connect("p", Conn::default());
    h.outgoing("s");
    for i in 0..10 {
        h.publish("p", "t", &i.to_string(), QoS::AtLeastOnce, false, none());
    }
    assert_eq!(pubacks(&mut h, "p").len(), 5);
    h.advance(Duration::from_secs(29));
    assert!(
        pubacks(&mut h, "p").is_empty(),
        "released before the timeout"
    );
    h.advance(Duration::from_secs(1));
    let cut = h
        .outgoing("s")
        .into_iter()
        .any(|o| matches!(o, Outgoing::Disconnect(r, _) if r == ReasonCode::QUOTA_EXCEEDED));
    assert!(cut, "slow consumer not told 0x97");
    assert_eq!(pubacks(&mut h, "p").len(), 5, "publisher still held");
    assert_eq!(h.metrics().slow_consumers.load(Ordering::Relaxed), 1);
    // The persistent session now queues as an offline one: within its limits, drops
    // counted.
    assert_eq!(h.metrics().messages_dropped.load(Ordering::Relaxed), 5);
    assert!(h.connect(
        "s",
        Conn {
            clean: false,
            expiry: 3600,
            ..Conn::default()
        }
    ));
    assert_eq!(h.received("s").len(), 2, "the in-flight window is resent");
}
