//! `canopy resource acquire|reserve|status`: scarce resources as topics (SPEC §7,
//! docs/resources.md).
//!
//! Owns the grammar of these subcommands and their flow over one [`Link`]: subscribe to the
//! client's own answer topic, publish the request, print every answer (positions, slot,
//! grant), renew the lease while holding and release on Ctrl-C or after `--hold`. It must
//! never decide who gets a unit: the broker does; this only asks, waits and reports.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use clap::{Args, Subcommand};
use serde_json::Value;
use tokio::time::Instant;

use crate::cli::{ConnectArgs, Qos};
use crate::error::CliError;
use crate::link::{
    FilterRequest, Link, LinkEvent, OutgoingMessage, PublishOptions, SubscribeRequest,
};
use crate::options::ConnectSettings;

/// Prefix of every resource topic.
pub const PREFIX: &str = "$resource/";
/// Prefix of the resources' `$SYS` figures.
const SYS_PREFIX: &str = "$SYS/broker/resources/";
/// How long to wait for the broker's answer to a release before disconnecting anyway.
const RELEASE_WAIT: Duration = Duration::from_secs(5);
/// How long `status` waits for the retained summaries.
const STATUS_QUIET: Duration = Duration::from_millis(500);
/// The longest `status` waits in all.
const STATUS_LIMIT: Duration = Duration::from_secs(5);

/// Arguments of `canopy resource`: one of its subcommands.
#[derive(Debug, Clone, Args)]
pub struct ResourceArgs {
    /// `acquire`, `reserve` or `status`.
    #[command(subcommand)]
    pub action: ResourceAction,
}

/// The subcommands of `canopy resource`.
#[derive(Debug, Clone, Subcommand)]
pub enum ResourceAction {
    /// Ask for a unit of a resource; print position changes; once granted, hold it (renewing
    /// the lease) until Ctrl-C or --hold, then release it and exit 0.
    #[command(disable_help_flag = true)]
    Acquire(AcquireArgs),
    /// Reserve the next free slot of a slots-mode resource; print it, wait for it, hold it
    /// until it ends, Ctrl-C or --hold.
    #[command(disable_help_flag = true)]
    Reserve(AcquireArgs),
    /// Print the retained summaries (`$resource/<name>`): in use, maximum, queued.
    #[command(disable_help_flag = true)]
    Status(StatusArgs),
}

/// Arguments of `canopy resource acquire` and `reserve`.
#[derive(Debug, Clone, Args)]
pub struct AcquireArgs {
    /// Connection options; `-i` names the session that holds the unit (generated when absent).
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// The resource's name (`[[resource]] name` in the broker's configuration).
    pub name: String,
    /// Wait in the queue when every unit is in use (without it: exit 3 at once).
    #[arg(long)]
    pub wait: bool,
    /// Release after holding this long (`30s`, `2m`, or seconds). Default: until Ctrl-C.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub hold: Option<Duration>,
}

/// Arguments of `canopy resource status`.
#[derive(Debug, Clone, Args)]
pub struct StatusArgs {
    /// Connection options.
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// Only this resource (default: every resource the broker has).
    pub name: Option<String>,
}

/// Parses `30s`, `1m 30s`, `500ms` or a number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    if let Ok(secs) = s.trim().parse::<f64>() {
        return Duration::try_from_secs_f64(secs).map_err(|e| format!("`{s}`: {e}"));
    }
    humantime::parse_duration(s.trim()).map_err(|e| format!("`{s}`: {e}"))
}

/// Checks that `name` can be one topic level.
fn check_name(name: &str) -> Result<(), CliError> {
    if name.is_empty() || name.contains(['/', '+', '#']) {
        return Err(CliError::Usage(format!(
            "`{name}` is not a resource name (one topic level, without / + #)"
        )));
    }
    Ok(())
}

/// One answer of the broker, as printed.
pub fn describe(answer: &Value, now_ms: u64) -> String {
    let n = |k: &str| answer[k].as_u64().unwrap_or_default();
    let until = |t: u64| {
        let secs = t.saturating_sub(now_ms).div_ceil(1000);
        format!("{t} (in {secs}s)")
    };
    match answer["state"].as_str().unwrap_or("?") {
        "granted" => format!(
            "granted: grant {}, expires {}",
            n("grant"),
            until(n("expires"))
        ),
        "queued" => format!("queued at position {}", n("position")),
        "scheduled" => format!(
            "scheduled: slot from {} to {}",
            until(n("slot_start")),
            n("slot_end")
        ),
        "refused" => format!("refused: {}", answer["reason"].as_str().unwrap_or("?")),
        "released" => "released".to_owned(),
        "expired" => "expired".to_owned(),
        other => format!("unexpected answer {other:?}: {answer}"),
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn settings(args: &ConnectArgs) -> Result<ConnectSettings, CliError> {
    let mut connect = ConnectSettings::from_args(args)?;
    if connect.client_id.is_empty() {
        // The answers' topic names the client id, so a 5.0 client picks its own too.
        connect.client_id = format!(
            "canopyres{}{:x}",
            std::process::id(),
            unix_ms() % 0xFFFF_FFFF
        );
    }
    Ok(connect)
}

fn outgoing(topic: String) -> OutgoingMessage {
    OutgoingMessage {
        topic,
        payload: Bytes::new(),
        qos: Qos::AtLeastOnce,
        retain: false,
        properties: PublishOptions::default(),
    }
}

/// Connects and subscribes to `filters`, waiting for the SUBACK; fails if every filter
/// was refused.
async fn open(connect: &ConnectSettings, filters: &[String]) -> Result<Link, CliError> {
    let (mut link, _, _) = Link::open(connect).await?;
    let filters = filters
        .iter()
        .map(|f| FilterRequest {
            filter: f.clone(),
            qos: Qos::AtLeastOnce,
            no_local: false,
            retain_as_published: false,
            retain_handling: 0,
        })
        .collect();
    link.sender()
        .subscribe(SubscribeRequest {
            filters,
            ..SubscribeRequest::default()
        })
        .await?;
    loop {
        match link.next_event().await {
            Some(LinkEvent::SubAck(codes)) if codes.iter().any(|c| *c < 0x80) => return Ok(link),
            Some(LinkEvent::SubAck(_)) => return Err(CliError::AllSubscriptionsDenied),
            Some(LinkEvent::Failed(f)) => return Err(f.into_error(link.addr().to_owned())),
            None => return Err(CliError::ConnectionLost("event loop stopped".into())),
            Some(_) => {}
        }
    }
}

/// Runs one `canopy resource` subcommand.
pub async fn run(args: ResourceArgs) -> Result<(), CliError> {
    match args.action {
        ResourceAction::Acquire(a) => hold(a, "acquire").await,
        ResourceAction::Reserve(a) => hold(a, "reserve").await,
        ResourceAction::Status(s) => status(s).await,
    }
}

/// `acquire` or `reserve`, then wait, hold and release.
async fn hold(args: AcquireArgs, verb: &str) -> Result<(), CliError> {
    check_name(&args.name)?;
    let connect = settings(&args.connect)?;
    let answers = format!("{PREFIX}{}/client/{}", args.name, connect.client_id);
    let request = format!("{PREFIX}{}/{verb}", args.name);
    let release = format!("{PREFIX}{}/release", args.name);
    let mut link = open(&connect, std::slice::from_ref(&answers)).await?;
    let sender = link.sender();
    sender.publish(outgoing(request.clone())).await?;
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let mut grant: Option<u64> = None;
    let mut renew_at: Option<Instant> = None;
    let mut hold_until: Option<Instant> = None;
    let outcome = loop {
        let far = Instant::now() + Duration::from_secs(86_400);
        tokio::select! {
            event = link.next_event() => {
                let m = match event {
                    Some(LinkEvent::Message(m)) if m.topic == answers => m,
                    Some(LinkEvent::Failed(f)) => break Err(f.into_error(link.addr().to_owned())),
                    None => break Err(CliError::ConnectionLost("event loop stopped".into())),
                    Some(_) => continue,
                };
                let Ok(answer) = serde_json::from_slice::<Value>(&m.payload) else { continue };
                let now_ms = unix_ms();
                match answer["state"].as_str() {
                    Some("granted") => {
                        let g = answer["grant"].as_u64();
                        let expires = answer["expires"].as_u64().unwrap_or(now_ms);
                        if grant != g {
                            println!("{}", describe(&answer, now_ms));
                            grant = g;
                            hold_until = args.hold.map(|d| Instant::now() + d);
                        }
                        // Renew halfway through what is left (queue mode; a slot ends when it ends).
                        let left = Duration::from_millis(expires.saturating_sub(now_ms) / 2);
                        renew_at = (verb == "acquire").then(|| Instant::now() + left.max(Duration::from_millis(50)));
                    }
                    Some("queued") => {
                        println!("{}", describe(&answer, now_ms));
                        if !args.wait {
                            break Err(CliError::NotGranted(answer["position"].as_u64().unwrap_or(0)));
                        }
                    }
                    Some("refused") => break Err(CliError::ResourceRefused(answer["reason"].as_str().unwrap_or("?").to_owned())),
                    Some("expired") if verb == "reserve" && grant.is_some() => {
                        println!("slot ended");
                        break Ok(false);
                    }
                    Some("expired") => break Err(CliError::ResourceRefused("the lease or slot expired".into())),
                    _ => println!("{}", describe(&answer, now_ms)),
                }
            }
            () = tokio::time::sleep_until(renew_at.unwrap_or(far)), if renew_at.is_some() => {
                renew_at = None;
                sender.publish(outgoing(request.clone())).await?;
            }
            () = tokio::time::sleep_until(hold_until.unwrap_or(far)), if hold_until.is_some() => break Ok(true),
            _ = &mut ctrl_c => break Ok(true),
        }
    };
    // Give the unit or place back at once rather than when the session ends.
    let give_back = matches!(outcome, Ok(true) | Err(CliError::NotGranted(_)));
    if give_back && sender.publish(outgoing(release)).await.is_ok() {
        let wait = async {
            while let Some(event) = link.next_event().await {
                if let LinkEvent::Message(m) = event
                    && m.topic == answers
                    && serde_json::from_slice::<Value>(&m.payload)
                        .is_ok_and(|a| a["state"] == "released")
                {
                    if grant.is_some() {
                        println!("released");
                    }
                    return;
                }
            }
        };
        let _ = tokio::time::timeout(RELEASE_WAIT, wait).await;
    }
    link.disconnect().await?;
    outcome.map(|_| ())
}

/// Prints the retained summaries.
async fn status(args: StatusArgs) -> Result<(), CliError> {
    if let Some(name) = &args.name {
        check_name(name)?;
    }
    let mut connect = settings(&args.connect)?;
    connect.clean = true;
    connect.session_expiry = None;
    let filter = format!("{PREFIX}{}", args.name.as_deref().unwrap_or("+"));
    let summaries = match retained(&connect, &[filter]).await {
        // The broker may refuse the wildcard: learn the names from `$SYS` instead.
        Err(CliError::AllSubscriptionsDenied) if args.name.is_none() => {
            let figures = retained(&connect, &[format!("{SYS_PREFIX}+/in_use")]).await?;
            let summaries: Vec<String> = figures
                .iter()
                .filter_map(|(t, _)| t.strip_prefix(SYS_PREFIX)?.strip_suffix("/in_use"))
                .map(|name| format!("{PREFIX}{name}"))
                .collect();
            if summaries.is_empty() {
                Vec::new()
            } else {
                retained(&connect, &summaries).await?
            }
        }
        other => other?,
    };
    let mut lines: Vec<String> = summaries
        .iter()
        .filter_map(|(topic, payload)| {
            let s = serde_json::from_slice::<Value>(payload).ok()?;
            Some(summary_line(topic.strip_prefix(PREFIX)?, &s))
        })
        .collect();
    lines.sort();
    if lines.is_empty() {
        return Err(CliError::ResourceRefused(match args.name {
            Some(name) => format!("no summary for `{name}` (not configured?)"),
            None => "the broker has no resources".to_owned(),
        }));
    }
    for line in lines {
        println!("{line}");
    }
    Ok(())
}

/// The retained messages under `filters`: what arrives until nothing has for
/// [`STATUS_QUIET`] (at most [`STATUS_LIMIT`]).
async fn retained(
    connect: &ConnectSettings,
    filters: &[String],
) -> Result<Vec<(String, Bytes)>, CliError> {
    let mut link = open(connect, filters).await?;
    let mut found = Vec::new();
    let limit = Instant::now() + STATUS_LIMIT;
    loop {
        let quiet = (Instant::now() + STATUS_QUIET).min(limit);
        match tokio::time::timeout_at(quiet, link.next_event()).await {
            Ok(Some(LinkEvent::Message(m))) if m.retain => found.push((m.topic, m.payload)),
            Ok(Some(LinkEvent::Failed(f))) => return Err(f.into_error(link.addr().to_owned())),
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => break,
        }
    }
    link.disconnect().await?;
    Ok(found)
}

/// One line of `status`.
pub fn summary_line(name: &str, s: &Value) -> String {
    let n = |k: &str| s[k].as_u64().unwrap_or_default();
    let mut line = format!(
        "{name}: {}/{} in use, {} waiting",
        n("in_use"),
        n("max"),
        n("queued")
    );
    if let Some(t) = s["next_slot"].as_u64() {
        line.push_str(&format!(", next slot at {t}"));
    }
    line
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn answers_are_described_in_words() {
        let at = 1_000_000;
        assert_eq!(
            describe(
                &json!({"state":"granted","grant":7,"expires":at + 60_000}),
                at
            ),
            "granted: grant 7, expires 1060000 (in 60s)"
        );
        assert_eq!(
            describe(&json!({"state":"queued","position":3}), at),
            "queued at position 3"
        );
        assert_eq!(
            describe(&json!({"state":"refused","reason":"queue full"}), at),
            "refused: queue full"
        );
        assert_eq!(
            describe(
                &json!({"state":"scheduled","slot_start":at + 1500,"slot_end":at + 9000}),
                at
            ),
            "scheduled: slot from 1001500 (in 2s) to 1009000"
        );
    }

    #[test]
    fn summaries_fit_on_one_line() {
        let s = json!({"in_use":2,"max":2,"queued":3,"next_slot":null});
        assert_eq!(
            summary_line("license", &s),
            "license: 2/2 in use, 3 waiting"
        );
        let s = json!({"in_use":1,"max":1,"queued":0,"next_slot":5});
        assert_eq!(
            summary_line("rig", &s),
            "rig: 1/1 in use, 0 waiting, next slot at 5"
        );
    }

    #[test]
    fn hold_durations_take_units_or_seconds() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("-1").is_err());
    }

    #[test]
    fn names_must_be_one_level() {
        assert!(check_name("license").is_ok());
        for bad in ["", "a/b", "+", "#"] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }
}
