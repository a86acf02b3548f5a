//! The presence documents (SPEC §5, docs/presence.md) and the aggregation rule: a device's
//! `$presence/<user>/devices/<device>`, the user's aggregate `$presence/<user>`, the watcher
//! list `$presence/<user>/watchers` and a watcher's request
//! `$presence/<user>/requests/<watcher>`.
//!
//! Shared by the broker's presence agent and the client library's device-side agent. Pure:
//! parsing, ranking and rendering only. Must never know about connections, clocks or the
//! router; the agents decide when documents change.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// Unix milliseconds.
pub type Ms = u64;

/// How available a device says its user is, most available first (the derived order is
/// the aggregation order: the smallest wins).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Availability {
    /// Reachable.
    Available,
    /// Reachable, but occupied.
    Busy,
    /// Do not disturb.
    DoNotDisturb,
    /// Not reachable (also every device whose connection ended).
    Offline,
}

/// What a device says its user is doing, most active first (the smallest wins).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Activity {
    /// Using the device now.
    Active,
    /// Not used for a while.
    Idle,
    /// Away from the device.
    Away,
}

/// A device's own document, as it publishes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceDoc {
    /// Availability.
    pub availability: Availability,
    /// Activity.
    pub activity: Activity,
    /// Free text, optional.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// One device's entry in the aggregate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceEntry {
    /// Availability (`offline` once its connection ended and the grace ran out).
    pub availability: Availability,
    /// Activity as last published.
    pub activity: Activity,
    /// Note as last published.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// When this entry last changed (unix ms).
    pub since: Ms,
}

/// The aggregate document `$presence/<user>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Aggregate {
    /// The user.
    pub user: String,
    /// The most available availability of the user's devices (`offline` with none).
    pub availability: Availability,
    /// The most active activity of the devices that are not offline (`away` with none).
    pub activity: Activity,
    /// The note of the device that decided `availability`, if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// Every device, by name.
    pub devices: BTreeMap<String, DeviceEntry>,
}

/// Aggregates a user's devices: the smallest availability, then the smallest activity among
/// the devices that are not offline; the note comes from the first device (by name) with the
/// winning availability.
pub fn aggregate(user: &str, devices: &BTreeMap<String, DeviceEntry>) -> Aggregate {
    let availability = devices
        .values()
        .map(|d| d.availability)
        .min()
        .unwrap_or(Availability::Offline);
    let activity = devices
        .values()
        .filter(|d| d.availability != Availability::Offline)
        .map(|d| d.activity)
        .min()
        .unwrap_or(Activity::Away);
    let note = devices
        .values()
        .find(|d| d.availability == availability && d.note.is_some())
        .and_then(|d| d.note.clone());
    Aggregate {
        user: user.to_owned(),
        availability,
        activity,
        note,
        devices: devices.clone(),
    }
}

/// Who may watch a user: `"*"` or a list of watcher names.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Watchers {
    /// Everyone.
    All,
    /// These names only (empty: nobody; the default).
    #[default]
    Nobody,
    /// These names.
    Some(BTreeSet<String>),
}

impl Watchers {
    /// Parses `"*"` or `["bob", ...]`; an empty payload is the default (nobody).
    pub fn parse(payload: &[u8]) -> Option<Watchers> {
        if payload.is_empty() {
            return Some(Watchers::Nobody);
        }
        match serde_json::from_slice::<serde_json::Value>(payload).ok()? {
            serde_json::Value::String(s) if s == "*" => Some(Watchers::All),
            serde_json::Value::Array(items) => {
                let names = items
                    .into_iter()
                    .map(|v| match v {
                        serde_json::Value::String(s) if !s.is_empty() => Some(s),
                        _ => None,
                    })
                    .collect::<Option<BTreeSet<String>>>()?;
                Some(if names.is_empty() {
                    Watchers::Nobody
                } else {
                    Watchers::Some(names)
                })
            }
            _ => None,
        }
    }

    /// Whether `watcher` may see the aggregate.
    pub fn permits(&self, watcher: &str) -> bool {
        match self {
            Watchers::All => true,
            Watchers::Nobody => false,
            Watchers::Some(names) => names.contains(watcher),
        }
    }

    /// The list with `watcher` added (`"*"` stays `"*"`).
    pub fn with(&self, watcher: &str) -> Watchers {
        match self {
            Watchers::All => Watchers::All,
            Watchers::Nobody => Watchers::Some(BTreeSet::from([watcher.to_owned()])),
            Watchers::Some(names) => {
                let mut names = names.clone();
                names.insert(watcher.to_owned());
                Watchers::Some(names)
            }
        }
    }

    /// The JSON payload.
    pub fn render(&self) -> Vec<u8> {
        match self {
            Watchers::All => b"\"*\"".to_vec(),
            Watchers::Nobody => b"[]".to_vec(),
            Watchers::Some(names) => serde_json::to_vec(names).unwrap_or_default(),
        }
    }
}

/// A watcher's request, in the spirit of RFC 3858 watcher-info.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RequestState {
    /// Waiting for the user's consent; the subscriptions are inactive.
    Pending,
    /// On the watcher list; the subscriptions are active.
    Approved,
    /// Refused or revoked by the user; the subscriptions are inactive.
    Rejected,
}

/// `$presence/<user>/requests/<watcher>`, written by the agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// The watcher's name.
    pub watcher: String,
    /// The state.
    pub state: RequestState,
    /// The client ids whose subscriptions to `$presence/<user>` this request governs.
    #[serde(default)]
    pub clients: BTreeSet<String>,
    /// When the state last changed (unix ms).
    pub since: Ms,
}

/// What a user may publish to `$presence/<user>/requests/<watcher>`: a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct Decision {
    /// `approved` (adds the watcher to the list) or `rejected`.
    pub state: RequestState,
}

/// The parts of a `$presence/...` topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topic<'a> {
    /// `$presence/<user>`.
    Aggregate(&'a str),
    /// `$presence/<user>/devices/<device>`.
    Device(&'a str, &'a str),
    /// `$presence/<user>/watchers`.
    Watchers(&'a str),
    /// `$presence/<user>/requests/<watcher>`.
    Request(&'a str, &'a str),
}

/// The root of every presence topic.
pub const PREFIX: &str = "$presence/";

impl<'a> Topic<'a> {
    /// Parses a topic name (no wildcards); `None` for anything else under `$presence`.
    pub fn parse(topic: &'a str) -> Option<Topic<'a>> {
        let rest = topic.strip_prefix(PREFIX)?;
        let levels: Vec<&str> = rest.split('/').collect();
        let ok = |s: &&str| !s.is_empty();
        match levels.as_slice() {
            [user] if ok(user) => Some(Topic::Aggregate(user)),
            [user, "devices", device] if ok(user) && ok(device) => {
                Some(Topic::Device(user, device))
            }
            [user, "watchers"] if ok(user) => Some(Topic::Watchers(user)),
            [user, "requests", watcher] if ok(user) && ok(watcher) => {
                Some(Topic::Request(user, watcher))
            }
            _ => None,
        }
    }
}

#[cfg(test)]
#[path = "presence_tests.rs"]
mod tests;
