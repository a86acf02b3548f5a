//! The `canopy` binary in a cluster (docs/cluster.md): `canopy cluster assign|status`
//! against a root and a joined node, and `canopy sub` following Server Reference — first on
//! CONNACK 0x9C when it connects to the wrong node, then on DISCONNECT 0x9C when its pin
//! moves while it is subscribed.

#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;
use tokio::sync::mpsc;

const BIN: &str = env!("CARGO_BIN_EXE_canopy");
const STEP: Duration = Duration::from_secs(20);

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn node(id: &str, join: Option<SocketAddr>) -> canopy_broker::BrokerHandle {
    let port = free_port();
    let join = join.map_or(String::new(), |r| format!("join = \"mqtt://{r}\"\n"));
    let text = format!(
        "node_id = \"{id}\"\ndurability = \"memory\"\n[[listener]]\nbind = \"127.0.0.1:{port}\"\n\
         [config]\nadmins = [\"ops\"]\n[cluster]\nload_interval = \"300ms\"\n{join}"
    );
    let mut cfg = canopy_broker::config::Config::from_toml(&text, "cluster.toml").unwrap();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    cfg.data_dir = std::env::temp_dir().join(format!("canopy-cli-cluster-{id}-{nanos}"));
    canopy_broker::start(cfg).await.unwrap()
}

/// `canopy <args...> -h <addr> -p <port> <rest...>`.
fn canopy(args: &[&str], addr: SocketAddr, rest: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .args(["-h", &addr.ip().to_string(), "-p", &addr.port().to_string()])
        .args(rest)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    cmd
}

async fn output(mut cmd: Command) -> std::process::Output {
    let out = tokio::time::timeout(STEP, cmd.output())
        .await
        .unwrap()
        .unwrap();
    assert!(
        out.status.success(),
        "failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

async fn wait(mut cond: impl FnMut() -> bool) -> bool {
    for _ in 0..1500 {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

/// Waits for a stderr line containing `text`; returns every line seen.
async fn expect_line(lines: &mut mpsc::UnboundedReceiver<String>, text: &str, seen: &mut String) {
    let found = tokio::time::timeout(STEP, async {
        while let Some(line) = lines.recv().await {
            seen.push_str(&line);
            seen.push('\n');
            if line.contains(text) {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(found, Ok(true), "no {text:?} in stderr:\n{seen}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_follows_server_reference_on_connack_and_on_disconnect() {
    let root = node("root", None).await;
    let n2 = node("n2", Some(root.mqtt_addr())).await;
    let both_up = wait(|| {
        [&root, &n2].iter().all(|b| {
            let nodes = b.cluster().unwrap().nodes();
            nodes.len() == 2 && nodes.iter().all(|r| r.is_up())
        })
    })
    .await;
    assert!(both_up, "{:?}", root.cluster().unwrap().nodes());

    // `canopy cluster assign` as an admin pins the client; `status` lists both nodes.
    output(canopy(
        &["cluster", "assign"],
        root.mqtt_addr(),
        &["-i", "ops", "cli-dev", "n2"],
    ))
    .await;
    assert!(wait(|| root.cluster().unwrap().pin("cli-dev").as_deref() == Some("n2")).await);
    let status = output(canopy(
        &["cluster", "status"],
        root.mqtt_addr(),
        &["-i", "ops"],
    ))
    .await;
    let table = String::from_utf8_lossy(&status.stdout);
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("n2 ") && l.contains(&n2.mqtt_addr().to_string())),
        "{table}"
    );
    assert!(table.lines().any(|l| l.starts_with("root ")), "{table}");

    // `canopy sub` at the root is sent to n2 (CONNACK 0x9C) and subscribes there.
    let mut child = canopy(
        &["sub"],
        root.mqtt_addr(),
        &[
            "-V",
            "5",
            "-i",
            "cli-dev",
            "-t",
            "redir/#",
            "-C",
            "2",
            "-W",
            "60",
            "--log-level",
            "canopy_client=info",
        ],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let (tx, mut lines) = mpsc::unbounded_channel();
    let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
    tokio::spawn(async move {
        while let Ok(Some(line)) = stderr.next_line().await {
            let _ = tx.send(line);
        }
    });
    let mut seen = String::new();
    expect_line(
        &mut lines,
        &format!("redirected to {}", n2.mqtt_addr()),
        &mut seen,
    )
    .await;
    expect_line(&mut lines, "subscribed", &mut seen).await;
    output(canopy(
        &["pub"],
        n2.mqtt_addr(),
        &["-t", "redir/a", "-m", "at-n2", "-q", "1"],
    ))
    .await;

    // Its pin moves back to the root: DISCONNECT 0x9C, and it follows and subscribes again.
    output(canopy(
        &["cluster", "assign"],
        n2.mqtt_addr(),
        &["-i", "ops", "cli-dev", "root"],
    ))
    .await;
    expect_line(
        &mut lines,
        &format!("redirected to {}", root.mqtt_addr()),
        &mut seen,
    )
    .await;
    expect_line(&mut lines, "subscribed", &mut seen).await;
    output(canopy(
        &["pub"],
        root.mqtt_addr(),
        &["-t", "redir/b", "-m", "at-root", "-q", "1"],
    ))
    .await;

    let out = tokio::time::timeout(STEP, child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert!(out.status.success(), "sub failed; stderr:\n{seen}");
    let printed = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        printed.lines().collect::<Vec<_>>(),
        ["at-n2", "at-root"],
        "stderr:\n{seen}"
    );
    n2.shutdown().await;
    root.shutdown().await;
}
