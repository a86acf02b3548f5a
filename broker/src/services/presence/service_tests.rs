//! The presence agent on a fake host: two users, three devices.

use std::time::Duration;

use canopy_proto::Protocol;

use super::*;
use crate::services::testing::{FakeHost, message};

fn agent() -> PresenceService {
    PresenceService::with_wall_clock(&PresenceConfig::default(), || 1_000)
}
