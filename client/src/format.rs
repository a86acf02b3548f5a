//! How `canopy sub` prints a received message: raw payload, topic, `topic payload` (-v) or
//! one JSON object per line.
//!
//! Owns the version-independent [`Message`] and its rendering to bytes. It must never write to
//! stdout itself or depend on rumqttc types, so it can be tested byte for byte.

use std::io::{self, Write};

use bytes::Bytes;
use serde::Serialize;

use crate::cli::OutputFormat;

/// MQTT 5.0 properties of a received message that the formatter can show.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MessageProperties {
    /// User properties in the order received; keys may repeat.
    pub user_properties: Vec<(String, String)>,
    /// Content type.
    pub content_type: Option<String>,
    /// Response topic.
    pub response_topic: Option<String>,
    /// Correlation data (arbitrary bytes).
    pub correlation_data: Option<Bytes>,
    /// Remaining message expiry interval in seconds.
    pub message_expiry: Option<u32>,
    /// Subscription identifiers that matched.
    pub subscription_ids: Vec<usize>,
}

/// A message as delivered to the subscriber, whatever the protocol version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Topic name.
    pub topic: String,
    /// Payload bytes.
    pub payload: Bytes,
    /// Delivery QoS (0, 1 or 2).
    pub qos: u8,
    /// Retain flag as delivered.
    pub retain: bool,
    /// 5.0 properties; `None` on a 3.1.1 connection.
    pub properties: Option<MessageProperties>,
}

/// Renders messages in one [`OutputFormat`].
#[derive(Debug, Clone, Copy)]
pub struct Formatter {
    format: OutputFormat,
    newline: bool,
}

impl Formatter {
    /// A formatter; `newline` adds `\n` after each message (off with `-N`).
    pub fn new(format: OutputFormat, newline: bool) -> Self {
        Self { format, newline }
    }

    /// Writes one message to `out` (without flushing).
    pub fn write(&self, message: &Message, out: &mut impl Write) -> io::Result<()> {
        match self.format {
            OutputFormat::Payload => out.write_all(&message.payload)?,
            OutputFormat::Topic => out.write_all(message.topic.as_bytes())?,
            OutputFormat::Verbose => {
                out.write_all(message.topic.as_bytes())?;
                out.write_all(b" ")?;
                out.write_all(&message.payload)?;
            }
            OutputFormat::Json => serde_json::to_writer(&mut *out, &JsonMessage::from(message))?,
        }
        if self.newline {
            out.write_all(b"\n")?;
        }
        Ok(())
    }

    /// The rendering of one message as bytes.
    pub fn render(&self, message: &Message) -> Vec<u8> {
        let mut out = Vec::with_capacity(message.payload.len() + message.topic.len() + 2);
        // Writing into a Vec cannot fail.
        let _ = self.write(message, &mut out);
        out
    }
}

/// A user property as `{"key": …, "value": …}`, so that jq's `from_entries` applies.
#[derive(Serialize)]
struct JsonProperty<'a> {
    key: &'a str,
    value: &'a str,
}

/// The JSON shape of a message; 5.0 fields are present only on 5.0 connections, optional ones
/// only when the message carries them.
#[derive(Serialize)]
struct JsonMessage<'a> {
    topic: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    payload: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    payload_base64: Option<String>,
    qos: u8,
    retain: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_properties: Option<Vec<JsonProperty<'a>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    content_type: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_topic: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    correlation_data: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    correlation_data_base64: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    message_expiry: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    subscription_ids: Option<&'a [usize]>,
}

impl<'a> From<&'a Message> for JsonMessage<'a> {
    fn from(message: &'a Message) -> Self {
        let (payload, payload_base64) = text_or_base64(&message.payload);
        let props = message.properties.as_ref();
        let (correlation_data, correlation_data_base64) =
            match props.and_then(|p| p.correlation_data.as_ref()) {
                Some(data) => text_or_base64(data),
                None => (None, None),
            };
        Self {
            topic: &message.topic,
            payload,
            payload_base64,
            qos: message.qos,
            retain: message.retain,
            user_properties: props.map(|p| {
                p.user_properties
                    .iter()
                    .map(|(key, value)| JsonProperty { key, value })
                    .collect()
            }),
            content_type: props.and_then(|p| p.content_type.as_deref()),
            response_topic: props.and_then(|p| p.response_topic.as_deref()),
            correlation_data,
            correlation_data_base64,
            message_expiry: props.and_then(|p| p.message_expiry),
            subscription_ids: props
                .map(|p| p.subscription_ids.as_slice())
                .filter(|ids| !ids.is_empty()),
        }
    }
}

/// `(Some(text), None)` for UTF-8 bytes, `(None, Some(base64))` otherwise.
fn text_or_base64(bytes: &[u8]) -> (Option<&str>, Option<String>) {
    match std::str::from_utf8(bytes) {
        Ok(text) => (Some(text), None),
        Err(_) => (None, Some(base64(bytes))),
    }
}

/// Standard base64 (RFC 4648 §4) with padding.
pub fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk.first().copied().unwrap_or(0),
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18u32, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> shift) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
#[path = "format_tests.rs"]
mod tests;
