//! Under `durability = "sync"`, nothing reaches a subscriber before the broker would
//! remember it after a crash: the deliveries of a turn are released with its
//! acknowledgements, when its batch is on disk.

use canopy_proto::{Packet, PublishProperties, QoS};

use super::{Conn, Harness};

fn persistent() -> Conn {
    Conn {
        clean: false,
        expiry: 3600,
        ..Conn::default()
    }
}

#[test]
fn a_qos2_delivery_waits_for_the_commit_with_its_pubrec() {
    let (mut h, commits) = Harness::sync(|_| {});
    h.connect("s", persistent());
    h.subscribe("s", "t", QoS::ExactlyOnce);
    h.connect("p", persistent());
    h.complete_commits(&commits);
    h.outgoing("s");
    h.outgoing("p");
    h.publish(
        "p",
        "t",
        "once",
        QoS::ExactlyOnce,
        false,
        PublishProperties::default(),
    );
    assert!(h.received("s").is_empty(), "delivered before the commit");
    assert!(h.packets("p").is_empty(), "PUBREC before the commit");
    h.complete_commits(&commits);
    assert_eq!(h.received("s").len(), 1);
    assert!(matches!(h.packets("p").as_slice(), [Packet::PubRec(_)]));
}

#[test]
fn a_client_subscribed_to_its_own_topic_sees_the_message_before_its_puback() {
    let (mut h, commits) = Harness::sync(|_| {});
    h.connect("me", persistent());
    h.subscribe("me", "t", QoS::AtLeastOnce);
    h.complete_commits(&commits);
    h.outgoing("me");
    h.publish(
        "me",
        "t",
        "x",
        QoS::AtLeastOnce,
        false,
        PublishProperties::default(),
    );
    assert!(h.outgoing("me").is_empty());
    h.complete_commits(&commits);
    let out = h.outgoing("me");
    let publish_at = out
        .iter()
        .position(|o| matches!(o, crate::outbox::Outgoing::Publish { .. }));
    let puback_at = out
        .iter()
        .position(|o| matches!(o, crate::outbox::Outgoing::Packet(Packet::PubAck(_))));
    assert!(publish_at < puback_at, "{out:?}");
}
