//! canopy-model: the documents and names that several Canopy crates read and write
//! (status documents, cluster load records and the assignment rule, configuration documents,
//! presence documents, the hop marker, bridge identities, configuration-file error reporting).
//!
//! Owns only shapes and pure functions over them. It must never do IO, hold state or
//! depend on another Canopy crate: the broker, the metabroker and the client all
//! depend on it, never the other way round.
#![warn(missing_docs)]

pub mod bridge;
pub mod cluster;
pub mod config_doc;
pub mod config_error;
pub mod hops;
/// The password file format, argon2id hashing and verification.
pub mod password;
pub mod presence;
pub mod status;
