//! The cluster service driven by the router on the fake clock: its record is retained, a
//! pin an admin writes moves the connected client with DISCONNECT 0x9C and the node's
//! Server Reference, and clients may not forge records (docs/cluster.md).

use std::time::Duration;

use canopy_model::cluster::{NodeRecord, NodeState};
use canopy_proto::{PublishProperties, QoS};

use super::{Conn, Harness};
use crate::config::ClusterConfig;
use crate::outbox::Outgoing;

fn cluster_harness() -> Harness {
    Harness::new(|c| {
        c.node_id = "n1".into();
        c.config_docs.admins = vec!["ops".into()];
        c.cluster = Some(ClusterConfig {
            load_interval: Duration::from_secs(1),
            ..ClusterConfig::default()
        });
    })
}

fn forwarded() -> PublishProperties {
    PublishProperties {
        user_properties: vec![(canopy_model::hops::HOPS_PROPERTY.into(), "@n2".into())],
        ..Default::default()
    }
}

#[test]
fn the_record_is_retained_and_a_subscriber_sees_it_every_interval() {
    let mut h = cluster_harness();
    h.connect("watch", Conn::default());
    h.subscribe("watch", "$cluster/nodes/+", QoS::AtMostOnce);
    let first = h.received("watch");
    assert_eq!(first.len(), 1, "the retained record");
    let r = NodeRecord::from_payload(&first[0].payload).unwrap();
    assert_eq!((r.node.as_str(), r.state), ("n1", NodeState::Up));
    h.advance(Duration::from_millis(1100));
    let next = h.received("watch");
    assert_eq!(next.len(), 1);
    let r = NodeRecord::from_payload(&next[0].payload).unwrap();
    assert_eq!(r.connections, 1);
}

#[test]
fn an_admins_pin_moves_a_connected_5_client_with_the_server_reference() {
    let mut h = cluster_harness();
    h.connect("link-remote", Conn::default());
    let n2 = r#"{"node":"n2","advertise":"10.0.0.2:1883","capacity":10000,"ts":1,"state":"up"}"#;
    h.publish(
        "link-remote",
        "$cluster/nodes/n2",
        n2,
        QoS::AtLeastOnce,
        true,
        forwarded(),
    );
    let nodes: Vec<String> = h
        .cluster
        .as_ref()
        .unwrap()
        .nodes()
        .into_iter()
        .map(|r| r.node)
        .collect();
    assert_eq!(nodes, ["n1", "n2"]);
    h.connect("dev", Conn::default());
    h.connect("ops", Conn::default());
    h.outgoing("dev");
    // A client may not pin; an admin may.
    h.publish(
        "dev",
        "$cluster/assign/dev",
        "n2",
        QoS::AtMostOnce,
        true,
        PublishProperties::default(),
    );
    h.advance(Duration::from_millis(300));
    assert!(h.outgoing("dev").is_empty());
    h.publish(
        "ops",
        "$cluster/assign/dev",
        "n2",
        QoS::AtMostOnce,
        true,
        PublishProperties::default(),
    );
    h.advance(Duration::from_millis(300));
    let out = h.outgoing("dev");
    assert!(
        out.iter()
            .any(|o| matches!(o, Outgoing::Moved(r) if r == "10.0.0.2:1883")),
        "{out:?}"
    );
}

#[test]
fn clients_cannot_forge_node_records() {
    let mut h = cluster_harness();
    h.connect("ops", Conn::default());
    let fake = r#"{"node":"n9","advertise":"evil:1","capacity":1,"ts":1,"state":"up"}"#;
    h.publish(
        "ops",
        "$cluster/nodes/n9",
        fake,
        QoS::AtMostOnce,
        true,
        PublishProperties::default(),
    );
    assert_eq!(h.cluster.as_ref().unwrap().nodes().len(), 1);
}
