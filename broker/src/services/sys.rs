//! `$SYS/broker/...` statistics, named as Mosquitto names them where a name exists.
//!
//! Owns the state needed to turn counters into rates and load averages, and the
//! [`SysService`] that publishes a snapshot every `sys_interval` as retained QoS 0
//! messages kept in memory only. It never touches sessions or sockets.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use canopy_proto::{QoS, TopicName};

use super::{Host, Service};
use crate::message::Message;
use crate::metrics::Metrics;

/// Publishes `$SYS/broker/...` every `interval`.
#[derive(Debug)]
pub struct SysService {
    state: SysState,
    metrics: Arc<Metrics>,
    interval: Duration,
    /// The next publication; `None` when `sys_interval` is 0 (off).
    next: Option<Instant>,
}

impl SysService {
    /// Publishes every `interval` from `now + interval`; never when it is zero.
    pub fn new(metrics: Arc<Metrics>, interval: Duration, now: Instant) -> SysService {
        SysService {
            state: SysState::new(now),
            metrics,
            interval,
            next: (!interval.is_zero()).then(|| now + interval),
        }
    }
}

impl Service for SysService {
    fn name(&self) -> &'static str {
        "sys"
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.next
    }

    fn handle_timeout(&mut self, host: &mut dyn Host) {
        let now = host.now();
        match self.next {
            Some(t) if now >= t => self.next = Some(now + self.interval),
            _ => return,
        }
        let stats = host.stats();
        for (topic, payload) in self.state.snapshot(now, &self.metrics, &stats) {
            host.publish_transient(Message {
                topic,
                qos: QoS::AtMostOnce,
                retain: true,
                properties: Default::default(),
                payload,
                expires_at: None,
            });
        }
    }
}

/// Figures only the router knows, for `$SYS` and other services.
#[derive(Debug, Clone, Copy, Default)]
pub struct RouterStats {
    /// Sessions, connected or not.
    pub sessions: usize,
    /// Subscriptions across all sessions.
    pub subscriptions: usize,
    /// Event-activated subscriptions that are inactive (SPEC §3).
    pub inactive: usize,
    /// Retained messages.
    pub retained: usize,
}

/// Exponentially weighted load averages over 1, 5 and 15 minutes, per minute, as
/// Mosquitto computes `$SYS/broker/load/...`.
#[derive(Debug, Clone, Copy, Default)]
struct Load {
    avg: [f64; 3],
    last: u64,
}

impl Load {
    fn update(&mut self, total: u64, dt_secs: f64) {
        let delta = total.saturating_sub(self.last) as f64;
        self.last = total;
        if dt_secs <= 0.0 {
            return;
        }
        let per_minute = delta * 60.0 / dt_secs;
        for (avg, window) in self.avg.iter_mut().zip([60.0, 300.0, 900.0]) {
            let k = (-dt_secs / window).exp();
            *avg = *avg * k + per_minute * (1.0 - k);
        }
    }
}

/// State kept between `$SYS` publications.
#[derive(Debug)]
pub struct SysState {
    started: Instant,
    last: Instant,
    loads: [Load; 6],
}

const LOAD_NAMES: [&str; 6] = [
    "messages/received",
    "messages/sent",
    "publish/received",
    "publish/sent",
    "bytes/received",
    "bytes/sent",
];

impl SysState {
    /// Starts counting uptime at `now`.
    pub fn new(now: Instant) -> SysState {
        SysState {
            started: now,
            last: now,
            loads: [Load::default(); 6],
        }
    }

    /// Topics and payloads to publish at `now`.
    pub fn snapshot(
        &mut self,
        now: Instant,
        m: &Metrics,
        r: &RouterStats,
    ) -> Vec<(TopicName, Bytes)> {
        let g = Metrics::get;
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        let totals = [
            g(&m.packets_received),
            g(&m.packets_sent),
            g(&m.publish_received),
            g(&m.publish_sent),
            g(&m.bytes_received),
            g(&m.bytes_sent),
        ];
        let connected = g(&m.clients_connected);
        let sessions = r.sessions as u64;
        let mut out: Vec<(String, String)> = vec![
            (
                "version".into(),
                format!("canopy {}", env!("CARGO_PKG_VERSION")),
            ),
            (
                "uptime".into(),
                format!(
                    "{} seconds",
                    now.saturating_duration_since(self.started).as_secs()
                ),
            ),
            ("clients/connected".into(), connected.to_string()),
            ("clients/active".into(), connected.to_string()),
            ("clients/total".into(), sessions.max(connected).to_string()),
            (
                "clients/disconnected".into(),
                sessions.saturating_sub(connected).to_string(),
            ),
            (
                "clients/inactive".into(),
                sessions.saturating_sub(connected).to_string(),
            ),
            ("clients/maximum".into(), g(&m.clients_maximum).to_string()),
            ("messages/received".into(), totals[0].to_string()),
            ("messages/sent".into(), totals[1].to_string()),
            (
                "messages/dropped".into(),
                g(&m.messages_dropped).to_string(),
            ),
            ("publish/messages/received".into(), totals[2].to_string()),
            ("publish/messages/sent".into(), totals[3].to_string()),
            (
                "publish/messages/dropped".into(),
                g(&m.messages_dropped).to_string(),
            ),
            ("bytes/received".into(), totals[4].to_string()),
            ("bytes/sent".into(), totals[5].to_string()),
            ("subscriptions/count".into(), r.subscriptions.to_string()),
            (
                "subscriptions/active".into(),
                r.subscriptions.saturating_sub(r.inactive).to_string(),
            ),
            ("subscriptions/inactive".into(), r.inactive.to_string()),
            ("retained messages/count".into(), r.retained.to_string()),
            ("store/messages/count".into(), r.retained.to_string()),
            (
                "proxy/connections".into(),
                g(&m.proxied_connections).to_string(),
            ),
            ("proxy/open".into(), g(&m.proxied_open).to_string()),
            ("proxy/bytes".into(), g(&m.proxied_bytes).to_string()),
            (
                "proxy/unreachable".into(),
                g(&m.proxy_unreachable).to_string(),
            ),
        ];
        out.extend(admission_topics(m));
        for (i, name) in LOAD_NAMES.iter().enumerate() {
            self.loads[i].update(totals[i], dt);
            for (avg, w) in self.loads[i].avg.iter().zip(["1min", "5min", "15min"]) {
                out.push((format!("load/{name}/{w}"), format!("{avg:.2}")));
            }
        }
        out.into_iter()
            .filter_map(|(t, p)| {
                TopicName::new(&format!("$SYS/broker/{t}"))
                    .ok()
                    .map(|t| (t, Bytes::from(p)))
            })
            .collect()
    }
}

/// Admission figures (docs/flow-control.md), under `$SYS/broker/connections/`.
fn admission_topics(m: &Metrics) -> impl Iterator<Item = (String, String)> {
    [
        ("waiting", &m.connections_waiting),
        ("queued", &m.connections_queued),
        ("refused", &m.connections_refused),
        ("admission_timeouts", &m.admission_timeouts),
        ("connect_timeouts", &m.connect_timeouts),
        ("rate_limited", &m.connections_rate_limited),
    ]
    .into_iter()
    .map(|(name, c)| (format!("connections/{name}"), Metrics::get(c).to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn load_average_converges_to_the_rate_per_minute() {
        let mut l = Load::default();
        let mut total = 0;
        for _ in 0..600 {
            total += 10; // 10 per second = 600 per minute
            l.update(total, 1.0);
        }
        assert!((l.avg[0] - 600.0).abs() < 1.0, "{:?}", l.avg);
    }

    #[test]
    fn snapshot_uses_mosquitto_names() {
        let t0 = Instant::now();
        let mut s = SysState::new(t0);
        let m = Metrics::default();
        let r = RouterStats {
            sessions: 2,
            subscriptions: 3,
            inactive: 1,
            retained: 4,
        };
        let topics: Vec<String> = s
            .snapshot(t0 + Duration::from_secs(5), &m, &r)
            .into_iter()
            .map(|(t, _)| t.to_string())
            .collect();
        for want in [
            "$SYS/broker/uptime",
            "$SYS/broker/version",
            "$SYS/broker/clients/connected",
            "$SYS/broker/clients/total",
            "$SYS/broker/messages/received",
            "$SYS/broker/messages/sent",
            "$SYS/broker/subscriptions/count",
            "$SYS/broker/subscriptions/active",
            "$SYS/broker/subscriptions/inactive",
            "$SYS/broker/retained messages/count",
            "$SYS/broker/load/messages/received/1min",
            "$SYS/broker/connections/waiting",
            "$SYS/broker/connections/admission_timeouts",
            "$SYS/broker/connections/connect_timeouts",
            "$SYS/broker/proxy/connections",
            "$SYS/broker/proxy/open",
            "$SYS/broker/proxy/bytes",
        ] {
            assert!(topics.iter().any(|t| t == want), "{want} missing");
        }
    }
}
