//! Unit tests of the DNS status listener: queries built with hickory-proto, answers decoded
//! and checked, plus the label encoding and hostile datagrams.

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::{A, TXT};
use hickory_proto::rr::{DNSClass, Name, RData, RecordType};

use super::*;
use crate::config::DnsConfig;
use crate::services::status::{State, StatusBook, StatusDoc};

const GOOD: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 1);
const BAD: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);

fn doc(state: State) -> StatusDoc {
    StatusDoc {
        state,
        since: 1_700_000_000_000,
        node: "n1".into(),
        reason: "connected".into(),
    }
}

/// A responder for zone `canopy.local` with dev1 online, dev2 offline and an id that needs
/// encoding online.
fn responder() -> Responder {
    let book = Arc::new(StatusBook::new());
    book.set("dev1", doc(State::Online));
    book.set("dev2", doc(State::Offline));
    book.set("kitchen/sensor 1", doc(State::Online));
    Responder::new(&DnsConfig::default(), book)
}

fn query_bytes(name: &str, qtype: RecordType) -> Vec<u8> {
    let mut msg = Message::new(0x1234, MessageType::Query, OpCode::Query);
    msg.metadata.recursion_desired = true;
    msg.add_query(Query::query(wire_name(name), qtype));
    msg.to_vec().unwrap()
}

/// A name built from raw labels, so that names a strict parser refuses can be sent too.
fn wire_name(name: &str) -> Name {
    let labels: Vec<&[u8]> = name
        .split('.')
        .filter(|l| !l.is_empty())
        .map(str::as_bytes)
        .collect();
    let mut name = Name::from_labels(labels).unwrap();
    name.set_fqdn(true);
    name
}

fn ask(r: &Responder, name: &str, qtype: RecordType) -> Message {
    let answer = r.answer(&query_bytes(name, qtype)).expect("an answer");
    Message::from_vec(&answer).unwrap()
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

fn txt_text(m: &Message) -> Option<String> {
    m.answers.iter().find_map(|r| match &r.data {
        RData::TXT(txt) => Some(txt_join(txt)),
        _ => None,
    })
}

fn txt_join(txt: &TXT) -> String {
    txt.txt_data
        .iter()
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect()
}

#[test]
fn a_query_answers_good_ip_for_an_online_client() {
    let m = ask(&responder(), "dev1.status.canopy.local.", RecordType::A);
    assert_eq!(m.metadata.message_type, MessageType::Response);
    assert_eq!(m.metadata.id, 0x1234);
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(m.metadata.authoritative);
    assert!(m.metadata.recursion_desired, "RD is copied from the query");
    assert_eq!(m.queries.len(), 1, "the question is echoed");
    assert_eq!(a_records(&m), [GOOD]);
    assert_eq!(m.answers[0].ttl, 0);
}

#[test]
fn a_query_answers_bad_ip_for_offline_and_never_seen_clients() {
    let r = responder();
    assert_eq!(
        a_records(&ask(&r, "dev2.status.canopy.local.", RecordType::A)),
        [BAD]
    );
    let unseen = ask(&r, "nobody.status.canopy.local.", RecordType::A);
    assert_eq!(unseen.metadata.response_code, ResponseCode::NoError);
    assert_eq!(a_records(&unseen), [BAD]);
}

#[test]
fn answers_follow_the_latest_status() {
    let book = Arc::new(StatusBook::new());
    let r = Responder::new(&DnsConfig::default(), book.clone());
    book.set("dev1", doc(State::Online));
    assert_eq!(
        a_records(&ask(&r, "dev1.status.canopy.local.", RecordType::A)),
        [GOOD]
    );
    book.set("dev1", doc(State::Offline));
    assert_eq!(
        a_records(&ask(&r, "dev1.status.canopy.local.", RecordType::A)),
        [BAD]
    );
}

#[test]
fn txt_query_returns_the_status_document() {
    let r = responder();
    let m = ask(&r, "dev2.status.canopy.local.", RecordType::TXT);
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert_eq!(txt_text(&m), Some(doc(State::Offline).to_json()));
    let unseen = ask(&r, "nobody.status.canopy.local.", RecordType::TXT);
    assert_eq!(unseen.metadata.response_code, ResponseCode::NoError);
    assert!(unseen.answers.is_empty(), "never seen: NODATA");
}

#[test]
fn long_status_documents_are_split_into_txt_strings() {
    let book = Arc::new(StatusBook::new());
    let mut long = doc(State::Online);
    long.reason = "é".repeat(150);
    book.set("dev1", long.clone());
    let r = Responder::new(&DnsConfig::default(), book);
    let m = ask(&r, "dev1.status.canopy.local.", RecordType::TXT);
    let RData::TXT(txt) = &m.answers[0].data else {
        panic!("not a TXT record")
    };
    assert!(txt.txt_data.len() > 1);
    assert!(txt.txt_data.iter().all(|s| s.len() <= 255));
    assert_eq!(txt_join(txt), long.to_json());
}

#[test]
fn answers_too_large_for_udp_are_truncated() {
    let book = Arc::new(StatusBook::new());
    let mut long = doc(State::Online);
    long.reason = "x".repeat(600);
    book.set("dev1", long);
    let r = Responder::new(&DnsConfig::default(), book);
    let m = ask(&r, "dev1.status.canopy.local.", RecordType::TXT);
    assert!(
        m.metadata.truncation,
        "TC tells the resolver to retry over TCP"
    );
    assert!(m.answers.is_empty());
    assert_eq!(
        a_records(&ask(&r, "dev1.status.canopy.local.", RecordType::A)),
        [GOOD]
    );
}

#[test]
fn any_query_returns_a_and_txt() {
    let m = ask(&responder(), "dev1.status.canopy.local.", RecordType::ANY);
    assert_eq!(a_records(&m), [GOOD]);
    assert!(txt_text(&m).is_some());
}

#[test]
fn other_types_inside_the_zone_get_nodata() {
    let r = responder();
    for name in [
        "dev1.status.canopy.local.",
        "status.canopy.local.",
        "canopy.local.",
    ] {
        for qtype in [RecordType::AAAA, RecordType::MX, RecordType::SOA] {
            let m = ask(&r, name, qtype);
            assert_eq!(
                m.metadata.response_code,
                ResponseCode::NoError,
                "{name} {qtype}"
            );
            assert!(m.answers.is_empty(), "{name} {qtype}");
        }
    }
    let m = ask(&r, "status.canopy.local.", RecordType::A);
    assert!(m.answers.is_empty());
}

#[test]
fn names_outside_the_zone_get_nxdomain() {
    let r = responder();
    for name in [
        "example.com.",
        "dev1.status.canopy.example.",
        "local.",
        "dev1.status.xcanopy.local.",
        "other.canopy.local.",
        "dev1.other.canopy.local.",
        "a.dev1.status.canopy.local.",
        "-bad-.status.canopy.local.",
        "a_b.status.canopy.local.",
    ] {
        let m = ask(&r, name, RecordType::A);
        assert_eq!(m.metadata.response_code, ResponseCode::NXDomain, "{name}");
        assert!(m.answers.is_empty(), "{name}");
    }
}

#[test]
fn names_are_case_insensitive() {
    let r = responder();
    let m = ask(&r, "DEV1.Status.CANOPY.Local.", RecordType::A);
    assert_eq!(a_records(&m), [GOOD]);
    let book = Arc::new(StatusBook::new());
    book.set("Dev-A", doc(State::Online));
    let r = Responder::new(&DnsConfig::default(), book);
    assert_eq!(
        a_records(&ask(&r, "dev-a.status.canopy.local.", RecordType::A)),
        [GOOD]
    );
}

#[test]
fn client_ids_that_are_labels_are_used_verbatim() {
    for id in ["dev1", "Dev-1", "a", &"z".repeat(63), "0-0"] {
        assert_eq!(client_id_to_label(id), id);
    }
}

#[test]
fn other_client_ids_are_base32_encoded_after_x_dashes() {
    assert_eq!(
        client_id_to_label("kitchen/sensor 1"),
        format!("x--{}", base32_encode(b"kitchen/sensor 1"))
    );
    assert_eq!(client_id_to_label("a.b"), "x--mexge");
    // The examples of the module docs and docs/status.md.
    assert_eq!(
        client_id_to_label("kitchen/sensor 1"),
        "x--nnuxiy3imvxc643fnzzw64rage"
    );
    assert_eq!(client_id_to_label("x--abc"), "x--paws2ylcmm");
    assert_eq!(client_id_to_label(""), "x--");
    for id in [
        "-a",
        "a-",
        "a_b",
        "héllo",
        "x--abc",
        "X--abc",
        &"z".repeat(64),
    ] {
        let label = client_id_to_label(id);
        assert!(label.starts_with("x--"), "{id:?} -> {label}");
        assert!(
            label
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        );
    }
}

#[test]
fn base32_matches_rfc_4648_vectors() {
    // RFC 4648 §10, lower case, padding removed.
    for (plain, encoded) in [
        ("", ""),
        ("f", "my"),
        ("fo", "mzxq"),
        ("foo", "mzxw6"),
        ("foob", "mzxw6yq"),
        ("fooba", "mzxw6ytb"),
        ("foobar", "mzxw6ytboi"),
    ] {
        assert_eq!(base32_encode(plain.as_bytes()), encoded);
        assert_eq!(base32_decode(encoded.as_bytes()).unwrap(), plain.as_bytes());
        assert_eq!(
            base32_decode(encoded.to_uppercase().as_bytes()).unwrap(),
            plain.as_bytes()
        );
    }
    assert_eq!(base32_decode(b"mzxw6yz"), None, "non-zero trailing bits");
    assert_eq!(base32_decode(b"m"), None, "impossible length");
    assert_eq!(base32_decode(b"mz1q"), None, "outside the alphabet");
}

#[test]
fn encoded_labels_resolve_to_their_client() {
    let r = responder();
    let name = format!(
        "{}.status.canopy.local.",
        client_id_to_label("kitchen/sensor 1")
    );
    assert_eq!(a_records(&ask(&r, &name, RecordType::A)), [GOOD]);
    assert_eq!(
        a_records(&ask(&r, &name.to_uppercase(), RecordType::A)),
        [GOOD]
    );
    let garbled = "x--1111.status.canopy.local.";
    assert_eq!(
        ask(&r, garbled, RecordType::A).metadata.response_code,
        ResponseCode::NXDomain
    );
}

#[test]
fn long_client_ids_span_several_labels_and_round_trip() {
    let id = "building-7/floor-3/room-12/sensor/temperature/north-wall";
    let book = Arc::new(StatusBook::new());
    book.set(id, doc(State::Online));
    let r = Responder::new(&DnsConfig::default(), book);
    let label = client_id_to_label(id);
    assert!(label.contains('.'), "{label}");
    assert!(label.split('.').all(|l| l.len() <= 63));
    let m = ask(&r, &format!("{label}.status.canopy.local."), RecordType::A);
    assert_eq!(a_records(&m), [GOOD]);
}

#[test]
fn configured_zone_ips_and_ttl_are_used() {
    let book = Arc::new(StatusBook::new());
    book.set("dev1", doc(State::Online));
    let cfg = DnsConfig {
        zone: "devices.example.org".into(),
        good_ip: Ipv4Addr::new(10, 0, 0, 1),
        bad_ip: Ipv4Addr::new(10, 0, 0, 2),
        ttl: Duration::from_millis(5_900),
        ..DnsConfig::default()
    };
    let r = Responder::new(&cfg, book);
    let m = ask(&r, "dev1.status.devices.example.org.", RecordType::A);
    assert_eq!(a_records(&m), [Ipv4Addr::new(10, 0, 0, 1)]);
    assert_eq!(m.answers[0].ttl, 5);
    let m = ask(&r, "dev9.status.devices.example.org.", RecordType::A);
    assert_eq!(a_records(&m), [Ipv4Addr::new(10, 0, 0, 2)]);
    let m = ask(&r, "dev1.status.canopy.local.", RecordType::A);
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
}

#[test]
fn non_query_opcodes_and_foreign_classes_are_refused() {
    let r = responder();
    let mut msg = Message::new(7, MessageType::Query, OpCode::Update);
    msg.add_query(Query::query(
        Name::from_ascii("dev1.status.canopy.local.").unwrap(),
        RecordType::A,
    ));
    let m = Message::from_vec(&r.answer(&msg.to_vec().unwrap()).unwrap()).unwrap();
    assert_eq!(m.metadata.response_code, ResponseCode::Refused);
    assert!(m.answers.is_empty());

    let mut msg = Message::new(8, MessageType::Query, OpCode::Query);
    let mut q = Query::query(
        Name::from_ascii("dev1.status.canopy.local.").unwrap(),
        RecordType::A,
    );
    q.set_query_class(DNSClass::CH);
    msg.add_query(q);
    let m = Message::from_vec(&r.answer(&msg.to_vec().unwrap()).unwrap()).unwrap();
    assert_eq!(m.metadata.response_code, ResponseCode::Refused);
}

#[test]
fn garbage_with_a_readable_header_gets_formerr() {
    let r = responder();
    let mut bytes = query_bytes("dev1.status.canopy.local.", RecordType::A);
    bytes.truncate(bytes.len() - 3);
    let m = Message::from_vec(&r.answer(&bytes).unwrap()).unwrap();
    assert_eq!(m.metadata.response_code, ResponseCode::FormErr);
    assert_eq!(m.metadata.id, 0x1234);
    // A header announcing questions that are not there.
    let header_only = [0xab, 0xcd, 0x01, 0x00, 0x00, 0x05, 0, 0, 0, 0, 0, 0];
    let m = Message::from_vec(&r.answer(&header_only).unwrap()).unwrap();
    assert_eq!(m.metadata.response_code, ResponseCode::FormErr);
    assert_eq!(m.metadata.id, 0xabcd);
    // No question at all.
    let empty = Message::new(9, MessageType::Query, OpCode::Query)
        .to_vec()
        .unwrap();
    let m = Message::from_vec(&r.answer(&empty).unwrap()).unwrap();
    assert_eq!(m.metadata.response_code, ResponseCode::FormErr);
}

#[test]
fn short_datagrams_and_responses_are_dropped() {
    let r = responder();
    assert!(r.answer(&[]).is_none());
    assert!(r.answer(&[1, 2, 3]).is_none());
    assert!(r.answer(&[0; 11]).is_none());
    let mut response = Message::new(1, MessageType::Response, OpCode::Query);
    response.add_query(Query::query(
        Name::from_ascii("dev1.status.canopy.local.").unwrap(),
        RecordType::A,
    ));
    assert!(r.answer(&response.to_vec().unwrap()).is_none());
}

#[test]
fn arbitrary_bytes_never_panic() {
    let r = responder();
    let seed = query_bytes("dev1.status.canopy.local.", RecordType::TXT);
    let mut state = 0x2545_f491_4f6c_dd1du64;
    for round in 0..5_000 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let mut bytes = if round % 2 == 0 {
            seed.clone()
        } else {
            vec![0; (state % 64) as usize]
        };
        for (i, byte) in bytes.iter_mut().enumerate() {
            if (state >> (i % 64)) & 3 == 0 {
                *byte = (state >> ((i * 7) % 56)) as u8;
            }
        }
        let _ = r.answer(&bytes);
    }
}

#[test]
fn edns_queries_get_an_opt_record_back() {
    let mut msg = Message::new(3, MessageType::Query, OpCode::Query);
    msg.add_query(Query::query(
        Name::from_ascii("dev1.status.canopy.local.").unwrap(),
        RecordType::A,
    ));
    let mut edns = Edns::new();
    edns.set_max_payload(4096);
    msg.set_edns(edns);
    let m = Message::from_vec(&responder().answer(&msg.to_vec().unwrap()).unwrap()).unwrap();
    assert_eq!(a_records(&m), [GOOD]);
    assert_eq!(m.edns.map(|e| e.max_payload()), Some(1232));
}

#[tokio::test]
async fn serve_answers_over_udp() {
    let server = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = server.local_addr().unwrap();
    let book = Arc::new(StatusBook::new());
    book.set("dev1", doc(State::Online));
    let task = tokio::spawn(serve(server, DnsConfig::default(), book, None));
    let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    client.send_to(&[0xff; 3], addr).await.unwrap();
    client
        .send_to(
            &query_bytes("dev1.status.canopy.local.", RecordType::A),
            addr,
        )
        .await
        .unwrap();
    let mut buf = [0u8; 512];
    let (len, _) = tokio::time::timeout(Duration::from_secs(5), client.recv_from(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let m = Message::from_vec(&buf[..len]).unwrap();
    assert_eq!(
        a_records(&m),
        [GOOD],
        "the garbage before it was dropped, not fatal"
    );
    task.abort();
}
