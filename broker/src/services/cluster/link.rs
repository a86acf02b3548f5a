//! The join link of a node that is not the root: the embedded bridge that carries
//! `$cluster/#` both ways between this broker and the root, and leaves a will on the root
//! that marks this node down when the link dies with the node.
//!
//! Owns only the link's configuration (a pure function of the broker's configuration and
//! its bound addresses). Must never start it: the broker starts it with its `[[bridge]]`s.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use canopy_metabroker::{BridgeConfig, Direction, RemoteWill, RouteConfig};
use canopy_model::cluster::{self, CLUSTER_FILTER, NodeRecord, NodeState};

use crate::config::{Config, plain_listener};

/// The address clients are told: `[cluster] advertise`, else the first listener's bound one.
pub fn advertise(config: &Config, bound: &[SocketAddr]) -> String {
    config
        .cluster
        .as_ref()
        .and_then(|c| c.advertise.clone())
        .or_else(|| bound.first().map(ToString::to_string))
        .unwrap_or_default()
}

/// The bridge name of node `node_id`'s join link (its client ids are `<name>-local` and
/// `<name>-remote`, which the cluster never redirects).
pub fn link_name(node_id: &str) -> String {
    format!("cluster-{node_id}")
}

/// The join link of this broker, `None` unless `[cluster] join` is set. `bound` are the
/// listeners' bound addresses in configuration order; `password` the join password (read
/// from `join_password_file` by the caller).
pub fn join_bridge(
    config: &Config,
    bound: &[SocketAddr],
    password: Option<String>,
) -> Option<BridgeConfig> {
    let c = config.cluster.as_ref()?;
    let join = c.join.as_ref()?;
    let local = bound.get(plain_listener(&config.listener)?)?;
    let ip = match local.ip() {
        IpAddr::V4(a) if a.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(a) if a.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    let local_url = format!("mqtt://{}", SocketAddr::new(ip, local.port()));
    let mut b = BridgeConfig::new(&link_name(&config.node_id), &local_url, join);
    b.routes = vec![RouteConfig {
        direction: Direction::Both,
        local: CLUSTER_FILTER.to_owned(),
        remote_prefix: None,
        remote: None,
        qos: 1,
        max_rate: None,
        sample_every: None,
        interest: false,
    }];
    b.local.id = Some(config.node_id.clone());
    for ep in [&mut b.local, &mut b.remote] {
        ep.username = c.join_user.clone();
        ep.password = password.clone();
    }
    b.remote.ca_file = c.join_ca_file.clone();
    b.queue.dir = Some(config.data_dir.join(format!("bridge-{}", b.name)));
    let down = NodeRecord {
        node: config.node_id.clone(),
        advertise: advertise(config, bound),
        connections: 0,
        capacity: c.capacity,
        level: None,
        msgs_in: 0,
        msgs_out: 0,
        ts: 0,
        state: NodeState::Down,
    };
    b.remote_will = Some(RemoteWill {
        topic: cluster::node_topic(&config.node_id),
        payload: down.to_json(),
    });
    Some(b)
}
