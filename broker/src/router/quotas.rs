//! Per-client and broker-wide quotas on what clients keep in the broker: subscriptions per
//! client, and retained messages (count and bytes, per client and in total).
//!
//! Owns the limits (from `[limits]`) and the retained-message usage, kept up to date by the
//! router wherever a retained message is stored, replaced, cleared or expires. It decides;
//! it never answers a client (the router's SUBSCRIBE and PUBLISH paths do, with 0x97).
//! Retained messages the broker itself stores (services, and those loaded at start-up,
//! whose publisher is not recorded) count towards the totals only.

use std::collections::HashMap;
use std::sync::Arc;

use canopy_proto::{QoS, ReasonCode};

use crate::config::Limits;
use crate::message::Message;
use crate::metrics::Metrics;
use crate::outbox::Outgoing;

/// The quota limits in force.
#[derive(Debug, Clone, Copy)]
pub(super) struct QuotaLimits {
    pub subscriptions_per_client: usize,
    pub retained_messages: usize,
    pub retained_bytes: u64,
    pub retained_messages_per_client: usize,
    pub retained_bytes_per_client: u64,
}

impl QuotaLimits {
    pub(super) fn new(l: &Limits) -> QuotaLimits {
        QuotaLimits {
            subscriptions_per_client: l.max_subscriptions_per_client,
            retained_messages: l.max_retained_messages,
            retained_bytes: l.max_retained_bytes,
            retained_messages_per_client: l.max_retained_messages_per_client,
            retained_bytes_per_client: l.max_retained_bytes_per_client,
        }
    }
}

/// Count and bytes of retained messages.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Usage {
    pub count: usize,
    pub bytes: u64,
}

impl Usage {
    fn add(&mut self, bytes: u64) {
        self.count += 1;
        self.bytes = self.bytes.saturating_add(bytes);
    }

    fn sub(&mut self, bytes: u64) {
        self.count = self.count.saturating_sub(1);
        self.bytes = self.bytes.saturating_sub(bytes);
    }
}

/// Retained messages held, in total and per publishing client.
#[derive(Debug, Default)]
pub(super) struct RetainedUsage {
    total: Usage,
    per_client: HashMap<Arc<str>, Usage>,
}

/// Which quota a request would exceed (for the log and the 5.0 reason string).
pub(super) type Exceeded = &'static str;

impl RetainedUsage {
    /// A retained message of `bytes` by `owner` was stored.
    pub(super) fn stored(&mut self, owner: Option<&Arc<str>>, bytes: u64) {
        self.total.add(bytes);
        if let Some(o) = owner {
            self.per_client.entry(o.clone()).or_default().add(bytes);
        }
    }

    /// A retained message of `bytes` by `owner` was replaced, cleared or expired.
    pub(super) fn released(&mut self, owner: Option<&Arc<str>>, bytes: u64) {
        self.total.sub(bytes);
        if let Some(o) = owner
            && let Some(u) = self.per_client.get_mut(o)
        {
            u.sub(bytes);
            if u.count == 0 {
                self.per_client.remove(o);
            }
        }
    }

    /// Whether `owner` may store a retained message of `bytes`, replacing `old` (the
    /// current one of that topic: its owner and bytes) if any.
    pub(super) fn check(
        &self,
        limits: &QuotaLimits,
        owner: &Arc<str>,
        bytes: u64,
        old: Option<(Option<&Arc<str>>, u64)>,
    ) -> Result<(), Exceeded> {
        let mut total = self.total;
        let mut mine = self.per_client.get(owner).copied().unwrap_or_default();
        if let Some((old_owner, old_bytes)) = old {
            total.sub(old_bytes);
            if old_owner == Some(owner) {
                mine.sub(old_bytes);
            }
        }
        total.add(bytes);
        mine.add(bytes);
        if total.count > limits.retained_messages {
            return Err("retained messages: max_retained_messages reached");
        }
        if total.bytes > limits.retained_bytes {
            return Err("retained messages: max_retained_bytes reached");
        }
        if mine.count > limits.retained_messages_per_client {
            return Err("retained messages: max_retained_messages_per_client reached");
        }
        if mine.bytes > limits.retained_bytes_per_client {
            return Err("retained messages: max_retained_bytes_per_client reached");
        }
        Ok(())
    }

    /// Retained messages held by `owner`.
    #[cfg(test)]
    pub(super) fn of(&self, owner: &str) -> Usage {
        self.per_client.get(owner).copied().unwrap_or_default()
    }

    /// Retained messages held in total.
    #[cfg(test)]
    pub(super) fn total(&self) -> Usage {
        self.total
    }
}

impl super::Router {
    /// Whether `owner` may store `msg` as the retained message of its topic.
    pub(super) fn retained_quota(&self, owner: &Arc<str>, msg: &Message) -> Result<(), Exceeded> {
        let old = self
            .retained
            .get(&msg.topic)
            .map(|r| (r.owner.as_ref(), r.bytes()));
        let bytes = (msg.topic.len() + msg.payload.len()) as u64;
        self.retained_usage.check(&self.quotas, owner, bytes, old)
    }

    /// Whether session `key` may add the subscription `filter` (replacing one of its own
    /// is always allowed).
    pub(super) fn subscription_quota(&self, key: usize, filter: &str) -> Result<(), Exceeded> {
        match self.sessions.get(key) {
            Some(s)
                if s.subscriptions.len() >= self.quotas.subscriptions_per_client
                    && !s.subscriptions.contains_key(filter) =>
            {
                Err("subscriptions: max_subscriptions_per_client reached")
            }
            _ => Ok(()),
        }
    }

    /// Refuses a PUBLISH over a quota: 5.0 PUBACK/PUBREC 0x97; a 3.1.1 QoS 1/2 publisher,
    /// whose acknowledgement cannot say "refused", is disconnected rather than told the
    /// message was accepted; QoS 0 is dropped. Counted in `quota_exceeded`.
    pub(super) fn refuse_over_quota(
        &mut self,
        key: usize,
        conn: u64,
        qos: QoS,
        pkid: u16,
        v5: bool,
        why: Exceeded,
    ) {
        Metrics::add(&self.metrics.quota_exceeded, 1);
        let Some(s) = self.sessions.get(key) else {
            return;
        };
        tracing::info!(client_id = %s.client_id, why, "publish refused: quota exceeded");
        if v5 || qos == QoS::AtMostOnce {
            self.ack(key, conn, qos, pkid, v5, ReasonCode::QUOTA_EXCEEDED);
        } else if let Some(c) = &s.conn {
            c.outbox.push(Outgoing::Disconnect(
                ReasonCode::QUOTA_EXCEEDED,
                Some(why.to_string()),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> QuotaLimits {
        QuotaLimits {
            subscriptions_per_client: 10,
            retained_messages: 3,
            retained_bytes: 1000,
            retained_messages_per_client: 2,
            retained_bytes_per_client: 500,
        }
    }

    #[test]
    fn per_client_and_total_counts_and_bytes_are_enforced() {
        let l = limits();
        let (a, b, c): (Arc<str>, Arc<str>, Arc<str>) = ("a".into(), "b".into(), "c".into());
        let mut u = RetainedUsage::default();
        u.stored(Some(&a), 100);
        u.stored(Some(&a), 100);
        assert!(u.check(&l, &a, 1, None).is_err(), "a has 2 already");
        assert!(
            u.check(&l, &a, 100, Some((Some(&a), 100))).is_ok(),
            "replacing one's own retained message adds nothing"
        );
        assert!(u.check(&l, &b, 501, None).is_err(), "over bytes per client");
        u.stored(Some(&b), 100);
        assert!(u.check(&l, &c, 1, None).is_err(), "3 in total");
        assert!(
            u.check(&l, &c, 1, Some((Some(&b), 100))).is_ok(),
            "c replaces b's"
        );
        u.released(Some(&a), 100);
        assert_eq!(
            u.of("a"),
            Usage {
                count: 1,
                bytes: 100
            }
        );
        assert_eq!(
            u.total(),
            Usage {
                count: 2,
                bytes: 200
            }
        );
        u.released(Some(&a), 100);
        assert!(u.per_client.is_empty() || !u.per_client.contains_key("a"));
    }

    #[test]
    fn broker_messages_count_towards_the_totals_only() {
        let l = limits();
        let a: Arc<str> = "a".into();
        let mut u = RetainedUsage::default();
        u.stored(None, 900);
        assert_eq!(u.of("a"), Usage::default());
        assert!(u.check(&l, &a, 200, None).is_err(), "1100 bytes in total");
        assert!(u.check(&l, &a, 50, None).is_ok());
    }
}
