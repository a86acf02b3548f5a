//! Helpers of the interest tests: bridges with an `interest` route, the topic matcher, what an
//! upper broker's interest document says a client holds, and a seeded generator.

use std::collections::BTreeSet;
use std::time::Duration;

use canopy_broker::BrokerHandle;
use canopy_metabroker::{BridgeConfig, Direction};
use rumqttc::v5::mqttbytes::QoS;

use super::*;

/// Bound of every wait in these tests.
pub const T: Duration = Duration::from_secs(15);

/// A bridge whose route `in` `map/#` proxies interest, from `local` to `remote`.
pub fn interest_bridge(name: &str, local: &BrokerHandle, remote: &BrokerHandle) -> BridgeConfig {
    let mut r = route(Direction::In, "map/#", None, 1);
    r.interest = true;
    bridge(
        name,
        &url(local.mqtt_addr()),
        &url(remote.mqtt_addr()),
        vec![r],
    )
}

/// The set of `filters`.
pub fn set(filters: &[&str]) -> BTreeSet<String> {
    filters.iter().map(|s| s.to_string()).collect()
}

/// Whether `topic` matches `filter` (no `$` topics here).
pub fn matches(filter: &str, topic: &str) -> bool {
    let (f, t): (Vec<&str>, Vec<&str>) = (filter.split('/').collect(), topic.split('/').collect());
    for (i, l) in f.iter().enumerate() {
        match *l {
            "#" => return true,
            "+" if i < t.len() => {}
            x if t.get(i) == Some(&x) => {}
            _ => return false,
        }
    }
    f.len() == t.len()
}

/// Waits until the broker at `addr` lists exactly `want` as `client`'s subscriptions in its
/// interest document (read as a bridge would, with a `<name>-local` client id).
pub async fn held_converges(addr: std::net::SocketAddr, client: &str, want: &BTreeSet<String>) {
    let deadline = tokio::time::Instant::now() + T;
    loop {
        // A fresh id each time: an earlier probe never takes this one's connection over.
        static PROBES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = PROBES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (c, mut rx) = subscriber(
            addr,
            &format!("probe{n}-local"),
            &["$interest/subscriptions"],
            QoS::AtLeastOnce,
        )
        .await;
        let doc = take(&mut rx, 1, T).await.remove(0);
        // Gone at once: a client reading the document counts as a reader whose
        // confirmation waiting SUBACKs need.
        let _ = c.disconnect().await;
        let doc: serde_json::Value = serde_json::from_slice(&doc.payload).unwrap();
        let held: BTreeSet<String> = doc["filters"]
            .as_object()
            .unwrap()
            .iter()
            .filter(|(_, cs)| cs.as_array().unwrap().iter().any(|c| c == client))
            .map(|(f, _)| f.clone())
            .collect();
        if &held == want {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{client} holds {held:?}, oracle {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A small deterministic generator (xorshift64*), seeded from `CANOPY_SEED` or a constant.
pub struct Rng(pub u64);

impl Rng {
    pub fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 33) as usize % n
    }
}
