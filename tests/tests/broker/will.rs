//! Last will: published on abnormal close, not on normal DISCONNECT, 5.0 reason 0x04,
//! will delay, retained wills.

use canopy_tests::wire::{self, Connect, Props, V5, Will};
use canopy_tests::{QUIET, RawClient, TestBroker, unique};

both_versions!(
    will_is_published_on_abnormal_close,
    will_is_not_published_after_disconnect,
    will_is_published_on_protocol_violation,
    retained_will_is_stored_as_retained,
);

fn will(topic: &str, qos: u8) -> Will {
    let mut w = Will::new(topic, b"gone");
    w.qos = qos;
    w
}

async fn will_is_published_on_abnormal_close(v: u8) {
    // [MQTT-3.1.2-8]: the will is published when the network connection closes without
    // DISCONNECT.
    let b = TestBroker::start().await;
    let t = unique("will");
    let mut s = RawClient::connect(b.addr(), v, &unique("s")).await;
    s.subscribe(&t, 1).await;
    let (w, _) =
        RawClient::connect_with(b.addr(), &Connect::new(v, &unique("w")).will(will(&t, 1))).await;
    drop(w);
    let m = s.recv_publish().await;
    assert_eq!(
        (m.topic.as_str(), m.payload.as_slice(), m.qos, m.retain),
        (t.as_str(), &b"gone"[..], 1, false)
    );
}

async fn will_is_not_published_after_disconnect(v: u8) {
    // [MQTT-3.1.2-10]: DISCONNECT (5.0 reason 0x00) removes the will without publishing it.
    let b = TestBroker::start().await;
    let t = unique("nowill");
    let mut s = RawClient::connect(b.addr(), v, &unique("s")).await;
    s.subscribe(&t, 1).await;
    let (w, _) =
        RawClient::connect_with(b.addr(), &Connect::new(v, &unique("w")).will(will(&t, 1))).await;
    w.disconnect().await;
    s.expect_nothing(QUIET).await;
}

async fn will_is_published_on_protocol_violation(v: u8) {
    // [MQTT-3.1.2-8]: a connection closed by the server for a protocol error publishes the will.
    let b = TestBroker::start().await;
    let t = unique("badwill");
    let mut s = RawClient::connect(b.addr(), v, &unique("s")).await;
    s.subscribe(&t, 0).await;
    let (mut w, _) =
        RawClient::connect_with(b.addr(), &Connect::new(v, &unique("w")).will(will(&t, 0))).await;
    w.send(&[0x36, 0x03, 0x00, 0x01, b'x']).await;
    let m = s.recv_publish().await;
    assert_eq!(m.payload, b"gone");
}

#[tokio::test]
async fn disconnect_with_will_reason_publishes_will_v5() {
    // 5.0 3.14.2.1: DISCONNECT 0x04 Disconnect with Will Message -> the will is published.
    let b = TestBroker::start().await;
    let t = unique("will04");
    let mut s = RawClient::connect(b.addr(), V5, &unique("s")).await;
    s.subscribe(&t, 0).await;
    let (mut w, _) =
        RawClient::connect_with(b.addr(), &Connect::v5(&unique("w")).will(will(&t, 0))).await;
    w.send(&wire::disconnect_v5(0x04, Props::new())).await;
    let m = s.recv_publish().await;
    assert_eq!(m.payload, b"gone");
}

async fn retained_will_is_stored_as_retained(v: u8) {
    // [MQTT-3.1.2-17]: Will Retain 1 -> the will is published as a retained message.
    let b = TestBroker::start().await;
    let t = unique("rwill");
    let mut wl = will(&t, 1);
    wl.retain = true;
    let mut watch = RawClient::connect(b.addr(), v, &unique("watch")).await;
    watch.subscribe(&t, 1).await;
    let (w, _) = RawClient::connect_with(b.addr(), &Connect::new(v, &unique("w")).will(wl)).await;
    drop(w);
    assert_eq!(watch.recv_publish().await.payload, b"gone");
    let mut s = RawClient::connect(b.addr(), v, &unique("s")).await;
    s.subscribe(&t, 1).await;
    let m = s.recv_publish().await;
    assert_eq!((m.payload.as_slice(), m.retain), (&b"gone"[..], true));
}
