//! Real clients (rumqttc's 3.1.1 and 5.0 APIs, through the workspace's rumqttc adapter)
//! through the broker: QoS 0/1/2, retained messages, persistent session resume.

use canopy_tests::real::{Event, QoS, RealClient, Version, connect, v4_connect, v5_connect};
use canopy_tests::{TestBroker, unique};

/// One test per protocol version running the same `async fn(Version)` body.
macro_rules! on_both_versions {
    ($body:ident, $v4:ident, $v5:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $v4() {
            $body(Version::V311).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $v5() {
            $body(Version::V5).await;
        }
    };
}

/// Session expiry sent by 5.0 clients that keep their session (3.1.1 sends none).
fn expiry(version: Version, keep: bool) -> Option<u32> {
    match (version, keep) {
        (Version::V311, _) => None,
        (Version::V5, true) => Some(300),
        (Version::V5, false) => Some(0),
    }
}

/// A client with a clean session that expires at disconnect.
async fn clean_client(b: &TestBroker, version: Version, tag: &str) -> RealClient {
    connect(
        b.addr(),
        version,
        &unique(tag),
        true,
        expiry(version, false),
    )
    .await
}

async fn publishes_and_subscribes_all_qos(version: Version) {
    let b = TestBroker::start().await;
    let t = unique("rc");
    let mut s = clean_client(&b, version, "s").await;
    s.subscribe(&format!("{t}/#"), QoS::ExactlyOnce).await;
    let p = clean_client(&b, version, "p").await;
    for (i, q) in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce]
        .into_iter()
        .enumerate()
    {
        p.publish(&format!("{t}/{i}"), q, false, vec![i as u8])
            .await;
        let m = s.next_publish().await;
        assert_eq!(
            (m.topic.to_vec(), m.qos, m.payload.to_vec()),
            (format!("{t}/{i}").into_bytes(), q, vec![i as u8])
        );
    }
}

on_both_versions!(
    publishes_and_subscribes_all_qos,
    rumqttc_v4_publishes_and_subscribes_all_qos,
    rumqttc_v5_publishes_and_subscribes_all_qos
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rumqttc_v4_and_v5_receive_retained_messages() {
    let b = TestBroker::start().await;
    let t = unique("rcret");
    let p = v4_connect(b.addr(), &unique("p"), true).await;
    p.publish(&t, QoS::AtLeastOnce, true, "kept").await;
    let mut s4 = v4_connect(b.addr(), &unique("s4"), true).await;
    let mut s5 = v5_connect(b.addr(), &unique("s5"), true, 0).await;
    // The retained message may still be on its way: a subscriber that subscribed before it
    // was stored gets it live, so poll by re-subscribing until it arrives retained.
    let deadline = tokio::time::Instant::now() + canopy_tests::TIMEOUT;
    loop {
        s4.subscribe(&t, QoS::AtLeastOnce).await;
        let m = s4.next_publish().await;
        if m.retain {
            assert_eq!(m.payload.as_ref(), b"kept");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never got a retained copy"
        );
    }
    s5.subscribe(&t, QoS::AtLeastOnce).await;
    let m = s5.next_publish().await;
    assert!(m.retain);
    assert_eq!(m.payload.as_ref(), b"kept");
}

/// A persistent subscriber disconnects; a QoS 1 message published meanwhile is delivered
/// when it comes back with its session [MQTT-3.1.2-4], [MQTT-3.1.2-5].
async fn resumes_persistent_session(version: Version) {
    let b = TestBroker::start().await;
    let t = unique("rcp");
    let id = unique("persist");
    let mut s = connect(b.addr(), version, &id, false, expiry(version, true)).await;
    s.subscribe(&t, QoS::AtLeastOnce).await;
    s.disconnect().await;
    let mut p = clean_client(&b, version, "p").await;
    p.publish(&t, QoS::AtLeastOnce, false, "while away").await;
    p.wait_event(|e| matches!(e, Event::PubAck { .. })).await;
    let mut s = connect(b.addr(), version, &id, false, expiry(version, true)).await;
    assert!(s.session_present);
    assert_eq!(s.next_publish().await.payload.as_ref(), b"while away");
}

on_both_versions!(
    resumes_persistent_session,
    rumqttc_v4_resumes_persistent_session,
    rumqttc_v5_resumes_persistent_session
);
