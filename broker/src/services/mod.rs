//! Services modelled as topics (SPEC §5): device status, configuration documents, the
//! map carousel, `$SYS`, the DNS listener, presence, resources and the cluster.
//!
//! Every service the router drives implements [`Service`]: it receives events (a
//! PUBLISH to a topic it owns, a subscription, a connection or session ending, its own
//! timeouts) together with a [`Host`], the narrow view of the router a service may use.
//! A service owns its own state, publishes only through [`Host::publish`] (the same
//! path as a client's PUBLISH: retained store, routing, activation triggers, other
//! services), and never touches sockets, the store or another service's state.
//!
//! Adding a service is a new file here plus one line in the router's registration
//! list (`router::services::registered`).

pub mod carousel;
pub mod client_pages;
pub mod cluster;
pub mod config_docs;
pub mod dns;
pub mod interest;
pub mod presence;
pub mod resources;
pub mod status;
pub mod sys;
#[cfg(test)]
pub mod testing;

use std::sync::Arc;
use std::time::Instant;

use canopy_proto::{Protocol, QoS, TopicFilter, TopicName};

use crate::message::Message;

/// Who a client is, as a service sees it. Privilege never comes from these fields'
/// spelling: access decisions are the access seam's (`crate::access`).
#[derive(Debug, Clone)]
pub struct ClientInfo {
    /// The client identifier.
    pub client_id: Arc<str>,
    /// The authenticated user name, if the client logged in with one.
    pub user: Option<Arc<str>>,
    /// Whether the session outlives its connection (clean session 0 / expiry > 0).
    pub persistent: bool,
    /// Whether a connection is open now.
    pub online: bool,
    /// Protocol level of the current (or last) connection.
    pub protocol: Protocol,
    /// Whether the broker assigned the client identifier (the client sent none): such a
    /// client cannot be named by anyone else.
    pub assigned: bool,
}

/// What the router does with a PUBLISH after a service has seen it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Route it to subscribers as usual (and keep it if retained).
    Route,
    /// The service consumed it (a request to the service): not routed, not retained.
    Consume,
}

/// The router as a service sees it. Calls made from inside a hook take effect in
/// order after the hook returns, so a service never re-enters itself.
pub trait Host {
    /// The time of the event being handled (the router's clock, never the wall clock).
    fn now(&self) -> Instant;
    /// Publishes `msg` as the broker: retained (and stored) when `msg.retain`, routed
    /// to every matching subscription, seen by activation triggers and other services.
    fn publish(&mut self, msg: Message);
    /// As [`Host::publish`], but a retained message is kept in memory only, never
    /// written to the store (figures that are recomputed anyway, such as `$SYS`).
    fn publish_transient(&mut self, msg: Message);
    /// As [`Host::publish`] for a retained document the calling service keeps itself
    /// (see [`KeptDocs`]): stored, routed, seen by triggers and services, but not held in
    /// the router's memory, where it replaces any retained message of its topic. An empty
    /// payload deletes the stored copy.
    fn publish_kept(&mut self, msg: Message);
    /// Deletes the stored copy of a kept document that expired; nothing is routed.
    fn drop_kept(&mut self, topic: TopicName);
    /// Takes the retained message at `topic` out of the router's memory (its stored copy
    /// stays), for a service that keeps it from now on (see [`KeptDocs`]).
    fn take_retained(&mut self, topic: &TopicName) -> Option<Arc<Message>>;
    /// The retained message at `topic`, if any (expired ones are not returned).
    fn retained(&self, topic: &TopicName) -> Option<Arc<Message>>;
    /// Calls `f` for every retained message matching `filter`.
    fn for_each_retained(&self, filter: &TopicFilter, f: &mut dyn FnMut(&TopicName, &Arc<Message>));
    /// The client with this identifier, if a session exists for it.
    fn client(&self, client_id: &str) -> Option<ClientInfo>;
    /// Offers `msg` to one session only (not through subscriptions), at `qos`, with
    /// the RETAIN flag `retain`. Returns false if no such session exists.
    fn deliver(&mut self, client_id: &str, msg: Arc<Message>, qos: QoS, retain: bool) -> bool;
    /// Routes `msg` to the current subscribers only (no retained store, no triggers,
    /// no services); returns the number of deliveries.
    fn route(&mut self, msg: &Arc<Message>) -> usize;
    /// The QoS granted to `client_id`'s subscription to exactly `filter`, if it has one.
    fn subscription_qos(&self, client_id: &str, filter: &str) -> Option<QoS>;
    /// Switches `client_id`'s subscription to exactly `filter` on or off, if it is one a
    /// service gated (see [`Service::gate_subscription`]); switching on replays the retained
    /// messages it matches. Returns false if there is no such gated subscription.
    fn set_subscription_active(&mut self, client_id: &str, filter: &str, active: bool) -> bool;

    /// `client_id`'s subscription filter `filter` as its session holds it, for a service
    /// that keeps one per subscription to share rather than copy (`None`: no such
    /// subscription, or a host that keeps none).
    fn subscription_filter(&self, _client_id: &str, _filter: &str) -> Option<Arc<str>> {
        None
    }

    /// Whether `client_id`'s subscription to exactly `filter` is active (`None`: no such
    /// subscription). Only event-activated subscriptions are ever inactive.
    fn subscription_active(&self, client_id: &str, filter: &str) -> Option<bool> {
        self.subscription_qos(client_id, filter).map(|_| true)
    }
    /// Figures only the router knows (sessions, subscriptions, retained messages).
    fn stats(&self) -> sys::RouterStats;
    /// Sends `client_id`'s open connection to another node: DISCONNECT 0x9C (Use another
    /// server) with `reference` as Server Reference for 5.0, a plain close for older
    /// protocols. The session stays as its expiry says. Returns false when the client
    /// has no open connection here.
    fn move_client(&mut self, client_id: &str, reference: &str) -> bool;

    /// Sends the SUBACK held as `ticket` (see [`Service::on_wait_interest`]), saying
    /// whether propagation was `confirmed`. Nothing happens if it already went out.
    fn release_suback(&mut self, _ticket: u64, _confirmed: bool) {}

    /// Calls `f(client id, filter, active)` for every subscription of every session (those
    /// restored from the store included).
    fn for_each_subscription(&self, _f: &mut dyn FnMut(&str, &str, bool)) {}

    /// Whether `client_id` may receive a message on `topic`: the access seam's delivery
    /// rule (the ACL file, when there is one), for a service that answers with documents
    /// it reads on a client's behalf. False for an unknown client, and by default.
    fn may_read(&self, _client_id: &str, _topic: &str) -> bool {
        false
    }
}

/// Retained documents a service keeps itself, as compact records rendered into messages
/// when read, instead of as messages in the router's retained store (a `$status`
/// document costs a tenth of a retained message this way). The router reads them through
/// this view wherever it reads retained messages (replay to a new subscription,
/// [`Host::retained`], [`Host::for_each_retained`], `$SYS` counts), also while the services
/// run their hooks, so it is shared rather than a hook. The service writes them with
/// [`Host::publish_kept`], which also stores them, so they survive a restart.
pub trait KeptDocs: Send + Sync + std::fmt::Debug {
    /// The topic prefix every kept document is under (e.g. `"$status/"`).
    fn prefix(&self) -> &'static str;
    /// The document at `topic`, rendered, unless it expired at `now`.
    fn get(&self, now: Instant, topic: &TopicName) -> Option<Arc<Message>>;
    /// Calls `f` for every document `filter` matches that has not expired at `now`.
    fn for_each_match(
        &self,
        now: Instant,
        filter: &TopicFilter,
        f: &mut dyn FnMut(&TopicName, &Arc<Message>),
    );
    /// How many documents are kept.
    fn count(&self) -> usize;
}

/// One service module. Every hook has a default that does nothing, so a service
/// implements only what it reacts to.
pub trait Service: Send {
    /// A short name for logs and `$SYS`.
    fn name(&self) -> &'static str;

    /// The retained documents this service keeps itself, if it keeps any (asked once,
    /// when the router starts).
    fn kept(&self) -> Option<Arc<dyn KeptDocs>> {
        None
    }

    /// Topic prefixes whose PUBLISHes this service wants to see in
    /// [`Service::on_publish`] (e.g. `"$resource/"`). Only these are passed to it.
    fn topics(&self) -> &[&'static str] {
        &[]
    }

    /// The router restored its state from the store (retained messages included): a
    /// service that keeps its state as retained documents reads it back here.
    fn on_start(&mut self, _host: &mut dyn Host) {}

    /// A PUBLISH to one of [`Service::topics`] that the access seam allowed, from
    /// `from` (`None` when the broker or another service published it).
    fn on_publish(
        &mut self,
        _host: &mut dyn Host,
        _from: Option<&ClientInfo>,
        _msg: &Arc<Message>,
    ) -> Disposition {
        Disposition::Route
    }

    /// A session asks to subscribe to `filter` (the access seam allowed it). `None`: not
    /// this service's concern. `Some(active)`: the service gates the subscription — it is
    /// installed switchable by [`Host::set_subscription_active`] only, on when `active`,
    /// otherwise pending (no retained replay, and a 5.0 SUBACK carries the user property
    /// `pending` = `<filter>`). Event-activation properties the client sent are ignored.
    fn gate_subscription(
        &mut self,
        _host: &mut dyn Host,
        _client: &ClientInfo,
        _filter: &str,
    ) -> Option<bool> {
        None
    }

    /// A session's subscription to `filter` was granted at `qos` (active or not).
    fn on_subscribe(
        &mut self,
        _host: &mut dyn Host,
        _client: &ClientInfo,
        _filter: &str,
        _qos: QoS,
    ) {
    }

    /// A session's subscription to `filter` was removed.
    fn on_unsubscribe(&mut self, _host: &mut dyn Host, _client: &ClientInfo, _filter: &str) {}

    /// An event-activated subscription of a session was switched on (`active`) or off.
    fn on_activation(
        &mut self,
        _host: &mut dyn Host,
        _client: &ClientInfo,
        _filter: &str,
        _active: bool,
    ) {
    }

    /// A connection was accepted (`session_present`: an existing session resumed).
    fn on_connect(&mut self, _host: &mut dyn Host, _client: &ClientInfo, _session_present: bool) {}

    /// The broker is stopping: what the service publishes now reaches connected
    /// subscribers before their DISCONNECT.
    fn on_shutdown(&mut self, _host: &mut dyn Host) {}

    /// A connection ended; `reason` is the status reason (`disconnected`,
    /// `connection lost`, `keepalive timeout`, `protocol error`, `shutdown`, …).
    /// The session may live on if it is persistent.
    fn on_disconnect(&mut self, _host: &mut dyn Host, _client: &ClientInfo, _reason: &str) {}

    /// A session ended for good (clean session closed, expiry, take-over with clean
    /// start).
    fn on_session_end(&mut self, _host: &mut dyn Host, _client_id: &str) {}

    /// A SUBSCRIBE of `client` asked for a SUBACK that waits for interest propagation
    /// (docs/interest.md); its subscriptions were installed and seen by
    /// [`Service::on_subscribe`]. A service that can tell when propagation is done returns
    /// true and later calls [`Host::release_suback`] with `ticket`; the router sends the
    /// SUBACK unconfirmed at `deadline` anyway, or at once if no service takes it.
    fn on_wait_interest(
        &mut self,
        _host: &mut dyn Host,
        _client: &ClientInfo,
        _ticket: u64,
        _deadline: Instant,
    ) -> bool {
        false
    }

    /// The earliest instant at which [`Service::handle_timeout`] must run, if any.
    fn poll_timeout(&self) -> Option<Instant> {
        None
    }

    /// Called at or after [`Service::poll_timeout`]'s instant.
    fn handle_timeout(&mut self, _host: &mut dyn Host) {}
}
