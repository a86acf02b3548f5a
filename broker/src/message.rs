//! The application message as the router fans it out.
//!
//! A [`Message`] is immutable once built and shared as `Arc<Message>` by every
//! subscriber's queue, in-flight window and the retained trie. Per-delivery fields
//! (QoS granted, packet id, retain flag, subscription ids) live beside it, never in it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use canopy_proto::{Protocol, Publish, PublishProperties, QoS, TopicName};

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

    /// The QoS 0 PUBLISH of this message as every `protocol` subscriber without
    /// per-delivery properties receives it (RETAIN bit clear: the connection sets it per
    /// delivery), to encode once and share among them. 3.x: always the same bytes; 5.0:
    /// only without subscription identifiers and topic aliases, which the caller rules
    /// out. `None` for a message with an expiry (each delivery checks it and 5.0 sends
    /// what is left), or one that cannot be encoded.
    pub fn shared_qos0(&self, protocol: Protocol) -> Option<Arc<[u8]>> {
        if self.expires_at.is_some() {
            return None;
        }
        let p = Publish {
            dup: false,
            qos: QoS::AtMostOnce,
            retain: false,
            topic: Some(self.topic.clone()),
            pkid: None,
            properties: PublishProperties::default(),
            payload: self.payload.clone(),
        };
        let mut out = BytesMut::with_capacity(canopy_proto::encoded_publish_shared_len(
            &p,
            &self.properties,
            protocol,
        ));
        canopy_proto::encode_publish_shared(&p, &self.properties, protocol, &mut out).ok()?;
        Some(Arc::from(&out[..]))
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
