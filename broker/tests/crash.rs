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

/// What a persistent publisher remembers across the kill: messages not yet complete,
/// by packet id, and whether their PUBREC arrived.
#[derive(Default)]
struct PubState {
    outstanding: std::collections::BTreeMap<u16, (String, bool)>,
    n: u32,
    next_pkid: u16,
}

/// A QoS 2 publisher with a persistent session: publishes until the connection dies;
/// after the restart (`resume`) it resends what is outstanding, as MQTT requires
/// [MQTT-4.4.0-1], with DUP and the same packet ids.
async fn persistent_publisher(
    addr: std::net::SocketAddr,
    name: &'static str,
    resume: bool,
    state: Arc<Mutex<PubState>>,
    acked: Arc<Mutex<HashSet<String>>>,
) {
    let Ok(mut c) = Client::connect(addr, name, !resume, 3600).await else {
        return;
    };
    let topic = format!("live/{name}");
    if resume {
        let pending: Vec<(u16, String, bool)> = state
            .lock()
            .unwrap()
            .outstanding
            .iter()
            .map(|(k, (p, r))| (*k, p.clone(), *r))
            .collect();
        for (pkid, payload, released) in pending {
            let packet = if released {
                Packet::PubRel(PubAck::new(pkid))
            } else {
                Packet::Publish(canopy_proto::Publish {
                    dup: true,
                    qos: QoS::ExactlyOnce,
                    retain: false,
                    topic: Some(canopy_proto::TopicName::new(&topic).unwrap()),
                    pkid: Some(pkid),
                    properties: Default::default(),
                    payload: bytes::Bytes::from(payload.into_bytes()),
                })
            };
            if c.send(&packet).await.is_err() {
                return;
            }
        }
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        if !resume {
            let batch = {
                let mut s = state.lock().unwrap();
                let mut batch = Vec::new();
                while s.outstanding.len() < 20 {
                    s.next_pkid = s.next_pkid % 60_000 + 1;
                    let payload = format!("{name}-{}", s.n);
                    s.n += 1;
                    let pkid = s.next_pkid;
                    s.outstanding.insert(pkid, (payload.clone(), false));
                    batch.push((pkid, payload));
                }
                batch
            };
            for (pkid, payload) in batch {
                if c.publish(&topic, payload.as_bytes(), QoS::ExactlyOnce, pkid)
                    .await
                    .is_err()
                {
                    return;
                }
            }
        } else {
            let done = state.lock().unwrap().outstanding.is_empty();
            if done || tokio::time::Instant::now() > deadline {
                return;
            }
        }
        match c.recv_timeout(Duration::from_secs(2)).await {
            Ok(Some(Packet::PubRec(a))) => {
                {
                    let mut s = state.lock().unwrap();
                    if let Some(e) = s.outstanding.get_mut(&a.pkid) {
                        e.1 = true;
                    }
                }
                if c.send(&Packet::PubRel(PubAck::new(a.pkid))).await.is_err() {
                    return;
                }
            }
            Ok(Some(Packet::PubComp(a))) => {
                let done = state.lock().unwrap().outstanding.remove(&a.pkid);
                if let Some((p, _)) = done {
                    acked.lock().unwrap().insert(p);
                }
            }
            Ok(Some(_)) => {}
            Ok(None) if resume => {}
            Ok(None) | Err(_) => return,
        }
    }
}

/// A QoS 2 receiver that keeps its protocol state across reconnects: a PUBLISH whose
/// packet id awaits PUBREL is a resend, not a new message [MQTT-4.3.3-10]. Counts
/// every new message by payload.
async fn live_subscriber(
    addr: std::net::SocketAddr,
    resume: bool,
    awaiting_rel: Arc<Mutex<HashSet<u16>>>,
    seen: Arc<Mutex<HashMap<String, u32>>>,
    subscribed: Option<tokio::sync::oneshot::Sender<()>>,
) {
    let Ok(mut sub) = Client::connect(addr, "live-sub", !resume, 3600).await else {
        return;
    };
    if !resume && sub.subscribe("live/#", QoS::ExactlyOnce).await.is_err() {
        return;
    }
    if let Some(tx) = subscribed {
        let _ = tx.send(());
    }
    loop {
        let p = match sub.recv_timeout(Duration::from_secs(3)).await {
            Ok(Some(p)) => p,
            Ok(None) | Err(_) => return,
        };
        let reply = match &p {
            Packet::Publish(m) => {
                let pkid = m.pkid.unwrap_or(0);
                let new = awaiting_rel.lock().unwrap().insert(pkid);
                if new {
                    *seen
                        .lock()
                        .unwrap()
                        .entry(String::from_utf8_lossy(&m.payload).into_owned())
                        .or_default() += 1;
                }
                Packet::PubRec(PubAck::new(pkid))
            }
            Packet::PubRel(r) => {
                awaiting_rel.lock().unwrap().remove(&r.pkid);
                Packet::PubComp(PubAck::new(r.pkid))
            }
            _ => continue,
        };
        if sub.send(&reply).await.is_err() {
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_online_qos2_subscriber_gets_each_message_exactly_once_across_kill_9() {
    // Under sync durability a delivery is released only with the commit that makes
    // the broker remember the incoming packet id; otherwise a publisher resending after
    // the kill would make an online subscriber see the message twice.
    for kill_after in [300, 650] {
        let dir = temp_dir("crash-live");
        let port = free_port();
        let broker = BrokerProcess::start(&dir, port, "sync").await;
        let addr = broker.addr;
        let awaiting_rel = Arc::new(Mutex::new(HashSet::new()));
        let seen = Arc::new(Mutex::new(HashMap::new()));
        let (subscribed, ready) = tokio::sync::oneshot::channel();
        let sub = tokio::spawn(live_subscriber(
            addr,
            false,
            awaiting_rel.clone(),
            seen.clone(),
            Some(subscribed),
        ));
        // Publishing starts once the SUBACK is in: what is acknowledged before the
        // subscription exists goes to nobody, which is no loss.
        tokio::time::timeout(Duration::from_secs(10), ready)
            .await
            .expect("SUBACK within 10 s")
            .expect("the subscriber subscribed");
        let acked = Arc::new(Mutex::new(HashSet::new()));
        let states: Vec<Arc<Mutex<PubState>>> = (0..2)
            .map(|_| Arc::new(Mutex::new(PubState::default())))
            .collect();
        let names = ["lp0", "lp1"];
        let tasks: Vec<_> = names
            .iter()
            .zip(&states)
            .map(|(n, s)| {
                tokio::spawn(persistent_publisher(
                    addr,
                    n,
                    false,
                    s.clone(),
                    acked.clone(),
                ))
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(kill_after)).await;
        broker.kill9();
        for t in tasks {
            tokio::time::timeout(Duration::from_secs(10), t)
                .await
                .unwrap()
                .unwrap();
        }
        tokio::time::timeout(Duration::from_secs(10), sub)
            .await
            .unwrap()
            .unwrap();

        let broker = BrokerProcess::start(&dir, port, "sync").await;
        let sub = tokio::spawn(live_subscriber(
            broker.addr,
            true,
            awaiting_rel.clone(),
            seen.clone(),
            None,
        ));
        let tasks: Vec<_> = names
            .iter()
            .zip(&states)
            .map(|(n, s)| {
                tokio::spawn(persistent_publisher(
                    broker.addr,
                    n,
                    true,
                    s.clone(),
                    acked.clone(),
                ))
            })
            .collect();
        for t in tasks {
            tokio::time::timeout(Duration::from_secs(30), t)
                .await
                .unwrap()
                .unwrap();
        }
        tokio::time::timeout(Duration::from_secs(30), sub)
            .await
            .unwrap()
            .unwrap();

        let acked = acked.lock().unwrap().clone();
        let seen = seen.lock().unwrap().clone();
        assert!(!acked.is_empty(), "nothing was acknowledged");
        let lost: Vec<_> = acked
            .iter()
            .filter(|m| !seen.contains_key(*m))
            .take(10)
            .collect();
        assert!(
            lost.is_empty(),
            "acknowledged but never delivered: {lost:?}"
        );
        let twice: Vec<_> = seen.iter().filter(|(_, k)| **k > 1).take(10).collect();
        assert!(
            twice.is_empty(),
            "QoS 2 delivered more than once: {twice:?}"
        );
        eprintln!(
            "kill after {kill_after} ms: {} completed, {} delivered, 0 lost, 0 twice",
            acked.len(),
            seen.len()
        );
        assert_eq!(broker.terminate(), Some(0));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
