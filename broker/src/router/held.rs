//! SUBACKs held until a subscription's interest has propagated upstream (docs/interest.md,
//! "Waiting for propagation").
//!
//! A 5.0 SUBSCRIBE carrying the user property [`WAIT_PROPERTY`] gets its SUBACK only once
//! the interest service says every metabroker reading this broker's interest document has
//! applied (and had confirmed upstream) a version containing the subscription — or when the
//! wait runs out, whichever comes first. The SUBACK then carries the user property
//! [`RESULT_PROPERTY`] = `confirmed` or `unconfirmed` (with a reason string).
//!
//! Owns the held SUBACKs and their deadlines (as router timers). Must never change what a
//! SUBSCRIBE grants: the subscription is installed at once, only its acknowledgement waits,
//! as MQTT allows PUBLISHes matching a subscription to precede its SUBACK (5.0 §3.8.4).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use canopy_proto::{Packet, SubAck, UserProperty};

use super::{Router, Timer};

/// User property of a 5.0 SUBSCRIBE asking for a SUBACK that waits for propagation. Its
/// value is the longest wait in milliseconds (at most [`MAX_WAIT`]); any other value
/// (empty, `true`) waits [`DEFAULT_WAIT`].
pub const WAIT_PROPERTY: &str = "canopy-wait-interest";

/// User property of the SUBACK answering a waiting SUBSCRIBE: `confirmed` or `unconfirmed`.
pub const RESULT_PROPERTY: &str = "canopy-interest";

/// The wait when the property gives no number of milliseconds.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(5);

/// The longest wait a client may ask for.
pub const MAX_WAIT: Duration = Duration::from_secs(60);

/// Most SUBACKs held at once; above, a waiting SUBSCRIBE is answered at once, unconfirmed.
const MAX_HELD: usize = 10_000;

/// The wait a SUBSCRIBE's user properties ask for, if any.
pub(super) fn requested_wait(props: &[UserProperty]) -> Option<Duration> {
    let (_, v) = props.iter().find(|(k, _)| k == WAIT_PROPERTY)?;
    Some(match v.trim().parse::<u64>() {
        Ok(ms) if ms > 0 => Duration::from_millis(ms).min(MAX_WAIT),
        _ => DEFAULT_WAIT,
    })
}

/// One SUBACK waiting.
#[derive(Debug)]
struct Held {
    session: usize,
    /// The connection that sent the SUBSCRIBE: a later one never gets this SUBACK.
    conn: u64,
    suback: SubAck,
    deadline: Instant,
    wait: Duration,
}

/// The SUBACKs held, by ticket.
#[derive(Debug, Default)]
pub(super) struct HeldSubAcks {
    held: HashMap<u64, Held>,
    next: u64,
}

impl Router {
    /// Holds `suback` for session `key` until the services confirm its interest has
    /// propagated, or `wait` has passed.
    pub(super) fn hold_suback(&mut self, now: Instant, key: usize, suback: SubAck, wait: Duration) {
        let Some(conn) = self
            .sessions
            .get(key)
            .and_then(|s| s.conn.as_ref())
            .map(|c| c.id)
        else {
            return;
        };
        let ticket = self.held_subacks.next;
        self.held_subacks.next += 1;
        let deadline = now + wait;
        self.held_subacks.held.insert(
            ticket,
            Held {
                session: key,
                conn,
                suback,
                deadline,
                wait,
            },
        );
        if self.held_subacks.held.len() > MAX_HELD {
            self.release_suback(ticket, false);
            return;
        }
        self.timers.insert((deadline, Timer::SubAck { ticket }));
        let Some(info) = self
            .sessions
            .get(key)
            .map(|s| super::hosting::client_info(s, None))
        else {
            return;
        };
        let mut taken = false;
        self.with_services(now, |s, host| {
            taken |= s.on_wait_interest(host, &info, ticket, deadline);
        });
        if !taken {
            self.release_suback(ticket, false);
        }
    }

    /// Sends the held SUBACK `ticket` (if its connection is still the session's current
    /// one), saying whether propagation was `confirmed`.
    pub(super) fn release_suback(&mut self, ticket: u64, confirmed: bool) {
        let Some(h) = self.held_subacks.held.remove(&ticket) else {
            return;
        };
        self.timers.remove(&(h.deadline, Timer::SubAck { ticket }));
        if !self.is_current(h.session, h.conn) {
            return;
        }
        let mut suback = h.suback;
        let p = &mut suback.properties;
        p.user_properties.push((
            RESULT_PROPERTY.to_owned(),
            if confirmed {
                "confirmed"
            } else {
                "unconfirmed"
            }
            .to_owned(),
        ));
        if !confirmed && p.reason_string.is_none() {
            p.reason_string = Some(format!(
                "interest not confirmed upstream within {} ms",
                h.wait.as_millis()
            ));
        }
        if let Some(s) = self.sessions.get(h.session) {
            s.send(Packet::SubAck(suback));
        }
    }
}
