//! The rebalancer, run by the root (`[cluster] rebalance = true`) once per load interval:
//! every pin naming a node that is down (its will, its shutdown, or a stale record) is
//! rewritten to the node the assignment rule picks among the live ones, at most
//! `move_rate` per second. Every move is a retained `$cluster/assign/<client-id>`, so it
//! survives restarts, and the nodes move the clients themselves when the pin arrives.
//!
//! Owns only the choice of pins to rewrite. Must never move a client itself.

use bytes::Bytes;
use canopy_model::cluster::{self, NodeState};

use super::{ClusterBook, Host, publish_retained};

/// The root's rebalancer.
#[derive(Debug)]
pub(super) struct Rebalancer {
    /// Most load per capacity above the mean before clients are moved off a node.
    #[allow(dead_code)]
    imbalance: f64,
    /// Most pins rewritten per second.
    move_rate: u32,
    /// When the last tick ran, to size the next batch.
    last: Option<std::time::Instant>,
}

impl Rebalancer {
    pub(super) fn new(imbalance: f64, move_rate: u32) -> Rebalancer {
        Rebalancer {
            imbalance,
            move_rate,
            last: None,
        }
    }

    /// A cluster topic that is neither a record, a pin nor a drain order.
    pub(super) fn learn(&mut self, _topic: &str, _payload: &[u8]) {}

    /// Rewrites the pins of down nodes, as many as the time since the last tick allows.
    pub(super) fn tick(&mut self, host: &mut dyn Host, book: &ClusterBook) {
        let now = host.now();
        let secs = self
            .last
            .map_or(1.0, |t| now.saturating_duration_since(t).as_secs_f64())
            .clamp(0.1, 10.0);
        self.last = Some(now);
        let budget = (f64::from(self.move_rate) * secs).max(1.0) as usize;
        let moves: Vec<(String, String)> = {
            let view = book.read();
            let mut stranded: Vec<(&String, &String)> = view
                .pins
                .iter()
                .filter(|(_, node)| {
                    view.nodes
                        .get(*node)
                        .is_some_and(|r| r.state == NodeState::Down)
                })
                .collect();
            stranded.sort();
            stranded
                .into_iter()
                .filter_map(|(client, _)| {
                    let to = cluster::assign(client, None, view.nodes.values())?;
                    Some((client.clone(), to.node.clone()))
                })
                .take(budget)
                .collect()
        };
        for (client, node) in moves {
            tracing::info!(client_id = %client, to = %node, "rebalancer: re-pinning a client of a down node");
            book.write().pins.insert(client.clone(), node.clone());
            publish_retained(host, &cluster::assign_topic(&client), Bytes::from(node));
        }
    }
}
