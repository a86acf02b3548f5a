//! The publish/subscribe engine every throughput scenario runs on.
//!
//! Owns one measured phase: publisher tasks that batch PUBLISHes into one write per
//! window, subscriber tasks that read, acknowledge and time them, and the closed-loop
//! flow control between the two (a publisher keeps at most `inflight` messages outstanding
//! end to end, as counted at the subscribers). It never waits without a bound: a stalled
//! window is reopened after [`STALL`] (the outstanding messages will count as lost), and
//! the drain after the last publish ends after `drain` without progress.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use canopy_proto::QoS;
use indicatif::ProgressBar;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;

use crate::client::{Conn, Frame, Stamp, Template, consume, next_frame, put_puback};
use crate::hist::Histogram;
use crate::{BenchError, now_ns};

/// Most PUBLISHes written by one system call.
const BATCH: usize = 64;

/// How long a closed-loop window may stay shut without progress before it is reopened.
const STALL: Duration = Duration::from_millis(250);

/// Most QoS 1 PUBLISHes a publisher leaves unacknowledged (Canopy's default Receive Maximum).
const ACK_WINDOW: usize = 256;

/// Longest a phase bounded only by `count` may publish.
const MAX_PHASE: Duration = Duration::from_secs(600);

/// A publisher: its connection and the topics it cycles through.
#[derive(Debug)]
pub(crate) struct Publisher {
    pub(crate) conn: Conn,
    pub(crate) templates: Vec<Template>,
}

/// How one phase publishes.
#[derive(Debug, Clone)]
pub(crate) struct Phase {
    pub(crate) qos: QoS,
    pub(crate) inflight: usize,
    /// Open loop: messages per second over all publishers.
    pub(crate) rate: Option<f64>,
    pub(crate) duration: Option<Duration>,
    /// Messages over all publishers.
    pub(crate) count: Option<u64>,
    pub(crate) drain: Duration,
}

/// What one phase measured.
#[derive(Debug)]
pub(crate) struct Outcome {
    pub(crate) sent: u64,
    pub(crate) delivered: u64,
    pub(crate) expected: u64,
    pub(crate) elapsed: Duration,
    pub(crate) hist: Histogram,
}

impl Outcome {
    pub(crate) fn lost(&self) -> u64 {
        self.expected.saturating_sub(self.delivered)
    }
}

/// Counters shared by the tasks of one phase.
#[derive(Debug)]
struct Shared {
    /// `delivered[p][s]`: messages of publisher `p` received by subscriber `s`.
    delivered: Vec<Vec<AtomicU64>>,
    /// One wake-up per publisher, poked by subscribers when its messages arrive.
    wake: Vec<Notify>,
    /// Deliveries over all subscribers.
    total: AtomicU64,
    /// When the latest delivery was read, nanoseconds since [`crate::epoch`].
    last_ns: AtomicU64,
}

impl Shared {
    fn new(pubs: usize, subs: usize) -> Shared {
        Shared {
            delivered: (0..pubs)
                .map(|_| (0..subs).map(|_| AtomicU64::new(0)).collect())
                .collect(),
            wake: (0..pubs).map(|_| Notify::new()).collect(),
            total: AtomicU64::new(0),
            last_ns: AtomicU64::new(0),
        }
    }

    /// Messages of publisher `p` received by every subscriber.
    fn min_delivered(&self, p: usize) -> u64 {
        self.delivered
            .get(p)
            .and_then(|row| row.iter().map(|c| c.load(Ordering::Acquire)).min())
            .unwrap_or(0)
    }
}

/// Runs one phase: every publisher publishes until `phase` says stop, every subscriber
/// (all of which receive every message) counts what arrives. Returns the connections for
/// a later phase.
pub(crate) async fn run(
    pubs: Vec<Publisher>,
    subs: Vec<Conn>,
    phase: &Phase,
    bar: &ProgressBar,
) -> Result<(Vec<Publisher>, Vec<Conn>, Outcome), BenchError> {
    let n_pubs = pubs.len();
    let n_subs = subs.len();
    let shared = Arc::new(Shared::new(n_pubs, n_subs));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut sub_tasks = JoinSet::new();
    for (s, conn) in subs.into_iter().enumerate() {
        let task = subscriber(s, conn, shared.clone(), stop_rx.clone());
        sub_tasks.spawn(task);
    }
    let start = Instant::now();
    let start_ns = now_ns();
    let mut pub_tasks = JoinSet::new();
    for (p, publisher) in pubs.into_iter().enumerate() {
        let task = publish(p, n_pubs, publisher, shared.clone(), phase.clone(), start);
        pub_tasks.spawn(task);
    }
    let mut pubs_back = Vec::with_capacity(n_pubs);
    let mut sent = 0;
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    while !pub_tasks.is_empty() {
        tokio::select! {
            joined = pub_tasks.join_next() => {
                if let Some(joined) = joined {
                    let (publisher, n) = joined.map_err(|e| BenchError::Unexpected(e.to_string()))??;
                    sent += n;
                    pubs_back.push(publisher);
                }
            }
            _ = tick.tick() => bar.set_position(shared.total.load(Ordering::Relaxed)),
        }
    }
    let expected = sent * n_subs as u64;
    bar.set_length(expected);
    let mut seen = shared.total.load(Ordering::Acquire);
    let mut since = Instant::now();
    while seen < expected && since.elapsed() < phase.drain {
        tokio::time::sleep(Duration::from_millis(2)).await;
        let now = shared.total.load(Ordering::Acquire);
        if now != seen {
            seen = now;
            since = Instant::now();
            bar.set_position(now);
        }
    }
    let _ = stop_tx.send(true);
    let mut subs_back = Vec::with_capacity(n_subs);
    let mut hist = Histogram::new();
    while let Some(joined) = sub_tasks.join_next().await {
        let (s, conn, h) = joined.map_err(|e| BenchError::Unexpected(e.to_string()))??;
        hist.merge(&h);
        subs_back.push((s, conn));
    }
    subs_back.sort_by_key(|(s, _)| *s);
    let delivered = shared.total.load(Ordering::Acquire);
    let last = shared.last_ns.load(Ordering::Acquire);
    let elapsed = if last > start_ns {
        Duration::from_nanos(last - start_ns)
    } else {
        start.elapsed()
    };
    bar.finish_and_clear();
    let outcome = Outcome {
        sent,
        delivered,
        expected,
        elapsed,
        hist,
    };
    Ok((
        pubs_back,
        subs_back.into_iter().map(|(_, c)| c).collect(),
        outcome,
    ))
}

/// One subscriber: reads, acknowledges QoS 1, records latency, credits publishers.
async fn subscriber(
    s: usize,
    mut conn: Conn,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) -> Result<(usize, Conn, Histogram), BenchError> {
    let mut hist = Histogram::new();
    let mut acks = BytesMut::with_capacity(4096);
    let mut credit = vec![0u64; shared.delivered.len()];
    loop {
        let now = now_ns();
        let mut got = 0u64;
        while let Some((frame, n)) = next_frame(&conn.rbuf)? {
            if let Frame::Publish { pkid, payload, .. } = frame {
                if let Some(id) = pkid {
                    put_puback(&mut acks, id);
                }
                if let Some(stamp) = Stamp::read(payload)
                    && let Some(c) = credit.get_mut(stamp.publisher as usize)
                {
                    *c += 1;
                    got += 1;
                    hist.record(now.saturating_sub(stamp.sent_ns));
                }
            }
            consume(&mut conn.rbuf, n);
        }
        if got > 0 {
            for (p, c) in credit.iter_mut().enumerate() {
                if *c > 0 {
                    if let Some(counter) = shared.delivered.get(p).and_then(|row| row.get(s)) {
                        counter.fetch_add(*c, Ordering::Release);
                    }
                    if let Some(w) = shared.wake.get(p) {
                        w.notify_one();
                    }
                    *c = 0;
                }
            }
            shared.total.fetch_add(got, Ordering::Release);
            shared.last_ns.fetch_max(now, Ordering::Release);
        }
        if !acks.is_empty() {
            conn.stream.write_all(&acks).await?;
            acks.clear();
        }
        tokio::select! {
            r = conn.stream.read_buf(&mut conn.rbuf) => {
                if r? == 0 {
                    return Err(BenchError::Closed);
                }
            }
            _ = stop.changed() => return Ok((s, conn, hist)),
        }
    }
}

/// Counts the PUBACKs at the front of `rbuf`.
fn take_acks(conn: &mut Conn) -> Result<u64, BenchError> {
    let mut n_acks = 0;
    while let Some((frame, n)) = next_frame(&conn.rbuf)? {
        if matches!(frame, Frame::PubAck(_)) {
            n_acks += 1;
        }
        consume(&mut conn.rbuf, n);
    }
    Ok(n_acks)
}

/// One publisher: writes batches while its windows allow, waits otherwise.
async fn publish(
    p: usize,
    n_pubs: usize,
    mut publisher: Publisher,
    shared: Arc<Shared>,
    phase: Phase,
    start: Instant,
) -> Result<(Publisher, u64), BenchError> {
    let n = n_pubs as u64;
    let my_count = phase.count.map(|c| c / n + u64::from((p as u64) < c % n));
    let bound = phase.duration.unwrap_or(MAX_PHASE).min(MAX_PHASE);
    let deadline = start + bound;
    let my_rate = phase.rate.map(|r| r / n_pubs as f64);
    let qos1 = phase.qos != QoS::AtMostOnce;
    let ack_window = phase.inflight.min(ACK_WINDOW) as u64;
    let inflight = phase.inflight as u64;
    let (mut sent, mut acked, mut forgiven) = (0u64, 0u64, 0u64);
    let mut pkid: u16 = 0;
    let n_topics = publisher.templates.len().max(1);
    let mut topic = p % n_topics;
    let mut out = BytesMut::with_capacity(BATCH * 128);
    let (mut last_min, mut last_change) = (0u64, Instant::now());
    loop {
        let now = Instant::now();
        let min = shared.min_delivered(p);
        if min != last_min {
            (last_min, last_change) = (min, now);
        }
        if my_count.is_some_and(|c| sent >= c) || now >= deadline {
            break;
        }
        let mut room = BATCH as u64;
        if let Some(c) = my_count {
            room = room.min(c - sent);
        }
        let mut next_due = None;
        match my_rate {
            Some(r) => {
                let due = ((now - start).as_secs_f64() * r) as u64;
                room = room.min(due.saturating_sub(sent));
                next_due = Some(start + Duration::from_secs_f64((sent + 1) as f64 / r));
            }
            None => {
                let outstanding = sent.saturating_sub(min + forgiven);
                if outstanding > 0 && now - last_change >= STALL {
                    // Nothing arrived for a while: take the window as lost and reopen it.
                    forgiven += outstanding;
                    last_change = now;
                }
                let outstanding = sent.saturating_sub(min + forgiven);
                room = room.min(inflight.saturating_sub(outstanding));
            }
        }
        if qos1 {
            room = room.min(ack_window.saturating_sub(sent - acked));
        }
        if room > 0 {
            let stamp_ns = now_ns();
            for _ in 0..room {
                pkid = pkid.checked_add(1).unwrap_or(1);
                let stamp = Stamp {
                    sent_ns: stamp_ns,
                    publisher: p as u32,
                    seq: sent,
                };
                if let Some(t) = publisher.templates.get(topic) {
                    t.put(&mut out, pkid, &stamp);
                }
                topic = (topic + 1) % n_topics;
                sent += 1;
            }
            publisher.conn.stream.write_all(&out).await?;
            out.clear();
            if qos1 {
                while let Ok(k) = publisher.conn.stream.try_read_buf(&mut publisher.conn.rbuf) {
                    if k == 0 {
                        return Err(BenchError::Closed);
                    }
                }
                acked += take_acks(&mut publisher.conn)?;
            }
            continue;
        }
        let wake = shared.wake.get(p);
        let conn = &mut publisher.conn;
        tokio::select! {
            r = conn.stream.read_buf(&mut conn.rbuf), if qos1 => {
                if r? == 0 {
                    return Err(BenchError::Closed);
                }
                acked += take_acks(conn)?;
            }
            _ = async { if let Some(w) = wake { w.notified().await } }, if my_rate.is_none() => {}
            _ = tokio::time::sleep_until(next_due.unwrap_or(deadline).min(deadline).into()) => {}
            _ = tokio::time::sleep_until((last_change + STALL).into()), if my_rate.is_none() => {}
        }
    }
    // Collect the outstanding PUBACKs so that the broker has taken every message.
    if qos1 {
        let conn = &mut publisher.conn;
        let wait = async {
            while acked < sent {
                if conn.stream.read_buf(&mut conn.rbuf).await? == 0 {
                    return Err(BenchError::Closed);
                }
                acked += take_acks(conn)?;
            }
            Ok::<(), BenchError>(())
        };
        let _ = tokio::time::timeout(phase.drain.max(Duration::from_secs(5)), wait).await;
    }
    Ok((publisher, sent))
}
