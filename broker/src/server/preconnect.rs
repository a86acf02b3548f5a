//! A connection before its CONNECT: the wait for admission and the reading of CONNECT.
//!
//! Owns the part of a connection's life in which the broker knows nothing of the client:
//! waiting for a place ([`super::admission`]), then reading the first packet, which must be
//! CONNECT [MQTT-3.1.0-1], within `connect_timeout` however slowly its bytes arrive. It
//! buffers only bytes actually received: a declared size is checked against
//! `max_packet_size` and never reserved ahead, so a 100 MB length prefix costs nothing.
//! A connection whose admission wait timed out has its CONNECT read only to answer it in
//! its own protocol version (5.0: CONNACK 0x97, 3.1.1: return code 3). It must never
//! register anything with the router.

use bytes::BytesMut;
use canopy_proto::{Connect, DecodeLimits, Packet, ProtoError, Protocol, ReasonCode};

use super::ServerCtx;
use super::admission::{Admit, Admitted};
use super::handshake;
use super::transport::Transport;
use crate::metrics::Metrics;

/// Bytes reserved for reading when a readable socket finds the buffer short.
const READ_CHUNK: usize = 8192;

/// MQTT control packet type of CONNECT, in the first byte's high nibble.
const CONNECT_TYPE: u8 = 1;

/// Waits for admission, then reads the CONNECT. `None` when the connection is to end (the
/// answer, if any, is already sent). The returned [`Admitted`] is held until it ends.
pub async fn admit_and_read<S: Transport>(
    stream: &mut S,
    rbuf: &mut BytesMut,
    limits: &DecodeLimits,
    ctx: &ServerCtx,
    admit: Admit,
) -> Option<(Connect, Admitted)> {
    let mut shutdown = ctx.shutdown.clone();
    let waited = tokio::select! {
        r = admit.admitted(ctx.admission.timeout()) => r,
        _ = shutdown.changed() => return None,
    };
    match waited {
        Ok(admitted) => {
            let connect = read_connect(stream, rbuf, limits, ctx).await?;
            Some((connect, admitted))
        }
        Err(_timed_out) => {
            Metrics::add(&ctx.metrics.admission_timeouts, 1);
            if let Some(connect) = read_connect(stream, rbuf, limits, ctx).await {
                let protocol = connect.protocol.unwrap_or(Protocol::V311);
                let reason = if protocol.is_v5() {
                    ReasonCode::QUOTA_EXCEEDED
                } else {
                    ReasonCode::SERVER_UNAVAILABLE
                };
                let why = "too many connections: admission_timeout passed in the queue";
                handshake::refuse(stream, protocol, reason, ctx, why).await;
            }
            None
        }
    }
}

/// What the bytes buffered so far say about the first packet.
#[derive(Debug, PartialEq, Eq)]
enum Frame {
    /// The fixed header or the body is not complete yet; read more.
    Incomplete,
    /// A whole packet is buffered: decode it.
    Complete,
    /// Close the connection: the first packet is not a CONNECT, or it is too large.
    Reject(&'static str),
}

/// Checks the first packet's fixed header without reserving its declared size.
fn first_frame(buf: &[u8], limits: &DecodeLimits) -> Frame {
    match canopy_proto::frame_size(buf) {
        Err(_) => Frame::Reject("malformed remaining length"),
        Ok(None) => match buf.first() {
            Some(first) if first >> 4 != CONNECT_TYPE => {
                Frame::Reject("first packet is not CONNECT")
            }
            _ => Frame::Incomplete,
        },
        Ok(Some((first, _))) if first >> 4 != CONNECT_TYPE => {
            Frame::Reject("first packet is not CONNECT")
        }
        Ok(Some((_, total))) if total > limits.max_packet_size => {
            Frame::Reject("CONNECT larger than max_packet_size")
        }
        Ok(Some((_, total))) if buf.len() < total => Frame::Incomplete,
        Ok(Some(_)) => Frame::Complete,
    }
}

/// Reads the first packet, which must be CONNECT [MQTT-3.1.0-1], within `connect_timeout`
/// from now, counted once: a client trickling bytes is cut off at the same moment.
async fn read_connect<S: Transport>(
    stream: &mut S,
    rbuf: &mut BytesMut,
    limits: &DecodeLimits,
    ctx: &ServerCtx,
) -> Option<Connect> {
    let mut shutdown = ctx.shutdown.clone();
    let deadline = tokio::time::Instant::now() + ctx.config.limits.connect_timeout;
    loop {
        match first_frame(rbuf, limits) {
            Frame::Incomplete => {}
            Frame::Reject(why) => {
                tracing::info!(why, "bad first packet; closing");
                Metrics::add(&ctx.metrics.protocol_errors, 1);
                return None;
            }
            Frame::Complete => match canopy_proto::decode(rbuf, Protocol::V311, limits) {
                Ok(Some(Packet::Connect(c))) => return Some(*c),
                Ok(Some(other)) => {
                    tracing::info!(
                        packet_type = other.packet_type(),
                        "first packet is not CONNECT; closing"
                    );
                    Metrics::add(&ctx.metrics.protocol_errors, 1);
                    return None;
                }
                Ok(None) => {}
                Err(e @ ProtoError::UnsupportedProtocol { .. }) => {
                    handshake::refuse_protocol(stream, &e, ctx).await;
                    return None;
                }
                Err(e) => {
                    tracing::info!(error = %e, "malformed CONNECT; closing");
                    Metrics::add(&ctx.metrics.protocol_errors, 1);
                    return None;
                }
            },
        }
        let ready = tokio::select! {
            r = tokio::time::timeout_at(deadline, stream.readable()) => r,
            _ = shutdown.changed() => return None,
        };
        match ready {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return None,
            Err(_) => {
                tracing::debug!("no CONNECT within connect_timeout; closing");
                Metrics::add(&ctx.metrics.connect_timeouts, 1);
                return None;
            }
        }
        if rbuf.capacity() - rbuf.len() < 1024 {
            rbuf.reserve(READ_CHUNK);
        }
        match stream.try_read_buf(rbuf) {
            Ok(0) => return None,
            Ok(n) => Metrics::add(&ctx.metrics.bytes_received, n as u64),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: DecodeLimits = DecodeLimits {
        max_packet_size: 256 * 1024 * 1024,
    };

    #[test]
    fn a_large_declared_connect_is_incomplete_without_reserving_it() {
        // 100,000,000 as a variable byte integer: the frame waits for bytes, the buffer
        // stays as it is.
        let mut buf = BytesMut::from(&[0x10, 0x80, 0xc2, 0xd7, 0x2f][..]);
        let before = buf.capacity();
        assert_eq!(first_frame(&buf, &LIMITS), Frame::Incomplete);
        assert_eq!(buf.capacity(), before);
        assert_eq!(
            canopy_proto::frame_size(&buf),
            Ok(Some((0x10, 100_000_005)))
        );
        buf.clear();
    }

    #[test]
    fn a_connect_over_max_packet_size_is_rejected_from_its_header() {
        let small = DecodeLimits {
            max_packet_size: 1024 * 1024,
        };
        let buf = [0x10, 0x80, 0xc2, 0xd7, 0x2f];
        assert!(matches!(first_frame(&buf, &small), Frame::Reject(_)));
    }

    #[test]
    fn a_first_packet_other_than_connect_is_rejected_from_its_first_byte() {
        // [MQTT-3.1.0-1]: a PUBLISH header declaring 100 MB is refused before any body.
        assert!(matches!(first_frame(&[0x30], &LIMITS), Frame::Reject(_)));
        assert!(matches!(
            first_frame(&[0x30, 0x80, 0xc2, 0xd7, 0x2f], &LIMITS),
            Frame::Reject(_)
        ));
        assert_eq!(first_frame(&[0x10], &LIMITS), Frame::Incomplete);
        assert_eq!(first_frame(&[], &LIMITS), Frame::Incomplete);
    }
}
