//! Durability under `kill -9`: every QoS 1/2 message whose PUBACK/PUBCOMP a publisher
//! received under `durability = "sync"` is delivered after a hard kill and a restart on
//! the same data directory, QoS 2 ones exactly once. Runs the real binary.

#![allow(clippy::unwrap_used)]

mod support;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use canopy_proto::{Packet, PubAck, QoS};
use support::{BrokerProcess, Client, free_port, temp_dir};

const PUBLISHERS: [(&str, QoS); 4] = [
    ("p0", QoS::AtLeastOnce),
    ("p1", QoS::AtLeastOnce),
    ("p2", QoS::ExactlyOnce),
    ("p3", QoS::ExactlyOnce),
];

/// Publishes numbered messages with up to 20 in flight until the connection dies;
/// records every message whose PUBACK (QoS 1) or PUBCOMP (QoS 2) arrived.
async fn publisher(
    addr: std::net::SocketAddr,
    name: &'static str,
    qos: QoS,
    acked: Arc<Mutex<HashSet<String>>>,
) {
    let Ok(mut c) = Client::connect(addr, name, true, 0).await else {
        return;
    };
    let mut outstanding: HashMap<u16, String> = HashMap::new();
    let mut n: u32 = 0;
    let mut next_pkid: u16 = 1;
    loop {
        while outstanding.len() < 20 {
            let payload = format!("{name}-{n}");
            n += 1;
            let pkid = next_pkid;
            next_pkid = if next_pkid == u16::MAX {
                1
            } else {
                next_pkid + 1
            };
            if c.publish(&format!("crash/{name}"), payload.as_bytes(), qos, pkid)
                .await
                .is_err()
            {
                return;
            }
            outstanding.insert(pkid, payload);
        }
        match c.recv().await {
            Ok(Some(Packet::PubAck(a))) => {
                if let Some(p) = outstanding.remove(&a.pkid) {
                    acked.lock().unwrap().insert(p);
                }
            }
            Ok(Some(Packet::PubRec(a))) => {
                if c.send(&Packet::PubRel(PubAck::new(a.pkid))).await.is_err() {
                    return;
                }
            }
            Ok(Some(Packet::PubComp(a))) => {
                if let Some(p) = outstanding.remove(&a.pkid) {
                    acked.lock().unwrap().insert(p);
                }
            }
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => return,
        }
    }
}

/// One round: publish under load, kill -9 after `kill_after`, restart, drain the
/// subscriber's session and compare.
async fn kill_and_recover(kill_after: Duration) {
    let dir = temp_dir("crash");
    let port = free_port();
    let broker = BrokerProcess::start(&dir, port, "sync").await;
    let addr = broker.addr;
    {
        let mut sub = Client::connect(addr, "crash-sub", true, 3600)
            .await
            .unwrap();
        sub.subscribe("crash/#", QoS::ExactlyOnce).await.unwrap();
    }
    let acked = Arc::new(Mutex::new(HashSet::new()));
    let tasks: Vec<_> = PUBLISHERS
        .iter()
        .map(|&(name, qos)| tokio::spawn(publisher(addr, name, qos, acked.clone())))
        .collect();
    tokio::time::sleep(kill_after).await;
    broker.kill9();
    for t in tasks {
        tokio::time::timeout(Duration::from_secs(10), t)
            .await
            .unwrap()
            .unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(
        !acked.is_empty(),
        "no message was acknowledged before the kill"
    );

    let broker = BrokerProcess::start(&dir, port, "sync").await;
    let mut sub = Client::connect(broker.addr, "crash-sub", false, 3600)
        .await
        .unwrap();
    assert!(
        sub.session_present,
        "the subscriber's session did not survive [MQTT-3.2.2-2]"
    );
    let mut seen: HashMap<String, u32> = HashMap::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while tokio::time::Instant::now() < deadline {
        let Some(p) = sub.recv_timeout(Duration::from_secs(2)).await.unwrap() else {
            break;
        };
        sub.ack(&p).await.unwrap();
        if let Packet::Publish(p) = p {
            *seen
                .entry(String::from_utf8_lossy(&p.payload).into_owned())
                .or_default() += 1;
        }
    }
    let missing: Vec<_> = acked
        .iter()
        .filter(|m| !seen.contains_key(*m))
        .take(10)
        .collect();
    assert!(
        missing.is_empty(),
        "acknowledged but lost after kill -9 ({} acked): {missing:?}",
        acked.len()
    );
    let twice: Vec<_> = seen
        .iter()
        .filter(|(m, k)| **k > 1 && (m.starts_with("p2-") || m.starts_with("p3-")))
        .take(10)
        .collect();
    assert!(
        twice.is_empty(),
        "QoS 2 messages delivered more than once: {twice:?}"
    );
    eprintln!(
        "kill after {kill_after:?}: {} acknowledged, {} delivered after restart, all acknowledged present",
        acked.len(),
        seen.len()
    );
    assert_eq!(broker.terminate(), Some(0), "SIGTERM must exit 0");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_messages_survive_kill_9_at_random_moments() {
    // A small xorshift seeded from the clock: the kill lands at a different point of the
    // stream on every run, within 150..900 ms of load.
    let mut x = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64
        | 1;
    for _ in 0..3 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        kill_and_recover(Duration::from_millis(150 + x % 750)).await;
    }
}
