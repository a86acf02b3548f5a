//! Licence pool (SPEC §7, docs/resources.md): five workers compete for two licences of
//! the resource `license`. The first two are granted at once; the others are queued and
//! told their position every time it changes, and each is granted in turn when a worker
//! ahead of it releases its licence. The output shows the positions going down and the
//! grants in the order the workers asked.
//!
//! What to watch in the output: workers 3-5 `queued at position N`, the positions going
//! down as licences are released, and the last line
//! `granted in order: workers [1, 2, 3, 4, 5], grants [1, 2, 3, 4, 5]`.
//!
//! Run: `cargo run -p canopy-examples --example license_pool`. Everything runs in this
//! process on a loopback port and stops by itself (at most 30 s).

use std::sync::Arc;
use std::time::{Duration, Instant};

use canopy_broker::config::{Config, ResourceConfig, ResourceMode};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::Value;
use tokio::sync::{Mutex, mpsc};

const WORKERS: usize = 5;
const LICENCES: u32 = 2;
/// How long a worker uses its licence.
const WORK: Duration = Duration::from_millis(700);

/// Drives a rumqttc event loop in its own task (never publish from the polling task),
/// forwarding SUBACKs (as `None`) and the payloads of incoming publishes.
fn drive(mut eventloop: rumqttc::EventLoop) -> mpsc::Receiver<Option<Vec<u8>>> {
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(async move {
        loop {
            let item = match eventloop.poll().await {
                Ok(Event::Incoming(Packet::Publish(p))) => Some(p.payload.to_vec()),
                Ok(Event::Incoming(Packet::SubAck(_))) => None,
                Ok(_) => continue,
                Err(_) => return, // the broker stopped at the end of the example
            };
            if tx.send(item).await.is_err() {
                return;
            }
        }
    });
    rx
}

/// One worker: asks for a licence, prints every answer, works, releases. Returns its grant.
async fn worker(
    n: usize,
    addr: std::net::SocketAddr,
    start: Instant,
    order: Arc<Mutex<Vec<(usize, u64)>>>,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let id = format!("worker-{n}");
    let mut opts = MqttOptions::new(&id, addr.ip().to_string(), addr.port());
    opts.set_keep_alive(Duration::from_secs(30));
    let (client, eventloop) = AsyncClient::new(opts, 16);
    let mut events = drive(eventloop);
    client
        .subscribe(format!("$resource/license/client/{id}"), QoS::AtLeastOnce)
        .await?;
    while events.recv().await.ok_or("connection lost")?.is_some() {}
    client
        .publish("$resource/license/acquire", QoS::AtLeastOnce, false, "")
        .await?;
    let say = |what: String| {
        println!("[{:5.2}s] {id:<9} {what}", start.elapsed().as_secs_f64());
    };
    loop {
        let Some(payload) = events.recv().await.ok_or("connection lost")? else {
            continue;
        };
        let answer: Value = serde_json::from_slice(&payload)?;
        match answer["state"].as_str() {
            Some("queued") => say(format!("queued at position {}", answer["position"])),
            Some("granted") => {
                let grant = answer["grant"].as_u64().unwrap_or_default();
                say(format!("granted licence, grant #{grant}"));
                order.lock().await.push((n, grant));
                break;
            }
            other => return Err(format!("unexpected answer {other:?}").into()),
        }
    }
    tokio::time::sleep(WORK).await;
    client
        .publish("$resource/license/release", QoS::AtLeastOnce, false, "")
        .await?;
    while let Some(item) = events.recv().await {
        if let Some(payload) = item {
            let answer: Value = serde_json::from_slice(&payload)?;
            if answer["state"] == "released" {
                say("released its licence".to_owned());
                break;
            }
        }
    }
    client.disconnect().await?;
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let mut cfg = Config::ephemeral();
    cfg.resource = vec![ResourceConfig {
        name: "license".to_owned(),
        max_concurrent: LICENCES,
        lease: Duration::from_secs(60),
        queue_limit: 100,
        mode: ResourceMode::Queue,
        slot: Duration::from_secs(60),
        grace: Duration::ZERO,
    }];
    let broker = canopy_broker::start(cfg).await?;
    let addr = broker.mqtt_addr();
    println!("broker on {addr}: {WORKERS} workers, {LICENCES} licences of `license`\n");
    let start = Instant::now();
    let order = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for n in 1..=WORKERS {
        tasks.push(tokio::spawn(worker(n, addr, start, order.clone())));
        // Ask in a known order, so that the queue's order is visible.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let all = async {
        for t in tasks {
            t.await??;
        }
        Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
    };
    tokio::time::timeout(Duration::from_secs(30), all).await??;
    let order = order.lock().await.clone();
    let workers: Vec<usize> = order.iter().map(|(n, _)| *n).collect();
    let grants: Vec<u64> = order.iter().map(|(_, g)| *g).collect();
    println!("\ngranted in order: workers {workers:?}, grants {grants:?}");
    broker.shutdown().await;
    if workers != (1..=WORKERS).collect::<Vec<_>>()
        || grants != (1..=WORKERS as u64).collect::<Vec<_>>()
    {
        return Err("grants out of order".into());
    }
    Ok(())
}
