//! The one rumqttc adapter of the workspace: MQTT 3.1.1 (rumqttc's v4 API) and 5.0
//! (`rumqttc::v5`) behind one face, spoken in 5.0 terms. The `canopy` CLI ([`crate::link`]),
//! the metabroker's links and the integration tests' real clients all connect through it.
//!
//! - [`Options`]: connection options for either version, built into rumqttc's own;
//! - [`Client`]: the request half (publish, subscribe, manual ack, disconnect);
//! - [`Connection`]: the event loop, polled into version-independent [`Event`]s and
//!   [`Failure`]s, with decorrelated-jitter reconnect [`Backoff`] and the state repairs a
//!   resuming client needs.
//!
//! Owns every conversion between the two rumqttc APIs. Must never poll an event loop from a
//! task that also waits on its request channel (rumqttc deadlocks: ARCHITECTURE.md, "what
//! not to copy"): the [`Connection`] belongs to a task of its own, requests go through the
//! [`Client`].

pub mod backoff;
mod connection;
mod follow;
mod options;

use bytes::Bytes;
use rumqttc::v5::mqttbytes::v5 as p5;

pub use backoff::Backoff;
pub use connection::{Connection, Event, Failure, FailureKind};
pub use options::Options;
pub use rumqttc::v5::mqttbytes::QoS;
pub use rumqttc::v5::mqttbytes::v5::{
    Filter, LastWill, Publish, PublishProperties, RetainForwardRule, SubscribeProperties,
};

/// The MQTT protocol version of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Version {
    /// MQTT 3.1.1 (no properties: they are dropped on the way out).
    V311,
    /// MQTT 5.0.
    V5,
}

/// Why a request was not queued: the event loop is gone, the request channel is full
/// (`try_` requests only), or rumqttc refused the topic or filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the request was not queued (connection closed, queue full or invalid topic)")]
pub struct NotQueued;

/// The request half of a connection; cheap to clone into producer tasks.
#[derive(Debug, Clone)]
pub enum Client {
    /// MQTT 3.1.1.
    V4(rumqttc::AsyncClient),
    /// MQTT 5.0.
    V5(rumqttc::v5::AsyncClient),
}

/// rumqttc v4 QoS for a 5.0 one.
pub fn v4_qos(qos: QoS) -> rumqttc::QoS {
    match qos {
        QoS::AtMostOnce => rumqttc::QoS::AtMostOnce,
        QoS::AtLeastOnce => rumqttc::QoS::AtLeastOnce,
        QoS::ExactlyOnce => rumqttc::QoS::ExactlyOnce,
    }
}

/// The 5.0 QoS for a rumqttc v4 one.
pub fn v5_qos(qos: rumqttc::QoS) -> QoS {
    match qos {
        rumqttc::QoS::AtMostOnce => QoS::AtMostOnce,
        rumqttc::QoS::AtLeastOnce => QoS::AtLeastOnce,
        rumqttc::QoS::ExactlyOnce => QoS::ExactlyOnce,
    }
}

fn queued<E>(r: Result<(), E>) -> Result<(), NotQueued> {
    r.map_err(|_| NotQueued)
}

impl Client {
    /// The protocol version.
    pub fn version(&self) -> Version {
        match self {
            Self::V4(_) => Version::V311,
            Self::V5(_) => Version::V5,
        }
    }

    /// Queues `publish` (its packet id is ignored), waiting for room in the request
    /// channel. Properties are dropped on 3.1.1 (on 5.0 none and empty ones encode alike).
    pub async fn publish(&self, publish: Publish) -> Result<(), NotQueued> {
        let (topic, qos, retain, payload, properties) = parts(publish);
        match self {
            Self::V4(c) => {
                // publish_bytes does not check the topic as `publish` does.
                if !rumqttc::valid_topic(&topic) {
                    return Err(NotQueued);
                }
                queued(c.publish_bytes(topic, v4_qos(qos), retain, payload).await)
            }
            Self::V5(c) => {
                let sent = c.publish_with_properties(topic, qos, retain, payload, properties);
                queued(sent.await)
            }
        }
    }

    /// Queues `publish` only if the request channel has room now; otherwise as
    /// [`Client::publish`].
    pub fn try_publish(&self, publish: Publish) -> Result<(), NotQueued> {
        let (topic, qos, retain, payload, properties) = parts(publish);
        match self {
            Self::V4(c) => queued(c.try_publish(topic, v4_qos(qos), retain, payload.to_vec())),
            Self::V5(c) => {
                queued(c.try_publish_with_properties(topic, qos, retain, payload, properties))
            }
        }
    }

    /// Queues one SUBSCRIBE carrying every filter. On 3.1.1 only each filter's path and QoS
    /// are sent (no-local, retain-as-published, retain handling and `properties` are 5.0).
    pub async fn subscribe(
        &self,
        filters: Vec<Filter>,
        properties: Option<SubscribeProperties>,
    ) -> Result<(), NotQueued> {
        match self {
            Self::V4(c) => queued(
                c.subscribe_many(
                    filters
                        .into_iter()
                        .map(|f| rumqttc::SubscribeFilter::new(f.path, v4_qos(f.qos))),
                )
                .await,
            ),
            Self::V5(c) => match properties {
                Some(p) => queued(c.subscribe_many_with_properties(filters, p).await),
                None => queued(c.subscribe_many(filters).await),
            },
        }
    }

    /// Queues one UNSUBSCRIBE for `filter`.
    pub async fn unsubscribe(&self, filter: String) -> Result<(), NotQueued> {
        match self {
            Self::V4(c) => queued(c.unsubscribe(filter).await),
            Self::V5(c) => queued(c.unsubscribe(filter).await),
        }
    }

    /// Acknowledges an incoming PUBLISH (with manual acks): PUBACK for QoS 1, PUBREC for
    /// QoS 2, nothing for QoS 0.
    pub async fn ack(&self, publish: &Publish) -> Result<(), NotQueued> {
        match self {
            Self::V4(c) => {
                let mut p = rumqttc::Publish::new("", v4_qos(publish.qos), Vec::new());
                p.pkid = publish.pkid;
                queued(c.ack(&p).await)
            }
            Self::V5(c) => queued(c.ack(publish).await),
        }
    }

    /// Queues DISCONNECT (the broker then discards the will).
    pub async fn disconnect(&self) -> Result<(), NotQueued> {
        match self {
            Self::V4(c) => queued(c.disconnect().await),
            Self::V5(c) => queued(c.disconnect().await),
        }
    }
}

/// A PUBLISH to queue with [`Client::publish`] (5.0 form; no packet id yet).
pub fn new_publish(
    topic: impl Into<String>,
    qos: QoS,
    retain: bool,
    payload: impl Into<Bytes>,
    properties: Option<PublishProperties>,
) -> Publish {
    let mut p = Publish::new(topic.into(), qos, payload, properties);
    p.retain = retain;
    p
}

/// What rumqttc's request methods take apart.
fn parts(p: Publish) -> (String, QoS, bool, Bytes, PublishProperties) {
    let topic = String::from_utf8_lossy(&p.topic).into_owned();
    (
        topic,
        p.qos,
        p.retain,
        p.payload,
        p.properties.unwrap_or_default(),
    )
}

/// A 5.0 filter with every subscription option spelled out.
pub fn filter(
    path: impl Into<String>,
    qos: QoS,
    no_local: bool,
    retain_as_published: bool,
    retain_handling: u8,
) -> Filter {
    let mut f = Filter::new(path, qos);
    f.nolocal = no_local;
    f.preserve_retain = retain_as_published;
    f.retain_forward_rule = match retain_handling {
        1 => RetainForwardRule::OnNewSubscribe,
        2 => RetainForwardRule::Never,
        _ => RetainForwardRule::OnEverySubscribe,
    };
    f
}

/// The v4 last will for a 5.0 one (its properties are dropped).
fn v4_will(will: &LastWill) -> rumqttc::LastWill {
    rumqttc::LastWill::new(
        String::from_utf8_lossy(&will.topic).into_owned(),
        will.message.to_vec(),
        v4_qos(will.qos),
        will.retain,
    )
}

/// The 5.0 form of a v4 PUBLISH (no properties).
fn publish_from_v4(p: rumqttc::Publish) -> Publish {
    let mut v5 = p5::Publish::new(p.topic, v5_qos(p.qos), p.payload, None);
    v5.pkid = p.pkid;
    v5.retain = p.retain;
    v5.dup = p.dup;
    v5
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qos_converts_both_ways() {
        for q in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
            assert_eq!(v5_qos(v4_qos(q)), q);
        }
    }

    #[test]
    fn v4_publish_keeps_every_field_in_5_0_form() {
        let mut p = rumqttc::Publish::new("a/b", rumqttc::QoS::ExactlyOnce, b"x".to_vec());
        p.pkid = 7;
        p.retain = true;
        p.dup = true;
        let v5 = publish_from_v4(p);
        assert_eq!(
            (
                &v5.topic[..],
                v5.qos,
                &v5.payload[..],
                v5.pkid,
                v5.retain,
                v5.dup
            ),
            (&b"a/b"[..], QoS::ExactlyOnce, &b"x"[..], 7, true, true)
        );
        assert!(v5.properties.is_none());
    }

    #[test]
    fn retain_handling_maps_to_rumqttc_rules() {
        assert_eq!(
            filter("t", QoS::AtLeastOnce, true, true, 2).retain_forward_rule,
            RetainForwardRule::Never
        );
        assert_eq!(
            filter("t", QoS::AtLeastOnce, false, false, 1).retain_forward_rule,
            RetainForwardRule::OnNewSubscribe
        );
        let f = filter("t", QoS::AtMostOnce, true, true, 0);
        assert!(f.nolocal && f.preserve_retain);
        assert_eq!(f.retain_forward_rule, RetainForwardRule::OnEverySubscribe);
    }

    #[test]
    fn will_loses_only_its_properties_on_3_1_1() {
        let w = LastWill::new("w", "bye", QoS::AtLeastOnce, true, None);
        let v4 = v4_will(&w);
        assert_eq!(
            (v4.topic.as_str(), &v4.message[..], v4.qos, v4.retain),
            ("w", &b"bye"[..], rumqttc::QoS::AtLeastOnce, true)
        );
    }
}
