//! Hierarchical special effects (SPEC §5): a primary effect stream published at the root
//! broker is turned by a service provider's metabroker into a further effect (scaled and
//! down-sampled) on the provider's broker, and carried down to a user's broker, where a user
//! receives it with the original timestamps kept for synchronisation with a video timeline.
//!
//! Three in-process Canopy brokers (root, provider, user) and two metabrokers; prints what
//! arrives and exits by itself (at most 10 s).
//!
//! What to watch in the output: the root publishes 10 frames of `fx/rumble`; the user
//! receives 5 frames of `fx/rumble-soft` (every second frame, intensity halved) with the
//! original `ts` values, and the last line is `user received 5 of 5 expected frames`.
//!
//! Run: `cargo run -p canopy-examples --example special_effects`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use bytes::Bytes;
use canopy_metabroker::{Bridge, BridgeConfig, Direction, Message, RouteConfig, Transform};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{Filter, Packet};
use rumqttc::v5::{AsyncClient, Event, MqttOptions};

/// The provider's effect: `fx/rumble` frames `{"ts":…,"intensity":…}` become
/// `fx/rumble-soft` frames with the intensity scaled by `scale`; the route's `sample_every`
/// has already kept one frame in two.
struct Soften {
    scale: f64,
}

impl Transform for Soften {
    fn apply(&mut self, mut message: Message, _now: Instant) -> Vec<Message> {
        let Ok(mut doc) = serde_json::from_slice::<serde_json::Value>(&message.payload) else {
            return Vec::new();
        };
        let intensity = doc["intensity"].as_f64().unwrap_or(0.0);
        doc["intensity"] = serde_json::json!((intensity * self.scale * 100.0).round() / 100.0);
        doc["source"] = serde_json::json!(message.topic);
        message.topic = "fx/rumble-soft".to_owned();
        message.payload = Bytes::from(doc.to_string());
        vec![message]
    }
}

fn route(direction: Direction, local: &str, remote: Option<&str>) -> RouteConfig {
    RouteConfig {
        direction,
        local: local.to_owned(),
        remote_prefix: None,
        remote: remote.map(str::to_owned),
        qos: 1,
        max_rate: None,
        sample_every: None,
        interest: false,
    }
}

fn temp(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("canopy-example-fx-{name}-{}", std::process::id()))
}

#[tokio::main]
async fn main() {
    let start = |_| canopy_broker::start(canopy_broker::config::Config::ephemeral());
    let root = start(()).await.unwrap();
    let provider = start(()).await.unwrap();
    let user = start(()).await.unwrap();
    let url = |h: &canopy_broker::BrokerHandle| format!("mqtt://{}", h.mqtt_addr());

    // Provider's metabroker: subscribes the root's primary stream, transforms it, publishes
    // the new effect on the provider's broker.
    let mut down = BridgeConfig::new("provider", &url(&provider), &url(&root));
    let mut primary = route(Direction::In, "fx/rumble", None);
    primary.sample_every = Some(2);
    down.routes = vec![primary];
    down.queue.dir = Some(temp("provider"));
    let provider_mb = Bridge::new(down)
        .with_transform(0, Soften { scale: 0.5 })
        .start()
        .unwrap();

    // User site's metabroker: carries the provider's effects down (hierarchy: fx/# in).
    let mut site = BridgeConfig::new("user-site", &url(&user), &url(&provider));
    site.hierarchy = true;
    site.queue.dir = Some(temp("user-site"));
    let user_mb = Bridge::new(site).start().unwrap();

    let (viewer, mut viewer_loop) = AsyncClient::new(
        MqttOptions::new(
            "viewer",
            user.mqtt_addr().ip().to_string(),
            user.mqtt_addr().port(),
        ),
        100,
    );
    viewer
        .subscribe_many([Filter::new("fx/#", QoS::AtLeastOnce)])
        .await
        .unwrap();
    let (feed, mut feed_loop) = AsyncClient::new(
        MqttOptions::new(
            "fx-feed",
            root.mqtt_addr().ip().to_string(),
            root.mqtt_addr().port(),
        ),
        100,
    );
    tokio::spawn(async move { while feed_loop.poll().await.is_ok() {} });

    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut received = 0;
    let mut sent = false;
    while received < 5 && tokio::time::Instant::now() < deadline {
        let Ok(event) = tokio::time::timeout_at(deadline, viewer_loop.poll()).await else {
            break;
        };
        match event {
            Ok(Event::Incoming(Packet::SubAck(_))) if !sent => {
                sent = true;
                // Let both metabrokers finish subscribing before the stream starts.
                tokio::time::sleep(Duration::from_millis(500)).await;
                for frame in 0..10u64 {
                    let doc = serde_json::json!({"ts": 1_000 + frame * 40, "intensity": frame as f64 / 10.0});
                    feed.publish("fx/rumble", QoS::AtLeastOnce, false, doc.to_string())
                        .await
                        .unwrap();
                }
                println!("root: published 10 frames of fx/rumble (ts 1000..1360 ms)");
            }
            Ok(Event::Incoming(Packet::Publish(p))) => {
                received += 1;
                println!(
                    "user: {} {}",
                    String::from_utf8_lossy(&p.topic),
                    String::from_utf8_lossy(&p.payload)
                );
            }
            Ok(_) => {}
            Err(e) => {
                println!("viewer connection error: {e}");
                break;
            }
        }
    }
    println!("user received {received} of 5 expected frames of fx/rumble-soft");
    provider_mb.shutdown().await;
    user_mb.shutdown().await;
    for b in [root, provider, user] {
        b.shutdown().await;
    }
    let _ = std::fs::remove_dir_all(temp("provider"));
    let _ = std::fs::remove_dir_all(temp("user-site"));
    if received < 5 {
        std::process::exit(1);
    }
}
