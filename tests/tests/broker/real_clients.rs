//! Real clients (rumqttc v4 = MQTT 3.1.1, v5 = MQTT 5.0) through the broker: QoS 0/1/2,
//! retained messages, persistent session resume.

use canopy_tests::real::{v4_connect, v5_connect};
use canopy_tests::{TestBroker, unique};
use rumqttc::QoS;
use rumqttc::v5::mqttbytes::QoS as QoS5;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rumqttc_v4_publishes_and_subscribes_all_qos() {
    let b = TestBroker::start().await;
    let t = unique("rc4");
    let mut s = v4_connect(b.addr(), &unique("s"), true).await;
    s.subscribe(&format!("{t}/#"), QoS::ExactlyOnce).await;
    let p = v4_connect(b.addr(), &unique("p"), true).await;
    for (i, q) in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce]
        .into_iter()
        .enumerate()
    {
        p.client
            .publish(format!("{t}/{i}"), q, false, vec![i as u8])
            .await
            .expect("publish");
        let m = s.next_publish().await;
        assert_eq!(
            (m.topic, m.qos, m.payload.to_vec()),
            (format!("{t}/{i}"), q, vec![i as u8])
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rumqttc_v5_publishes_and_subscribes_all_qos() {
    let b = TestBroker::start().await;
    let t = unique("rc5");
    let mut s = v5_connect(b.addr(), &unique("s"), true, 0).await;
    s.subscribe(&format!("{t}/#"), QoS5::ExactlyOnce).await;
    let p = v5_connect(b.addr(), &unique("p"), true, 0).await;
    for (i, q) in [QoS5::AtMostOnce, QoS5::AtLeastOnce, QoS5::ExactlyOnce]
        .into_iter()
        .enumerate()
    {
        p.client
            .publish(format!("{t}/{i}"), q, false, vec![i as u8])
            .await
            .expect("publish");
        let m = s.next_publish().await;
        assert_eq!(
            (m.topic.to_vec(), m.qos, m.payload.to_vec()),
            (format!("{t}/{i}").into_bytes(), q, vec![i as u8])
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rumqttc_v4_and_v5_receive_retained_messages() {
    let b = TestBroker::start().await;
    let t = unique("rcret");
    let p = v4_connect(b.addr(), &unique("p"), true).await;
    p.client
        .publish(&t, QoS::AtLeastOnce, true, "kept")
        .await
        .expect("publish");
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
    s5.subscribe(&t, QoS5::AtLeastOnce).await;
    let m = s5.next_publish().await;
    assert!(m.retain);
    assert_eq!(m.payload.as_ref(), b"kept");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rumqttc_v4_resumes_persistent_session() {
    let b = TestBroker::start().await;
    let t = unique("rcp4");
    let id = unique("persist4");
    let mut s = v4_connect(b.addr(), &id, false).await;
    s.subscribe(&t, QoS::AtLeastOnce).await;
    s.disconnect().await;
    let p = v4_connect(b.addr(), &unique("p"), true).await;
    p.client
        .publish(&t, QoS::AtLeastOnce, false, "while away")
        .await
        .expect("publish");
    let mut p = p;
    p.wait_packet(|pk| matches!(pk, rumqttc::Packet::PubAck(_)))
        .await;
    let mut s = v4_connect(b.addr(), &id, false).await;
    assert!(s.connack.session_present);
    assert_eq!(s.next_publish().await.payload.as_ref(), b"while away");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rumqttc_v5_resumes_persistent_session() {
    let b = TestBroker::start().await;
    let t = unique("rcp5");
    let id = unique("persist5");
    let mut s = v5_connect(b.addr(), &id, false, 300).await;
    s.subscribe(&t, QoS5::AtLeastOnce).await;
    s.disconnect().await;
    let mut p = v5_connect(b.addr(), &unique("p"), true, 0).await;
    p.subscribe(&t, QoS5::AtLeastOnce).await;
    p.client
        .publish(&t, QoS5::AtLeastOnce, false, "while away")
        .await
        .expect("publish");
    assert_eq!(p.next_publish().await.payload.as_ref(), b"while away");
    let mut s = v5_connect(b.addr(), &id, false, 300).await;
    assert!(s.connack.session_present);
    assert_eq!(s.next_publish().await.payload.as_ref(), b"while away");
}
