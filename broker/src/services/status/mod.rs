//! Device status as a topic: the document retained at `$status/<client-id>`.
//!
//! Owns the [`StatusService`], which publishes a client's document when its connection
//! begins and ends, turns stale `online` documents `offline` after a restart, learns the
//! documents other brokers forward and drops expired ones; and the [`StatusBook`]
//! (`book.rs`), where those documents live. The documents of the broker's own clients are
//! kept in the book only, rendered when read ([`crate::services::KeptDocs`]); the service
//! publishes and stores them only through its [`Host`]. The document's shape is
//! `canopy_model::status`.

mod book;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use canopy_proto::{PublishProperties, QoS, TopicFilter, TopicName};

use super::{ClientInfo, Disposition, Host, KeptDocs, Service};
use crate::message::Message;

pub use book::{Origin, StatusBook};
pub use canopy_model::status::{STATUS_PREFIX, State, StatusDoc};

/// Seconds an `offline` status document stays retained (one day).
pub const OFFLINE_STATUS_EXPIRY: u32 = 86_400;

/// How often expired documents are dropped from the book (and their stored copies).
const SWEEP: Duration = Duration::from_secs(60);

/// Publishes and learns `$status/<client-id>` documents.
#[derive(Debug)]
pub struct StatusService {
    node_id: String,
    book: Arc<StatusBook>,
    /// When expired documents are next dropped (set when the service starts).
    next_sweep: Option<Instant>,
}

impl StatusService {
    /// Documents name `node_id`; every document is recorded in `book`.
    pub fn new(node_id: &str, book: Arc<StatusBook>) -> StatusService {
        StatusService {
            node_id: node_id.to_string(),
            book,
            next_sweep: None,
        }
    }

    /// Publishes the document of `client_id`, kept in the book. Offline documents
    /// expire, so that client ids that never come back (random ones of throw-away
    /// clients) do not pile up for ever.
    fn set(&self, host: &mut dyn Host, client_id: &Arc<str>, state: State, reason: &str) {
        let doc = StatusDoc::now(state, &self.node_id, reason);
        let expiry = (state == State::Offline).then_some(OFFLINE_STATUS_EXPIRY);
        let expires_at = Message::expiry_from(host.now(), expiry);
        let Ok(topic) = TopicName::new(&format!("{STATUS_PREFIX}{client_id}")) else {
            // An id with a wildcard character names no topic: the DNS listener still
            // answers for it.
            self.book
                .record(client_id, &doc, Origin::Learnt, expires_at);
            return;
        };
        self.book.record(client_id, &doc, Origin::Local, expires_at);
        host.publish_kept(message(topic, &doc, expires_at));
    }
}

/// The retained message of `doc` at `topic`: QoS 0, an `offline` one with the Message
/// Expiry Interval of [`OFFLINE_STATUS_EXPIRY`], ending at `expires_at`.
fn message(topic: TopicName, doc: &StatusDoc, expires_at: Option<Instant>) -> Message {
    let interval = (doc.state == State::Offline).then_some(OFFLINE_STATUS_EXPIRY);
    Message {
        topic,
        qos: QoS::AtMostOnce,
        retain: true,
        properties: PublishProperties {
            message_expiry_interval: interval,
            ..Default::default()
        }
        .into(),
        payload: Bytes::from(doc.to_json()),
        expires_at,
    }
}

impl Service for StatusService {
    fn name(&self) -> &'static str {
        "status"
    }

    fn topics(&self) -> &[&'static str] {
        &[STATUS_PREFIX]
    }

    fn kept(&self) -> Option<Arc<dyn KeptDocs>> {
        Some(self.book.clone())
    }

    /// After a restart nobody is connected: retained `online` documents turn `offline`
    /// (reason `broker restart`); this broker's own offline documents move from the
    /// router's memory into the book; other brokers' are learnt.
    fn on_start(&mut self, host: &mut dyn Host) {
        self.next_sweep = Some(host.now() + SWEEP);
        let Ok(filter) = TopicFilter::new("$status/#") else {
            return;
        };
        let mut restored = Vec::new();
        host.for_each_retained(&filter, &mut |topic, msg| {
            restored.push((topic.clone(), msg.clone()));
        });
        let mut stale = Vec::new();
        for (topic, msg) in restored {
            let Some(id) = topic.strip_prefix(STATUS_PREFIX) else {
                continue;
            };
            let id: Arc<str> = Arc::from(id);
            match StatusDoc::from_payload(&msg.payload) {
                Some(d) if d.state == State::Online => stale.push(id),
                Some(d) if d.node == self.node_id => {
                    host.take_retained(&topic);
                    self.book.record(&id, &d, Origin::Local, msg.expires_at);
                }
                Some(d) => self.book.record(&id, &d, Origin::Learnt, msg.expires_at),
                None => {}
            }
        }
        for id in stale {
            self.set(host, &id, State::Offline, "broker restart");
        }
    }

    /// A document forwarded from another broker (the access seam let it in): the DNS
    /// listener answers from it too. Retained, it replaces a kept document of the same
    /// id, and anything else retained there (an empty payload deletes) takes the id out
    /// of the book. Not retained (a 3.1.1 link forwards live messages so), it is learnt
    /// only for a client this broker keeps no document of.
    fn on_publish(
        &mut self,
        _host: &mut dyn Host,
        from: Option<&ClientInfo>,
        msg: &Arc<Message>,
    ) -> Disposition {
        if from.is_some()
            && let Some(id) = msg.topic.strip_prefix(STATUS_PREFIX)
        {
            let id: Arc<str> = Arc::from(id);
            match StatusDoc::from_payload(&msg.payload) {
                Some(doc) if msg.retain => {
                    self.book.record(&id, &doc, Origin::Learnt, msg.expires_at);
                }
                Some(doc) => self.book.learn(&id, &doc, msg.expires_at),
                None if msg.retain => self.book.remove(&id),
                None => {}
            }
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

    fn poll_timeout(&self) -> Option<Instant> {
        self.next_sweep
    }

    /// Drops expired documents from the book, and the stored copies of local ones.
    fn handle_timeout(&mut self, host: &mut dyn Host) {
        let now = host.now();
        self.next_sweep = Some(now + SWEEP);
        for id in self.book.sweep(now) {
            if let Ok(topic) = TopicName::new(&format!("{STATUS_PREFIX}{id}")) {
                host.drop_kept(topic);
            }
        }
    }
}
