//! Paged client listing for the dashboard and any other tool: a request/response service
//! at `$dashboard/clients` that answers one page of `$status/<client-id>` documents.
//!
//! A broker with a hundred thousand clients must not send them all to a browser, and a
//! page must not subscribe to all of `$status/#` to draw twenty rows. So a client publishes
//! `{"after":"<id>","limit":20,"search":"text"}` (every field optional) to
//! `$dashboard/clients`, with an MQTT 5.0 response topic and correlation data, and gets back,
//! delivered to its own session only, `{"clients":[{"id":…,"status":{…}}],"total":n,
//! "next":"<id>"|null}`: the clients in identifier order after `after` whose identifier
//! contains `search`, read from the retained status documents at request time.
//!
//! Owns only the time of each recent requester's last request: nothing is kept or computed
//! while nobody asks. Who may ask is the access seam's decision on the request's PUBLISH; a
//! page holds only the documents the requester may read (`$status/<id>` under the ACL file,
//! as a subscription would), so paging never widens anyone's view. One request per client
//! per [`MIN_INTERVAL`]: a page walks every status document, and a client must not be able to
//! keep the router busy with that; a request sooner gets `{"error":…,"retry_ms":n}`. Never
//! publishes through subscriptions.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use canopy_proto::{PublishProperties, QoS, TopicFilter, TopicName};
use serde::Deserialize;

use super::{ClientInfo, Disposition, Host, Service};
use crate::message::Message;

/// The request topic.
pub const REQUEST_TOPIC: &str = "$dashboard/clients";
/// Where an answer goes when the request names no response topic (MQTT 3.1.1).
pub const DEFAULT_REPLY_TOPIC: &str = "$dashboard/clients/reply";
/// Rows per page when the request says nothing.
pub const DEFAULT_LIMIT: usize = 20;
/// Most rows in one page.
pub const MAX_LIMIT: usize = 100;
/// Shortest time between two requests of one client that are both answered with a page.
pub const MIN_INTERVAL: Duration = Duration::from_millis(200);
/// Requesters remembered before the old ones are forgotten.
const REMEMBERED: usize = 4096;

/// A page request; every field is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct PageRequest {
    /// Only identifiers after this one (the previous page's `next`).
    after: Option<String>,
    /// Rows wanted, 1 to [`MAX_LIMIT`].
    limit: Option<usize>,
    /// Only identifiers containing this text.
    search: Option<String>,
}

/// Answers `$dashboard/clients` requests.
#[derive(Debug, Default)]
pub struct ClientPages {
    /// When each recent requester was last answered with a page.
    last: HashMap<Arc<str>, Instant>,
}

impl ClientPages {
    /// The service.
    pub fn new() -> ClientPages {
        ClientPages::default()
    }

    /// Whether `client` may have a page at `now`; `Err` holds the wait left.
    fn admit(&mut self, client: &Arc<str>, now: Instant) -> Result<(), Duration> {
        if let Some(&at) = self.last.get(client) {
            let ready = at + MIN_INTERVAL;
            if now < ready {
                return Err(ready - now);
            }
        }
        if self.last.len() >= REMEMBERED {
            self.last
                .retain(|_, at| now.saturating_duration_since(*at) < MIN_INTERVAL);
        }
        self.last.insert(client.clone(), now);
        Ok(())
    }
}

impl Service for ClientPages {
    fn name(&self) -> &'static str {
        "client-pages"
    }

    fn topics(&self) -> &[&'static str] {
        &["$dashboard/"]
    }

    fn on_publish(
        &mut self,
        host: &mut dyn Host,
        from: Option<&ClientInfo>,
        msg: &Arc<Message>,
    ) -> Disposition {
        if msg.topic.as_str() != REQUEST_TOPIC {
            return Disposition::Route;
        }
        let Some(from) = from else {
            return Disposition::Consume;
        };
        let payload = match self.admit(&from.client_id, host.now()) {
            Ok(()) => {
                // An unreadable request still gets an answer: the first page.
                let request: PageRequest = serde_json::from_slice(&msg.payload).unwrap_or_default();
                page(host, &from.client_id, &request).to_string()
            }
            Err(wait) => serde_json::json!({
                "error": "too many requests",
                "retry_ms": wait.as_millis().max(1),
            })
            .to_string(),
        };
        let topic = msg
            .properties
            .response_topic
            .clone()
            .or_else(|| TopicName::new(DEFAULT_REPLY_TOPIC).ok());
        let Some(topic) = topic else {
            return Disposition::Consume;
        };
        let answer = Message {
            topic,
            qos: QoS::AtMostOnce,
            retain: false,
            properties: PublishProperties {
                correlation_data: msg.properties.correlation_data.clone(),
                content_type: Some("application/json".into()),
                ..PublishProperties::default()
            }
            .into(),
            payload: Bytes::from(payload),
            expires_at: None,
        };
        host.deliver(&from.client_id, Arc::new(answer), QoS::AtMostOnce, false);
        Disposition::Consume
    }
}

/// One page of the status documents `requester` may read, as the answer's JSON.
fn page(host: &dyn Host, requester: &str, request: &PageRequest) -> serde_json::Value {
    let limit = request.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT);
    let after = request.after.as_deref().unwrap_or("");
    let search = request.search.as_deref().unwrap_or("");
    let mut total = 0usize;
    let mut later = 0usize;
    // The `limit` smallest identifiers after the cursor, kept bounded while scanning.
    let mut rows: BTreeMap<String, Bytes> = BTreeMap::new();
    let Ok(filter) = TopicFilter::new("$status/+") else {
        return serde_json::json!({"clients": [], "total": 0, "next": null});
    };
    host.for_each_retained(&filter, &mut |topic, m| {
        let Some(id) = topic.as_str().strip_prefix("$status/") else {
            return;
        };
        if !id.contains(search) || !host.may_read(requester, topic.as_str()) {
            return;
        }
        total += 1;
        if id <= after {
            return;
        }
        later += 1;
        if rows.len() < limit || rows.last_key_value().is_some_and(|(k, _)| id < k.as_str()) {
            rows.insert(id.to_owned(), m.payload.clone());
            if rows.len() > limit {
                rows.pop_last();
            }
        }
    });
    let next = (later > rows.len())
        .then(|| rows.last_key_value().map(|(k, _)| k.clone()))
        .flatten();
    let clients: Vec<serde_json::Value> = rows
        .into_iter()
        .map(|(id, payload)| {
            let status = serde_json::from_slice::<serde_json::Value>(&payload)
                .unwrap_or(serde_json::Value::Null);
            serde_json::json!({"id": id, "status": status})
        })
        .collect();
    serde_json::json!({"clients": clients, "total": total, "next": next})
}

#[cfg(test)]
#[path = "client_pages_tests.rs"]
mod tests;
