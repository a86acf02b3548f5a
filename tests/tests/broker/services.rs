//! Topic services (SPEC §5): `$status/<client-id>` documents and their transitions,
//! reserved prefixes, configuration documents and their access rules, and the map
//! carousel. Canopy features: skipped in external mode.

use std::time::{Duration, Instant};

use canopy_tests::wire::{self, V5, V311};
use canopy_tests::{QUIET, RawClient, Settings, TestBroker, is_external, unique};

both_versions!(
    status_follows_connect_and_every_kind_of_disconnect,
    clients_cannot_write_status_topics,
    config_documents_are_written_by_admins_and_read_by_their_client,
    client_without_a_document_gets_the_default_on_its_own_topic,
);

/// Reads the next status document of `id` from a subscriber of `$status/<id>`.
async fn next_status(w: &mut RawClient, id: &str) -> serde_json::Value {
    let m = w.recv_publish().await;
    assert_eq!(m.topic, format!("$status/{id}"));
    serde_json::from_slice(&m.payload).unwrap()
}

async fn status_follows_connect_and_every_kind_of_disconnect(v: u8) {
    let Some(b) = TestBroker::start_with(Settings::default(), "status_follows_connect").await
    else {
        return;
    };
    let id = unique("dev");
    let mut w = RawClient::connect(b.addr(), v, &unique("watch")).await;
    w.subscribe(&format!("$status/{id}"), 0).await;

    let c = RawClient::connect(b.addr(), v, &id).await;
    let doc = next_status(&mut w, &id).await;
    assert_eq!(doc["state"], "online");
    assert_eq!(doc["node"], "canopy");
    assert!(doc["since"].as_u64().unwrap() > 1_600_000_000_000);
    c.disconnect().await;
    let doc = next_status(&mut w, &id).await;
    assert_eq!(
        (doc["state"].as_str(), doc["reason"].as_str()),
        (Some("offline"), Some("disconnected"))
    );

    let c = RawClient::connect(b.addr(), v, &id).await;
    assert_eq!(next_status(&mut w, &id).await["state"], "online");
    drop(c); // abnormal: socket closed without DISCONNECT
    let doc = next_status(&mut w, &id).await;
    assert_eq!(
        (doc["state"].as_str(), doc["reason"].as_str()),
        (Some("offline"), Some("connection lost"))
    );

    // Keep-alive timeout [MQTT-3.1.2-24].
    let (_c, _) =
        RawClient::connect_with(b.addr(), &wire::Connect::new(v, &id).keep_alive(1)).await;
    assert_eq!(next_status(&mut w, &id).await["state"], "online");
    let doc = next_status(&mut w, &id).await;
    assert_eq!(doc["reason"], "keepalive timeout");

    // A late subscriber gets the retained document.
    let mut late = RawClient::connect(b.addr(), v, &unique("late")).await;
    late.subscribe(&format!("$status/{id}"), 0).await;
    let m = late.recv_publish().await;
    assert!(m.retain);
}

async fn clients_cannot_write_status_topics(v: u8) {
    let Some(b) = TestBroker::start_with(Settings::default(), "clients_cannot_write_status").await
    else {
        return;
    };
    let id = unique("victim");
    let mut w = RawClient::connect(b.addr(), v, &unique("watch")).await;
    w.subscribe(&format!("$status/{id}"), 0).await;
    let mut forger = RawClient::connect(b.addr(), v, &unique("forger")).await;
    forger
        .send(
            &wire::Publish::new(v, &format!("$status/{id}"), br#"{"state":"online"}"#)
                .qos(1, 9)
                .retain()
                .encode(),
        )
        .await;
    let ack = wire::parse_ack(&forger.recv().await);
    if v == V5 {
        assert_eq!(
            (ack.first, ack.reason),
            (wire::PUBACK, 0x87),
            "5.0: PUBACK Not authorized"
        );
    } else {
        assert_eq!(ack.first, wire::PUBACK, "3.1.1: acknowledged and dropped");
    }
    w.expect_nothing(QUIET).await;
}

async fn config_broker(test: &str) -> Option<TestBroker> {
    if is_external() {
        eprintln!("skipped in external mode: {test}");
        return None;
    }
    #[cfg(feature = "in-process")]
    return Some(
        TestBroker::start_config(|cfg| cfg.config_docs.admins = vec!["admin".into()]).await,
    );
    #[cfg(not(feature = "in-process"))]
    None
}

async fn config_documents_are_written_by_admins_and_read_by_their_client(v: u8) {
    let Some(b) = config_broker("config_documents_access").await else {
        return;
    };
    let dev = unique("dev");
    let mut admin = RawClient::connect(b.addr(), v, "admin").await;
    admin
        .publish(&format!("$config/{dev}"), b"rate=5", 1, true)
        .await;

    let mut d = RawClient::connect(b.addr(), v, &dev).await;
    d.subscribe(&format!("$config/{dev}"), 1).await;
    let m = d.receive_and_ack(1).await;
    assert_eq!(
        (m[0].payload.as_slice(), m[0].retain),
        (&b"rate=5"[..], true)
    );
    admin
        .publish(&format!("$config/{dev}"), b"rate=7", 1, true)
        .await;
    assert_eq!(
        d.receive_and_ack(1).await[0].payload,
        b"rate=7",
        "later changes arrive"
    );

    // Someone else's document, or all of them: refused.
    let s = d
        .subscribe_opts(
            5,
            &[(&format!("$config/{dev}-other"), 1), ("$config/#", 0)],
            wire::Props::new(),
        )
        .await;
    let refused = if v == V5 { 0x87 } else { 0x80 };
    assert_eq!(s.codes, vec![refused, refused]);
    // Writing: refused for non-admins, the document stays.
    d.send(
        &wire::Publish::new(v, &format!("$config/{dev}"), b"hacked")
            .qos(1, 3)
            .retain()
            .encode(),
    )
    .await;
    let ack = wire::parse_ack(&d.recv().await);
    if v == V5 {
        assert_eq!(ack.reason, 0x87);
    }
    d.expect_nothing(QUIET).await;
}

async fn client_without_a_document_gets_the_default_on_its_own_topic(v: u8) {
    let Some(b) = config_broker("config_default").await else {
        return;
    };
    let mut admin = RawClient::connect(b.addr(), v, "admin").await;
    admin
        .publish("$config/default", b"default-1", 1, true)
        .await;
    let dev = unique("fresh");
    let mut d = RawClient::connect(b.addr(), v, &dev).await;
    d.subscribe(&format!("$config/{dev}"), 1).await;
    let m = d.receive_and_ack(1).await;
    assert_eq!(
        (m[0].topic.as_str(), m[0].payload.as_slice()),
        (format!("$config/{dev}").as_str(), &b"default-1"[..])
    );
    admin
        .publish("$config/default", b"default-2", 1, true)
        .await;
    assert_eq!(
        d.receive_and_ack(1).await[0].payload,
        b"default-2",
        "a new default reaches it"
    );
    admin
        .publish(&format!("$config/{dev}"), b"own", 1, true)
        .await;
    assert_eq!(d.receive_and_ack(1).await[0].payload, b"own");
    admin
        .publish("$config/default", b"default-3", 1, true)
        .await;
    d.expect_nothing(QUIET).await;
}

#[cfg(feature = "in-process")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn carousel_resends_retained_segments_spread_over_the_period() {
    if is_external() {
        return;
    }
    let b = TestBroker::start_config(|cfg| {
        cfg.carousel = vec![canopy_broker::config::CarouselConfig {
            filter: canopy_proto::TopicFilter::new("map/#").unwrap(),
            period: Duration::from_millis(600),
            max_bytes_per_sec: 0,
        }];
    })
    .await;
    let mut p = RawClient::connect(b.addr(), V311, &unique("mapper")).await;
    for i in 0..12 {
        p.publish(
            &format!("map/base/{i}"),
            format!("segment {i}").as_bytes(),
            1,
            true,
        )
        .await;
    }
    // A late receiver that takes no retained messages at subscribe time (retain
    // handling 2) still builds the whole map from the carousel.
    let mut r = RawClient::connect(b.addr(), V5, &unique("late")).await;
    let s = r
        .subscribe_opts(
            1,
            &[("map/#", wire::sub_opts(0, false, false, 2))],
            wire::Props::new(),
        )
        .await;
    assert_eq!(s.codes, vec![0]);
    let start = Instant::now();
    let mut seen = std::collections::BTreeMap::new();
    while seen.len() < 12 && start.elapsed() < Duration::from_secs(5) {
        let m = r.recv_publish().await;
        seen.entry(m.topic.clone())
            .or_insert_with(|| start.elapsed());
    }
    assert_eq!(seen.len(), 12, "the carousel filled every gap: {seen:?}");
    // Spread, not a burst: the first round's segments arrive over a good part of the
    // period rather than all at once.
    let times: Vec<Duration> = seen.values().copied().collect();
    let spread = *times.iter().max().unwrap() - *times.iter().min().unwrap();
    assert!(
        spread >= Duration::from_millis(150),
        "segments came in a burst: {seen:?}"
    );
}
