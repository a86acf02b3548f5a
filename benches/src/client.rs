//! The generator's minimal MQTT 3.1.1 client: connect, subscribe and the framing helpers
//! the hot loops use.
//!
//! Owns one TCP connection's handshake and the packet templates. Control packets (CONNECT,
//! SUBSCRIBE, their acknowledgements) go through the `canopy-proto` codec; the hot path
//! (PUBLISH, PUBACK) copies a codec-encoded template and patches its payload and packet
//! identifier, and reads incoming frames with [`next_frame`], so the generator spends its
//! time on the broker, not on its own parsing. It never talks to a non-loopback address
//! (see [`crate::target`]) and never retries: every failure ends the run with an error.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use canopy_proto::{
    Connect, DecodeLimits, Packet, Protocol, Publish, PublishProperties, QoS, ReasonCode,
    Subscribe, SubscribeProperties, SubscriptionOptions, TopicFilter, TopicName, decode, encode,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::BenchError;

/// Keep alive sent in CONNECT: long enough that no PINGREQ is ever due during a run.
const KEEP_ALIVE_SECS: u16 = 600;

/// How long a handshake step (CONNACK, SUBACK) may take before the run fails.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// Limits used when decoding control packets from the broker.
const LIMITS: DecodeLimits = DecodeLimits {
    max_packet_size: 16 * 1024 * 1024,
};

/// One connection to the broker after a successful CONNECT / CONNACK.
#[derive(Debug)]
pub struct Conn {
    /// The socket (Nagle disabled).
    pub stream: TcpStream,
    /// Bytes read but not yet decoded.
    pub rbuf: BytesMut,
    /// Next packet identifier for control packets sent by [`Conn::subscribe`].
    next_pkid: u16,
}

impl Conn {
    /// Opens a TCP connection to `addr`, sends a clean-session 3.1.1 CONNECT with
    /// `client_id` and waits for a successful CONNACK.
    pub async fn connect(addr: SocketAddr, client_id: &str) -> Result<Conn, BenchError> {
        Conn::connect_session(addr, client_id, true).await
    }

    /// Like [`Conn::connect`], with `clean = false` for a persistent session (whose
    /// QoS 1/2 messages a durable broker must keep on disk).
    pub async fn connect_session(
        addr: SocketAddr,
        client_id: &str,
        clean: bool,
    ) -> Result<Conn, BenchError> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let mut conn = Conn {
            stream,
            rbuf: BytesMut::with_capacity(64 * 1024),
            next_pkid: 1,
        };
        let connect = Connect {
            protocol: Some(Protocol::V311),
            clean_start: clean,
            keep_alive: KEEP_ALIVE_SECS,
            client_id: client_id.to_owned(),
            ..Connect::default()
        };
        conn.send(&Packet::Connect(Box::new(connect))).await?;
        match conn.read_control().await? {
            Packet::ConnAck(ack) if ack.reason == ReasonCode::SUCCESS => Ok(conn),
            Packet::ConnAck(ack) => Err(BenchError::Refused(format!(
                "CONNACK {:#04x} for {client_id}",
                ack.reason.0
            ))),
            other => Err(BenchError::Unexpected(format!(
                "expected CONNACK, got packet type {}",
                other.packet_type()
            ))),
        }
    }

    /// Encodes and writes one packet.
    pub async fn send(&mut self, packet: &Packet) -> Result<(), BenchError> {
        let mut out = BytesMut::new();
        encode(packet, Protocol::V311, &mut out)?;
        self.stream.write_all(&out).await?;
        Ok(())
    }

    /// Subscribes to `filters` at `qos`, in SUBSCRIBE packets of at most 100 filters, and
    /// waits for every SUBACK; a refused filter is an error.
    pub async fn subscribe(&mut self, filters: &[String], qos: QoS) -> Result<(), BenchError> {
        for chunk in filters.chunks(100) {
            let pkid = self.pkid();
            let mut list = Vec::with_capacity(chunk.len());
            for f in chunk {
                let filter = TopicFilter::new(f).map_err(|e| BenchError::Topic(e.to_string()))?;
                let options = SubscriptionOptions {
                    qos,
                    ..SubscriptionOptions::default()
                };
                list.push((filter, options));
            }
            let sub = Subscribe {
                pkid,
                filters: list,
                properties: SubscribeProperties::default(),
            };
            self.send(&Packet::Subscribe(sub)).await?;
            loop {
                match self.read_control().await? {
                    Packet::SubAck(ack) if ack.pkid == pkid => {
                        if let Some(bad) = ack.reasons.iter().find(|r| r.0 >= 0x80) {
                            return Err(BenchError::Refused(format!(
                                "SUBACK {:#04x} for {}",
                                bad.0,
                                chunk.first().map_or("", String::as_str)
                            )));
                        }
                        break;
                    }
                    // Retained messages may arrive before the SUBACK of a later chunk.
                    Packet::Publish(_) | Packet::SubAck(_) => {}
                    other => {
                        return Err(BenchError::Unexpected(format!(
                            "expected SUBACK, got packet type {}",
                            other.packet_type()
                        )));
                    }
                }
            }
        }
        Ok(())
    }

    /// Reads and decodes the next packet with the codec, within the handshake timeout.
    async fn read_control(&mut self) -> Result<Packet, BenchError> {
        tokio::time::timeout(HANDSHAKE_TIMEOUT, async {
            loop {
                if let Some(p) = decode(&mut self.rbuf, Protocol::V311, &LIMITS)? {
                    return Ok(p);
                }
                if self.stream.read_buf(&mut self.rbuf).await? == 0 {
                    return Err(BenchError::Closed);
                }
            }
        })
        .await
        .map_err(|_| BenchError::Timeout("waiting for CONNACK/SUBACK"))?
    }

    fn pkid(&mut self) -> u16 {
        let id = self.next_pkid;
        self.next_pkid = self.next_pkid.checked_add(1).unwrap_or(1);
        id
    }
}

/// A codec-encoded PUBLISH whose payload (and packet identifier) are patched per message.
#[derive(Debug, Clone)]
pub struct Template {
    bytes: Vec<u8>,
    /// Offset of the packet identifier, for QoS 1.
    pkid_at: Option<usize>,
    /// Offset of the payload.
    payload_at: usize,
}

impl Template {
    /// Encodes a 3.1.1 PUBLISH of `payload_len` zero bytes to `topic`.
    pub fn new(
        topic: &str,
        qos: QoS,
        retain: bool,
        payload_len: usize,
    ) -> Result<Template, BenchError> {
        let topic = TopicName::new(topic).map_err(|e| BenchError::Topic(e.to_string()))?;
        let publish = Publish {
            dup: false,
            qos,
            retain,
            topic: Some(topic),
            pkid: (qos != QoS::AtMostOnce).then_some(1),
            properties: PublishProperties::default(),
            payload: Bytes::from(vec![0u8; payload_len]),
        };
        let mut out = BytesMut::new();
        encode(&Packet::Publish(publish), Protocol::V311, &mut out)?;
        let bytes = out.to_vec();
        let payload_at = bytes.len() - payload_len;
        let pkid_at = (qos != QoS::AtMostOnce).then(|| payload_at - 2);
        Ok(Template {
            bytes,
            pkid_at,
            payload_at,
        })
    }

    /// Appends this PUBLISH to `out` with `pkid` (ignored at QoS 0) and `stamp` written at
    /// the start of the payload.
    pub fn put(&self, out: &mut BytesMut, pkid: u16, stamp: &Stamp) {
        let start = out.len();
        out.extend_from_slice(&self.bytes);
        let packet = &mut out[start..];
        if let Some(at) = self.pkid_at {
            packet[at..at + 2].copy_from_slice(&pkid.to_be_bytes());
        }
        stamp.write(&mut packet[self.payload_at..]);
    }
}

/// What the generator writes at the start of every payload: when it was sent, by which
/// publisher, and its sequence number. Payloads shorter than [`Stamp::LEN`] carry a prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// Nanoseconds since [`crate::epoch`] when the message was written.
    pub sent_ns: u64,
    /// Index of the publisher.
    pub publisher: u32,
    /// Sequence number within that publisher.
    pub seq: u64,
}

impl Stamp {
    /// Bytes a full stamp takes.
    pub const LEN: usize = 20;

    fn write(&self, payload: &mut [u8]) {
        let mut raw = [0u8; Self::LEN];
        raw[..8].copy_from_slice(&self.sent_ns.to_be_bytes());
        raw[8..12].copy_from_slice(&self.publisher.to_be_bytes());
        raw[12..20].copy_from_slice(&self.seq.to_be_bytes());
        let n = payload.len().min(Self::LEN);
        payload[..n].copy_from_slice(&raw[..n]);
    }

    /// Reads a stamp from the start of a payload; `None` when it is too short.
    pub fn read(mut payload: &[u8]) -> Option<Stamp> {
        if payload.len() < Self::LEN {
            return None;
        }
        Some(Stamp {
            sent_ns: payload.get_u64(),
            publisher: payload.get_u32(),
            seq: payload.get_u64(),
        })
    }
}

/// One incoming packet, as much as the hot loops need of it.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    /// A PUBLISH: its packet identifier (QoS > 0), retain flag and payload.
    Publish {
        /// Packet identifier, present for QoS 1 and 2.
        pkid: Option<u16>,
        /// RETAIN flag.
        retain: bool,
        /// Application payload.
        payload: &'a [u8],
    },
    /// A PUBACK with its packet identifier.
    PubAck(u16),
    /// Any other packet type (the upper nibble of the first byte).
    Other(u8),
}

/// Parses the frame at the front of `buf` without copying: the frame and the number of bytes
/// it takes, `Ok(None)` when incomplete. Only 3.1.1 framing is understood.
pub fn next_frame(buf: &[u8]) -> Result<Option<(Frame<'_>, usize)>, BenchError> {
    let Some(&first) = buf.first() else {
        return Ok(None);
    };
    let mut remaining = 0usize;
    let mut shift = 0;
    let mut i = 1;
    loop {
        let Some(&b) = buf.get(i) else {
            return Ok(None);
        };
        remaining |= usize::from(b & 0x7f) << shift;
        i += 1;
        if b & 0x80 == 0 {
            break;
        }
        shift += 7;
        if shift > 21 {
            return Err(BenchError::Unexpected("malformed remaining length".into()));
        }
    }
    let total = i + remaining;
    let Some(body) = buf.get(i..total) else {
        return Ok(None);
    };
    let malformed = || BenchError::Unexpected("malformed PUBLISH".into());
    let frame = match first >> 4 {
        3 => {
            let qos = (first >> 1) & 3;
            let topic_len = usize::from(u16::from_be_bytes([
                *body.first().ok_or_else(malformed)?,
                *body.get(1).ok_or_else(malformed)?,
            ]));
            let mut at = 2 + topic_len;
            let pkid = if qos > 0 {
                let id = body.get(at..at + 2).ok_or_else(malformed)?;
                at += 2;
                Some(u16::from_be_bytes([id[0], id[1]]))
            } else {
                None
            };
            Frame::Publish {
                pkid,
                retain: first & 1 == 1,
                payload: body.get(at..).ok_or_else(malformed)?,
            }
        }
        4 => {
            let id = body.get(..2).ok_or_else(malformed)?;
            Frame::PubAck(u16::from_be_bytes([id[0], id[1]]))
        }
        t => Frame::Other(t),
    };
    Ok(Some((frame, total)))
}

/// Appends a 3.1.1 PUBACK for `pkid` to `out` (the codec's encoding, written directly).
pub fn put_puback(out: &mut BytesMut, pkid: u16) {
    let [hi, lo] = pkid.to_be_bytes();
    out.extend_from_slice(&[0x40, 0x02, hi, lo]);
}

/// Consumes `n` bytes from the front of `buf`.
pub fn consume(buf: &mut BytesMut, n: usize) {
    buf.advance(n);
}

#[cfg(test)]
mod tests {
    use super::*;
    use canopy_proto::PubAck;

    #[test]
    fn template_publish_decodes_with_the_codec_and_the_fast_parser() {
        let t = Template::new("bench/3", QoS::AtLeastOnce, false, 64).unwrap();
        let stamp = Stamp {
            sent_ns: 42,
            publisher: 3,
            seq: 7,
        };
        let mut out = BytesMut::new();
        t.put(&mut out, 513, &stamp);
        let (frame, n) = next_frame(&out).unwrap().unwrap();
        assert_eq!(n, out.len());
        let Frame::Publish { pkid, payload, .. } = frame else {
            panic!("not a publish");
        };
        assert_eq!(pkid, Some(513));
        assert_eq!(Stamp::read(payload), Some(stamp));
        let mut buf = out.clone();
        let Packet::Publish(p) = decode(&mut buf, Protocol::V311, &LIMITS).unwrap().unwrap() else {
            panic!("codec did not decode a publish");
        };
        assert_eq!(p.pkid, Some(513));
        assert_eq!(p.payload.len(), 64);
    }

    #[test]
    fn puback_matches_the_codec_encoding() {
        let mut ours = BytesMut::new();
        put_puback(&mut ours, 0x1234);
        let mut codec = BytesMut::new();
        encode(
            &Packet::PubAck(PubAck::new(0x1234)),
            Protocol::V311,
            &mut codec,
        )
        .unwrap();
        assert_eq!(ours, codec);
    }

    #[test]
    fn incomplete_frames_are_not_parsed() {
        let t = Template::new("a", QoS::AtMostOnce, false, 64).unwrap();
        let mut out = BytesMut::new();
        t.put(
            &mut out,
            0,
            &Stamp {
                sent_ns: 1,
                publisher: 0,
                seq: 0,
            },
        );
        assert_eq!(next_frame(&out[..out.len() - 1]).unwrap(), None);
        assert_eq!(next_frame(&out[..1]).unwrap(), None);
    }
}
