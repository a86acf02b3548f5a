//! The [`StatusBook`]: the latest `$status` document of every client, as a compact record.
//!
//! Owns the table that the status service writes, the DNS listener reads, and the router
//! reads as the retained messages of the broker's own clients ([`KeptDocs`]): a document
//! of a client connected here is kept only here, as 16 bytes beside the shared client id,
//! and rendered into a message when someone reads `$status/...`, so an idle connection
//! does not also pay for a retained message, its payload and a node in the retained
//! trie. Documents learnt from other brokers are also recorded (the DNS listener answers
//! from them), but their messages stay in the router's retained store. It never publishes
//! and never touches the store: the service does both through its host.

use std::collections::HashMap;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use canopy_proto::{TopicFilter, TopicName};

use super::{STATUS_PREFIX, State, StatusDoc};
use crate::message::Message;
use crate::services::KeptDocs;

/// Whose document an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Published by this broker for a client connected here: the book is where the
    /// retained document lives ([`KeptDocs`]).
    Local,
    /// Learnt from a document forwarded by another broker (or restored from one): its
    /// message is the router's; the book only answers lookups.
    Learnt,
}

/// The latest status of every client seen, until its document expires.
#[derive(Debug)]
pub struct StatusBook {
    inner: RwLock<BookInner>,
    /// Zero of the book's clock, in which [`Entry::until`] counts seconds.
    base: Instant,
}

#[derive(Debug, Default)]
struct BookInner {
    /// By client id; the key is the session's own string where the service has it.
    docs: HashMap<Arc<str>, Entry>,
    strings: Strings,
    /// Entries of [`Origin::Local`].
    local: usize,
}

/// A [`StatusDoc`] as the book keeps it: 16 bytes.
#[derive(Debug, Clone, Copy)]
struct Entry {
    since: u64,
    /// Whole seconds on the book's clock at which the document expires; [`NEVER`]: it does not.
    until: u32,
    /// The node string's index in [`Strings`].
    node: u16,
    /// The reason string's index (the low [`INDEX_BITS`]) and the flags [`ONLINE`], [`LOCAL`].
    tag: u16,
}

const NEVER: u32 = u32::MAX;
const INDEX_BITS: u32 = 14;
const INDEX_MASK: u16 = (1 << INDEX_BITS) - 1;
const ONLINE: u16 = 1 << 14;
const LOCAL: u16 = 1 << 15;

impl Entry {
    fn is_local(&self) -> bool {
        self.tag & LOCAL != 0
    }

    fn state(&self) -> State {
        if self.tag & ONLINE != 0 {
            State::Online
        } else {
            State::Offline
        }
    }

    fn expired(&self, now_secs: u32) -> bool {
        self.until != NEVER && now_secs >= self.until
    }
}

/// Node and reason strings, each kept once and named by a 14-bit index; index 0 is the
/// empty string. A handful of distinct values in practice (one node per broker, a fixed
/// set of reasons); past [`MAX_STRINGS`] (a peer sending a new reason every time) a new
/// string reads as empty.
#[derive(Debug, Default)]
struct Strings {
    list: Vec<Arc<str>>,
    index: HashMap<Arc<str>, u16>,
}

/// Distinct node and reason strings kept.
const MAX_STRINGS: usize = 1 << INDEX_BITS;

impl Strings {
    fn intern(&mut self, s: &str) -> u16 {
        if let Some(&i) = self.index.get(s) {
            return i;
        }
        if self.list.is_empty() {
            let empty: Arc<str> = Arc::from("");
            self.list.push(empty.clone());
            self.index.insert(empty, 0);
            if s.is_empty() {
                return 0;
            }
        }
        let Ok(i) = u16::try_from(self.list.len()) else {
            return 0;
        };
        if self.list.len() >= MAX_STRINGS {
            tracing::debug!(
                len = s.len(),
                "status book: string table full, kept as empty"
            );
            return 0;
        }
        let a: Arc<str> = Arc::from(s);
        self.list.push(a.clone());
        self.index.insert(a, i);
        i
    }

    fn get(&self, i: u16) -> &str {
        self.list.get(usize::from(i & INDEX_MASK)).map_or("", |s| s)
    }
}

impl BookInner {
    fn doc(&self, e: &Entry) -> StatusDoc {
        StatusDoc {
            state: e.state(),
            since: e.since,
            node: self.strings.get(e.node).to_owned(),
            reason: self.strings.get(e.tag).to_owned(),
        }
    }

    fn insert(&mut self, key: Arc<str>, e: Entry) {
        if e.is_local() {
            self.local += 1;
        }
        if let Some(old) = self.docs.insert(key, e)
            && old.is_local()
        {
            self.local -= 1;
        }
    }

    /// Records `doc` for `client_id`; an entry already there keeps its key, otherwise the
    /// book shares the caller's string.
    fn record(&mut self, client_id: &Arc<str>, doc: &StatusDoc, origin: Origin, until: u32) {
        let mut tag = self.strings.intern(&doc.reason);
        if doc.state == State::Online {
            tag |= ONLINE;
        }
        if origin == Origin::Local {
            tag |= LOCAL;
        }
        let entry = Entry {
            since: doc.since,
            until,
            node: self.strings.intern(&doc.node),
            tag,
        };
        let key = match self.docs.get_key_value(&**client_id) {
            Some((k, _)) => k.clone(),
            None => client_id.clone(),
        };
        self.insert(key, entry);
    }

    fn remove(&mut self, id: &str) -> Option<Entry> {
        let old = self.docs.remove(id)?;
        if old.is_local() {
            self.local -= 1;
        }
        Some(old)
    }
}

impl Default for StatusBook {
    fn default() -> Self {
        StatusBook::new()
    }
}

impl StatusBook {
    /// An empty book.
    pub fn new() -> StatusBook {
        StatusBook {
            inner: RwLock::default(),
            base: Instant::now(),
        }
    }

    fn write(&self) -> RwLockWriteGuard<'_, BookInner> {
        self.inner.write().unwrap_or_else(|p| p.into_inner())
    }

    fn read(&self) -> RwLockReadGuard<'_, BookInner> {
        self.inner.read().unwrap_or_else(|p| p.into_inner())
    }

    /// `t` on the book's clock in whole seconds, rounded down: expiry counts in whole
    /// seconds, as the Message Expiry Interval does, so a document read at once still
    /// shows its full interval (a second's fraction is not kept).
    fn secs_until(&self, t: Instant) -> u32 {
        let secs = t.saturating_duration_since(self.base).as_secs();
        u32::try_from(secs).unwrap_or(NEVER - 1).min(NEVER - 1)
    }

    fn secs_now(&self, now: Instant) -> u32 {
        let secs = now.saturating_duration_since(self.base).as_secs();
        u32::try_from(secs).unwrap_or(NEVER - 1)
    }

    /// Records the latest document of `client_id` (a learnt one that does not expire).
    pub fn set(&self, client_id: &str, doc: StatusDoc) {
        self.record(&Arc::from(client_id), &doc, Origin::Learnt, None);
    }

    /// Records `doc` as the latest document of `client_id`, expiring at `expires_at`. An
    /// entry already there keeps its key; otherwise the book shares the caller's string.
    pub fn record(
        &self,
        client_id: &Arc<str>,
        doc: &StatusDoc,
        origin: Origin,
        expires_at: Option<Instant>,
    ) {
        let until = expires_at.map_or(NEVER, |t| self.secs_until(t));
        self.write().record(client_id, doc, origin, until);
    }

    /// Records a learnt `doc` of `client_id` unless the book keeps a local document of it:
    /// a document that was not retained takes no kept one's place.
    pub fn learn(&self, client_id: &Arc<str>, doc: &StatusDoc, expires_at: Option<Instant>) {
        let until = expires_at.map_or(NEVER, |t| self.secs_until(t));
        let mut inner = self.write();
        if !inner.docs.get(&**client_id).is_some_and(Entry::is_local) {
            inner.record(client_id, doc, Origin::Learnt, until);
        }
    }

    /// Forgets `client_id` (its retained document was deleted or replaced by one that is
    /// not a status document).
    pub fn remove(&self, client_id: &str) {
        self.write().remove(client_id);
    }

    /// Drops the documents that expired at `now`; returns the ids of the local ones,
    /// whose stored copies the caller deletes.
    pub fn sweep(&self, now: Instant) -> Vec<Arc<str>> {
        let now_secs = self.secs_now(now);
        let mut inner = self.write();
        let mut local = Vec::new();
        inner.docs.retain(|id, e| {
            if !e.expired(now_secs) {
                return true;
            }
            if e.is_local() {
                local.push(id.clone());
            }
            false
        });
        inner.local -= local.len();
        local
    }

    /// The latest document of `client_id`, if the client was seen and its document has
    /// not been swept.
    pub fn get(&self, client_id: &str) -> Option<StatusDoc> {
        let inner = self.read();
        inner.docs.get(client_id).map(|e| inner.doc(e))
    }

    /// Looks a client up ignoring ASCII case (DNS names are case-insensitive); an exact
    /// match wins.
    pub fn get_ignore_case(&self, client_id: &str) -> Option<StatusDoc> {
        let inner = self.read();
        let e = inner.docs.get(client_id).or_else(|| {
            inner
                .docs
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(client_id))
                .map(|(_, v)| v)
        })?;
        Some(inner.doc(e))
    }

    /// The retained message of a local entry, as the service published it.
    fn render(&self, inner: &BookInner, client_id: &str, e: &Entry) -> Option<Arc<Message>> {
        let topic = TopicName::new(&format!("{STATUS_PREFIX}{client_id}")).ok()?;
        let expires_at =
            (e.until != NEVER).then(|| self.base + Duration::from_secs(u64::from(e.until)));
        Some(Arc::new(super::message(topic, &inner.doc(e), expires_at)))
    }
}

impl KeptDocs for StatusBook {
    fn prefix(&self) -> &'static str {
        STATUS_PREFIX
    }

    fn get(&self, now: Instant, topic: &TopicName) -> Option<Arc<Message>> {
        let id = topic.strip_prefix(STATUS_PREFIX)?;
        let now_secs = self.secs_now(now);
        let inner = self.read();
        let e = inner
            .docs
            .get(id)
            .filter(|e| e.is_local() && !e.expired(now_secs))?;
        self.render(&inner, id, e)
    }

    fn for_each_match(
        &self,
        now: Instant,
        filter: &TopicFilter,
        f: &mut dyn FnMut(&TopicName, &Arc<Message>),
    ) {
        // A filter starting with a wildcard never matches `$status/...` [MQTT-4.7.2-1], so
        // only one that names the prefix can.
        let Some(rest) = filter.as_str().strip_prefix(STATUS_PREFIX) else {
            return;
        };
        let now_secs = self.secs_now(now);
        let inner = self.read();
        let live = |e: &Entry| e.is_local() && !e.expired(now_secs);
        if !filter.has_wildcards() {
            if let Some((id, e)) = inner.docs.get_key_value(rest)
                && live(e)
                && let Some(m) = self.render(&inner, id, e)
            {
                f(&m.topic, &m);
            }
            return;
        }
        let mut topic = String::new();
        for (id, e) in &inner.docs {
            if !live(e) {
                continue;
            }
            topic.clear();
            topic.push_str(STATUS_PREFIX);
            topic.push_str(id);
            if canopy_proto::topic::matches(filter.as_str(), &topic)
                && let Some(m) = self.render(&inner, id, e)
            {
                f(&m.topic, &m);
            }
        }
    }

    fn count(&self) -> usize {
        self.read().local
    }
}

#[cfg(test)]
#[path = "book_tests.rs"]
mod tests;
