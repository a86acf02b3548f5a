//! End-to-end tests of `canopy resource acquire|reserve|status` against a Canopy broker
//! started in-process on a free port with one resource configured.

// Test helpers outside #[test] functions: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use canopy_broker::config::{Config, ResourceConfig, ResourceMode};
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

const BIN: &str = env!("CARGO_BIN_EXE_canopy");
/// Upper bound for any single step; generous for a loaded 2-core machine.
const STEP: Duration = Duration::from_secs(20);

async fn broker(mode: ResourceMode) -> canopy_broker::BrokerHandle {
    let mut cfg = Config::ephemeral();
    cfg.resource = vec![ResourceConfig {
        name: "lic".to_owned(),
        max_concurrent: 1,
        lease: Duration::from_secs(60),
        queue_limit: 10,
        mode,
        slot: Duration::from_millis(500),
        grace: Duration::ZERO,
    }];
    canopy_broker::start(cfg).await.unwrap()
}

/// A running `canopy resource ...` with its stdout read line by line.
struct Run {
    child: Child,
    out: Lines<BufReader<ChildStdout>>,
}

fn run(addr: SocketAddr, args: &[&str]) -> Run {
    let mut child = Command::new(BIN)
        .arg("resource")
        .args(args)
        .args(["-h", &addr.ip().to_string(), "-p", &addr.port().to_string()])
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let out = BufReader::new(child.stdout.take().unwrap()).lines();
    Run { child, out }
}

impl Run {
    /// The next line of output.
    async fn line(&mut self) -> String {
        tokio::time::timeout(STEP, self.out.next_line())
            .await
            .expect("no output in time")
            .unwrap()
            .expect("output ended")
    }

    /// The rest of the output and the exit status code.
    async fn finish(mut self) -> (Vec<String>, Option<i32>) {
        let mut rest = Vec::new();
        while let Some(line) = tokio::time::timeout(STEP, self.out.next_line())
            .await
            .expect("did not finish in time")
            .unwrap()
        {
            rest.push(line);
        }
        let status = tokio::time::timeout(STEP, self.child.wait())
            .await
            .unwrap()
            .unwrap();
        (rest, status.code())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiter_sees_its_position_then_the_grant_when_the_holder_lets_go() {
    let b = broker(ResourceMode::Queue).await;
    let mut holder = run(
        b.mqtt_addr(),
        &["acquire", "lic", "--hold", "1500ms", "-i", "holder"],
    );
    assert!(
        holder
            .line()
            .await
            .starts_with("granted: grant 1, expires ")
    );
    let mut waiter = run(
        b.mqtt_addr(),
        &[
            "acquire", "lic", "--wait", "--hold", "0.2", "-V", "5", "-i", "waiter",
        ],
    );
    assert_eq!(waiter.line().await, "queued at position 1");
    let (rest, code) = holder.finish().await;
    assert_eq!((rest, code), (vec!["released".to_owned()], Some(0)));
    assert!(
        waiter
            .line()
            .await
            .starts_with("granted: grant 2, expires ")
    );
    let (rest, code) = waiter.finish().await;
    assert_eq!((rest, code), (vec!["released".to_owned()], Some(0)));
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_wait_a_taken_resource_exits_3_and_status_shows_it() {
    let b = broker(ResourceMode::Queue).await;
    let mut holder = run(b.mqtt_addr(), &["acquire", "lic", "--hold", "20s"]);
    assert!(holder.line().await.starts_with("granted: grant 1"));
    let (out, code) = run(b.mqtt_addr(), &["acquire", "lic"]).finish().await;
    assert_eq!(out, ["queued at position 1"]);
    assert_eq!(code, Some(3), "not granted at once");
    let (out, code) = run(b.mqtt_addr(), &["status", "lic"]).finish().await;
    assert_eq!(
        (out, code),
        (vec!["lic: 1/1 in use, 0 waiting".to_owned()], Some(0)),
        "the place of the command that gave up is freed"
    );
    let (out, code) = run(b.mqtt_addr(), &["status"]).finish().await;
    assert_eq!(
        (out, code),
        (vec!["lic: 1/1 in use, 0 waiting".to_owned()], Some(0))
    );
    let (_, code) = run(b.mqtt_addr(), &["status", "nope"]).finish().await;
    assert_eq!(code, Some(1));
    drop(holder);
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reserve_prints_the_slot_holds_it_and_ends_with_it() {
    let b = broker(ResourceMode::Slots).await;
    let mut first = run(b.mqtt_addr(), &["reserve", "lic"]);
    assert!(first.line().await.starts_with("scheduled: slot from "));
    assert!(first.line().await.starts_with("granted: grant 1"));
    let mut second = run(b.mqtt_addr(), &["reserve", "lic"]);
    assert!(second.line().await.starts_with("scheduled: slot from "));
    let (rest, code) = first.finish().await;
    assert_eq!((rest, code), (vec!["slot ended".to_owned()], Some(0)));
    assert!(second.line().await.starts_with("granted: grant 2"));
    let (rest, code) = second.finish().await;
    assert_eq!((rest, code), (vec!["slot ended".to_owned()], Some(0)));
    b.shutdown().await;
}
