//! No loss across outages: the remote broker stopped and restarted under QoS 1 load, the
//! on-disk queue limit reached, and QoS 2 across connection cuts delivered exactly once.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::time::Duration;

use canopy_metabroker::Direction;
use common::*;
use rumqttc::v5::mqttbytes::QoS;

const T: Duration = Duration::from_secs(30);

/// Sequence numbers in payloads: every one of 0..n present, first occurrences increasing.
fn assert_all_in_order(got: &[Got], n: u64) {
    let mut seen = HashSet::new();
    let mut last = None;
    for g in got {
        let v: u64 = std::str::from_utf8(&g.payload).unwrap().parse().unwrap();
        if seen.insert(v) {
            assert!(last.is_none_or(|l| v > l), "{v} arrived after {last:?}");
            last = Some(v);
        }
    }
    let missing: Vec<u64> = (0..n).filter(|v| !seen.contains(v)).collect();
    assert!(missing.is_empty(), "missing {missing:?}");
}

async fn take_distinct(rx: &mut tokio::sync::mpsc::UnboundedReceiver<Got>, n: usize) -> Vec<Got> {
    let mut got = Vec::new();
    let mut distinct = HashSet::new();
    let deadline = tokio::time::Instant::now() + T;
    while distinct.len() < n {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(g)) => {
                distinct.insert(g.payload.clone());
                got.push(g);
            }
            _ => panic!("got {} distinct of {n}", distinct.len()),
        }
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_restarted_under_qos1_load_loses_nothing_and_keeps_order() {
    init_log();
    let local = broker().await;
    let dir = temp_dir("remote-store");
    let remote = durable_broker("127.0.0.1:0".parse().unwrap(), &dir).await;
    let addr = remote.mqtt_addr();
    let h = canopy_metabroker::Bridge::new(bridge(
        "restart",
        &url(local.mqtt_addr()),
        &url(addr),
        vec![route(Direction::Out, "load/#", None, 1)],
    ))
    .start()
    .unwrap();
    wait_until(T, "bridge connected", || connected(&h)).await;
    let (_s, mut rx) = subscriber_opts(addr, "sink", &["load/#"], QoS::AtLeastOnce, false).await;
    let p = publisher(local.mqtt_addr(), "producer").await;
    const N: u64 = 400;
    let sender = tokio::spawn(async move {
        for i in 0..N {
            p.publish("load/a", QoS::AtLeastOnce, false, i.to_string())
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        p
    });
    tokio::time::sleep(Duration::from_millis(250)).await;
    remote.shutdown().await;
    wait_until(T, "bridge sees the remote down", || !connected(&h)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _remote = durable_broker(addr, &dir).await;
    let _p = sender.await.unwrap();
    let got = take_distinct(&mut rx, N as usize).await;
    assert_all_in_order(&got, N);
    assert!(h.stats().reconnects_remote.load(Ordering::Relaxed) >= 1);
    assert_eq!(h.stats().total(|r| &r.dropped), 0);
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_queue_drops_are_counted_and_the_rest_arrives_in_order() {
    let local = broker().await;
    let dir = temp_dir("remote-store-q");
    let remote = durable_broker("127.0.0.1:0".parse().unwrap(), &dir).await;
    let addr = remote.mqtt_addr();
    let mut c = bridge(
        "qlimit",
        &url(local.mqtt_addr()),
        &url(addr),
        vec![route(Direction::Out, "q/#", None, 1)],
    );
    c.queue.max_messages = 5;
    c.state_prefix = "mb".into();
    let h = canopy_metabroker::Bridge::new(c).start().unwrap();
    wait_until(T, "bridge connected", || connected(&h)).await;
    let (_w, mut announced) = subscriber(
        local.mqtt_addr(),
        "watch",
        &["mb/qlimit/dropped/last"],
        QoS::AtMostOnce,
    )
    .await;
    let (sink, rx) = subscriber_opts(addr, "qsink", &["q/#"], QoS::AtLeastOnce, false).await;
    drop(rx);
    let _ = sink.disconnect().await;
    remote.shutdown().await;
    wait_until(T, "bridge sees the remote down", || !connected(&h)).await;
    let p = publisher(local.mqtt_addr(), "qp").await;
    for i in 0..8u64 {
        p.publish("q/a", QoS::AtLeastOnce, false, i.to_string())
            .await
            .unwrap();
    }
    let stats = h.stats().clone();
    wait_until(T, "8 messages handled", || {
        stats.total(|r| &r.queued) + stats.total(|r| &r.dropped) == 8
    })
    .await;
    assert_eq!(stats.total(|r| &r.queued), 5);
    assert_eq!(stats.total(|r| &r.dropped), 3);
    let notes = take(&mut announced, 3, T).await;
    let last: serde_json::Value = serde_json::from_slice(&notes[2].payload).unwrap();
    assert_eq!(
        (last["topic"].as_str(), last["total"].as_u64()),
        (Some("q/a"), Some(3))
    );
    let _remote = durable_broker(addr, &dir).await;
    let (_sink, mut rx) = subscriber_opts(addr, "qsink", &["q/#"], QoS::AtLeastOnce, false).await;
    let got = take_distinct(&mut rx, 5).await;
    assert_all_in_order(&got, 5);
    assert_quiet(&mut rx, Duration::from_millis(500)).await;
    wait_until(T, "queue drained", || {
        h.stats().queue_out.load(Ordering::Relaxed) == 0
    })
    .await;
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qos2_across_connection_cuts_is_delivered_exactly_once_in_order() {
    let (local, remote) = (broker().await, broker().await);
    let (via, cut, accepted) = cutter(remote.mqtt_addr()).await;
    let h = canopy_metabroker::Bridge::new(bridge(
        "exactly",
        &url(local.mqtt_addr()),
        &url(via),
        vec![route(Direction::Out, "x/#", None, 2)],
    ))
    .start()
    .unwrap();
    wait_until(T, "bridge connected", || connected(&h)).await;
    let (_s, mut rx) = subscriber(remote.mqtt_addr(), "x-sink", &["x/#"], QoS::ExactlyOnce).await;
    let p = publisher(local.mqtt_addr(), "x-producer").await;
    const N: u64 = 300;
    let sender = tokio::spawn(async move {
        for i in 0..N {
            p.publish("x/a", QoS::ExactlyOnce, false, i.to_string())
                .await
                .unwrap();
            if i % 10 == 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        p
    });
    for round in 1..=3u64 {
        tokio::time::sleep(Duration::from_millis(60)).await;
        cut.send(round).unwrap();
        wait_until(T, "link back", || accepted.load(Ordering::Relaxed) > round).await;
    }
    let _p = sender.await.unwrap();
    let got = take(&mut rx, N as usize, T).await;
    assert_quiet(&mut rx, Duration::from_millis(700)).await;
    let values: Vec<u64> = got
        .iter()
        .map(|g| std::str::from_utf8(&g.payload).unwrap().parse().unwrap())
        .collect();
    assert_eq!(values, (0..N).collect::<Vec<_>>(), "each once, in order");
    assert!(h.stats().reconnects_remote.load(Ordering::Relaxed) >= 3);
    h.shutdown().await;
}
