use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use rustls::pki_types::pem::PemObject;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use super::*;

const STEP: Duration = Duration::from_secs(10);

type Server<T> = tokio::task::JoinHandle<T>;
type ClientResponse = tokio_tungstenite::tungstenite::http::Response<Option<Vec<u8>>>;

/// Accepts one TCP connection, upgrades it and runs `body` on the MQTT byte stream.
async fn serve<T, F, Fut>(max: usize, body: F) -> (SocketAddr, Server<Result<T, String>>)
where
    T: Send + 'static,
    F: FnOnce(WsStream<TcpStream>) -> Fut + Send + 'static,
    Fut: Future<Output = T> + Send,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let ws = accept(tcp, max).await.map_err(|e| e.to_string())?;
        Ok(tokio::time::timeout(STEP, body(ws)).await.unwrap())
    });
    (addr, task)
}

async fn client(
    addr: SocketAddr,
    path: &str,
    protocols: Option<&str>,
) -> Result<(WebSocketStream<TcpStream>, ClientResponse), WsError> {
    let mut req = format!("ws://{addr}{path}").into_client_request().unwrap();
    if let Some(p) = protocols {
        req.headers_mut()
            .insert("sec-websocket-protocol", HeaderValue::from_str(p).unwrap());
    }
    let tcp = TcpStream::connect(addr).await.unwrap();
    tokio_tungstenite::client_async(req, tcp).await
}

/// Two MQTT packets: CONNECT (3.1.1, id "t") and PINGREQ.
const BYTES: [u8; 17] = [
    0x10, 13, 0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0, 0, 0, 1, b't', 0xC0, 0,
];

#[tokio::test]
async fn one_byte_stream_across_messages_of_any_size_in_both_directions() {
    let (addr, server) = serve(1024, |mut ws| async move {
        let mut got = [0u8; 34];
        ws.read_exact(&mut got).await.unwrap();
        // Answer with CONNACK + PINGRESP in one write, then another PINGRESP.
        ws.write_all(&[0x20, 2, 0, 0, 0xD0, 0]).await.unwrap();
        ws.write_all(&[0xD0, 0]).await.unwrap();
        ws.flush().await.unwrap();
        got
    })
    .await;
    let (mut c, resp) = client(addr, "/mqtt", Some("mqtt")).await.unwrap();
    assert_eq!(
        resp.headers().get("sec-websocket-protocol").unwrap(),
        "mqtt"
    );
    // First copy: one byte per message. Second copy: one message for both packets.
    for b in BYTES {
        c.send(Message::Binary(Bytes::copy_from_slice(&[b])))
            .await
            .unwrap();
    }
    c.send(Message::Binary(Bytes::copy_from_slice(&BYTES)))
        .await
        .unwrap();
    let mut received = Vec::new();
    while received.len() < 8 {
        match tokio::time::timeout(STEP, c.next()).await.unwrap() {
            Some(Ok(Message::Binary(b))) => received.extend_from_slice(&b),
            other => panic!("expected binary data, got {other:?}"),
        }
    }
    assert_eq!(received, [0x20, 2, 0, 0, 0xD0, 0, 0xD0, 0]);
    let got = server.await.unwrap().unwrap();
    assert_eq!(&got[..17], &BYTES);
    assert_eq!(&got[17..], &BYTES);
}

#[tokio::test]
async fn upgrade_table_for_paths_and_subprotocols() {
    // (path, offered subprotocols, accepted, chosen)
    let cases: &[(&str, Option<&str>, bool, Option<&str>)] = &[
        ("/mqtt", Some("mqtt"), true, Some("mqtt")),
        ("/mqtt", Some("foo, mqtt"), true, Some("mqtt")),
        ("/mqtt", Some("mqttv3.1"), true, Some("mqttv3.1")),
        ("/mqtt", None, true, None),
        ("/mqtt", Some("foo"), false, None),
        ("/", Some("mqtt"), false, None),
        ("/other", Some("mqtt"), false, None),
    ];
    for &(path, offered, accepted, chosen) in cases {
        let (addr, server) = serve(1024, |_ws| async {}).await;
        let result = client(addr, path, offered).await;
        assert_eq!(result.is_ok(), accepted, "{path} {offered:?}: {result:?}");
        if let Ok((_, resp)) = &result {
            let got = resp
                .headers()
                .get("sec-websocket-protocol")
                .map(|v| v.to_str().unwrap());
            assert_eq!(got, chosen, "{path} {offered:?}");
        }
        assert_eq!(
            server.await.unwrap().is_ok(),
            accepted,
            "{path} {offered:?}"
        );
    }
}

#[tokio::test]
async fn a_text_message_is_an_error_mqtt_6_0_0_1() {
    let (addr, server) = serve(1024, |mut ws| async move {
        let mut b = [0u8; 1];
        ws.read(&mut b).await
    })
    .await;
    let (mut c, _) = client(addr, "/mqtt", Some("mqtt")).await.unwrap();
    c.send(Message::text("hello")).await.unwrap();
    let err = server.await.unwrap().unwrap().unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidData);
}

#[tokio::test]
async fn close_and_pings_are_not_data() {
    let (addr, server) = serve(1024, |mut ws| async move {
        let mut all = Vec::new();
        ws.read_to_end(&mut all).await.map(|_| all)
    })
    .await;
    let (mut c, _) = client(addr, "/mqtt", Some("mqtt")).await.unwrap();
    c.send(Message::Ping(Bytes::from_static(b"p")))
        .await
        .unwrap();
    c.send(Message::Binary(Bytes::from_static(&[0xC0, 0])))
        .await
        .unwrap();
    c.close(None).await.unwrap();
    let all = server.await.unwrap().unwrap().unwrap();
    assert_eq!(all, [0xC0, 0]);
}

#[tokio::test]
async fn a_message_over_the_limit_is_refused() {
    let (addr, server) = serve(64, |mut ws| async move {
        let mut all = Vec::new();
        ws.read_to_end(&mut all).await
    })
    .await;
    let (mut c, _) = client(addr, "/mqtt", Some("mqtt")).await.unwrap();
    let _ = c.send(Message::Binary(Bytes::from(vec![0u8; 65]))).await;
    assert!(server.await.unwrap().unwrap().is_err());
}

#[tokio::test]
async fn websocket_over_tls() {
    let pki = crate::server::tls::tests::pki("wss", false);
    let tls = Arc::new(crate::server::tls::Tls::load(&pki.files).unwrap());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let (tls, _) = tls.accept(tcp).await.unwrap();
        let mut ws = accept(tls, 1024).await.unwrap();
        let mut got = [0u8; 17];
        ws.read_exact(&mut got).await.unwrap();
        ws.write_all(&[0x20, 2, 0, 0]).await.unwrap();
        ws.flush().await.unwrap();
        got
    });
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_slice_iter(pki.ca_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .unwrap();
    let mut req = format!("wss://localhost:{}/mqtt", addr.port())
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("sec-websocket-protocol", HeaderValue::from_static("mqtt"));
    let (mut c, _) = tokio_tungstenite::client_async(req, tls).await.unwrap();
    c.send(Message::Binary(Bytes::copy_from_slice(&BYTES)))
        .await
        .unwrap();
    match tokio::time::timeout(STEP, c.next()).await.unwrap() {
        Some(Ok(Message::Binary(b))) => assert_eq!(&b[..], [0x20, 2, 0, 0]),
        other => panic!("expected CONNACK bytes, got {other:?}"),
    }
    assert_eq!(server.await.unwrap(), BYTES);
}
