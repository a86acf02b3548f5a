//! The cluster service against the fake host: its record, what it learns, the admission
//! rule, moves at the configured rate, draining and the rebalancer (docs/cluster.md).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use canopy_model::cluster::{NodeRecord, NodeState, assign_topic, drain_topic, node_topic};
use canopy_proto::Protocol;

use super::*;
use crate::config::{ClusterConfig, ClusterPolicy, Config};
use crate::services::testing::{FakeHost, fire_due, message, offer};

fn config(edit: impl FnOnce(&mut ClusterConfig)) -> Config {
    let mut c = Config::ephemeral();
    c.node_id = "n1".into();
    let mut cluster = ClusterConfig {
        capacity: 100,
        move_rate: 10,
        ..ClusterConfig::default()
    };
    edit(&mut cluster);
    c.cluster = Some(cluster);
    c
}

struct Node {
    host: FakeHost,
    service: ClusterService,
    book: Arc<ClusterBook>,
}

fn start(edit: impl FnOnce(&mut ClusterConfig)) -> Node {
    start_with(FakeHost::new(), edit)
}

fn start_with(mut host: FakeHost, edit: impl FnOnce(&mut ClusterConfig)) -> Node {
    let config = config(edit);
    let book = Arc::new(ClusterBook::new(&config, "n1.example:1883").unwrap());
    let mut service = ClusterService::new(
        &config,
        book.clone(),
        Arc::new(Metrics::default()),
        host.now(),
    )
    .unwrap();
    service.on_start(&mut host);
    Node {
        host,
        service,
        book,
    }
}

fn record(node: &str, connections: u64, state: NodeState) -> NodeRecord {
    NodeRecord {
        node: node.into(),
        advertise: format!("{node}.example:1883"),
        connections,
        capacity: 100,
        level: None,
        msgs_in: 0,
        msgs_out: 0,
        ts: 1,
        state,
    }
}

impl Node {
    /// A peer's record arrives through the link.
    fn peer(&mut self, r: &NodeRecord) {
        let link = self.host.connect("cluster-n2-remote", false, Protocol::V5);
        let m = message(&node_topic(&r.node), r.to_json().as_bytes());
        offer(&mut self.service, &mut self.host, Some(&link), &m);
    }

    /// A retained message arrives from a client or link.
    fn put(&mut self, topic: &str, payload: &str) {
        let m = message(topic, payload.as_bytes());
        offer(&mut self.service, &mut self.host, None, &m);
    }

    fn connect(&mut self, id: &str, protocol: Protocol) {
        let info = self.host.connect(id, false, protocol);
        self.service.on_connect(&mut self.host, &info, false);
    }

    /// Advances the clock in 50 ms steps, firing what is due.
    fn run_for(&mut self, d: Duration) {
        let end = self.host.now() + d;
        while self.host.now() < end {
            self.host.advance(Duration::from_millis(50));
            fire_due(&mut self.service, &mut self.host);
        }
    }

    fn own(&self) -> NodeRecord {
        let payload = self.host.retained_payload("$cluster/nodes/n1").unwrap();
        NodeRecord::from_payload(&payload).unwrap()
    }
}

#[test]
fn the_node_publishes_its_record_retained_at_start_and_every_interval() {
    let mut n = start(|c| c.load_interval = Duration::from_secs(2));
    let own = n.own();
    assert_eq!(
        (own.node.as_str(), own.advertise.as_str(), own.capacity),
        ("n1", "n1.example:1883", 100)
    );
    assert_eq!(
        (own.state, own.connections, own.level),
        (NodeState::Up, 0, Some(8))
    );
    n.connect("a", Protocol::V5);
    n.connect("b", Protocol::V311);
    n.connect("bridge-local", Protocol::V5);
    n.run_for(Duration::from_millis(1900));
    assert_eq!(n.host.published_to("$cluster/nodes/n1").len(), 1);
    n.run_for(Duration::from_millis(200));
    assert_eq!(n.host.published_to("$cluster/nodes/n1").len(), 2);
    assert_eq!(n.own().connections, 2, "links are not counted");
}

#[test]
fn records_of_other_nodes_fill_the_book_and_go_down_when_they_stop() {
    let mut n = start(|c| c.load_interval = Duration::from_secs(1));
    n.peer(&record("n2", 10, NodeState::Up));
    let names: Vec<String> = n.book.nodes().into_iter().map(|r| r.node).collect();
    assert_eq!(names, ["n1", "n2"]);
    n.run_for(Duration::from_secs(5));
    assert_eq!(n.book.nodes()[1].state, NodeState::Up, "6 s at least");
    n.run_for(Duration::from_secs(2));
    assert_eq!(n.book.nodes()[1].state, NodeState::Down);
    n.peer(&record("n2", 10, NodeState::Up));
    assert_eq!(n.book.nodes()[1].state, NodeState::Up);
}

#[test]
fn records_read_back_at_start_and_a_mismatched_record_is_ignored() {
    let mut host = FakeHost::new();
    host.set_retained(
        (*message(
            &node_topic("n2"),
            record("n2", 0, NodeState::Up).to_json().as_bytes(),
        ))
        .clone(),
    );
    host.set_retained(
        (*message(
            &node_topic("n3"),
            record("zz", 0, NodeState::Up).to_json().as_bytes(),
        ))
        .clone(),
    );
    host.set_retained((*message(&assign_topic("dev/7"), b"n2")).clone());
    let n = start_with(host, |_| {});
    let names: Vec<String> = n.book.nodes().into_iter().map(|r| r.node).collect();
    assert_eq!(names, ["n1", "n2"]);
    assert_eq!(n.book.pin("dev/7").as_deref(), Some("n2"));
}

#[test]
fn a_peer_saying_this_node_is_down_gets_an_answer_at_once() {
    let mut n = start(|c| c.load_interval = Duration::from_secs(60));
    n.peer(&record("n1", 0, NodeState::Down));
    n.run_for(Duration::from_millis(100));
    assert_eq!(n.host.published_to("$cluster/nodes/n1").len(), 2);
    assert_eq!(n.own().state, NodeState::Up);
}

#[test]
fn admission_redirects_5_clients_assigned_elsewhere_and_serves_the_rest() {
    let mut n = start(|_| {});
    n.peer(&record("n2", 0, NodeState::Up));
    n.put(&assign_topic("far"), "n2");
    n.put(&assign_topic("near"), "n1");
    let admit = |id: &str, p| n.book.admit(id, false, p, None);
    assert!(
        matches!(admit("far", Protocol::V5), Admission::Redirect(r) if r.advertise == "n2.example:1883")
    );
    assert_eq!(admit("near", Protocol::V5), Admission::Local);
    assert_eq!(
        admit("far", Protocol::V311),
        Admission::Local,
        "no proxy: served here"
    );
    assert_eq!(
        admit("far-local", Protocol::V5),
        Admission::Local,
        "links stay"
    );
    n.book.set_proxying(true);
    assert!(matches!(
        n.book.admit("far", false, Protocol::V311, None),
        Admission::Proxy(_)
    ));
    // An id the broker assigns stays while this node is up.
    assert_eq!(n.book.admit("", true, Protocol::V5, None), Admission::Local);
    // A pin to a down node falls back to hashing over the live ones.
    n.peer(&record("n2", 0, NodeState::Down));
    assert_eq!(
        n.book.admit("far", false, Protocol::V5, None),
        Admission::Local
    );
}

#[test]
fn the_accept_policy_serves_everyone_here() {
    let mut n = start(|c| c.policy = ClusterPolicy::Accept);
    n.peer(&record("n2", 0, NodeState::Up));
    n.connect("far", Protocol::V5);
    n.put(&assign_topic("far"), "n2");
    assert_eq!(
        n.book.admit("far", false, Protocol::V5, None),
        Admission::Local
    );
    n.run_for(Duration::from_secs(1));
    assert!(n.host.moved.is_empty());
}

#[test]
fn a_pin_moving_a_connected_client_sends_it_to_its_node() {
    let mut n = start(|_| {});
    n.peer(&record("n2", 0, NodeState::Up));
    n.connect("dev", Protocol::V5);
    n.connect("old", Protocol::V311);
    n.put(&assign_topic("dev"), "n1");
    n.put(&assign_topic("old"), "n2");
    n.run_for(Duration::from_millis(200));
    assert!(
        n.host.moved.is_empty(),
        "pinned here; 3.1.1 without proxy stays"
    );
    n.put(&assign_topic("dev"), "n2");
    n.run_for(Duration::from_millis(200));
    assert_eq!(
        n.host.moved,
        [("dev".to_owned(), "n2.example:1883".to_owned())]
    );
}

#[test]
fn draining_moves_every_client_at_the_move_rate_and_says_so_in_the_record() {
    let mut n = start(|c| {
        c.move_rate = 10;
        c.load_interval = Duration::from_secs(1);
    });
    n.peer(&record("n2", 0, NodeState::Up));
    for i in 0..40 {
        n.connect(&format!("c{i}"), Protocol::V5);
    }
    n.put(&drain_topic("n1"), "drain");
    assert_eq!(n.own().state, NodeState::Draining);
    n.run_for(Duration::from_secs(1));
    let after_1s = n.host.moved.len();
    assert!(
        (9..=12).contains(&after_1s),
        "{after_1s} in the first second"
    );
    n.run_for(Duration::from_secs(2));
    assert!(
        (28..=33).contains(&n.host.moved.len()),
        "{}",
        n.host.moved.len()
    );
    assert!(n.host.moved.iter().all(|(_, r)| r == "n2.example:1883"));
    // New connections go elsewhere too, and the order can be taken back.
    assert!(matches!(
        n.book.admit("new", false, Protocol::V5, None),
        Admission::Redirect(_)
    ));
    n.put(&drain_topic("n1"), "");
    assert_eq!(n.own().state, NodeState::Up);
    let moved = n.host.moved.len();
    n.run_for(Duration::from_secs(2));
    assert_eq!(n.host.moved.len(), moved, "moves stop with the order");
}

#[test]
fn a_draining_node_with_nowhere_to_send_keeps_its_clients() {
    let mut n = start(|_| {});
    n.connect("dev", Protocol::V5);
    n.put(&drain_topic("n1"), "drain");
    n.run_for(Duration::from_secs(1));
    assert!(n.host.moved.is_empty());
    // A node comes up: now they go.
    n.peer(&record("n2", 0, NodeState::Up));
    n.run_for(Duration::from_millis(300));
    assert_eq!(n.host.moved.len(), 1);
}

#[test]
fn drain_orders_for_other_nodes_are_not_obeyed_here() {
    let mut n = start(|_| {});
    n.put(&drain_topic("n2"), "drain");
    assert_eq!(n.own().state, NodeState::Up);
}

#[test]
fn the_rebalancer_repins_clients_of_a_down_node_to_live_ones() {
    let mut n = start(|c| {
        c.rebalance = true;
        c.load_interval = Duration::from_secs(1);
    });
    n.peer(&record("n2", 0, NodeState::Up));
    n.peer(&record("n3", 0, NodeState::Up));
    for i in 0..5 {
        n.put(&assign_topic(&format!("c{i}")), "n2");
    }
    n.put(&assign_topic("stay"), "n3");
    n.run_for(Duration::from_millis(1100));
    assert!(
        n.host.published_to(&assign_topic("c0")).is_empty(),
        "n2 is up"
    );
    n.peer(&record("n2", 0, NodeState::Down));
    n.run_for(Duration::from_millis(1100));
    for i in 0..5 {
        let pin = n.book.pin(&format!("c{i}")).unwrap();
        assert!(pin == "n1" || pin == "n3", "{pin}");
        assert_eq!(
            n.host.published_to(&assign_topic(&format!("c{i}"))).len(),
            1
        );
    }
    assert!(n.host.published_to(&assign_topic("stay")).is_empty());
}

#[test]
fn a_shed_request_pins_the_fewest_unpinned_clients_to_the_named_nodes() {
    let mut n = start(|_| {});
    n.peer(&record("n2", 0, NodeState::Up));
    for id in ["a", "b", "c"] {
        n.connect(id, Protocol::V5);
    }
    n.put(&assign_topic("a"), "n1");
    n.put("$cluster/rebalance/n2", r#"{"move":5,"to":["n1"]}"#);
    n.put("$cluster/rebalance/n1", r#"{"move":1,"to":["n2","n1"]}"#);
    // Only `b` (the first unpinned one) is pinned, to n2 (n1 itself is skipped).
    assert_eq!(n.host.published_to(&assign_topic("b")), [Bytes::from("n2")]);
    assert!(n.host.published_to(&assign_topic("c")).is_empty());
    // The pin reaches the service as any pin does, and the client moves.
    let pin = n
        .host
        .take_published()
        .into_iter()
        .find(|m| m.topic.as_str() == "$cluster/assign/b")
        .unwrap();
    offer(&mut n.service, &mut n.host, None, &Arc::new(pin));
    n.run_for(Duration::from_millis(200));
    assert_eq!(
        n.host.moved,
        [("b".to_owned(), "n2.example:1883".to_owned())]
    );
}

#[test]
fn the_rebalancer_asks_an_overloaded_node_to_shed_once_per_cooldown() {
    let mut n = start(|c| {
        c.rebalance = true;
        c.move_rate = 1000;
        c.load_interval = Duration::from_secs(1);
    });
    n.peer(&record("n2", 90, NodeState::Up));
    n.peer(&record("n3", 10, NodeState::Up));
    // The first tick only sees the counts; the next, finding them unchanged, acts.
    n.run_for(Duration::from_millis(1100));
    assert!(
        n.host.published_to("$cluster/rebalance/n2").is_empty(),
        "not settled yet"
    );
    n.run_for(Duration::from_millis(1000));
    let asks = n.host.published_to("$cluster/rebalance/n2");
    assert_eq!(asks.len(), 1, "{asks:?}");
    let shed: serde_json::Value = serde_json::from_slice(&asks[0]).unwrap();
    // mean 100/300; bound for n2: 1.2 × 100/300 × 100 = 40, so 50 go.
    assert_eq!(shed["move"], 50);
    assert_eq!(shed["to"], serde_json::json!(["n1", "n3"]));
    n.peer(&record("n2", 90, NodeState::Up));
    n.peer(&record("n3", 10, NodeState::Up));
    n.run_for(Duration::from_secs(1));
    assert_eq!(
        n.host.published_to("$cluster/rebalance/n2").len(),
        1,
        "cool-down"
    );
}
