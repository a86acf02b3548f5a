//! The in-memory store (`durability = "memory"`): keeps the durable image in maps so
//! the seam is exercised the same way as on disk, and loses it when the process ends.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use canopy_proto::TopicName;

use super::{
    DeliveryRecord, Mutation, SessionRecord, Snapshot, Store, StoreError, StoredSession,
    SubscriptionRecord,
};
use crate::message::Message;

/// A store that lives and dies with the process.
#[derive(Debug, Default)]
pub struct MemoryStore {
    retained: HashMap<TopicName, Arc<Message>>,
    /// Session records without their subscriptions.
    sessions: HashMap<Arc<str>, SessionRecord>,
    subscriptions: BTreeMap<(Arc<str>, String), SubscriptionRecord>,
    deliveries: BTreeMap<(Arc<str>, u64), DeliveryRecord>,
    incoming: BTreeSet<(Arc<str>, u16)>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Store for MemoryStore {
    fn load(&mut self) -> Result<Snapshot, StoreError> {
        let sessions = self
            .sessions
            .values()
            .map(|rec| {
                let id = &rec.client_id;
                let mut record = rec.clone();
                record.subscriptions = self
                    .subscriptions
                    .range((id.clone(), String::new())..)
                    .take_while(|((c, _), _)| c == id)
                    .map(|(_, sub)| sub.clone())
                    .collect();
                StoredSession {
                    record,
                    deliveries: self
                        .deliveries
                        .range((id.clone(), 0)..=(id.clone(), u64::MAX))
                        .map(|(_, d)| d.clone())
                        .collect(),
                    incoming: self
                        .incoming
                        .range((id.clone(), 0)..=(id.clone(), u16::MAX))
                        .map(|(_, p)| *p)
                        .collect(),
                }
            })
            .collect();
        Ok(Snapshot {
            retained: self.retained.values().cloned().collect(),
            sessions,
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
                Mutation::PutSession(mut rec) => {
                    for sub in std::mem::take(&mut rec.subscriptions) {
                        self.subscriptions
                            .insert((rec.client_id.clone(), sub.filter.clone()), sub);
                    }
                    self.sessions.insert(rec.client_id.clone(), rec);
                }
                Mutation::PutSubscription(id, sub) => {
                    self.subscriptions.insert((id, sub.filter.clone()), sub);
                }
                Mutation::DeleteSubscription(id, filter) => {
                    self.subscriptions.remove(&(id, filter.to_string()));
                }
                Mutation::DeleteSession(id) => {
                    self.sessions.remove(&id);
                    self.subscriptions.retain(|(c, _), _| *c != id);
                    self.deliveries.retain(|(c, _), _| *c != id);
                    self.incoming.retain(|(c, _)| *c != id);
                }
                Mutation::PutDelivery(id, d) => {
                    self.deliveries.insert((id, d.seq), d);
                }
                Mutation::DeleteDelivery(id, seq) => {
                    self.deliveries.remove(&(id, seq));
                }
                Mutation::PutIncoming(id, pkid) => {
                    self.incoming.insert((id, pkid));
                }
                Mutation::DeleteIncoming(id, pkid) => {
                    self.incoming.remove(&(id, pkid));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::DeliveryState;
    use canopy_proto::QoS;

    fn rec(id: &str) -> SessionRecord {
        SessionRecord {
            client_id: Arc::from(id),
            expiry_interval: 60,
            expires_at: None,
            will: None,
            will_at: None,
            subscriptions: vec![],
        }
    }

    fn delivery(seq: u64) -> DeliveryRecord {
        DeliveryRecord {
            seq,
            msg: Arc::new(Message {
                topic: TopicName::new("t").unwrap(),
                qos: QoS::AtLeastOnce,
                retain: false,
                properties: Default::default(),
                payload: bytes::Bytes::from_static(b"x"),
                expires_at: None,
            }),
            qos: QoS::AtLeastOnce,
            retain: false,
            sub_ids: vec![],
            state: DeliveryState::Queued,
        }
    }

    #[test]
    fn committed_sessions_come_back_with_their_deliveries_in_order() {
        let mut s = MemoryStore::new();
        let id: Arc<str> = Arc::from("c1");
        s.commit(&mut vec![
            Mutation::PutSession(rec("c1")),
            Mutation::PutDelivery(id.clone(), delivery(2)),
            Mutation::PutDelivery(id.clone(), delivery(1)),
            Mutation::PutIncoming(id.clone(), 7),
            Mutation::PutSession(rec("c2")),
            Mutation::PutDelivery(Arc::from("c2"), delivery(1)),
        ])
        .unwrap();
        s.commit(&mut vec![Mutation::DeleteDelivery(id.clone(), 2)])
            .unwrap();
        let snap = s.load().unwrap();
        let c1 = snap
            .sessions
            .iter()
            .find(|x| &*x.record.client_id == "c1")
            .unwrap();
        assert_eq!(
            c1.deliveries.iter().map(|d| d.seq).collect::<Vec<_>>(),
            vec![1]
        );
        assert_eq!(c1.incoming, vec![7]);
        s.commit(&mut vec![Mutation::DeleteSession(id)]).unwrap();
        let snap = s.load().unwrap();
        assert_eq!(snap.sessions.len(), 1);
        assert_eq!(snap.sessions[0].deliveries.len(), 1);
    }
}
