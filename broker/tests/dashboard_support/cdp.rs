//! Headless Chromium driven over the DevTools protocol (CDP), for the dashboard's browser
//! test: start Debian's `chromium` on a free debugging port, attach to its page over a
//! WebSocket (tokio-tungstenite), navigate, evaluate JavaScript, take screenshots.
//!
//! Owns the Chromium process (killed, by its own pid, when the [`Chromium`] is dropped) and
//! its throw-away profile directory. Everything stays on 127.0.0.1.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

/// The command that installs what this test needs, for failure messages.
pub const INSTALL: &str = "apt-get install -y chromium";

/// The Chromium binary: `CANOPY_CHROMIUM` when set, else the first of Debian's names found.
pub fn chromium_binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("CANOPY_CHROMIUM") {
        return Some(PathBuf::from(p));
    }
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .find(|name| {
            Command::new(name)
                .arg("--version")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
        .map(PathBuf::from)
}

/// A headless Chromium with one page attached.
pub struct Chromium {
    child: Child,
    profile: PathBuf,
    page: WebSocketStream<TcpStream>,
    next_id: u64,
}

impl Drop for Chromium {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

impl Chromium {
    /// Starts `binary` headless with a fresh profile under `scratch` and attaches to its
    /// first page.
    pub async fn start(binary: &Path, scratch: &Path) -> Chromium {
        let profile = scratch.join(format!("chromium-profile-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&profile);
        std::fs::create_dir_all(&profile).unwrap();
        let child = Command::new(binary)
            .args([
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-extensions",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--mute-audio",
                "--hide-scrollbars",
                "--window-size=1280,1000",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e} ({INSTALL})", binary.display()));
        // Chromium writes the port it picked into the profile.
        let port_file = profile.join("DevToolsActivePort");
        let deadline = Instant::now() + Duration::from_secs(30);
        let port: u16 = loop {
            if let Some(p) = std::fs::read_to_string(&port_file)
                .ok()
                .and_then(|t| t.lines().next().and_then(|l| l.trim().parse().ok()))
            {
                break p;
            }
            assert!(
                Instant::now() < deadline,
                "chromium did not open its debugging port within 30 s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let targets = http_get_json(port, "/json/list").await;
        let ws_url = targets
            .as_array()
            .and_then(|a| a.iter().find(|t| t["type"] == "page"))
            .and_then(|t| t["webSocketDebuggerUrl"].as_str())
            .expect("a page target")
            .to_owned();
        let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let (page, _) = tokio_tungstenite::client_async(ws_url.as_str(), tcp)
            .await
            .unwrap();
        let mut c = Chromium {
            child,
            profile,
            page,
            next_id: 1,
        };
        c.call("Page.enable", json!({})).await;
        c.call("Runtime.enable", json!({})).await;
        c
    }

    /// Sends one CDP command and returns its result (events in between are skipped).
    pub async fn call(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let msg = json!({"id": id, "method": method, "params": params}).to_string();
        self.page.send(Message::text(msg)).await.unwrap();
        let deadline = Duration::from_secs(30);
        loop {
            let next = tokio::time::timeout(deadline, self.page.next())
                .await
                .unwrap_or_else(|_| panic!("no answer to {method} within 30 s"));
            let Some(Ok(Message::Text(text))) = next else {
                continue;
            };
            let v: Value = serde_json::from_str(text.as_str()).unwrap();
            if v["id"] == id {
                if let Some(e) = v.get("error") {
                    panic!("{method} failed: {e}");
                }
                return v["result"].clone();
            }
        }
    }

    /// Opens `url` in the page and waits until its document has loaded.
    pub async fn navigate(&mut self, url: &str) {
        self.call("Page.navigate", json!({"url": url})).await;
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.eval("document.readyState").await != "complete" {
            assert!(Instant::now() < deadline, "{url} did not load within 20 s");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Evaluates `expression` in the page and returns its value (promises awaited).
    pub async fn eval(&mut self, expression: &str) -> Value {
        let r = self
            .call(
                "Runtime.evaluate",
                json!({"expression": expression, "returnByValue": true, "awaitPromise": true}),
            )
            .await;
        if let Some(e) = r.get("exceptionDetails") {
            panic!("{expression} threw: {e}");
        }
        r["result"]["value"].clone()
    }

    /// Polls `expression` until it is truthy or `within` runs out; returns its last value.
    pub async fn wait_for(&mut self, expression: &str, within: Duration) -> Result<Value, String> {
        let deadline = Instant::now() + within;
        loop {
            let v = self.eval(expression).await;
            let truthy =
                !matches!(&v, Value::Null | Value::Bool(false)) && v != json!(0) && v != json!("");
            if truthy {
                return Ok(v);
            }
            if Instant::now() >= deadline {
                return Err(format!("`{expression}` still {v} after {within:?}"));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// A PNG of the page as it is now.
    pub async fn screenshot(&mut self) -> Vec<u8> {
        let r = self
            .call(
                "Page.captureScreenshot",
                json!({"format": "png", "captureBeyondViewport": true}),
            )
            .await;
        base64_decode(r["data"].as_str().unwrap_or_default())
    }

    /// A PNG of the whole page scaled by `scale` (smaller files for documentation).
    pub async fn screenshot_scaled(&mut self, scale: f64) -> Vec<u8> {
        let size = self
            .eval("[document.documentElement.scrollWidth, document.documentElement.scrollHeight]")
            .await;
        let (w, h) = (
            size[0].as_f64().unwrap_or(1280.0),
            size[1].as_f64().unwrap_or(1000.0),
        );
        let clip = json!({"x": 0, "y": 0, "width": w, "height": h, "scale": scale});
        let r = self
            .call(
                "Page.captureScreenshot",
                json!({"format": "png", "captureBeyondViewport": true, "clip": clip}),
            )
            .await;
        base64_decode(r["data"].as_str().unwrap_or_default())
    }

    /// The page's DOM as HTML.
    pub async fn dom(&mut self) -> String {
        self.eval("document.documentElement.outerHTML")
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }
}

/// GET `path` from the debugging port and parse the JSON body.
async fn http_get_json(port: u16, path: &str) -> Value {
    let mut tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    tcp.write_all(req.as_bytes()).await.unwrap();
    // Chromium keeps the connection open: read the head, then Content-Length bytes.
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let n = tokio::time::timeout_at(deadline.into(), tcp.read(&mut chunk))
            .await
            .expect("an answer from chromium's /json/list within 10 s")
            .unwrap();
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let length = text[..end]
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse::<usize>().ok())
                        .flatten()
                })
                .unwrap_or(0);
            if buf.len() >= end + 4 + length || n == 0 {
                return serde_json::from_slice(&buf[end + 4..]).unwrap();
            }
        }
        assert!(n > 0, "chromium closed /json/list early");
    }
}

/// Standard base64 (CDP's screenshot encoding).
fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    };
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0);
    for v in text.bytes().filter_map(value) {
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

#[test]
fn base64_decodes_padding() {
    assert_eq!(base64_decode("aGVsbG8="), b"hello");
    assert_eq!(base64_decode("aGk="), b"hi");
}
