//! The `[[resource]]` tables (SPEC §7): scarce resources shared out as topics.
//!
//! Owns these keys' names, defaults and accepted ranges (each range is the `deserialize_with`
//! attribute beside its field). Must never run the service itself: the resources service
//! (`crate::services::resources`) reads these values.

use std::time::Duration;

use serde::Deserialize;

use super::values::{duration, int, node_id};

/// How a resource serves requesters beyond `max_concurrent`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResourceMode {
    /// A FIFO queue: a waiter is told its position at every change and granted at the head.
    /// The default.
    #[default]
    Queue,
    /// Access slots: a requester is scheduled into the earliest slot of length `slot` in which
    /// a unit is free and granted when the slot begins.
    Slots,
}

/// One scarce resource (`[[resource]]`): at most `max_concurrent` clients hold it at a time.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceConfig {
    /// The resource's name, one topic level of `$resource/<name>/...`: 1 to 64 characters,
    /// no whitespace, control characters, `/`, `+` or `#`. Required; names are not repeated.
    #[serde(deserialize_with = "node_id")]
    pub name: String,
    /// How many clients may hold the resource at once. Default `1`; 1 to 1000000.
    #[serde(
        default = "default_max_concurrent",
        deserialize_with = "int::<_, _, 1, 1_000_000>"
    )]
    pub max_concurrent: u32,
    /// How long a grant lasts unless renewed (a client may ask for less). Default `"60s"`;
    /// 100ms to 7days.
    #[serde(
        default = "default_lease",
        deserialize_with = "duration::<_, 100, 604_800_000>"
    )]
    pub lease: Duration,
    /// Most waiters (queue mode) or reservations (slots mode) at once; a request beyond it is
    /// refused with `"queue full"`. `0`: never wait. Default `1000`; 0 to 10000.
    #[serde(
        default = "default_queue_limit",
        deserialize_with = "int::<_, _, 0, 10_000>"
    )]
    pub queue_limit: usize,
    /// `queue` (default) or `slots`.
    #[serde(default)]
    pub mode: ResourceMode,
    /// Length of one access slot in `slots` mode. Default `"60s"`; 100ms to 7days.
    #[serde(
        default = "default_slot",
        deserialize_with = "duration::<_, 100, 604_800_000>"
    )]
    pub slot: Duration,
    /// How long after a clean session's connection ends its grant, place in the queue or
    /// reservation is kept for a reconnect with the same client id. Default `"0s"`; 0s to 1h.
    #[serde(default, deserialize_with = "duration::<_, 0, 3_600_000>")]
    pub grace: Duration,
}

/// The default `[[resource]] max_concurrent`.
pub(super) const DEFAULT_MAX_CONCURRENT: u32 = 1;
/// The default `[[resource]] lease` and `slot`.
pub(super) const DEFAULT_LEASE: Duration = Duration::from_secs(60);
/// The default `[[resource]] queue_limit`.
pub(super) const DEFAULT_QUEUE_LIMIT: usize = 1000;

fn default_max_concurrent() -> u32 {
    DEFAULT_MAX_CONCURRENT
}

fn default_lease() -> Duration {
    DEFAULT_LEASE
}

fn default_slot() -> Duration {
    DEFAULT_LEASE
}

fn default_queue_limit() -> usize {
    DEFAULT_QUEUE_LIMIT
}
