//! The one error type of the client library, and the process exit status each error maps to.
//!
//! Owns error classification only; it must never print or exit (that is `main.rs`'s job).

use thiserror::Error;

use crate::reason::describe;

/// Exit status used when `canopy sub -W` runs out of time, as mosquitto_sub does.
pub const EXIT_TIMEOUT: i32 = 27;
/// Exit status of `canopy resource acquire` without `--wait` when it would have to queue.
pub const EXIT_NOT_GRANTED: i32 = 3;

/// Everything that can make `canopy pub`, `canopy sub` or `canopy config` fail.
#[derive(Debug, Error)]
pub enum CliError {
    /// Arguments that clap accepted but that do not fit together.
    #[error("{0}")]
    Usage(String),
    /// An option only MQTT 5.0 can carry was given with `-V 3.1.1`.
    #[error("{0} requires MQTT 5.0 (-V 5)")]
    RequiresV5(&'static str),
    /// Reading the message from a file or stdin failed.
    #[error("cannot read {what}: {source}")]
    Input {
        /// What was being read (`stdin`, a file name).
        what: String,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// The TCP connection could not be made or the CONNACK did not arrive in time.
    #[error("cannot connect to {addr}: {reason}")]
    Unreachable {
        /// `host:port` that was tried.
        addr: String,
        /// Why, in words.
        reason: String,
    },
    /// The broker answered CONNACK with a failure code.
    #[error("connection refused by the broker: {0}")]
    Refused(String),
    /// The broker refused a published message (PUBACK/PUBREC reason code >= 0x80).
    #[error("the broker refused the message: {}", describe(*code))]
    PublishRefused {
        /// The reason code.
        code: u8,
    },
    /// The broker refused to store a configuration document (`canopy config set`).
    #[error(
        "the broker refused to write {topic}: {} (only admins listed in the broker's \
         [config] admins may write configuration documents)",
        describe(*code)
    )]
    ConfigWriteRefused {
        /// The `$config/...` topic.
        topic: String,
        /// The reason code.
        code: u8,
    },
    /// Every topic filter in SUBSCRIBE was refused.
    #[error("all subscription requests were denied")]
    AllSubscriptionsDenied,
    /// The connection ended while work was outstanding.
    #[error("connection lost: {0}")]
    ConnectionLost(String),
    /// `-W` elapsed before `-C` messages arrived.
    #[error("timed out")]
    Timeout,
    /// Writing to stdout failed.
    #[error("cannot write output: {0}")]
    Output(std::io::Error),
    /// `canopy resource acquire` without `--wait` found every unit in use.
    #[error("every unit is in use (queued at position {0}, place given back; --wait waits)")]
    NotGranted(u64),
    /// `canopy resource`: the broker refused the request, or the grant was lost.
    #[error("resource: {0}")]
    ResourceRefused(String),
}

impl CliError {
    /// Process exit status for this error: 27 for a `-W` timeout, 3 for a resource not
    /// granted at once, 1 otherwise.
    pub fn exit_code(&self) -> i32 {
        match self {
            Self::Timeout => EXIT_TIMEOUT,
            Self::NotGranted(_) => EXIT_NOT_GRANTED,
            _ => 1,
        }
    }
}
