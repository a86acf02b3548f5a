//! The device-side presence agent against Debian's `mosquitto` (a broker without a presence
//! agent): aggregation of a user's devices, at most one acting agent, and failover when the
//! acting one dies. Fails with the install command when mosquitto is missing, unless
//! `CANOPY_SKIP_EXTERNAL=1`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use canopy_client::adapter::{self, Client, Event, Options, QoS, Version};
use canopy_client::presence_agent;
use serde_json::Value;
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

const STEP: Duration = Duration::from_secs(10);

fn mosquitto() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/usr/local/sbin".into()])
        .map(|d| d.join("mosquitto"))
        .find(|p| p.is_file());
    if found.is_none() {
        assert_eq!(
            std::env::var("CANOPY_SKIP_EXTERNAL").as_deref(),
            Ok("1"),
            "mosquitto is not installed: apt-get install -y mosquitto (or set CANOPY_SKIP_EXTERNAL=1)"
        );
        eprintln!("skipped: mosquitto is not installed and CANOPY_SKIP_EXTERNAL=1");
    }
    found
}

/// A throwaway mosquitto on a free port, anonymous access; killed on drop.
async fn start_mosquitto(bin: &PathBuf) -> (Child, u16) {
    let dir = std::env::temp_dir().join(format!("canopy-presence-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for _ in 0..5 {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let conf = dir.join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!("listener {port} 127.0.0.1\nallow_anonymous true\n"),
        )
        .unwrap();
        let mut child = Command::new(bin)
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return (child, port);
            }
            if child.try_wait().unwrap().is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = child.kill().await;
    }
    panic!("mosquitto did not start");
}

/// A plain client whose events arrive on a channel (polled in a task of its own).
fn client(port: u16, id: &str) -> (Client, mpsc::Receiver<Event>) {
    let (c, mut conn) = Options::new(Version::V311, id, "127.0.0.1", port).connect();
    let (tx, rx) = mpsc::channel(256);
    tokio::spawn(async move {
        while let Ok(e) = conn.poll().await {
            if tx.send(e).await.is_err() {
                return;
            }
        }
    });
    (c, rx)
}

async fn publish(c: &Client, topic: &str, payload: &str) {
    let p = adapter::new_publish(
        topic,
        QoS::AtLeastOnce,
        true,
        payload.as_bytes().to_vec(),
        None,
    );
    c.publish(p).await.unwrap();
}

/// The next aggregate of `$presence/alice` satisfying `want`.
async fn aggregate_where(rx: &mut mpsc::Receiver<Event>, want: impl Fn(&Value) -> bool) -> Value {
    tokio::time::timeout(STEP, async {
        loop {
            if let Some(Event::Publish(p)) = rx.recv().await
                && &p.topic[..] == b"$presence/alice"
            {
                let doc: Value = serde_json::from_slice(&p.payload).unwrap();
                if want(&doc) {
                    return doc;
                }
            }
        }
    })
    .await
    .expect("the aggregate did not arrive in time")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_device_aggregates_and_another_takes_over_when_it_dies() {
    let Some(bin) = mosquitto() else {
        return;
    };
    let (_mosq, port) = start_mosquitto(&bin).await;
    let probe = Options::new(Version::V311, "probe", "127.0.0.1", port);
    assert!(
        !presence_agent::broker_runs_agent(probe, Duration::from_millis(500)).await,
        "mosquitto has no agent"
    );
    let (phone, _p) = client(port, "alice-phone");
    let (laptop, _l) = client(port, "alice-laptop");
    publish(
        &phone,
        "$presence/alice/devices/phone",
        r#"{"availability":"busy","activity":"idle"}"#,
    )
    .await;
    publish(
        &laptop,
        "$presence/alice/devices/laptop",
        r#"{"availability":"do-not-disturb","activity":"active"}"#,
    )
    .await;

    let opts = |id: &str| Options::new(Version::V311, id, "127.0.0.1", port);
    let mut first = presence_agent::spawn(opts("alice-agent-1"), "alice");
    assert!(
        first.wait_acting(true, STEP).await,
        "the first agent claims"
    );
    let mut second = presence_agent::spawn(opts("alice-agent-2"), "alice");
    tokio::time::sleep(presence_agent::SETTLE * 3).await;
    assert!(
        first.is_acting() && !second.is_acting(),
        "one agent at a time"
    );

    let (watcher, mut w) = client(port, "bob");
    let f = adapter::filter("$presence/alice", QoS::AtLeastOnce, false, false, 0);
    watcher.subscribe(vec![f], None).await.unwrap();
    let doc = aggregate_where(&mut w, |d| {
        d["devices"].as_object().is_some_and(|m| m.len() == 2)
    })
    .await;
    assert_eq!(doc["availability"], "busy");
    assert_eq!(doc["activity"], "active");

    // The acting agent dies: its will releases the claim and the other takes over.
    first.kill();
    assert!(second.wait_acting(true, STEP).await, "failover");
    publish(
        &phone,
        "$presence/alice/devices/phone",
        r#"{"availability":"available","activity":"active"}"#,
    )
    .await;
    let doc = aggregate_where(&mut w, |d| d["availability"] == "available").await;
    assert_eq!(doc["devices"]["phone"]["activity"], "active");
    second.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canopy_broker_advertises_its_agent_and_a_disabled_one_does_not() {
    for enabled in [true, false] {
        let mut cfg = canopy_broker::config::Config::ephemeral();
        cfg.presence.enabled = enabled;
        let broker = canopy_broker::start(cfg).await.unwrap();
        let addr = broker.mqtt_addr();
        let probe = Options::new(Version::V5, "probe", addr.ip().to_string(), addr.port());
        assert_eq!(
            presence_agent::broker_runs_agent(probe, STEP).await,
            enabled
        );
        broker.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_device_side_agent_serves_a_canopy_broker_whose_agent_is_disabled() {
    let mut cfg = canopy_broker::config::Config::ephemeral();
    cfg.presence.enabled = false;
    let broker = canopy_broker::start(cfg).await.unwrap();
    let port = broker.mqtt_addr().port();
    let (phone, _p) = client(port, "alice-phone");
    publish(
        &phone,
        "$presence/alice/devices/phone",
        r#"{"availability":"busy","activity":"idle"}"#,
    )
    .await;
    let opts = Options::new(Version::V5, "alice-agent", "127.0.0.1", port);
    let mut agent = presence_agent::spawn(opts, "alice");
    assert!(agent.wait_acting(true, STEP).await);
    let (watcher, mut w) = client(port, "bob");
    let f = adapter::filter("$presence/alice", QoS::AtLeastOnce, false, false, 0);
    watcher.subscribe(vec![f], None).await.unwrap();
    let doc = aggregate_where(&mut w, |d| d["availability"] == "busy").await;
    assert_eq!(doc["devices"]["phone"]["activity"], "idle");
    agent.stop().await;
    broker.shutdown().await;
}
