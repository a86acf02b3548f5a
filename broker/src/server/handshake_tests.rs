//! The CONNECT decision, without sockets.

use canopy_proto::{Connect, Protocol, QoS, ReasonCode, TopicName, Will};

use super::{Refusal, connack, validate};
use crate::config::Config;
use crate::services::cluster::{Admission, ClusterBook};
use canopy_model::cluster::NodeRecord;

fn connect(protocol: Protocol, id: &str, clean: bool) -> Connect {
    Connect {
        protocol: Some(protocol),
        clean_start: clean,
        keep_alive: 30,
        client_id: id.to_string(),
        will: None,
        username: None,
        password: None,
        properties: Default::default(),
    }
}

fn refused(c: &Connect, cfg: &Config, anonymous: bool) -> Refusal {
    match validate(c, cfg, anonymous, 0, || 7) {
        Err(r) => r,
        Ok(a) => panic!("accepted {:?}", a.client_id),
    }
}

#[test]
fn empty_client_id_with_persistent_311_session_is_refused() {
    // [MQTT-3.1.3-8]
    let cfg = Config::ephemeral();
    let r = refused(&connect(Protocol::V311, "", false), &cfg, true);
    assert_eq!(r.reason, ReasonCode::CLIENT_IDENTIFIER_NOT_VALID);
    assert!(validate(&connect(Protocol::V311, "", true), &cfg, true, 0, || 7).is_ok());
    let r = refused(&connect(Protocol::V31, "", true), &cfg, true);
    assert_eq!(r.reason, ReasonCode::CLIENT_IDENTIFIER_NOT_VALID);
}

#[test]
fn empty_client_id_of_v5_gets_an_assigned_identifier() {
    // [MQTT-3.1.3-6], [MQTT-3.2.2-16]
    let cfg = Config::ephemeral();
    let a = validate(&connect(Protocol::V5, "", true), &cfg, true, 0, || 7).unwrap();
    let assigned = a.assigned.clone().unwrap();
    assert_eq!(&*a.client_id, assigned.as_str());
    let ack = connack(&a, &cfg.limits, false, false);
    assert_eq!(ack.properties.assigned_client_identifier, Some(assigned));
}

#[test]
fn anonymous_clients_are_refused_where_anonymous_access_is_off() {
    let cfg = Config::ephemeral();
    let r = refused(&connect(Protocol::V5, "dev", true), &cfg, false);
    assert_eq!(r.reason, ReasonCode::NOT_AUTHORIZED);
    assert_eq!(r.protocol, Protocol::V5);
}

#[test]
fn too_many_connections_is_quota_exceeded_for_v5_and_unavailable_for_311() {
    let mut cfg = Config::ephemeral();
    cfg.limits.max_connections = 2;
    let r = validate(&connect(Protocol::V5, "a", true), &cfg, true, 3, || 0).unwrap_err();
    assert_eq!(r.reason, ReasonCode::QUOTA_EXCEEDED);
    let r = validate(&connect(Protocol::V311, "a", true), &cfg, true, 3, || 0).unwrap_err();
    assert_eq!(r.reason, ReasonCode::SERVER_UNAVAILABLE);
}

#[test]
fn will_above_maximum_qos_is_refused() {
    // [MQTT-3.2.2-12]
    let mut cfg = Config::ephemeral();
    cfg.limits.maximum_qos = 1;
    let mut c = connect(Protocol::V5, "dev", true);
    c.will = Some(Will {
        topic: TopicName::new("w").unwrap(),
        payload: Default::default(),
        qos: QoS::ExactlyOnce,
        retain: false,
        properties: Default::default(),
    });
    assert_eq!(
        refused(&c, &cfg, true).reason,
        ReasonCode::QOS_NOT_SUPPORTED
    );
}

#[test]
fn keep_alive_above_the_maximum_is_lowered_and_announced_to_v5() {
    // [MQTT-3.2.2-21]
    let mut cfg = Config::ephemeral();
    cfg.limits.max_keep_alive = 10;
    let a = validate(&connect(Protocol::V5, "dev", true), &cfg, true, 0, || 0).unwrap();
    assert_eq!(a.keep_alive, 10);
    assert_eq!(
        connack(&a, &cfg.limits, false, false)
            .properties
            .server_keep_alive,
        Some(10)
    );
}

#[test]
fn session_expiry_is_capped_and_the_cap_announced() {
    let mut cfg = Config::ephemeral();
    cfg.limits.max_session_expiry = 60;
    let mut c = connect(Protocol::V5, "dev", false);
    c.properties.session_expiry_interval = Some(3600);
    let a = validate(&c, &cfg, true, 0, || 0).unwrap();
    assert_eq!(a.session_expiry, 60);
    let ack = connack(&a, &cfg.limits, true, false);
    assert_eq!(ack.properties.session_expiry_interval, Some(60));
    assert!(ack.session_present);
    let a = validate(&connect(Protocol::V311, "dev", false), &cfg, true, 0, || 0).unwrap();
    assert_eq!(a.requested_expiry, u32::MAX);
}

#[test]
fn a_v5_connack_advertises_the_presence_agent_when_it_runs() {
    let cfg = Config::ephemeral();
    let agent = ("presence".to_owned(), "agent".to_owned());
    let a = validate(&connect(Protocol::V5, "dev", true), &cfg, true, 0, || 7).unwrap();
    assert!(
        connack(&a, &cfg.limits, false, true)
            .properties
            .user_properties
            .contains(&agent)
    );
    assert!(
        connack(&a, &cfg.limits, false, false)
            .properties
            .user_properties
            .is_empty()
    );
    let a = validate(&connect(Protocol::V311, "dev", true), &cfg, true, 0, || 7).unwrap();
    assert!(
        connack(&a, &cfg.limits, false, true)
            .properties
            .user_properties
            .is_empty()
    );
}

#[test]
fn a_311_keep_alive_above_the_maximum_is_refused_as_mosquitto_does() {
    // 3.1.1 cannot be told a Server Keep Alive: identifier rejected (return code 2).
    let mut cfg = Config::ephemeral();
    cfg.limits.max_keep_alive = 10;
    let mut c = connect(Protocol::V311, "dev", true);
    c.keep_alive = 30;
    assert_eq!(
        refused(&c, &cfg, true).reason,
        ReasonCode::CLIENT_IDENTIFIER_NOT_VALID
    );
    c.keep_alive = 0;
    assert_eq!(
        refused(&c, &cfg, true).reason,
        ReasonCode::CLIENT_IDENTIFIER_NOT_VALID
    );
    c.keep_alive = 10;
    assert_eq!(validate(&c, &cfg, true, 0, || 0).unwrap().keep_alive, 10);
    // Without a configured maximum nothing changes.
    c.keep_alive = 0;
    assert!(validate(&c, &Config::ephemeral(), true, 0, || 0).is_ok());
}

#[test]
fn without_a_cluster_every_connect_is_served_here() {
    let c = connect(Protocol::V5, "dev", true);
    assert_eq!(super::admission(&c, None), Admission::Local);
}

#[test]
fn a_client_assigned_elsewhere_is_redirected_with_the_server_reference() {
    // MQTT 5.0 §4.11: CONNACK 0x9C (Use another server) with Server Reference.
    let mut cfg = Config::ephemeral();
    cfg.node_id = "n1".into();
    cfg.cluster = Some(Default::default());
    let book = ClusterBook::new(&cfg, "127.0.0.1:1").unwrap();
    assert_eq!(
        super::admission(&connect(Protocol::V5, "dev", true), Some(&book)),
        Admission::Local,
        "the only node"
    );
    let n2 = NodeRecord::from_payload(
        br#"{"node":"n2","advertise":"10.0.0.2:1883","capacity":10000,"ts":1,"state":"up"}"#,
    )
    .unwrap();
    book.learn_for_tests(n2.clone(), Some(("dev", "n2")));
    let Admission::Redirect(to) =
        super::admission(&connect(Protocol::V5, "dev", true), Some(&book))
    else {
        panic!("not redirected");
    };
    let ack = super::redirect_connack(&to);
    assert_eq!(ack.reason, ReasonCode::USE_ANOTHER_SERVER);
    assert_eq!(
        ack.properties.server_reference.as_deref(),
        Some("10.0.0.2:1883")
    );
    assert!(!ack.session_present);
    // 3.1.1 cannot be redirected; without the proxy it is served here.
    assert_eq!(
        super::admission(&connect(Protocol::V311, "dev", true), Some(&book)),
        Admission::Local
    );
}
