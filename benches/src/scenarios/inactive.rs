//! The `inactive` scenario (issue 5): fan-in while many event-activated subscriptions are
//! registered, inactive, on the very topics being published. An inactive subscription is
//! absent from the broker's matching index, so publishing should cost the same as with
//! none (`--filters 0` is the baseline run).
//!
//! Owns the registration of the inactive subscriptions through `$ctl/subscribe` (every
//! broker without that feature would just route those documents as plain messages, so the
//! scenario is meaningful for Canopy only). Every connection it opens is closed on return.

use bytes::Bytes;
use canopy_proto::{Packet, Publish, QoS, TopicName};
use serde_json::{Map, json};

use super::{client_prefix, pubsub};
use crate::client::Conn;
use crate::progress::Progress;
use crate::report::Report;
use crate::{BenchError, Options};

/// Topics per publisher; the inactive subscriptions spread over all of them.
const TOPICS_PER_PUBLISHER: usize = 64;

/// Runs the scenario.
pub(crate) async fn run(opts: &Options, progress: Progress) -> Result<Report, BenchError> {
    let n = opts.filters.unwrap_or(100_000);
    let n_pubs = opts.publishers.unwrap_or(8);
    let topics: Vec<Vec<String>> = (0..n_pubs)
        .map(|p| {
            (0..TOPICS_PER_PUBLISHER)
                .map(|j| format!("bench/{p}/t{j}"))
                .collect()
        })
        .collect();
    let all: Vec<&String> = topics.iter().flatten().collect();
    // Each registering session holds one inactive subscription per topic (a session has
    // one subscription per filter), so n needs n / topics sessions.
    let sessions = n.div_ceil(all.len().max(1));
    let prefix = client_prefix();
    let mut holders = Vec::with_capacity(sessions);
    let mut registered = 0usize;
    let bar = progress.bar("register", Some(n as u64));
    for s in 0..sessions {
        let mut conn = Conn::connect(opts.target, &format!("{prefix}-i{s}")).await?;
        for topic in &all {
            if registered == n {
                break;
            }
            let doc = json!({
                "filter": topic,
                "qos": 1,
                "activate_on": format!("never/{prefix}/{s}"),
            });
            let publish = Publish {
                dup: false,
                qos: QoS::AtMostOnce,
                retain: false,
                topic: Some(
                    TopicName::new("$ctl/subscribe")
                        .map_err(|e| BenchError::Topic(e.to_string()))?,
                ),
                pkid: None,
                properties: Default::default(),
                payload: Bytes::from(doc.to_string()),
            };
            conn.send(&Packet::Publish(publish)).await?;
            registered += 1;
        }
        // A SUBACK after the documents proves the broker has handled them (one
        // connection's packets are handled in order).
        conn.subscribe(&[format!("sync/{prefix}/{s}")], QoS::AtMostOnce)
            .await?;
        bar.set_position(registered as u64);
        holders.push(conn);
    }
    bar.finish_and_clear();
    let mut extra = Map::new();
    extra.insert("inactive_subscriptions".into(), json!(registered));
    extra.insert("registering_sessions".into(), json!(holders.len()));
    let report = pubsub(opts, progress, topics, 1, "bench/#", extra).await;
    drop(holders);
    report
}
