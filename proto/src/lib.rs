//! canopy-proto: the sans-IO heart of Canopy.
//!
//! Owns the MQTT wire format (3.1, 3.1.1 and 5.0), the typed packets, the validated
//! topic types and the per-connection session state machine. It never performs IO,
//! never reads a clock (time is passed in as [`std::time::Instant`] values) and never
//! spawns tasks: the broker, the metabroker and the tests drive it.
#![warn(missing_docs)]

pub mod codec;
pub mod error;
pub mod packet;
pub mod reason;
pub mod session;
pub mod topic;

pub use codec::{
    DecodeLimits, decode, encode, encode_publish_shared, encoded_len, encoded_publish_shared_len,
    frame_size,
};
pub use error::ProtoError;
pub use packet::*;
pub use reason::ReasonCode;
pub use topic::{SharedFilter, TopicError, TopicFilter, TopicName};
