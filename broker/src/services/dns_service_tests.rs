//! Unit tests of the name service (`<service>.<zone>`, SPEC §6): the responder with a
//! choice function standing in for the cluster view.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{Name, RData, RecordType};

use super::*;
use crate::config::DnsConfig;
use crate::services::status::StatusBook;

/// A responder for zone `canopy.local` whose name service names what `choice` holds.
fn responder(choice: &Arc<Mutex<Option<String>>>, ttl: Duration) -> Responder {
    let c = choice.clone();
    let names = NameService {
        label: "mqtt".to_owned(),
        ttl,
        pick: Arc::new(move || c.lock().unwrap().clone()),
    };
    Responder::new(&DnsConfig::default(), Arc::new(StatusBook::new())).with_names(Some(names))
}

fn choice(addr: Option<&str>) -> Arc<Mutex<Option<String>>> {
    Arc::new(Mutex::new(addr.map(str::to_owned)))
}

fn ask(r: &Responder, name: &str, qtype: RecordType) -> Message {
    let mut q = Message::new(7, MessageType::Query, OpCode::Query);
    q.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
    Message::from_vec(&r.answer(&q.to_vec().unwrap()).expect("an answer")).unwrap()
}

fn a_records(m: &Message) -> Vec<Ipv4Addr> {
    m.answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(A(ip)) => Some(*ip),
            _ => None,
        })
        .collect()
}

#[test]
fn service_name_answers_the_picked_node_with_a_short_ttl() {
    let c = choice(Some("10.77.0.3:1883"));
    let r = responder(&c, Duration::from_secs(60));
    let m = ask(&r, "mqtt.canopy.local.", RecordType::A);
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(m.metadata.authoritative);
    assert_eq!(a_records(&m), [Ipv4Addr::new(10, 77, 0, 3)]);
    assert_eq!(m.answers[0].ttl, 5, "capped at 5 s");
    let small = responder(&c, Duration::from_secs(2));
    assert_eq!(
        ask(&small, "mqtt.canopy.local.", RecordType::A).answers[0].ttl,
        2
    );
}

#[test]
fn the_answer_follows_the_choice_and_ignores_case() {
    let c = choice(Some("10.77.0.1:1883"));
    let r = responder(&c, Duration::from_secs(2));
    assert_eq!(
        a_records(&ask(&r, "MQTT.Canopy.Local.", RecordType::A)),
        [Ipv4Addr::new(10, 77, 0, 1)]
    );
    *c.lock().unwrap() = Some("10.77.0.4:1883".to_owned());
    assert_eq!(
        a_records(&ask(&r, "mqtt.canopy.local.", RecordType::ANY)),
        [Ipv4Addr::new(10, 77, 0, 4)]
    );
}

#[test]
fn no_live_node_is_nodata_never_servfail() {
    let c = choice(None);
    let r = responder(&c, Duration::from_secs(2));
    let m = ask(&r, "mqtt.canopy.local.", RecordType::A);
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(m.answers.is_empty());
    // A host name cannot go into an A record either.
    *c.lock().unwrap() = Some("broker.example:1883".to_owned());
    let m = ask(&r, "mqtt.canopy.local.", RecordType::A);
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(m.answers.is_empty());
}

#[test]
fn other_types_at_the_service_name_get_nodata() {
    let c = choice(Some("10.77.0.1:1883"));
    let r = responder(&c, Duration::from_secs(2));
    for qtype in [RecordType::AAAA, RecordType::TXT, RecordType::MX] {
        let m = ask(&r, "mqtt.canopy.local.", qtype);
        assert_eq!(m.metadata.response_code, ResponseCode::NoError, "{qtype}");
        assert!(m.answers.is_empty(), "{qtype}");
    }
}

#[test]
fn without_a_cluster_the_service_name_does_not_exist() {
    let r = Responder::new(&DnsConfig::default(), Arc::new(StatusBook::new()));
    let m = ask(&r, "mqtt.canopy.local.", RecordType::A);
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    // Names below or beside it are not the service.
    let c = choice(Some("10.77.0.1:1883"));
    let r = responder(&c, Duration::from_secs(2));
    for name in [
        "x.mqtt.canopy.local.",
        "mqtt2.canopy.local.",
        "mqtt.other.local.",
    ] {
        let m = ask(&r, name, RecordType::A);
        assert_eq!(m.metadata.response_code, ResponseCode::NXDomain, "{name}");
    }
    // The status names still work beside it.
    let m = ask(&r, "dev1.status.canopy.local.", RecordType::A);
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
}

#[test]
fn advertised_addresses_in_every_form() {
    assert_eq!(
        advertised_ipv4("10.0.0.1:1883"),
        Some(Ipv4Addr::new(10, 0, 0, 1))
    );
    assert_eq!(
        advertised_ipv4("10.0.0.1"),
        Some(Ipv4Addr::new(10, 0, 0, 1))
    );
    assert_eq!(
        advertised_ipv4("[::ffff:10.0.0.2]:1883"),
        Some(Ipv4Addr::new(10, 0, 0, 2))
    );
    assert_eq!(advertised_ipv4("[::1]:1883"), None);
    assert_eq!(advertised_ipv4("broker.example:1883"), None);
    assert_eq!(advertised_ipv4(""), None);
}
