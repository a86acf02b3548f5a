//! A session's queue of deliveries not yet in flight, with its weight in bytes.
//!
//! Owns only the list and its byte count, kept in step: every push adds the message's
//! [`crate::message::Message::weight`], every pop subtracts it. Allocated on the first push
//! and kept after (a session that queued once is likely to again): a session that never
//! queues, as an idle subscriber, keeps one pointer instead of an empty `VecDeque` and a
//! counter. It never decides what to drop; that is the session's queue policy.

use std::collections::VecDeque;

use super::session::Delivery;

/// Deliveries waiting for the in-flight window or a connection, oldest first.
#[derive(Debug, Default)]
pub struct Queue(Option<Box<Inner>>);

#[derive(Debug, Default)]
struct Inner {
    items: VecDeque<Delivery>,
    /// Approximate bytes in `items`.
    bytes: usize,
}

impl Queue {
    /// Number of deliveries queued.
    pub fn len(&self) -> usize {
        self.0.as_ref().map_or(0, |q| q.items.len())
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Approximate bytes queued.
    pub fn bytes(&self) -> usize {
        self.0.as_ref().map_or(0, |q| q.bytes)
    }

    fn inner(&mut self) -> &mut Inner {
        self.0.get_or_insert_with(Box::default)
    }

    /// Appends `d`.
    pub fn push_back(&mut self, d: Delivery) {
        let q = self.inner();
        q.bytes += d.msg.weight();
        q.items.push_back(d);
    }

    /// Puts `d` back at the front (it could not go in flight after all).
    pub fn push_front(&mut self, d: Delivery) {
        let q = self.inner();
        q.bytes += d.msg.weight();
        q.items.push_front(d);
    }

    /// Takes the oldest delivery.
    pub fn pop_front(&mut self) -> Option<Delivery> {
        let q = self.0.as_mut()?;
        let d = q.items.pop_front()?;
        q.bytes = q.bytes.saturating_sub(d.msg.weight());
        Some(d)
    }

    /// Takes the newest delivery.
    pub fn pop_back(&mut self) -> Option<Delivery> {
        let q = self.0.as_mut()?;
        let d = q.items.pop_back()?;
        q.bytes = q.bytes.saturating_sub(d.msg.weight());
        Some(d)
    }

    /// Empties the queue and lets its memory go.
    pub fn clear(&mut self) {
        self.0 = None;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::Bytes;
    use canopy_proto::{QoS, TopicName};

    use super::*;
    use crate::message::Message;

    fn delivery(payload: &'static [u8]) -> Delivery {
        Delivery {
            seq: 0,
            msg: Arc::new(Message {
                topic: TopicName::new("t").unwrap(),
                qos: QoS::AtLeastOnce,
                retain: false,
                properties: Default::default(),
                payload: Bytes::from_static(payload),
                expires_at: None,
            }),
            qos: QoS::AtLeastOnce,
            retain: false,
            sub_ids: Vec::new(),
        }
    }

    #[test]
    fn the_byte_count_follows_every_push_and_pop() {
        let mut q = Queue::default();
        assert_eq!((q.len(), q.bytes()), (0, 0));
        assert!(q.pop_front().is_none() && q.pop_back().is_none());
        let (a, b) = (delivery(b"a"), delivery(b"bbbbbbbb"));
        let (wa, wb) = (a.msg.weight(), b.msg.weight());
        q.push_back(a);
        q.push_back(b);
        assert_eq!((q.len(), q.bytes()), (2, wa + wb));
        let newest = q.pop_back().unwrap();
        assert_eq!(&newest.msg.payload[..], b"bbbbbbbb");
        assert_eq!(q.bytes(), wa);
        q.push_front(newest);
        assert_eq!(q.bytes(), wa + wb);
        assert_eq!(q.pop_front().map(|d| d.msg.payload.len()), Some(8));
        assert_eq!((q.len(), q.bytes()), (1, wa));
        q.clear();
        assert_eq!((q.len(), q.bytes(), q.is_empty()), (0, 0, true));
    }

    #[test]
    fn an_unused_queue_is_one_pointer() {
        assert_eq!(std::mem::size_of::<Queue>(), 8);
    }
}
