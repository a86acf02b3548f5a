//! The application message as the router fans it out.
//!
//! A [`Message`] is immutable once built and shared as `Arc<Message>` by every
//! subscriber's queue, in-flight window and the retained trie. Per-delivery fields
//! (QoS granted, packet id, retain flag, subscription ids) live beside it, never in it.

use std::fmt;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use canopy_proto::{Protocol, Publish, PublishProperties, QoS, TopicName};

/// The properties of a message that sets none: what an empty [`Props`] derefs to.
static NO_PROPERTIES: PublishProperties = PublishProperties {
    payload_format_indicator: None,
    message_expiry_interval: None,
    topic_alias: None,
    response_topic: None,
    correlation_data: None,
    user_properties: Vec::new(),
    subscription_identifiers: Vec::new(),
    content_type: None,
};

/// A message's own properties in one pointer: allocated (and shared between clones)
/// only when any is set, since most messages (every retained `$status` document of a
/// connected client, 3.x traffic) carry none. Derefs to [`PublishProperties`].
#[derive(Clone, Default)]
pub struct Props(Option<Arc<PublishProperties>>);

impl Props {
    /// Whether no property is set.
    pub fn is_empty(&self) -> bool {
        self.0.as_deref().is_none_or(none_set)
    }
}

/// Whether `p` sets no property. Field by field on purpose: the derived `==` against
/// [`NO_PROPERTIES`] went through `memcmp` and cost a tenth of the router's time in a
/// QoS 0 fan-in (once per PUBLISH).
fn none_set(p: &PublishProperties) -> bool {
    let PublishProperties {
        payload_format_indicator,
        message_expiry_interval,
        topic_alias,
        response_topic,
        correlation_data,
        user_properties,
        subscription_identifiers,
        content_type,
    } = p;
    payload_format_indicator.is_none()
        && message_expiry_interval.is_none()
        && topic_alias.is_none()
        && response_topic.is_none()
        && correlation_data.is_none()
        && user_properties.is_empty()
        && subscription_identifiers.is_empty()
        && content_type.is_none()
}

impl From<PublishProperties> for Props {
    fn from(p: PublishProperties) -> Props {
        if none_set(&p) {
            Props(None)
        } else {
            Props(Some(Arc::new(p)))
        }
    }
}

impl Deref for Props {
    type Target = PublishProperties;

    fn deref(&self) -> &PublishProperties {
        self.0.as_deref().unwrap_or(&NO_PROPERTIES)
    }
}

impl DerefMut for Props {
    /// Allocates (or unshares) the properties to change them.
    fn deref_mut(&mut self) -> &mut PublishProperties {
        Arc::make_mut(self.0.get_or_insert_with(Default::default))
    }
}

impl PartialEq for Props {
    fn eq(&self, other: &Props) -> bool {
        **self == **other
    }
}

impl fmt::Debug for Props {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        (**self).fmt(f)
    }
}

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
    pub properties: Props,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_stays_small() {
        // One per retained message (every connected client's `$status` document) and per
        // queued delivery: anything rarely set goes behind a pointer, as `Props` does.
        let size = std::mem::size_of::<Message>();
        assert!(
            size <= 80,
            "Message is {size} bytes: box rarely set fields (as `Props` boxes the properties)"
        );
    }

    #[test]
    fn empty_properties_allocate_nothing_and_read_as_default() {
        let p = Props::from(PublishProperties::default());
        assert!(p.0.is_none());
        assert!(p.is_empty());
        assert_eq!(*p, PublishProperties::default());
        assert_eq!(std::mem::size_of::<Props>(), std::mem::size_of::<usize>());
    }

    #[test]
    fn set_properties_are_kept_and_shared_by_clones() {
        let p = Props::from(PublishProperties {
            content_type: Some("text/plain".into()),
            ..Default::default()
        });
        let q = p.clone();
        assert_eq!(q.content_type.as_deref(), Some("text/plain"));
        assert!(!q.is_empty());
        assert_eq!(p, q);
        assert_ne!(p, Props::default());
    }

    #[test]
    fn changing_empty_properties_allocates_them() {
        let mut p = Props::default();
        p.user_properties.push(("k".into(), "v".into()));
        assert_eq!(p.user_properties.len(), 1);
        assert!(!p.is_empty());
    }
}
