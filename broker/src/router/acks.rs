//! The acknowledgement and durability pipeline: acknowledgements of a turn are held,
//! the turn's store mutations are submitted as one batch (group commit), and under
//! `sync` durability the acknowledgements go out only once that batch is on disk, in
//! the order they were made [MQTT-4.6.0-2].
//!
//! Owns `held_acks`, `waiting_acks` and the batch in flight. It never decides what to
//! acknowledge, only when.

use canopy_proto::{Packet, PubAck, QoS, ReasonCode};

use super::Router;
use crate::config::Durability;
use crate::outbox::Outgoing;
use crate::store::Mutation;
use crate::store::worker::Done;

impl Router {
    /// Queues the acknowledgement of an incoming QoS 1/2 PUBLISH; it goes out at the end
    /// of the turn, or after the commit under `sync`.
    pub(super) fn ack(
        &mut self,
        key: usize,
        conn: u64,
        qos: QoS,
        pkid: u16,
        v5: bool,
        reason: ReasonCode,
    ) {
        let mut ack = PubAck::new(pkid);
        if v5 {
            ack.reason = reason;
        }
        match qos {
            QoS::AtMostOnce => {}
            QoS::AtLeastOnce => self.hold_ack(key, conn, Packet::PubAck(ack)),
            QoS::ExactlyOnce => {
                if reason.is_error() {
                    // A refused QoS 2 message is not awaiting PUBREL.
                    if let Some(s) = self.sessions.get_mut(key)
                        && s.incoming.on_pubrel(pkid)
                        && s.persistent()
                    {
                        self.journal
                            .record(|| Mutation::DeleteIncoming(s.client_id.clone(), pkid));
                    }
                }
                self.hold_ack(key, conn, Packet::PubRec(ack));
            }
        }
    }

    /// Ends a loop turn: acknowledgements (and, under `sync`, the turn's deliveries) go
    /// out now, or with the next commit when `sync` durability makes them wait for the
    /// disk.
    pub fn end_turn(&mut self) {
        match self.durability {
            Durability::Memory | Durability::Batched => self.release(false),
            Durability::Sync => {
                if self.in_flight.is_none() {
                    self.journal_dirty_sessions();
                    if self.journal.is_empty() {
                        self.release(false);
                    } else {
                        self.submit();
                    }
                }
                // Else: everything held waits for the next batch, keeping ack order.
            }
        }
    }

    /// Submits the journal as one batch; in `sync` mode the held acknowledgements
    /// now wait for it.
    pub(super) fn submit(&mut self) {
        self.journal_dirty_sessions();
        if self.journal.is_empty() {
            return;
        }
        let ops = std::mem::take(&mut self.journal.ops);
        match self.committer.submit(ops) {
            Some(batch) => {
                self.in_flight = Some(batch);
                if self.durability == Durability::Sync {
                    self.waiting_acks.append(&mut self.held_acks);
                    let staged = self.journal.take_staged();
                    self.waiting_deliveries.extend(staged);
                }
                if let Some(done) = self.committer.ready() {
                    self.on_commit_done(done);
                }
            }
            None => {
                tracing::error!("the store thread is gone; acknowledgements withheld");
                self.release(true);
            }
        }
    }

    /// A batch was committed (or failed): its acknowledgements go out (or their
    /// clients are disconnected), and the next batch may start.
    pub fn on_commit_done(&mut self, d: Done) {
        if self.in_flight != Some(d.batch) {
            return;
        }
        self.in_flight = None;
        let failed = d.result.is_err();
        // Deliveries of the batch first, then its acknowledgements: a client that
        // subscribes to its own topic sees the message before its PUBACK/PUBREC.
        for (outbox, n) in self.waiting_deliveries.drain(..) {
            outbox.release(n);
        }
        let mut waiting = std::mem::take(&mut self.waiting_acks);
        self.send_acks(&mut waiting, failed);
        self.waiting_acks = waiting;
        if self.durability == Durability::Sync {
            self.end_turn();
        }
    }

    /// Sends the held acknowledgements, or on a store failure disconnects their clients
    /// instead (they will resend: nothing acknowledged is lost).
    pub(super) fn release(&mut self, failed: bool) {
        for (outbox, n) in self.journal.take_staged() {
            outbox.release(n);
        }
        let mut held = std::mem::take(&mut self.held_acks);
        self.send_acks(&mut held, failed);
        self.held_acks = held;
    }

    fn send_acks(&mut self, acks: &mut Vec<(usize, u64, Packet)>, failed: bool) {
        for (session, conn, packet) in acks.drain(..) {
            let Some(c) = self
                .sessions
                .get(session)
                .and_then(|s| s.conn.as_ref())
                .filter(|c| c.id == conn)
            else {
                continue;
            };
            if failed {
                c.outbox.push(Outgoing::Disconnect(
                    ReasonCode::UNSPECIFIED_ERROR,
                    Some("store failure".into()),
                ));
            } else {
                c.outbox.push(Outgoing::Packet(packet));
            }
        }
    }
}
