//! The cluster book: the read-mostly table of node records and assignment pins that the
//! cluster service writes and the CONNECT path and the DNS listener read, and the one
//! admission rule ([`ClusterBook::admit`]) both the CONNECT path and the mover apply.
//!
//! Owns the shared view and the decision where a client is served. Must never publish,
//! read a clock or touch a connection: the service feeds it and acts on its answers.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use canopy_model::cluster::{self, NodeRecord, NodeState};
use canopy_proto::Protocol;

use crate::config::{ClusterPolicy, Config};

/// Where a client is served, as the CONNECT path and the mover see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// Here.
    Local,
    /// A 5.0 client assigned to another node: CONNACK or DISCONNECT 0x9C with this node's
    /// `advertise` as Server Reference.
    Redirect(NodeRecord),
    /// A 3.1.1 (or 3.1) client assigned to another node, on a server that proxies (see
    /// [`ClusterBook::set_proxying`]): its bytes are spliced to this node.
    Proxy(NodeRecord),
}

/// Which node a client belongs to, regardless of policy and protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// This node (or no node is up at all).
    Local,
    /// Another node.
    Elsewhere(NodeRecord),
}

/// What the book holds.
#[derive(Debug, Default)]
pub(super) struct View {
    /// Every node's latest record by node id, this node's own included.
    pub(super) nodes: BTreeMap<String, NodeRecord>,
    /// Pins: client id → node id.
    pub(super) pins: HashMap<String, String>,
}

/// The shared cluster view of one broker.
#[derive(Debug)]
pub struct ClusterBook {
    me: String,
    policy: ClusterPolicy,
    /// With a password file: users whose connections are links, never redirected.
    bridge_users: Vec<String>,
    proxying: AtomicBool,
    view: RwLock<View>,
}

impl ClusterBook {
    /// The book of a broker configured with `[cluster]` (`None` without), which tells
    /// clients `advertise`. Its own record starts `up` with no connections, so before any
    /// other record arrives every answer names this node.
    pub fn new(config: &Config, advertise: &str) -> Option<ClusterBook> {
        let c = config.cluster.as_ref()?;
        let own = NodeRecord {
            node: config.node_id.clone(),
            advertise: advertise.to_owned(),
            connections: 0,
            capacity: c.capacity,
            level: Some(cluster::STEPS),
            msgs_in: 0,
            msgs_out: 0,
            ts: 0,
            state: NodeState::Up,
        };
        let mut view = View::default();
        view.nodes.insert(own.node.clone(), own);
        Some(ClusterBook {
            me: config.node_id.clone(),
            policy: c.policy,
            bridge_users: if config.auth.password_file.is_some() {
                config.auth.bridge_users.clone()
            } else {
                Vec::new()
            },
            proxying: AtomicBool::new(false),
            view: RwLock::new(view),
        })
    }

    /// This node's id.
    pub fn me(&self) -> &str {
        &self.me
    }

    /// The server can splice 3.1.1 connections to another node (the proxy is wired):
    /// from now on [`ClusterBook::admit`] answers `Proxy` for them instead of `Local`.
    pub fn set_proxying(&self, on: bool) {
        self.proxying.store(on, Ordering::Relaxed);
    }

    pub(super) fn read(&self) -> RwLockReadGuard<'_, View> {
        self.view.read().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn write(&self) -> RwLockWriteGuard<'_, View> {
        self.view.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Puts `record` (and a `pin`: client id, node id) in the book, as the service would.
    #[cfg(test)]
    pub fn learn_for_tests(&self, record: NodeRecord, pin: Option<(&str, &str)>) {
        let mut view = self.write();
        view.nodes.insert(record.node.clone(), record);
        if let Some((client, node)) = pin {
            view.pins.insert(client.to_owned(), node.to_owned());
        }
    }

    /// Every node's record, this node's own included, by node id.
    pub fn nodes(&self) -> Vec<NodeRecord> {
        self.read().nodes.values().cloned().collect()
    }

    /// The up node with the lowest connections per capacity (what the name service
    /// answers); this node's own record while it is the only one known and up.
    pub fn least_loaded(&self) -> Option<NodeRecord> {
        cluster::least_loaded(self.read().nodes.values()).cloned()
    }

    /// The node `client_id` is pinned to, if any.
    pub fn pin(&self, client_id: &str) -> Option<String> {
        self.read().pins.get(client_id).cloned()
    }

    /// Which node `client_id` belongs to (`assigned`: the broker made the id up, so it
    /// hashes nowhere in particular and stays here unless this node is not up).
    pub fn decide(&self, client_id: &str, assigned: bool) -> Decision {
        let view = self.read();
        let own_up = view.nodes.get(&self.me).is_some_and(NodeRecord::is_up);
        let target = if assigned {
            if own_up {
                None
            } else {
                cluster::least_loaded(view.nodes.values())
            }
        } else {
            let pin = view.pins.get(client_id).map(String::as_str);
            cluster::assign(client_id, pin, view.nodes.values())
        };
        match target {
            Some(n) if n.node != self.me => Decision::Elsewhere(n.clone()),
            _ => Decision::Local,
        }
    }

    /// Whether a connection is a link between brokers, which is never redirected or
    /// moved: a `bridge_users` user (with a password file), or a client id ending in
    /// `-local` or `-remote` (how metabrokers, embedded bridges and the cluster's join
    /// link name their connections).
    pub fn is_link(&self, client_id: &str, user: Option<&str>) -> bool {
        client_id.ends_with("-local")
            || client_id.ends_with("-remote")
            || user.is_some_and(|u| self.bridge_users.iter().any(|b| b == u))
    }

    /// Where a connecting (or connected) client is served: `Local` under the `accept`
    /// policy, for links ([`ClusterBook::is_link`]) and for clients that belong here;
    /// otherwise `Redirect` for 5.0 clients and, when the server proxies, `Proxy` for
    /// older ones (which cannot be redirected; without the proxy they are served here).
    pub fn admit(
        &self,
        client_id: &str,
        assigned: bool,
        protocol: Protocol,
        user: Option<&str>,
    ) -> Admission {
        if self.policy == ClusterPolicy::Accept || self.is_link(client_id, user) {
            return Admission::Local;
        }
        match self.decide(client_id, assigned) {
            Decision::Local => Admission::Local,
            Decision::Elsewhere(n) if protocol.is_v5() => Admission::Redirect(n),
            Decision::Elsewhere(n) if self.proxying.load(Ordering::Relaxed) => Admission::Proxy(n),
            Decision::Elsewhere(_) => Admission::Local,
        }
    }
}
