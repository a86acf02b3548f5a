//! The messages a connection sends the router and the router's answer to a CONNECT.
//!
//! Owns only the shapes of [`Command`], [`ConnectRequest`] and [`ConnectReply`]. Every
//! command that concerns an established session names it by `(session, conn)`, so that
//! the router can drop commands of a connection that was replaced ([`Command::target`]).

use std::sync::Arc;

use canopy_proto::{Protocol, Publish, Subscribe, Unsubscribe, Will};
use tokio::sync::oneshot;

use crate::outbox::Outbox;

/// What a connection asks of the router.
#[derive(Debug)]
pub enum Command {
    /// A client sent a valid CONNECT.
    Connect(Box<ConnectRequest>),
    /// An incoming PUBLISH whose topic alias is already resolved.
    Publish {
        /// Session key from [`ConnectReply`].
        session: usize,
        /// Connection generation from [`ConnectReply`].
        conn: u64,
        /// The packet; `topic` is `Some`.
        publish: Publish,
    },
    /// PUBACK for a delivery.
    PubAck {
        session: usize,
        conn: u64,
        pkid: u16,
    },
    /// PUBREC for a delivery; `failed` when its reason code is an error.
    PubRec {
        session: usize,
        conn: u64,
        pkid: u16,
        failed: bool,
    },
    /// PUBREL for an incoming QoS 2 message.
    PubRel {
        session: usize,
        conn: u64,
        pkid: u16,
    },
    /// PUBCOMP for a delivery.
    PubComp {
        session: usize,
        conn: u64,
        pkid: u16,
    },
    /// SUBSCRIBE.
    Subscribe {
        session: usize,
        conn: u64,
        subscribe: Subscribe,
    },
    /// UNSUBSCRIBE.
    Unsubscribe {
        session: usize,
        conn: u64,
        unsubscribe: Unsubscribe,
    },
    /// The connection ended.
    Disconnected {
        /// Session key.
        session: usize,
        /// Connection generation.
        conn: u64,
        /// Whether the will is to be published (no DISCONNECT 0x00 was received).
        publish_will: bool,
        /// A new Session Expiry Interval from a 5.0 DISCONNECT.
        session_expiry: Option<u32>,
        /// Why, for the status document: `disconnected`, `connection lost`,
        /// `keepalive timeout`, `protocol error`.
        reason: &'static str,
    },
    /// The connection wrote everything queued and was asked to say so (see
    /// [`Outbox::request_drain_notice`]).
    Drained {
        /// Session key.
        session: usize,
        /// Connection generation.
        conn: u64,
    },
    /// Stop: disconnect everyone, flush the store, then answer.
    Shutdown(oneshot::Sender<()>),
}

/// A CONNECT that passed the connection's own checks.
#[derive(Debug)]
pub struct ConnectRequest {
    /// Client identifier (assigned by the connection if the client sent none).
    pub client_id: Arc<str>,
    /// Clean start / clean session.
    pub clean_start: bool,
    /// Session Expiry Interval granted, seconds (`u32::MAX`: never).
    pub session_expiry: u32,
    /// The will, if any.
    pub will: Option<Will>,
    /// Protocol level.
    pub protocol: Protocol,
    /// The client's Receive Maximum (65,535 when absent).
    pub receive_maximum: u16,
    /// The client's Maximum Packet Size, if set.
    pub max_packet_size: Option<u32>,
    /// The client's Topic Alias Maximum (5.0; 0 when absent): deliveries may carry
    /// topic aliases only when it is above 0.
    pub topic_alias_maximum: u16,
    /// The authenticated user name, if the client logged in with one.
    pub user: Option<Arc<str>>,
    /// Whether the connection is this broker's own embedded bridge, proved by its
    /// in-process token (`auth::internal`), never by anything a client chooses.
    pub bridge: bool,
    /// Whether the broker assigned `client_id` (the client sent an empty one).
    pub assigned: bool,
    /// The connection's outbox.
    pub outbox: Arc<Outbox>,
    /// Where to answer.
    pub reply: oneshot::Sender<ConnectReply>,
}

/// The router's answer to a CONNECT.
#[derive(Debug, Clone, Copy)]
pub struct ConnectReply {
    /// Session key to quote in later commands.
    pub session: usize,
    /// Connection generation to quote in later commands.
    pub conn: u64,
    /// Whether an existing session was resumed [MQTT-3.2.2-2].
    pub session_present: bool,
}

impl Command {
    /// The `(session, conn)` a command concerns, if it concerns an established one.
    pub fn target(&self) -> Option<(usize, u64)> {
        match *self {
            Command::Publish { session, conn, .. }
            | Command::PubAck { session, conn, .. }
            | Command::PubRec { session, conn, .. }
            | Command::PubRel { session, conn, .. }
            | Command::PubComp { session, conn, .. }
            | Command::Subscribe { session, conn, .. }
            | Command::Unsubscribe { session, conn, .. }
            | Command::Disconnected { session, conn, .. }
            | Command::Drained { session, conn } => Some((session, conn)),
            Command::Connect(_) | Command::Shutdown(_) => None,
        }
    }
}
