//! `canopy sub`: turns [`SubArgs`] into a [`SubscribePlan`], connects, subscribes, and prints
//! each message as soon as it arrives until `-C` messages were printed, `-W` seconds passed,
//! Ctrl-C, or the connection ends.
//!
//! Owns the subscribe flow and the stdout writes. It must never buffer output between
//! messages (each one is flushed) and never publish.

use std::io::Write;
use std::time::Duration;

use crate::cli::{OutputFormat, ProtocolVersion, Qos, SubArgs};
use crate::error::CliError;
use crate::format::Formatter;
use crate::link::{FilterRequest, Link, LinkEvent, LinkFailure, SubscribeRequest};
use crate::options::ConnectSettings;
use crate::reason::describe_suback;
use crate::redirect;

/// Everything `canopy sub` will do, validated before any connection is made.
#[derive(Debug, Clone, PartialEq)]
pub struct SubscribePlan {
    /// Connection settings.
    pub connect: ConnectSettings,
    /// The SUBSCRIBE request.
    pub request: SubscribeRequest,
    /// Stop after this many printed messages.
    pub count: Option<u64>,
    /// Stop with [`CliError::Timeout`] after this long.
    pub timeout: Option<Duration>,
    /// Skip messages delivered with the retain flag.
    pub skip_retained: bool,
    /// Output format.
    pub format: OutputFormat,
    /// Newline after each message.
    pub newline: bool,
}

impl SubscribePlan {
    /// Validates the arguments of `canopy sub`.
    pub fn from_args(args: &SubArgs) -> Result<Self, CliError> {
        let connect = ConnectSettings::from_args(&args.connect)?;
        let v5 = connect.version == ProtocolVersion::V5;
        let v5_only: [(bool, &'static str); 5] = [
            (!args.user_properties.is_empty(), "--user-property (-U)"),
            (args.no_local, "--no-local"),
            (args.retain_as_published, "--retain-as-published"),
            (args.retain_handling.is_some(), "--retain-handling"),
            (args.sub_id.is_some(), "--sub-id"),
        ];
        if let Some((_, name)) = v5_only.iter().find(|(given, _)| *given && !v5) {
            return Err(CliError::RequiresV5(name));
        }
        let mut topics = args.topics.clone();
        if topics.is_empty()
            && let Some(topic) = args.connect.url.as_ref().and_then(|url| url.topic.clone())
        {
            topics.push(topic);
        }
        if topics.is_empty() {
            return Err(CliError::Usage(
                "at least one topic filter is required (-t)".into(),
            ));
        }
        if let Some(bad) = topics
            .iter()
            .find(|f| f.is_empty() || !rumqttc::valid_filter(f))
        {
            return Err(CliError::Usage(format!(
                "invalid topic filter `{bad}`: + and # must fill a whole level, # must be last"
            )));
        }
        let filters = topics
            .into_iter()
            .map(|filter| FilterRequest {
                filter,
                qos: args.qos,
                no_local: args.no_local,
                retain_as_published: args.retain_as_published,
                retain_handling: args.retain_handling.unwrap_or(0),
            })
            .collect();
        Ok(Self {
            connect,
            request: SubscribeRequest {
                filters,
                subscription_id: args.sub_id,
                user_properties: args.user_properties.clone(),
            },
            count: args.count,
            timeout: args.timeout.map(Duration::from_secs),
            skip_retained: args.no_retained,
            format: args.output_format(),
            newline: !args.no_newline,
        })
    }

    /// The subscription QoS (the same for every filter).
    pub fn qos(&self) -> Qos {
        self.request
            .filters
            .first()
            .map_or(Qos::AtMostOnce, |f| f.qos)
    }
}

/// Runs `canopy sub` until its stop condition.
/// A broker sending the client to another server (CONNACK or DISCONNECT 0x9C/0x9D) is
/// followed ([`crate::redirect`]), and the subscriptions are made again there; a chain or a
/// loop of redirections without a connection in between ends the command.
pub async fn run(plan: SubscribePlan) -> Result<(), CliError> {
    let deadline = plan.timeout.map(|t| tokio::time::Instant::now() + t);
    let mut settings = plan.connect.clone();
    let mut chain = redirect::Chain::default();
    // `-C` counts across the servers the client is sent to.
    let mut printed = 0u64;
    loop {
        let mut link = Link::start(&settings);
        let outcome = within(
            deadline,
            receive(&mut link, &plan, &mut chain, &mut printed),
        )
        .await;
        match outcome {
            Ok(None) => return link.disconnect().await,
            Err(CliError::Timeout) => {
                link.disconnect().await?;
                return Err(CliError::Timeout);
            }
            Ok(Some(why)) => {
                tokio::time::sleep(redirect::AFTER_DISCONNECT).await;
                settings = within(deadline, redirect::next(&settings, &mut chain, &why)).await?;
            }
            Err(error) => return Err(error),
        }
    }
}

/// `work`, cut off with [`CliError::Timeout`] at `deadline` if there is one.
async fn within<T>(
    deadline: Option<tokio::time::Instant>,
    work: impl std::future::Future<Output = Result<T, CliError>>,
) -> Result<T, CliError> {
    match deadline {
        Some(deadline) => tokio::time::timeout_at(deadline, work)
            .await
            .unwrap_or(Err(CliError::Timeout)),
        None => work.await,
    }
}

/// Connects, subscribes and prints; returns `Ok(None)` when `-C` is reached or on Ctrl-C,
/// `Ok(Some(reason))` when the broker sent the client elsewhere.
async fn receive(
    link: &mut Link,
    plan: &SubscribePlan,
    chain: &mut redirect::Chain,
    printed: &mut u64,
) -> Result<Option<String>, CliError> {
    match link.next_event().await {
        Some(LinkEvent::Connected { .. }) => *chain = redirect::Chain::default(),
        Some(LinkEvent::Failed(LinkFailure::Redirected(why))) => return Ok(Some(why)),
        Some(LinkEvent::Failed(failure)) => {
            return Err(failure.into_error(link.addr().to_owned()));
        }
        other => {
            return Err(CliError::ConnectionLost(format!(
                "unexpected event before CONNACK: {other:?}"
            )));
        }
    }
    link.sender().subscribe(plan.request.clone()).await?;
    let v5 = plan.connect.version == ProtocolVersion::V5;
    let formatter = Formatter::new(plan.format, plan.newline);
    let stdout = std::io::stdout();
    loop {
        let event = tokio::select! {
            event = link.next_event() => event,
            _ = tokio::signal::ctrl_c() => return Ok(None),
        };
        match event {
            Some(LinkEvent::Message(message)) => {
                if plan.skip_retained && message.retain {
                    continue;
                }
                let mut out = stdout.lock();
                let written = formatter
                    .write(&message, &mut out)
                    .and_then(|()| out.flush());
                match written {
                    Ok(()) => {}
                    // The reader went away (`canopy sub | head -1`): stop quietly.
                    Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(None),
                    Err(e) => return Err(CliError::Output(e)),
                }
                *printed += 1;
                if plan.count == Some(*printed) {
                    return Ok(None);
                }
            }
            Some(LinkEvent::SubAck(codes)) => {
                let mut refused = 0;
                for (filter, code) in plan.request.filters.iter().zip(&codes) {
                    if *code >= 0x80 {
                        refused += 1;
                        eprintln!(
                            "subscription to `{}` refused: {}",
                            filter.filter,
                            describe_suback(*code, v5)
                        );
                    }
                }
                if refused == codes.len() {
                    return Err(CliError::AllSubscriptionsDenied);
                }
                tracing::info!(granted = codes.len() - refused, refused, "subscribed");
            }
            Some(LinkEvent::Failed(LinkFailure::Redirected(why))) => return Ok(Some(why)),
            Some(LinkEvent::Failed(failure)) => {
                return Err(failure.into_error(link.addr().to_owned()));
            }
            Some(_) => {}
            None => return Err(CliError::ConnectionLost("event loop stopped".into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser;

    fn plan(args: &[&str]) -> Result<SubscribePlan, CliError> {
        let cli = Cli::try_parse_from(args).unwrap();
        match cli.command {
            Command::Sub(args) => SubscribePlan::from_args(&args),
            _ => panic!("not sub"),
        }
    }

    #[test]
    fn five_only_subscription_options_are_refused_on_3_1_1() {
        for extra in [
            &["-U", "k=v"][..],
            &["--no-local"],
            &["--retain-as-published"],
            &["--retain-handling", "2"],
            &["--sub-id", "7"],
        ] {
            let mut args = vec!["canopy", "sub", "-t", "a/#"];
            args.extend_from_slice(extra);
            assert!(
                matches!(plan(&args), Err(CliError::RequiresV5(_))),
                "{extra:?}"
            );
            args.extend_from_slice(&["-V", "5"]);
            assert!(plan(&args).is_ok(), "{extra:?} refused on 5.0");
        }
    }

    #[test]
    fn malformed_filters_are_refused_before_connecting() {
        // [MQTT-4.7.1-1] '#' must be last; [MQTT-4.7.1-2] '+' must occupy a whole level.
        for filter in ["a/#/b", "a/b+", ""] {
            assert!(matches!(
                plan(&["canopy", "sub", "-t", filter]),
                Err(CliError::Usage(_))
            ));
        }
    }

    #[test]
    fn every_filter_gets_the_subscription_options() {
        let p = plan(&[
            "canopy",
            "sub",
            "-V",
            "5",
            "-t",
            "a",
            "-t",
            "b/+",
            "-q",
            "2",
            "--no-local",
            "--retain-handling",
            "1",
            "--sub-id",
            "9",
        ])
        .unwrap();
        assert_eq!(p.request.filters.len(), 2);
        assert!(
            p.request
                .filters
                .iter()
                .all(|f| f.no_local && f.retain_handling == 1)
        );
        assert_eq!(p.qos(), Qos::ExactlyOnce);
        assert_eq!(p.request.subscription_id, Some(9));
    }

    #[test]
    fn no_topic_is_a_usage_error() {
        assert!(matches!(plan(&["canopy", "sub"]), Err(CliError::Usage(_))));
        let p = plan(&["canopy", "sub", "-L", "mqtt://h/x/#"]).unwrap();
        assert_eq!(p.request.filters[0].filter, "x/#");
    }
}
