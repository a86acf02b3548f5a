//! User Properties: shared by every delivery of a message, and capped per PUBLISH by
//! `[limits] max_user_properties` (docs/flow-control.md#user-properties).
//!
//! Canopy-specific (in process only): the cap is a Canopy setting.

use canopy_tests::wire::{self, Props, Publish, V5};
use canopy_tests::{QUIET, RawClient, TestBroker, unique};

fn props(n: usize) -> Props {
    (0..n).fold(Props::new(), |p, i| {
        p.user(&format!("k{i}"), &format!("v{i}"))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_properties_reach_every_subscriber_and_a_publish_over_the_cap_is_refused() {
    let b = TestBroker::start_config(|c| c.limits.max_user_properties = 16).await;
    let topic = unique("up");
    let mut subs = Vec::new();
    for i in 0..10 {
        let mut s = RawClient::connect(b.addr(), V5, &unique(&format!("up-sub{i}"))).await;
        s.subscribe(&topic, 1).await;
        subs.push(s);
    }
    let mut publisher = RawClient::connect(b.addr(), V5, &unique("up-pub")).await;
    // At the cap: routed, every subscriber gets all 16 in order [MQTT-3.3.2-18].
    let at_cap = Publish::new(V5, &topic, b"at cap")
        .qos(1, 1)
        .props(props(16));
    publisher.send(&at_cap.encode()).await;
    publisher.expect_ack(wire::PUBACK, 1).await;
    let want: Vec<(String, String)> = (0..16)
        .map(|i| (format!("k{i}"), format!("v{i}")))
        .collect();
    for s in &mut subs {
        let p = s.recv_publish().await;
        assert_eq!(p.payload, b"at cap");
        assert_eq!(p.props.user(), want);
    }
    // Over the cap: PUBACK 0x97 Quota exceeded, nothing routed.
    let over = Publish::new(V5, &topic, b"over").qos(1, 2).props(props(17));
    publisher.send(&over.encode()).await;
    let ack = wire::parse_ack(&publisher.recv().await);
    assert_eq!((ack.first, ack.pid, ack.reason), (wire::PUBACK, 2, 0x97));
    // QoS 0 over the cap: dropped (there is no acknowledgement to refuse it with).
    publisher
        .publish_packet(&Publish::new(V5, &topic, b"over0").props(props(17)))
        .await;
    for s in &mut subs {
        s.expect_nothing(QUIET).await;
    }
    assert_eq!(b.counter("user_properties_exceeded"), Some(2));
    publisher.ping().await;
}
