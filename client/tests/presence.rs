//! End-to-end tests of `canopy presence set|allow|watch` against a Canopy broker started
//! in-process on a free port (anonymous access: the watcher is named by its client id).

// Test helpers outside #[test] functions: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::process::{Output, Stdio};
use std::time::Duration;

use tokio::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_canopy");
/// Upper bound for any single step; generous for a loaded 2-core machine.
const STEP: Duration = Duration::from_secs(20);

async fn run(addr: SocketAddr, args: &[&str]) -> Output {
    let child = Command::new(BIN)
        .arg("presence")
        .args(args)
        .args(["-h", &addr.ip().to_string(), "-p", &addr.port().to_string()])
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_then_allow_then_watch_prints_the_aggregate() {
    let mut cfg = canopy_broker::config::Config::ephemeral();
    cfg.presence.offline_grace = Duration::from_secs(60);
    let broker = canopy_broker::start(cfg).await.unwrap();
    let addr = broker.mqtt_addr();
    let out = run(
        addr,
        &[
            "set",
            "--user",
            "alice",
            "--device",
            "phone",
            "--availability",
            "busy",
            "--note",
            "call",
        ],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    // Not yet allowed: nothing arrives (exit 27 on the timeout).
    let out = run(addr, &["watch", "alice", "-i", "bob", "-C", "1", "-W", "1"]).await;
    assert_eq!(out.status.code(), Some(27), "{}", text(&out.stderr));
    let out = run(addr, &["allow", "alice", "bob"]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    for version in ["3.1.1", "5"] {
        let out = run(
            addr,
            &[
                "watch", "alice", "-V", version, "-i", "bob", "-C", "1", "-W", "10",
            ],
        )
        .await;
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(doc["availability"], "busy");
        assert_eq!(doc["note"], "call");
        assert_eq!(doc["devices"]["phone"]["activity"], "active");
    }
    broker.shutdown().await;
}
