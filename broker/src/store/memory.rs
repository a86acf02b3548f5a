//! The in-memory store (`durability = "memory"`): keeps the durable image in maps so
//! the seam is exercised, and loses it when the process ends.

use std::collections::HashMap;
use std::sync::Arc;

use canopy_proto::TopicName;

use super::{Mutation, SessionRecord, Snapshot, Store, StoreError};
use crate::message::Message;

/// A store that lives and dies with the process.
#[derive(Debug, Default)]
pub struct MemoryStore {
    retained: HashMap<TopicName, Arc<Message>>,
    sessions: HashMap<Arc<str>, SessionRecord>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Store for MemoryStore {
    fn load(&mut self) -> Result<Snapshot, StoreError> {
        Ok(Snapshot {
            retained: self.retained.values().cloned().collect(),
            sessions: self.sessions.values().cloned().collect(),
        })
    }

    fn commit(&mut self, batch: &mut Vec<Mutation>) -> Result<(), StoreError> {
        for m in batch.drain(..) {
            match m {
                Mutation::PutRetained(msg) => {
                    self.retained.insert(msg.topic.clone(), msg);
                }
                Mutation::DeleteRetained(topic) => {
                    self.retained.remove(&topic);
                }
                Mutation::PutSession(rec) => {
                    self.sessions.insert(rec.client_id.clone(), rec);
                }
                Mutation::DeleteSession(id) => {
                    self.sessions.remove(&id);
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn committed_sessions_are_loaded_back_and_deletes_apply() {
        let mut s = MemoryStore::new();
        let rec = SessionRecord {
            client_id: Arc::from("c1"),
            expiry_interval: 60,
            subscriptions: vec![],
        };
        s.commit(&mut vec![Mutation::PutSession(rec.clone())])
            .unwrap();
        assert_eq!(s.load().unwrap().sessions, vec![rec]);
        s.commit(&mut vec![Mutation::DeleteSession(Arc::from("c1"))])
            .unwrap();
        assert!(s.load().unwrap().sessions.is_empty());
    }
}
