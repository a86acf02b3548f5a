//! [`Message`]: what travels through a route, independent of the MQTT version on either side,
//! and its compact encoding for the on-disk queue.
//!
//! Owns: conversion to and from rumqttc's 5.0 publishes and the hop marker helpers.
//! Must never drop a 5.0 property it knows how to carry.

use bytes::Bytes;

pub use canopy_model::hops::HOPS_PROPERTY;

/// One application message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Topic name.
    pub topic: String,
    /// Payload bytes.
    pub payload: Bytes,
    /// QoS 0, 1 or 2.
    pub qos: u8,
    /// Retain flag (subscriptions use retain-as-published, so it survives the hop).
    pub retain: bool,
    /// 5.0 user properties in order (the hop marker among them).
    pub user_properties: Vec<(String, String)>,
    /// 5.0 content type.
    pub content_type: Option<String>,
    /// 5.0 payload format indicator.
    pub payload_format_indicator: Option<u8>,
    /// 5.0 message expiry interval in seconds.
    pub message_expiry_interval: Option<u32>,
    /// 5.0 response topic.
    pub response_topic: Option<String>,
    /// 5.0 correlation data.
    pub correlation_data: Option<Bytes>,
}

impl Message {
    /// A message with no properties, not retained.
    pub fn new(topic: impl Into<String>, payload: impl Into<Bytes>, qos: u8) -> Message {
        Message {
            topic: topic.into(),
            payload: payload.into(),
            qos: qos.min(2),
            retain: false,
            user_properties: Vec::new(),
            content_type: None,
            payload_format_indicator: None,
            message_expiry_interval: None,
            response_topic: None,
            correlation_data: None,
        }
    }

    /// The node ids in the hop marker, in order.
    pub fn hops(&self) -> Vec<&str> {
        canopy_model::hops::hops(&self.user_properties)
    }

    /// Appends `node` to the hop marker (one property, replaced in place).
    pub fn push_hop(&mut self, node: &str) {
        canopy_model::hops::push_hop(&mut self.user_properties, node);
    }

    /// Records one hop in the marker: from broker `from` through metabroker `node` to broker
    /// `to` (`@from,node,@to`, `@from` left out when the path already ends there).
    pub fn push_path(&mut self, from: &str, node: &str, to: &str) {
        canopy_model::hops::push_path(&mut self.user_properties, from, node, to);
    }

    /// Whether broker `id` is on the marker's path.
    pub fn visited(&self, id: &str) -> bool {
        canopy_model::hops::on_path(&self.user_properties, id)
    }

    /// How many metabrokers the marker lists.
    pub fn node_count(&self) -> usize {
        canopy_model::hops::node_count(&self.user_properties)
    }

    /// Size counted against the queue's byte limit.
    pub fn weight(&self) -> u64 {
        (self.topic.len() + self.payload.len()) as u64
    }

    pub(crate) fn from_v5(p: &rumqttc::v5::mqttbytes::v5::Publish) -> Message {
        let topic = String::from_utf8_lossy(&p.topic).into_owned();
        let mut m = Message::new(topic, p.payload.clone(), p.qos as u8);
        m.retain = p.retain;
        if let Some(props) = &p.properties {
            m.user_properties = props.user_properties.clone();
            m.content_type = props.content_type.clone();
            m.payload_format_indicator = props.payload_format_indicator;
            m.message_expiry_interval = props.message_expiry_interval;
            m.response_topic = props.response_topic.clone();
            m.correlation_data = props.correlation_data.clone();
        }
        m
    }

    /// The 5.0 PUBLISH that carries this message (no packet id yet).
    pub(crate) fn to_publish(&self) -> rumqttc::v5::mqttbytes::v5::Publish {
        canopy_client::adapter::new_publish(
            self.topic.clone(),
            crate::bridge::qos(self.qos),
            self.retain,
            self.payload.clone(),
            Some(self.v5_properties()),
        )
    }

    pub(crate) fn v5_properties(&self) -> rumqttc::v5::mqttbytes::v5::PublishProperties {
        rumqttc::v5::mqttbytes::v5::PublishProperties {
            payload_format_indicator: self.payload_format_indicator,
            message_expiry_interval: self.message_expiry_interval,
            topic_alias: None,
            response_topic: self.response_topic.clone(),
            correlation_data: self.correlation_data.clone(),
            user_properties: self.user_properties.clone(),
            subscription_identifiers: Vec::new(),
            content_type: self.content_type.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_marker_appends_and_reads_back_in_order() {
        let mut m = Message::new("t", "p", 1);
        m.user_properties.push(("app".into(), "x".into()));
        assert!(m.hops().is_empty());
        m.push_hop("a");
        m.push_hop("b");
        assert_eq!(m.hops(), ["a", "b"]);
        assert_eq!(m.user_properties[0], ("app".into(), "x".into()));
        assert_eq!(m.user_properties.len(), 2);
    }
}
