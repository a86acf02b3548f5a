//! The assignment rule, the least-loaded choice and the level hysteresis as tables, and the
//! record's wire form (docs/cluster.md).

use super::*;

fn node(id: &str, connections: u64, capacity: u64, state: NodeState) -> NodeRecord {
    NodeRecord {
        node: id.into(),
        advertise: format!("{id}.example:1883"),
        connections,
        capacity,
        level: None,
        msgs_in: 0,
        msgs_out: 0,
        ts: 1,
        state,
    }
}

fn up(id: &str, connections: u64, capacity: u64) -> NodeRecord {
    node(id, connections, capacity, NodeState::Up)
}

fn owners(clients: usize, nodes: &[NodeRecord]) -> Vec<String> {
    (0..clients)
        .map(|i| {
            assign(&format!("client-{i}"), None, nodes)
                .map(|n| n.node.clone())
                .unwrap_or_default()
        })
        .collect()
}

#[test]
fn record_serialises_with_the_documented_field_names() {
    let mut r = up("n1", 12, 10_000);
    r.level = Some(8);
    r.advertise = "10.0.0.1:1883".into();
    r.msgs_in = 3;
    r.msgs_out = 5;
    r.ts = 1_764_650_000_000;
    assert_eq!(
        r.to_json(),
        r#"{"node":"n1","advertise":"10.0.0.1:1883","connections":12,"capacity":10000,"level":8,"msgs_in":3,"msgs_out":5,"ts":1764650000000,"state":"up"}"#
    );
    assert_eq!(NodeRecord::from_payload(r.to_json().as_bytes()), Some(r));
}

#[test]
fn record_reading_ignores_unknown_fields_and_defaults_counters() {
    let r = NodeRecord::from_payload(
        br#"{"node":"n","advertise":"h:1","ts":7,"state":"draining","future":{"x":1}}"#,
    );
    let r = r.unwrap();
    assert_eq!((r.connections, r.capacity, r.level), (0, 0, None));
    assert_eq!(r.state, NodeState::Draining);
}

#[test]
fn unknown_state_reads_but_is_never_up() {
    let r = NodeRecord::from_payload(br#"{"node":"n","advertise":"h:1","ts":7,"state":"asleep"}"#)
        .unwrap();
    assert_eq!(r.state, NodeState::Unknown);
    assert!(!r.is_up());
}

#[test]
fn payloads_missing_required_fields_are_not_records() {
    for text in [
        r#"{"advertise":"h:1","ts":7,"state":"up"}"#,
        r#"{"node":"n","ts":7,"state":"up"}"#,
        r#"{"node":"n","advertise":"h:1","state":"up"}"#,
        r#"{"node":"n","advertise":"h:1","ts":7}"#,
        r#"{"node":"n","advertise":"h:1","ts":-7,"state":"up"}"#,
        "",
        "not json",
    ] {
        assert_eq!(NodeRecord::from_payload(text.as_bytes()), None, "{text}");
    }
}

#[test]
fn staleness_is_age_beyond_the_limit() {
    let r = node("n", 0, 1, NodeState::Up);
    assert!(!r.is_stale(1001, 1000));
    assert!(r.is_stale(1002, 1000));
    assert!(
        !r.is_stale(0, 1000),
        "a clock behind the record is not stale"
    );
}

#[test]
fn topics_and_pins() {
    assert_eq!(node_topic("n1"), "$cluster/nodes/n1");
    assert_eq!(assign_topic("c"), "$cluster/assign/c");
    assert_eq!(drain_topic("n1"), "$cluster/drain/n1");
    assert_eq!(parse_pin(b" n2\n"), Some("n2".into()));
    for bad in [&b""[..], b"  ", b"a/b", b"+", b"#", b"\xff"] {
        assert_eq!(parse_pin(bad), None, "{bad:?}");
    }
}

#[test]
fn level_without_history_counts_spare_capacity_in_eighths() {
    // (connections, capacity, level)
    for (c, cap, want) in [
        (0, 800, 8),
        (99, 800, 8),
        (100, 800, 7),
        (101, 800, 7),
        (400, 800, 4),
        (699, 800, 2),
        (700, 800, 1),
        (799, 800, 1),
        (800, 800, 0),
        (900, 800, 0),
        (0, 0, 0),
        (0, 1, 8),
    ] {
        assert_eq!(level(c, cap, None), want, "{c}/{cap}");
    }
}

#[test]
fn level_keeps_its_previous_value_within_half_a_step_beyond_its_band() {
    // capacity 1600: a step is 200 spare, half a step 100. Level 4 is spare (600, 800].
    // (connections, previous, level)
    for (c, prev, want) in [
        (800, 4, 4),  // spare 800: top edge of 4
        (750, 4, 4),  // spare 850: within half a step above
        (700, 4, 4),  // spare 900: exactly half a step above: kept
        (699, 4, 5),  // spare 901: beyond, takes the raw level 5
        (1000, 4, 4), // spare 600: bottom edge of 4's band (raw 3)
        (1100, 4, 4), // spare 500: exactly half a step below: kept
        (1101, 4, 3), // spare 499: beyond
        (1100, 9, 3), // a previous level out of range is ignored
        (1600, 0, 0),
        (1500, 0, 0), // spare 100 = half a step: still 0
        (1499, 0, 1),
        (0, 8, 8),
        (300, 8, 8), // spare 1300 = 13/16: kept at 8
        (301, 8, 7),
    ] {
        assert_eq!(level(c, 1600, Some(prev)), want, "{c} from {prev}");
    }
}

#[test]
fn a_load_wobbling_around_an_edge_keeps_one_level() {
    let mut l = level(1000, 1600, None);
    let start = l;
    for c in [990, 1010, 980, 1020, 1000, 1050, 960] {
        l = level(c, 1600, Some(l));
        assert_eq!(l, start, "{c}");
    }
}

#[test]
fn the_published_level_is_used_when_present() {
    let mut r = up("n", 0, 800);
    assert_eq!(r.weight_level(), 8);
    r.level = Some(3);
    assert_eq!(r.weight_level(), 3);
    r.level = Some(200);
    assert_eq!(r.weight_level(), 8, "out of range: computed");
}

#[test]
fn assignment_is_the_fixed_rule_every_node_computes_alike() {
    // Pinned outputs: a change here changes every deployed cluster's assignments.
    let nodes = [up("a", 0, 100), up("b", 0, 100), up("c", 0, 100)];
    let got: Vec<String> = [
        "client-0", "client-1", "client-2", "client-3", "client-4", "client-5", "sensor/7", "",
    ]
    .iter()
    .map(|c| assign(c, None, &nodes).unwrap().node.clone())
    .collect();
    assert_eq!(got, GOLDEN);
    // Order of the table does not matter.
    let reversed = [nodes[2].clone(), nodes[1].clone(), nodes[0].clone()];
    assert_eq!(owners(500, &nodes), owners(500, &reversed));
}

const GOLDEN: [&str; 8] = ["a", "b", "a", "b", "b", "a", "a", "c"];

#[test]
fn the_logarithm_matches_the_platform_one() {
    for x in [
        1e-16,
        0.001,
        0.1,
        0.5,
        std::f64::consts::FRAC_1_SQRT_2,
        0.9,
        0.999_999,
        1.0 - 1e-15,
    ] {
        let (ours, std) = (ln(x), x.ln());
        assert!(
            (ours - std).abs() <= 4.0 * f64::EPSILON * std.abs().max(1e-300),
            "{x}: {ours} vs {std}"
        );
    }
    assert_eq!(ln(1.0), 0.0);
}

#[test]
fn equal_nodes_share_clients_evenly() {
    let nodes: Vec<_> = (0..4).map(|i| up(&format!("n{i}"), 0, 1000)).collect();
    let owners = owners(20_000, &nodes);
    for n in &nodes {
        let share = owners.iter().filter(|o| **o == n.node).count();
        assert!((4_500..=5_500).contains(&share), "{}: {share}", n.node);
    }
}

#[test]
fn shares_follow_capacity_at_equal_level() {
    let nodes = [up("small", 0, 1000), up("big", 0, 3000)];
    let owners = owners(20_000, &nodes);
    let small = owners.iter().filter(|o| *o == "small").count();
    assert!((4_500..=5_500).contains(&small), "{small}");
}

#[test]
fn adding_a_node_moves_about_one_in_n_and_only_to_it() {
    let mut nodes: Vec<_> = (0..4).map(|i| up(&format!("n{i}"), 0, 1000)).collect();
    let before = owners(20_000, &nodes);
    nodes.push(up("n4", 0, 1000));
    let after = owners(20_000, &nodes);
    let moved: Vec<_> = before.iter().zip(&after).filter(|(b, a)| b != a).collect();
    assert!((3_500..=4_500).contains(&moved.len()), "{}", moved.len());
    assert!(moved.iter().all(|(_, a)| *a == "n4"));
}

#[test]
fn removing_a_node_moves_only_its_clients() {
    let mut nodes: Vec<_> = (0..4).map(|i| up(&format!("n{i}"), 0, 1000)).collect();
    let before = owners(5_000, &nodes);
    nodes[2].state = NodeState::Down;
    let after = owners(5_000, &nodes);
    for (b, a) in before.iter().zip(&after) {
        if b != "n2" {
            assert_eq!(a, b);
        } else {
            assert_ne!(a, "n2");
        }
    }
}

#[test]
fn a_small_load_change_moves_nobody() {
    let mut nodes: Vec<_> = (0..3).map(|i| up(&format!("n{i}"), 500, 1600)).collect();
    for n in &mut nodes {
        n.level = Some(level(n.connections, n.capacity, None));
    }
    let before = owners(5_000, &nodes);
    // n1 gains 80 connections (less than half a step): its published level holds.
    nodes[1].connections += 80;
    nodes[1].level = Some(level(nodes[1].connections, 1600, nodes[1].level));
    assert_eq!(owners(5_000, &nodes), before);
}

#[test]
fn every_node_losing_a_step_together_moves_nobody() {
    let mut nodes: Vec<_> = (0..3).map(|i| up(&format!("n{i}"), 0, 1000)).collect();
    let before = owners(5_000, &nodes);
    for n in &mut nodes {
        n.level = Some(3);
    }
    assert_eq!(owners(5_000, &nodes), before);
}

#[test]
fn a_fuller_node_gets_fewer_new_clients() {
    let mut nodes = [up("a", 0, 800), up("b", 0, 800)];
    nodes[0].level = Some(2);
    let owners = owners(10_000, &nodes);
    let a = owners.iter().filter(|o| *o == "a").count();
    // weight 2 against 8: a fifth
    assert!((1_700..=2_300).contains(&a), "{a}");
}

#[test]
fn full_nodes_are_not_chosen_unless_every_node_is_full() {
    let nodes = [up("full", 800, 800), up("room", 0, 800)];
    assert!(owners(1_000, &nodes).iter().all(|o| o == "room"));
    let all_full = [up("x", 800, 800), up("y", 900, 800)];
    let owners = owners(1_000, &all_full);
    assert!(owners.iter().any(|o| o == "x") && owners.iter().any(|o| o == "y"));
}

#[test]
fn draining_down_and_unknown_nodes_are_never_chosen() {
    let nodes = [
        node("d", 0, 1000, NodeState::Draining),
        node("x", 0, 1000, NodeState::Down),
        node("u", 0, 1000, NodeState::Unknown),
        up("live", 999, 1000),
    ];
    assert!(owners(1_000, &nodes).iter().all(|o| o == "live"));
    assert_eq!(assign("c", Some("d"), &nodes).unwrap().node, "live");
    assert_eq!(least_loaded(&nodes).unwrap().node, "live");
    assert!(assign("c", None, &nodes[..3]).is_none());
    assert!(least_loaded(&nodes[..3]).is_none());
}

#[test]
fn a_pin_wins_when_its_node_is_up() {
    let nodes = [
        up("a", 0, 100),
        up("b", 100, 100),
        node("c", 0, 100, NodeState::Down),
    ];
    // b is full, still the pin wins.
    assert_eq!(assign("k", Some("b"), &nodes).unwrap().node, "b");
    // a pin to a down or unknown node falls back to hashing (a is the only one with room).
    assert_eq!(assign("k", Some("c"), &nodes).unwrap().node, "a");
    assert_eq!(assign("k", Some("zz"), &nodes).unwrap().node, "a");
}

#[test]
fn least_loaded_compares_connections_per_capacity_then_node_id() {
    // (nodes, expected)
    let cases: [(&[NodeRecord], &str); 5] = [
        (&[up("a", 50, 100), up("b", 40, 100)], "b"),
        (&[up("a", 50, 100), up("b", 90, 200)], "b"),
        (&[up("b", 10, 100), up("a", 20, 200)], "a"),
        (&[up("a", 0, 0), up("b", 999, 1000)], "b"),
        (&[up("a", 0, 0), up("b", 0, 0)], "a"),
    ];
    for (nodes, want) in cases {
        assert_eq!(least_loaded(nodes).unwrap().node, want, "{nodes:?}");
    }
}
