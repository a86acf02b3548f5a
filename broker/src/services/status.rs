//! Device status as a topic: the document kept retained at `$status/<client-id>`.
//!
//! Owns the [`StatusBook`] (a read-mostly table of the latest document per client,
//! written here and read by the DNS listener; the document's shape is
//! `canopy_model::status`) and the
//! [`StatusService`], which publishes a client's document when its connection begins
//! and ends, turns stale `online` documents `offline` after a restart, and learns the
//! documents other brokers forward. It publishes only through its [`Host`].

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use bytes::Bytes;
use canopy_proto::{PublishProperties, QoS, TopicFilter, TopicName};

use super::{ClientInfo, Disposition, Host, Service};
use crate::message::Message;

pub use canopy_model::status::{STATUS_PREFIX, State, StatusDoc};

/// Seconds an `offline` status document stays retained (one day).
pub const OFFLINE_STATUS_EXPIRY: u32 = 86_400;

/// Publishes and learns `$status/<client-id>` documents.
#[derive(Debug)]
pub struct StatusService {
    node_id: String,
    book: Arc<StatusBook>,
}

impl StatusService {
    /// Documents name `node_id`; every document is recorded in `book`.
    pub fn new(node_id: &str, book: Arc<StatusBook>) -> StatusService {
        StatusService {
            node_id: node_id.to_string(),
            book,
        }
    }

    /// Publishes the document of `client_id` and records it for the DNS listener.
    /// Offline documents expire, so that client ids that never come back (random ones
    /// of throw-away clients) do not pile up for ever.
    fn set(&self, host: &mut dyn Host, client_id: &str, state: State, reason: &str) {
        let doc = StatusDoc::now(state, &self.node_id, reason);
        let payload = Bytes::from(doc.to_json());
        self.book.set(client_id, doc);
        let expiry = (state == State::Offline).then_some(OFFLINE_STATUS_EXPIRY);
        let Ok(topic) = TopicName::new(&format!("{STATUS_PREFIX}{client_id}")) else {
            return;
        };
        let now = host.now();
        host.publish(Message {
            topic,
            qos: QoS::AtMostOnce,
            retain: true,
            properties: PublishProperties {
                message_expiry_interval: expiry,
                ..Default::default()
            },
            payload,
            expires_at: Message::expiry_from(now, expiry),
        });
    }
}

impl Service for StatusService {
    fn name(&self) -> &'static str {
        "status"
    }

    fn topics(&self) -> &[&'static str] {
        &[STATUS_PREFIX]
    }

    /// After a restart nobody is connected: retained `online` documents turn `offline`
    /// (reason `broker restart`), and the book learns every other document.
    fn on_start(&mut self, host: &mut dyn Host) {
        let Ok(filter) = TopicFilter::new("$status/+") else {
            return;
        };
        let mut stale = Vec::new();
        host.for_each_retained(&filter, &mut |topic, msg| {
            let Some(id) = topic.strip_prefix(STATUS_PREFIX) else {
                return;
            };
            match StatusDoc::from_payload(&msg.payload) {
                Some(d) if d.state == State::Online => stale.push(id.to_string()),
                Some(d) => self.book.set(id, d),
                None => {}
            }
        });
        for id in stale {
            self.set(host, &id, State::Offline, "broker restart");
        }
    }

    /// A document forwarded from another broker (the access seam let it in): the DNS
    /// listener answers from it too.
    fn on_publish(
        &mut self,
        _host: &mut dyn Host,
        from: Option<&ClientInfo>,
        msg: &Arc<Message>,
    ) -> Disposition {
        if from.is_some()
            && let Some(id) = msg.topic.strip_prefix(STATUS_PREFIX)
            && let Some(doc) = StatusDoc::from_payload(&msg.payload)
        {
            self.book.set(id, doc);
        }
        Disposition::Route
    }

    /// A client whose identifier the broker assigned (it sent none: a throw-away tool
    /// such as `canopy pub`) gets no status document: nobody else can know its id, and
    /// its offline document would only fill `$status/#` for a day.
    fn on_connect(&mut self, host: &mut dyn Host, client: &ClientInfo, _present: bool) {
        if !client.assigned {
            self.set(host, &client.client_id, State::Online, "connected");
        }
    }

    fn on_disconnect(&mut self, host: &mut dyn Host, client: &ClientInfo, reason: &str) {
        if !client.assigned {
            self.set(host, &client.client_id, State::Offline, reason);
        }
    }
}

/// The latest status of every client seen since start (and restored retained ones).
#[derive(Debug, Default)]
pub struct StatusBook {
    docs: RwLock<HashMap<String, StatusDoc>>,
}

impl StatusBook {
    /// An empty book.
    pub fn new() -> StatusBook {
        StatusBook::default()
    }

    /// Records the latest document of `client_id`.
    pub fn set(&self, client_id: &str, doc: StatusDoc) {
        let mut docs = self.docs.write().unwrap_or_else(|p| p.into_inner());
        docs.insert(client_id.to_string(), doc);
    }

    /// The latest document of `client_id`, if the client was ever seen.
    pub fn get(&self, client_id: &str) -> Option<StatusDoc> {
        let docs = self.docs.read().unwrap_or_else(|p| p.into_inner());
        docs.get(client_id).cloned()
    }

    /// Looks a client up ignoring ASCII case (DNS names are case-insensitive); an exact
    /// match wins.
    pub fn get_ignore_case(&self, client_id: &str) -> Option<StatusDoc> {
        let docs = self.docs.read().unwrap_or_else(|p| p.into_inner());
        docs.get(client_id).cloned().or_else(|| {
            docs.iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(client_id))
                .map(|(_, v)| v.clone())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn book_returns_the_latest_document() {
        let b = StatusBook::new();
        b.set("dev1", StatusDoc::now(State::Online, "n", "connected"));
        b.set(
            "dev1",
            StatusDoc::now(State::Offline, "n", "connection lost"),
        );
        assert_eq!(b.get("dev1").map(|d| d.state), Some(State::Offline));
        assert_eq!(
            b.get_ignore_case("DEV1").map(|d| d.state),
            Some(State::Offline)
        );
        assert!(b.get("dev2").is_none());
    }
}
