//! `RawClient`: a byte-level MQTT client over a tokio `TcpStream` for wire-exact tests.
//!
//! Owns framing (fixed header + remaining length) and bounded waits. It never waits without
//! a timeout, and never interprets packets beyond what a test asks for: expectations are
//! written by the tests with the hand-written builders of [`crate::wire`].

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout};

use crate::wire::{self, Connect, RxConnack, RxPublish, RxSuback, V5};

/// How long a positive expectation waits before failing.
pub const TIMEOUT: Duration = Duration::from_secs(3);
/// How long a negative expectation ("nothing arrives") watches.
pub const QUIET: Duration = Duration::from_millis(300);

/// Why reading a packet did not produce one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecvError {
    /// Nothing complete arrived in time.
    Timeout,
    /// The peer closed (EOF or reset). Holds any partial bytes left unread.
    Closed(Vec<u8>),
}

/// A raw MQTT connection.
pub struct RawClient {
    stream: TcpStream,
    buf: Vec<u8>,
    /// Protocol level the helpers encode for ([`wire::V311`] or [`wire::V5`]).
    pub version: u8,
}

impl RawClient {
    /// Opens a TCP connection (no MQTT CONNECT yet).
    pub async fn open(addr: SocketAddr, version: u8) -> Self {
        let stream = timeout(TIMEOUT, TcpStream::connect(addr))
            .await
            .unwrap_or_else(|_| panic!("TCP connect to {addr} timed out"))
            .unwrap_or_else(|e| panic!("TCP connect to {addr}: {e}"));
        let _ = stream.set_nodelay(true);
        Self {
            stream,
            buf: Vec::new(),
            version,
        }
    }

    /// Opens a connection, sends `connect` and reads the CONNACK (whatever its code).
    pub async fn handshake(addr: SocketAddr, connect: &Connect) -> (Self, RxConnack) {
        let mut c = Self::open(addr, connect.version).await;
        c.send(&connect.encode()).await;
        let p = c.recv().await;
        let ack = wire::parse_connack(connect.version, &p);
        (c, ack)
    }

    /// Connects with `connect` and asserts the CONNACK accepted it.
    pub async fn connect_with(addr: SocketAddr, connect: &Connect) -> (Self, RxConnack) {
        let (c, ack) = Self::handshake(addr, connect).await;
        assert_eq!(
            ack.code, 0,
            "CONNACK refused {}: {ack:?}",
            connect.client_id
        );
        (c, ack)
    }

    /// Leaves a 5.0 session behind: connects `client_id` with Clean Start 0 and Session
    /// Expiry `expiry_secs`, subscribes `filter` at QoS 1 and disconnects. Returns the
    /// CONNECT, to come back with [`RawClient::connect_with`].
    pub async fn park_v5_session(
        addr: SocketAddr,
        client_id: &str,
        filter: &str,
        expiry_secs: u32,
    ) -> Connect {
        let c = Connect::v5(client_id)
            .clean(false)
            .props(wire::Props::new().u32(wire::prop::SESSION_EXPIRY, expiry_secs));
        let (mut s, _) = Self::connect_with(addr, &c).await;
        s.subscribe(filter, 1).await;
        s.disconnect().await;
        c
    }

    /// Connects a clean session of `version` with `client_id`, asserting success.
    pub async fn connect(addr: SocketAddr, version: u8, client_id: &str) -> Self {
        Self::connect_with(addr, &Connect::new(version, client_id))
            .await
            .0
    }

    /// Writes bytes, panicking on an IO error.
    pub async fn send(&mut self, bytes: &[u8]) {
        if let Err(e) = self.try_send(bytes).await {
            panic!("send failed: {e}");
        }
    }

    /// Writes bytes, returning the IO error (the peer may already have closed).
    pub async fn try_send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match timeout(TIMEOUT, self.stream.write_all(bytes)).await {
            Ok(r) => r,
            Err(_) => Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "write timed out",
            )),
        }
    }

    /// Length of the first complete packet in the buffer, if there is one.
    fn complete_len(&self) -> Option<usize> {
        if self.buf.len() < 2 {
            return None;
        }
        let (len, n) = wire::decode_varint(&self.buf[1..])?;
        let total = 1 + n + len;
        (self.buf.len() >= total).then_some(total)
    }

    /// Reads one whole packet within `within`.
    pub async fn recv_within(&mut self, within: Duration) -> Result<Vec<u8>, RecvError> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(n) = self.complete_len() {
                return Ok(self.buf.drain(..n).collect());
            }
            assert!(
                self.buf.len() < 5 || wire::decode_varint(&self.buf[1..]).is_some(),
                "server sent a bad remaining length: {:?}",
                &self.buf[..5]
            );
            let mut chunk = [0u8; 4096];
            match tokio::time::timeout_at(deadline, self.stream.read(&mut chunk)).await {
                Err(_) => return Err(RecvError::Timeout),
                Ok(Ok(0)) | Ok(Err(_)) => {
                    return Err(RecvError::Closed(std::mem::take(&mut self.buf)));
                }
                Ok(Ok(n)) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// Reads one packet within [`TIMEOUT`], panicking on timeout or close.
    pub async fn recv(&mut self) -> Vec<u8> {
        match self.recv_within(TIMEOUT).await {
            Ok(p) => p,
            Err(e) => panic!("expected a packet, got {e:?}"),
        }
    }

    /// Reads one packet and asserts it equals `expected` byte for byte.
    pub async fn expect_bytes(&mut self, expected: &[u8]) {
        let got = self.recv().await;
        assert_eq!(
            got, expected,
            "packet bytes differ (got left, expected right)"
        );
    }

    /// Asserts no packet arrives within `within` and the connection stays open.
    pub async fn expect_nothing(&mut self, within: Duration) {
        match self.recv_within(within).await {
            Err(RecvError::Timeout) => {}
            other => panic!("expected silence for {within:?}, got {other:?}"),
        }
    }

    /// Asserts the server closes the connection within [`TIMEOUT`] without sending anything.
    pub async fn expect_closed(&mut self) {
        match self.recv_within(TIMEOUT).await {
            Err(RecvError::Closed(rest)) if rest.is_empty() => {}
            other => panic!("expected the server to close the connection, got {other:?}"),
        }
    }

    /// Asserts the server sends a 5.0 DISCONNECT with `reason` and then closes.
    pub async fn expect_disconnect(&mut self, reason: u8) {
        match self.recv_within(TIMEOUT).await {
            Ok(p) => {
                let d = wire::parse_disconnect(&p);
                assert_eq!(
                    d.reason, reason,
                    "DISCONNECT reason {:#04x}, expected {reason:#04x}",
                    d.reason
                );
            }
            Err(e) => panic!("expected DISCONNECT {reason:#04x}, got {e:?}"),
        }
        self.expect_closed().await;
    }

    /// For a protocol violation: a 3.1.1 client must see the connection closed; a 5.0
    /// client must see DISCONNECT with one of `reasons` and then the close.
    pub async fn expect_rejected(&mut self, reasons: &[u8]) {
        if self.version != V5 {
            return self.expect_closed().await;
        }
        match self.recv_within(TIMEOUT).await {
            Ok(p) => {
                let d = wire::parse_disconnect(&p);
                assert!(
                    reasons.contains(&d.reason),
                    "DISCONNECT reason {:#04x}, expected one of {reasons:02x?}",
                    d.reason
                );
            }
            Err(e) => panic!("expected DISCONNECT with one of {reasons:02x?}, got {e:?}"),
        }
        self.expect_closed().await;
    }

    /// Like [`Self::expect_rejected`], but a 5.0 server may also close without DISCONNECT
    /// (the specification says MAY send DISCONNECT for this case).
    pub async fn expect_closed_maybe_disconnect(&mut self, reasons: &[u8]) {
        match self.recv_within(TIMEOUT).await {
            Err(RecvError::Closed(rest)) if rest.is_empty() => {}
            Ok(p) if self.version == V5 => {
                let d = wire::parse_disconnect(&p);
                assert!(
                    reasons.contains(&d.reason),
                    "DISCONNECT reason {:#04x}",
                    d.reason
                );
                self.expect_closed().await;
            }
            other => panic!("expected the connection to close, got {other:?}"),
        }
    }

    /// Sends SUBSCRIBE (`filters` with option bytes) and returns the SUBACK.
    pub async fn subscribe_opts(
        &mut self,
        pid: u16,
        filters: &[(&str, u8)],
        props: wire::Props,
    ) -> RxSuback {
        let v = self.version;
        self.send(&wire::subscribe(v, pid, filters, props)).await;
        let p = self.recv().await;
        let s = wire::parse_suback(v, &p);
        assert_eq!(
            (s.first, s.pid),
            (0x90, pid),
            "expected SUBACK for {pid}, got {p:?}"
        );
        s
    }

    /// Subscribes to one filter at `qos` and asserts it was granted that QoS.
    pub async fn subscribe(&mut self, filter: &str, qos: u8) {
        let s = self
            .subscribe_opts(1, &[(filter, qos)], wire::Props::new())
            .await;
        assert_eq!(s.codes, vec![qos], "SUBACK for {filter}");
    }

    /// Reads one packet and parses it as a PUBLISH.
    pub async fn recv_publish(&mut self) -> RxPublish {
        let p = self.recv().await;
        wire::parse_publish(self.version, &p)
    }

    /// Collects every PUBLISH arriving within `within` (acknowledging none).
    pub async fn collect_publishes(&mut self, within: Duration) -> Vec<RxPublish> {
        let deadline = Instant::now() + within;
        let mut out = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.recv_within(left).await {
                Ok(p) => out.push(wire::parse_publish(self.version, &p)),
                Err(RecvError::Timeout) => return out,
                Err(e) => panic!("connection ended while collecting: {e:?}"),
            }
        }
    }

    /// Publishes at `qos` (packet id 1 for QoS > 0) and completes the QoS flow
    /// (PUBACK, or PUBREC/PUBREL/PUBCOMP), asserting success reason codes.
    pub async fn publish(&mut self, topic: &str, payload: &[u8], qos: u8, retain: bool) {
        let mut p =
            wire::Publish::new(self.version, topic, payload).qos(qos, if qos > 0 { 1 } else { 0 });
        p.retain = retain;
        self.publish_packet(&p).await;
    }

    /// Sends a built PUBLISH and completes its QoS flow.
    pub async fn publish_packet(&mut self, p: &wire::Publish) {
        self.send(&p.encode()).await;
        match p.qos {
            0 => {}
            1 => self.expect_ack_ok(wire::PUBACK, p.pid).await,
            _ => {
                self.expect_ack_ok(wire::PUBREC, p.pid).await;
                self.send(&wire::ack(wire::PUBREL, p.pid)).await;
                self.expect_ack(wire::PUBCOMP, p.pid).await;
            }
        }
    }

    /// Expects an acknowledgement `first` for `pid` with reason success. A 3.1.1 ack must
    /// be exactly four bytes; a 5.0 ack may use the short form or carry reason 0x00.
    pub async fn expect_ack(&mut self, first: u8, pid: u16) {
        let p = self.recv().await;
        if self.version == V5 {
            let a = wire::parse_ack(&p);
            assert_eq!((a.first, a.pid, a.reason), (first, pid, 0), "ack {p:?}");
        } else {
            assert_eq!(p, wire::ack(first, pid), "ack bytes");
        }
    }

    /// Like [`Self::expect_ack`], but a 5.0 PUBACK/PUBREC may also carry 0x10 No matching
    /// subscribers, which is a success code.
    pub async fn expect_ack_ok(&mut self, first: u8, pid: u16) {
        if self.version != V5 {
            return self.expect_ack(first, pid).await;
        }
        let p = self.recv().await;
        let a = wire::parse_ack(&p);
        assert_eq!((a.first, a.pid), (first, pid), "ack {p:?}");
        assert!(
            a.reason == 0x00 || a.reason == 0x10,
            "ack reason {:#04x}",
            a.reason
        );
    }

    /// Receives `n` PUBLISH packets, completing each QoS flow as a well-behaved client
    /// (PUBACK; PUBREC then PUBCOMP for the PUBREL, whenever it comes), and returns them in
    /// arrival order once no PUBREL is outstanding.
    pub async fn receive_and_ack(&mut self, n: usize) -> Vec<RxPublish> {
        let mut out = Vec::new();
        let mut pending_rel = 0usize;
        while out.len() < n || pending_rel > 0 {
            let p = self.recv().await;
            match p[0] >> 4 {
                3 => {
                    let m = wire::parse_publish(self.version, &p);
                    let pid = m.pid.unwrap_or(0);
                    match m.qos {
                        1 => self.send(&wire::ack(wire::PUBACK, pid)).await,
                        2 => {
                            self.send(&wire::ack(wire::PUBREC, pid)).await;
                            pending_rel += 1;
                        }
                        _ => {}
                    }
                    out.push(m);
                }
                6 => {
                    let a = wire::parse_ack(&p);
                    assert_eq!((a.first, a.reason), (wire::PUBREL, 0), "PUBREL {p:?}");
                    assert!(pending_rel > 0, "PUBREL without PUBREC: {p:?}");
                    pending_rel -= 1;
                    self.send(&wire::ack(wire::PUBCOMP, a.pid)).await;
                }
                _ => panic!("expected PUBLISH or PUBREL, got {p:?}"),
            }
        }
        out
    }

    /// Sends PINGREQ and expects PINGRESP, proving the connection is alive.
    pub async fn ping(&mut self) {
        self.send(&wire::PINGREQ).await;
        self.expect_bytes(&wire::PINGRESP).await;
    }

    /// Sends DISCONNECT (normal) and waits for the server to close.
    pub async fn disconnect(mut self) {
        self.send(&wire::DISCONNECT).await;
        let _ = self.recv_within(TIMEOUT).await;
    }
}
