//! Retained messages: delivery on subscribe, the RETAIN flag on live messages, clearing,
//! retain-as-published and retain handling (5.0).

use canopy_tests::wire::{self, Props, V5, sub_opts};
use canopy_tests::{QUIET, RawClient, TestBroker, unique};

both_versions!(
    retained_message_is_sent_on_subscribe_with_retain_flag,
    live_message_is_forwarded_with_retain_cleared,
    empty_retained_payload_clears_retained_message,
    new_retained_message_replaces_old_one,
    thousands_of_retained_messages_all_reach_a_new_subscriber,
);

async fn retained_message_is_sent_on_subscribe_with_retain_flag(v: u8) {
    // [MQTT-3.3.1-5]: the server stores a retained message; [MQTT-3.3.1-6]/[MQTT-3.3.1-9]:
    // a new subscription gets it with RETAIN=1.
    let b = TestBroker::start().await;
    let t = unique("ret");
    let mut p = RawClient::connect(b.addr(), v, &unique("p")).await;
    p.publish(&t, b"kept", 1, true).await;
    let mut s = RawClient::connect(b.addr(), v, &unique("s")).await;
    s.subscribe(&t, 1).await;
    let m = s.recv_publish().await;
    assert_eq!(
        (m.retain, m.qos, m.payload.as_slice()),
        (true, 1, &b"kept"[..])
    );
}

async fn live_message_is_forwarded_with_retain_cleared(v: u8) {
    // [MQTT-3.3.1-12] (3.1.1; 5.0 with Retain As Published 0): a message matching an
    // established subscription is sent with RETAIN=0.
    let b = TestBroker::start().await;
    let t = unique("live");
    let mut s = RawClient::connect(b.addr(), v, &unique("s")).await;
    s.subscribe(&t, 0).await;
    let mut p = RawClient::connect(b.addr(), v, &unique("p")).await;
    p.publish(&t, b"now", 0, true).await;
    let m = s.recv_publish().await;
    assert_eq!((m.retain, m.payload.as_slice()), (false, &b"now"[..]));
}

#[tokio::test]
async fn retain_as_published_keeps_retain_flag_v5() {
    // [MQTT-3.3.1-13]: with Retain As Published = 1 the RETAIN flag is kept on live messages.
    let b = TestBroker::start().await;
    let t = unique("rap");
    let mut s = RawClient::connect(b.addr(), V5, &unique("s")).await;
    let sa = s
        .subscribe_opts(1, &[(&t, sub_opts(0, false, true, 0))], Props::new())
        .await;
    assert_eq!(sa.codes, vec![0]);
    let mut p = RawClient::connect(b.addr(), V5, &unique("p")).await;
    p.publish(&t, b"r", 0, true).await;
    p.publish(&t, b"n", 0, false).await;
    let a = s.recv_publish().await;
    let c = s.recv_publish().await;
    assert_eq!((a.retain, a.payload.as_slice()), (true, &b"r"[..]));
    assert_eq!((c.retain, c.payload.as_slice()), (false, &b"n"[..]));
}

async fn empty_retained_payload_clears_retained_message(v: u8) {
    // 3.1.1 [MQTT-3.3.1-10]/[MQTT-3.3.1-11], 5.0 [MQTT-3.3.1-6]/[MQTT-3.3.1-7]: a retained
    // PUBLISH with an empty payload removes the retained message and is not stored itself;
    // current subscribers still get it.
    let b = TestBroker::start().await;
    let r = unique("clear");
    let mut p = RawClient::connect(b.addr(), v, &unique("p")).await;
    p.publish(&format!("{r}/gone"), b"old", 1, true).await;
    p.publish(&format!("{r}/kept"), b"k", 1, true).await;
    let mut live = RawClient::connect(b.addr(), v, &unique("live")).await;
    live.subscribe(&format!("{r}/gone"), 0).await;
    assert_eq!(live.recv_publish().await.payload, b"old");
    p.publish(&format!("{r}/gone"), b"", 1, true).await;
    let m = live.recv_publish().await;
    assert!(m.payload.is_empty(), "{m:?}");
    let mut s = RawClient::connect(b.addr(), v, &unique("s")).await;
    s.subscribe(&format!("{r}/#"), 0).await;
    let got = s.collect_publishes(QUIET).await;
    let topics: Vec<&str> = got.iter().map(|m| m.topic.as_str()).collect();
    assert_eq!(
        topics,
        vec![format!("{r}/kept")],
        "cleared retained message was delivered"
    );
}

async fn new_retained_message_replaces_old_one(v: u8) {
    // [MQTT-3.3.1-5]: the new retained message replaces any existing one for the topic.
    let b = TestBroker::start().await;
    let t = unique("replace");
    let mut p = RawClient::connect(b.addr(), v, &unique("p")).await;
    p.publish(&t, b"1", 1, true).await;
    p.publish(&t, b"2", 2, true).await;
    let mut s = RawClient::connect(b.addr(), v, &unique("s")).await;
    s.subscribe(&t, 2).await;
    let got = s.collect_publishes(QUIET).await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(
        (got[0].payload.as_slice(), got[0].qos, got[0].retain),
        (&b"2"[..], 2, true)
    );
}

#[tokio::test]
async fn retain_handling_1_sends_only_for_new_subscription_v5() {
    // [MQTT-3.3.1-10] (5.0, Retain Handling 1): retained messages are sent only if the
    // subscription did not already exist.
    let b = TestBroker::start().await;
    let t = unique("rh1");
    let mut p = RawClient::connect(b.addr(), V5, &unique("p")).await;
    p.publish(&t, b"r", 0, true).await;
    let mut s = RawClient::connect(b.addr(), V5, &unique("s")).await;
    let opts = sub_opts(0, false, false, 1);
    s.subscribe_opts(1, &[(&t, opts)], Props::new()).await;
    assert_eq!(s.recv_publish().await.payload, b"r");
    s.subscribe_opts(2, &[(&t, opts)], Props::new()).await;
    s.expect_nothing(QUIET).await;
}

#[tokio::test]
async fn retain_handling_2_never_sends_retained_v5() {
    // [MQTT-3.3.1-11] (5.0, Retain Handling 2): retained messages are not sent.
    let b = TestBroker::start().await;
    let t = unique("rh2");
    let mut p = RawClient::connect(b.addr(), V5, &unique("p")).await;
    p.publish(&t, b"r", 0, true).await;
    let mut s = RawClient::connect(b.addr(), V5, &unique("s")).await;
    let sa = s
        .subscribe_opts(1, &[(&t, sub_opts(0, false, false, 2))], Props::new())
        .await;
    assert_eq!(sa.codes, vec![0]);
    s.expect_nothing(QUIET).await;
    p.publish(&t, b"live", 0, false).await;
    assert_eq!(s.recv_publish().await.payload, b"live");
}

#[tokio::test]
async fn retain_handling_0_resends_on_repeated_subscribe_v5() {
    // [MQTT-3.3.1-9] (5.0, Retain Handling 0): retained messages are sent at every subscribe.
    let b = TestBroker::start().await;
    let t = unique("rh0");
    let mut p = RawClient::connect(b.addr(), V5, &unique("p")).await;
    p.publish(&t, b"r", 0, true).await;
    let mut s = RawClient::connect(b.addr(), V5, &unique("s")).await;
    s.subscribe(&t, 0).await;
    assert!(s.recv_publish().await.retain);
    let sa = wire::parse_suback(V5, &{
        s.send(&wire::subscribe(V5, 2, &[(&t, 0)], Props::new()))
            .await;
        s.recv().await
    });
    assert_eq!(sa.codes, vec![0]);
    assert!(s.recv_publish().await.retain);
}

async fn thousands_of_retained_messages_all_reach_a_new_subscriber(v: u8) {
    // [MQTT-3.3.1-6]: every retained message matching a new subscription is sent, however
    // many there are: the broker feeds them as the subscriber drains, never dropping them
    // for want of buffer space. QoS 0 and QoS 1 subscriptions.
    let b = TestBroker::start().await;
    let t = unique("many");
    let n = 5000usize;
    let mut p = RawClient::connect(b.addr(), v, &unique("p")).await;
    let mut burst = Vec::new();
    for i in 0..n {
        burst.extend(
            wire::Publish::new(v, &format!("{t}/{i}"), b"r")
                .retain()
                .encode(),
        );
    }
    p.send(&burst).await;
    p.publish(&format!("{t}/sentinel"), b"s", 1, true).await;
    for qos in [0u8, 1] {
        let mut s = RawClient::connect(b.addr(), v, &unique("s")).await;
        s.subscribe(&format!("{t}/#"), qos).await;
        let got = s.receive_and_ack(n + 1).await;
        let distinct: std::collections::HashSet<_> = got.iter().map(|m| m.topic.clone()).collect();
        assert_eq!(
            distinct.len(),
            n + 1,
            "QoS {qos}: every retained message exactly once"
        );
        assert!(got.iter().all(|m| m.retain));
    }
}
