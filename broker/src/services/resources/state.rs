//! The state of one scarce resource as a pure state machine (SPEC §7): holders, the FIFO
//! queue with its positions, the slot schedule, grant numbers and leases.
//!
//! Owns the rules of who holds a unit and who is next. Time is passed in as unix
//! milliseconds ([`Ms`]) by the caller, so tests drive it with a fake clock and the state
//! survives restarts as plain numbers. Every input that changes what a client should know
//! appends a [`Notice`] to `out`; the caller turns notices into messages. Must never do IO,
//! read a clock, or let the number of holders exceed `max`.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

/// Unix time in milliseconds.
pub type Ms = u64;

/// How a resource serves requesters beyond its maximum.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// A FIFO queue with positions.
    Queue,
    /// Access slots of a fixed length.
    Slots,
}

/// The configured limits of one resource, in milliseconds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    /// Most holders at once (at least 1).
    pub max: usize,
    /// Longest (and default) lease.
    pub lease: Ms,
    /// Most waiters or reservations.
    pub queue_limit: usize,
    /// Queue or slots.
    pub mode: Mode,
    /// Length of one slot.
    pub slot: Ms,
}

/// Where a client wants its answers: its own `$resource/<name>/client/<id>` (when `topic`
/// is `None`) or a 5.0 Response Topic, echoing the Correlation Data.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reply {
    /// The Response Topic, if the request carried one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
    /// The Correlation Data, if the request carried some.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation: Option<Vec<u8>>,
}

/// A client holding one unit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    /// The holder's client id.
    pub client: String,
    /// Its grant number (unique, growing with every grant).
    pub grant: u64,
    /// When the lease ends unless renewed.
    pub expires: Ms,
    /// Where its answers go.
    pub reply: Reply,
}

/// A client waiting in the queue.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Waiter {
    /// The waiter's client id.
    pub client: String,
    /// The lease it asked for.
    pub lease: Ms,
    /// Where its answers go.
    pub reply: Reply,
}

/// A client's reserved slot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reservation {
    /// The client id.
    pub client: String,
    /// When the slot begins.
    pub start: Ms,
    /// When it ends (the grant's expiry).
    pub end: Ms,
    /// Where its answers go.
    pub reply: Reply,
}

/// What a client is told.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// It holds a unit until `expires` (unless renewed or released).
    Granted {
        /// The grant number.
        grant: u64,
        /// The lease's end.
        expires: Ms,
    },
    /// It waits at `position` (1 = next).
    Queued {
        /// Its place in the queue, counted from 1.
        position: usize,
    },
    /// It will be granted a unit from `start` to `end`.
    Scheduled {
        /// Slot start.
        start: Ms,
        /// Slot end.
        end: Ms,
    },
    /// The request was not accepted.
    Refused {
        /// Why.
        reason: &'static str,
    },
    /// Its grant, place or reservation is given up at its request.
    Released {
        /// The grant given up, if it held one.
        grant: Option<u64>,
    },
    /// Its lease or slot ran out, or it was not connected when its slot began.
    Expired {
        /// The grant that ended, if it held one.
        grant: Option<u64>,
    },
}

/// One answer to one client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notice {
    /// The client the answer is for.
    pub client: String,
    /// Where it goes.
    pub reply: Reply,
    /// What it says.
    pub answer: Answer,
}

/// Everything a restart must bring back, as the resource keeps it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// The next grant number to hand out.
    pub next_grant: u64,
    /// Current holders, oldest grant first.
    pub holders: Vec<Holder>,
    /// Waiters, head first.
    #[serde(default)]
    pub queue: Vec<Waiter>,
    /// Reservations, earliest first.
    #[serde(default)]
    pub slots: Vec<Reservation>,
}

/// Lifetime counts, for `$SYS/broker/resources/<name>/...`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Grants handed out.
    pub granted: u64,
    /// Requests refused.
    pub refused: u64,
    /// Leases and slots that ran out, and slots not used.
    pub expired: u64,
    /// Grants, places and reservations given up (release or end of session).
    pub released: u64,
}

/// One resource.
#[derive(Clone, Debug)]
pub struct Resource {
    policy: Policy,
    /// Holders in grant order; never more than `policy.max`.
    holders: Vec<Holder>,
    /// Waiters, head first; in queue mode empty whenever `holders.len() < max`.
    queue: VecDeque<Waiter>,
    /// Reservations sorted by start (ties in reservation order).
    slots: Vec<Reservation>,
    /// The next grant number: grants only grow, across restarts too.
    next_grant: u64,
    counters: Counters,
}

impl Resource {
    /// An idle resource.
    pub fn new(policy: Policy) -> Resource {
        Resource {
            policy,
            holders: Vec::new(),
            queue: VecDeque::new(),
            slots: Vec::new(),
            next_grant: 1,
            counters: Counters::default(),
        }
    }

    /// A resource brought back from `snap` under `policy` (which may have changed since).
    /// Holders beyond a lowered maximum (the newest grants) are expired; queue entries are
    /// dropped in slots mode and reservations in queue mode, each told so; expired leases
    /// and due slots are left to the caller's next [`Resource::tick`]; free units go to
    /// the head of the queue at once (and the waiters behind are told their positions).
    pub fn restore(policy: Policy, snap: Snapshot, now: Ms, out: &mut Vec<Notice>) -> Resource {
        let mut r = Resource::new(policy);
        r.next_grant = snap.next_grant.max(1);
        let mut holders = snap.holders;
        holders.sort_by_key(|h| h.grant);
        for h in holders {
            r.next_grant = r.next_grant.max(h.grant.saturating_add(1));
            if r.holders.len() < r.policy.max && !r.holders.iter().any(|x| x.client == h.client) {
                r.holders.push(h);
            } else {
                r.counters.expired += 1;
                out.push(notice(
                    &h.client,
                    &h.reply,
                    Answer::Expired {
                        grant: Some(h.grant),
                    },
                ));
            }
        }
        let refuse = |client: &str, reply: &Reply, out: &mut Vec<Notice>| {
            out.push(notice(
                client,
                reply,
                Answer::Refused {
                    reason: "configuration changed",
                },
            ));
        };
        for w in snap.queue {
            if r.policy.mode == Mode::Queue && r.queue.len() < r.policy.queue_limit {
                r.queue.push_back(w);
            } else {
                refuse(&w.client, &w.reply, out);
            }
        }
        for s in snap.slots {
            if r.policy.mode == Mode::Slots && r.slots.len() < r.policy.queue_limit {
                r.slots.push(s);
            } else {
                refuse(&s.client, &s.reply, out);
            }
        }
        r.slots.sort_by_key(|s| s.start);
        r.promote(now, r.queue.len(), out);
        r
    }

    /// Everything needed to [`Resource::restore`] this resource.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            next_grant: self.next_grant,
            holders: self.holders.clone(),
            queue: self.queue.iter().cloned().collect(),
            slots: self.slots.clone(),
        }
    }

    /// The policy in force.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Current holders, oldest grant first.
    pub fn holders(&self) -> &[Holder] {
        &self.holders
    }

    /// Waiters, head first (position `i + 1` at index `i`).
    pub fn queue(&self) -> impl Iterator<Item = &Waiter> {
        self.queue.iter()
    }

    /// Reservations, earliest first.
    pub fn slots(&self) -> &[Reservation] {
        &self.slots
    }

    /// Lifetime counts.
    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// Waiters plus reservations.
    pub fn waiting(&self) -> usize {
        self.queue.len() + self.slots.len()
    }

    /// Whether `client` holds, waits for or has reserved a unit.
    pub fn involves(&self, client: &str) -> bool {
        self.holders.iter().any(|h| h.client == client)
            || self.queue.iter().any(|w| w.client == client)
            || self.slots.iter().any(|s| s.client == client)
    }

    /// `client` asks for a unit for `lease` (capped at the policy's). A holder renews its
    /// lease (same grant number); a waiter is told its position again; a newcomer is
    /// granted at once below the maximum, else queued (or, in slots mode, scheduled), or
    /// refused when the queue is full.
    pub fn acquire(
        &mut self,
        client: &str,
        lease: Option<Ms>,
        reply: Reply,
        now: Ms,
        out: &mut Vec<Notice>,
    ) {
        let lease = lease.map_or(self.policy.lease, |l| l.min(self.policy.lease).max(1));
        if let Some(h) = self.holders.iter_mut().find(|h| h.client == client) {
            h.reply = reply;
            if self.policy.mode == Mode::Queue {
                h.expires = now.saturating_add(lease);
            }
            out.push(notice(
                client,
                &h.reply,
                Answer::Granted {
                    grant: h.grant,
                    expires: h.expires,
                },
            ));
            return;
        }
        if self.policy.mode == Mode::Slots {
            return self.reserve(client, reply, now, out);
        }
        if let Some(i) = self.queue.iter().position(|w| w.client == client) {
            if let Some(w) = self.queue.get_mut(i) {
                w.reply = reply;
                w.lease = lease;
                out.push(notice(client, &w.reply, Answer::Queued { position: i + 1 }));
            }
            return;
        }
        if self.holders.len() < self.policy.max && self.queue.is_empty() {
            self.grant(client.to_owned(), now.saturating_add(lease), reply, out);
        } else if self.queue.len() >= self.policy.queue_limit {
            self.counters.refused += 1;
            out.push(notice(
                client,
                &reply,
                Answer::Refused {
                    reason: "queue full",
                },
            ));
        } else {
            let position = self.queue.len() + 1;
            out.push(notice(client, &reply, Answer::Queued { position }));
            self.queue.push_back(Waiter {
                client: client.to_owned(),
                lease,
                reply,
            });
        }
    }

    /// `client` asks for a slot: it is scheduled into the earliest slot of length `slot`
    /// in which fewer than `max` units are taken by current leases and earlier
    /// reservations. A holder is told its grant; a client with a reservation is told it
    /// again. In queue mode this is refused.
    pub fn reserve(&mut self, client: &str, reply: Reply, now: Ms, out: &mut Vec<Notice>) {
        if self.policy.mode == Mode::Queue {
            self.counters.refused += 1;
            out.push(notice(
                client,
                &reply,
                Answer::Refused {
                    reason: "not a slots resource",
                },
            ));
            return;
        }
        if let Some(h) = self.holders.iter_mut().find(|h| h.client == client) {
            h.reply = reply;
            out.push(notice(
                client,
                &h.reply,
                Answer::Granted {
                    grant: h.grant,
                    expires: h.expires,
                },
            ));
            return;
        }
        if let Some(s) = self.slots.iter_mut().find(|s| s.client == client) {
            s.reply = reply;
            out.push(notice(
                client,
                &s.reply,
                Answer::Scheduled {
                    start: s.start,
                    end: s.end,
                },
            ));
            return;
        }
        if self.slots.len() >= self.policy.queue_limit {
            self.counters.refused += 1;
            out.push(notice(
                client,
                &reply,
                Answer::Refused {
                    reason: "queue full",
                },
            ));
            return;
        }
        let start = self.earliest_slot(now);
        let end = start.saturating_add(self.policy.slot);
        out.push(notice(client, &reply, Answer::Scheduled { start, end }));
        let at = self.slots.partition_point(|s| s.start <= start);
        self.slots.insert(
            at,
            Reservation {
                client: client.to_owned(),
                start,
                end,
                reply,
            },
        );
        self.enable_slots(now, &|_| true, out);
    }

    /// `client` gives up its grant, place or reservation (answered on `reply`; a client
    /// with none is told `released` all the same). The next in line is granted at once.
    pub fn release(&mut self, client: &str, reply: Reply, now: Ms, out: &mut Vec<Notice>) {
        let grant = self.remove(client, now, out);
        out.push(notice(client, &reply, Answer::Released { grant }));
    }

    /// `client`'s session ended: its grant, place and reservation are freed without an
    /// answer, and the next in line is granted at once.
    pub fn drop_client(&mut self, client: &str, now: Ms, out: &mut Vec<Notice>) {
        self.remove(client, now, out);
    }

    /// Expires leases that ended by `now` and enables slots that began, granting in order.
    /// A reserving client that is not `online` when its slot begins loses it (`expired`).
    pub fn tick(&mut self, now: Ms, online: &dyn Fn(&str) -> bool, out: &mut Vec<Notice>) {
        self.expire_leases(now, out);
        self.enable_slots(now, online, out);
        self.promote(now, self.queue.len(), out);
    }

    /// Removes the holders whose lease ended by `now`.
    fn expire_leases(&mut self, now: Ms, out: &mut Vec<Notice>) {
        let mut i = 0;
        while let Some(h) = self.holders.get(i) {
            if h.expires <= now {
                let h = self.holders.remove(i);
                self.counters.expired += 1;
                out.push(notice(
                    &h.client,
                    &h.reply,
                    Answer::Expired {
                        grant: Some(h.grant),
                    },
                ));
            } else {
                i += 1;
            }
        }
    }

    /// Grants the reservations whose slot began by `now`, in order, while units are free;
    /// a slot that already ended, or whose client is not `online`, expires unused.
    fn enable_slots(&mut self, now: Ms, online: &dyn Fn(&str) -> bool, out: &mut Vec<Notice>) {
        while let Some(s) = self.slots.first() {
            if s.start > now || (self.holders.len() >= self.policy.max && s.end > now) {
                break;
            }
            let s = self.slots.remove(0);
            if s.end <= now || !online(&s.client) {
                self.counters.expired += 1;
                out.push(notice(&s.client, &s.reply, Answer::Expired { grant: None }));
            } else {
                self.grant(s.client, s.end, s.reply, out);
            }
        }
    }

    /// The earliest instant at which [`Resource::tick`] has something to do.
    pub fn next_deadline(&self) -> Option<Ms> {
        let lease = self.holders.iter().map(|h| h.expires).min();
        // A due slot waiting for a full house waits for a lease end (or a release), so a
        // past start is never reported again and again.
        let slot = self
            .slots
            .first()
            .filter(|_| self.holders.len() < self.policy.max)
            .map(|s| s.start);
        lease.into_iter().chain(slot).min()
    }

    /// The start of the slot a reservation made at `now` would get (slots mode), or `None`
    /// in queue mode.
    pub fn next_slot(&self, now: Ms) -> Option<Ms> {
        (self.policy.mode == Mode::Slots).then(|| self.earliest_slot(now))
    }

    /// Grants the unit to `client` until `expires` with the next grant number.
    fn grant(&mut self, client: String, expires: Ms, reply: Reply, out: &mut Vec<Notice>) {
        let grant = self.next_grant;
        self.next_grant = self.next_grant.saturating_add(1);
        self.counters.granted += 1;
        out.push(notice(&client, &reply, Answer::Granted { grant, expires }));
        self.holders.push(Holder {
            client,
            grant,
            expires,
            reply,
        });
    }

    /// Removes `client` everywhere; returns the grant it held. Frees its unit to the next
    /// in line and tells the waiters behind it their new positions.
    fn remove(&mut self, client: &str, now: Ms, out: &mut Vec<Notice>) -> Option<u64> {
        let mut grant = None;
        if let Some(i) = self.holders.iter().position(|h| h.client == client) {
            grant = Some(self.holders.remove(i).grant);
            self.counters.released += 1;
        }
        let mut moved = self.queue.len();
        if let Some(i) = self.queue.iter().position(|w| w.client == client) {
            self.queue.remove(i);
            self.counters.released += 1;
            moved = i;
        }
        if let Some(i) = self.slots.iter().position(|s| s.client == client) {
            self.slots.remove(i);
            self.counters.released += 1;
        }
        self.enable_slots(now, &|_| true, out);
        self.promote(now, moved, out);
        grant
    }

    /// Grants waiters from the head while units are free, then tells every waiter from
    /// index `moved` on (or from the head, if any was granted) its new position.
    fn promote(&mut self, now: Ms, moved: usize, out: &mut Vec<Notice>) {
        let mut from = moved;
        while self.holders.len() < self.policy.max {
            let Some(w) = self.queue.pop_front() else {
                break;
            };
            self.grant(w.client, now.saturating_add(w.lease), w.reply, out);
            from = 0;
        }
        for (i, w) in self.queue.iter().enumerate().skip(from) {
            out.push(notice(
                &w.client,
                &w.reply,
                Answer::Queued { position: i + 1 },
            ));
        }
    }

    /// The earliest `t >= now` such that fewer than `max` units are taken at every instant
    /// of `[t, t + slot)` by current leases (`[now, expires)`) and reservations.
    fn earliest_slot(&self, now: Ms) -> Ms {
        let mut events: Vec<(Ms, i64)> =
            Vec::with_capacity(2 * (self.holders.len() + self.slots.len()));
        for h in self.holders.iter().filter(|h| h.expires > now) {
            events.push((now, 1));
            events.push((h.expires, -1));
        }
        for s in &self.slots {
            let start = s.start.max(now);
            if s.end > start {
                events.push((start, 1));
                events.push((s.end, -1));
            }
        }
        // Ends sort before starts at the same instant: slots may be back to back.
        events.sort_unstable();
        let mut steps: Vec<(Ms, i64)> = vec![(now, 0)];
        let mut level = 0;
        for (t, delta) in events {
            level += delta;
            match steps.last_mut() {
                Some(last) if last.0 == t => last.1 = level,
                _ => steps.push((t, level)),
            }
        }
        let max = i64::try_from(self.policy.max).unwrap_or(i64::MAX);
        for (i, &(t, _)) in steps.iter().enumerate() {
            let end = t.saturating_add(self.policy.slot);
            if steps
                .iter()
                .skip(i)
                .take_while(|(s, _)| *s < end)
                .all(|(_, l)| *l < max)
            {
                return t;
            }
        }
        steps.last().map_or(now, |s| s.0)
    }
}

fn notice(client: &str, reply: &Reply, answer: Answer) -> Notice {
    Notice {
        client: client.to_owned(),
        reply: reply.clone(),
        answer,
    }
}

#[cfg(test)]
#[path = "state_tests.rs"]
mod tests;
