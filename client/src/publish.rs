//! `canopy pub`: turns [`PubArgs`] into a [`PublishPlan`], connects, publishes, waits until
//! every QoS 1 message has its PUBACK and every QoS 2 message its PUBCOMP, then disconnects.
//!
//! Owns the publish flow. Messages are produced in a task of their own and acknowledgements are
//! counted in the caller's task, so neither waits on the other through the bounded channels;
//! it must never publish from the link's driver task.

use std::path::PathBuf;

use bytes::Bytes;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};

use crate::cli::{ProtocolVersion, PubArgs, Qos};
use crate::error::CliError;
use crate::link::{Link, LinkEvent, OutgoingMessage, PublishOptions, Sender};
use crate::options::ConnectSettings;

/// Where the payload comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// `-m`: the given text.
    Message(Bytes),
    /// `-n`: a zero-length payload.
    Null,
    /// `-f`: the whole file.
    File(PathBuf),
    /// `-s`, or no source option: all of stdin as one message.
    StdinAll,
    /// `-l`: one message per line of stdin, without the line ending.
    StdinLines,
}

/// Everything `canopy pub` will do, validated before any connection is made.
#[derive(Debug, Clone, PartialEq)]
pub struct PublishPlan {
    /// Connection settings.
    pub connect: ConnectSettings,
    /// Topic name.
    pub topic: String,
    /// Payload source.
    pub source: Source,
    /// QoS.
    pub qos: Qos,
    /// Retain flag.
    pub retain: bool,
    /// How many times to send a single message.
    pub repeat: u64,
    /// Pause between repeats.
    pub repeat_delay: std::time::Duration,
    /// 5.0 properties.
    pub properties: PublishOptions,
}

impl PublishPlan {
    /// Validates the arguments of `canopy pub`.
    pub fn from_args(args: &PubArgs) -> Result<Self, CliError> {
        let connect = ConnectSettings::from_args(&args.connect)?;
        let topic = args
            .topic
            .clone()
            .or_else(|| args.connect.url.as_ref().and_then(|url| url.topic.clone()))
            .ok_or_else(|| CliError::Usage("a topic is required (-t)".into()))?;
        if !rumqttc::valid_topic(&topic) || topic.is_empty() {
            return Err(CliError::Usage(format!(
                "invalid topic `{topic}`: a topic name must be non-empty and contain no + or #"
            )));
        }
        let v5 = connect.version == ProtocolVersion::V5;
        let v5_only: [(bool, &'static str); 5] = [
            (!args.user_properties.is_empty(), "--user-property (-U)"),
            (args.content_type.is_some(), "--content-type"),
            (args.response_topic.is_some(), "--response-topic"),
            (args.correlation_data.is_some(), "--correlation-data"),
            (args.message_expiry.is_some(), "--message-expiry"),
        ];
        if let Some((_, name)) = v5_only.iter().find(|(given, _)| *given && !v5) {
            return Err(CliError::RequiresV5(name));
        }
        if let Some(response_topic) = &args.response_topic
            && (!rumqttc::valid_topic(response_topic) || response_topic.is_empty())
        {
            return Err(CliError::Usage(format!(
                "invalid response topic `{response_topic}`"
            )));
        }
        if args.repeat == 0 {
            return Err(CliError::Usage("--repeat must be at least 1".into()));
        }
        let source = if let Some(message) = &args.message {
            Source::Message(Bytes::from(message.clone().into_bytes()))
        } else if args.null_message {
            Source::Null
        } else if let Some(file) = &args.file {
            Source::File(file.clone())
        } else if args.stdin_line {
            Source::StdinLines
        } else {
            Source::StdinAll
        };
        Ok(Self {
            connect,
            topic,
            source,
            qos: args.qos,
            retain: args.retain,
            repeat: args.repeat,
            repeat_delay: args.repeat_delay,
            properties: PublishOptions {
                user_properties: args.user_properties.clone(),
                content_type: args.content_type.clone(),
                response_topic: args.response_topic.clone(),
                correlation_data: args
                    .correlation_data
                    .as_ref()
                    .map(|data| Bytes::from(data.clone().into_bytes())),
                message_expiry: args.message_expiry,
            },
        })
    }

    fn message(&self, payload: Bytes) -> OutgoingMessage {
        OutgoingMessage {
            topic: self.topic.clone(),
            payload,
            qos: self.qos,
            retain: self.retain,
            properties: self.properties.clone(),
        }
    }
}

/// Runs `canopy pub` to completion.
pub async fn run(plan: PublishPlan) -> Result<(), CliError> {
    // Single payloads are read before connecting, so a missing file never touches the network.
    let single = match &plan.source {
        Source::Message(bytes) => Some(bytes.clone()),
        Source::Null => Some(Bytes::new()),
        // Read once, before any network activity; blocking here delays nothing else.
        Source::File(path) => Some(Bytes::from(std::fs::read(path).map_err(|source| {
            CliError::Input {
                what: path.display().to_string(),
                source,
            }
        })?)),
        Source::StdinAll => {
            let mut buf = Vec::new();
            tokio::io::stdin()
                .read_to_end(&mut buf)
                .await
                .map_err(|source| CliError::Input {
                    what: "stdin".into(),
                    source,
                })?;
            Some(Bytes::from(buf))
        }
        Source::StdinLines => None,
    };
    let (mut link, session_present, _) = Link::open(&plan.connect).await?;
    tracing::debug!(session_present, addr = link.addr(), "connected");

    let mut producer = tokio::spawn(produce(link.sender(), plan, single));
    let mut expected: Option<u64> = None;
    let mut completed: u64 = 0;
    while expected != Some(completed) {
        tokio::select! {
            joined = &mut producer, if expected.is_none() => {
                let produced = joined
                    .map_err(|e| CliError::ConnectionLost(format!("publisher task failed: {e}")))?;
                match produced {
                    Ok(count) => expected = Some(count),
                    Err(error) => return Err(pending_failure(&mut link).await.unwrap_or(error)),
                }
            }
            event = link.next_event() => match event {
                Some(LinkEvent::PubAck(code) | LinkEvent::PubComp(code)) if code < 0x80 => {
                    completed += 1;
                }
                Some(LinkEvent::PubAck(code) | LinkEvent::PubRec(code) | LinkEvent::PubComp(code)) if code >= 0x80 => {
                    return Err(CliError::PublishRefused { code });
                }
                Some(LinkEvent::Failed(failure)) => {
                    return Err(failure.into_error(link.addr().to_owned()));
                }
                Some(_) => {}
                None => return Err(CliError::ConnectionLost("event loop stopped".into())),
            }
        }
    }
    link.disconnect().await
}

/// After the producer failed to queue a message, the driver's own explanation if it has one.
async fn pending_failure(link: &mut Link) -> Option<CliError> {
    while let Some(event) = link.next_event().await {
        if let LinkEvent::Failed(failure) = event {
            return Some(failure.into_error(link.addr().to_owned()));
        }
    }
    None
}

/// Queues every message; returns how many need an acknowledgement (QoS 1 or 2).
async fn produce(
    sender: Sender,
    plan: PublishPlan,
    single: Option<Bytes>,
) -> Result<u64, CliError> {
    let acked_each = u64::from(plan.qos != Qos::AtMostOnce);
    let mut count = 0u64;
    match single {
        Some(payload) => {
            for i in 0..plan.repeat {
                if i > 0 && !plan.repeat_delay.is_zero() {
                    tokio::time::sleep(plan.repeat_delay).await;
                }
                sender.publish(plan.message(payload.clone())).await?;
                count += acked_each;
            }
        }
        None => {
            let mut lines = BufReader::new(tokio::io::stdin()).split(b'\n');
            while let Some(mut line) =
                lines
                    .next_segment()
                    .await
                    .map_err(|source| CliError::Input {
                        what: "stdin".into(),
                        source,
                    })?
            {
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                sender.publish(plan.message(Bytes::from(line))).await?;
                count += acked_each;
            }
        }
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser;

    fn plan(args: &[&str]) -> Result<PublishPlan, CliError> {
        let cli = Cli::try_parse_from(args).unwrap();
        match cli.command {
            Command::Pub(args) => PublishPlan::from_args(&args),
            _ => panic!("not pub"),
        }
    }

    #[test]
    fn source_defaults_to_all_of_stdin() {
        assert_eq!(
            plan(&["canopy", "pub", "-t", "a"]).unwrap().source,
            Source::StdinAll
        );
        assert_eq!(
            plan(&["canopy", "pub", "-t", "a", "-l"]).unwrap().source,
            Source::StdinLines
        );
        assert_eq!(
            plan(&["canopy", "pub", "-t", "a", "-n"]).unwrap().source,
            Source::Null
        );
        assert_eq!(
            plan(&["canopy", "pub", "-t", "a", "-m", "hi"])
                .unwrap()
                .source,
            Source::Message(Bytes::from_static(b"hi"))
        );
    }

    #[test]
    fn five_only_properties_are_refused_on_3_1_1() {
        for extra in [
            &["-U", "k=v"][..],
            &["--content-type", "text/plain"],
            &["--response-topic", "r"],
            &["--correlation-data", "c"],
            &["--message-expiry", "5"],
        ] {
            let mut args = vec!["canopy", "pub", "-t", "a", "-m", "x"];
            args.extend_from_slice(extra);
            assert!(
                matches!(plan(&args), Err(CliError::RequiresV5(_))),
                "{extra:?} accepted on 3.1.1"
            );
            args.extend_from_slice(&["-V", "5"]);
            assert!(plan(&args).is_ok(), "{extra:?} refused on 5.0");
        }
    }

    #[test]
    fn wildcards_and_empty_topics_cannot_be_published_to() {
        // [MQTT-3.3.2-2] The Topic Name in the PUBLISH packet MUST NOT contain wildcards.
        for topic in ["a/+", "a/#", ""] {
            assert!(matches!(
                plan(&["canopy", "pub", "-t", topic, "-m", "x"]),
                Err(CliError::Usage(_))
            ));
        }
    }

    #[test]
    fn url_path_supplies_the_topic_when_t_is_absent() {
        let p = plan(&["canopy", "pub", "--url", "mqtt://h:2/x/y", "-m", "m"]).unwrap();
        assert_eq!(p.topic, "x/y");
        assert_eq!((p.connect.host.as_str(), p.connect.port), ("h", 2));
        assert!(matches!(
            plan(&["canopy", "pub", "-m", "m"]),
            Err(CliError::Usage(_))
        ));
    }

    #[test]
    fn repeat_zero_is_refused() {
        assert!(plan(&["canopy", "pub", "-t", "a", "-m", "x", "--repeat", "0"]).is_err());
    }
}
