//! The per-connection outbox: what the router hands to one connection task to write.
//!
//! Owns a small queue shared by exactly one producer side (the router) and one
//! consumer (the connection task). The router pushes without ever waiting; the
//! connection takes everything at once and writes it with one system call, which is
//! where fan-out throughput comes from. The connection is woken once per batch: only
//! the push that finds nothing waiting to be taken notifies it. It is bounded: QoS 0 messages beyond
//! `qos0_capacity` are refused (the router counts the drop); QoS 1/2 messages are
//! bounded upstream by the session's in-flight window; acknowledgements are bounded by
//! the connection reading no more while its writes are blocked.
//!
//! It must never hold the lock across an await or do any encoding under the lock (it
//! copies bytes encoded before, [`Outbox::push_encoded`]).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use bytes::{BufMut, BytesMut};
use canopy_proto::{Packet, QoS, ReasonCode};

use crate::keepalive::Liveness;
use crate::message::Message;

/// Largest shared encoding [`Outbox::push_encoded`] copies into a run; bigger ones are
/// queued by reference, so that a large message is not held once per subscriber.
pub const COPY_MAX: usize = 512;

/// First capacity of a run of encoded PUBLISHes (it doubles as it fills).
const RUN_START: usize = 1024;

/// One item for the connection to write.
#[derive(Debug)]
pub enum Outgoing {
    /// A PUBLISH built from a shared message and per-delivery fields.
    Publish {
        /// The message.
        msg: Arc<Message>,
        /// QoS of this delivery.
        qos: QoS,
        /// Packet id (QoS 1/2).
        pkid: Option<u16>,
        /// RETAIN flag of this delivery.
        retain: bool,
        /// DUP flag (a resend after reconnect).
        dup: bool,
        /// Subscription identifiers of the matching subscriptions (5.0).
        sub_ids: Vec<u32>,
    },
    /// A QoS 0 PUBLISH encoded once for every subscriber with the same wire form
    /// ([`crate::message::Message::shared_qos0`]), too big to copy per subscriber:
    /// written as it is, with this delivery's RETAIN bit.
    Wire {
        /// The encoded PUBLISH, RETAIN bit clear.
        bytes: Arc<[u8]>,
        /// RETAIN flag of this delivery.
        retain: bool,
    },
    /// Consecutive small QoS 0 PUBLISHes, each copied from its shared encoding with its
    /// RETAIN bit set (see [`Outbox::push_encoded`]): ready to write.
    Run {
        /// The PUBLISHes, back to back.
        bytes: BytesMut,
        /// How many PUBLISHes `bytes` holds.
        count: usize,
    },
    /// Any other packet (acknowledgements, SUBACK, ...).
    Packet(Packet),
    /// Send DISCONNECT with this reason (5.0 only) and close the connection.
    Disconnect(ReasonCode, Option<String>),
    /// The client belongs on another node: DISCONNECT 0x9C (Use another server) with
    /// this Server Reference (5.0), a plain close otherwise.
    Moved(String),
}

impl Outgoing {
    /// How many QoS 0 PUBLISHes this is (bounded by the outbox's QoS 0 capacity).
    fn qos0_count(&self) -> usize {
        match self {
            Outgoing::Publish {
                qos: QoS::AtMostOnce,
                ..
            }
            | Outgoing::Wire { .. } => 1,
            Outgoing::Run { count, .. } => *count,
            _ => 0,
        }
    }
}

#[derive(Debug, Default)]
struct Inner {
    items: VecDeque<Outgoing>,
    /// QoS 0 publishes currently queued, bounded by `qos0_capacity`.
    qos0: u32,
    /// Set once a Disconnect was queued: nothing is accepted after it.
    closed: bool,
    /// How many items at the back of `items` the connection may not take yet: they
    /// wait for the store commit of the turn that made them (`durability = "sync"`).
    held: u32,
    /// The journal epoch in which this outbox last registered held items.
    stage_epoch: u64,
    /// The open run of encoded QoS 0 PUBLISHes ([`Outbox::push_encoded`]): after every
    /// visible item of `items` and before the held ones. It is closed into an
    /// [`Outgoing::Run`] item when something else is queued after it or the
    /// connection takes the queue; until then appending to it touches nothing else.
    /// Boxed on the first such PUBLISH, so an outbox that never gets one stays small.
    run: Option<Box<Run>>,
    /// The connection task waiting for news ([`Outbox::poll_notified`]).
    waker: Option<Waker>,
    /// News not yet seen by the connection (a wake-up while it was not waiting).
    signalled: bool,
}

/// The open run of an [`Inner`].
#[derive(Debug, Default)]
struct Run {
    /// The PUBLISHes, back to back.
    bytes: BytesMut,
    /// How many PUBLISHes `bytes` holds.
    count: usize,
}

impl Inner {
    /// Marks news for the connection; the waker to wake once the lock is let go.
    fn signal(&mut self) -> Option<Waker> {
        self.signalled = true;
        self.waker.take()
    }

    /// Items the connection may take now, the open run counted as one.
    fn visible(&self) -> usize {
        self.items.len() - self.held() + usize::from(self.run_count() > 0)
    }

    fn held(&self) -> usize {
        self.held as usize
    }

    fn run_count(&self) -> usize {
        self.run.as_ref().map_or(0, |r| r.count)
    }

    /// Moves the open run into `items`, in its place before the held items.
    fn close_run(&mut self) {
        let at = self.items.len() - self.held();
        if let Some(r) = self.run.as_mut().filter(|r| r.count > 0) {
            let run = Outgoing::Run {
                bytes: std::mem::take(&mut r.bytes),
                count: std::mem::take(&mut r.count),
            };
            self.items.insert(at, run);
        }
    }
}

/// The queue between the router and one connection.
#[derive(Debug)]
pub struct Outbox {
    inner: Mutex<Inner>,
    qos0_capacity: u32,
    /// The connection's keep-alive record, which the broker's keep-alive wheel reads
    /// ([`crate::keepalive`]); it wakes the connection through this outbox.
    liveness: Liveness,
    /// Set by the router when it holds more for this connection (a retained replay);
    /// the connection then reports each drained batch so the router can send more.
    drain_notice: AtomicBool,
}

impl Outbox {
    /// A new outbox admitting at most `qos0_capacity` queued QoS 0 messages.
    pub fn new(qos0_capacity: usize) -> Arc<Outbox> {
        Arc::new(Outbox {
            inner: Mutex::default(),
            qos0_capacity: u32::try_from(qos0_capacity).unwrap_or(u32::MAX),
            liveness: Liveness::default(),
            drain_notice: AtomicBool::new(false),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A poisoned lock only means another thread panicked mid-push; the queue itself
        // is still a valid VecDeque, so keep going.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues an item. Returns `false` when it was refused: a QoS 0 publish over the
    /// QoS 0 capacity, or anything after a disconnect. It goes before any held
    /// deliveries (those wait for their commit; acknowledgements are released only
    /// after the deliveries of the same batch).
    pub fn push(&self, item: Outgoing) -> bool {
        self.push_inner(item, None).is_some()
    }

    /// Queues an item that the connection may take only once released. Returns
    /// `Some(true)` when it is this outbox's first held item of journal `epoch` (the
    /// caller remembers the outbox for that epoch), `None` when it was refused as by
    /// [`Outbox::push`].
    pub fn push_held(&self, item: Outgoing, epoch: u64) -> Option<bool> {
        self.push_inner(item, Some(epoch))
    }

    /// How many items are held now.
    pub fn held(&self) -> usize {
        self.lock().held()
    }

    /// Lets the connection take the first `n` held items (those of a committed batch;
    /// what was held after them stays held).
    pub fn release(&self, n: usize) {
        let waker = {
            let mut inner = self.lock();
            // The open run goes before what was held, wherever the line moves.
            inner.close_run();
            let k = n.min(inner.held());
            inner.held -= k as u32;
            if k > 0 { inner.signal() } else { None }
        };
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// Queues `item`, held for journal epoch `hold` if given; see [`Outbox::push_held`].
    fn push_inner(&self, item: Outgoing, hold: Option<u64>) -> Option<bool> {
        let first;
        let waker;
        {
            let mut inner = self.lock();
            if inner.closed {
                return None;
            }
            match &item {
                item if item.qos0_count() > 0 => {
                    let n = u32::try_from(item.qos0_count()).unwrap_or(u32::MAX);
                    if inner.qos0.saturating_add(n) > self.qos0_capacity {
                        return None;
                    }
                    inner.qos0 += n;
                }
                Outgoing::Disconnect(..) | Outgoing::Moved(_) => inner.closed = true,
                _ => {}
            }
            if let Some(epoch) = hold {
                inner.items.push_back(item);
                first = inner.held == 0 || inner.stage_epoch != epoch;
                inner.stage_epoch = epoch;
                inner.held += 1;
                return Some(first);
            }
            // Not held: goes before the held deliveries, which wait for their commit.
            first = false;
            // The connection takes everything visible at once, so if something was
            // visible already it has been notified and not taken it yet: one wake-up
            // per batch, not per item.
            let wake = inner.visible() == 0;
            inner.close_run();
            let at = inner.items.len() - inner.held();
            inner.items.insert(at, item);
            waker = if wake { inner.signal() } else { None };
        }
        if let Some(w) = waker {
            w.wake();
        }
        Some(first)
    }

    /// Queues a QoS 0 PUBLISH encoded once for many subscribers (`bytes`, RETAIN bit
    /// clear) with this delivery's `retain`. Up to [`COPY_MAX`] bytes it is copied onto
    /// the end of the run of such PUBLISHes waiting to be written (no item, no reference
    /// count per delivery; the connection writes the run as it is); a bigger one is
    /// queued shared. Refused as a QoS 0 [`Outbox::push`] is.
    pub fn push_encoded(&self, bytes: &Arc<[u8]>, retain: bool) -> bool {
        let Some((&first, rest)) = bytes.split_first() else {
            return false;
        };
        if bytes.len() > COPY_MAX {
            let item = Outgoing::Wire {
                bytes: bytes.clone(),
                retain,
            };
            return self.push(item);
        }
        let waker;
        {
            let mut inner = self.lock();
            if inner.closed || inner.qos0 >= self.qos0_capacity {
                return false;
            }
            inner.qos0 += 1;
            let wake = inner.visible() == 0;
            let run = inner.run.get_or_insert_with(Box::default);
            if run.bytes.capacity() == 0 {
                run.bytes = crate::wbufs::take(RUN_START.max(bytes.len()));
            }
            run.bytes.reserve(bytes.len());
            run.bytes.put_u8(first | u8::from(retain));
            run.bytes.extend_from_slice(rest);
            run.count += 1;
            waker = if wake { inner.signal() } else { None };
        }
        // As in `push_inner`: only the first visible item wakes the connection.
        if let Some(w) = waker {
            w.wake();
        }
        true
    }

    /// Whether one more QoS 0 publish would be accepted now.
    pub fn qos0_has_room(&self) -> bool {
        let inner = self.lock();
        !inner.closed && inner.qos0 < self.qos0_capacity
    }

    /// Asks the connection to report when it has written what is queued.
    pub fn request_drain_notice(&self) {
        self.drain_notice.store(true, Ordering::Release);
    }

    /// Whether a drain report was asked for (and clears the request).
    pub fn take_drain_notice(&self) -> bool {
        self.drain_notice.swap(false, Ordering::AcqRel)
    }

    /// Whether a disconnect has been queued.
    pub fn is_closed(&self) -> bool {
        self.lock().closed
    }

    /// Moves everything queued and not held into `out` (which the caller reuses
    /// between calls).
    pub fn drain_into(&self, out: &mut VecDeque<Outgoing>) {
        let mut inner = self.lock();
        inner.close_run();
        if inner.held == 0 {
            inner.qos0 = 0;
            std::mem::swap(&mut inner.items, out);
            return;
        }
        let visible = inner.items.len() - inner.held();
        let held = inner.items.split_off(visible);
        std::mem::swap(&mut inner.items, out);
        inner.items = held;
        let qos0: usize = inner.items.iter().map(Outgoing::qos0_count).sum();
        inner.qos0 = u32::try_from(qos0).unwrap_or(u32::MAX);
    }

    /// Ready once something may have been queued (or the keep-alive wheel woke the
    /// connection) since the last time it was ready; otherwise the task is remembered
    /// and woken then. The waiting costs the task no future of its own.
    pub fn poll_notified(&self, cx: &mut Context<'_>) -> Poll<()> {
        let mut inner = self.lock();
        if std::mem::take(&mut inner.signalled) {
            return Poll::Ready(());
        }
        match &inner.waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => inner.waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }

    /// Wakes the connection without queueing anything (the keep-alive wheel).
    pub fn wake(&self) {
        let waker = self.lock().signal();
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// The connection's keep-alive record.
    pub fn liveness(&self) -> &Liveness {
        &self.liveness
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use canopy_proto::TopicName;

    fn msg() -> Arc<Message> {
        Arc::new(Message {
            topic: TopicName::new("t").unwrap(),
            qos: QoS::AtMostOnce,
            retain: false,
            properties: Default::default(),
            payload: Default::default(),
            expires_at: None,
        })
    }

    fn q0() -> Outgoing {
        Outgoing::Publish {
            msg: msg(),
            qos: QoS::AtMostOnce,
            pkid: None,
            retain: false,
            dup: false,
            sub_ids: vec![],
        }
    }

    #[test]
    fn qos0_beyond_capacity_is_refused_but_acks_are_not() {
        let o = Outbox::new(2);
        assert!(o.push(q0()));
        assert!(o.push(q0()));
        assert!(!o.push(q0()));
        assert!(o.push(Outgoing::Packet(Packet::PingResp)));
        let mut out = VecDeque::new();
        o.drain_into(&mut out);
        assert_eq!(out.len(), 3);
        assert!(o.push(q0()));
    }

    #[test]
    fn nothing_is_accepted_after_disconnect() {
        let o = Outbox::new(2);
        assert!(o.push(Outgoing::Disconnect(ReasonCode::SESSION_TAKEN_OVER, None)));
        assert!(!o.push(Outgoing::Packet(Packet::PingResp)));
        assert!(o.is_closed());
    }

    #[test]
    fn held_items_wait_for_their_batch_and_others_go_before_them() {
        let o = Outbox::new(8);
        assert_eq!(o.push_held(q0(), 1), Some(true));
        assert_eq!(o.push_held(q0(), 1), Some(false));
        let batch = o.held();
        // Held after the batch was submitted: a later batch's.
        assert_eq!(o.push_held(q0(), 2), Some(true));
        assert!(o.push(Outgoing::Packet(Packet::PingResp)), "not held");
        let mut out = VecDeque::new();
        o.drain_into(&mut out);
        assert_eq!(out.len(), 1, "only what is not held");
        assert!(matches!(
            out.front(),
            Some(Outgoing::Packet(Packet::PingResp))
        ));
        out.clear();
        o.release(batch);
        o.drain_into(&mut out);
        assert_eq!(out.len(), 2, "the first batch's deliveries only");
        out.clear();
        o.release(usize::MAX);
        o.drain_into(&mut out);
        assert_eq!(out.len(), 1);
    }

    fn encoded(payload: &[u8]) -> Arc<[u8]> {
        let mut b = vec![0x30, 3 + payload.len() as u8, 0, 1, b't'];
        b.extend_from_slice(payload);
        Arc::from(b)
    }

    #[test]
    fn encoded_publishes_join_one_run_with_their_retain_bits() {
        let o = Outbox::new(8);
        assert!(o.push_encoded(&encoded(b"a"), false));
        assert!(o.push_encoded(&encoded(b"b"), true));
        let mut out = VecDeque::new();
        o.drain_into(&mut out);
        assert_eq!(out.len(), 1);
        match out.pop_front() {
            Some(Outgoing::Run { bytes, count }) => {
                assert_eq!(count, 2);
                assert_eq!(&bytes[..], b"\x30\x04\x00\x01ta\x31\x04\x00\x01tb");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_run_keeps_its_place_among_other_items() {
        let o = Outbox::new(8);
        assert!(o.push_encoded(&encoded(b"a"), false));
        assert!(o.push(Outgoing::Packet(Packet::PingResp)));
        assert!(o.push_encoded(&encoded(b"b"), false));
        assert!(o.push_encoded(&encoded(b"c"), false));
        let mut out = VecDeque::new();
        o.drain_into(&mut out);
        let kinds: Vec<_> = out
            .iter()
            .map(|i| match i {
                Outgoing::Run { count, .. } => format!("run{count}"),
                Outgoing::Packet(_) => "packet".into(),
                _ => "other".into(),
            })
            .collect();
        assert_eq!(kinds, ["run1", "packet", "run2"]);
    }

    #[test]
    fn an_open_run_goes_before_released_deliveries() {
        let o = Outbox::new(8);
        assert_eq!(o.push_held(q0(), 1), Some(true));
        assert!(o.push_encoded(&encoded(b"a"), false));
        o.release(usize::MAX);
        let mut out = VecDeque::new();
        o.drain_into(&mut out);
        assert!(
            matches!(out.front(), Some(Outgoing::Run { count: 1, .. })),
            "{out:?}"
        );
        assert!(
            matches!(out.get(1), Some(Outgoing::Publish { .. })),
            "{out:?}"
        );
    }

    #[test]
    fn encoded_publishes_count_against_the_qos0_bound_and_stop_at_disconnect() {
        let o = Outbox::new(2);
        assert!(o.push_encoded(&encoded(b"a"), false));
        assert!(o.push(q0()));
        assert!(!o.push_encoded(&encoded(b"b"), false), "over the bound");
        let mut out = VecDeque::new();
        o.drain_into(&mut out);
        assert!(
            o.push_encoded(&encoded(b"c"), false),
            "room again once taken"
        );
        assert!(o.push(Outgoing::Disconnect(ReasonCode::SESSION_TAKEN_OVER, None)));
        assert!(!o.push_encoded(&encoded(b"d"), false));
    }

    #[test]
    fn a_large_encoding_is_queued_shared_not_copied() {
        let o = Outbox::new(8);
        let big = encoded(&[7u8; 100]);
        let mut b = big.to_vec();
        b.resize(COPY_MAX + 1, 0);
        let big: Arc<[u8]> = Arc::from(b);
        assert!(o.push_encoded(&big, true));
        let mut out = VecDeque::new();
        o.drain_into(&mut out);
        match out.pop_front() {
            Some(Outgoing::Wire { bytes, retain }) => {
                assert!(retain);
                assert!(Arc::ptr_eq(&bytes, &big));
            }
            other => panic!("{other:?}"),
        }
    }
}
