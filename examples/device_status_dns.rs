//! Device status via publish/subscribe and DNS (the seed's "status of a device that cannot be
//! pinged", docs/status.md): the broker keeps a retained `$status/<client-id>` document for
//! every client it has seen, and its DNS listener answers `<client-id>.status.<zone>` from
//! those documents, so a system that only knows DNS (and ping) can ask whether a device is
//! online.
//!
//! What to watch in the output:
//! - a monitor subscribed to `$status/sensor-7` prints `online`, then `offline` with the
//!   reason `connection lost` when the device's connection drops without DISCONNECT;
//! - the DNS lines (queries made with hickory-proto, no `dig` needed): the A record of
//!   `sensor-7.status.canopy.local` is `127.0.0.1` (good_ip) while it is online and
//!   `127.0.0.2` (bad_ip) after, its TXT record is the status document, and a device never
//!   seen is `127.0.0.2` too;
//! - a client id that is not a DNS label (`kitchen/sensor 1`) is asked for under its
//!   base32 `x--...` label.
//!
//! Everything runs in this process on loopback ports and stops by itself (at most 30 s).
//!
//! Run: `cargo run -p canopy-examples --example device_status_dns`.

#[path = "support/mod.rs"]
mod support;

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use canopy_broker::config::Config;
use canopy_broker::services::dns::client_id_to_label;
use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, RData, RecordType};
use serde_json::Value;
use support::{BoxError, Clock, Peer, Seen};
use tokio::net::UdpSocket;

const ZONE: &str = "canopy.local";

/// Asks `server` one question over UDP; the answers as text (A: the address, TXT: the
/// joined strings).
async fn ask(server: SocketAddr, name: &str, qtype: RecordType) -> Result<Vec<String>, BoxError> {
    let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await?;
    let mut q = Message::new(0x4242, MessageType::Query, OpCode::Query);
    q.add_query(Query::query(Name::from_ascii(name)?, qtype));
    socket.send_to(&q.to_vec()?, server).await?;
    let mut buf = [0u8; 1500];
    let (len, _) = tokio::time::timeout(Duration::from_secs(5), socket.recv_from(&mut buf))
        .await
        .map_err(|_| "no DNS answer within 5 s")??;
    let answer = Message::from_vec(buf.get(..len).ok_or("short datagram")?)?;
    Ok(answer
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.0.to_string()),
            RData::TXT(t) => Some(
                t.txt_data
                    .iter()
                    .map(|s| String::from_utf8_lossy(s).into_owned())
                    .collect(),
            ),
            _ => None,
        })
        .collect())
}

/// Asks for the A record of `id` until it is `want` (the status follows the connection by a
/// moment), at most 5 s; prints and returns the answer.
async fn a_record(dns: SocketAddr, id: &str, want: &str, clock: Clock) -> Result<(), BoxError> {
    let name = format!("{}.status.{ZONE}.", client_id_to_label(id));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let got = ask(dns, &name, RecordType::A).await?;
        if got == [want] || tokio::time::Instant::now() > deadline {
            clock.say("dns", format!("A   {name} -> {}", got.join(" ")));
            if got != [want] {
                return Err(format!("{name}: expected {want}, got {got:?}").into());
            }
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits for the monitor's next status document and prints it: its `state`.
async fn status(monitor: &mut Peer, clock: Clock) -> Result<String, BoxError> {
    loop {
        match monitor.next(Duration::from_secs(10)).await {
            Some(Seen::Message { topic, payload, .. }) => {
                let doc: Value = serde_json::from_slice(&payload)?;
                clock.say(
                    "monitor",
                    format!(
                        "{topic}: {} ({})",
                        doc["state"].as_str().unwrap_or("?"),
                        doc["reason"].as_str().unwrap_or("?")
                    ),
                );
                return Ok(doc["state"].as_str().unwrap_or_default().to_owned());
            }
            Some(_) => continue,
            None => return Err("no status document within 10 s".into()),
        }
    }
}

async fn run(mqtt: SocketAddr, dns: SocketAddr, clock: Clock) -> Result<(), BoxError> {
    let mut monitor = Peer::connect("monitor", mqtt, None).await?;
    monitor.subscribe("$status/sensor-7").await?;
    clock.say("monitor", "subscribes to $status/sensor-7");
    a_record(dns, "sensor-7", "127.0.0.2", clock).await?;

    let device = Peer::connect("sensor-7", mqtt, None).await?;
    clock.say("sensor-7", "connects");
    if status(&mut monitor, clock).await? != "online" {
        return Err("sensor-7 should be online".into());
    }
    a_record(dns, "sensor-7", "127.0.0.1", clock).await?;
    let name = format!("sensor-7.status.{ZONE}.");
    let txt = ask(dns, &name, RecordType::TXT).await?;
    clock.say("dns", format!("TXT {name} -> {}", txt.join(" ")));

    let kitchen = Peer::connect("kitchen/sensor 1", mqtt, None).await?;
    clock.say(
        "kitchen",
        format!(
            "\"kitchen/sensor 1\" connects; its DNS label is {}",
            client_id_to_label("kitchen/sensor 1")
        ),
    );
    a_record(dns, "kitchen/sensor 1", "127.0.0.1", clock).await?;
    a_record(dns, "never-seen", "127.0.0.2", clock).await?;

    device.task.abort(); // the device's connection drops without DISCONNECT
    clock.say("sensor-7", "connection drops (no DISCONNECT)");
    if status(&mut monitor, clock).await? != "offline" {
        return Err("sensor-7 should be offline".into());
    }
    a_record(dns, "sensor-7", "127.0.0.2", clock).await?;
    kitchen.client.disconnect().await?;
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let mut cfg = Config::ephemeral();
    cfg.dns.listen = Some(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)));
    cfg.dns.zone = ZONE.to_owned();
    let broker = canopy_broker::start(cfg).await?;
    let mqtt = broker.mqtt_addr();
    let dns = broker.dns_addr().ok_or("the DNS listener is not bound")?;
    println!("broker: MQTT on {mqtt}, DNS (UDP) on {dns}, zone {ZONE}\n");
    let result =
        tokio::time::timeout(Duration::from_secs(30), run(mqtt, dns, Clock::start())).await;
    broker.shutdown().await;
    result.map_err(|_| "the example did not finish within 30 s")??;
    Ok(())
}
