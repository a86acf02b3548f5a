//! The `[limits]` table: every bound the broker enforces on clients, in one place.
//!
//! Owns the names, defaults and accepted ranges of the limits (the range of each key is the
//! `deserialize_with` attribute beside it). Must never enforce anything itself: the server,
//! proto session and router read these values.

use std::time::Duration;

use serde::Deserialize;

use super::values::{MIB, UNBOUNDED, UNBOUNDED_INT, duration, int, size};

/// Largest accepted `max_packet_size`: 256 MiB, just above MQTT's own maximum packet size
/// (a 268,435,455-byte remaining length plus a 5-byte fixed header).
const MAX_PACKET_SIZE_CAP: u64 = 256 * MIB;

/// What a full session queue drops to make room for a new message.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QueueFullPolicy {
    /// Drop the oldest queued QoS 1/2 message (the default): subscribers see fresh data.
    #[default]
    DropOldest,
    /// Drop the message being queued: subscribers see the oldest data first.
    DropNewest,
}

/// Limits on what clients may send, hold and open (`[limits]`). Every key is optional.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Largest MQTT packet, in bytes, the broker accepts and sends (advertised to 5.0 clients
    /// as Maximum Packet Size). Checked as soon as a fixed header is read. Default 1 MiB;
    /// 16 bytes to 256 MiB; a size (`"1MiB"`, `"64KB"`) or a number of bytes.
    #[serde(deserialize_with = "size::<_, _, 16, MAX_PACKET_SIZE_CAP>")]
    pub max_packet_size: u32,
    /// Longest topic name or filter, in bytes. Default 65535; 1 to 65535.
    #[serde(deserialize_with = "int::<_, _, 1, 65535>")]
    pub max_topic_length: usize,
    /// Most levels (`/`-separated parts) in a topic name or filter. Default 128; 1 to 65535.
    #[serde(deserialize_with = "int::<_, _, 1, 65535>")]
    pub max_topic_levels: usize,
    /// Longest client identifier, in bytes. Default 256; 23 to 65535 (a server must accept
    /// 1 to 23 characters [MQTT-3.1.3-5]).
    #[serde(deserialize_with = "int::<_, _, 23, 65535>")]
    pub max_client_id_length: usize,
    /// The broker's Receive Maximum: how many QoS 1/2 PUBLISHes a client may have
    /// unacknowledged towards the broker. Default 256; 1 to 65535.
    #[serde(deserialize_with = "int::<_, _, 1, 65535>")]
    pub receive_maximum: u16,
    /// The broker's outgoing window per session: QoS 1/2 messages sent and not yet
    /// acknowledged, further capped by the client's own Receive Maximum. Default 64; 1 to 65535.
    #[serde(deserialize_with = "int::<_, _, 1, 65535>")]
    pub max_inflight: u16,
    /// Messages kept per offline or slow session before `queue_full` applies. Default 1000;
    /// at least 1.
    #[serde(deserialize_with = "int::<_, _, 1, UNBOUNDED_INT>")]
    pub max_queued_messages: usize,
    /// Bytes of payload kept per offline or slow session before `queue_full` applies.
    /// Default 16 MiB; at least 1 byte; a size or a number of bytes.
    #[serde(deserialize_with = "size::<_, _, 1, UNBOUNDED>")]
    pub max_queued_bytes: u64,
    /// What a full session queue drops: `drop_oldest` (default) or `drop_newest`. QoS 0
    /// messages are always dropped before any QoS 1/2 message. Every drop is counted.
    pub queue_full: QueueFullPolicy,
    /// How long an online subscriber may keep a full queue while its publishers are held
    /// back (their PUBACK/PUBREC waits) before it is cut off as a slow consumer (5.0:
    /// DISCONNECT 0x97) and its session, if persistent, queues as an offline one.
    /// Default `"30s"`; 1s to 1day.
    #[serde(deserialize_with = "duration::<_, 1000, 86_400_000>")]
    pub slow_consumer_timeout: Duration,
    /// Most simultaneous client connections. Default 100000; at least 1.
    #[serde(deserialize_with = "int::<_, _, 1, UNBOUNDED_INT>")]
    pub max_connections: usize,
    /// Most new connections accepted per second, across all listeners; 0 (default) means
    /// unlimited. Above it the listeners stop accepting until the next second: the
    /// connections wait in the kernel's backlog, none is refused.
    #[serde(deserialize_with = "int::<_, _, 0, 4294967295>")]
    pub connection_rate: u32,
    /// Most new connections accepted per second from one source (an IPv4 address or an
    /// IPv6 /64); more are closed at once and counted. 0 (default) means unlimited.
    #[serde(deserialize_with = "int::<_, _, 0, 4294967295>")]
    pub connection_rate_per_address: u32,
    /// Connections above `max_connections` that wait, in arrival order, for a place
    /// before their CONNECT is read. Default 1000; 0 to 1000000.
    #[serde(deserialize_with = "int::<_, _, 0, 1_000_000>")]
    pub admission_queue: usize,
    /// How long a connection may wait in the admission queue; then its CONNECT is read and
    /// refused (5.0: CONNACK 0x97, 3.1.1: return code 3). Default `"10s"`; 100ms to 1h.
    #[serde(deserialize_with = "duration::<_, 100, 3_600_000>")]
    pub admission_timeout: Duration,
    /// How long a new connection has, once admitted, to complete its CONNECT (and, before
    /// that, its TLS and WebSocket handshakes); a connection that trickles bytes is dropped
    /// too. Default `"10s"`; 100ms to 1h.
    #[serde(deserialize_with = "duration::<_, 100, 3_600_000>")]
    pub connect_timeout: Duration,
    /// Longest keep alive, in seconds, the broker lets a client choose; a 5.0 client asking
    /// for more, or for 0, is sent this value as Server Keep Alive. Default 65535; 1 to 65535.
    #[serde(deserialize_with = "int::<_, _, 1, 65535>")]
    pub max_keep_alive: u16,
    /// Topic aliases a 5.0 client may use towards the broker (Topic Alias Maximum); 0
    /// disables them. Default 64; 0 to 65535.
    #[serde(deserialize_with = "int::<_, _, 0, 65535>")]
    pub topic_alias_maximum: u16,
    /// Longest session expiry interval, in seconds, a client may ask for; longer requests are
    /// lowered to this. Default 4294967295 (never expire); 0 to 4294967295.
    #[serde(deserialize_with = "int::<_, _, 0, 4294967295>")]
    pub max_session_expiry: u32,
    /// Most User Properties in one PUBLISH (or will) from a client. A 5.0 QoS 1/2 PUBLISH
    /// over it is answered PUBACK/PUBREC 0x97 (Quota exceeded) and not routed; a QoS 0 one
    /// is dropped and counted; a will over it refuses the CONNECT (CONNACK 0x97). Default
    /// 128; 0 to 1000000.
    #[serde(deserialize_with = "int::<_, _, 0, 1_000_000>")]
    pub max_user_properties: usize,
    /// Most subscriptions one session may hold; a SUBSCRIBE of a new filter beyond it is
    /// refused for that filter (5.0: 0x97 Quota exceeded, 3.1.1: 0x80). Default 100000;
    /// at least 1.
    #[serde(deserialize_with = "int::<_, _, 1, UNBOUNDED_INT>")]
    pub max_subscriptions_per_client: usize,
    /// Most retained messages held in total. Default 1000000; at least 1.
    #[serde(deserialize_with = "int::<_, _, 1, UNBOUNDED_INT>")]
    pub max_retained_messages: usize,
    /// Most bytes (topic and payload) of retained messages held in total. Default 1 GiB.
    #[serde(deserialize_with = "size::<_, _, 1, UNBOUNDED>")]
    pub max_retained_bytes: u64,
    /// Most retained messages one client's PUBLISHes may hold. Default 10000; at least 1.
    #[serde(deserialize_with = "int::<_, _, 1, UNBOUNDED_INT>")]
    pub max_retained_messages_per_client: usize,
    /// Most bytes (topic and payload) of retained messages one client's PUBLISHes may hold.
    /// Default 64 MiB.
    #[serde(deserialize_with = "size::<_, _, 1, UNBOUNDED>")]
    pub max_retained_bytes_per_client: u64,
    /// Whether retained messages are supported (Retain Available). Default true.
    pub retain_available: bool,
    /// Highest QoS the broker grants (Maximum QoS). Default 2; 0 to 2.
    #[serde(deserialize_with = "int::<_, _, 0, 2>")]
    pub maximum_qos: u8,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_packet_size: 1024 * 1024,
            max_topic_length: 65535,
            max_topic_levels: 128,
            max_client_id_length: 256,
            receive_maximum: 256,
            max_inflight: 64,
            max_queued_messages: 1000,
            max_queued_bytes: 16 * MIB,
            queue_full: QueueFullPolicy::DropOldest,
            slow_consumer_timeout: Duration::from_secs(30),
            max_connections: 100_000,
            connection_rate: 0,
            connection_rate_per_address: 0,
            admission_queue: 1000,
            admission_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(10),
            max_keep_alive: 65535,
            topic_alias_maximum: 64,
            max_session_expiry: u32::MAX,
            max_user_properties: 128,
            max_subscriptions_per_client: 100_000,
            max_retained_messages: 1_000_000,
            max_retained_bytes: 1024 * MIB,
            max_retained_messages_per_client: 10_000,
            max_retained_bytes_per_client: 64 * MIB,
            retain_available: true,
            maximum_qos: 2,
        }
    }
}
