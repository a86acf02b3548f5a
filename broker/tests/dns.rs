//! The DNS status listener end to end: an in-process broker with `[dns] listen` on a free UDP
//! port, MQTT clients connecting and leaving, and a real resolver (`dig`, from Debian's
//! `dnsutils`) asking `<client-id>.status.canopy.local`. Without `dig` the tests fail with the
//! install command, unless `CANOPY_SKIP_EXTERNAL=1` is set: then the same questions go through
//! a hickory-proto query, and a note says so.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use canopy_broker::config::Config;
use canopy_broker::services::dns::client_id_to_label;
use canopy_proto::{Disconnect, Packet};
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{RData, RecordType};
use support::Client;
use support::dns::{dig, have_dig, hickory, lookup_a, wait_for_a};

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
