//! Cluster load distribution (SPEC §6): the load record every node publishes retained at
//! `$cluster/nodes/<node-id>`, the assignment pins at `$cluster/assign/<client-id>`, and the
//! pure rules every node applies to them alike — which node a client belongs to
//! ([`assign`]), which node is least loaded ([`least_loaded`]), and the coarse load level
//! with hysteresis a node publishes about itself ([`level`]).
//!
//! Owns the shapes, topic names and decision functions. Must never do IO, read a clock or
//! keep a table: the broker's cluster service keeps the records, passes the time in and acts
//! on the answers. Every function here must give the same answer on every node, on every
//! platform and in every Rust version, so the hashing and the logarithm are written out
//! explicitly (no `std::hash`, no platform `ln`).

use serde::{Deserialize, Serialize};

/// Topic prefix of node load records: `$cluster/nodes/<node-id>`.
pub const NODES_PREFIX: &str = "$cluster/nodes/";
/// Topic prefix of assignment pins: `$cluster/assign/<client-id>`, payload a node id.
pub const ASSIGN_PREFIX: &str = "$cluster/assign/";
/// Topic prefix of drain orders: `$cluster/drain/<node-id>`, retained; a non-empty payload
/// drains the node, an empty one (clearing the retained order) takes it back.
pub const DRAIN_PREFIX: &str = "$cluster/drain/";
/// The filter covering every cluster topic (what a joined node's link carries).
pub const CLUSTER_FILTER: &str = "$cluster/#";
/// How many coarse steps a node's spare capacity is counted in.
pub const STEPS: u8 = 8;

/// A node's state as its record tells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeState {
    /// Serving and taking new clients.
    Up,
    /// Moving its clients away; takes no new ones.
    Draining,
    /// Gone (its will, or its shutdown, said so).
    Down,
    /// A state this version does not know; never chosen.
    #[serde(other)]
    Unknown,
}

/// The JSON record a node publishes retained at `$cluster/nodes/<node-id>`:
/// `{"node":"n1","advertise":"10.0.0.1:1883","connections":12,"capacity":10000,"level":8,
/// "msgs_in":3,"msgs_out":5,"ts":1764650000000,"state":"up"}`.
///
/// Unknown fields are ignored when reading; `connections`, `capacity`, `msgs_in`,
/// `msgs_out` read as 0 and `level` as absent when missing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    /// The node id (the broker's node id, the last level of the topic).
    pub node: String,
    /// What clients are told to connect to: `host:port`.
    pub advertise: String,
    /// Open client connections.
    #[serde(default)]
    pub connections: u64,
    /// How many connections the node is meant to carry.
    #[serde(default)]
    pub capacity: u64,
    /// The node's spare capacity in steps of `capacity / STEPS`, with hysteresis (see
    /// [`level`]); computed from `connections` and `capacity` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<u8>,
    /// Messages received from clients per second.
    #[serde(default)]
    pub msgs_in: u64,
    /// Messages sent to clients per second.
    #[serde(default)]
    pub msgs_out: u64,
    /// When the record was made, Unix milliseconds.
    pub ts: u64,
    /// Up, draining or down.
    pub state: NodeState,
}

impl NodeRecord {
    /// The JSON text published on the topic.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Reads a record from a PUBLISH payload; `None` when it is not one.
    pub fn from_payload(payload: &[u8]) -> Option<NodeRecord> {
        serde_json::from_slice(payload).ok()
    }

    /// Whether the node takes clients (state `up`).
    pub fn is_up(&self) -> bool {
        self.state == NodeState::Up
    }

    /// Whether the record is older than `max_age_ms` at `now_ms` (a node that stopped
    /// publishing without its will reaching us).
    pub fn is_stale(&self, now_ms: u64, max_age_ms: u64) -> bool {
        now_ms.saturating_sub(self.ts) > max_age_ms
    }

    /// The level used for assignment: the published one, else computed without history.
    pub fn weight_level(&self) -> u8 {
        match self.level {
            Some(l) if l <= STEPS => l,
            _ => level(self.connections, self.capacity, None),
        }
    }

    /// Connections per capacity as an exact fraction (numerator, denominator); a node with
    /// no capacity counts as infinitely loaded.
    fn load(&self) -> (u128, u128) {
        if self.capacity == 0 {
            (1, 0)
        } else {
            (u128::from(self.connections), u128::from(self.capacity))
        }
    }
}

/// The topic of node `node`'s record.
pub fn node_topic(node: &str) -> String {
    format!("{NODES_PREFIX}{node}")
}

/// The topic of client `client_id`'s pin.
pub fn assign_topic(client_id: &str) -> String {
    format!("{ASSIGN_PREFIX}{client_id}")
}

/// The topic of node `node`'s drain order.
pub fn drain_topic(node: &str) -> String {
    format!("{DRAIN_PREFIX}{node}")
}

/// Whether `id` can name a node in a topic level: non-empty, no `/`, `+`, `#` or NUL.
pub fn valid_node_id(id: &str) -> bool {
    !id.is_empty() && !id.contains(['/', '+', '#', '\0'])
}

/// Reads a pin payload: the node id as UTF-8, surrounding whitespace ignored; `None` for an
/// empty payload (no pin) or one that is not a node id.
pub fn parse_pin(payload: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(payload).ok()?.trim();
    valid_node_id(text).then(|| text.to_owned())
}

/// A node's spare capacity in `STEPS` coarse steps, with hysteresis.
///
/// Without history the level is `ceil(STEPS × spare / capacity)`: 8 for an idle node, 1 for
/// one with any room left below an eighth, 0 for a full one (or one with no capacity).
/// With the `previous` level `p`, the level stays `p` while the spare fraction is within
/// half a step beyond either edge of `p`'s band, i.e. in `[(p−1)/8 − 1/16, p/8 + 1/16]`;
/// only beyond that does it take the new value. So a load wobbling around an edge never
/// flips the level back and forth.
pub fn level(connections: u64, capacity: u64, previous: Option<u8>) -> u8 {
    if capacity == 0 {
        return 0;
    }
    let cap = i128::from(capacity);
    let spare = cap - i128::from(connections).min(cap);
    let steps = i128::from(STEPS);
    if let Some(p) = previous.filter(|p| *p <= STEPS) {
        let p = i128::from(p);
        // 16·spare within [(2(p−1) − 1)·cap, (2p + 1)·cap]
        let sixteen = 2 * steps * spare;
        if sixteen >= (2 * (p - 1) - 1) * cap && sixteen <= (2 * p + 1) * cap {
            return u8::try_from(p).unwrap_or(0);
        }
    }
    let raw = (steps * spare + cap - 1) / cap;
    u8::try_from(raw.clamp(0, steps)).unwrap_or(0)
}

/// The node `client_id` belongs to among `nodes`.
///
/// A `pin` (the client's `$cluster/assign/<id>` payload) wins when it names an up node.
/// Otherwise weighted rendezvous hashing over the up nodes: each node scores
/// `weight / −ln(h)`, with `h` in (0, 1) a fixed hash of the client id and node id
/// (FNV-1a 64 then the SplitMix64 finaliser), and the highest score wins (ties: the lower
/// node id). A node's weight is `capacity × level` ([`NodeRecord::weight_level`]), so
/// clients spread in proportion to spare capacity; when every up node is full (level 0) the
/// weight is `capacity` alone. Scaling every weight alike moves nobody, and a node joining
/// or leaving moves only the clients it wins or held. `None` when no node is up.
pub fn assign<'a, I>(client_id: &str, pin: Option<&str>, nodes: I) -> Option<&'a NodeRecord>
where
    I: IntoIterator<Item = &'a NodeRecord>,
{
    let mut best: Option<(f64, &NodeRecord)> = None;
    let mut best_full: Option<(f64, &NodeRecord)> = None;
    for n in nodes.into_iter().filter(|n| n.is_up()) {
        if pin == Some(n.node.as_str()) {
            return Some(n);
        }
        let strength = -ln(unit_hash(client_id, &n.node));
        let cap = n.capacity as f64;
        let weight = cap * f64::from(n.weight_level());
        consider(&mut best, weight / strength, n);
        consider(&mut best_full, cap / strength, n);
    }
    best.or(best_full).map(|(_, n)| n)
}

/// Keeps `n` as the best when its score beats the current one (ties: lower node id).
fn consider<'a>(best: &mut Option<(f64, &'a NodeRecord)>, score: f64, n: &'a NodeRecord) {
    if score.is_nan() || score <= 0.0 {
        return;
    }
    let better = match best {
        None => true,
        Some((s, b)) => score > *s || (score == *s && n.node < b.node),
    };
    if better {
        *best = Some((score, n));
    }
}

/// The up node with the lowest connections per capacity (ties: the lower node id); what
/// the name service and Server Reference name to a client that knows no node. `None` when
/// no node is up.
pub fn least_loaded<'a, I>(nodes: I) -> Option<&'a NodeRecord>
where
    I: IntoIterator<Item = &'a NodeRecord>,
{
    nodes.into_iter().filter(|n| n.is_up()).min_by(|a, b| {
        let ((an, ad), (bn, bd)) = (a.load(), b.load());
        (an * bd).cmp(&(bn * ad)).then_with(|| a.node.cmp(&b.node))
    })
}

/// FNV-1a 64 over `client_id`, a 0xff separator (never in UTF-8) and `node`, then the
/// SplitMix64 finaliser, mapped to the open interval (0, 1).
fn unit_hash(client_id: &str, node: &str) -> f64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut h = OFFSET;
    let bytes = client_id
        .as_bytes()
        .iter()
        .chain(std::iter::once(&0xffu8))
        .chain(node.as_bytes());
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(PRIME);
    }
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^= h >> 31;
    // 53 bits plus a half: never 0, never 1.
    ((h >> 11) as f64 + 0.5) / (1u64 << 53) as f64
}

/// Natural logarithm of `x` > 0 by basic IEEE operations only (correctly rounded everywhere),
/// so every platform computes the same bits: `x = m·2^e` with `m` in [√½, √2], then
/// `ln m = 2·atanh((m−1)/(m+1))` by its series.
fn ln(x: f64) -> f64 {
    const LN_2: f64 = std::f64::consts::LN_2;
    const SQRT_2: f64 = std::f64::consts::SQRT_2;
    let bits = x.to_bits();
    let mut e = ((bits >> 52) & 0x7ff) as i64 - 1023;
    let mut m = f64::from_bits((bits & 0x000f_ffff_ffff_ffff) | (1023u64 << 52));
    if m > SQRT_2 {
        m /= 2.0;
        e += 1;
    }
    let z = (m - 1.0) / (m + 1.0);
    let z2 = z * z;
    let mut term = z;
    let mut sum = 0.0;
    for k in 0..14 {
        sum += term / f64::from(2 * k + 1);
        term *= z2;
    }
    e as f64 * LN_2 + 2.0 * sum
}

#[cfg(test)]
#[path = "cluster_tests.rs"]
mod tests;
