//! Flow control end to end (docs/flow-control.md): a subscriber slower than its
//! publishers slows them instead of losing acknowledged messages; a subscriber that
//! stops reading is cut off at `slow_consumer_timeout` and its publisher resumes.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use canopy_broker::Config;
use canopy_proto::{Packet, QoS, ReasonCode};
use support::Client;

/// Longest any wait in these tests may take.
const BOUND: Duration = Duration::from_secs(30);

fn config(queue: usize, timeout: Duration) -> Config {
    let mut c = Config::ephemeral();
    c.limits.max_queued_messages = queue;
    c.limits.max_inflight = 4;
    c.limits.slow_consumer_timeout = timeout;
    c.sys_interval = Duration::ZERO;
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_subscriber_slows_its_publishers_and_every_acknowledged_message_arrives() {
    const PUBLISHERS: usize = 4;
    const EACH: usize = 150;
    let broker = canopy_broker::start(config(10, Duration::from_secs(60)))
        .await
        .unwrap();
    let addr = broker.mqtt_addr();
    let mut sub = Client::connect(addr, "slow-sub", true, 0).await.unwrap();
    sub.subscribe("fan/#", QoS::AtLeastOnce).await.unwrap();
    let mut tasks = Vec::new();
    for p in 0..PUBLISHERS {
        tasks.push(tokio::spawn(async move {
            let mut c = Client::connect(addr, &format!("pub-{p}"), true, 0)
                .await
                .unwrap();
            let topic = format!("fan/{p}");
            let mut acked = 0;
            for i in 0..EACH {
                let pkid = u16::try_from(i % 60_000 + 1).unwrap();
                c.publish(&topic, i.to_string().as_bytes(), QoS::AtLeastOnce, pkid)
                    .await
                    .unwrap();
                // Keep at most 20 unacknowledged, reading acks as they come.
                while i + 1 - acked > 20 {
                    match c.recv_timeout(BOUND).await.unwrap() {
                        Some(Packet::PubAck(a)) => {
                            assert_eq!(a.reason, ReasonCode::SUCCESS);
                            acked += 1;
                        }
                        other => panic!("publisher {p}: {other:?}"),
                    }
                }
            }
            while acked < EACH {
                match c.recv_timeout(BOUND).await.unwrap() {
                    Some(Packet::PubAck(_)) => acked += 1,
                    other => panic!("publisher {p}: {other:?}"),
                }
            }
            acked
        }));
    }
    // The subscriber acknowledges each message 2 ms after it arrives.
    let mut next: HashMap<String, usize> = HashMap::new();
    let mut got = 0;
    while got < PUBLISHERS * EACH {
        let Some(Packet::Publish(m)) = sub.recv_timeout(BOUND).await.unwrap() else {
            panic!("subscriber: stream ended after {got}");
        };
        let topic = m.topic.as_ref().unwrap().to_string();
        let n: usize = std::str::from_utf8(&m.payload).unwrap().parse().unwrap();
        let want = next.entry(topic.clone()).or_insert(0);
        assert_eq!(n, *want, "{topic}: out of order or lost");
        *want += 1;
        got += 1;
        tokio::time::sleep(Duration::from_millis(2)).await;
        sub.ack(&Packet::Publish(m)).await.unwrap();
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), EACH);
    }
    let m = broker.metrics();
    assert_eq!(
        m.messages_dropped
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );
    assert!(
        m.publishers_held.load(std::sync::atomic::Ordering::Relaxed) > 0,
        "the publishers were never held back: the test did not exercise back-pressure"
    );
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_that_never_reads_is_cut_off_and_its_publisher_resumes() {
    let broker = canopy_broker::start(config(50, Duration::from_secs(2)))
        .await
        .unwrap();
    let addr = broker.mqtt_addr();
    // Subscribes, then never reads again.
    let mut stuck = Client::connect(addr, "stuck", true, 0).await.unwrap();
    stuck.subscribe("flood", QoS::AtLeastOnce).await.unwrap();
    let mut other = Client::connect(addr, "other", true, 0).await.unwrap();
    other.subscribe("calm", QoS::AtLeastOnce).await.unwrap();
    let mut p = Client::connect(addr, "flooder", true, 0).await.unwrap();
    let payload = vec![b'x'; 1024];
    let start = tokio::time::Instant::now();
    let mut acked = 0usize;
    let mut sent = 0usize;
    // Flood with up to 20 unacknowledged; the acknowledgements stop when the stuck
    // subscriber's queue is full and resume once it has been cut off.
    while acked < 400 && start.elapsed() < BOUND {
        while sent - acked < 20 && sent < 400 {
            let pkid = u16::try_from(sent % 60_000 + 1).unwrap();
            p.publish("flood", &payload, QoS::AtLeastOnce, pkid)
                .await
                .unwrap();
            sent += 1;
        }
        match p.recv_timeout(BOUND).await.unwrap() {
            Some(Packet::PubAck(_)) => acked += 1,
            other => panic!("publisher: {other:?}"),
        }
        if acked == 100 {
            // Meanwhile a subscriber of another topic sees no delay.
            p.publish("calm", b"hi", QoS::AtLeastOnce, 60_001)
                .await
                .unwrap();
        }
    }
    assert_eq!(acked, 400, "publisher never resumed");
    let m = broker.metrics();
    assert_eq!(
        m.slow_consumers.load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    match other.recv_timeout(Duration::from_secs(5)).await.unwrap() {
        Some(Packet::Publish(m)) => assert_eq!(&m.payload[..], b"hi"),
        x => panic!("other subscriber: {x:?}"),
    }
    broker.shutdown().await;
}
