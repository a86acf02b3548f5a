//! The rebalancer, run by the root (`[cluster] rebalance = true`) once per load interval:
//!
//! - every pin naming a node that is down (its will, or a stale record) is rewritten to the
//!   node the assignment rule picks among the live ones;
//! - a node whose load per capacity is above `imbalance` × the cluster's mean is asked, with
//!   a `$cluster/rebalance/<node-id>` request, to pin the fewest of its unpinned clients
//!   needed to bring it back to that bound, to the least loaded nodes (at most once per
//!   [`COOLDOWN_INTERVALS`] intervals, while the records catch up with the moves).
//!
//! Every move is a retained `$cluster/assign/<client-id>`, so it survives restarts, and the
//! nodes move the clients themselves when the pin arrives, at their `move_rate`. At most
//! `move_rate` pins or requested pins per second of interval. Owns only these choices
//! ([`plan_shed`] is pure); must never move a client itself.

use std::collections::HashMap;
use std::time::Instant;

use bytes::Bytes;
use canopy_model::cluster::{self, NodeRecord, NodeState, REBALANCE_PREFIX};
use canopy_proto::{QoS, TopicName};
use serde::{Deserialize, Serialize};

use super::{ClusterBook, Host, publish_retained};
use crate::message::Message;

/// Intervals between two requests to the same node.
pub(super) const COOLDOWN_INTERVALS: u32 = 3;

/// A request to a node to shed clients.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Shed {
    /// How many clients to pin elsewhere.
    #[serde(rename = "move")]
    pub(super) count: u64,
    /// The nodes to pin them to, in turn.
    pub(super) to: Vec<String>,
}

/// The root's rebalancer.
#[derive(Debug)]
pub(super) struct Rebalancer {
    /// Most load per capacity, as a multiple of the mean, before clients are moved.
    imbalance: f64,
    /// Most pins rewritten or requested per second.
    move_rate: u32,
    /// When the last tick ran, to size the next batch.
    last: Option<Instant>,
    /// When each node was last asked to shed clients.
    asked: HashMap<String, Instant>,
    /// Each node's connections at the last tick, to tell a settled cluster from one in
    /// the middle of a connect storm.
    seen: HashMap<String, u64>,
}

impl Rebalancer {
    pub(super) fn new(imbalance: f64, move_rate: u32) -> Rebalancer {
        Rebalancer {
            imbalance,
            move_rate,
            last: None,
            asked: HashMap::new(),
            seen: HashMap::new(),
        }
    }

    /// Whether every node's load held still since the last tick (within 1 % of its
    /// capacity). Records arrive at different moments of their interval, so during a
    /// connect storm the freshest record always looks overloaded: shedding then would move
    /// clients the wrong way. Imbalance is acted on only once the counts settle.
    fn settled(&mut self, nodes: &[NodeRecord]) -> bool {
        let settled = nodes.iter().all(|n| {
            self.seen
                .get(&n.node)
                .is_some_and(|&before| before.abs_diff(n.connections) <= n.capacity / 100)
        });
        self.seen = nodes
            .iter()
            .map(|n| (n.node.clone(), n.connections))
            .collect();
        settled
    }

    /// Rewrites the pins of down nodes and asks overloaded nodes to shed, as much as the
    /// time since the last tick allows. `interval`: the load interval (for the cool-down).
    pub(super) fn tick(
        &mut self,
        host: &mut dyn Host,
        book: &ClusterBook,
        interval: std::time::Duration,
    ) {
        let now = host.now();
        let secs = self
            .last
            .map_or(1.0, |t| now.saturating_duration_since(t).as_secs_f64())
            .clamp(0.1, 10.0);
        self.last = Some(now);
        let budget = (f64::from(self.move_rate) * secs).max(1.0) as usize;
        let used = self.repin_stranded(host, book, budget);
        let nodes: Vec<NodeRecord> = book.nodes();
        if !self.settled(&nodes) {
            return;
        }
        let cooldown = interval * COOLDOWN_INTERVALS;
        let mut left = budget.saturating_sub(used) as u64;
        for (node, shed) in plan_shed(&nodes, self.imbalance) {
            if left == 0 {
                break;
            }
            if self
                .asked
                .get(&node)
                .is_some_and(|t| now.saturating_duration_since(*t) < cooldown)
            {
                continue;
            }
            let shed = Shed {
                count: shed.count.min(left),
                to: shed.to,
            };
            left -= shed.count;
            self.asked.insert(node.clone(), now);
            tracing::info!(node = %node, count = shed.count, to = ?shed.to, "rebalancer: asking a node to shed clients");
            let Ok(topic) = TopicName::new(&format!("{REBALANCE_PREFIX}{node}")) else {
                continue;
            };
            host.publish(Message {
                topic,
                qos: QoS::AtLeastOnce,
                retain: false,
                properties: Default::default(),
                payload: Bytes::from(serde_json::to_string(&shed).unwrap_or_default()),
                expires_at: None,
            });
        }
    }

    /// Rewrites at most `budget` pins naming down nodes; returns how many.
    fn repin_stranded(&mut self, host: &mut dyn Host, book: &ClusterBook, budget: usize) -> usize {
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
        let n = moves.len();
        for (client, node) in moves {
            tracing::info!(client_id = %client, to = %node, "rebalancer: re-pinning a client of a down node");
            book.write().pins.insert(client.clone(), node.clone());
            publish_retained(host, &cluster::assign_topic(&client), Bytes::from(node));
        }
        n
    }
}

/// The requests that bring every up node within `imbalance` × the mean load per capacity:
/// for each node above the bound by at least 1 % of its capacity, the fewest clients to move
/// off it, to the up nodes below the mean, least loaded first. Pure; in node order.
pub(super) fn plan_shed(nodes: &[NodeRecord], imbalance: f64) -> Vec<(String, Shed)> {
    let up: Vec<&NodeRecord> = nodes
        .iter()
        .filter(|n| n.is_up() && n.capacity > 0)
        .collect();
    let (conns, caps) = up.iter().fold((0u64, 0u64), |(c, k), n| {
        (c + n.connections, k + n.capacity)
    });
    if up.len() < 2 || caps == 0 || conns == 0 {
        return Vec::new();
    }
    let mean = conns as f64 / caps as f64;
    let milli = u128::from((imbalance * 1000.0).round() as u64);
    let mut under: Vec<&&NodeRecord> = up
        .iter()
        .filter(|n| (n.connections as f64) < mean * n.capacity as f64)
        .collect();
    under.sort_by(|a, b| {
        let (la, lb) = (
            a.connections as f64 / a.capacity as f64,
            b.connections as f64 / b.capacity as f64,
        );
        la.total_cmp(&lb).then_with(|| a.node.cmp(&b.node))
    });
    let to: Vec<String> = under.iter().map(|n| n.node.clone()).collect();
    if to.is_empty() {
        return Vec::new();
    }
    up.iter()
        .filter_map(|n| {
            // imbalance × (conns / caps) × capacity, in integers so the bound is exact.
            let bound =
                milli * u128::from(conns) * u128::from(n.capacity) / (1000 * u128::from(caps));
            let bound = u64::try_from(bound).unwrap_or(u64::MAX);
            // A handful of clients above a tiny mean is noise, not imbalance.
            let excess = n.connections.saturating_sub(bound);
            (excess > 0 && excess >= n.capacity / 100).then(|| {
                (
                    n.node.clone(),
                    Shed {
                        count: n.connections - bound,
                        to: to.clone(),
                    },
                )
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn up(id: &str, connections: u64, capacity: u64) -> NodeRecord {
        NodeRecord {
            node: id.into(),
            advertise: format!("{id}:1"),
            connections,
            capacity,
            level: None,
            msgs_in: 0,
            msgs_out: 0,
            ts: 0,
            state: NodeState::Up,
        }
    }

    #[test]
    fn a_balanced_cluster_needs_nothing() {
        let nodes = [up("a", 100, 1000), up("b", 110, 1000), up("c", 50, 500)];
        assert!(plan_shed(&nodes, 1.2).is_empty());
    }

    #[test]
    fn an_overloaded_node_sheds_down_to_the_bound_towards_the_least_loaded() {
        // mean 1000/3000; bound for a: 1.2 × 1/3 × 1000 = 400.
        let nodes = [up("a", 800, 1000), up("b", 200, 1000), up("c", 0, 1000)];
        let plan = plan_shed(&nodes, 1.2);
        assert_eq!(
            plan,
            [(
                "a".to_owned(),
                Shed {
                    count: 400,
                    to: vec!["c".into(), "b".into()]
                }
            )]
        );
    }

    #[test]
    fn an_excess_below_one_percent_of_capacity_is_left_alone() {
        let nodes = [up("a", 1, 10_000), up("b", 0, 10_000)];
        assert!(plan_shed(&nodes, 1.2).is_empty());
        let nodes = [up("a", 300, 10_000), up("b", 0, 10_000)];
        assert_eq!(plan_shed(&nodes, 1.2)[0].1.count, 120);
    }

    #[test]
    fn load_is_per_capacity_and_down_nodes_do_not_count() {
        let mut dead = up("z", 5000, 1000);
        dead.state = NodeState::Down;
        // a: 300/1000, b: 900/3000: equal load per capacity.
        let nodes = [up("a", 300, 1000), up("b", 900, 3000), dead];
        assert!(plan_shed(&nodes, 1.2).is_empty());
    }

    #[test]
    fn a_new_empty_node_draws_clients_from_the_crowded_ones() {
        let nodes = [up("a", 600, 1000), up("b", 600, 1000), up("new", 0, 1000)];
        let plan = plan_shed(&nodes, 1.2);
        // mean 0.4, bound 480: 120 each, to the new node.
        assert_eq!(plan.len(), 2);
        assert!(plan.iter().all(|(_, s)| s.count == 120 && s.to == ["new"]));
    }

    #[test]
    fn the_request_reads_back_from_its_documented_json() {
        let s: Shed = serde_json::from_str(r#"{"move":3,"to":["n2"]}"#).unwrap();
        assert_eq!(
            s,
            Shed {
                count: 3,
                to: vec!["n2".into()]
            }
        );
        assert_eq!(
            serde_json::to_string(&s).unwrap(),
            r#"{"move":3,"to":["n2"]}"#
        );
    }

    #[test]
    fn imbalance_waits_until_the_counts_settle() {
        let mut r = Rebalancer::new(1.2, 500);
        let storm = [up("a", 1500, 10_000), up("b", 400, 10_000)];
        assert!(!r.settled(&storm), "nothing seen before");
        let later = [up("a", 1900, 10_000), up("b", 1800, 10_000)];
        assert!(!r.settled(&later), "counts still moving by hundreds");
        let still = [up("a", 1950, 10_000), up("b", 1790, 10_000)];
        assert!(
            r.settled(&still),
            "within 1 % of capacity since the last tick"
        );
        let joined = [
            up("a", 1950, 10_000),
            up("b", 1790, 10_000),
            up("c", 0, 10_000),
        ];
        assert!(!r.settled(&joined), "a node not seen before");
    }
}
