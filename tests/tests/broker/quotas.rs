//! Per-client quotas (docs/flow-control.md#quotas): subscriptions per client and retained
//! messages per client, refused with 0x97 (5.0), SUBACK 0x80 / a closed connection (3.1.1).
//!
//! Canopy-specific (in process only): the quotas are Canopy settings.

use std::time::Duration;

use canopy_tests::wire::{self, Props, Publish, V5, V311};
use canopy_tests::{RawClient, TestBroker, unique};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_beyond_the_quota_are_refused_per_filter() {
    let b = TestBroker::start_config(|c| c.limits.max_subscriptions_per_client = 3).await;
    let t = unique("sq");
    let f = |i: usize| format!("{t}/{i}");
    let mut c = RawClient::connect(b.addr(), V5, &unique("sq5")).await;
    let filters: Vec<String> = (0..5).map(f).collect();
    let asked: Vec<(&str, u8)> = filters.iter().map(|x| (x.as_str(), 1)).collect();
    let ack = c.subscribe_opts(1, &asked, Props::new()).await;
    assert_eq!(ack.codes, vec![1, 1, 1, 0x97, 0x97]);
    // Replacing one of its own subscriptions is not a new one.
    let ack = c
        .subscribe_opts(2, &[(filters[0].as_str(), 0)], Props::new())
        .await;
    assert_eq!(ack.codes, vec![0]);
    let mut old = RawClient::connect(b.addr(), V311, &unique("sq3")).await;
    let ack = old.subscribe_opts(3, &asked[..4], Props::new()).await;
    assert_eq!(ack.codes, vec![1, 1, 1, 0x80]);
    assert_eq!(b.counter("quota_exceeded"), Some(3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retained_messages_beyond_the_per_client_quota_are_refused() {
    let b = TestBroker::start_config(|c| c.limits.max_retained_messages_per_client = 2).await;
    let t = unique("rq");
    let retained = |topic: String, pid: u16, payload: &'static [u8]| {
        Publish::new(V5, &topic, payload).qos(1, pid).retain()
    };
    let mut p = RawClient::connect(b.addr(), V5, &unique("rq-pub")).await;
    for (i, pid) in [(1, 1u16), (2, 2)] {
        p.publish_packet(&retained(format!("{t}/{i}"), pid, b"kept"))
            .await;
    }
    p.send(&retained(format!("{t}/3"), 3, b"over").encode())
        .await;
    let ack = wire::parse_ack(&p.recv().await);
    assert_eq!(
        (ack.pid, ack.reason),
        (3, 0x97),
        "the third is over the quota"
    );
    // Replacing one's own retained message, or clearing one, is always possible.
    p.publish_packet(&retained(format!("{t}/1"), 4, b"again"))
        .await;
    p.publish_packet(&retained(format!("{t}/2"), 5, b"")).await;
    p.publish_packet(&retained(format!("{t}/3"), 6, b"now fits"))
        .await;
    // Another client has its own quota.
    let mut other = RawClient::connect(b.addr(), V5, &unique("rq-other")).await;
    other
        .publish_packet(&retained(format!("{t}/4"), 1, b"other"))
        .await;
    let mut sub = RawClient::connect(b.addr(), V5, &unique("rq-sub")).await;
    sub.subscribe(&format!("{t}/#"), 0).await;
    let mut got: Vec<(String, Vec<u8>)> = sub
        .collect_publishes(Duration::from_millis(500))
        .await
        .into_iter()
        .map(|p| (p.topic, p.payload))
        .collect();
    got.sort();
    let want = vec![
        (format!("{t}/1"), b"again".to_vec()),
        (format!("{t}/3"), b"now fits".to_vec()),
        (format!("{t}/4"), b"other".to_vec()),
    ];
    assert_eq!(got, want);
    // 3.1.1 cannot be told "refused" in a PUBACK: the publisher is disconnected instead
    // of being acknowledged for a message that is not kept.
    let mut old = RawClient::connect(b.addr(), V311, &unique("rq-311")).await;
    for pid in [1u16, 2] {
        old.publish_packet(
            &Publish::new(V311, &format!("{t}/5{pid}"), b"k")
                .qos(1, pid)
                .retain(),
        )
        .await;
    }
    old.send(
        &Publish::new(V311, &format!("{t}/53"), b"k")
            .qos(1, 3)
            .retain()
            .encode(),
    )
    .await;
    old.expect_closed().await;
    assert_eq!(b.counter("quota_exceeded"), Some(2));
}
