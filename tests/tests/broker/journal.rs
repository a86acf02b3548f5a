//! Work proportional to the change (issue 11): a persistent 5.0 session under
//! `durability = "sync"` subscribes to 100,000 distinct filters, one per SUBSCRIBE with
//! up to 64 unanswered at a time, then unsubscribes them all; and 100,000 activation
//! switches (QoS 1 PUBLISHes to activate-on / deactivate-on topics) go to 1,000
//! event-activated subscriptions of one persistent session; meanwhile another client's
//! ping round trips are measured. The test asserts completion within a generous bound
//! (not a duration) and prints the elapsed times and round trips, so runs can be
//! compared; with `CANOPY_TEST_EXTERNAL=host:port` the same generator drives another
//! broker (e.g. `mosquitto -p 1883`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use canopy_tests::broker::{TestBroker, is_external, unique};
use canopy_tests::wire::{Props, packet, prop, string};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedReadHalf;

const FILTERS: usize = 100_000;
const WINDOW: usize = 64;
const BOUND: Duration = Duration::from_secs(120);

/// CONNECT (5.0, clean start) with a Session Expiry Interval of an hour.
fn connect_v5(client_id: &str, expiry: u32) -> Vec<u8> {
    let mut body = string("MQTT");
    body.extend([5, 0x02, 0, 60]);
    let props = if expiry > 0 {
        Props::new().u32(prop::SESSION_EXPIRY, expiry)
    } else {
        Props::new()
    };
    body.extend(props.encode());
    body.extend(string(client_id));
    packet(0x10, &body)
}

fn filter(i: usize) -> String {
    format!("journal/{}/{}/x", i / 1000, i % 1000)
}

fn subscribe(pkid: u16, f: &str) -> Vec<u8> {
    let mut body = pkid.to_be_bytes().to_vec();
    body.push(0);
    body.extend(string(f));
    body.push(1);
    packet(0x82, &body)
}

fn unsubscribe(pkid: u16, f: &str) -> Vec<u8> {
    let mut body = pkid.to_be_bytes().to_vec();
    body.push(0);
    body.extend(string(f));
    packet(0xa2, &body)
}

/// Reads one packet: its first byte and body.
async fn read_packet(r: &mut BufReader<OwnedReadHalf>) -> (u8, Vec<u8>) {
    let first = r.read_u8().await.expect("packet");
    let mut len = 0usize;
    for shift in (0..28).step_by(7) {
        let b = r.read_u8().await.expect("length");
        len |= usize::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            break;
        }
    }
    let mut body = vec![0; len];
    r.read_exact(&mut body).await.expect("body");
    (first, body)
}

async fn open(
    addr: std::net::SocketAddr,
    id: &str,
    expiry: u32,
) -> (BufReader<OwnedReadHalf>, tokio::net::tcp::OwnedWriteHalf) {
    let s = TcpStream::connect(addr).await.expect("connect");
    s.set_nodelay(true).expect("nodelay");
    let (r, mut w) = s.into_split();
    let mut r = BufReader::new(r);
    w.write_all(&connect_v5(id, expiry)).await.expect("CONNECT");
    let (first, body) = read_packet(&mut r).await;
    assert_eq!(first, 0x20, "CONNACK");
    assert_eq!(body.get(1), Some(&0), "CONNACK success: {body:?}");
    (r, w)
}

/// Round trips through the router from another client, every 5 ms until finished: a QoS 1
/// PUBLISH (to a topic nobody reads) and its PUBACK, which the router sends (a PINGREQ
/// would not do: the connection answers it by itself).
struct Pinger {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Vec<(Instant, Duration)>>,
}

impl Pinger {
    fn start(addr: std::net::SocketAddr) -> Pinger {
        let stop = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn(ping_until(addr, stop.clone()));
        Pinger { stop, task }
    }

    /// Stops it; each round trip with when it started.
    async fn finish(self) -> Vec<(Instant, Duration)> {
        self.stop.store(true, Ordering::Relaxed);
        tokio::time::timeout(Duration::from_secs(30), self.task)
            .await
            .expect("the other client's pings end")
            .expect("pinger")
    }

    /// Stops it; the round trips alone.
    async fn finish_rtts(self) -> Vec<Duration> {
        self.finish()
            .await
            .into_iter()
            .map(|(_, rtt)| rtt)
            .collect()
    }
}

async fn ping_until(addr: std::net::SocketAddr, stop: Arc<AtomicBool>) -> Vec<(Instant, Duration)> {
    let id = unique("journal-ping");
    let (mut r, mut w) = open(addr, &id, 0).await;
    let topic = format!("ping/{id}");
    let mut rtts = Vec::new();
    let deadline = Instant::now() + BOUND + Duration::from_secs(30);
    let mut pkid: u16 = 0;
    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
        pkid = pkid % 65_535 + 1;
        let t = Instant::now();
        w.write_all(&publish_q1(pkid, &topic, b"ping"))
            .await
            .expect("PUBLISH");
        let (first, _) = read_packet(&mut r).await;
        assert_eq!(first, 0x40, "PUBACK");
        rtts.push((t, t.elapsed()));
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    rtts
}

fn summary(mut rtts: Vec<Duration>) -> String {
    rtts.sort();
    let at = |q: f64| {
        rtts.get(((rtts.len() as f64 - 1.0) * q) as usize)
            .copied()
            .unwrap_or_default()
    };
    format!(
        "{} pings, median {:?}, p99 {:?}, max {:?}",
        rtts.len(),
        at(0.5),
        at(0.99),
        rtts.last().copied().unwrap_or_default()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_persistent_session_subscribes_and_unsubscribes_100000_filters_under_sync() {
    let dir = std::env::temp_dir().join(unique("canopy-journal-data"));
    let broker = if is_external() {
        TestBroker::start().await
    } else {
        let data_dir = dir.clone();
        TestBroker::start_config(move |c| {
            c.durability = canopy_broker::config::Durability::Sync;
            c.data_dir = data_dir;
        })
        .await
    };
    let addr = broker.addr();
    let pings = Pinger::start(addr);
    let (mut r, mut w) = open(addr, &unique("journal-subscriber"), 3600).await;
    let phases = tokio::time::timeout(BOUND, async {
        let sub = run_window(&mut r, &mut w, FILTERS, 0x90, |pkid, i| {
            subscribe(pkid, &filter(i))
        })
        .await;
        let unsub = run_window(&mut r, &mut w, FILTERS, 0xb0, |pkid, i| {
            unsubscribe(pkid, &filter(i))
        })
        .await;
        (sub, unsub)
    })
    .await;
    let rtts = pings.finish_rtts().await;
    let (sub, unsub) = phases.unwrap_or_else(|_| {
        panic!("100,000 SUBSCRIBEs then UNSUBSCRIBEs did not finish within {BOUND:?}")
    });
    eprintln!(
        "journal: {FILTERS} SUBSCRIBEs (window {WINDOW}) in {sub:?}, {FILTERS} UNSUBSCRIBEs in {unsub:?}; other client: {}",
        summary(rtts)
    );
    drop((r, w));
    broker.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

const SWITCHED: usize = 1_000;
const SWITCHES: usize = 100_000;

fn switched_filter(i: usize) -> String {
    format!("act/{i}/data")
}

/// One SUBSCRIBE of `act/<i>/data` at QoS 1, switched by `act/<i>/on` and `act/<i>/off`,
/// inactive at first (docs/activation.md).
fn subscribe_switched(pkid: u16, i: usize) -> Vec<u8> {
    let mut body = pkid.to_be_bytes().to_vec();
    let props = Props::new()
        .user("activate-on", &format!("act/{i}/on"))
        .user("deactivate-on", &format!("act/{i}/off"));
    body.extend(props.encode());
    body.extend(string(&switched_filter(i)));
    body.push(1);
    packet(0x82, &body)
}

/// A QoS 1 PUBLISH with no properties.
fn publish_q1(pkid: u16, topic: &str, payload: &[u8]) -> Vec<u8> {
    let mut body = string(topic);
    body.extend(pkid.to_be_bytes());
    body.push(0);
    body.extend(payload);
    packet(0x32, &body)
}

/// Sends `count` packets built by `make(pkid, k)`, at most `WINDOW` unanswered, and
/// waits for every answer of type `ack` (success codes only, or none: a 5.0 PUBACK
/// without reason code is a success).
async fn run_window(
    r: &mut BufReader<OwnedReadHalf>,
    w: &mut tokio::net::tcp::OwnedWriteHalf,
    count: usize,
    ack: u8,
    make: impl Fn(u16, usize) -> Vec<u8>,
) -> Duration {
    let start = Instant::now();
    let (mut sent, mut answered) = (0usize, 0usize);
    let mut buf = Vec::with_capacity(64 * WINDOW);
    while answered < count {
        buf.clear();
        while sent < count && sent - answered < WINDOW {
            buf.extend(make((sent % 65_535 + 1) as u16, sent));
            sent += 1;
        }
        if !buf.is_empty() {
            w.write_all(&buf).await.expect("write");
        }
        let (first, body) = read_packet(r).await;
        assert_eq!(first, ack, "expected ack type {ack:#x}, got {first:#x}");
        if ack == 0x40 {
            assert!(body.len() < 3 || body[2] < 0x80, "PUBACK {body:?}");
        } else {
            let (plen, n) = canopy_tests::wire::decode_varint(&body[2..]).expect("props");
            assert!(body[2 + n + plen] < 0x80, "refused: {body:?}");
        }
        answered += 1;
    }
    start.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_persistent_session_takes_100000_activation_switches_under_sync() {
    if is_external() {
        eprintln!("activation switches are Canopy's own: not run against an external broker");
        return;
    }
    let dir = std::env::temp_dir().join(unique("canopy-switch-data"));
    let data_dir = dir.clone();
    let broker = TestBroker::start_config(move |c| {
        c.durability = canopy_broker::config::Durability::Sync;
        c.data_dir = data_dir;
    })
    .await;
    let addr = broker.addr();
    let pings = Pinger::start(addr);
    let (mut sr, mut sw) = open(addr, &unique("switched"), 3600).await;
    let (mut pr, mut pw) = open(addr, &unique("switcher"), 0).await;
    let phases = tokio::time::timeout(BOUND, async {
        let subscribed = run_window(&mut sr, &mut sw, SWITCHED, 0x90, subscribe_switched).await;
        // Switch k goes to subscription k % 1000: off in even rounds, on in odd ones, so
        // that every subscription ends on (round 99).
        let switched = run_window(&mut pr, &mut pw, SWITCHES, 0x40, |pkid, k| {
            let (i, round) = (k % SWITCHED, k / SWITCHED);
            let state = if round % 2 == 1 { "on" } else { "off" };
            publish_q1(pkid, &format!("act/{i}/{state}"), b"")
        })
        .await;
        // Every subscription is on: one message to each arrives.
        let check = run_window(&mut pr, &mut pw, SWITCHED, 0x40, |pkid, i| {
            publish_q1(pkid, &switched_filter(i), b"x")
        })
        .await;
        let mut got = 0;
        while got < SWITCHED {
            let (first, body) = read_packet(&mut sr).await;
            assert_eq!(
                first & 0xf0,
                0x30,
                "PUBLISH expected, got {first:#x} after {got}"
            );
            // QoS 1: PUBACK it (the broker keeps at most its window unacknowledged).
            let topic_len = usize::from(u16::from_be_bytes([body[0], body[1]]));
            let pkid = &body[2 + topic_len..4 + topic_len];
            sw.write_all(&[0x40, 2, pkid[0], pkid[1]])
                .await
                .expect("PUBACK");
            got += 1;
        }
        (subscribed, switched, check)
    })
    .await;
    let rtts = pings.finish_rtts().await;
    let (subscribed, switched, check) = phases.unwrap_or_else(|_| {
        panic!("{SWITCHES} activation switches and the check did not finish within {BOUND:?}")
    });
    eprintln!(
        "activation: {SWITCHED} switched SUBSCRIBEs in {subscribed:?}, {SWITCHES} switches (window {WINDOW}) in {switched:?}, {SWITCHED} checks delivered in {check:?}; other client: {}",
        summary(rtts)
    );
    drop((sr, sw, pr, pw));
    broker.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ending_a_session_of_100000_filters_keeps_other_clients_served() {
    if is_external() {
        eprintln!("not run against an external broker");
        return;
    }
    let broker = TestBroker::start().await;
    let addr = broker.addr();
    let pings = Pinger::start(addr);
    let id = unique("journal-ending");
    let (mut r, mut w) = open(addr, &id, 3600).await;
    let ended = tokio::time::timeout(BOUND, async {
        let sub = run_window(&mut r, &mut w, FILTERS, 0x90, |pkid, i| {
            subscribe(pkid, &filter(i))
        })
        .await;
        // A clean start with the same id takes the session over and ends it.
        let start = Instant::now();
        let (_r2, _w2) = open(addr, &id, 0).await;
        let taken_over = start.elapsed();
        // The next ping after the last chunk: leave the index time to empty.
        tokio::time::sleep(Duration::from_millis(500)).await;
        (sub, start, taken_over)
    })
    .await;
    let rtts = pings.finish().await;
    let (sub, start, taken_over) = ended
        .unwrap_or_else(|_| panic!("100,000 SUBSCRIBEs and the take-over took over {BOUND:?}"));
    // The round trips in flight when the take-over began, and every one after it.
    let during: Vec<Duration> = rtts
        .iter()
        .filter(|(t, rtt)| *t + *rtt >= start)
        .map(|(_, rtt)| *rtt)
        .collect();
    assert!(!during.is_empty(), "no ping while the session ended");
    eprintln!(
        "ending: {FILTERS} SUBSCRIBEs in {sub:?}; the take-over that ended the session answered in {taken_over:?}; other client's pings around it: {}",
        summary(during)
    );
    drop((r, w));
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_subscribe_of_90000_filters_keeps_other_clients_served() {
    const N: usize = 90_000;
    let broker = TestBroker::start().await;
    let addr = broker.addr();
    let pings = Pinger::start(addr);
    let (mut r, mut w) = open(addr, &unique("journal-big"), 0).await;
    // One SUBSCRIBE: packet id 1, no properties, N filters `g/<i>` at QoS 0.
    let mut body = vec![0, 1, 0];
    for i in 0..N {
        body.extend(string(&format!("g/{i}")));
        body.push(0);
    }
    let packet_bytes = packet(0x82, &body);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let start = Instant::now();
    w.write_all(&packet_bytes).await.expect("SUBSCRIBE");
    let (first, ack) = tokio::time::timeout(BOUND, read_packet(&mut r))
        .await
        .expect("a SUBACK within the bound");
    let took = start.elapsed();
    assert_eq!(first, 0x90, "SUBACK");
    // pkid (2), properties (1: none), then one code per filter, all granted QoS 0.
    assert_eq!(ack.len(), 3 + N);
    assert!(ack[3..].iter().all(|c| *c == 0), "every filter granted");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let rtts = pings.finish().await;
    let during: Vec<Duration> = rtts
        .iter()
        .filter(|(t, rtt)| *t + *rtt >= start)
        .map(|(_, rtt)| *rtt)
        .collect();
    eprintln!(
        "big subscribe: {N} filters in one SUBSCRIBE ({} bytes) answered in {took:?}; other client's round trips meanwhile: {}",
        packet_bytes.len(),
        summary(during)
    );
    drop((r, w));
    broker.shutdown().await;
}
