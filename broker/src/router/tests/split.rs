//! Big work in small turns (`deferred.rs`): one SUBSCRIBE of many filters is handled a
//! chunk per turn, the same session's later packets wait behind it in order, and other
//! sessions are served in between.

use std::time::Duration;

use canopy_proto::{
    Packet, PublishProperties, QoS, Subscribe, SubscribeProperties, SubscriptionOptions,
    TopicFilter, Unsubscribe,
};

use super::super::deferred::CHUNK;
use super::{Command, Conn, Harness};

fn big_subscribe(pkid: u16, n: usize) -> Subscribe {
    Subscribe {
        pkid,
        filters: (0..n)
            .map(|i| {
                (
                    TopicFilter::new(&format!("big/{i}")).unwrap(),
                    SubscriptionOptions::default(),
                )
            })
            .collect(),
        properties: SubscribeProperties::default(),
    }
}

#[test]
fn a_subscribe_of_many_filters_takes_several_turns_and_its_session_waits_in_order() {
    let mut h = Harness::new(|_| {});
    h.connect("big", Conn::default());
    h.connect("other", Conn::default());
    let n = CHUNK * 2 + 100;
    let (session, conn) = h.target("big");
    // One turn: the SUBSCRIBE, then the same client's UNSUBSCRIBE of its first filter.
    h.router.handle(
        h.now,
        Command::Subscribe {
            session,
            conn,
            subscribe: big_subscribe(7, n),
        },
    );
    h.router.handle(
        h.now,
        Command::Unsubscribe {
            session,
            conn,
            unsubscribe: Unsubscribe {
                pkid: 8,
                filters: vec![TopicFilter::new("big/0").unwrap()],
                user_properties: Vec::new(),
            },
        },
    );
    h.router.end_turn();
    assert!(
        h.packets("big").is_empty(),
        "no SUBACK before the last filter"
    );
    assert_eq!(h.router.subscription_count, CHUNK);

    // Another session is served at once, between the chunks.
    h.subscribe("other", "big/5", QoS::AtMostOnce);
    assert!(
        h.packets("other")
            .iter()
            .any(|p| matches!(p, Packet::SubAck(_)))
    );
    h.publish(
        "other",
        "big/5",
        "m",
        QoS::AtMostOnce,
        false,
        PublishProperties::default(),
    );
    assert_eq!(
        h.received("big").len(),
        1,
        "big/5 is in the first chunk: delivered"
    );

    h.advance(Duration::ZERO);
    let packets = h.packets("big");
    let acks: Vec<(u16, usize)> = packets
        .iter()
        .filter_map(|p| match p {
            Packet::SubAck(a) => Some((a.pkid, a.reasons.len())),
            Packet::UnsubAck(a) => Some((a.pkid, 0)),
            _ => None,
        })
        .collect();
    assert_eq!(
        acks,
        [(7, n), (8, 0)],
        "SUBACK with every code, then the UNSUBACK"
    );
    // Every filter but the unsubscribed one, plus other's.
    assert_eq!(h.router.subscription_count, n - 1 + 1);
}

#[test]
fn a_session_that_ends_mid_subscribe_takes_its_queue_along() {
    let mut h = Harness::new(|_| {});
    h.connect("big", Conn::default());
    let (session, conn) = h.target("big");
    h.router.handle(
        h.now,
        Command::Subscribe {
            session,
            conn,
            subscribe: big_subscribe(3, CHUNK * 3),
        },
    );
    h.router.end_turn();
    h.disconnect("big", false, "disconnected");
    // The clean session's Disconnected waited behind the SUBSCRIBE; then it ended.
    h.advance(Duration::ZERO);
    assert_eq!(h.router.subscription_count, 0);
    assert!(!h.connect("big", Conn::default()), "no session left");
    h.advance(Duration::ZERO);
    assert_eq!(h.router.subscription_count, 0);
}
