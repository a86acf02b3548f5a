//! The Prometheus endpoint (`metrics_listen`): a minimal HTTP/1.1 responder that
//! serves the broker's counters in the text exposition format on any path.
//!
//! Owns only its listener and short-lived request tasks; it reads shared atomics and
//! never touches routing state. Requests are bounded in size and time.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::metrics::Metrics;

/// Counters that are levels rather than totals.
const GAUGES: [&str; 3] = [
    "clients_connected",
    "clients_maximum",
    "connections_waiting",
];

/// Renders the counters in the Prometheus text format.
pub fn render(metrics: &Metrics) -> String {
    let mut out = String::new();
    for (name, help, value) in metrics.snapshot() {
        let kind = if GAUGES.contains(&name) {
            "gauge"
        } else {
            "counter"
        };
        let suffix = if kind == "counter" { "_total" } else { "" };
        let _ = writeln!(out, "# HELP canopy_{name}{suffix} {help}");
        let _ = writeln!(out, "# TYPE canopy_{name}{suffix} {kind}");
        let _ = writeln!(out, "canopy_{name}{suffix} {value}");
    }
    out
}

/// Serves the endpoint until the task is aborted.
pub async fn serve(listener: TcpListener, metrics: Arc<Metrics>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let _ = tokio::time::timeout(Duration::from_secs(5), answer(stream, &metrics)).await;
        });
    }
}

async fn answer(mut stream: TcpStream, metrics: &Metrics) -> std::io::Result<()> {
    let mut buf = [0u8; 4096];
    let mut seen = 0;
    // Read the request head (bounded); its content does not matter.
    while seen < buf.len() {
        let n = stream.read(&mut buf[seen..]).await?;
        if n == 0 {
            break;
        }
        seen += n;
        if buf[..seen].windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
    }
    let body = render(metrics);
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_names_counters_and_gauges() {
        let m = Metrics::default();
        Metrics::add(&m.publish_received, 3);
        m.client_connected();
        let text = render(&m);
        assert!(text.contains("canopy_publish_received_total 3\n"), "{text}");
        assert!(
            text.contains("# TYPE canopy_clients_connected gauge\n"),
            "{text}"
        );
        assert!(text.contains("canopy_clients_connected 1\n"), "{text}");
    }
}
