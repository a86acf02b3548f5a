//! One client connection: bytes in, packets out.
//!
//! Owns the socket, the read and write buffers, the decode limits, the keep-alive
//! record (the broker's wheel, `crate::keepalive`, watches it), topic aliases in both
//! directions, and the translation between packets and router commands. Incoming packets become [`Command`]s on the bounded router
//! channel (a full channel stops us reading the socket: that is the back-pressure);
//! the outbox is drained in one batch and written with one system call. It never holds
//! routing state, and a protocol error here ends this connection only.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::ops::Deref;
use std::sync::Arc;
use std::task::Poll;
use std::time::Instant;

use bytes::{BufMut, BytesMut};
use canopy_proto::{DecodeLimits, Packet, Protocol, PublishProperties, ReasonCode};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc::error::TrySendError;
use tracing::Instrument;

use super::admission::{Admit, Admitted};
use super::handshake;
use super::preconnect;
use super::proxy;
use super::shaping::{
    Aliases, Delivery, Unacked, disconnect, inbound_publish, moved, outbound_publish,
};
use super::transport::Transport;
use super::{ServerCtx, WRITE_TIMEOUT};
use crate::metrics::Metrics;
use crate::outbox::{Outbox, Outgoing};
use crate::router::Command;
use crate::services::cluster::Admission;

/// Bytes reserved for reading when a readable socket finds the buffer short.
const READ_CHUNK: usize = 8192;
/// How long a connection the broker closed keeps reading (and discarding) what the client
/// still sends, so that the client reads our DISCONNECT instead of a reset.
const LINGER: std::time::Duration = std::time::Duration::from_secs(2);
/// At most this much is read and discarded while lingering.
const LINGER_BYTES: usize = 1 << 20;

/// Serves one connection over any [`Transport`] (TCP, TLS, WebSocket) to its end; `ctx`
/// is the shared context, borrowed or owned (see [`super::tasks::Counted`]).
///
/// A plain function returning the future, not an `async fn`: an `async fn` would keep its
/// own copy of every argument beside the one `run` keeps, for as long as the connection
/// lives.
pub fn serve<'a, S, C>(
    stream: S,
    peer: SocketAddr,
    ctx: C,
    admit: Admit,
) -> impl Future<Output = ()> + Send + 'a
where
    S: Transport + 'a,
    C: Deref<Target = ServerCtx> + Send + Sync + 'a,
{
    run(stream, peer, ctx, admit).instrument(span(peer))
}

/// The span a connection's log lines carry (disabled when `info` is off).
pub fn span(peer: SocketAddr) -> tracing::Span {
    tracing::info_span!(
        "conn",
        %peer,
        client_id = tracing::field::Empty,
        user = tracing::field::Empty,
        authenticated = tracing::field::Empty,
    )
}

/// What to do with one incoming packet.
enum Step {
    /// Hand this to the router.
    Forward(Command),
    /// Answer PINGREQ.
    Pong,
    /// The connection is over.
    End(End),
    /// A protocol violation: answer with this reason and close.
    Violation(ReasonCode, &'static str),
}

/// What became of the next buffered packet (see `Connection::next_packet`).
enum Next {
    /// No complete packet is buffered.
    Idle,
    /// Handed to the router.
    Sent,
    /// For the router, whose channel is full: wait for room (boxed, as it is rare).
    Wait(Box<Command>),
    /// Answer PINGREQ.
    Pong,
    /// The connection is over.
    End(End),
    /// A protocol violation or a malformed packet: answer with this reason and close.
    Violation(ReasonCode, Cow<'static, str>),
}

/// How a connection ended, for the router and the log.
enum End {
    /// The client sent DISCONNECT; `will` says whether to publish the will anyway.
    Disconnect { will: bool, expiry: Option<u32> },
    /// The socket closed, failed or timed out.
    Lost,
    /// We closed it for a protocol error (already answered on the wire).
    Error,
    /// The router told us to go (take-over, shutdown, kick).
    Kicked,
    /// Nothing heard for 1.5 × keep alive.
    KeepAlive,
}

/// Serves one connection to its end (see [`serve`], which also gives it its span).
pub async fn run<S, C>(mut stream: S, peer: SocketAddr, ctx: C, admit: Admit)
where
    S: Transport,
    C: Deref<Target = ServerCtx>,
{
    let ctx = &*ctx;
    // Everything before the connection is established (admission, CONNECT, a redirect or
    // a proxied session, the handshake) runs in a boxed future of its own, freed once it is
    // done: this task keeps only what an established connection needs while it is idle.
    // `_admitted` holds the socket ticket and the served place until the connection ends.
    let Some((mut conn, rbuf, _admitted)) = Box::pin(open(&mut stream, peer, ctx, admit)).await
    else {
        return;
    };
    let end = conn.run(&mut stream, rbuf).await;
    conn.outbox.liveness().stop();
    ctx.metrics.client_disconnected();
    let (publish_will, expiry, reason) = match end {
        End::Disconnect { will, expiry } => (will, expiry, "disconnected"),
        End::Lost => (true, None, "connection lost"),
        End::Error => (true, None, "protocol error"),
        End::Kicked => (true, None, "disconnected by the broker"),
        End::KeepAlive => (true, None, "keepalive timeout"),
    };
    let gone = Command::Disconnected {
        session: conn.session,
        conn: conn.conn,
        publish_will,
        session_expiry: expiry,
        reason,
    };
    let _ = Box::pin(ctx.router.send(gone)).await;
    // While the broker stops, nobody waits for clients to close.
    if matches!(end, End::Error | End::Kicked | End::KeepAlive) && !*ctx.shutdown.borrow() {
        Box::pin(linger(&mut stream)).await;
    } else {
        let _ = stream.shutdown().await;
    }
}

/// Admits the connection, reads its CONNECT and either hands it on (a redirect, a session
/// proxied to another node) or establishes it: the established connection, what was read
/// beyond its CONNECT, and its place in admission; `None` when it is over already.
async fn open<'a, S: Transport>(
    stream: &mut S,
    peer: SocketAddr,
    ctx: &'a ServerCtx,
    admit: Admit,
) -> Option<(Connection<'a>, BytesMut, Admitted)> {
    let limits = DecodeLimits {
        max_packet_size: ctx.config.limits.max_packet_size as usize,
    };
    let mut rbuf = BytesMut::new();
    let (connect, arrival, admitted) = Box::pin(preconnect::admit_and_read(
        stream, &mut rbuf, &limits, ctx, admit,
    ))
    .await?;
    // A connection another node proxied here is served here, never sent on: two nodes
    // whose views differ for a moment cannot bounce a client between them.
    let admission = if arrival.via_proxy.is_some() {
        Admission::Local
    } else {
        handshake::admission(&connect, ctx.cluster.as_deref())
    };
    match admission {
        Admission::Redirect(node) => {
            handshake::redirect(stream, &node, ctx).await;
            return None;
        }
        Admission::Proxy(node) => {
            tracing::Span::current().record("client_id", connect.client_id.as_str());
            let protocol = connect.protocol.unwrap_or(Protocol::V311);
            Box::pin(proxy::serve(
                stream, peer, protocol, arrival, rbuf, &node, ctx,
            ))
            .await;
            return None;
        }
        Admission::Local => {}
    }
    let est = Box::pin(handshake::establish(stream, connect, peer, ctx)).await?;
    let span = tracing::Span::current();
    span.record("user", est.user.as_deref());
    span.record("authenticated", est.authenticated);
    // Keep alive is supervised by the broker's wheel, not by a timer in this task.
    let now = Instant::now();
    est.outbox.liveness().start(est.keep_alive, now);
    ctx.keep_alive.watch(&est.outbox, now);
    let conn = Connection {
        ctx,
        session: est.reply.session,
        conn: est.reply.conn,
        outbox: est.outbox,
        session_expiry: est.session_expiry,
        problem_info: est.problem_info,
        protocol: est.protocol,
        limits,
        aliases: Aliases::new(est.alias_max_in, est.alias_max_out),
        unacked_in: Unacked::new(ctx.config.limits.receive_maximum),
        wbuf: BytesMut::new(),
    };
    Some((conn, rbuf, admitted))
}

/// Closes a connection the broker ended (it may have sent a DISCONNECT) without
/// resetting it: a socket closed with unread bytes sends RST, and a client still writing
/// (say, a burst beyond our Receive Maximum, answered with 0x93) would then see a broken
/// pipe and lose the DISCONNECT it had not read yet. So our side is shut down first, then
/// what the client still sends is read and discarded until it closes, for at most
/// [`LINGER`] and [`LINGER_BYTES`]. Allocates its buffer only when the client does
/// send more, and nothing for a client that closes at once.
async fn linger<S: Transport>(stream: &mut S) {
    let _ = stream.shutdown().await;
    let deadline = tokio::time::Instant::now() + LINGER;
    let mut sink = BytesMut::new();
    let mut total = 0;
    while total < LINGER_BYTES {
        match tokio::time::timeout_at(deadline, stream.readable()).await {
            Ok(Ok(())) => {}
            _ => return,
        }
        sink.clear();
        sink.reserve(READ_CHUNK);
        match stream.try_read_buf(&mut sink) {
            Ok(0) => return,
            Ok(n) => total += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => return,
        }
    }
}

struct Connection<'a> {
    ctx: &'a ServerCtx,
    /// The router's session key and this connection's generation, quoted in commands.
    session: usize,
    conn: u64,
    /// What the router writes to this connection.
    outbox: Arc<Outbox>,
    /// Session Expiry Interval from CONNECT (for the DISCONNECT rule [MQTT-3.14.2-2]).
    session_expiry: u32,
    /// Whether the client accepts reason strings (Request Problem Information).
    problem_info: bool,
    protocol: Protocol,
    limits: DecodeLimits,
    /// Topic aliases both ways.
    aliases: Aliases,
    wbuf: BytesMut,
    /// Incoming QoS 1/2 messages not answered yet; bounds what a publisher can have
    /// in flight to us.
    unacked_in: Unacked,
}

impl Connection<'_> {
    async fn run<S: Transport>(&mut self, stream: &mut S, mut rbuf: BytesMut) -> End {
        let outbox = self.outbox.clone();
        loop {
            // Decode whatever is already buffered (CONNECT may have arrived with more),
            // unless the client already has as many QoS 1/2 messages unacknowledged as
            // our Receive Maximum: then the bytes wait, and so does the client.
            // Decoding and handing to the router are synchronous (`next_packet`): the
            // packet and its command are never held across an await, so they are no part
            // of the task's future, which an idle connection keeps.
            while !self.paused() {
                match self.next_packet(&mut rbuf) {
                    Next::Idle => break,
                    Next::Sent => {}
                    // The router is behind: wait for room, in a boxed future.
                    Next::Wait(cmd) => {
                        if Box::pin(self.ctx.router.send(*cmd)).await.is_err() {
                            return End::Kicked;
                        }
                    }
                    Next::Pong => {
                        self.encode(&Packet::PingResp);
                        if let Err(end) = Box::pin(self.write(stream)).await {
                            return end;
                        }
                    }
                    Next::End(end) => return end,
                    Next::Violation(reason, why) => {
                        return Box::pin(self.protocol_error(stream, reason, &why)).await;
                    }
                }
            }
            // An idle connection holds no read buffer: it is allocated when bytes
            // arrive and let go once everything read has been decoded.
            if rbuf.is_empty() && rbuf.capacity() > 0 {
                rbuf = BytesMut::new();
            }
            let paused = self.paused();
            if paused {
                // While paused we read nothing, so silence is ours, not the client's.
                outbox.liveness().pause();
            }
            // One small future for the whole idle wait: the outbox (which the keep-alive
            // wheel wakes too) first, then the socket unless paused. No timer, no
            // notification future: an idle connection's task stays small.
            let woke = std::future::poll_fn(|cx| {
                if outbox.poll_notified(cx).is_ready() {
                    return Poll::Ready(None);
                }
                if !paused && let Poll::Ready(r) = stream.poll_readable(cx) {
                    return Poll::Ready(Some(r));
                }
                Poll::Pending
            })
            .await;
            match woke {
                None => {
                    if let Some(end) = Box::pin(self.flush_outbox(stream)).await {
                        return end;
                    }
                    if outbox.take_drain_notice() {
                        let drained = Command::Drained {
                            session: self.session,
                            conn: self.conn,
                        };
                        if Box::pin(self.ctx.router.send(drained)).await.is_err() {
                            return End::Kicked;
                        }
                    }
                    if outbox.liveness().take_expired() {
                        tracing::info!("keep-alive timeout; closing");
                        Metrics::add(&self.ctx.metrics.keepalive_timeouts, 1);
                        let reason = ReasonCode::KEEP_ALIVE_TIMEOUT;
                        Box::pin(self.send_disconnect(stream, reason, None)).await;
                        return End::KeepAlive;
                    }
                    if paused && !self.paused() {
                        outbox.liveness().heard(Instant::now());
                    }
                }
                Some(Err(_)) => return End::Lost,
                Some(Ok(())) => {
                    if rbuf.capacity() - rbuf.len() < 1024 {
                        rbuf.reserve(READ_CHUNK);
                    }
                    match stream.try_read_buf(&mut rbuf) {
                        Ok(0) => return End::Lost,
                        Ok(n) => Metrics::add(&self.ctx.metrics.bytes_received, n as u64),
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                        Err(_) => return End::Lost,
                    }
                }
            }
        }
    }

    /// Decodes the next buffered packet and acts on it without waiting: a command goes to
    /// the router's channel if it has room, else it is handed back to wait for room.
    fn next_packet(&mut self, rbuf: &mut BytesMut) -> Next {
        match canopy_proto::decode(rbuf, self.protocol, &self.limits) {
            Ok(Some(packet)) => {
                Metrics::add(&self.ctx.metrics.packets_received, 1);
                self.outbox.liveness().heard(Instant::now());
                match self.on_packet(packet) {
                    Step::Forward(cmd) => match self.ctx.router.try_send(cmd) {
                        Ok(()) => Next::Sent,
                        Err(TrySendError::Full(cmd)) => Next::Wait(Box::new(cmd)),
                        Err(TrySendError::Closed(_)) => Next::End(End::Kicked),
                    },
                    Step::Pong => Next::Pong,
                    Step::End(end) => Next::End(end),
                    Step::Violation(reason, why) => Next::Violation(reason, Cow::Borrowed(why)),
                }
            }
            Ok(None) => Next::Idle,
            Err(e) => {
                tracing::info!(error = %e, "malformed packet; closing");
                Next::Violation(e.reason_code(), Cow::Owned(e.to_string()))
            }
        }
    }

    /// Whether reading is paused for back-pressure: the client has `receive_maximum`
    /// QoS 1/2 messages that we have not answered yet (waiting for the router or the
    /// disk). 3.1.1 clients, which have no Receive Maximum, get the same limit. Only the
    /// broker's own work is awaited here, so a pause always ends.
    fn paused(&self) -> bool {
        self.unacked_in.full()
    }

    /// Handles one packet; `Some(end)` closes the connection.
    /// Turns one packet into what to do with it. Synchronous on purpose: the task's
    /// future then holds no packet-sized state across its idle await points, which keeps
    /// an idle connection small.
    fn on_packet(&mut self, packet: Packet) -> Step {
        let session = self.session;
        let conn = self.conn;
        let violation = |why| Step::Violation(ReasonCode::PROTOCOL_ERROR, why);
        let cmd = match packet {
            Packet::Publish(p) => {
                match inbound_publish(p, &mut self.aliases, &self.ctx.config.limits) {
                    Ok(publish) => {
                        Metrics::add(&self.ctx.metrics.publish_received, 1);
                        if let Some(pkid) = publish.pkid {
                            self.unacked_in.received(pkid);
                        }
                        Command::Publish {
                            session,
                            conn,
                            publish,
                        }
                    }
                    Err((reason, why)) => return Step::Violation(reason, why),
                }
            }
            Packet::PubAck(a) => Command::PubAck {
                session,
                conn,
                pkid: a.pkid,
            },
            Packet::PubRec(a) => Command::PubRec {
                session,
                conn,
                pkid: a.pkid,
                failed: a.reason.is_error(),
            },
            Packet::PubRel(a) => Command::PubRel {
                session,
                conn,
                pkid: a.pkid,
            },
            Packet::PubComp(a) => Command::PubComp {
                session,
                conn,
                pkid: a.pkid,
            },
            Packet::Subscribe(subscribe) => Command::Subscribe {
                session,
                conn,
                subscribe,
            },
            Packet::Unsubscribe(unsubscribe) => Command::Unsubscribe {
                session,
                conn,
                unsubscribe,
            },
            Packet::PingReq => return Step::Pong,
            Packet::Disconnect(d) => {
                let expiry = d.properties.session_expiry_interval;
                if self.session_expiry == 0 && expiry.is_some_and(|e| e > 0) {
                    // [MQTT-3.14.2-2]
                    return violation("session expiry set on DISCONNECT after 0 on CONNECT");
                }
                let expiry = expiry.map(|e| e.min(self.ctx.config.limits.max_session_expiry));
                tracing::debug!(reason = %d.reason, "client disconnected");
                return Step::End(End::Disconnect {
                    will: d.reason == ReasonCode::DISCONNECT_WITH_WILL,
                    expiry,
                });
            }
            Packet::Connect(_) => return violation("second CONNECT"),
            Packet::Auth(_) => return violation("AUTH without an authentication method"),
            Packet::ConnAck(_) | Packet::SubAck(_) | Packet::UnsubAck(_) | Packet::PingResp => {
                return violation("server-only packet from a client");
            }
        };
        Step::Forward(cmd)
    }

    /// Answers a protocol error: DISCONNECT with `reason` for 5.0, then close.
    async fn protocol_error<S: Transport>(
        &mut self,
        stream: &mut S,
        reason: ReasonCode,
        why: &str,
    ) -> End {
        tracing::info!(%reason, why, "protocol error; closing");
        Metrics::add(&self.ctx.metrics.protocol_errors, 1);
        self.send_disconnect(stream, reason, Some(why.to_string()))
            .await;
        End::Error
    }

    async fn send_disconnect<S: Transport>(
        &mut self,
        stream: &mut S,
        reason: ReasonCode,
        why: Option<String>,
    ) {
        if let Some(d) = disconnect(self.protocol, reason, why, self.problem_info) {
            self.encode(&d);
            let _ = self.write(stream).await;
        }
    }

    /// Writes everything the router queued, in one batch.
    async fn flush_outbox<S: Transport>(&mut self, stream: &mut S) -> Option<End> {
        // Swap a fresh queue in and drop the drained one after use: an idle connection
        // keeps no queue capacity on either side.
        let mut items = VecDeque::new();
        self.outbox.drain_into(&mut items);
        if self.wbuf.capacity() == 0 && !matches!(items.front(), None | Some(Outgoing::Run { .. }))
        {
            self.wbuf = crate::wbufs::take(1024);
        }
        let mut end = None;
        let mut wired = 0u64;
        let now = Instant::now();
        for item in items.drain(..) {
            match item {
                Outgoing::Publish {
                    msg,
                    qos,
                    pkid,
                    retain,
                    dup,
                    sub_ids,
                } => {
                    let d = Delivery {
                        msg: &msg,
                        qos,
                        pkid,
                        retain,
                        dup,
                        sub_ids,
                    };
                    if let Some(p) = outbound_publish(d, self.protocol, &mut self.aliases, now) {
                        Metrics::add(&self.ctx.metrics.publish_sent, 1);
                        self.encode_delivery(&p, &msg.properties);
                    }
                }
                Outgoing::Wire { bytes, retain } => {
                    // Encoded once for every subscriber; only the RETAIN bit is ours.
                    if let Some((first, rest)) = bytes.split_first() {
                        self.wbuf.reserve(bytes.len());
                        self.wbuf.put_u8(first | u8::from(retain));
                        self.wbuf.extend_from_slice(rest);
                        wired += 1;
                    }
                }
                Outgoing::Run { bytes, count } => {
                    // PUBLISHes the router copied from their shared encodings, ready.
                    if self.wbuf.is_empty() {
                        crate::wbufs::give(std::mem::replace(&mut self.wbuf, bytes));
                    } else {
                        self.wbuf.extend_from_slice(&bytes);
                    }
                    wired += count as u64;
                }
                Outgoing::Packet(p) => {
                    self.unacked_in.answered(&p);
                    self.encode(&p)
                }
                Outgoing::Disconnect(reason, why) => {
                    if let Some(d) = disconnect(self.protocol, reason, why, self.problem_info) {
                        self.encode(&d);
                    }
                    end = Some(End::Kicked);
                    break;
                }
                Outgoing::Moved(reference) => {
                    if let Some(d) = moved(self.protocol, reference) {
                        self.encode(&d);
                    }
                    end = Some(End::Kicked);
                    break;
                }
            }
        }
        drop(items);
        if wired > 0 {
            Metrics::add(&self.ctx.metrics.publish_sent, wired);
            Metrics::add(&self.ctx.metrics.packets_sent, wired);
        }
        if let Err(e) = self.write(stream).await {
            return Some(e);
        }
        end
    }

    fn encode(&mut self, packet: &Packet) {
        match canopy_proto::encode(packet, self.protocol, &mut self.wbuf) {
            Ok(()) => Metrics::add(&self.ctx.metrics.packets_sent, 1),
            Err(e) => tracing::warn!(error = %e, "cannot encode outgoing packet; dropped"),
        }
    }

    /// Encodes a delivery: its per-hop properties from `p`, the message's own from the
    /// shared message (never copied per subscriber).
    fn encode_delivery(&mut self, p: &canopy_proto::Publish, shared: &PublishProperties) {
        match canopy_proto::encode_publish_shared(p, shared, self.protocol, &mut self.wbuf) {
            Ok(()) => Metrics::add(&self.ctx.metrics.packets_sent, 1),
            Err(e) => tracing::warn!(error = %e, "cannot encode outgoing PUBLISH; dropped"),
        }
    }

    async fn write<S: Transport>(&mut self, stream: &mut S) -> Result<(), End> {
        if self.wbuf.is_empty() {
            return Ok(());
        }
        let n = self.wbuf.len();
        // Flushed too: TLS and WebSocket streams may hold written bytes until then.
        let written = async {
            stream.write_all(&self.wbuf).await?;
            stream.flush().await
        };
        match tokio::time::timeout(WRITE_TIMEOUT, written).await {
            Ok(Ok(())) => {
                Metrics::add(&self.ctx.metrics.bytes_sent, n as u64);
                // Nothing is kept between batches: idle connections hold no buffer (it
                // goes back to the shared free list for the next batch).
                if self.wbuf.capacity() > 0 {
                    crate::wbufs::give(std::mem::take(&mut self.wbuf));
                }
                Ok(())
            }
            Ok(Err(_)) => Err(End::Lost),
            Err(_) => {
                tracing::info!("client does not read; cut off as a slow consumer");
                Metrics::add(&self.ctx.metrics.slow_consumers, 1);
                Err(End::Lost)
            }
        }
    }
}

#[cfg(test)]
#[path = "connection_tests.rs"]
mod tests;
