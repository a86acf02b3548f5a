//! `canopy presence set|watch|allow`: presence documents (SPEC §5, docs/presence.md).
//!
//! Owns the grammar of these subcommands and their translation into the publish and
//! subscribe plans of [`crate::publish`] and [`crate::subscribe`], which do the network work.
//! It must never aggregate or decide who may watch: the broker's presence agent does.

use bytes::Bytes;
use clap::{Args, Subcommand, ValueEnum};

use crate::cli::{ConnectArgs, OutputFormat, Qos};
use crate::error::CliError;
use crate::link::{FilterRequest, PublishOptions, SubscribeRequest};
use crate::options::ConnectSettings;
use crate::publish::{PublishPlan, Source};
use crate::subscribe::SubscribePlan;

/// Root of every presence topic.
pub const PREFIX: &str = "$presence/";

/// Arguments of `canopy presence`: one of its subcommands.
#[derive(Debug, Clone, Args)]
pub struct PresenceArgs {
    /// `set`, `watch` or `allow`.
    #[command(subcommand)]
    pub action: PresenceAction,
}

/// The subcommands of `canopy presence`.
#[derive(Debug, Clone, Subcommand)]
pub enum PresenceAction {
    /// Publish this device's presence, retained at QoS 1, to
    /// `$presence/<user>/devices/<device>`. The broker counts a device as connected while its
    /// connection is: once this command exits, the device turns offline after the broker's
    /// `offline_grace` (keep a connection open to stay online).
    #[command(disable_help_flag = true)]
    Set(SetArgs),
    /// Print USER's aggregate presence document (`$presence/USER`) and every change. If USER
    /// has not listed you as a watcher, the subscription is pending (a request appears at
    /// `$presence/USER/requests/<you>`) and documents arrive once USER allows you.
    #[command(disable_help_flag = true)]
    Watch(WatchArgs),
    /// As USER, allow WATCHER to see your presence (publishes the decision `approved` to
    /// `$presence/USER/requests/WATCHER`; the broker's agent adds WATCHER to
    /// `$presence/USER/watchers`). With --revoke, publish `rejected` instead.
    #[command(disable_help_flag = true)]
    Allow(AllowArgs),
}

/// How available the device says its user is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Availability {
    /// Reachable.
    Available,
    /// Occupied.
    Busy,
    /// Do not disturb.
    DoNotDisturb,
    /// Not reachable.
    Offline,
}

/// What the device says its user is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Activity {
    /// Using the device.
    Active,
    /// Not used for a while.
    Idle,
    /// Away from the device.
    Away,
}

/// Arguments of `canopy presence set`.
#[derive(Debug, Clone, Args)]
pub struct SetArgs {
    /// Connection options; the user is `-u` unless --user is given.
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// The user whose device this is (default: the -u user name).
    #[arg(long, value_name = "USER")]
    pub user: Option<String>,
    /// The device's name, one topic level.
    #[arg(long, value_name = "DEVICE", default_value = "cli")]
    pub device: String,
    /// Availability.
    #[arg(long, value_enum)]
    pub availability: Availability,
    /// Activity.
    #[arg(long, value_enum, default_value = "active")]
    pub activity: Activity,
    /// Free text shown with the presence.
    #[arg(long, value_name = "TEXT")]
    pub note: Option<String>,
}

/// Arguments of `canopy presence watch`.
#[derive(Debug, Clone, Args)]
pub struct WatchArgs {
    /// Connection options.
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// The user to watch.
    pub user: String,
    /// Exit after this many documents.
    #[arg(short = 'C', long = "count", value_name = "N")]
    pub count: Option<u64>,
    /// Exit with status 27 when nothing arrives within this many seconds.
    #[arg(short = 'W', long = "timeout", value_name = "SECS")]
    pub timeout: Option<u64>,
}

/// Arguments of `canopy presence allow`.
#[derive(Debug, Clone, Args)]
pub struct AllowArgs {
    /// Connection options (connect as USER).
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// The user whose presence is shared.
    pub user: String,
    /// The watcher allowed (its user name; with anonymous access, its client id).
    pub watcher: String,
    /// Reject or revoke instead of allowing.
    #[arg(long)]
    pub revoke: bool,
}

/// One topic level: non-empty, without `/`, `+` or `#`.
fn level<'a>(what: &str, value: &'a str) -> Result<&'a str, CliError> {
    if value.is_empty() || value.contains(['/', '+', '#']) {
        return Err(CliError::Usage(format!(
            "{what} `{value}` cannot be one topic level (empty, or contains /, + or #)"
        )));
    }
    Ok(value)
}

/// The device document `set` publishes.
pub fn device_document(args: &SetArgs) -> String {
    let name = |v: &dyn ValueEnumName| v.name();
    let mut doc = serde_json::json!({
        "availability": name(&args.availability),
        "activity": name(&args.activity),
    });
    if let (Some(note), Some(map)) = (&args.note, doc.as_object_mut()) {
        map.insert("note".into(), note.clone().into());
    }
    doc.to_string()
}

/// The kebab-case name clap gives a value.
trait ValueEnumName {
    fn name(&self) -> String;
}

impl<T: ValueEnum> ValueEnumName for T {
    fn name(&self) -> String {
        self.to_possible_value()
            .map(|v| v.get_name().to_owned())
            .unwrap_or_default()
    }
}

/// What `canopy presence set` will do.
pub fn set_plan(args: &SetArgs) -> Result<PublishPlan, CliError> {
    let connect = ConnectSettings::from_args(&args.connect)?;
    let user = match (&args.user, &args.connect.username) {
        (Some(u), _) | (None, Some(u)) => u.clone(),
        (None, None) => {
            return Err(CliError::Usage(
                "say whose presence this is: --user USER (or -u USER)".into(),
            ));
        }
    };
    let topic = format!(
        "{PREFIX}{}/devices/{}",
        level("user", &user)?,
        level("device", &args.device)?
    );
    Ok(retained(connect, topic, device_document(args)))
}

/// What `canopy presence allow` will do.
pub fn allow_plan(args: &AllowArgs) -> Result<PublishPlan, CliError> {
    let connect = ConnectSettings::from_args(&args.connect)?;
    let topic = format!(
        "{PREFIX}{}/requests/{}",
        level("user", &args.user)?,
        level("watcher", &args.watcher)?
    );
    let state = if args.revoke { "rejected" } else { "approved" };
    Ok(retained(
        connect,
        topic,
        format!("{{\"state\":\"{state}\"}}"),
    ))
}

fn retained(connect: ConnectSettings, topic: String, doc: String) -> PublishPlan {
    PublishPlan {
        connect,
        topic,
        source: Source::Message(Bytes::from(doc.into_bytes())),
        qos: Qos::AtLeastOnce,
        retain: true,
        repeat: 1,
        repeat_delay: std::time::Duration::ZERO,
        properties: PublishOptions::default(),
    }
}

/// What `canopy presence watch` will do.
pub fn watch_plan(args: &WatchArgs) -> Result<SubscribePlan, CliError> {
    let connect = ConnectSettings::from_args(&args.connect)?;
    Ok(SubscribePlan {
        connect,
        request: SubscribeRequest {
            filters: vec![FilterRequest {
                filter: format!("{PREFIX}{}", level("user", &args.user)?),
                qos: Qos::AtLeastOnce,
                no_local: false,
                retain_as_published: false,
                retain_handling: 0,
            }],
            subscription_id: None,
            user_properties: Vec::new(),
        },
        count: args.count,
        timeout: args.timeout.map(std::time::Duration::from_secs),
        skip_retained: false,
        format: OutputFormat::Payload,
        newline: true,
    })
}

/// Runs `canopy presence set`, `watch` or `allow`.
pub async fn run(args: PresenceArgs) -> Result<(), CliError> {
    match args.action {
        PresenceAction::Set(a) => crate::publish::run(set_plan(&a)?).await,
        PresenceAction::Watch(a) => crate::subscribe::run(watch_plan(&a)?).await,
        PresenceAction::Allow(a) => crate::publish::run(allow_plan(&a)?).await,
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};

    fn parse(args: &[&str]) -> PresenceAction {
        let mut argv = vec!["canopy", "presence"];
        argv.extend_from_slice(args);
        match Cli::try_parse_from(argv).unwrap().command {
            Command::Presence(p) => p.action,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn set_publishes_the_device_document_retained_under_the_user() {
        let PresenceAction::Set(a) = parse(&[
            "set",
            "-u",
            "alice",
            "--device",
            "phone",
            "--availability",
            "busy",
            "--activity",
            "active",
            "--note",
            "call",
        ]) else {
            panic!()
        };
        let plan = set_plan(&a).unwrap();
        assert_eq!(plan.topic, "$presence/alice/devices/phone");
        assert!(plan.retain);
        let Source::Message(body) = &plan.source else {
            panic!()
        };
        let doc: serde_json::Value = serde_json::from_slice(body).unwrap();
        assert_eq!(
            doc,
            serde_json::json!({"availability":"busy","activity":"active","note":"call"})
        );
    }

    #[test]
    fn set_needs_a_user_and_one_level_names() {
        let PresenceAction::Set(a) = parse(&["set", "--availability", "do-not-disturb"]) else {
            panic!()
        };
        assert!(set_plan(&a).is_err());
        let PresenceAction::Set(a) = parse(&["set", "--user", "a/b", "--availability", "busy"])
        else {
            panic!()
        };
        assert!(set_plan(&a).is_err());
    }

    #[test]
    fn allow_and_revoke_publish_a_decision_on_the_request() {
        let PresenceAction::Allow(a) = parse(&["allow", "alice", "bob"]) else {
            panic!()
        };
        let plan = allow_plan(&a).unwrap();
        assert_eq!(plan.topic, "$presence/alice/requests/bob");
        let PresenceAction::Allow(a) = parse(&["allow", "alice", "bob", "--revoke"]) else {
            panic!()
        };
        let Source::Message(body) = allow_plan(&a).unwrap().source else {
            panic!()
        };
        assert_eq!(&body[..], br#"{"state":"rejected"}"#);
    }

    #[test]
    fn watch_subscribes_to_the_aggregate() {
        let PresenceAction::Watch(a) = parse(&["watch", "alice", "-C", "1"]) else {
            panic!()
        };
        let plan = watch_plan(&a).unwrap();
        assert_eq!(plan.request.filters[0].filter, "$presence/alice");
        assert_eq!(plan.count, Some(1));
        let PresenceAction::Watch(a) = parse(&["watch", "+"]) else {
            panic!()
        };
        assert!(watch_plan(&a).is_err());
    }
}
