//! Event-activated subscriptions (docs/activation.md): a viewer registers a subscription to
//! a camera's frames that is switched on by an alarm and off again when the alarm ends.
//! While it is off it receives nothing and costs the broker nothing; on activation it gets
//! the retained messages that arrived meanwhile, then live ones. The registration is a JSON
//! document on `$ctl/subscribe`, so it works over MQTT 3.1.1 (MQTT 5.0 clients can use
//! SUBSCRIBE user properties instead).
//!
//! What to watch in the output:
//! - frames 1-3 are published while the subscription is off: the viewer prints nothing;
//! - `alarm/zone3/on` switches it on: the viewer first gets the retained snapshot stored
//!   while it was off (`stored`), then frames 4-6 live;
//! - `alarm/zone3/off` switches it off: frames 7-9 do not arrive;
//! - `$SYS/broker/subscriptions/inactive` counts the subscription while it is off;
//! - the last line lists what the viewer received.
//!
//! Everything runs in this process on a loopback port and stops by itself (at most 30 s).
//!
//! Run: `cargo run -p canopy-examples --example activated_subscriptions`.

#[path = "support/mod.rs"]
mod support;

use std::time::Duration;

use canopy_broker::config::Config;
use rumqttc::QoS;
use support::{BoxError, Clock, Peer, Seen};

const REGISTRATION: &str = r#"{"filter":"camera/7/frames/#","qos":1,"activate_on":"alarm/zone3/on","deactivate_on":"alarm/zone3/off"}"#;

/// What the viewer received, printed; each as `payload` (`payload (stored)` when retained).
fn show(seen: Vec<Seen>, clock: Clock, got: &mut Vec<String>) {
    let before = got.len();
    for s in seen {
        if let Seen::Message {
            topic,
            payload,
            retain,
        } = s
        {
            let text = String::from_utf8_lossy(&payload).into_owned();
            let how = if retain { "stored" } else { "live" };
            clock.say("viewer", format!("receives {topic} [{how}]: {text}"));
            got.push(text);
        }
    }
    if got.len() == before {
        clock.say("viewer", "receives nothing");
    }
}

/// The camera (and the alarm, from the same site client, so their order is kept) publish.
async fn send(site: &Peer, topic: &str, payload: &str, retain: bool) -> Result<(), BoxError> {
    site.client
        .publish(topic, QoS::AtLeastOnce, retain, payload.to_owned())
        .await?;
    Ok(())
}

/// The latest value of `$SYS/broker/subscriptions/inactive` within 1.5 s.
async fn inactive(stats: &mut Peer) -> Result<String, BoxError> {
    let mut last = None;
    let deadline = tokio::time::Instant::now() + Duration::from_millis(1500);
    while tokio::time::Instant::now() < deadline {
        if let Some(Seen::Message { payload, .. }) = stats.next(Duration::from_millis(200)).await {
            last = Some(String::from_utf8_lossy(&payload).into_owned());
        }
    }
    last.ok_or_else(|| "no $SYS/broker/subscriptions/inactive within 1.5 s".into())
}

async fn run(addr: std::net::SocketAddr, clock: Clock) -> Result<(), BoxError> {
    let quiet = Duration::from_millis(500);
    let mut viewer = Peer::connect("viewer", addr, None).await?;
    viewer
        .client
        .publish("$ctl/subscribe", QoS::AtLeastOnce, false, REGISTRATION)
        .await?;
    clock.say(
        "viewer",
        format!("registers on $ctl/subscribe: {REGISTRATION}"),
    );
    // Handled in order after the registration: once granted, the registration is in place.
    viewer.subscribe("$ctl/errors/viewer").await?;
    let mut stats = Peer::connect("stats", addr, None).await?;
    stats
        .subscribe("$SYS/broker/subscriptions/inactive")
        .await?;

    let site = Peer::connect("site", addr, None).await?;
    let mut got = Vec::new();
    for n in 1..=3 {
        send(
            &site,
            &format!("camera/7/frames/{n}"),
            &format!("frame-{n}"),
            false,
        )
        .await?;
    }
    send(
        &site,
        "camera/7/frames/snapshot",
        "snapshot-during-quiet",
        true,
    )
    .await?;
    clock.say("camera", "publishes frame-1..3 and a retained snapshot");
    show(viewer.drain(quiet).await, clock, &mut got);
    clock.say(
        "stats",
        format!(
            "$SYS/broker/subscriptions/inactive = {}",
            inactive(&mut stats).await?
        ),
    );

    send(&site, "alarm/zone3/on", "1", false).await?;
    clock.say("alarm", "publishes alarm/zone3/on");
    for n in 4..=6 {
        send(
            &site,
            &format!("camera/7/frames/{n}"),
            &format!("frame-{n}"),
            false,
        )
        .await?;
    }
    clock.say("camera", "publishes frame-4..6");
    show(viewer.expect(4).await, clock, &mut got);
    clock.say(
        "stats",
        format!(
            "$SYS/broker/subscriptions/inactive = {}",
            inactive(&mut stats).await?
        ),
    );

    send(&site, "alarm/zone3/off", "1", false).await?;
    clock.say("alarm", "publishes alarm/zone3/off");
    for n in 7..=9 {
        send(
            &site,
            &format!("camera/7/frames/{n}"),
            &format!("frame-{n}"),
            false,
        )
        .await?;
    }
    clock.say("camera", "publishes frame-7..9");
    show(viewer.drain(quiet).await, clock, &mut got);

    println!();
    clock.say("viewer", format!("received in all: {}", got.join(", ")));
    let want = ["snapshot-during-quiet", "frame-4", "frame-5", "frame-6"];
    if got != want {
        return Err(format!("expected {want:?}").into());
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let mut cfg = Config::ephemeral();
    cfg.sys_interval = Duration::from_millis(500);
    let broker = canopy_broker::start(cfg).await?;
    let addr = broker.mqtt_addr();
    println!("broker on {addr}\n");
    let result = tokio::time::timeout(Duration::from_secs(30), run(addr, Clock::start())).await;
    broker.shutdown().await;
    result.map_err(|_| "the example did not finish within 30 s")??;
    Ok(())
}
