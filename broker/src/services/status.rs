//! Device status as a topic: the document kept retained at `$status/<client-id>`.
//!
//! Owns the [`StatusBook`] (a read-mostly table of the latest document per client,
//! written here and read by the DNS listener; the document's shape is
//! `canopy_model::status`) and the
//! [`StatusService`], which publishes a client's document when its connection begins
//! and ends, turns stale `online` documents `offline` after a restart, and learns the
//! documents other brokers forward. It publishes only through its [`Host`].

use std::collections::{HashMap, HashSet};
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
    fn set(&self, host: &mut dyn Host, client_id: &Arc<str>, state: State, reason: &str) {
        let doc = StatusDoc::now(state, &self.node_id, reason);
        let payload = Bytes::from(doc.to_json());
        self.book.set_shared(client_id, doc);
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
            }
            .into(),
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
                Some(d) if d.state == State::Online => stale.push(Arc::<str>::from(id)),
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
///
/// Kept compact, as it holds one entry per client that ever connected: the client id is
/// the session's own string where the service has it (shared, not copied), and the node
/// and reason strings, a handful of distinct values, are shared between entries.
#[derive(Debug, Default)]
pub struct StatusBook {
    inner: RwLock<BookInner>,
}

#[derive(Debug, Default)]
struct BookInner {
    docs: HashMap<Arc<str>, Entry>,
    /// Node and reason strings in use, each kept once (at most [`SHARED_STRINGS`]; beyond
    /// that, as from a peer that sends a new reason every time, each entry has its own).
    strings: HashSet<Arc<str>>,
}

/// Distinct node and reason strings shared between entries.
const SHARED_STRINGS: usize = 256;

/// A [`StatusDoc`] as the book keeps it.
#[derive(Debug)]
struct Entry {
    state: State,
    since: u64,
    node: Arc<str>,
    reason: Arc<str>,
}

impl Entry {
    fn doc(&self) -> StatusDoc {
        StatusDoc {
            state: self.state,
            since: self.since,
            node: self.node.to_string(),
            reason: self.reason.to_string(),
        }
    }
}

impl BookInner {
    fn shared(&mut self, s: &str) -> Arc<str> {
        if let Some(a) = self.strings.get(s) {
            return a.clone();
        }
        let a: Arc<str> = Arc::from(s);
        if self.strings.len() < SHARED_STRINGS {
            self.strings.insert(a.clone());
        }
        a
    }

    fn set(&mut self, client_id: Arc<str>, doc: StatusDoc) {
        let entry = Entry {
            state: doc.state,
            since: doc.since,
            node: self.shared(&doc.node),
            reason: self.shared(&doc.reason),
        };
        self.docs.insert(client_id, entry);
    }
}

impl StatusBook {
    /// An empty book.
    pub fn new() -> StatusBook {
        StatusBook::default()
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BookInner> {
        self.inner.write().unwrap_or_else(|p| p.into_inner())
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BookInner> {
        self.inner.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Records the latest document of `client_id`.
    pub fn set(&self, client_id: &str, doc: StatusDoc) {
        let mut inner = self.write();
        // An existing entry keeps its key: no new copy of the id.
        let key = match inner.docs.get_key_value(client_id) {
            Some((k, _)) => k.clone(),
            None => Arc::from(client_id),
        };
        inner.set(key, doc);
    }

    /// Records the latest document of a client whose id the caller holds shared (a
    /// session's): the book keeps that same string.
    pub fn set_shared(&self, client_id: &Arc<str>, doc: StatusDoc) {
        let mut inner = self.write();
        let key = match inner.docs.get_key_value(&**client_id) {
            Some((k, _)) => k.clone(),
            None => client_id.clone(),
        };
        inner.set(key, doc);
    }

    /// The latest document of `client_id`, if the client was ever seen.
    pub fn get(&self, client_id: &str) -> Option<StatusDoc> {
        self.read().docs.get(client_id).map(Entry::doc)
    }

    /// Looks a client up ignoring ASCII case (DNS names are case-insensitive); an exact
    /// match wins.
    pub fn get_ignore_case(&self, client_id: &str) -> Option<StatusDoc> {
        let inner = self.read();
        inner.docs.get(client_id).map(Entry::doc).or_else(|| {
            inner
                .docs
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(client_id))
                .map(|(_, v)| v.doc())
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

    #[test]
    fn book_keeps_a_shared_id_and_one_copy_of_each_node_and_reason() {
        let b = StatusBook::new();
        let id: Arc<str> = Arc::from("dev1");
        b.set_shared(&id, StatusDoc::now(State::Online, "n", "connected"));
        b.set("dev2", StatusDoc::now(State::Online, "n", "connected"));
        let inner = b.read();
        let (key, one) = inner.docs.get_key_value("dev1").unwrap();
        assert!(Arc::ptr_eq(key, &id));
        let two = &inner.docs["dev2"];
        assert!(Arc::ptr_eq(&one.node, &two.node));
        assert!(Arc::ptr_eq(&one.reason, &two.reason));
        drop(inner);
        assert_eq!(b.get("dev2").map(|d| d.reason), Some("connected".into()));
    }
}
