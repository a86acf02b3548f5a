//! The bounded on-disk queue (redb) where QoS 1/2 messages wait while their destination is
//! unreachable, one lane per direction.
//!
//! Owns: the record encoding, the count and byte limits, and in-order access by sequence key.
//! Must never grow past its limits (a full queue refuses and the caller counts the drop) and
//! never hand out a message twice without a `remove` in between being possible to observe.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use crate::message::Message;

const LANES: [TableDefinition<u64, &[u8]>; 2] = [
    TableDefinition::new("lane-out"),
    TableDefinition::new("lane-in"),
];

/// A queue failure (the disk or the database file).
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// redb refused an operation.
    #[error("queue {}: {source}", path.display())]
    Db {
        /// The database file.
        path: PathBuf,
        /// What redb said.
        source: Box<redb::Error>,
    },
    /// A directory could not be created.
    #[error("queue directory {}: {source}", path.display())]
    Io {
        /// The directory.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
}

/// Which lane: index 0 is local -> remote, 1 is remote -> local.
pub type Lane = usize;

#[derive(Serialize, Deserialize)]
struct Record {
    #[serde(default)]
    route: usize,
    topic: String,
    payload: Vec<u8>,
    qos: u8,
    retain: bool,
    user_properties: Vec<(String, String)>,
    content_type: Option<String>,
    payload_format_indicator: Option<u8>,
    message_expiry_interval: Option<u32>,
    response_topic: Option<String>,
    correlation_data: Option<Vec<u8>>,
}

impl Record {
    fn of(route: usize, m: &Message) -> Record {
        Record {
            route,
            topic: m.topic.clone(),
            payload: m.payload.to_vec(),
            qos: m.qos,
            retain: m.retain,
            user_properties: m.user_properties.clone(),
            content_type: m.content_type.clone(),
            payload_format_indicator: m.payload_format_indicator,
            message_expiry_interval: m.message_expiry_interval,
            response_topic: m.response_topic.clone(),
            correlation_data: m.correlation_data.as_ref().map(|b| b.to_vec()),
        }
    }

    fn into_message(self) -> Message {
        let mut m = Message::new(self.topic, Bytes::from(self.payload), self.qos);
        m.retain = self.retain;
        m.user_properties = self.user_properties;
        m.content_type = self.content_type;
        m.payload_format_indicator = self.payload_format_indicator;
        m.message_expiry_interval = self.message_expiry_interval;
        m.response_topic = self.response_topic;
        m.correlation_data = self.correlation_data.map(Bytes::from);
        m
    }
}

/// Per-lane bookkeeping kept in memory (rebuilt from the file at open).
#[derive(Debug, Default, Clone, Copy)]
struct LaneState {
    count: u64,
    bytes: u64,
    next_key: u64,
}

/// The queue of one bridge.
pub struct Queue {
    db: Database,
    path: PathBuf,
    lanes: [LaneState; 2],
    max_messages: u64,
    max_bytes: u64,
}

impl Queue {
    /// Opens (or creates) `dir/queue.redb`; messages left by a previous run are kept.
    pub fn open(dir: &Path, max_messages: u64, max_bytes: u64) -> Result<Queue, QueueError> {
        std::fs::create_dir_all(dir).map_err(|source| QueueError::Io {
            path: dir.to_owned(),
            source,
        })?;
        let path = dir.join("queue.redb");
        let err = |e: redb::Error| QueueError::Db {
            path: path.clone(),
            source: Box::new(e),
        };
        let db = Database::create(&path).map_err(|e| err(e.into()))?;
        let mut lanes = [LaneState::default(); 2];
        let txn = db.begin_write().map_err(|e| err(e.into()))?;
        for (i, def) in LANES.iter().enumerate() {
            let table = txn.open_table(*def).map_err(|e| err(e.into()))?;
            for entry in table.iter().map_err(|e| err(e.into()))? {
                let (k, v) = entry.map_err(|e| err(e.into()))?;
                lanes[i].count += 1;
                lanes[i].bytes += v.value().len() as u64;
                lanes[i].next_key = k.value() + 1;
            }
        }
        txn.commit().map_err(|e| err(e.into()))?;
        Ok(Queue {
            db,
            path,
            lanes,
            max_messages,
            max_bytes,
        })
    }

    fn err(&self, e: impl Into<redb::Error>) -> QueueError {
        QueueError::Db {
            path: self.path.clone(),
            source: Box::new(e.into()),
        }
    }

    /// Messages waiting in `lane`.
    pub fn len(&self, lane: Lane) -> u64 {
        self.lanes.get(lane).map_or(0, |l| l.count)
    }

    /// Whether `lane` is empty.
    pub fn is_empty(&self, lane: Lane) -> bool {
        self.len(lane) == 0
    }

    /// Appends durably, tagged with the route it came through; `Ok(false)` when the count or
    /// byte limit (encoded record size) would be exceeded.
    pub fn push(&mut self, lane: Lane, route: usize, m: &Message) -> Result<bool, QueueError> {
        let bytes = serde_json::to_vec(&Record::of(route, m)).unwrap_or_default();
        let Some(state) = self.lanes.get(lane).copied() else {
            return Ok(false);
        };
        if state.count >= self.max_messages || state.bytes + bytes.len() as u64 > self.max_bytes {
            return Ok(false);
        }
        let txn = self.db.begin_write().map_err(|e| self.err(e))?;
        {
            let mut table = txn.open_table(LANES[lane % 2]).map_err(|e| self.err(e))?;
            table
                .insert(state.next_key, bytes.as_slice())
                .map_err(|e| self.err(e))?;
        }
        txn.commit().map_err(|e| self.err(e))?;
        if let Some(s) = self.lanes.get_mut(lane) {
            s.count += 1;
            s.bytes += bytes.len() as u64;
            s.next_key += 1;
        }
        Ok(true)
    }

    /// Up to `n` messages with keys after `after`, oldest first (unreadable records skipped).
    pub fn peek(
        &self,
        lane: Lane,
        after: Option<u64>,
        n: usize,
    ) -> Result<Vec<(u64, usize, Message)>, QueueError> {
        let txn = self.db.begin_read().map_err(|e| self.err(e))?;
        let table = txn.open_table(LANES[lane % 2]).map_err(|e| self.err(e))?;
        let from = after.map_or(0, |a| a + 1);
        let mut out = Vec::new();
        for entry in table.range(from..).map_err(|e| self.err(e))? {
            if out.len() >= n {
                break;
            }
            let (k, v) = entry.map_err(|e| self.err(e))?;
            if let Ok(r) = serde_json::from_slice::<Record>(v.value()) {
                out.push((k.value(), r.route, r.into_message()));
            }
        }
        Ok(out)
    }

    /// Removes a delivered message.
    pub fn remove(&mut self, lane: Lane, key: u64) -> Result<(), QueueError> {
        let txn = self.db.begin_write().map_err(|e| self.err(e))?;
        let removed = {
            let mut table = txn.open_table(LANES[lane % 2]).map_err(|e| self.err(e))?;
            let v = table.remove(key).map_err(|e| self.err(e))?;
            v.map(|v| v.value().len() as u64)
        };
        txn.commit().map_err(|e| self.err(e))?;
        if let (Some(len), Some(s)) = (removed, self.lanes.get_mut(lane)) {
            s.count = s.count.saturating_sub(1);
            s.bytes = s.bytes.saturating_sub(len);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("canopy-mq-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn queue_keeps_order_limits_count_and_survives_reopen() {
        let d = dir("order");
        {
            let mut q = Queue::open(&d, 3, 1 << 20).unwrap();
            for n in 0..4 {
                let stored = q
                    .push(0, n as usize, &Message::new(format!("t/{n}"), "x", 1))
                    .unwrap();
                assert_eq!(stored, n < 3, "message {n}");
            }
            assert_eq!(q.len(0), 3);
            assert!(q.is_empty(1));
            let first = q.peek(0, None, 1).unwrap();
            q.remove(0, first[0].0).unwrap();
        }
        let q = Queue::open(&d, 3, 1 << 20).unwrap();
        let topics: Vec<String> = q
            .peek(0, None, 10)
            .unwrap()
            .into_iter()
            .map(|(_, r, m)| format!("{r}:{}", m.topic))
            .collect();
        assert_eq!(topics, ["1:t/1", "2:t/2"]);
        let after = q.peek(0, None, 1).unwrap()[0].0;
        assert_eq!(q.peek(0, Some(after), 10).unwrap().len(), 1);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn queue_refuses_past_the_byte_limit() {
        let d = dir("bytes");
        let mut q = Queue::open(&d, 100, 400).unwrap();
        let big = Message::new("t", vec![b'x'; 150], 1);
        assert!(!q.push(0, 0, &big).unwrap());
        assert!(q.push(0, 0, &Message::new("t", "small", 1)).unwrap());
        let _ = std::fs::remove_dir_all(&d);
    }
}
