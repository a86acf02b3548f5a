//! The application message as the router fans it out.
//!
//! A [`Message`] is immutable once built and shared as `Arc<Message>` by every
//! subscriber's queue, in-flight window and the retained trie. Per-delivery fields
//! (QoS granted, packet id, retain flag, subscription ids) live beside it, never in it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use canopy_proto::{PublishProperties, QoS, TopicName};

/// One application message.
#[derive(Debug, Clone)]
pub struct Message {
    /// Topic it was published to.
    pub topic: TopicName,
    /// QoS it was published with.
    pub qos: QoS,
    /// RETAIN flag as published (for Retain As Published).
    pub retain: bool,
    /// Properties as published, minus Topic Alias and Subscription Identifiers, which
    /// are per hop [MQTT-3.3.2-7], [MQTT-3.3.4-6].
    pub properties: PublishProperties,
    /// Payload.
    pub payload: Bytes,
    /// When the Message Expiry Interval runs out, if it was set.
    pub expires_at: Option<Instant>,
}

impl Message {
    /// Whether the message expired at `now` [MQTT-3.3.2-5].
    pub fn expired(&self, now: Instant) -> bool {
        self.expires_at.is_some_and(|t| now >= t)
    }

    /// Seconds of expiry left at `now`, rounded up, for the interval sent on
    /// [MQTT-3.3.2-6].
    pub fn remaining_expiry(&self, now: Instant) -> Option<u32> {
        self.expires_at.map(|t| {
            let left = t.saturating_duration_since(now);
            let secs = left.as_secs() + u64::from(left.subsec_nanos() > 0);
            u32::try_from(secs).unwrap_or(u32::MAX)
        })
    }

    /// A copy whose payload no longer shares the read buffer it was decoded from, for
    /// anything kept long (retained, queued for an offline session).
    pub fn detached(&self) -> Arc<Message> {
        let mut m = self.clone();
        m.payload = Bytes::copy_from_slice(&self.payload);
        Arc::new(m)
    }

    /// Approximate bytes held by the message, for queue byte limits.
    pub fn weight(&self) -> usize {
        self.topic.len() + self.payload.len() + 64
    }

    /// Expiry instant for an interval received at `now`.
    pub fn expiry_from(now: Instant, interval: Option<u32>) -> Option<Instant> {
        interval.map(|s| now + Duration::from_secs(u64::from(s)))
    }
}
