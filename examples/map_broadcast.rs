//! Map broadcast (SPEC §5 "Map broadcast"): a publisher cuts a generated map into
//! segments published retained under `map/<layer>/<segment-id>`; a carousel re-sends
//! them, spread over its period; a receiver that joins late and loses a third of what it
//! receives (on purpose) still builds the whole map, showing its coverage as it goes.
//!
//! What to watch in the output: a progress bar of segments received (and how many were
//! dropped on purpose), then `map complete after ...: N messages received, M dropped on
//! purpose, gaps filled by the carousel` and the rebuilt map drawn in characters.
//!
//! Run: `cargo run -p canopy-examples --example map_broadcast`. Everything runs in this
//! process on a loopback port and stops by itself (at most 60 s).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use canopy_broker::config::{CarouselConfig, Config};
use canopy_proto::TopicFilter;
use indicatif::{ProgressBar, ProgressStyle};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};

/// Tiles per side of the generated map.
const SIDE: usize = 48;
/// Tiles per side of one segment.
const SEG: usize = 6;

/// A small deterministic map: terrain letters from a hash of the coordinates.
fn tile(x: usize, y: usize) -> char {
    let h = (x.wrapping_mul(73_856_093) ^ y.wrapping_mul(19_349_663)) % 10;
    ['~', '~', '.', '.', '.', '^', 'T', 'T', '.', '#'][h]
}

/// The segments: (id, JSON payload naming the segment and carrying its tiles).
fn segments() -> Vec<(String, String)> {
    let mut out = Vec::new();
    for sy in 0..SIDE / SEG {
        for sx in 0..SIDE / SEG {
            let rows: Vec<String> = (0..SEG)
                .map(|dy| {
                    (0..SEG)
                        .map(|dx| tile(sx * SEG + dx, sy * SEG + dy))
                        .collect()
                })
                .collect();
            let id = format!("{sx}-{sy}");
            let doc = serde_json::json!({ "segment": id, "layer": "base", "x": sx, "y": sy, "rows": rows });
            out.push((id, doc.to_string()));
        }
    }
    out
}

/// Drives a rumqttc event loop in its own task (never publish from the polling task),
/// forwarding incoming publishes.
fn drive(mut eventloop: rumqttc::EventLoop) -> tokio::sync::mpsc::Receiver<rumqttc::Publish> {
    let (tx, rx) = tokio::sync::mpsc::channel(1024);
    tokio::spawn(async move {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    if tx.send(p).await.is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(_) => return, // the broker stopped at the end of the example
            }
        }
    });
    rx
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let period = Duration::from_secs(3);
    let mut cfg = Config::ephemeral();
    cfg.carousel = vec![CarouselConfig {
        filter: TopicFilter::new("map/#")?,
        period,
        max_bytes_per_sec: 0,
    }];
    let broker = canopy_broker::start(cfg).await?;
    let addr = broker.mqtt_addr();
    println!("broker on {addr}, carousel on map/# every {period:?}");

    // The publisher: every segment, retained, QoS 1.
    let segs = segments();
    let mut opts = MqttOptions::new("map-publisher", addr.ip().to_string(), addr.port());
    opts.set_max_packet_size(1 << 20, 1 << 20);
    let (publisher, eventloop) = AsyncClient::new(opts, 256);
    let _ = drive(eventloop);
    for (id, payload) in &segs {
        publisher
            .publish(
                format!("map/base/{id}"),
                QoS::AtLeastOnce,
                true,
                payload.clone(),
            )
            .await?;
    }
    println!("published {} segments of a {SIDE}x{SIDE} map", segs.len());
    tokio::time::sleep(Duration::from_millis(500)).await;

    // The late receiver: no retained messages at subscribe time would be the worst case
    // for a plain broker; here it takes them, but drops a third of everything on purpose.
    let mut opts = MqttOptions::new("map-receiver", addr.ip().to_string(), addr.port());
    opts.set_max_packet_size(1 << 20, 1 << 20);
    let (receiver, eventloop) = AsyncClient::new(opts, 256);
    let mut incoming = drive(eventloop);
    receiver.subscribe("map/#", QoS::AtMostOnce).await?;

    let bar = ProgressBar::new(segs.len() as u64);
    bar.set_style(ProgressStyle::with_template(
        "coverage {bar:40} {pos}/{len} segments {msg}",
    )?);
    let mut have = BTreeSet::new();
    let mut received = 0u64;
    let mut dropped = 0u64;
    let start = Instant::now();
    // Seeded from the clock so that each run loses different messages.
    let mut rng: u64 = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0x9E37_79B9_7F4A_7C15, |d| d.as_nanos() as u64)
        | 1;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while have.len() < segs.len() {
        let Ok(Some(p)) = tokio::time::timeout_at(deadline, incoming.recv()).await else {
            break;
        };
        received += 1;
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        if rng.is_multiple_of(3) {
            dropped += 1; // lost on purpose
            continue;
        }
        let doc: serde_json::Value = serde_json::from_slice(&p.payload)?;
        if let Some(id) = doc["segment"].as_str() {
            have.insert(id.to_string());
        }
        bar.set_position(have.len() as u64);
        bar.set_message(format!("({received} received, {dropped} dropped)"));
    }
    bar.finish();
    if have.len() == segs.len() {
        println!(
            "map complete after {:.1?}: {received} messages received, {dropped} dropped on purpose, gaps filled by the carousel",
            start.elapsed()
        );
    } else {
        println!("map incomplete: {}/{} segments", have.len(), segs.len());
    }
    for y in (0..SIDE).step_by(4) {
        let row: String = (0..SIDE).step_by(2).map(|x| tile(x, y)).collect();
        println!("  {row}");
    }
    broker.shutdown().await;
    if have.len() == segs.len() {
        Ok(())
    } else {
        Err("map incomplete".into())
    }
}
