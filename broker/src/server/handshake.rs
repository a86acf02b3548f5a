//! The CONNECT / CONNACK exchange of one connection.
//!
//! Owns the checks a CONNECT must pass before the router hears of it (protocol
//! version, client identifier, credentials, limits, will), the assignment of client
//! identifiers, and the CONNACK with its 5.0 properties. It never changes routing state
//! itself: a valid CONNECT becomes one [`Command::Connect`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::BytesMut;
use canopy_proto::{ConnAck, ConnAckProperties, Connect, Packet, ProtoError, Protocol, ReasonCode};
use tokio::io::AsyncWriteExt;
use tokio::sync::oneshot;

use super::ServerCtx;
use super::transport::Transport;
use crate::metrics::Metrics;
use crate::outbox::Outbox;
use crate::router::{Command, ConnectReply, ConnectRequest};
use crate::services::cluster::{Admission, ClusterBook};
use canopy_model::cluster::NodeRecord;

/// What the rest of the connection needs to know after a successful CONNECT.
#[derive(Debug)]
pub struct Established {
    /// Protocol level.
    pub protocol: Protocol,
    /// The router's answer.
    pub reply: ConnectReply,
    /// The outbox the router writes to.
    pub outbox: Arc<Outbox>,
    /// Keep alive in force, seconds.
    pub keep_alive: u16,
    /// Session Expiry Interval from CONNECT (for the DISCONNECT rule [MQTT-3.14.2-2]).
    pub session_expiry: u32,
    /// Topic aliases the client may use towards us.
    pub alias_max_in: u16,
    /// Topic aliases we may use towards the client.
    pub alias_max_out: u16,
    /// Whether the client accepts reason strings (Request Problem Information).
    pub problem_info: bool,
    /// The user name in force: the certificate's CN on a `use_identity_as_username`
    /// listener, else the CONNECT's user name (for the ACL).
    pub user: Option<Arc<str>>,
    /// Whether `user` was proved (password file or certificate).
    pub authenticated: bool,
}

/// Answers a CONNECT that cannot be accepted, on the wire and in the log.
pub async fn refuse<S: Transport>(
    stream: &mut S,
    protocol: Protocol,
    reason: ReasonCode,
    ctx: &ServerCtx,
    why: &str,
) {
    tracing::info!(%reason, why, "connection refused");
    Metrics::add(&ctx.metrics.connections_refused, 1);
    let mut ack = ConnAck {
        session_present: false,
        reason,
        properties: ConnAckProperties::default(),
    };
    if protocol.is_v5() {
        ack.properties.reason_string = Some(why.to_string());
    }
    let mut buf = BytesMut::new();
    if canopy_proto::encode(&Packet::ConnAck(ack), protocol, &mut buf).is_ok() {
        let _ = stream.write_all(&buf).await;
    }
    let _ = stream.shutdown().await;
}

/// Answers a CONNECT whose protocol level we do not speak [MQTT-3.1.2-2].
pub async fn refuse_protocol<S: Transport>(stream: &mut S, err: &ProtoError, ctx: &ServerCtx) {
    if let ProtoError::UnsupportedProtocol { level, .. } = err {
        let protocol = if *level == 5 {
            Protocol::V5
        } else {
            Protocol::V311
        };
        refuse(
            stream,
            protocol,
            ReasonCode::UNSUPPORTED_PROTOCOL_VERSION,
            ctx,
            "unsupported protocol version",
        )
        .await;
    }
}

/// Why a CONNECT is refused: the one value every refusal goes through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// Protocol to answer in.
    pub protocol: Protocol,
    /// CONNACK reason code (mapped to a 3.1.1 return code by the encoder).
    pub reason: ReasonCode,
    /// For the log and the 5.0 reason string.
    pub why: &'static str,
}

/// A CONNECT that passed every check that needs no IO.
#[derive(Debug)]
pub struct Accepted {
    /// Protocol level.
    pub protocol: Protocol,
    /// The client identifier in force (assigned if the client sent none).
    pub client_id: Arc<str>,
    /// The identifier the broker assigned, to tell a 5.0 client [MQTT-3.2.2-16].
    pub assigned: Option<String>,
    /// Session Expiry Interval the client asked for.
    pub requested_expiry: u32,
    /// Session Expiry Interval granted.
    pub session_expiry: u32,
    /// Keep alive in force, seconds.
    pub keep_alive: u16,
    /// Server Keep Alive to announce (5.0), when it differs from the client's.
    pub server_keep_alive: Option<u16>,
}

/// Decides whether `connect` may proceed, without IO: authentication method, connection
/// count, credentials, client identifier, will and session limits. `open` is the number
/// of open connections; `assign` yields a fresh number for an assigned identifier.
pub fn validate(
    connect: &Connect,
    cfg: &crate::config::Config,
    anonymous: bool,
    open: usize,
    assign: impl FnOnce() -> u64,
) -> Result<Accepted, Refusal> {
    let limits = &cfg.limits;
    let protocol = connect.protocol.unwrap_or(Protocol::V311);
    let v5 = protocol.is_v5();
    let refuse = |reason, why| Refusal {
        protocol,
        reason,
        why,
    };
    if connect.properties.authentication_method.is_some() {
        return Err(refuse(
            ReasonCode::BAD_AUTHENTICATION_METHOD,
            "enhanced authentication is not supported",
        ));
    }
    if open > limits.max_connections {
        let reason = if v5 {
            ReasonCode::QUOTA_EXCEEDED
        } else {
            ReasonCode::SERVER_UNAVAILABLE
        };
        return Err(refuse(reason, "too many connections"));
    }
    // Cheap first check; user names and passwords are decided by `Auth::login` after
    // every check here has passed, so a refused CONNECT costs no password hash.
    if connect.username.is_none() && !anonymous {
        return Err(refuse(
            ReasonCode::NOT_AUTHORIZED,
            "anonymous access is not allowed",
        ));
    }
    let mut assigned = None;
    let client_id: Arc<str> = if connect.client_id.is_empty() {
        // [MQTT-3.1.3-8]: 3.1.1 refuses an empty id with a persistent session; 3.1
        // refuses it always. 5.0 assigns one [MQTT-3.1.3-6].
        if protocol == Protocol::V31 || (protocol == Protocol::V311 && !connect.clean_start) {
            return Err(refuse(
                ReasonCode::CLIENT_IDENTIFIER_NOT_VALID,
                "empty client identifier",
            ));
        }
        let n = assign();
        let id = format!(
            "{}-{:x}",
            cfg.node_id,
            n ^ (u64::from(std::process::id()) << 32)
        );
        assigned = Some(id.clone());
        Arc::from(id)
    } else {
        Arc::from(connect.client_id.as_str())
    };
    if client_id.len() > limits.max_client_id_length {
        return Err(refuse(
            ReasonCode::CLIENT_IDENTIFIER_NOT_VALID,
            "client identifier too long",
        ));
    }
    if let Some(w) = &connect.will {
        if w.qos as u8 > limits.maximum_qos {
            return Err(refuse(
                ReasonCode::QOS_NOT_SUPPORTED,
                "will QoS above the maximum",
            ));
        }
        if w.properties.user_properties.len() > limits.max_user_properties {
            return Err(refuse(
                ReasonCode::QUOTA_EXCEEDED,
                "will has more user properties than max_user_properties",
            ));
        }
        if w.retain && !limits.retain_available {
            return Err(refuse(
                ReasonCode::RETAIN_NOT_SUPPORTED,
                "retain is not available",
            ));
        }
        if w.topic.len() > limits.max_topic_length || w.topic.depth() > limits.max_topic_levels {
            return Err(refuse(
                ReasonCode::TOPIC_NAME_INVALID,
                "will topic exceeds the limits",
            ));
        }
    }
    let requested_expiry = if v5 {
        connect.properties.session_expiry_interval.unwrap_or(0)
    } else if connect.clean_start {
        0
    } else {
        u32::MAX
    };
    let mut keep_alive = connect.keep_alive;
    let mut server_keep_alive = None;
    if limits.max_keep_alive < u16::MAX && (keep_alive == 0 || keep_alive > limits.max_keep_alive) {
        if !v5 {
            // 3.1/3.1.1 has no Server Keep Alive to tell the client a lower value, and
            // cutting it off at a limit it never heard of would look like a network fault:
            // refuse, as Mosquitto does (return code 2, identifier rejected).
            return Err(refuse(
                ReasonCode::CLIENT_IDENTIFIER_NOT_VALID,
                "keep alive 0 or above max_keep_alive",
            ));
        }
        keep_alive = limits.max_keep_alive;
        server_keep_alive = Some(keep_alive);
    }
    Ok(Accepted {
        protocol,
        client_id,
        assigned,
        requested_expiry,
        session_expiry: requested_expiry.min(limits.max_session_expiry),
        keep_alive,
        server_keep_alive,
    })
}

/// The CONNACK for an accepted CONNECT, with the 5.0 properties that tell the client
/// the limits in force, and the user property `presence` = `agent` when the broker runs
/// its presence agent (docs/presence.md).
pub fn connack(
    a: &Accepted,
    limits: &crate::config::Limits,
    session_present: bool,
    presence_agent: bool,
) -> ConnAck {
    let mut ack = ConnAck {
        session_present,
        reason: ReasonCode::SUCCESS,
        properties: Default::default(),
    };
    if a.protocol.is_v5() {
        let p = &mut ack.properties;
        if a.session_expiry != a.requested_expiry {
            p.session_expiry_interval = Some(a.session_expiry);
        }
        p.receive_maximum = Some(limits.receive_maximum);
        if limits.maximum_qos < 2 {
            p.maximum_qos = Some(limits.maximum_qos);
        }
        if !limits.retain_available {
            p.retain_available = Some(0);
        }
        p.maximum_packet_size = Some(limits.max_packet_size);
        p.assigned_client_identifier = a.assigned.clone();
        p.topic_alias_maximum = Some(limits.topic_alias_maximum);
        p.server_keep_alive = a.server_keep_alive;
        if presence_agent {
            p.user_properties
                .push(("presence".to_owned(), "agent".to_owned()));
        }
    }
    ack
}

/// Where `connect` is served (SPEC §6, docs/cluster.md): always `Local` without
/// `[cluster]`; otherwise the cluster book's [`ClusterBook::admit`] for its client id (an
/// empty id is one the broker would assign) and protocol. Decided before the login, so a
/// client sent elsewhere costs no password hash here: its node checks it.
pub fn admission(connect: &Connect, cluster: Option<&ClusterBook>) -> Admission {
    let Some(book) = cluster else {
        return Admission::Local;
    };
    book.admit(
        &connect.client_id,
        connect.client_id.is_empty(),
        connect.protocol.unwrap_or(Protocol::V311),
        connect.username.as_deref(),
    )
}

/// The CONNACK that sends a 5.0 client to `node`: 0x9C (Use another server) with the
/// node's advertised address as Server Reference.
pub fn redirect_connack(node: &NodeRecord) -> ConnAck {
    ConnAck {
        session_present: false,
        reason: ReasonCode::USE_ANOTHER_SERVER,
        properties: ConnAckProperties {
            server_reference: Some(node.advertise.clone()),
            ..Default::default()
        },
    }
}

/// Sends a 5.0 client to `node` ([`redirect_connack`]) and closes the connection.
pub async fn redirect<S: Transport>(stream: &mut S, node: &NodeRecord, ctx: &ServerCtx) {
    tracing::info!(node = %node.node, reference = %node.advertise, "client redirected to its node");
    let mut buf = BytesMut::new();
    let ack = Packet::ConnAck(redirect_connack(node));
    if canopy_proto::encode(&ack, Protocol::V5, &mut buf).is_ok()
        && stream.write_all(&buf).await.is_ok()
    {
        let _ = stream.flush().await;
        Metrics::add(&ctx.metrics.bytes_sent, buf.len() as u64);
        Metrics::add(&ctx.metrics.packets_sent, 1);
    }
    let _ = stream.shutdown().await;
}

/// Validates `connect`, registers it with the router and writes the CONNACK.
/// Returns `None` when the connection is to be closed (the answer is already sent).
pub async fn establish<S: Transport>(
    stream: &mut S,
    connect: Connect,
    peer: SocketAddr,
    ctx: &ServerCtx,
) -> Option<Established> {
    let limits = &ctx.config.limits;
    // Served connections (this one included); admission keeps it within the limit.
    let open = ctx.admission.serving();
    // A certificate's CN stands for the user name: such a client is never anonymous.
    let anonymous = ctx.anonymous || stream.identity().is_some();
    let accepted = match validate(&connect, &ctx.config, anonymous, open, || {
        ctx.next_assigned.fetch_add(1, Ordering::Relaxed)
    }) {
        Ok(a) => a,
        Err(r) => {
            refuse(stream, r.protocol, r.reason, ctx, r.why).await;
            return None;
        }
    };
    let protocol = accepted.protocol;
    let v5 = protocol.is_v5();
    tracing::Span::current().record("client_id", &*accepted.client_id);
    let mut bridge = false;
    let (user, authenticated) = match stream.identity() {
        Some(cn) if crate::auth::internal::is_reserved_user(cn) => {
            Metrics::add(&ctx.metrics.logins_failed, 1);
            let why = "a certificate may not name an in-process bridge user";
            refuse(
                stream,
                protocol,
                ReasonCode::BAD_USER_NAME_OR_PASSWORD,
                ctx,
                why,
            )
            .await;
            return None;
        }
        Some(cn) => (Some(Arc::<str>::from(cn)), true),
        None => {
            let user = connect.username.as_deref();
            let login = ctx
                .auth
                .login(peer.ip(), user, connect.password.as_deref(), ctx.anonymous)
                .await;
            match login {
                crate::auth::Login::Accepted { authenticated } => {
                    (user.map(Arc::<str>::from), authenticated)
                }
                crate::auth::Login::Bridge => {
                    bridge = true;
                    (user.map(Arc::<str>::from), true)
                }
                crate::auth::Login::BadCredentials => {
                    Metrics::add(&ctx.metrics.logins_failed, 1);
                    let why = "unknown user name or password";
                    refuse(
                        stream,
                        protocol,
                        ReasonCode::BAD_USER_NAME_OR_PASSWORD,
                        ctx,
                        why,
                    )
                    .await;
                    return None;
                }
                crate::auth::Login::NotAuthorized => {
                    let why = "anonymous access is not allowed";
                    refuse(stream, protocol, ReasonCode::NOT_AUTHORIZED, ctx, why).await;
                    return None;
                }
            }
        }
    };
    if !bridge && ctx.auth.bridge_tokens().reserves(&accepted.client_id) {
        let why = "this client identifier belongs to an embedded bridge";
        let reason = ReasonCode::CLIENT_IDENTIFIER_NOT_VALID;
        refuse(stream, protocol, reason, ctx, why).await;
        return None;
    }
    let props = &connect.properties;
    let outbox = Outbox::new(super::QOS0_OUTBOX);
    let (tx, rx) = oneshot::channel();
    let will = connect.will.map(|mut w| {
        if !v5 {
            w.properties = Default::default();
        }
        w
    });
    let req = ConnectRequest {
        client_id: accepted.client_id.clone(),
        assigned: accepted.assigned.is_some(),
        clean_start: connect.clean_start,
        session_expiry: accepted.session_expiry,
        will,
        protocol,
        receive_maximum: props.receive_maximum.unwrap_or(u16::MAX),
        max_packet_size: props.maximum_packet_size,
        topic_alias_maximum: props.topic_alias_maximum.unwrap_or(0),
        // Only a proved name (password file or certificate) counts: a name a client merely
        // claims grants nothing, so such a client gets the ACL's anonymous rules.
        user: user.clone().filter(|_| authenticated),
        bridge,
        outbox: outbox.clone(),
        reply: tx,
    };
    let reply = match ctx.router.send(Command::Connect(Box::new(req))).await {
        Ok(()) => rx.await.ok(),
        Err(_) => None,
    };
    let Some(reply) = reply else {
        let why = "broker is stopping";
        refuse(stream, protocol, ReasonCode::SERVER_UNAVAILABLE, ctx, why).await;
        return None;
    };
    let ack = connack(
        &accepted,
        limits,
        reply.session_present,
        ctx.config.presence.enabled,
    );
    let mut buf = BytesMut::new();
    if canopy_proto::encode(&Packet::ConnAck(ack), protocol, &mut buf).is_err()
        || stream.write_all(&buf).await.is_err()
        // TLS and WebSocket streams may hold written bytes until flushed.
        || stream.flush().await.is_err()
    {
        let _ = ctx
            .router
            .send(Command::Disconnected {
                session: reply.session,
                conn: reply.conn,
                publish_will: true,
                session_expiry: None,
                reason: "connection lost",
            })
            .await;
        return None;
    }
    Metrics::add(&ctx.metrics.bytes_sent, buf.len() as u64);
    Metrics::add(&ctx.metrics.packets_sent, 1);
    ctx.metrics.client_connected();
    tracing::debug!(
        ?protocol,
        keep_alive = accepted.keep_alive,
        session_present = reply.session_present,
        "client connected"
    );
    Some(Established {
        protocol,
        reply,
        outbox,
        keep_alive: accepted.keep_alive,
        session_expiry: accepted.session_expiry,
        alias_max_in: if v5 { limits.topic_alias_maximum } else { 0 },
        alias_max_out: if v5 {
            props.topic_alias_maximum.unwrap_or(0)
        } else {
            0
        },
        user,
        authenticated,
        problem_info: props.request_problem_information.unwrap_or(1) == 1,
    })
}

#[cfg(test)]
#[path = "handshake_tests.rs"]
mod tests;
