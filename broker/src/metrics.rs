//! Broker-wide counters, shared by the router and every connection task.
//!
//! Owns plain atomic counters only (relaxed ordering: they are statistics, not
//! synchronisation). It never publishes anything itself; `sys` turns a snapshot into
//! `$SYS` topics.

use std::sync::atomic::{AtomicU64, Ordering};

macro_rules! counters {
    ($(#[doc = $doc:literal] $name:ident),* $(,)?) => {
        /// Counters shared across the broker.
        #[derive(Debug, Default)]
        pub struct Metrics {
            $(#[doc = $doc] pub $name: AtomicU64,)*
        }

        impl Metrics {
            /// Every counter as (name, help text, value), for exposition.
            pub fn snapshot(&self) -> Vec<(&'static str, &'static str, u64)> {
                vec![$((stringify!($name), $doc.trim(), self.$name.load(Ordering::Relaxed)),)*]
            }
        }
    };
}

counters! {
    /// Bytes read from client sockets.
    bytes_received,
    /// Bytes written to client sockets.
    bytes_sent,
    /// Control packets received.
    packets_received,
    /// Control packets sent.
    packets_sent,
    /// PUBLISH packets received from clients.
    publish_received,
    /// PUBLISH packets sent to clients.
    publish_sent,
    /// Messages dropped: full queues, slow consumers, oversized for the receiver, expired.
    messages_dropped,
    /// Connections closed because a packet was malformed or broke a protocol rule.
    protocol_errors,
    /// Connections refused at CONNECT (bad version, id, credentials, limits).
    connections_refused,
    /// Connections currently open (CONNACK sent).
    clients_connected,
    /// Most connections open at once since start.
    clients_maximum,
    /// Connections closed for keep-alive timeout.
    keepalive_timeouts,
    /// PUBLISH packets refused by topic rules (e.g. `$SYS` from a client).
    publish_denied,
    /// Connections cut off as slow consumers (not reading, or a full queue for too long).
    slow_consumers,
    /// Logins refused for an unknown user or a wrong or missing password.
    logins_failed,
    /// Publisher acknowledgements held back because a subscriber's queue was full.
    publishers_held,
    /// Connections that waited in the admission queue (above `max_connections`).
    connections_queued,
    /// Connections waiting in the admission queue now.
    connections_waiting,
    /// Queued connections refused at `admission_timeout` (CONNACK 0x97 / 3).
    admission_timeouts,
    /// Connections dropped for not completing CONNECT within `connect_timeout`.
    connect_timeouts,
    /// Connections closed at once for exceeding `connection_rate_per_address`.
    connections_rate_limited,
    /// PUBLISHes refused for carrying more than `max_user_properties` User Properties.
    user_properties_exceeded,
    /// SUBSCRIBE filters and retained PUBLISHes refused by a subscription or retained quota.
    quota_exceeded,
}

impl Metrics {
    /// Adds `n` to a counter.
    #[inline]
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Reads a counter.
    #[inline]
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    /// Records a new connection and keeps the maximum.
    pub fn client_connected(&self) {
        let now = self.clients_connected.fetch_add(1, Ordering::Relaxed) + 1;
        self.clients_maximum.fetch_max(now, Ordering::Relaxed);
    }

    /// Records a closed connection.
    pub fn client_disconnected(&self) {
        self.clients_connected.fetch_sub(1, Ordering::Relaxed);
    }
}
