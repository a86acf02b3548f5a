use super::*;

fn head(request_line: &str, headers: &[&str]) -> String {
    let mut h = format!("{request_line}\r\n");
    for line in headers {
        h.push_str(line);
        h.push_str("\r\n");
    }
    h.push_str("\r\n");
    h
}

#[test]
fn get_root_and_index_serve_the_page() {
    for path in ["/", "/index.html", "/?x=1"] {
        let r = route(&head(&format!("GET {path} HTTP/1.1"), &["Host: a"]));
        assert_eq!(
            r,
            Route::Asset {
                index: 0,
                head_only: false
            },
            "{path}"
        );
    }
    let r = route(&head("HEAD /app.js HTTP/1.1", &[]));
    assert_eq!(
        r,
        Route::Asset {
            index: 1,
            head_only: true
        }
    );
}

#[test]
fn unknown_paths_and_methods_are_refused() {
    assert_eq!(
        route(&head("GET /etc/passwd HTTP/1.1", &[])),
        Route::Status(404, "not found")
    );
    assert_eq!(
        route(&head("GET /../Cargo.toml HTTP/1.1", &[])),
        Route::Status(404, "not found")
    );
    assert!(matches!(
        route(&head("POST / HTTP/1.1", &[])),
        Route::Status(405, _)
    ));
    assert!(matches!(route("garbage\r\n\r\n"), Route::Status(400, _)));
}

#[test]
fn upgrade_on_mqtt_path_becomes_an_mqtt_connection() {
    let h = head(
        "GET /mqtt HTTP/1.1",
        &["Host: 127.0.0.1:8080", "Upgrade: websocket"],
    );
    assert_eq!(route(&h), Route::Mqtt);
    let same = head(
        "GET /mqtt HTTP/1.1",
        &[
            "Host: 127.0.0.1:8080",
            "upgrade: WebSocket",
            "Origin: http://127.0.0.1:8080",
        ],
    );
    assert_eq!(route(&same), Route::Mqtt);
}

#[test]
fn a_page_from_another_origin_cannot_open_the_socket() {
    let h = head(
        "GET /mqtt HTTP/1.1",
        &[
            "Host: 127.0.0.1:8080",
            "Upgrade: websocket",
            "Origin: http://evil.example",
        ],
    );
    assert!(matches!(route(&h), Route::Status(403, _)));
}

#[test]
fn plain_get_on_mqtt_path_asks_for_an_upgrade() {
    assert!(matches!(
        route(&head("GET /mqtt HTTP/1.1", &[])),
        Route::Status(426, _)
    ));
}

#[test]
fn every_asset_is_built_in_and_not_empty() {
    for (path, kind, body) in ASSETS {
        assert!(!body.is_empty(), "{path}");
        assert!(kind.contains("charset=utf-8"), "{path}");
    }
}

#[tokio::test]
async fn prefixed_stream_replays_the_head_then_reads_on() {
    let (mut a, b) = tokio::io::duplex(64);
    a.write_all(b" world").await.unwrap();
    drop(a);
    let mut p = Prefixed::new(Bytes::from_static(b"hello"), b);
    let mut out = String::new();
    p.read_to_string(&mut out).await.unwrap();
    assert_eq!(out, "hello world");
}
