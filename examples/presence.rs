//! Presence (SPEC §5, docs/presence.md): alice has a phone and a laptop; bob wants to watch
//! her. Bob's subscription stays pending (alice's devices see his request) until alice adds
//! him to her watcher list; then he receives her aggregate document, and every change: the
//! laptop's connection drops, and after the broker's `offline_grace` the laptop turns
//! offline in the document while the phone still decides alice's availability.
//!
//! What to watch in the output: alice sees bob's request (`"state":"pending"`); after she
//! writes `$presence/alice/watchers = ["bob"]`, bob prints `alice is available / active`
//! (the laptop decides); when the laptop's connection drops, bob prints
//! `alice is busy / idle (laptop=offline, phone=busy)` about one second later.
//!
//! Run: `cargo run -p canopy-examples --example presence`. Everything runs in this process
//! on a loopback port and stops by itself (at most 30 s).

use std::time::{Duration, Instant};

use canopy_broker::config::Config;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Incoming publishes as (topic, payload).
type Inbox = mpsc::Receiver<(String, Vec<u8>)>;

/// Connects `id` and drives its event loop in a task of its own (never publish from the
/// polling task), forwarding (topic, payload) of incoming publishes.
fn connect(id: &str, addr: std::net::SocketAddr) -> (AsyncClient, Inbox, JoinHandle<()>) {
    let mut opts = MqttOptions::new(id, addr.ip().to_string(), addr.port());
    opts.set_keep_alive(Duration::from_secs(30));
    let (client, mut eventloop) = AsyncClient::new(opts, 16);
    let (tx, rx) = mpsc::channel(64);
    let task = tokio::spawn(async move {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    if tx
                        .send((p.topic.clone(), p.payload.to_vec()))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
                Ok(_) => {}
                Err(_) => return,
            }
        }
    });
    (client, rx, task)
}

fn device(availability: &str, activity: &str) -> String {
    format!(r#"{{"availability":"{availability}","activity":"{activity}"}}"#)
}

/// One line per aggregate: overall state, then each device.
fn summary(doc: &Value) -> String {
    let devices: Vec<String> = doc["devices"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, d)| format!("{k}={}", d["availability"].as_str().unwrap_or("?")))
                .collect()
        })
        .unwrap_or_default();
    format!(
        "alice is {} / {} ({})",
        doc["availability"].as_str().unwrap_or("?"),
        doc["activity"].as_str().unwrap_or("?"),
        devices.join(", ")
    )
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let mut cfg = Config::ephemeral();
    cfg.presence.offline_grace = Duration::from_secs(1);
    let broker = canopy_broker::start(cfg).await?;
    let addr = broker.mqtt_addr();
    let start = Instant::now();
    let say = |who: &str, what: String| {
        println!("[{:5.2}s] {who:<6} {what}", start.elapsed().as_secs_f64());
    };
    let run = async {
        let (phone, mut phone_rx, _p) = connect("alice-phone", addr);
        let (laptop, _l, laptop_task) = connect("alice-laptop", addr);
        phone
            .subscribe("$presence/alice/requests/+", QoS::AtLeastOnce)
            .await?;
        phone
            .publish(
                "$presence/alice/devices/phone",
                QoS::AtLeastOnce,
                true,
                device("busy", "idle"),
            )
            .await?;
        laptop
            .publish(
                "$presence/alice/devices/laptop",
                QoS::AtLeastOnce,
                true,
                device("available", "active"),
            )
            .await?;
        say("alice", "phone busy/idle, laptop available/active".into());

        let (bob, mut bob_rx, _b) = connect("bob", addr);
        bob.subscribe("$presence/alice", QoS::AtLeastOnce).await?;
        say("bob", "subscribes to $presence/alice".into());
        let (topic, payload) = phone_rx.recv().await.ok_or("phone lost")?;
        say(
            "alice",
            format!("sees {topic}: {}", String::from_utf8_lossy(&payload)),
        );
        phone
            .publish(
                "$presence/alice/watchers",
                QoS::AtLeastOnce,
                true,
                r#"["bob"]"#,
            )
            .await?;
        say(
            "alice",
            "allows bob: $presence/alice/watchers = [\"bob\"]".into(),
        );

        let mut dropped = false;
        while let Some((topic, payload)) = bob_rx.recv().await {
            if topic != "$presence/alice" {
                continue;
            }
            let doc: Value = serde_json::from_slice(&payload)?;
            say("bob", summary(&doc));
            if !dropped && doc["devices"]["laptop"]["availability"] == "available" {
                dropped = true;
                laptop_task.abort(); // the laptop's connection drops without DISCONNECT
                say("alice", "laptop's connection drops".into());
            }
            if doc["devices"]["laptop"]["availability"] == "offline" {
                break;
            }
        }
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
    };
    tokio::time::timeout(Duration::from_secs(30), run).await??;
    broker.shutdown().await;
    Ok(())
}
