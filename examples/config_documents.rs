//! Configuration documents (the seed's "configuration document sent on request or when it
//! changes", docs/config-documents.md): every device's settings are a retained message on
//! `$config/<client-id>`, with `$config/default` for devices that have none of their own.
//! A device subscribes to its own document when it starts and is told of every new version.
//!
//! What to watch in the output:
//! - `dev1` starts after the operator wrote its document and gets it at once (`stored`);
//! - `dev2` has no document: it gets `$config/default`, delivered on its own topic
//!   `$config/dev2`;
//! - `dev2` asking for `dev1`'s document is refused (only admins may read others');
//! - the operator changes dev1's document and the default: both devices get the new
//!   version live;
//! - once dev2 has a document of its own, a later change of the default no longer reaches it;
//! - the last lines are each device's settings.
//!
//! Everything runs in this process on a loopback port and stops by itself (at most 30 s).
//!
//! Run: `cargo run -p canopy-examples --example config_documents`.

#[path = "support/mod.rs"]
mod support;

use std::time::Duration;

use canopy_broker::config::Config;
use rumqttc::QoS;
use support::{BoxError, Clock, Peer, Seen};

/// The operator's client id, listed in `[config] admins`.
const ADMIN: &str = "ops-console";

/// Prints every document that arrived for `who`; the last one.
fn show(who: &str, seen: Vec<Seen>, clock: Clock) -> Option<String> {
    let mut last = None;
    for s in seen {
        if let Seen::Message {
            topic,
            payload,
            retain,
        } = s
        {
            let text = String::from_utf8_lossy(&payload).into_owned();
            let how = if retain { "stored" } else { "live" };
            clock.say(who, format!("{topic} [{how}]: {text}"));
            last = Some(text);
        }
    }
    last
}

async fn write(ops: &Peer, id: &str, doc: &str, clock: Clock) -> Result<(), BoxError> {
    let topic = format!("$config/{id}");
    ops.client
        .publish(&topic, QoS::AtLeastOnce, true, doc.to_owned())
        .await?;
    clock.say("operator", format!("writes {topic} = {doc}"));
    Ok(())
}

async fn run(addr: std::net::SocketAddr, clock: Clock) -> Result<(), BoxError> {
    let mut ops = Peer::connect(ADMIN, addr, None).await?;
    // The operator follows every document (admins may): once both come back, they are stored.
    ops.subscribe("$config/#").await?;
    write(&ops, "default", r#"{"rate":60,"log":"warn"}"#, clock).await?;
    write(&ops, "dev1", r#"{"rate":5,"log":"debug"}"#, clock).await?;
    ops.expect(2).await;

    let mut devices = Vec::new();
    for id in ["dev1", "dev2"] {
        let mut dev = Peer::connect(id, addr, None).await?;
        let filter = format!("$config/{id}");
        let (granted, mut seen) = dev.subscribe(&filter).await?;
        clock.say(
            id,
            format!("starts, subscribes to {filter}: granted = {granted}"),
        );
        seen.extend(dev.expect(1usize.saturating_sub(seen.len())).await);
        let last = show(id, seen, clock).ok_or(format!("{id}: no document"))?;
        devices.push((id, dev, last));
    }

    let (granted, _) = devices[1].1.subscribe("$config/dev1").await?;
    clock.say(
        "dev2",
        format!("subscribes to $config/dev1: granted = {granted}"),
    );
    if granted {
        return Err("dev2 could read dev1's document".into());
    }

    write(&ops, "dev1", r#"{"rate":10,"log":"debug"}"#, clock).await?;
    write(&ops, "default", r#"{"rate":30,"log":"warn"}"#, clock).await?;
    for (id, dev, last) in devices.iter_mut() {
        if let Some(l) = show(id, dev.expect(1).await, clock) {
            *last = l;
        }
    }

    write(&ops, "dev2", r#"{"rate":1,"log":"info"}"#, clock).await?;
    write(&ops, "default", r#"{"rate":15,"log":"warn"}"#, clock).await?;
    for (id, dev, last) in devices.iter_mut() {
        // dev2 gets its own document; dev1 nothing (its document did not change).
        let n = usize::from(*id == "dev2");
        if let Some(l) = show(id, dev.expect(n).await, clock) {
            *last = l;
        }
    }

    println!();
    let want = [
        ("dev1", r#"{"rate":10,"log":"debug"}"#),
        ("dev2", r#"{"rate":1,"log":"info"}"#),
    ];
    for ((id, _, last), (_, expected)) in devices.iter().zip(want) {
        clock.say(id, format!("settings now: {last}"));
        if last != expected {
            return Err(format!("{id}: expected {expected}").into());
        }
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let mut cfg = Config::ephemeral();
    cfg.config_docs.admins = vec![ADMIN.to_owned()];
    let broker = canopy_broker::start(cfg).await?;
    let addr = broker.mqtt_addr();
    println!("broker on {addr}; [config] admins = [\"{ADMIN}\"]\n");
    let result = tokio::time::timeout(Duration::from_secs(30), run(addr, Clock::start())).await;
    broker.shutdown().await;
    result.map_err(|_| "the example did not finish within 30 s")??;
    Ok(())
}
