//! The CONNECT decision, without sockets.

use canopy_proto::{Connect, Protocol, QoS, ReasonCode, TopicName, Will};

use super::{Refusal, connack, validate};
use crate::config::Config;

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
fn will_with_more_user_properties_than_the_cap_is_refused() {
    let mut cfg = Config::ephemeral();
    cfg.limits.max_user_properties = 2;
    let mut c = connect(Protocol::V5, "dev", true);
    let mut will = Will {
        topic: TopicName::new("w").unwrap(),
        payload: Default::default(),
        qos: QoS::AtMostOnce,
        retain: false,
        properties: Default::default(),
    };
    will.properties.user_properties = vec![("a".into(), "1".into()); 3];
    c.will = Some(will);
    assert_eq!(refused(&c, &cfg, true).reason, ReasonCode::QUOTA_EXCEEDED);
    if let Some(w) = &mut c.will {
        w.properties.user_properties.truncate(2);
    }
    assert!(validate(&c, &cfg, true, 0, || 0).is_ok());
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
