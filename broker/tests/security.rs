//! Passwords, TLS and WebSocket listeners end to end, in process: CONNACK codes for 3.1.1 and
//! 5.0, refusal of a plaintext CONNECT on a TLS listener, a client certificate's CN as the
//! user name, reloads that keep connections, and one MQTT byte stream over WebSocket frames
//! of any size (plain and over TLS). External clients (mosquitto_sub, paho, MQTT.js) are in
//! `security_tools.rs`.

#![allow(clippy::unwrap_used)]

mod security_support;

use bytes::Bytes;
use canopy_model::password::hash_password;
use canopy_proto::Protocol;
use futures_util::{SinkExt, StreamExt};
use security_support::*;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

const V3: Protocol = Protocol::V311;
const V5: Protocol = Protocol::V5;

fn password_file(dir: &Dir, users: &[(&str, &str)]) -> std::path::PathBuf {
    let text: String = users
        .iter()
        .map(|(u, p)| format!("{u}:{}\n", hash_password(p.as_bytes()).unwrap()))
        .collect();
    dir.write("passwd", &text)
}

async fn code(addr: std::net::SocketAddr, c: canopy_proto::Connect) -> Option<u8> {
    let mut s = TcpStream::connect(addr).await.unwrap();
    connack_code(&mut s, c).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connack_matrix_with_a_password_file_for_3_1_1_and_5_0() {
    let dir = Dir::new("matrix");
    let pw = password_file(&dir, &[("alice", "apple")]);
    for anonymous in [true, false] {
        let mut cfg = config(vec![listener(None, false, false)]);
        cfg.auth.password_file = Some(pw.clone());
        cfg.auth.allow_anonymous = Some(anonymous);
        let broker = canopy_broker::start(cfg).await.unwrap();
        let addr = broker.mqtt_addr();
        // (user, password, 3.1.1 return code, 5.0 reason code)
        type Case<'a> = (Option<&'a str>, Option<&'a [u8]>, u8, u8);
        let cases: &[Case] = &[
            (Some("alice"), Some(b"apple"), 0, 0x00),
            (Some("alice"), Some(b"pear"), 4, 0x86),
            (Some("alice"), None, 4, 0x86),
            (Some("bob"), Some(b"apple"), 4, 0x86),
            (
                None,
                None,
                if anonymous { 0 } else { 5 },
                if anonymous { 0 } else { 0x87 },
            ),
        ];
        for (i, &(user, password, v3, v5)) in cases.iter().enumerate() {
            let id = format!("m{i}");
            assert_eq!(
                code(addr, connect(V3, &id, user, password)).await,
                Some(v3),
                "3.1.1 {user:?} {password:?} anonymous={anonymous}"
            );
            assert_eq!(
                code(addr, connect(V5, &id, user, password)).await,
                Some(v5),
                "5.0 {user:?} {password:?} anonymous={anonymous}"
            );
        }
        // Wrong or missing passwords and unknown users; anonymous refusals are counted as
        // refused connections only.
        assert_eq!(broker.failed_logins(), 6);
        let counted = canopy_broker::metrics::Metrics::get(&broker.metrics().logins_failed);
        assert_eq!(counted, 6, "the logins_failed metric");
        broker.shutdown().await;
    }
}

#[tokio::test]
async fn the_broker_refuses_to_start_with_a_bad_password_or_acl_file() {
    let dir = Dir::new("badfile");
    let mut cfg = Config::ephemeral();
    cfg.auth.password_file = Some(dir.write("passwd", "# users\nalice:secret\n"));
    let err = canopy_broker::start(cfg).await.err().unwrap().to_string();
    assert!(err.contains("passwd:2:"), "{err}");
    let mut cfg = Config::ephemeral();
    cfg.auth.acl_file = Some(dir.write("acl", "user a\ntopik x\n"));
    let err = canopy_broker::start(cfg).await.err().unwrap().to_string();
    assert!(err.contains("acl:2:"), "{err}");
    let mut cfg = Config::ephemeral();
    cfg.auth.password_file = Some(dir.0.join("missing"));
    assert!(canopy_broker::start(cfg).await.is_err());
}

use canopy_broker::Config;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_adds_users_keeps_connections_and_survives_a_broken_file() {
    let dir = Dir::new("reload");
    let pw = password_file(&dir, &[("alice", "apple")]);
    let mut cfg = config(vec![listener(None, false, false)]);
    cfg.auth.password_file = Some(pw.clone());
    cfg.auth.allow_anonymous = Some(false);
    let broker = canopy_broker::start(cfg).await.unwrap();
    let addr = broker.mqtt_addr();

    let mut alice = TcpStream::connect(addr).await.unwrap();
    assert_eq!(
        connack_code(&mut alice, connect(V5, "a", Some("alice"), Some(b"apple"))).await,
        Some(0)
    );
    assert_eq!(
        code(addr, connect(V5, "b", Some("bob"), Some(b"banana"))).await,
        Some(0x86)
    );

    password_file(&dir, &[("bob", "banana")]);
    assert!(broker.reload().is_empty());
    assert_eq!(
        code(addr, connect(V5, "b", Some("bob"), Some(b"banana"))).await,
        Some(0)
    );
    assert_eq!(
        code(addr, connect(V5, "c", Some("alice"), Some(b"apple"))).await,
        Some(0x86)
    );

    dir.write("passwd", "bob:not-a-hash\n");
    let errors = broker.reload();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].contains("passwd:1:"), "{errors:?}");
    assert_eq!(
        code(addr, connect(V5, "b", Some("bob"), Some(b"banana"))).await,
        Some(0)
    );

    // alice's connection, made before both reloads, is still open: PINGREQ gets PINGRESP.
    use tokio::io::AsyncWriteExt;
    alice.write_all(&[0xC0, 0]).await.unwrap();
    let mut resp = [0u8; 2];
    tokio::time::timeout(STEP, alice.read_exact(&mut resp))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(resp, [0xD0, 0]);
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_listener_serves_mqtt_and_refuses_plaintext() {
    let dir = Dir::new("tls");
    let pki = pki(&dir);
    let broker = canopy_broker::start(config(vec![listener(Some(&pki), false, false)]))
        .await
        .unwrap();
    let addr = broker.mqtt_addr();
    for protocol in [V3, V5] {
        let mut s = tls_connect(addr, &connector(&pki.ca, None)).await.unwrap();
        assert_eq!(
            connack_code(&mut s, connect(protocol, "t", None, None)).await,
            Some(0)
        );
    }
    // A plaintext CONNECT never gets a CONNACK: the TLS layer refuses it.
    let mut plain = TcpStream::connect(addr).await.unwrap();
    let got = connack_bytes(&mut plain, connect(V3, "p", None, None)).await;
    assert!(!got.starts_with(&[0x20]), "plaintext got {got:?}");
    // A client that does not trust the server's CA cannot connect.
    let rogue = Dir::new("tls-rogue");
    let other = pki_other(&rogue);
    assert!(tls_connect(addr, &connector(&other, None)).await.is_err());
    broker.shutdown().await;
}

fn pki_other(dir: &Dir) -> std::path::PathBuf {
    pki(dir).ca
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_certificate_becomes_the_user_name() {
    let dir = Dir::new("identity");
    let pki = pki(&dir);
    let mut l = listener(Some(&pki), true, false);
    l.use_identity_as_username = true;
    let mut cfg = config(vec![l]);
    // No password for alice in the file, anonymous refused: only the certificate can let her in.
    cfg.auth.password_file = Some(password_file(&dir, &[("bob", "banana")]));
    cfg.auth.allow_anonymous = Some(false);
    let broker = canopy_broker::start(cfg).await.unwrap();
    let addr = broker.mqtt_addr();
    let with_cert = connector(&pki.ca, Some((&pki.client_cert, &pki.client_key)));
    for protocol in [V3, V5] {
        let mut s = tls_connect(addr, &with_cert).await.unwrap();
        assert_eq!(
            connack_code(&mut s, connect(protocol, "c", None, None)).await,
            Some(0)
        );
    }
    // Without a certificate, or with one from another CA, there is no MQTT at all.
    for client in [None, Some((&pki.rogue_cert, &pki.rogue_key))] {
        let c = connector(&pki.ca, client.map(|(c, k)| (c.as_path(), k.as_path())));
        match tls_connect(addr, &c).await {
            Err(_) => {}
            Ok(mut s) => {
                let got = connack_bytes(&mut s, connect(V5, "x", None, None)).await;
                assert!(
                    got.is_empty(),
                    "connected without a valid certificate: {got:?}"
                );
            }
        }
    }
    broker.shutdown().await;
}

async fn ws_connack(
    stream: impl tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    url: &str,
    protocol: Protocol,
) -> Vec<u8> {
    let mut req = url.into_client_request().unwrap();
    req.headers_mut()
        .insert("sec-websocket-protocol", HeaderValue::from_static("mqtt"));
    let (mut ws, resp) = tokio_tungstenite::client_async(req, stream).await.unwrap();
    assert_eq!(
        resp.headers().get("sec-websocket-protocol").unwrap(),
        "mqtt"
    );
    let mut out = bytes::BytesMut::new();
    let c = connect(protocol, "w", None, None);
    canopy_proto::encode(
        &canopy_proto::Packet::Connect(Box::new(c)),
        protocol,
        &mut out,
    )
    .unwrap();
    // One MQTT packet across several WebSocket frames: the first byte alone, then the rest.
    let (head, tail) = out.split_at(1);
    ws.send(Message::Binary(Bytes::copy_from_slice(head)))
        .await
        .unwrap();
    ws.send(Message::Binary(Bytes::copy_from_slice(tail)))
        .await
        .unwrap();
    let mut got = Vec::new();
    while got.len() < 4 {
        match tokio::time::timeout(STEP, ws.next()).await.unwrap() {
            Some(Ok(Message::Binary(b))) => got.extend_from_slice(&b),
            other => panic!("expected binary data, got {other:?}"),
        }
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_listeners_plain_and_over_tls() {
    let dir = Dir::new("ws");
    let pki = pki(&dir);
    let broker = canopy_broker::start(config(vec![
        listener(None, false, true),
        listener(Some(&pki), false, true),
    ]))
    .await
    .unwrap();
    let (ws, wss) = (broker.mqtt_addrs()[0], broker.mqtt_addrs()[1]);
    for protocol in [V3, V5] {
        let tcp = TcpStream::connect(ws).await.unwrap();
        let got = ws_connack(tcp, &format!("ws://{ws}/mqtt"), protocol).await;
        assert_eq!(&got[..2], [0x20, if protocol == V3 { 2 } else { got[1] }]);
        assert_eq!(got[3], 0, "{got:?}");
        let tls = tls_connect(wss, &connector(&pki.ca, None)).await.unwrap();
        let url = format!("wss://localhost:{}/mqtt", wss.port());
        let got = ws_connack(tls, &url, protocol).await;
        assert_eq!(got[0], 0x20);
        assert_eq!(got[3], 0, "{got:?}");
    }
    // A bare MQTT CONNECT on a WebSocket listener is not an HTTP upgrade: no CONNACK.
    let mut plain = TcpStream::connect(ws).await.unwrap();
    let got = connack_bytes(&mut plain, connect(V3, "p", None, None)).await;
    assert!(!got.starts_with(&[0x20]), "{got:?}");
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_password_file_of_the_running_binary() {
    use tokio::io::AsyncBufReadExt;
    let dir = Dir::new("sighup");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let pw = password_file(&dir, &[("alice", "apple")]);
    let config = dir.write(
        "canopy.toml",
        &format!(
            "data_dir = {:?}\ndurability = \"memory\"\n[[listener]]\nbind = \"127.0.0.1:{port}\"\n\
             [auth]\nallow_anonymous = false\npassword_file = {pw:?}\n",
            dir.0.join("data")
        ),
    );
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_canopy-broker"))
        .arg("--config")
        .arg(&config)
        .args(["--log-level", "info"])
        .env("NO_COLOR", "1")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut out = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut err = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let mut wait_for = async |needle: &str| {
        let found = tokio::time::timeout(STEP, async {
            loop {
                let line = tokio::select! {
                    l = out.next_line() => l,
                    l = err.next_line() => l,
                };
                match line {
                    Ok(Some(l)) if l.contains(needle) => return l,
                    Ok(Some(_)) => {}
                    _ => panic!("broker output ended before {needle:?}"),
                }
            }
        })
        .await;
        found.unwrap_or_else(|_| panic!("no {needle:?} in the broker's log"))
    };
    wait_for("listening for MQTT").await;
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    assert_eq!(
        code(addr, connect(V5, "b", Some("bob"), Some(b"banana"))).await,
        Some(0x86)
    );
    password_file(&dir, &[("bob", "banana")]);
    let pid = child.id().unwrap().to_string();
    let status = std::process::Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap();
    assert!(status.success());
    let line = wait_for("reloaded password, ACL and TLS files").await;
    assert!(line.contains("failed=0"), "{line}");
    assert_eq!(
        code(addr, connect(V5, "b", Some("bob"), Some(b"banana"))).await,
        Some(0)
    );
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = tokio::time::timeout(STEP, child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(exit.success(), "{exit:?}");
}
