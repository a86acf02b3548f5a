//! End-to-end tests of `canopy config get|set` against a Canopy broker started in-process on a
//! free port with `[config] admins = ["admin"]`: only the admin writes `$config/...`, a client
//! reads its own document (or `$config/default`), 5.0 content types pass through, and a
//! watcher sees every new version. Watchers are started with `--log-level canopy_client=info`
//! and the test waits for their `subscribed` line before writing, so nothing depends on sleeps.

// Test helpers outside #[test] functions: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::process::{Output, Stdio};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const BIN: &str = env!("CARGO_BIN_EXE_canopy");
/// Upper bound for any single step; generous for a loaded 2-core machine.
const STEP: Duration = Duration::from_secs(20);

async fn broker() -> canopy_broker::BrokerHandle {
    let mut cfg = canopy_broker::config::Config::ephemeral();
    cfg.config_docs.admins = vec!["admin".to_owned()];
    canopy_broker::start(cfg).await.unwrap()
}

fn command(action: &str, addr: SocketAddr, args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(["config", action])
        .args(["-h", &addr.ip().to_string(), "-p", &addr.port().to_string()])
        .args(args)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    cmd
}

async fn run(action: &str, addr: SocketAddr, args: &[&str]) -> Output {
    let child = command(action, addr, args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    tokio::time::timeout(STEP, child.wait_with_output())
        .await
        .unwrap()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `canopy config set` as the admin over 5.0; must succeed.
async fn admin_set(addr: SocketAddr, client: &str, document: &str) {
    let out = run(
        "set",
        addr,
        &["-V", "5", "-i", "admin", "--for", client, "-m", document],
    )
    .await;
    assert!(
        out.status.success(),
        "admin set for {client} failed: {}",
        text(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_writes_and_the_client_reads_its_document_on_both_versions() {
    let broker = broker().await;
    let addr = broker.mqtt_addr();
    admin_set(addr, "dev1", "{\"rate\":5}").await;
    for version in ["3.1.1", "5"] {
        let out = run("get", addr, &["-V", version, "-i", "dev1", "-W", "5"]).await;
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        assert_eq!(text(&out.stdout), "{\"rate\":5}\n", "-V {version}");
    }
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_type_passes_through_on_5_0() {
    let broker = broker().await;
    let addr = broker.mqtt_addr();
    let out = run(
        "set",
        addr,
        &[
            "-V",
            "5",
            "-i",
            "admin",
            "--for",
            "dev1",
            "-m",
            "rate = 5",
            "--content-type",
            "application/toml",
        ],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = run("get", addr, &["-V", "5", "-i", "dev1", "-F", "json"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["topic"], "$config/dev1");
    assert_eq!(json["payload"], "rate = 5");
    assert_eq!(json["content_type"], "application/toml");
    assert_eq!(json["retain"], true);
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_is_not_an_admin_is_refused_with_0x87() {
    let broker = broker().await;
    let addr = broker.mqtt_addr();
    let out = run(
        "set",
        addr,
        &["-V", "5", "-i", "dev1", "--for", "dev1", "-m", "{}"],
    )
    .await;
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("refused to write $config/dev1: Not authorized (0x87)"),
        "{stderr}"
    );
    assert!(stderr.contains("[config] admins"), "{stderr}");
    // Nothing was stored: the client still has no document.
    let out = run("get", addr, &["-i", "dev1", "-W", "1"]).await;
    assert_eq!(out.status.code(), Some(27), "{}", text(&out.stdout));
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_document_times_out_with_27() {
    let broker = broker().await;
    let out = run("get", broker.mqtt_addr(), &["-i", "dev9", "-W", "1"]).await;
    assert_eq!(out.status.code(), Some(27));
    assert!(out.stdout.is_empty());
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_without_a_document_gets_the_default_on_its_own_topic() {
    let broker = broker().await;
    let addr = broker.mqtt_addr();
    admin_set(addr, "default", "{\"rate\":1}").await;
    admin_set(addr, "dev1", "{\"rate\":5}").await;
    let out = run("get", addr, &["-V", "5", "-i", "dev2", "-F", "json"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        json["topic"], "$config/dev2",
        "delivered on the client's own topic"
    );
    assert_eq!(json["payload"], "{\"rate\":1}");
    let out = run("get", addr, &["-i", "dev1"]).await;
    assert_eq!(text(&out.stdout), "{\"rate\":5}\n", "its own document wins");
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_cannot_read_another_clients_document() {
    let broker = broker().await;
    let addr = broker.mqtt_addr();
    admin_set(addr, "dev1", "secret").await;
    let out = run(
        "get",
        addr,
        &["-V", "5", "-i", "dev2", "--for", "dev1", "-W", "2"],
    )
    .await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("Not authorized (0x87)"),
        "{}",
        text(&out.stderr)
    );
    assert!(!text(&out.stdout).contains("secret"));
    let out = run("get", addr, &["-i", "dev2", "--for", "dev1", "-W", "2"]).await;
    assert_eq!(out.status.code(), Some(1), "3.1.1: {}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("Failure (0x80)"),
        "{}",
        text(&out.stderr)
    );
    assert!(!text(&out.stdout).contains("secret"));
    let out = run("get", addr, &["-i", "admin", "--for", "dev1"]).await;
    assert_eq!(text(&out.stdout), "secret\n", "admins read every document");
    broker.shutdown().await;
}

/// A running `canopy config get --watch` that has its SUBACK.
async fn start_watch(addr: SocketAddr, id: &str) -> Child {
    let mut child = command("get", addr, &["-i", id, "--watch"])
        .args(["--log-level", "canopy_client=info"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let ready = tokio::time::timeout(STEP, async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if line.contains("subscribed") {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(ready.ok(), Some(true), "watcher did not subscribe");
    child
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_prints_every_new_version() {
    let broker = broker().await;
    let addr = broker.mqtt_addr();
    admin_set(addr, "dev1", "v1").await;
    let mut watcher = start_watch(addr, "dev1").await;
    admin_set(addr, "dev1", "v2").await;
    admin_set(addr, "dev1", "v3").await;
    let mut stdout = BufReader::new(watcher.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    tokio::time::timeout(STEP, async {
        while seen.len() < 3 {
            seen.push(stdout.next_line().await.unwrap().unwrap());
        }
    })
    .await
    .unwrap_or_else(|_| panic!("watcher printed only {seen:?}"));
    assert_eq!(seen, ["v1", "v2", "v3"]);
    watcher.kill().await.unwrap();
    broker.shutdown().await;
}
