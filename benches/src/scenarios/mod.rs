//! The scenarios: which connections to open, which topics to use, which phases to run.
//!
//! Owns the shape of each scenario and its defaults; the publishing itself is
//! [`crate::flow`]'s. It never keeps state between runs: every connection it opens is
//! closed when the run returns.

mod idle;
mod inactive;
mod retained;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::{Map, Value, json};
use tokio::task::JoinSet;

use crate::client::{Conn, Template};
use crate::flow::{self, Outcome, Phase, Publisher};
use crate::progress::Progress;
use crate::report::{Latency, Report, Rss, RssSampler};
use crate::{BenchError, Options, Scenario};

/// How long a run publishes when neither `--duration` nor `--count` is given.
const DEFAULT_DURATION: Duration = Duration::from_secs(10);

/// Runs `opts.scenario`.
pub(crate) async fn run(opts: &Options, progress: Progress) -> Result<Report, BenchError> {
    match opts.scenario {
        Scenario::Fanin => {
            let n = opts.publishers.unwrap_or(8);
            let topics: Vec<Vec<String>> = (0..n).map(|p| vec![format!("bench/{p}")]).collect();
            pubsub(opts, progress, topics, 1, "bench/#", Map::new()).await
        }
        Scenario::Durable => {
            let n = opts.publishers.unwrap_or(8);
            let topics: Vec<Vec<String>> = (0..n).map(|p| vec![format!("bench/{p}")]).collect();
            let mut extra = Map::new();
            extra.insert("persistent_subscriber".into(), json!(true));
            pubsub_with(opts, progress, topics, 1, "bench/#", extra, false).await
        }
        Scenario::Inactive => inactive::run(opts, progress).await,
        Scenario::Fanout => {
            let n = opts.publishers.unwrap_or(1);
            let topics = (0..n).map(|_| vec!["bench/fanout".to_owned()]).collect();
            let subs = opts.subscribers.unwrap_or(100);
            pubsub(opts, progress, topics, subs, "bench/fanout", Map::new()).await
        }
        Scenario::Latency => {
            let mut o = opts.clone();
            o.rate = Some(opts.rate.unwrap_or(1000.0));
            let topics = vec![vec!["bench/latency".to_owned()]];
            pubsub(&o, progress, topics, 1, "bench/latency", Map::new()).await
        }
        Scenario::Wildcard => wildcard(opts, progress).await,
        Scenario::Connections => idle::run(opts, progress).await,
        Scenario::Retained => retained::run(opts, progress).await,
    }
}

/// A prefix for client identifiers, unique per run in this process and across processes.
pub(crate) fn client_prefix() -> String {
    static RUN: AtomicU64 = AtomicU64::new(0);
    format!(
        "cb{}-{}",
        std::process::id(),
        RUN.fetch_add(1, Ordering::Relaxed)
    )
}

/// Opens `n` connections, at most `concurrency` handshakes at a time, in index order.
pub(crate) async fn connect_many(
    addr: SocketAddr,
    ids: impl Fn(usize) -> String,
    n: usize,
    concurrency: usize,
) -> Result<Vec<Conn>, BenchError> {
    let mut out: Vec<Option<Conn>> = (0..n).map(|_| None).collect();
    let mut set = JoinSet::new();
    for i in 0..n {
        if set.len() >= concurrency.max(1)
            && let Some(done) = set.join_next().await
        {
            let (j, conn) = done.map_err(|e| BenchError::Unexpected(e.to_string()))??;
            out[j] = Some(conn);
        }
        let id = ids(i);
        set.spawn(async move { Conn::connect(addr, &id).await.map(|c| (i, c)) });
    }
    while let Some(done) = set.join_next().await {
        let (j, conn) = done.map_err(|e| BenchError::Unexpected(e.to_string()))??;
        out[j] = Some(conn);
    }
    Ok(out.into_iter().flatten().collect())
}

/// The measured phase described by `opts`.
fn phase(opts: &Options) -> Phase {
    Phase {
        qos: opts.qos,
        inflight: opts.inflight,
        rate: opts.rate,
        duration: match (opts.duration, opts.count) {
            (None, None) => Some(DEFAULT_DURATION),
            (d, _) => d,
        },
        count: opts.count,
        drain: opts.drain,
    }
}

/// Publishers connected and given their topics.
async fn publishers(
    opts: &Options,
    prefix: &str,
    topics: Vec<Vec<String>>,
) -> Result<Vec<Publisher>, BenchError> {
    let conns = connect_many(opts.target, |i| format!("{prefix}-p{i}"), topics.len(), 16).await?;
    conns
        .into_iter()
        .zip(topics)
        .map(|(conn, ts)| {
            let templates = ts
                .iter()
                .map(|t| Template::new(t, opts.qos, false, opts.payload))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Publisher { conn, templates })
        })
        .collect()
}

/// Subscribers connected and subscribed to `filters`.
async fn subscribers(
    opts: &Options,
    prefix: &str,
    n: usize,
    filters: &[String],
    clean: bool,
) -> Result<Vec<Conn>, BenchError> {
    let conns = if clean {
        connect_many(opts.target, |i| format!("{prefix}-s{i}"), n, 16).await?
    } else {
        let mut out = Vec::with_capacity(n);
        for i in 0..n {
            out.push(Conn::connect_session(opts.target, &format!("{prefix}-s{i}"), false).await?);
        }
        out
    };
    let mut set = JoinSet::new();
    for (i, mut conn) in conns.into_iter().enumerate() {
        let filters = filters.to_vec();
        let qos = opts.qos;
        set.spawn(async move { conn.subscribe(&filters, qos).await.map(|()| (i, conn)) });
    }
    let mut out = Vec::with_capacity(n);
    while let Some(done) = set.join_next().await {
        out.push(done.map_err(|e| BenchError::Unexpected(e.to_string()))??);
    }
    out.sort_by_key(|(i, _)| *i);
    Ok(out.into_iter().map(|(_, c)| c).collect())
}

/// Publishers on `topics` (one list per publisher) to `n_subs` subscribers of `filter`.
async fn pubsub(
    opts: &Options,
    progress: Progress,
    topics: Vec<Vec<String>>,
    n_subs: usize,
    filter: &str,
    extra: Map<String, Value>,
) -> Result<Report, BenchError> {
    pubsub_with(opts, progress, topics, n_subs, filter, extra, true).await
}

/// [`pubsub`] with the subscribers' Clean Session flag chosen.
pub(crate) async fn pubsub_with(
    opts: &Options,
    progress: Progress,
    topics: Vec<Vec<String>>,
    n_subs: usize,
    filter: &str,
    extra: Map<String, Value>,
    clean: bool,
) -> Result<Report, BenchError> {
    let rss = RssSampler::start(opts.broker_pid);
    let prefix = client_prefix();
    let subs = subscribers(opts, &prefix, n_subs, &[filter.to_owned()], clean).await?;
    let pubs = publishers(opts, &prefix, topics).await?;
    let bar = progress.bar(&format!("{:?}", opts.scenario).to_lowercase(), None);
    let (_, _, outcome) = flow::run(pubs, subs, &phase(opts), &bar).await?;
    Ok(report(
        opts,
        &outcome,
        n_subs,
        rss.as_ref().map(RssSampler::finish),
        extra,
    ))
}

/// Cold then warm publishes against many single-level wildcard filters.
async fn wildcard(opts: &Options, progress: Progress) -> Result<Report, BenchError> {
    let n = opts.filters.unwrap_or(10_000);
    let n_pubs = opts.publishers.unwrap_or(8);
    let rss = RssSampler::start(opts.broker_pid);
    let prefix = client_prefix();
    let filters: Vec<String> = (0..n).map(|i| format!("site/{i}/+/temp")).collect();
    let topics: Vec<String> = (0..n).map(|i| format!("site/{i}/s/temp")).collect();
    let subs = subscribers(opts, &prefix, 1, &filters, true).await?;
    let mut pubs = publishers(opts, &prefix, vec![topics; n_pubs]).await?;
    // Cold: the first publish to each topic, by one publisher, in order.
    let cold = Phase {
        rate: None,
        duration: None,
        count: Some(n as u64),
        ..phase(opts)
    };
    let rest = pubs.split_off(1.min(pubs.len()));
    let bar = progress.bar("cold", Some(n as u64));
    let (mut first, subs, cold_outcome) = flow::run(pubs, subs, &cold, &bar).await?;
    first.extend(rest);
    let bar = progress.bar("warm", None);
    let (_, _, outcome) = flow::run(first, subs, &phase(opts), &bar).await?;
    let mut extra = Map::new();
    extra.insert("filters".into(), json!(n));
    extra.insert("first_publish_ms".into(), json!(ms(cold_outcome.elapsed)));
    extra.insert("first_publish_lost".into(), json!(cold_outcome.lost()));
    Ok(report(
        opts,
        &outcome,
        1,
        rss.as_ref().map(RssSampler::finish),
        extra,
    ))
}

/// Milliseconds, rounded to 0.01.
pub(crate) fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 100_000.0).round() / 100.0
}

/// Per-second rate of `n` over `d`, 0 for an empty interval.
pub(crate) fn per_s(n: u64, d: Duration) -> f64 {
    let s = d.as_secs_f64();
    if s > 0.0 { (n as f64 / s).round() } else { 0.0 }
}

/// The result line of a phase.
pub(crate) fn report(
    opts: &Options,
    o: &Outcome,
    n_subs: usize,
    rss: Option<Rss>,
    extra: Map<String, Value>,
) -> Report {
    let unique = o.delivered / n_subs.max(1) as u64;
    Report {
        scenario: opts.scenario,
        label: opts.label.clone(),
        params: opts.clone(),
        msgs_per_s: per_s(unique, o.elapsed),
        deliveries_per_s: per_s(o.delivered, o.elapsed),
        sent: o.sent,
        delivered: o.delivered,
        expected: o.expected,
        lost: o.lost(),
        elapsed_s: o.elapsed.as_secs_f64(),
        latency: Latency::from(&o.hist),
        rss,
        extra,
    }
}
