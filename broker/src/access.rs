//! The access seam: every decision about who may publish, subscribe, leave a will or
//! receive a delivery, and where.
//!
//! Owns the rules of the reserved `$` prefixes (`$SYS`, `$status`, `$config`, `$ctl`,
//! `$presence`, `$cluster`, `$resource`, `$interest`, `$dashboard`), the roles that configuration grants (admins,
//! embedded bridges), and — through [`Access::set_acl`] — the user's ACL file, which is
//! consulted only after the reserved-prefix rules allowed a request (as Mosquitto checks
//! `$` rules before its ACL). Privilege comes from configuration and identity, never
//! from what a packet carries. This module decides; it never routes, counts or logs:
//! callers answer with the reason code and count the refusal.

use std::sync::Arc;

use canopy_proto::{SharedFilter, TopicFilter};

use crate::config::Config;

/// What a client asks to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request<'a> {
    /// PUBLISH to a topic. `forwarded`: the message came through a metabroker (it
    /// carries the hop marker) and is one of the hierarchy's documents.
    Publish {
        /// Topic name.
        topic: &'a str,
        /// Forwarded by a metabroker from another broker.
        forwarded: bool,
    },
    /// The will message of a CONNECT, when it is about to be published.
    Will {
        /// Topic name.
        topic: &'a str,
    },
    /// SUBSCRIBE (or a `$ctl/subscribe` registration) to a filter, `$share/` included.
    Subscribe {
        /// Topic filter as sent.
        filter: &'a str,
    },
    /// Delivery of a message on `topic` to a subscriber.
    Deliver {
        /// Topic name.
        topic: &'a str,
    },
}

/// Who asks.
#[derive(Debug, Clone, Copy)]
pub struct Who<'a> {
    /// The client identifier.
    pub client_id: &'a str,
    /// The authenticated user name, if any.
    pub user: Option<&'a str>,
    /// Whether this is the broker's own embedded bridge, proved in-process.
    pub bridge: bool,
}

/// Why a request is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Denied(pub &'static str);

/// A user-supplied rule set consulted after the reserved-prefix rules (the ACL file).
pub trait Acl: Send + Sync + std::fmt::Debug {
    /// Whether `who` may do `req`. Called only for requests the broker's own rules allow.
    fn allows(&self, who: &Who<'_>, req: &Request<'_>) -> bool;
}

/// The access rules in force.
#[derive(Debug, Clone, Default)]
pub struct Access {
    /// `[config] admins`: proved user names, and — on a broker without a password file,
    /// where no user name is proved — client ids.
    admins: Vec<String>,
    /// Whether a password file proves user names (then admins and bridges are users).
    users_proved: bool,
    /// Embedded bridges' local client ids and the state prefix each may write
    /// (`<state_prefix>/<name>/`), even under `$SYS`; only for the connection proved
    /// in-process ([`Who::bridge`]).
    bridge_writers: Vec<(String, String)>,
    /// With a password file: the users whose hop-marked messages are forwarded hierarchy
    /// documents. `None` without one: every hop-marked message is (loopback brokers).
    bridge_users: Option<Vec<String>>,
    /// The ACL file, when configured.
    acl: Option<Arc<dyn Acl>>,
    /// Whether the broker's presence agent runs (`[presence] enabled`): it writes the
    /// aggregates; without it a user's own device-side agent may.
    presence_agent: bool,
}

/// Prefix of status documents.
const STATUS: &str = "$status";
/// Prefix of configuration documents.
const CONFIG: &str = "$config";
/// Prefix of presence documents.
const PRESENCE: &str = "$presence";
/// Prefix of the interest document read by bridges (`services::interest`).
const INTEREST: &str = "$interest";

impl Access {
    /// The rules `config` grants.
    pub fn new(config: &Config) -> Access {
        Access {
            admins: config.config_docs.admins.clone(),
            users_proved: config.auth.password_file.is_some(),
            bridge_writers: config
                .bridge
                .iter()
                .map(|b| {
                    let id = b.local_client_id();
                    (id, format!("{}/{}/", b.state_prefix, b.name))
                })
                .collect(),
            bridge_users: config
                .auth
                .password_file
                .is_some()
                .then(|| config.auth.bridge_users.clone()),
            acl: None,
            presence_agent: config.presence.enabled,
        }
    }

    /// Whether `who` may forward hierarchy documents: a configured bridge user once a
    /// password file authenticates users; anyone on a broker without one. A hop marker
    /// is never a privilege by itself.
    fn trusted_bridge(&self, who: &Who<'_>) -> bool {
        if who.bridge {
            return true;
        }
        match &self.bridge_users {
            None => true,
            Some(users) => who.user.is_some_and(|u| users.iter().any(|b| b == u)),
        }
    }

    /// Installs (or removes) the ACL consulted after the broker's own rules.
    pub fn set_acl(&mut self, acl: Option<Arc<dyn Acl>>) {
        self.acl = acl;
    }

    /// Whether deliveries need a check at all: only an ACL file restricts reading
    /// topics a subscription matched (the broker's own read rules apply at SUBSCRIBE).
    pub fn checks_deliveries(&self) -> bool {
        self.acl.is_some()
    }

    /// Whether `who` is an admin: its proved user name is listed in `[config] admins`, or,
    /// on a broker without a password file (no user name is proved by a password there),
    /// its client id is.
    pub fn is_admin(&self, who: &Who<'_>) -> bool {
        let listed = |name: &str| self.admins.iter().any(|a| a == name);
        who.user.is_some_and(listed) || (!self.users_proved && listed(who.client_id))
    }

    /// Whether `who` reads every configuration document: an admin, or — with a password
    /// file — a bridge, which carries them down the hierarchy.
    fn reads_all_config(&self, who: &Who<'_>) -> bool {
        self.is_admin(who) || (self.users_proved && self.is_bridge(who))
    }

    /// Whether `who` is the embedded bridge whose local client id is its own.
    fn embedded_bridge(&self, who: &Who<'_>) -> bool {
        who.bridge
            && self
                .bridge_writers
                .iter()
                .any(|(id, _)| id == who.client_id)
    }

    /// Whether `who` may read `$interest`: an admin, an embedded `[[bridge]]`'s local
    /// client, or a standalone metabroker's default `<name>-local` client — which, once a
    /// password file authenticates users, must also log in as a `bridge_users` user.
    fn reads_interest(&self, who: &Who<'_>) -> bool {
        self.is_admin(who)
            || self.embedded_bridge(who)
            || (canopy_model::bridge::name_of_default_local(who.client_id).is_some()
                && self.trusted_bridge(who))
    }

    /// Decides `req` for `who`. `online_here` tells whether a client is connected to
    /// this broker (a forwarded status document never overwrites local truth).
    pub fn check(
        &self,
        who: &Who<'_>,
        req: &Request<'_>,
        online_here: &dyn Fn(&str) -> bool,
    ) -> Result<(), Denied> {
        match *req {
            Request::Publish { topic, forwarded } if forwarded && self.trusted_bridge(who) => {
                forwarded_publish(topic, online_here)?
            }
            Request::Publish { topic, .. } | Request::Will { topic } => self.publish(who, topic)?,
            Request::Subscribe { filter } => self.subscribe(who, filter)?,
            Request::Deliver { .. } => {}
        }
        // An embedded bridge carries what its configured routes say: like Mosquitto's
        // bridges, it is not subject to the ACL file.
        if self.embedded_bridge(who) {
            return Ok(());
        }
        match &self.acl {
            Some(acl) if !acl.allows(who, req) => Err(Denied("not allowed by the ACL file")),
            _ => Ok(()),
        }
    }

    /// The broker's own rules for a client's PUBLISH or will.
    fn publish(&self, who: &Who<'_>, topic: &str) -> Result<(), Denied> {
        let client_id = who.client_id;
        if who.bridge
            && self
                .bridge_writers
                .iter()
                .any(|(id, prefix)| id == client_id && topic.starts_with(prefix.as_str()))
        {
            return Ok(()); // an embedded bridge's own state and counters
        }
        // A metabroker with its default local client id `<name>-local` writes its state
        // under `$SYS/metabroker/<name>/` (docs/metabroker.md) — with a password file only
        // when it logged in as one of `[auth] bridge_users`.
        if let (Some(rest), Some(name)) = (
            topic.strip_prefix("$SYS/metabroker/"),
            canopy_model::bridge::name_of_default_local(client_id),
        ) && rest.strip_prefix(name).is_some_and(|r| r.starts_with('/'))
            && self.trusted_bridge(who)
        {
            return Ok(());
        }
        match first_level(topic) {
            "$SYS" => Err(Denied("$SYS topics are written by the broker only")),
            STATUS => Err(Denied("$status topics are written by the broker only")),
            // A metabroker reports the interest version it applied upstream.
            INTEREST if self.reads_interest(who) && applied_report(topic) => Ok(()),
            INTEREST => Err(Denied("$interest topics are written by the broker only")),
            CONFIG if !self.is_admin(who) => {
                Err(Denied("only admins write configuration documents"))
            }
            "$ctl" if !matches!(topic, "$ctl/subscribe" | "$ctl/unsubscribe") => Err(Denied(
                "only $ctl/subscribe and $ctl/unsubscribe are written by clients",
            )),
            "$resource" if !resource_request(topic) => Err(Denied(
                "clients write only $resource/<name>/acquire, reserve and release",
            )),
            PRESENCE => self.presence_publish(who, topic),
            "$dashboard" if topic != crate::services::client_pages::REQUEST_TOPIC => Err(Denied(
                "clients write only $dashboard/clients (a page request)",
            )),
            _ => Ok(()),
        }
    }

    /// `$presence` writes: a user's own connections write its devices, watcher list and
    /// decisions on requests; the aggregate and the agent claim only when no broker agent
    /// runs. With anonymous access there is no identity: the `<user>` level is trusted.
    fn presence_publish(&self, who: &Who<'_>, topic: &str) -> Result<(), Denied> {
        let levels: Vec<&str> = topic.split('/').collect();
        let (user, kind_ok) = match levels.as_slice() {
            [PRESENCE, user, "devices", d] => (*user, !d.is_empty()),
            [PRESENCE, user, "watchers"] => (*user, true),
            [PRESENCE, user, "requests", w] => (*user, !w.is_empty()),
            [PRESENCE, user] | [PRESENCE, user, "agent"] => (*user, !self.presence_agent),
            _ => ("", false),
        };
        if !kind_ok || user.is_empty() {
            return Err(Denied(
                "clients write $presence/<user>/devices/<device>, /watchers and /requests/<watcher>; the presence agent writes $presence/<user>",
            ));
        }
        if who.user.is_some_and(|u| u != user) {
            return Err(Denied("a user writes only its own $presence/<user>/..."));
        }
        Ok(())
    }

    /// Whether `who` is a bridge's local client, which carries hierarchy topics: an
    /// embedded `[[bridge]]`; with a password file, a configured bridge user; without one,
    /// a metabroker with its default local id `<name>-local`.
    fn is_bridge(&self, who: &Who<'_>) -> bool {
        self.embedded_bridge(who)
            || match &self.bridge_users {
                None => canopy_model::bridge::name_of_default_local(who.client_id).is_some(),
                Some(users) => who.user.is_some_and(|u| users.iter().any(|b| b == u)),
            }
    }

    /// The broker's own rules for a SUBSCRIBE filter (the filter inside `$share/`).
    fn subscribe(&self, who: &Who<'_>, filter: &str) -> Result<(), Denied> {
        let client_id = who.client_id;
        let inner = TopicFilter::new(filter)
            .ok()
            .and_then(|f| SharedFilter::parse(&f).ok().flatten())
            .map(|s| s.filter.to_string())
            .unwrap_or_else(|| filter.to_string());
        // Filters starting with a wildcard never match `$` topics [MQTT-4.7.2-1], so
        // only filters naming a reserved first level need a rule.
        match first_level(&inner) {
            // A bridge carries configuration documents down: with a password file, a
            // `bridge_users` user reads them all, as an admin does.
            CONFIG if !self.reads_all_config(who) => {
                if inner.strip_prefix("$config/") == Some(client_id) {
                    Ok(())
                } else {
                    Err(Denied(
                        "configuration documents are readable by their own client and admins only",
                    ))
                }
            }
            INTEREST if !self.reads_interest(who) => Err(Denied(
                "$interest is read by bridges (embedded, or <name>-local as a bridge user) and admins only",
            )),
            "$ctl" => match inner.strip_prefix("$ctl/errors/") {
                Some(id) if id == client_id => Ok(()),
                _ => Err(Denied(
                    "a client reads only its own $ctl/errors/<client-id>",
                )),
            },
            "$resource" => {
                let levels: Vec<&str> = inner.split('/').collect();
                match levels.as_slice() {
                    // `$resource/+` matches summaries only: names are one level.
                    ["$resource", name] if *name != "#" => Ok(()),
                    ["$resource", name, "client", id] if !is_wild(name) && *id == client_id => {
                        Ok(())
                    }
                    _ => Err(Denied(
                        "a client reads $resource/<name> (or $resource/+) and its own $resource/<name>/client/<client-id>",
                    )),
                }
            }
            // Pages are delivered to the requester's session only; a 3.1.1 client, which
            // cannot name a response topic, subscribes to the default reply topic.
            "$dashboard" if inner != crate::services::client_pages::DEFAULT_REPLY_TOPIC => Err(
                Denied("a client reads only $dashboard/clients/reply (its own pages)"),
            ),
            PRESENCE if self.is_admin(who) || self.is_bridge(who) => Ok(()),
            PRESENCE => presence_subscribe(who, &inner),
            _ => Ok(()),
        }
    }
}

/// `$presence` reads: anyone subscribes to one user's aggregate `$presence/<user>` (the
/// presence agent gates watchers); deeper levels only the user itself (anonymous: the
/// `<user>` level is trusted), and a watcher its own `requests/<watcher>`. No wildcard in
/// the user level, which would read every user.
fn presence_subscribe(who: &Who<'_>, filter: &str) -> Result<(), Denied> {
    let levels: Vec<&str> = filter.split('/').collect();
    let watcher = who.user.unwrap_or(who.client_id);
    let own = |user: &str| who.user.is_none_or(|u| u == user);
    match levels.as_slice() {
        [PRESENCE, user] if !is_wild(user) && !user.is_empty() => Ok(()),
        [PRESENCE, user, ..] if !is_wild(user) && !user.is_empty() && own(user) => Ok(()),
        [PRESENCE, user, "requests", w] if !is_wild(user) && *w == watcher => Ok(()),
        _ => Err(Denied(
            "a client reads $presence/<user> of one user, its own $presence/<user>/... and its own requests",
        )),
    }
}

/// Rules for a PUBLISH forwarded by a metabroker: the hierarchy topics (`$status`,
/// `$presence`, `$cluster` up, `$config` down) cross brokers this way; `$SYS` stays
/// each broker's own, and a status of a client connected here is kept here.
fn forwarded_publish(topic: &str, online_here: &dyn Fn(&str) -> bool) -> Result<(), Denied> {
    match first_level(topic) {
        "$SYS" => return Err(Denied("$SYS topics are written by the broker only")),
        INTEREST => return Err(Denied("$interest topics are written by the broker only")),
        _ => {}
    }
    if let Some(id) = topic.strip_prefix("$status/")
        && online_here(id)
    {
        return Err(Denied(
            "the client is connected to this broker; its status is kept here",
        ));
    }
    Ok(())
}

/// `$interest/applied/<bridge name>`: one level, no wildcard.
fn applied_report(topic: &str) -> bool {
    topic
        .strip_prefix("$interest/applied/")
        .is_some_and(|n| !n.is_empty() && !n.contains('/'))
}

/// `$resource/<name>/acquire|reserve|release`.
fn resource_request(topic: &str) -> bool {
    let mut levels = topic.split('/');
    matches!(
        (levels.next(), levels.next(), levels.next(), levels.next()),
        (Some("$resource"), Some(name), Some("acquire" | "reserve" | "release"), None)
            if !name.is_empty()
    )
}

fn is_wild(level: &str) -> bool {
    level == "+" || level == "#"
}

/// The first level of a topic or filter.
fn first_level(topic: &str) -> &str {
    topic.split('/').next().unwrap_or(topic)
}

#[cfg(test)]
#[path = "access_tests.rs"]
mod tests;
