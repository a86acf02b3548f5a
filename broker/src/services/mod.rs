//! Services modelled as topics (SPEC §5): device status, configuration documents, the
//! map carousel and the DNS listener.
//!
//! Each service owns its own small state and talks to the rest of the broker only
//! through the router (which publishes on its behalf) or through read-only tables such
//! as [`status::StatusBook`]. None of them touches sockets of MQTT clients.

pub mod dns;
pub mod status;
