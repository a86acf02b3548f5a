//! The DNS status listener end to end: an in-process broker with `[dns] listen` on a free UDP
//! port, MQTT clients connecting and leaving, and a real resolver (`dig`, from Debian's
//! `dnsutils`) asking `<client-id>.status.canopy.local`. Without `dig` the tests fail with the
//! install command, unless `CANOPY_SKIP_EXTERNAL=1` is set: then the same questions go through
//! a hickory-proto query, and a note says so.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use canopy_broker::config::Config;
use canopy_broker::services::dns::client_id_to_label;
use canopy_proto::{Disconnect, Packet};
use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use support::Client;
use tokio::net::UdpSocket;

const GOOD: &str = "127.0.0.1";
const BAD: &str = "127.0.0.2";

async fn start() -> (canopy_broker::BrokerHandle, SocketAddr) {
    let mut cfg = Config::ephemeral();
    cfg.dns.listen = Some(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)));
    let broker = canopy_broker::start(cfg).await.unwrap();
    let dns = broker.dns_addr().expect("the DNS listener is bound");
    assert_ne!(dns.port(), 0);
    (broker, dns)
}

/// Whether `dig` can be run. Missing, this fails with the install command unless
/// `CANOPY_SKIP_EXTERNAL=1` (README, "Tests") allows the hickory-proto fallback.
fn have_dig() -> bool {
    let found = std::process::Command::new("dig")
        .arg("-v")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found && std::env::var_os("CANOPY_SKIP_EXTERNAL").is_none_or(|v| v != "1") {
        panic!(
            "dig is not installed: apt-get install dnsutils \
             (or set CANOPY_SKIP_EXTERNAL=1 to ask through hickory-proto instead)"
        );
    }
    found
}

/// `dig @127.0.0.1 -p PORT NAME TYPE +short`, one line per answer.
async fn dig(server: SocketAddr, name: &str, qtype: &str) -> Vec<String> {
    let args = [
        format!("@{}", server.ip()),
        "-p".to_owned(),
        server.port().to_string(),
        name.to_owned(),
        qtype.to_owned(),
        "+short".to_owned(),
        "+time=2".to_owned(),
        "+tries=1".to_owned(),
    ];
    let out =
        tokio::task::spawn_blocking(move || std::process::Command::new("dig").args(&args).output())
            .await
            .unwrap()
            .unwrap();
    assert!(out.status.success(), "dig failed: {out:?}");
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// The same question through hickory-proto over UDP: the response message.
async fn hickory(server: SocketAddr, name: &str, qtype: RecordType) -> Message {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut q = Message::new(0x4242, MessageType::Query, OpCode::Query);
    q.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
    socket.send_to(&q.to_vec().unwrap(), server).await.unwrap();
    let mut buf = [0u8; 1500];
    let (len, _) = tokio::time::timeout(Duration::from_secs(5), socket.recv_from(&mut buf))
        .await
        .expect("an answer within 5 s")
        .unwrap();
    Message::from_vec(&buf[..len]).unwrap()
}

/// The A answers for `name`, through `dig` when installed, else hickory-proto.
async fn lookup_a(server: SocketAddr, name: &str) -> Vec<String> {
    if have_dig() {
        return dig(server, name, "A").await;
    }
    let m = hickory(server, name, RecordType::A).await;
    m.answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.0.to_string()),
            _ => None,
        })
        .collect()
}

/// Asks until the A answer is `[want]`, for at most 5 s (status is published through the
/// router, so it lags the connection by a moment).
async fn wait_for_a(server: SocketAddr, name: &str, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let got = lookup_a(server, name).await;
        if got == [want] {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{name}: expected [{want}], still {got:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_record_follows_the_client_through_connect_and_disconnect() {
    if !have_dig() {
        eprintln!("note: `dig` not found (Debian package dnsutils); querying with hickory-proto");
    }
    let (broker, dns) = start().await;
    let name = "dev1.status.canopy.local";
    assert_eq!(lookup_a(dns, name).await, [BAD], "never seen: bad_ip");

    let mut client = Client::connect(broker.mqtt_addr(), "dev1", true, 0)
        .await
        .unwrap();
    wait_for_a(dns, name, GOOD).await;
    wait_for_a(dns, "DEV1.Status.Canopy.Local", GOOD).await;

    client
        .send(&Packet::Disconnect(Disconnect::default()))
        .await
        .unwrap();
    drop(client);
    wait_for_a(dns, name, BAD).await;
    broker.shutdown().await;
}

#[tokio::test]
async fn abnormal_disconnect_turns_the_answer_bad() {
    let (broker, dns) = start().await;
    let client = Client::connect(broker.mqtt_addr(), "dev2", true, 0)
        .await
        .unwrap();
    wait_for_a(dns, "dev2.status.canopy.local", GOOD).await;
    drop(client);
    wait_for_a(dns, "dev2.status.canopy.local", BAD).await;
    broker.shutdown().await;
}

#[tokio::test]
async fn take_over_keeps_the_client_online() {
    let (broker, dns) = start().await;
    let mut first = Client::connect(broker.mqtt_addr(), "dev4", true, 0)
        .await
        .unwrap();
    wait_for_a(dns, "dev4.status.canopy.local", GOOD).await;
    let _second = Client::connect(broker.mqtt_addr(), "dev4", true, 0)
        .await
        .unwrap();
    // The first connection is told (DISCONNECT 0x8E) and closed [MQTT-3.1.4-3].
    loop {
        match first.recv_timeout(Duration::from_secs(5)).await {
            Ok(Some(Packet::Disconnect(_))) => continue,
            Ok(None) | Err(_) => break,
            Ok(Some(other)) => panic!("unexpected {other:?}"),
        }
    }
    // The old connection's end must not turn the (still connected) client offline.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(lookup_a(dns, "dev4.status.canopy.local").await, [GOOD]);
    broker.shutdown().await;
}

#[tokio::test]
async fn txt_record_carries_the_status_document() {
    let (broker, dns) = start().await;
    let _client = Client::connect(broker.mqtt_addr(), "dev3", true, 0)
        .await
        .unwrap();
    wait_for_a(dns, "dev3.status.canopy.local", GOOD).await;
    let text = if have_dig() {
        // dig prints each character-string quoted, with inner quotes escaped.
        let lines = dig(dns, "dev3.status.canopy.local", "TXT").await;
        assert_eq!(lines.len(), 1, "{lines:?}");
        lines[0]
            .trim_matches('"')
            .replace("\" \"", "")
            .replace("\\\"", "\"")
    } else {
        let m = hickory(dns, "dev3.status.canopy.local.", RecordType::TXT).await;
        match &m.answers[0].data {
            RData::TXT(t) => t
                .txt_data
                .iter()
                .map(|s| String::from_utf8_lossy(s).into_owned())
                .collect(),
            other => panic!("not TXT: {other:?}"),
        }
    };
    let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(doc["state"], "online", "{text}");
    assert_eq!(doc["node"], "canopy", "{text}");
    assert!(doc["since"].as_u64().is_some(), "{text}");
    broker.shutdown().await;
}

#[tokio::test]
async fn client_ids_that_are_not_labels_use_the_encoded_label() {
    let (broker, dns) = start().await;
    let id = "kitchen/sensor 1";
    let _client = Client::connect(broker.mqtt_addr(), id, true, 0)
        .await
        .unwrap();
    let name = format!("{}.status.canopy.local", client_id_to_label(id));
    wait_for_a(dns, &name, GOOD).await;
    broker.shutdown().await;
}

#[tokio::test]
async fn names_outside_the_zone_are_nxdomain() {
    let (broker, dns) = start().await;
    let m = hickory(dns, "dev1.status.example.com.", RecordType::A).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    let m = hickory(dns, "dev1.status.canopy.local.", RecordType::AAAA).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(m.answers.is_empty(), "AAAA: NODATA");
    broker.shutdown().await;
}

#[tokio::test]
async fn no_dns_listener_without_dns_listen() {
    let broker = canopy_broker::start(Config::ephemeral()).await.unwrap();
    assert_eq!(broker.dns_addr(), None);
    broker.shutdown().await;
}
