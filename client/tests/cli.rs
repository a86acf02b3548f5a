//! End-to-end tests of the `canopy` binary against a Canopy broker started in-process on a
//! free port. Each test starts its own broker; subscribers are started with
//! `--log-level canopy_client=info` and the test waits for their `subscribed` log line (logged
//! on SUBACK) before publishing, so no test depends on sleeping.

// Test helpers outside #[test] functions: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};

const BIN: &str = env!("CARGO_BIN_EXE_canopy");
/// Upper bound for any single step; generous for a loaded 2-core machine.
const STEP: Duration = Duration::from_secs(20);

async fn broker() -> canopy_broker::BrokerHandle {
    canopy_broker::start(canopy_broker::config::Config::ephemeral())
        .await
        .unwrap()
}

fn command(sub: &str, addr: SocketAddr, args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.arg(sub)
        .args(["-h", &addr.ip().to_string(), "-p", &addr.port().to_string()])
        .args(args)
        .env_remove("RUST_LOG")
        .kill_on_drop(true);
    cmd
}

/// A running `canopy sub` that has received its SUBACK.
struct Sub {
    child: Child,
    stderr: String,
}

async fn start_sub(addr: SocketAddr, args: &[&str]) -> Sub {
    let mut child = command("sub", addr, args)
        .args(["--log-level", "canopy_client=info"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut stderr = String::new();
    let ready = tokio::time::timeout(STEP, async {
        while let Some(line) = lines.next_line().await.unwrap() {
            stderr.push_str(&line);
            stderr.push('\n');
            if line.contains("subscribed") {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(
        ready,
        Ok(true),
        "subscriber never got its SUBACK; stderr:\n{stderr}"
    );
    // Keep draining stderr so the child never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Sub { child, stderr }
}

impl Sub {
    async fn finish(mut self) -> (ExitStatus, String) {
        let mut stdout = self.child.stdout.take().unwrap();
        let mut out = Vec::new();
        let status = tokio::time::timeout(STEP, async {
            stdout.read_to_end(&mut out).await.unwrap();
            self.child.wait().await.unwrap()
        })
        .await
        .unwrap_or_else(|_| panic!("subscriber did not exit; stderr:\n{}", self.stderr));
        (status, String::from_utf8_lossy(&out).into_owned())
    }
}

async fn run(sub: &str, addr: SocketAddr, args: &[&str], stdin: &[u8]) -> std::process::Output {
    let mut child = command(sub, addr, args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin).await.unwrap();
    drop(input);
    tokio::time::timeout(STEP, child.wait_with_output())
        .await
        .unwrap()
        .unwrap()
}

async fn publish(addr: SocketAddr, args: &[&str]) {
    let out = run("pub", addr, args, b"").await;
    assert!(
        out.status.success(),
        "pub {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

async fn round_trip_at_every_qos(version: &str) {
    let broker = broker().await;
    let addr = broker.mqtt_addr();
    let sub = start_sub(
        addr,
        &[
            "-V", version, "-t", "rt/#", "-q", "2", "-v", "-C", "3", "-W", "30",
        ],
    )
    .await;
    for qos in ["0", "1", "2"] {
        let topic = format!("rt/q{qos}");
        let payload = format!("message at qos {qos}");
        publish(
            addr,
            &["-V", version, "-t", &topic, "-m", &payload, "-q", qos],
        )
        .await;
    }
    let (status, out) = sub.finish().await;
    assert!(status.success(), "{status:?}");
    assert_eq!(
        out,
        "rt/q0 message at qos 0\nrt/q1 message at qos 1\nrt/q2 message at qos 2\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pub_sub_round_trip_3_1_1_at_qos_0_1_2() {
    round_trip_at_every_qos("3.1.1").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pub_sub_round_trip_5_0_at_qos_0_1_2() {
    round_trip_at_every_qos("5").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_shows_qos_as_the_minimum_of_publish_and_subscription() {
    // [MQTT-3.8.4-6] delivered QoS is the minimum of the published and the granted QoS.
    let broker = broker().await;
    let addr = broker.mqtt_addr();
    let sub = start_sub(
        addr,
        &[
            "-t", "min/#", "-q", "1", "-F", "json", "-C", "2", "-W", "30",
        ],
    )
    .await;
    publish(addr, &["-t", "min/a", "-m", "a", "-q", "2"]).await;
    publish(addr, &["-t", "min/b", "-m", "b", "-q", "0"]).await;
    let (status, out) = sub.finish().await;
    assert!(status.success());
    let qos: Vec<u64> = out
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["qos"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(qos, vec![1, 0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retained_message_reaches_a_later_subscriber_and_r_hides_it() {
    for version in ["3.1.1", "5"] {
        let broker = broker().await;
        let addr = broker.mqtt_addr();
        publish(
            addr,
            &["-V", version, "-t", "ret/x", "-m", "kept", "-r", "-q", "1"],
        )
        .await;
        let out = run(
            "sub",
            addr,
            &[
                "-V", version, "-t", "ret/#", "-C", "1", "-W", "20", "-F", "json",
            ],
            b"",
        )
        .await;
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(json["topic"], "ret/x");
        assert_eq!(json["payload"], "kept");
        // [MQTT-3.3.1-8] a retained message sent because of a new subscription has RETAIN set.
        assert_eq!(json["retain"], true);

        let out = run(
            "sub",
            addr,
            &["-V", version, "-t", "ret/#", "-R", "-W", "1"],
            b"",
        )
        .await;
        assert_eq!(out.status.code(), Some(27));
        assert!(
            out.stdout.is_empty(),
            "stale retained message printed under -R"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn count_stops_after_n_messages_even_if_more_arrive() {
    let broker = broker().await;
    let addr = broker.mqtt_addr();
    let sub = start_sub(addr, &["-t", "cnt", "-C", "2", "-W", "30"]).await;
    let out = run(
        "pub",
        addr,
        &["-t", "cnt", "-l", "-q", "1"],
        b"one\ntwo\nthree\n",
    )
    .await;
    assert!(out.status.success());
    let (status, out) = sub.finish().await;
    assert!(status.success());
    assert_eq!(out, "one\ntwo\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeout_without_messages_exits_27() {
    let broker = broker().await;
    let out = run("sub", broker.mqtt_addr(), &["-t", "silent", "-W", "1"], b"").await;
    assert_eq!(out.status.code(), Some(27));
    assert!(String::from_utf8_lossy(&out.stderr).contains("Timed out"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_properties_and_5_0_metadata_show_in_json() {
    let broker = broker().await;
    let addr = broker.mqtt_addr();
    let sub = start_sub(
        addr,
        &[
            "-V", "5", "-t", "props", "-F", "json", "-C", "1", "-W", "30",
        ],
    )
    .await;
    publish(
        addr,
        &[
            "-V",
            "5",
            "-t",
            "props",
            "-m",
            "body",
            "-q",
            "1",
            "-U",
            "k=v1",
            "-U",
            "k=v2",
            "-U",
            "other=x",
            "--content-type",
            "text/plain",
            "--response-topic",
            "reply/to",
            "--correlation-data",
            "req-7",
        ],
    )
    .await;
    let (status, out) = sub.finish().await;
    assert!(status.success());
    let json: serde_json::Value = serde_json::from_str(out.trim_end()).unwrap();
    // [MQTT-3.3.2-18] user properties are forwarded unaltered and in order.
    assert_eq!(
        json["user_properties"],
        serde_json::json!([
            {"key": "k", "value": "v1"}, {"key": "k", "value": "v2"}, {"key": "other", "value": "x"}
        ])
    );
    assert_eq!(json["content_type"], "text/plain");
    assert_eq!(json["response_topic"], "reply/to");
    assert_eq!(json["correlation_data"], "req-7");
    assert_eq!(json["payload"], "body");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdin_is_one_message_by_default_and_one_per_line_with_l() {
    let broker = broker().await;
    let addr = broker.mqtt_addr();
    let sub = start_sub(addr, &["-t", "in/#", "-v", "-C", "3", "-W", "30"]).await;
    let out = run("pub", addr, &["-t", "in/all", "-q", "1"], b"first\nsecond").await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run(
        "pub",
        addr,
        &["-t", "in/line", "-l", "-q", "2"],
        b"a\r\nb\n",
    )
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (status, out) = sub.finish().await;
    assert!(status.success());
    assert_eq!(out, "in/all first\nsecond\nin/line a\nin/line b\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_payload_from_a_file_comes_back_as_base64() {
    let broker = broker().await;
    let addr = broker.mqtt_addr();
    let path = std::env::temp_dir().join(format!("canopy-cli-bin-{}", std::process::id()));
    std::fs::write(&path, [0u8, 0xff, 0x10, 0x80]).unwrap();
    let sub = start_sub(
        addr,
        &["-V", "5", "-t", "bin", "-F", "json", "-C", "1", "-W", "30"],
    )
    .await;
    publish(
        addr,
        &[
            "-V",
            "5",
            "-t",
            "bin",
            "-f",
            path.to_str().unwrap(),
            "-q",
            "1",
        ],
    )
    .await;
    let (status, out) = sub.finish().await;
    let _ = std::fs::remove_file(&path);
    assert!(status.success());
    let json: serde_json::Value = serde_json::from_str(out.trim_end()).unwrap();
    assert_eq!(json["payload_base64"], "AP8QgA==");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_broker_is_a_clear_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let out = run(
        "pub",
        addr,
        &["-t", "a", "-m", "x", "--connect-timeout", "3"],
        b"",
    )
    .await;
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cannot connect"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_only_option_on_3_1_1_fails_before_connecting() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let out = run("pub", addr, &["-t", "a", "-m", "x", "-U", "k=v"], b"").await;
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("requires MQTT 5.0"));
    listener.set_nonblocking(true).unwrap();
    assert!(listener.accept().is_err(), "the client connected anyway");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connack_refusal_is_reported_with_its_code() {
    let mut config = canopy_broker::config::Config::ephemeral();
    config.auth.allow_anonymous = Some(false);
    let broker = canopy_broker::start(config).await.unwrap();
    let addr = broker.mqtt_addr();
    let out = run("pub", addr, &["-t", "a", "-m", "x"], b"").await;
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("connection refused by the broker: not authorized (return code 5)"),
        "{stderr}"
    );
    let out = run("sub", addr, &["-V", "5", "-t", "a"], b"").await;
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("Not authorized (0x87)"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_publish_exits_1_with_the_reason_code() {
    // Canopy refuses client writes under $SYS; 5.0 says so in PUBACK / PUBREC.
    let broker = broker().await;
    let addr = broker.mqtt_addr();
    for qos in ["1", "2"] {
        let out = run(
            "pub",
            addr,
            &["-V", "5", "-t", "$SYS/mine", "-m", "x", "-q", qos],
            b"",
        )
        .await;
        assert_eq!(out.status.code(), Some(1), "qos {qos}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("refused the message: Not authorized (0x87)"),
            "{stderr}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_subscriptions_are_named_and_all_refused_exits_1() {
    // `$share/g` without a filter is not a valid shared subscription [MQTT-4.8.2-1].
    let broker = broker().await;
    let addr = broker.mqtt_addr();
    for (version, name) in [
        ("3.1.1", "Failure (0x80)"),
        ("5", "Topic Filter invalid (0x8F)"),
    ] {
        let out = run(
            "sub",
            addr,
            &["-V", version, "-t", "$share/g", "-W", "10"],
            b"",
        )
        .await;
        assert_eq!(out.status.code(), Some(1), "{version}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(&format!("subscription to `$share/g` refused: {name}")),
            "{stderr}"
        );
        assert!(
            stderr.contains("all subscription requests were denied"),
            "{stderr}"
        );
    }
    // One good filter among refused ones keeps the subscriber running.
    let sub = start_sub(
        addr,
        &[
            "-V", "5", "-t", "$share/g", "-t", "fine", "-C", "1", "-W", "30",
        ],
    )
    .await;
    publish(addr, &["-t", "fine", "-m", "still here"]).await;
    let (status, out) = sub.finish().await;
    assert!(status.success());
    assert_eq!(out, "still here\n");
}
