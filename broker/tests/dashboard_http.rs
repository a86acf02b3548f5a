//! The dashboard's port without a browser: the built-in assets over HTTP, refusals for
//! everything else, and MQTT over WebSocket at `/mqtt` through the broker's normal login
//! (a password file here) — with a cross-origin upgrade refused.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use canopy_broker::config::Config;
use canopy_proto::{Connect, Packet, Protocol};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

const STEP: Duration = Duration::from_secs(10);

async fn start() -> (canopy_broker::BrokerHandle, SocketAddr, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!(
        "canopy-dashboard-http-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let hash = canopy_model::password::hash_password(b"pw").unwrap();
    std::fs::write(dir.join("passwd"), format!("ops:{hash}\n")).unwrap();
    let mut cfg = Config::ephemeral();
    cfg.auth.password_file = Some(dir.join("passwd"));
    cfg.auth.allow_anonymous = Some(false);
    cfg.dashboard.listen = Some("127.0.0.1:0".parse().unwrap());
    let broker = canopy_broker::start(cfg).await.unwrap();
    let addr = broker.dashboard_addr().expect("the dashboard is bound");
    assert_ne!(addr.port(), 0);
    (broker, addr, dir)
}

/// Sends `request` and returns the whole answer (the server closes after one).
async fn http(addr: SocketAddr, request: &str) -> String {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(STEP, tcp.read_to_end(&mut out))
        .await
        .unwrap()
        .unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
}

/// Opens `/mqtt` (with `origin`, if any), sends CONNECT as `ops` with `password`, returns the
/// CONNACK reason code.
async fn ws_login(addr: SocketAddr, origin: Option<&str>, password: &[u8]) -> Result<u8, String> {
    let mut req = format!("ws://{addr}/mqtt").into_client_request().unwrap();
    req.headers_mut()
        .insert("sec-websocket-protocol", HeaderValue::from_static("mqtt"));
    if let Some(o) = origin {
        req.headers_mut()
            .insert("origin", HeaderValue::from_str(o).unwrap());
    }
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (mut ws, _) = tokio_tungstenite::client_async(req, tcp)
        .await
        .map_err(|e| e.to_string())?;
    let connect = Connect {
        protocol: Some(Protocol::V5),
        clean_start: true,
        client_id: "ws-probe".to_owned(),
        username: Some("ops".to_owned()),
        password: Some(Bytes::copy_from_slice(password)),
        ..Default::default()
    };
    let mut out = bytes::BytesMut::new();
    canopy_proto::encode(&Packet::Connect(Box::new(connect)), Protocol::V5, &mut out).unwrap();
    ws.send(Message::Binary(out.freeze())).await.unwrap();
    let mut got = Vec::new();
    while got.len() < 4 {
        match tokio::time::timeout(STEP, ws.next()).await.unwrap() {
            Some(Ok(Message::Binary(b))) => got.extend_from_slice(&b),
            other => return Err(format!("expected a CONNACK, got {other:?}")),
        }
    }
    assert_eq!(got[0], 0x20, "{got:?}");
    Ok(got[3])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_port_serves_the_built_in_page_and_nothing_else() {
    let (broker, addr, dir) = start().await;
    let page = http(addr, &get("/")).await;
    assert!(page.starts_with("HTTP/1.1 200 OK\r\n"), "{page}");
    assert!(
        page.contains("Content-Type: text/html; charset=utf-8"),
        "{page}"
    );
    assert!(page.contains("frame-ancestors 'none'"), "{page}");
    assert!(page.contains("<title>Canopy dashboard</title>"), "{page}");
    for (path, kind) in [
        ("/app.js", "text/javascript"),
        ("/mqtt.js", "text/javascript"),
        ("/style.css", "text/css"),
    ] {
        let answer = http(addr, &get(path)).await;
        assert!(
            answer.starts_with("HTTP/1.1 200 OK\r\n"),
            "{path}: {answer}"
        );
        assert!(answer.contains(kind), "{path}: {answer}");
    }
    let head = http(addr, "HEAD / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(
        head.starts_with("HTTP/1.1 200 OK\r\n") && !head.contains("<title>"),
        "{head}"
    );
    assert!(
        http(addr, &get("/../Cargo.toml"))
            .await
            .starts_with("HTTP/1.1 404")
    );
    assert!(
        http(addr, "POST / HTTP/1.1\r\n\r\n")
            .await
            .starts_with("HTTP/1.1 405")
    );
    assert!(http(addr, &get("/mqtt")).await.starts_with("HTTP/1.1 426"));
    broker.shutdown().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_port_carries_mqtt_through_the_normal_login() {
    let (broker, addr, dir) = start().await;
    // The page's own origin, and a client that names none, log in like anyone else.
    let own = format!("http://{addr}");
    assert_eq!(ws_login(addr, Some(&own), b"pw").await, Ok(0x00));
    assert_eq!(ws_login(addr, None, b"pw").await, Ok(0x00));
    assert_eq!(ws_login(addr, None, b"wrong").await, Ok(0x86));
    // A page from elsewhere may not open the socket through the user's browser.
    let refused = ws_login(addr, Some("http://evil.example"), b"pw").await;
    assert!(
        refused.as_ref().is_err_and(|e| e.contains("403")),
        "{refused:?}"
    );
    broker.shutdown().await;
    let _ = std::fs::remove_dir_all(dir);
}
