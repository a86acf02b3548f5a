//! The `connections` scenario: many idle subscribed connections.
//!
//! Owns the connect-rate and memory-per-connection measurement, then checks that every
//! connection is live by publishing one message to each `dev/<i>/cmd`. It never keeps a
//! connection past the run.

use std::time::{Duration, Instant};

use bytes::BytesMut;
use canopy_proto::QoS;
use serde_json::{Map, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinSet;

use super::{client_prefix, connect_many, ms, per_s};
use crate::client::{Conn, Frame, Stamp, Template, consume, next_frame};
use crate::flow::Outcome;
use crate::hist::Histogram;
use crate::progress::Progress;
use crate::report::{Report, RssSampler, rss_kib};
use crate::{BenchError, Options, now_ns};

/// How long the broker is given to settle before its RSS is read.
const SETTLE: Duration = Duration::from_millis(500);

/// Runs the scenario.
pub(crate) async fn run(opts: &Options, progress: Progress) -> Result<Report, BenchError> {
    let n = opts.connections.unwrap_or(10_000);
    let rss = RssSampler::start(opts.broker_pid);
    let prefix = client_prefix();
    let bar = progress.bar("connect", Some(n as u64));
    let t0 = Instant::now();
    let conns = connect_many(
        opts.target,
        |i| format!("{prefix}-c{i}"),
        n,
        opts.connect_concurrency,
    )
    .await?;
    let connect_time = t0.elapsed();
    bar.finish_and_clear();
    let mut set = JoinSet::new();
    let mut subscribed = Vec::with_capacity(n);
    for (i, mut conn) in conns.into_iter().enumerate() {
        let qos = opts.qos;
        set.spawn(async move {
            conn.subscribe(&[format!("dev/{i}/cmd")], qos)
                .await
                .map(|()| (i, conn))
        });
        // Bound concurrent SUBSCRIBEs like the handshakes.
        if set.len() >= opts.connect_concurrency.max(1)
            && let Some(done) = set.join_next().await
        {
            idle_wait(done, &mut subscribed)?;
        }
    }
    while let Some(done) = set.join_next().await {
        idle_wait(done, &mut subscribed)?;
    }
    tokio::time::sleep(SETTLE).await;
    let after = opts.broker_pid.and_then(rss_kib);
    // Every connection must still be live: one message to each `dev/<i>/cmd`.
    let mut readers = JoinSet::new();
    let deadline = Instant::now() + opts.drain + Duration::from_secs(10);
    for (i, mut conn) in subscribed {
        readers.spawn(async move { wait_one(&mut conn, deadline).await.map(|h| (i, h)) });
    }
    let mut publisher = Conn::connect(opts.target, &format!("{prefix}-pub")).await?;
    let t1 = Instant::now();
    let mut out = BytesMut::with_capacity(64 * 1024);
    for i in 0..n {
        let t = Template::new(
            &format!("dev/{i}/cmd"),
            QoS::AtMostOnce,
            false,
            opts.payload,
        )?;
        let stamp = Stamp {
            sent_ns: now_ns(),
            publisher: 0,
            seq: i as u64,
        };
        t.put(&mut out, 0, &stamp);
        if out.len() > 60 * 1024 {
            publisher.stream.write_all(&out).await?;
            out.clear();
        }
    }
    publisher.stream.write_all(&out).await?;
    let mut hist = Histogram::new();
    let mut delivered = 0u64;
    while let Some(done) = readers.join_next().await {
        if let Ok(Ok((_, Some(latency)))) = done {
            delivered += 1;
            hist.record(latency);
        }
    }
    let outcome = Outcome {
        sent: n as u64,
        delivered,
        expected: n as u64,
        elapsed: t1.elapsed(),
        hist,
    };
    let mut extra = Map::new();
    extra.insert("connections".into(), json!(n));
    extra.insert("connect_ms".into(), json!(ms(connect_time)));
    extra.insert("connect_per_s".into(), json!(per_s(n as u64, connect_time)));
    let rss = rss.as_ref().map(RssSampler::finish);
    if let (Some(r), Some(after)) = (rss, after) {
        let per = after.saturating_sub(r.start_kib) as f64 * 1024.0 / n.max(1) as f64;
        extra.insert("rss_after_connect_kib".into(), json!(after));
        extra.insert("rss_per_conn_bytes".into(), json!(per.round()));
    }
    Ok(super::report(opts, &outcome, n, rss, extra))
}

/// Collects one finished SUBSCRIBE task.
fn idle_wait(
    done: Result<Result<(usize, Conn), BenchError>, tokio::task::JoinError>,
    into: &mut Vec<(usize, Conn)>,
) -> Result<(), BenchError> {
    let pair = done.map_err(|e| BenchError::Unexpected(e.to_string()))??;
    into.push(pair);
    Ok(())
}

/// Waits for one PUBLISH on `conn` until `deadline`; its latency in nanoseconds, or `None`
/// if none came.
async fn wait_one(conn: &mut Conn, deadline: Instant) -> Result<Option<u64>, BenchError> {
    let wait = async {
        loop {
            while let Some((frame, n)) = next_frame(&conn.rbuf)? {
                if let Frame::Publish { payload, .. } = frame {
                    let sent = Stamp::read(payload).map_or(0, |s| s.sent_ns);
                    return Ok(Some(now_ns().saturating_sub(sent)));
                }
                consume(&mut conn.rbuf, n);
            }
            if conn.stream.read_buf(&mut conn.rbuf).await? == 0 {
                return Err(BenchError::Closed);
            }
        }
    };
    match tokio::time::timeout_at(deadline.into(), wait).await {
        Ok(r) => r,
        Err(_) => Ok(None),
    }
}
