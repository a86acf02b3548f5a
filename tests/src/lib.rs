//! Test harness for Canopy integration tests.
//!
//! Owns the shared tooling of the integration tests: [`TestBroker`] (in-process Canopy or
//! an external broker), [`RawClient`] (byte-exact MQTT over TCP), hand-written packet
//! builders in [`wire`], rumqttc helpers in [`real`], and bounded polling. It must never
//! depend on Canopy's codec for expectations and never wait without a bound.
#![warn(missing_docs)]

pub mod broker;
pub mod raw;
pub mod real;
pub mod wire;

use std::time::Duration;

pub use broker::{Settings, TestBroker, is_external, unique};
pub use raw::{QUIET, RawClient, RecvError, TIMEOUT};

/// Polls `cond` every 10 ms until it holds or `within` passes; returns whether it held.
pub async fn wait_until(within: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if cond() {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Asserts the broker at `addr` still routes a QoS 1 message between two new clients.
pub async fn assert_broker_works(addr: std::net::SocketAddr) {
    let topic = unique("alive");
    let mut sub = RawClient::connect(addr, wire::V311, &unique("alive-sub")).await;
    sub.subscribe(&topic, 1).await;
    let mut publisher = RawClient::connect(addr, wire::V311, &unique("alive-pub")).await;
    publisher.publish(&topic, b"still here", 1, false).await;
    let p = sub.recv_publish().await;
    assert_eq!(
        (p.topic.as_str(), p.payload.as_slice()),
        (topic.as_str(), &b"still here"[..])
    );
}
