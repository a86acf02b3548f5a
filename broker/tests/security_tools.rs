//! TLS and WebSocket listeners against the clients people really use: mosquitto_sub and
//! mosquitto_pub with `--cafile` (and a client certificate mapped to a user), paho-mqtt over
//! TLS, WebSocket and secure WebSocket, and MQTT.js run by node over ws:// and wss://.
//! Certificates are generated at run time. A missing tool fails the test with the command
//! that installs it; MQTT.js itself is installed by npm into the target directory on first use.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod security_support;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use security_support::*;
use tokio::process::Command;

/// Pinned MQTT.js version, installed with npm into the target directory.
const MQTT_JS: &str = "mqtt@5.16.0";
const RUN: Duration = Duration::from_secs(60);

fn require(tool: &str, install: &str) {
    let found = std::process::Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(found, "{tool} is not installed; install it with: {install}");
}

/// Runs a command to completion within [`RUN`]; returns (success, stdout + stderr).
async fn run(cmd: &mut Command) -> (bool, String) {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let out = tokio::time::timeout(RUN, cmd.output())
        .await
        .expect("the client did not finish in time")
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mosquitto_clients_over_tls_with_cafile_and_a_client_certificate() {
    require("mosquitto_sub", "apt-get install -y mosquitto-clients");
    let dir = Dir::new("mosq");
    let pki = pki(&dir);
    let mut with_cert = listener(Some(&pki), true, false);
    with_cert.use_identity_as_username = true;
    let mut cfg = config(vec![listener(Some(&pki), false, false), with_cert]);
    cfg.auth.acl_file = Some(dir.write(
        "acl",
        "topic readwrite open/#\nuser alice\ntopic readwrite alice/#\n",
    ));
    let broker = canopy_broker::start(cfg).await.unwrap();
    let (tls, mtls) = (broker.mqtt_addrs()[0], broker.mqtt_addrs()[1]);
    let ca = pki.ca.to_str().unwrap();
    for (version, topic) in [("mqttv311", "open/v3"), ("mqttv5", "open/v5")] {
        let sub = Command::new("mosquitto_sub")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &tls.port().to_string(),
                "--cafile",
                ca,
            ])
            .args(["-V", version, "-t", topic, "-C", "1", "-W", "20"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        // Publish until the subscriber (which may not be subscribed yet) has its message.
        let publisher = async {
            for _ in 0..40 {
                let (ok, text) = run(Command::new("mosquitto_pub")
                    .args([
                        "-h",
                        "127.0.0.1",
                        "-p",
                        &tls.port().to_string(),
                        "--cafile",
                        ca,
                    ])
                    .args(["-V", version, "-t", topic, "-m", "over-tls"]))
                .await;
                assert!(ok, "mosquitto_pub --cafile failed: {text}");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        };
        let out = tokio::select! {
            out = sub.wait_with_output() => out.unwrap(),
            () = publisher => panic!("mosquitto_sub --cafile received nothing"),
        };
        assert!(out.status.success(), "{out:?}");
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "over-tls");
    }
    // The client certificate's CN (alice) is the user: the ACL lets it write alice/#.
    let cert = pki.client_cert.to_str().unwrap();
    let key = pki.client_key.to_str().unwrap();
    let (ok, text) = run(Command::new("mosquitto_pub")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &mtls.port().to_string(),
            "--cafile",
            ca,
        ])
        .args(["--cert", cert, "--key", key, "-V", "mqttv5", "-q", "1"])
        .args(["-t", "alice/x", "-m", "as-alice"]))
    .await;
    assert!(ok, "publish as alice: {text}");
    let (ok, text) = run(Command::new("mosquitto_pub")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &mtls.port().to_string(),
            "--cafile",
            ca,
        ])
        .args(["-V", "mqttv5", "-t", "alice/x", "-m", "no-cert"]))
    .await;
    assert!(!ok, "connected without a client certificate: {text}");
    broker.shutdown().await;
}

const PAHO: &str = r#"
import sys, threading
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
host, port, transport, ca, proto = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
version = mqtt.MQTTv5 if proto == "5" else mqtt.MQTTv311
c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"paho-{transport}-{proto}-{ca != '-'}",
                protocol=version, transport=transport)
if transport == "websockets":
    c.ws_set_options(path="/mqtt")
if ca != "-":
    c.tls_set(ca_certs=ca)
payload = bytes(range(256)) * 400
got = threading.Event()
failed = []
def on_connect(cl, ud, flags, rc, props):
    if rc != 0:
        failed.append(f"CONNACK {rc}")
        got.set()
    else:
        cl.subscribe("paho/t", qos=1)
def on_subscribe(cl, ud, mid, rcs, props):
    cl.publish("paho/t", payload, qos=1)
def on_message(cl, ud, msg):
    if msg.payload == payload:
        got.set()
c.on_connect, c.on_subscribe, c.on_message = on_connect, on_subscribe, on_message
c.connect(host, port, keepalive=30)
c.loop_start()
ok = got.wait(20) and not failed
c.disconnect()
c.loop_stop()
print("ok" if ok else f"failed {failed}")
sys.exit(0 if ok else 1)
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paho_over_tls_websocket_and_secure_websocket() {
    require("python3", "apt-get install -y python3");
    let (ok, text) = run(Command::new("python3").args(["-c", "import paho.mqtt"])).await;
    assert!(
        ok,
        "paho-mqtt is missing; install it with: pip install 'paho-mqtt>=2,<3' ({text})"
    );
    let dir = Dir::new("paho");
    let pki = pki(&dir);
    let broker = canopy_broker::start(config(vec![
        listener(Some(&pki), false, false),
        listener(None, false, true),
        listener(Some(&pki), false, true),
    ]))
    .await
    .unwrap();
    let a = broker.mqtt_addrs().to_vec();
    let ca = pki.ca.to_str().unwrap().to_owned();
    let cases = [
        (a[0], "tcp", ca.as_str()),
        (a[1], "websockets", "-"),
        (a[2], "websockets", ca.as_str()),
    ];
    for (addr, transport, ca) in cases {
        for proto in ["3", "5"] {
            let (ok, text) = run(Command::new("python3").args([
                "-c",
                PAHO,
                "127.0.0.1",
                &addr.port().to_string(),
                transport,
                ca,
                proto,
            ]))
            .await;
            assert!(ok, "paho {transport} tls={} v{proto}: {text}", ca != "-");
        }
    }
    broker.shutdown().await;
}

const MQTT_JS_SCRIPT: &str = r#"
const mqtt = require('mqtt');
const fs = require('fs');
const [url, ca, proto] = process.argv.slice(2);
const opts = { protocolVersion: Number(proto), reconnectPeriod: 0, connectTimeout: 10000,
               clientId: 'js-' + proto + '-' + Math.random().toString(16).slice(2) };
if (ca !== '-') opts.ca = fs.readFileSync(ca);
// Larger than any single read: the broker sees it across many WebSocket reads.
const payload = Buffer.alloc(300 * 1024, 7);
const timer = setTimeout(() => { console.log('timeout'); process.exit(1); }, 20000);
const c = mqtt.connect(url, opts);
c.on('connect', () => c.subscribe('js/t', { qos: 1 }, (err) => {
  if (err) { console.log('subscribe', err.message); process.exit(2); }
  c.publish('js/t', payload, { qos: 1 });
}));
c.on('message', (t, m) => {
  if (m.equals(payload)) { console.log('ok'); clearTimeout(timer); c.end(false, () => process.exit(0)); }
});
c.on('error', (e) => { console.log('error', e.message); process.exit(3); });
"#;

/// The directory holding `node_modules/mqtt`, installed with npm on first use.
async fn mqtt_js() -> PathBuf {
    require("node", "apt-get install -y nodejs npm");
    require("npm", "apt-get install -y npm");
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("mqttjs");
    if !dir.join("node_modules/mqtt/package.json").exists() {
        std::fs::create_dir_all(&dir).unwrap();
        let (ok, text) = run(Command::new("npm")
            .args(["install", "--no-audit", "--no-fund", "--prefix"])
            .arg(&dir)
            .arg(MQTT_JS))
        .await;
        assert!(
            ok,
            "npm install --prefix {} {MQTT_JS} failed: {text}",
            dir.display()
        );
    }
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_js_over_ws_and_wss() {
    let js = mqtt_js().await;
    let script = js.join("roundtrip.js");
    std::fs::write(&script, MQTT_JS_SCRIPT).unwrap();
    let dir = Dir::new("mqttjs");
    let pki = pki(&dir);
    let broker = canopy_broker::start(config(vec![
        listener(None, false, true),
        listener(Some(&pki), false, true),
    ]))
    .await
    .unwrap();
    let (ws, wss) = (broker.mqtt_addrs()[0], broker.mqtt_addrs()[1]);
    let ca = pki.ca.to_str().unwrap();
    let cases = [
        (format!("ws://127.0.0.1:{}/mqtt", ws.port()), "-"),
        (format!("wss://127.0.0.1:{}/mqtt", wss.port()), ca),
    ];
    for (url, ca) in &cases {
        for proto in ["4", "5"] {
            let (ok, text) = run(Command::new("node").current_dir(&js).arg(&script).args([
                url.as_str(),
                ca,
                proto,
            ]))
            .await;
            assert!(ok && text.contains("ok"), "MQTT.js {url} v{proto}: {text}");
        }
    }
    broker.shutdown().await;
}
