//! Errors of the broker layer: starting, binding, the store. Protocol errors of one
//! client never become a `BrokerError`; they end that client only.

use std::net::SocketAddr;

use crate::config::ConfigError;
use crate::store::StoreError;

/// Why the broker could not start or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A listener could not bind its address.
    #[error("cannot listen on {addr} ({key}): {reason}")]
    Bind {
        /// The address from the configuration.
        addr: SocketAddr,
        /// The configuration key that asked for it (`listener[0].bind`, `dns.listen`).
        key: String,
        /// The operating system's error.
        reason: std::io::Error,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The password or ACL file could not be loaded.
    #[error("auth: {0}")]
    Auth(#[from] crate::auth::AuthError),
    /// A listener's TLS files could not be loaded.
    #[error("listener {addr}: {source}")]
    Tls {
        /// The listener's configured address.
        addr: SocketAddr,
        /// What is wrong with its files.
        source: crate::server::tls::TlsError,
    },
    /// The cluster join link's password file could not be read.
    #[error("cluster.join_password_file {}: {source}", path.display())]
    ClusterJoin {
        /// The file.
        path: std::path::PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// An embedded `[[bridge]]` could not start.
    #[error("bridge: {0}")]
    Bridge(#[from] canopy_metabroker::BridgeError),
}
