//! Event-activated subscriptions: registration (5.0 SUBSCRIBE user properties
//! and the 3.1.1 `$ctl/subscribe` document), the trigger index, and switching
//! subscriptions on and off.
//!
//! An inactive subscription is absent from the matching trie, so it costs nothing at
//! publish time; its `activate-on` / `deactivate-on` filters live in a trie of their own
//! so that finding the subscriptions an event switches costs one walk. A message is
//! routed with the states as they were before it arrived; the switches it causes apply
//! to the messages after it. So the activating message itself is not delivered live to
//! the subscription it activates (a retained one arrives through the replay), and a
//! deactivating message that matches the filter still is.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use canopy_proto::{QoS, TopicFilter, TopicName, UserProperty};
use serde::Deserialize;

use super::hosting::Keep;
use super::session::Activation;
use super::{Router, Subscriber, Trigger};
use crate::store::ActivationRecord;

/// Topic a 3.1.1 (or any) client publishes a registration document to.
pub const CTL_SUBSCRIBE: &str = "$ctl/subscribe";
/// Topic that removes a registration: `{"filter": ...}`.
pub const CTL_UNSUBSCRIBE: &str = "$ctl/unsubscribe";
/// Prefix of the per-client error topic: `$ctl/errors/<client-id>`.
pub const CTL_ERRORS: &str = "$ctl/errors/";

/// Why a registration was refused; becomes a SUBACK reason string (5.0) or a message on
/// `$ctl/errors/<client-id>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistrationError {
    /// Whether the problem is a filter (SUBACK 0x8F) rather than a value (0x83).
    pub bad_filter: bool,
    /// What is wrong, for people.
    pub message: String,
}

impl RegistrationError {
    fn filter(message: String) -> Self {
        RegistrationError {
            bad_filter: true,
            message,
        }
    }
    fn value(message: String) -> Self {
        RegistrationError {
            bad_filter: false,
            message,
        }
    }
}

/// Builds an activation from its four parameters; `None` when neither filter is given
/// (an ordinary subscription).
fn build(
    activate_on: Option<&str>,
    deactivate_on: Option<&str>,
    initial: Option<&str>,
    replay: Option<&str>,
) -> Result<Option<Activation>, RegistrationError> {
    let parse = |name: &str, f: Option<&str>| -> Result<Option<TopicFilter>, RegistrationError> {
        f.map(|f| {
            TopicFilter::new(f).map_err(|e| RegistrationError::filter(format!("{name}: {e}")))
        })
        .transpose()
    };
    let activate_on = parse("activate-on", activate_on)?;
    let deactivate_on = parse("deactivate-on", deactivate_on)?;
    if activate_on.is_none() && deactivate_on.is_none() {
        if initial.is_some() || replay.is_some() {
            return Err(RegistrationError::value(
                "initial/replay given without activate-on or deactivate-on".into(),
            ));
        }
        return Ok(None);
    }
    let active = match initial {
        None => activate_on.is_none(),
        Some("active") => true,
        Some("inactive") => false,
        Some(other) => {
            return Err(RegistrationError::value(format!(
                "initial must be \"active\" or \"inactive\", not {other:?}"
            )));
        }
    };
    let replay_retained = match replay {
        None | Some("retained") => true,
        Some("none") => false,
        Some(other) => {
            return Err(RegistrationError::value(format!(
                "replay must be \"retained\" or \"none\", not {other:?}"
            )));
        }
    };
    Ok(Some(Activation {
        activate_on,
        deactivate_on,
        replay_retained,
        active,
    }))
}

/// Reads an activation from the user properties of a 5.0 SUBSCRIBE (`activate-on`,
/// `deactivate-on`, `initial`, `replay`); other user properties are ignored.
pub fn from_user_properties(
    props: &[UserProperty],
) -> Result<Option<Activation>, RegistrationError> {
    let mut found: [Option<&str>; 4] = [None; 4];
    for (k, v) in props {
        let slot = match k.as_str() {
            "activate-on" => 0,
            "deactivate-on" => 1,
            "initial" => 2,
            "replay" => 3,
            _ => continue,
        };
        if found[slot].replace(v.as_str()).is_some() {
            return Err(RegistrationError::value(format!(
                "user property {k:?} given twice"
            )));
        }
    }
    build(found[0], found[1], found[2], found[3])
}

/// The `$ctl/subscribe` document.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CtlSubscribe {
    /// The session the registration is for; default the publisher's own. Lets a tool that
    /// connects only to publish (`mosquitto_pub`) register for a subscriber.
    pub client_id: Option<String>,
    /// Topic filter to subscribe to.
    pub filter: String,
    /// Maximum QoS (default 0).
    #[serde(default)]
    pub qos: u8,
    /// Activation filter.
    pub activate_on: Option<String>,
    /// Deactivation filter.
    pub deactivate_on: Option<String>,
    /// `active` or `inactive`.
    pub initial: Option<String>,
    /// `retained` or `none`.
    pub replay: Option<String>,
}

/// The `$ctl/unsubscribe` document.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CtlUnsubscribe {
    /// The session to remove it from; default the publisher's own.
    pub client_id: Option<String>,
    /// Topic filter to remove.
    pub filter: String,
}

/// A parsed `$ctl/subscribe` document.
#[derive(Debug)]
pub struct CtlRegistration {
    /// The filter.
    pub filter: TopicFilter,
    /// Maximum QoS.
    pub qos: QoS,
    /// The activation (always present: a registration without one is refused, a plain
    /// SUBSCRIBE does that job).
    pub activation: Option<Activation>,
}

/// Parses a `$ctl/subscribe` payload.
pub fn parse_ctl_subscribe(payload: &[u8]) -> Result<CtlRegistration, RegistrationError> {
    let doc: CtlSubscribe = serde_json::from_slice(payload)
        .map_err(|e| RegistrationError::value(format!("invalid JSON document: {e}")))?;
    checked_client_id(doc.client_id)?;
    let filter = TopicFilter::new(&doc.filter)
        .map_err(|e| RegistrationError::filter(format!("filter: {e}")))?;
    let qos = QoS::from_u8(doc.qos).ok_or_else(|| {
        RegistrationError::value(format!("qos must be 0, 1 or 2, not {}", doc.qos))
    })?;
    let activation = build(
        doc.activate_on.as_deref(),
        doc.deactivate_on.as_deref(),
        doc.initial.as_deref(),
        doc.replay.as_deref(),
    )?;
    Ok(CtlRegistration {
        filter,
        qos,
        activation,
    })
}

/// Parses a `$ctl/unsubscribe` payload.
pub fn parse_ctl_unsubscribe(payload: &[u8]) -> Result<TopicFilter, RegistrationError> {
    let doc: CtlUnsubscribe = serde_json::from_slice(payload)
        .map_err(|e| RegistrationError::value(format!("invalid JSON document: {e}")))?;
    checked_client_id(doc.client_id)?;
    TopicFilter::new(&doc.filter).map_err(|e| RegistrationError::filter(format!("filter: {e}")))
}

/// The session a `$ctl` document names, if any: it must be usable in the error topic
/// `$ctl/errors/<client-id>` (non-empty, no `/`, `+`, `#`).
fn checked_client_id(id: Option<String>) -> Result<Option<String>, RegistrationError> {
    match id {
        Some(id) if id.is_empty() || id.contains(['/', '+', '#', '\u{0}']) => {
            Err(RegistrationError::value(format!(
                "client_id {id:?} cannot name a session (empty, or contains / + #)"
            )))
        }
        other => Ok(other),
    }
}

/// The `client_id` a `$ctl` document names, read even when the rest of it is refused, so
/// the error reaches the session it was meant for. `None` when absent or unreadable.
pub fn ctl_target(payload: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct Target {
        client_id: Option<String>,
    }
    serde_json::from_slice::<Target>(payload)
        .ok()
        .and_then(|t| checked_client_id(t.client_id).ok().flatten())
}

impl Activation {
    /// A subscription a service gates (`Service::gate_subscription`): no triggers, switched
    /// only by the service, replaying retained messages when switched on.
    pub fn gated(active: bool) -> Activation {
        Activation {
            activate_on: None,
            deactivate_on: None,
            replay_retained: true,
            active,
        }
    }

    /// The store's record of this activation.
    pub fn record(&self) -> ActivationRecord {
        ActivationRecord {
            activate_on: self
                .activate_on
                .as_ref()
                .map(|f| f.to_string())
                .unwrap_or_default(),
            deactivate_on: self.deactivate_on.as_ref().map(|f| f.to_string()),
            replay_retained: self.replay_retained,
            active: self.active,
        }
    }

    /// Rebuilds an activation from the store; `None` if its filters no longer parse.
    pub fn from_record(r: &ActivationRecord) -> Option<Activation> {
        let activate_on = if r.activate_on.is_empty() {
            None
        } else {
            Some(TopicFilter::new(&r.activate_on).ok()?)
        };
        let deactivate_on = match &r.deactivate_on {
            Some(d) => Some(TopicFilter::new(d).ok()?),
            None => None,
        };
        Some(Activation {
            activate_on,
            deactivate_on,
            replay_retained: r.replay_retained,
            active: r.active,
        })
    }
}

impl Router {
    /// The initial state of a new registration: the most recent retained message on an
    /// activation or deactivation topic decides; without one, `initial` does (SPEC §3).
    pub(super) fn initial_state(&self, now: Instant, a: &Activation) -> bool {
        let latest = |f: &Option<TopicFilter>| -> u64 {
            let mut best = 0;
            if let Some(f) = f {
                self.retained.for_each_match(f, |_, r| {
                    if !r.msg.expired(now) {
                        best = best.max(r.seq);
                    }
                });
            }
            best
        };
        let on = latest(&a.activate_on);
        let off = latest(&a.deactivate_on);
        match (on, off) {
            (0, 0) => a.active,
            (on, off) => on > off,
        }
    }

    /// Adds the triggers of the subscription `filter` of session `key`.
    pub(super) fn add_triggers(&mut self, key: usize, filter: &Arc<str>, a: &Activation) {
        if let Some(f) = &a.activate_on {
            self.triggers.insert(
                f,
                Trigger {
                    session: key,
                    filter: filter.clone(),
                    activate: true,
                },
            );
        }
        if let Some(f) = &a.deactivate_on {
            self.triggers.insert(
                f,
                Trigger {
                    session: key,
                    filter: filter.clone(),
                    activate: false,
                },
            );
        }
    }

    /// Removes the triggers of the subscription `filter` of session `key`.
    pub(super) fn remove_triggers(&mut self, key: usize, filter: &str, a: &Activation) {
        let mine = |t: &Trigger| t.session == key && &*t.filter == filter;
        if let Some(f) = &a.activate_on {
            self.triggers.remove_where(f, |t| mine(t) && t.activate);
        }
        if let Some(f) = &a.deactivate_on {
            self.triggers.remove_where(f, |t| mine(t) && !t.activate);
        }
    }

    /// Switches the subscriptions whose triggers match `topic`. When one event matches
    /// both filters of a subscription, deactivation wins.
    pub(super) fn fire_triggers(&mut self, now: Instant, topic: &TopicName) {
        if self.triggers.is_empty() {
            return;
        }
        let mut hits: Vec<(usize, Arc<str>, bool)> = Vec::new();
        self.triggers.for_each_match(topic, |t| {
            hits.push((t.session, t.filter.clone(), t.activate))
        });
        // Activations first, so that a deactivation of the same subscription wins.
        hits.sort_by_key(|(_, _, activate)| !*activate);
        for (key, filter, activate) in hits {
            self.set_active(now, key, &filter, activate);
        }
    }

    /// Activates or deactivates one subscription; on activation with replay, the
    /// retained messages matching its filter are delivered first, as on a new
    /// subscription. The router owns all state, so nothing can slip in between the
    /// replay and the live messages: no gap, no duplicate.
    pub(super) fn set_active(&mut self, now: Instant, key: usize, filter: &Arc<str>, active: bool) {
        let Some(s) = self.sessions.get_mut(key).filter(|s| !s.ending) else {
            return;
        };
        let Some(entry) = s.subscriptions.get_mut(filter) else {
            return;
        };
        let Some(a) = entry.activation.as_mut() else {
            return;
        };
        if a.active == active {
            return;
        }
        a.active = active;
        let replay = a.replay_retained;
        let options = entry.options;
        let id = entry.identifier;
        let Ok(tf) = TopicFilter::new(filter) else {
            return;
        };
        tracing::debug!(client_id = %s.client_id, %filter, active, "subscription switched");
        if active {
            self.subs.insert(
                &tf,
                Subscriber::Direct {
                    session: key,
                    options,
                    id,
                },
            );
            self.inactive_count = self.inactive_count.saturating_sub(1);
            if replay {
                self.replay_retained(now, key, &tf, options.qos, id);
            }
        } else {
            self.subs.remove_where(
                &tf,
                |v| matches!(v, Subscriber::Direct { session, .. } if *session == key),
            );
            self.inactive_count += 1;
        }
        self.persist_subscription(key, filter);
        self.services_activation(now, key, filter, active);
    }

    /// Handles a PUBLISH to `$ctl/subscribe` or `$ctl/unsubscribe` from session `key`. A
    /// document naming a `client_id` acts on that session (which must exist: connected, or
    /// persistent and offline); errors go, retained, to `$ctl/errors/<that client id>`.
    pub(super) fn on_ctl(&mut self, now: Instant, key: usize, topic: &str, payload: &Bytes) {
        let own = self
            .sessions
            .get(key)
            .map(|s| s.client_id.to_string())
            .unwrap_or_default();
        let target_id = ctl_target(payload).unwrap_or_else(|| own.clone());
        let target = if target_id == own {
            Some(key)
        } else {
            self.by_id.get(target_id.as_str()).copied()
        };
        let result = match target {
            None => Err(RegistrationError::value(format!(
                "no session for client_id {target_id:?}: connect it first (a persistent \
                 session, clean session off, outlives its connection)"
            ))),
            Some(key) => self.apply_ctl(now, key, topic, payload),
        };
        if let Err(e) = result {
            tracing::info!(client_id = %target_id, from = %own, error = %e.message, "bad $ctl registration");
            let doc = serde_json::json!({
                "error": e.message,
                "topic": topic,
                "request": String::from_utf8_lossy(payload),
            });
            if let Ok(t) = TopicName::new(&format!("{CTL_ERRORS}{target_id}")) {
                // Retained (in memory only), so that a tool that connects after the
                // registration, or the session's owner reconnecting, still sees it.
                let msg = crate::message::Message {
                    topic: t,
                    qos: canopy_proto::QoS::AtMostOnce,
                    retain: true,
                    properties: Default::default(),
                    payload: Bytes::from(doc.to_string()),
                    expires_at: None,
                };
                self.publish_broker(now, msg, Keep::Memory);
            }
        }
    }

    /// Applies a `$ctl` document to session `key`.
    fn apply_ctl(
        &mut self,
        now: Instant,
        key: usize,
        topic: &str,
        payload: &Bytes,
    ) -> Result<(), RegistrationError> {
        match topic {
            CTL_SUBSCRIBE => parse_ctl_subscribe(payload).and_then(|reg| {
                if reg.activation.is_none() {
                    return Err(RegistrationError::value(
                        "a $ctl registration needs activate_on or deactivate_on; use SUBSCRIBE otherwise".into(),
                    ));
                }
                if canopy_proto::SharedFilter::parse(&reg.filter).ok().flatten().is_some() {
                    return Err(RegistrationError::value("shared subscriptions cannot be event-activated".into()));
                }
                if let Err(why) = self.subscribe_allowed(key, reg.filter.as_str()) {
                    return Err(RegistrationError::value(why.0.into()));
                }
                let options = canopy_proto::SubscriptionOptions {
                    qos: reg.qos.min(self.maximum_qos),
                    ..Default::default()
                };
                // A subscription a service gates (a presence watcher) is gated here too.
                let activation = match self.services_gate(now, key, reg.filter.as_str()) {
                    Some(active) => Some(Activation::gated(active)),
                    None => reg.activation,
                };
                self.register(now, key, &reg.filter, options, None, activation);
                Ok(())
            }),
            CTL_UNSUBSCRIBE => parse_ctl_unsubscribe(payload).map(|f| {
                if self.remove_subscription(key, f.as_str()) {
                    self.services_unsubscribe(now, key, f.as_str());
                }
            }),
            _ => Err(RegistrationError::value(format!("unknown control topic {topic:?}"))),
        }
    }

    /// Registers (or replaces) a subscription with an optional activation, setting its
    /// initial state and replaying retained messages when it starts active.
    pub(super) fn register(
        &mut self,
        now: Instant,
        key: usize,
        filter: &TopicFilter,
        options: canopy_proto::SubscriptionOptions,
        id: Option<u32>,
        activation: Option<Activation>,
    ) -> bool {
        let activation = activation.map(|mut a| {
            a.active = self.initial_state(now, &a);
            a
        });
        let replay = activation.as_ref().is_none_or(|a| a.active);
        let existed = self.add_subscription(key, filter, None, options, id, activation);
        if replay {
            self.replay_retained(now, key, filter, options.qos, id);
        }
        existed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn props(kv: &[(&str, &str)]) -> Vec<UserProperty> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn activate_on_defaults_to_inactive_with_retained_replay() {
        let a = from_user_properties(&props(&[("activate-on", "ev/on")]))
            .unwrap()
            .unwrap();
        assert!(!a.active);
        assert!(a.replay_retained);
        assert_eq!(a.activate_on.unwrap().as_str(), "ev/on");
    }

    #[test]
    fn deactivate_on_alone_starts_active() {
        let a = from_user_properties(&props(&[("deactivate-on", "ev/off")]))
            .unwrap()
            .unwrap();
        assert!(a.active);
    }

    #[test]
    fn plain_user_properties_make_no_activation() {
        assert_eq!(
            from_user_properties(&props(&[("colour", "blue")])).unwrap(),
            None
        );
    }

    #[test]
    fn bad_values_and_filters_are_refused_with_a_reason() {
        let e = from_user_properties(&props(&[("activate-on", "a/#/b")])).unwrap_err();
        assert!(e.bad_filter && e.message.contains("activate-on"), "{e:?}");
        let e = from_user_properties(&props(&[("activate-on", "a"), ("initial", "maybe")]))
            .unwrap_err();
        assert!(!e.bad_filter && e.message.contains("initial"), "{e:?}");
        let e =
            from_user_properties(&props(&[("activate-on", "a"), ("replay", "all")])).unwrap_err();
        assert!(e.message.contains("replay"), "{e:?}");
        let e = from_user_properties(&props(&[("activate-on", "a"), ("activate-on", "b")]))
            .unwrap_err();
        assert!(e.message.contains("twice"), "{e:?}");
        assert!(from_user_properties(&props(&[("initial", "active")])).is_err());
    }

    #[test]
    fn ctl_document_parses_and_rejects_garbage() {
        let r = parse_ctl_subscribe(
            br#"{"filter":"m/#","qos":1,"activate_on":"go","deactivate_on":"stop","initial":"active","replay":"none"}"#,
        )
        .unwrap();
        assert_eq!(r.filter.as_str(), "m/#");
        assert_eq!(r.qos, QoS::AtLeastOnce);
        let a = r.activation.unwrap();
        assert!(a.active && !a.replay_retained);
        assert!(parse_ctl_subscribe(b"not json").is_err());
        assert!(parse_ctl_subscribe(br#"{"filter":"m","qos":3,"activate_on":"x"}"#).is_err());
        assert!(parse_ctl_subscribe(br#"{"filter":"m","bogus":1}"#).is_err());
        assert_eq!(
            parse_ctl_unsubscribe(br#"{"filter":"m/#"}"#)
                .unwrap()
                .as_str(),
            "m/#"
        );
    }

    #[test]
    fn ctl_document_may_name_the_session_it_is_for() {
        let doc = br#"{"client_id":"viewer","filter":"cam/#","activate_on":"alarm/on"}"#;
        assert!(parse_ctl_subscribe(doc).is_ok());
        assert_eq!(ctl_target(doc).as_deref(), Some("viewer"));
        let undo = br#"{"client_id":"viewer","filter":"cam/#"}"#;
        assert!(parse_ctl_unsubscribe(undo).is_ok());
        assert_eq!(ctl_target(undo).as_deref(), Some("viewer"));
        assert_eq!(ctl_target(br#"{"filter":"cam/#"}"#), None);
        // A refused document still names its session, so the error reaches it.
        let bad = br#"{"client_id":"viewer","filter":"cam/#","initail":"active"}"#;
        assert!(parse_ctl_subscribe(bad).is_err());
        assert_eq!(ctl_target(bad).as_deref(), Some("viewer"));
        for id in ["", "a/b", "a+", "#"] {
            let doc = format!(r#"{{"client_id":"{id}","filter":"x","activate_on":"y"}}"#);
            assert!(parse_ctl_subscribe(doc.as_bytes()).is_err(), "{id:?}");
            assert_eq!(ctl_target(doc.as_bytes()), None, "{id:?}");
        }
        assert_eq!(ctl_target(b"not json"), None);
    }

    #[test]
    fn activation_round_trips_through_its_record() {
        let a = Activation {
            activate_on: Some(TopicFilter::new("on/+").unwrap()),
            deactivate_on: None,
            replay_retained: false,
            active: true,
        };
        assert_eq!(Activation::from_record(&a.record()), Some(a));
    }
}
