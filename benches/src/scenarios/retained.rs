//! The `retained` scenario: store many retained messages, then time a new `r/#` subscriber.
//!
//! Owns the storing loop (QoS 1, so every message is known to be stored before the
//! subscriber arrives) and the timing of the retained flood. It never waits without a
//! bound: the flood ends after `drain` without progress.

use std::time::{Duration, Instant};

use bytes::BytesMut;
use canopy_proto::{Packet, QoS, Subscribe, SubscribeProperties, SubscriptionOptions, TopicFilter};
use serde_json::{Map, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{client_prefix, ms};
use crate::client::{Conn, Frame, Stamp, Template, consume, next_frame};
use crate::flow::Outcome;
use crate::hist::Histogram;
use crate::progress::Progress;
use crate::report::{Report, RssSampler};
use crate::{BenchError, Options, now_ns};

/// Most unacknowledged retained PUBLISHes while storing.
const WINDOW: u64 = 256;

/// Longest the storing phase may take.
const STORE_LIMIT: Duration = Duration::from_secs(300);

/// Runs the scenario.
pub(crate) async fn run(opts: &Options, progress: Progress) -> Result<Report, BenchError> {
    let n = opts.retained.unwrap_or(100_000) as u64;
    let rss = RssSampler::start(opts.broker_pid);
    let prefix = client_prefix();
    let mut publisher = Conn::connect(opts.target, &format!("{prefix}-p")).await?;
    let bar = progress.bar("store", Some(n));
    let t0 = Instant::now();
    tokio::time::timeout(STORE_LIMIT, store(&mut publisher, n, opts.payload, &bar))
        .await
        .map_err(|_| BenchError::Timeout("storing retained messages"))??;
    let store_time = t0.elapsed();
    bar.finish_and_clear();

    let mut sub = Conn::connect(opts.target, &format!("{prefix}-s")).await?;
    let filter = TopicFilter::new("r/#").map_err(|e| BenchError::Topic(e.to_string()))?;
    let subscribe = Subscribe {
        pkid: 1,
        filters: vec![(
            filter,
            SubscriptionOptions {
                qos: opts.qos,
                ..SubscriptionOptions::default()
            },
        )],
        properties: SubscribeProperties::default(),
    };
    let bar = progress.bar("retained", Some(n));
    let t1 = Instant::now();
    let start_ns = now_ns();
    sub.send(&Packet::Subscribe(subscribe)).await?;
    let mut got = 0u64;
    let mut last_ns = start_ns;
    let mut hist = Histogram::new();
    let mut acks = BytesMut::new();
    while got < n {
        let now = now_ns();
        while let Some((frame, k)) = next_frame(&sub.rbuf)? {
            if let Frame::Publish {
                retain: true, pkid, ..
            } = frame
            {
                got += 1;
                last_ns = now;
                if let Some(id) = pkid {
                    crate::client::put_puback(&mut acks, id);
                }
            }
            consume(&mut sub.rbuf, k);
        }
        if !acks.is_empty() {
            sub.stream.write_all(&acks).await?;
            acks.clear();
        }
        bar.set_position(got);
        if got >= n {
            break;
        }
        match tokio::time::timeout(opts.drain, sub.stream.read_buf(&mut sub.rbuf)).await {
            Ok(r) => {
                if r? == 0 {
                    return Err(BenchError::Closed);
                }
            }
            Err(_) => break,
        }
    }
    bar.finish_and_clear();
    let elapsed = Duration::from_nanos(last_ns.saturating_sub(start_ns));
    hist.record(u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX));
    let outcome = Outcome {
        sent: n,
        delivered: got,
        expected: n,
        elapsed: if got > 0 { elapsed } else { t1.elapsed() },
        hist,
    };
    let mut extra = Map::new();
    extra.insert("retained".into(), json!(n));
    extra.insert("store_ms".into(), json!(ms(store_time)));
    extra.insert("all_retained_ms".into(), json!(ms(elapsed)));
    Ok(super::report(
        opts,
        &outcome,
        1,
        rss.as_ref().map(RssSampler::finish),
        extra,
    ))
}

/// Publishes `n` retained QoS 1 messages to `r/<i>` and waits for every PUBACK.
async fn store(
    conn: &mut Conn,
    n: u64,
    payload: usize,
    bar: &indicatif::ProgressBar,
) -> Result<(), BenchError> {
    let (mut sent, mut acked) = (0u64, 0u64);
    let mut out = BytesMut::with_capacity(64 * 1024);
    while acked < n {
        while sent < n && sent - acked < WINDOW {
            let t = Template::new(&format!("r/{sent}"), QoS::AtLeastOnce, true, payload)?;
            let stamp = Stamp {
                sent_ns: now_ns(),
                publisher: 0,
                seq: sent,
            };
            t.put(&mut out, (sent % 65_535 + 1) as u16, &stamp);
            sent += 1;
        }
        if !out.is_empty() {
            conn.stream.write_all(&out).await?;
            out.clear();
        }
        if conn.stream.read_buf(&mut conn.rbuf).await? == 0 {
            return Err(BenchError::Closed);
        }
        while let Some((frame, k)) = next_frame(&conn.rbuf)? {
            if matches!(frame, Frame::PubAck(_)) {
                acked += 1;
            }
            consume(&mut conn.rbuf, k);
        }
        bar.set_position(acked);
    }
    Ok(())
}
