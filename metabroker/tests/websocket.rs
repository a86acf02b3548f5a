//! `ws://` links: a Canopy broker bridged to a Debian `mosquitto` listening with
//! `protocol websockets`, both directions. Skips with a message when `mosquitto` is missing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::mosq::{self, addr, assert_both_ways, routes};
use common::*;

const T: Duration = Duration::from_secs(15);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ws_link_to_mosquitto_websockets_listener_forwards_both_ways() {
    let Some(bin) = mosq::require_mosquitto() else {
        return;
    };
    init_log();
    let m = mosq::start(&bin, 2, |p, _| {
        format!(
            "per_listener_settings false\nallow_anonymous true\npersistence false\n\
             listener {} 127.0.0.1\nlistener {} 127.0.0.1\nprotocol websockets\n",
            p[0], p[1]
        )
    })
    .await;
    let canopy = broker().await;
    let h = canopy_metabroker::Bridge::new(bridge(
        "ws1",
        &url(canopy.mqtt_addr()),
        &format!("ws://127.0.0.1:{}/mqtt", m.ports[1]),
        routes(),
    ))
    .start()
    .unwrap();
    wait_until(T, "WebSocket bridge connected", || connected(&h)).await;
    assert_both_ways(canopy.mqtt_addr(), addr(m.ports[0]), "ws1").await;
    h.shutdown().await;
}
