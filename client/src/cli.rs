//! Command-line grammar of `canopy pub` and `canopy sub`, modelled on mosquitto_pub and
//! mosquitto_sub so their users find the flags where they expect them, and of `canopy config`,
//! which reuses their connection options, and of `canopy passwd`.
//!
//! Owns only parsing (clap derive structs and value parsers). It must never touch the network,
//! the file system or stdin: turning arguments into connection settings and publish or
//! subscribe plans happens in [`crate::options`], [`crate::publish`] and [`crate::subscribe`].

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use clap::{ArgAction, ArgGroup, Args, Parser, Subcommand, ValueEnum};

use crate::url::BrokerUrl;

/// Top level of the `canopy` command line.
#[derive(Debug, Parser)]
#[command(
    name = "canopy",
    version,
    about = "Command-line client for the Canopy MQTT broker"
)]
pub struct Cli {
    /// Log filter as a tracing `EnvFilter` directive (for example `debug` or
    /// `rumqttc=trace`). When absent, `RUST_LOG` is used, and `warn,rumqttc=error` when that
    /// is unset too.
    #[arg(long, global = true, value_name = "DIRECTIVE")]
    pub log_level: Option<String>,
    /// The subcommand to run.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands. `-h` means `--host` in each, as in mosquitto_pub/sub; help is `--help`.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Publish one or more messages, like mosquitto_pub.
    #[command(disable_help_flag = true)]
    Pub(PubArgs),
    /// Subscribe to topic filters and print what arrives, like mosquitto_sub.
    #[command(disable_help_flag = true)]
    Sub(SubArgs),
    /// Read or write configuration documents (`$config/<client-id>`).
    Config(ConfigArgs),
    /// Acquire, reserve or inspect scarce resources (`$resource/<name>/...`).
    Resource(crate::resource::ResourceArgs),
    /// Publish a device's presence, watch a user's, allow a watcher (`$presence/...`).
    Presence(crate::presence::PresenceArgs),
    /// Add, change or delete a user in a broker password file (`[auth] password_file`).
    Passwd(PasswdArgs),
    /// Watch a cluster's nodes, pin a client to a node, drain a node (`$cluster/...`).
    Cluster(crate::cluster::ClusterArgs),
}

/// Arguments of `canopy passwd`, like mosquitto_passwd.
#[derive(Debug, Clone, Args)]
#[command(
    after_help = "Examples:\n  canopy passwd -c /etc/canopy/passwd alice   \
(new file; asks twice)\n  echo \"$PW\" | canopy passwd --stdin /etc/canopy/passwd bob\n  \
canopy passwd -D /etc/canopy/passwd bob\nThe broker re-reads the file on SIGHUP."
)]
pub struct PasswdArgs {
    /// Create FILE, replacing any existing file.
    #[arg(short = 'c', long, conflicts_with = "delete")]
    pub create: bool,
    /// Delete USER from FILE.
    #[arg(short = 'D', long, conflicts_with = "stdin")]
    pub delete: bool,
    /// Read the password from the first line of stdin instead of asking twice on the terminal.
    #[arg(long)]
    pub stdin: bool,
    /// The password file (`user:argon2id-hash` lines).
    pub file: PathBuf,
    /// The user name.
    pub user: String,
}

/// Arguments of `canopy config`: one of its subcommands.
#[derive(Debug, Clone, Args)]
pub struct ConfigArgs {
    /// `get` or `set`.
    #[command(subcommand)]
    pub action: ConfigAction,
}

/// The subcommands of `canopy config`.
#[derive(Debug, Clone, Subcommand)]
pub enum ConfigAction {
    /// Print a client's configuration document (your own unless --for names another client;
    /// `$config/default` arrives when the client has none).
    #[command(disable_help_flag = true)]
    Get(ConfigGetArgs),
    /// Write a client's configuration document, retained at QoS 1 (admins only).
    #[command(disable_help_flag = true)]
    Set(ConfigSetArgs),
}

/// Arguments of `canopy config get`.
#[derive(Debug, Clone, Args)]
pub struct ConfigGetArgs {
    /// Connection options; `-i` is the client whose document is read unless --for is given.
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// Read this client's document instead of your own (admins only), or `default`.
    #[arg(long = "for", value_name = "CLIENT")]
    pub for_client: Option<String>,
    /// Exit with status 27 when no document arrives within this many seconds. Default 5. With
    /// --watch: watch for this many seconds, then exit 0 (default: no limit).
    #[arg(short = 'W', long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout: Option<u64>,
    /// Stay subscribed and print every new version of the document as it is written.
    #[arg(long)]
    pub watch: bool,
    /// Output format (`json` also shows the 5.0 content type).
    #[arg(short = 'F', long, value_enum, value_name = "FORMAT")]
    pub format: Option<OutputFormat>,
}

/// Arguments of `canopy config set`.
#[derive(Debug, Clone, Args)]
#[command(group(ArgGroup::new("document").args(["message", "file", "null_message"]).required(true).multiple(false)))]
pub struct ConfigSetArgs {
    /// Connection options; `-i` must be an admin's client id.
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// The client whose document is written, or `default` for clients without one.
    #[arg(long = "for", value_name = "CLIENT")]
    pub for_client: String,
    /// The document's text.
    #[arg(short = 'm', long)]
    pub message: Option<String>,
    /// Send the whole content of FILE as the document.
    #[arg(short = 'f', long, value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// Remove the document (an empty retained message).
    #[arg(short = 'n', long = "null-message")]
    pub null_message: bool,
    /// 5.0 content type of the document, such as `application/json` (requires -V 5).
    #[arg(long, value_name = "TYPE")]
    pub content_type: Option<String>,
}

/// MQTT protocol version spoken to the broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProtocolVersion {
    /// MQTT 3.1.1 (protocol level 4), the default as in mosquitto's clients.
    V311,
    /// MQTT 5.0 (protocol level 5).
    V5,
}

impl FromStr for ProtocolVersion {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "3.1.1" | "311" | "mqttv311" | "4" => Ok(Self::V311),
            "5" | "5.0" | "mqttv5" | "mqttv50" => Ok(Self::V5),
            other => Err(format!(
                "unsupported protocol version `{other}` (use 3.1.1, mqttv311, 311, 5 or mqttv5)"
            )),
        }
    }
}

/// Quality of service level, 0, 1 or 2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Qos {
    /// QoS 0, at most once.
    AtMostOnce,
    /// QoS 1, at least once: completed by PUBACK.
    AtLeastOnce,
    /// QoS 2, exactly once: completed by PUBCOMP.
    ExactlyOnce,
}

impl Qos {
    /// The numeric level (0, 1 or 2).
    pub fn level(self) -> u8 {
        match self {
            Self::AtMostOnce => 0,
            Self::AtLeastOnce => 1,
            Self::ExactlyOnce => 2,
        }
    }
}

impl FromStr for Qos {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "0" => Ok(Self::AtMostOnce),
            "1" => Ok(Self::AtLeastOnce),
            "2" => Ok(Self::ExactlyOnce),
            other => Err(format!("QoS must be 0, 1 or 2, not `{other}`")),
        }
    }
}

/// Output format of `canopy sub`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// The payload only (mosquitto_sub's default).
    Payload,
    /// The topic only.
    Topic,
    /// Topic, a space, then the payload (mosquitto_sub -v).
    Verbose,
    /// One JSON object per message.
    Json,
}

/// Connection options shared by every subcommand.
#[derive(Debug, Clone, Args)]
pub struct ConnectArgs {
    /// Broker host name or IP address.
    #[arg(short = 'h', long, default_value = "localhost")]
    pub host: String,
    /// Broker TCP port.
    #[arg(short = 'p', long, default_value_t = 1883)]
    pub port: u16,
    /// Broker URL `mqtt://[user[:password]@]host[:port][/topic]`; overrides -h/-p (and -u/-P,
    /// and supplies the topic when -t is absent).
    #[arg(short = 'L', long, value_name = "URL", value_parser = parse_url)]
    pub url: Option<BrokerUrl>,
    /// MQTT version: 3.1.1 (also mqttv311, 311) or 5 (also mqttv5).
    #[arg(
        short = 'V',
        long = "protocol-version",
        default_value = "3.1.1",
        value_name = "VERSION"
    )]
    pub protocol_version: ProtocolVersion,
    /// Client identifier. Default: empty, so the broker assigns one (3.1.1 and 5.0; -c
    /// needs -i).
    #[arg(short = 'i', long = "id", value_name = "ID")]
    pub id: Option<String>,
    /// User name.
    #[arg(short = 'u', long)]
    pub username: Option<String>,
    /// Password (requires a user name).
    #[arg(short = 'P', long = "pw", value_name = "PASSWORD")]
    pub password: Option<String>,
    /// Keep-alive interval in seconds (5.0: at least 5; 3.1.1: 0 disables).
    #[arg(short = 'k', long, default_value_t = 60, value_name = "SECS")]
    pub keepalive: u16,
    /// Ask for a persistent session (clean session / clean start off). Requires -i.
    #[arg(short = 'c', long = "disable-clean-session")]
    pub disable_clean_session: bool,
    /// 5.0 session expiry interval in seconds; `-1`, `inf` or 4294967295 for never.
    /// Defaults to never with -c and to 0 without.
    #[arg(short = 'x', long = "session-expiry", value_name = "SECS", allow_hyphen_values = true, value_parser = parse_session_expiry)]
    pub session_expiry: Option<u32>,
    /// Topic of the will message.
    #[arg(long, value_name = "TOPIC")]
    pub will_topic: Option<String>,
    /// Payload of the will message (empty when absent).
    #[arg(long, value_name = "PAYLOAD", requires = "will_topic")]
    pub will_payload: Option<String>,
    /// QoS of the will message.
    #[arg(long, value_name = "QOS", default_value = "0")]
    pub will_qos: Qos,
    /// Retain the will message.
    #[arg(long, requires = "will_topic")]
    pub will_retain: bool,
    /// Seconds to wait for the TCP connection and the CONNACK.
    #[arg(long, default_value_t = 10, value_name = "SECS")]
    pub connect_timeout: u64,
    /// Print help.
    #[arg(long, action = ArgAction::Help)]
    pub help: Option<bool>,
}

/// Arguments of `canopy pub`.
#[derive(Debug, Clone, Args)]
#[command(group(ArgGroup::new("source").args(["message", "file", "stdin_file", "stdin_line", "null_message"]).multiple(false)))]
pub struct PubArgs {
    /// Connection options.
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// Topic to publish to.
    #[arg(short = 't', long)]
    pub topic: Option<String>,
    /// Message payload.
    #[arg(short = 'm', long)]
    pub message: Option<String>,
    /// Send the whole content of FILE as one message.
    #[arg(short = 'f', long, value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// Read all of stdin and send it as one message (also the default without -m/-f/-l/-n).
    #[arg(short = 's', long = "stdin-file")]
    pub stdin_file: bool,
    /// Send each line of stdin as a separate message.
    #[arg(short = 'l', long = "stdin-line", conflicts_with = "repeat")]
    pub stdin_line: bool,
    /// Send an empty (zero-length) message.
    #[arg(short = 'n', long = "null-message")]
    pub null_message: bool,
    /// Quality of service.
    #[arg(short = 'q', long, default_value = "0")]
    pub qos: Qos,
    /// Ask the broker to retain the message.
    #[arg(short = 'r', long)]
    pub retain: bool,
    /// Publish the message this many times.
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub repeat: u64,
    /// Seconds (fractions allowed) to wait between repeated messages.
    #[arg(long, default_value = "0", value_name = "SECS", value_parser = parse_seconds)]
    pub repeat_delay: Duration,
    /// 5.0 user property `key=value` (repeatable).
    #[arg(short = 'U', long = "user-property", value_name = "KEY=VALUE", value_parser = parse_user_property)]
    pub user_properties: Vec<(String, String)>,
    /// 5.0 content type.
    #[arg(long, value_name = "TYPE")]
    pub content_type: Option<String>,
    /// 5.0 response topic.
    #[arg(long, value_name = "TOPIC")]
    pub response_topic: Option<String>,
    /// 5.0 correlation data (sent as the UTF-8 bytes of the argument).
    #[arg(long, value_name = "DATA")]
    pub correlation_data: Option<String>,
    /// 5.0 message expiry interval in seconds.
    #[arg(long, value_name = "SECS")]
    pub message_expiry: Option<u32>,
}

/// Arguments of `canopy sub`.
#[derive(Debug, Clone, Args)]
pub struct SubArgs {
    /// Connection options.
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// Topic filter to subscribe to (repeatable).
    #[arg(short = 't', long = "topic", value_name = "FILTER")]
    pub topics: Vec<String>,
    /// Maximum QoS of the subscriptions.
    #[arg(short = 'q', long, default_value = "0")]
    pub qos: Qos,
    /// Exit after printing this many messages.
    #[arg(short = 'C', long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub count: Option<u64>,
    /// Exit with status 27 when this many seconds pass before -C is reached.
    #[arg(short = 'W', long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout: Option<u64>,
    /// Do not print messages that carry the retain flag (stale retained messages).
    #[arg(short = 'R', long = "no-retained")]
    pub no_retained: bool,
    /// Print the topic, a space, then the payload (same as -F verbose).
    #[arg(short = 'v', long, conflicts_with = "format")]
    pub verbose: bool,
    /// Output format.
    #[arg(short = 'F', long, value_enum, value_name = "FORMAT")]
    pub format: Option<OutputFormat>,
    /// Do not print a newline after each message.
    #[arg(short = 'N', long = "no-newline")]
    pub no_newline: bool,
    /// 5.0: do not receive messages published by this same connection.
    #[arg(long)]
    pub no_local: bool,
    /// 5.0: keep the retain flag of messages as published instead of clearing it.
    #[arg(long)]
    pub retain_as_published: bool,
    /// 5.0: 0 send retained messages on subscribe, 1 only for new subscriptions, 2 never.
    #[arg(long, value_name = "0|1|2", value_parser = clap::value_parser!(u8).range(0..=2))]
    pub retain_handling: Option<u8>,
    /// 5.0 subscription identifier (1 to 268435455).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=268_435_455))]
    pub sub_id: Option<u32>,
    /// 5.0 user property `key=value` on the SUBSCRIBE packet (repeatable).
    #[arg(short = 'U', long = "user-property", value_name = "KEY=VALUE", value_parser = parse_user_property)]
    pub user_properties: Vec<(String, String)>,
}

impl SubArgs {
    /// The output format chosen by `-F` or `-v`, `payload` when neither is given.
    pub fn output_format(&self) -> OutputFormat {
        match (self.format, self.verbose) {
            (Some(format), _) => format,
            (None, true) => OutputFormat::Verbose,
            (None, false) => OutputFormat::Payload,
        }
    }
}

fn parse_url(s: &str) -> Result<BrokerUrl, String> {
    BrokerUrl::parse(s).map_err(|e| e.to_string())
}

/// Parses `key=value`; the key must be non-empty, the value may be empty or contain `=`.
pub fn parse_user_property(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
        _ => Err(format!("user property must be KEY=VALUE, not `{s}`")),
    }
}

/// Parses a session expiry interval: seconds, or `-1`/`inf`/`never` for "never expires".
pub fn parse_session_expiry(s: &str) -> Result<u32, String> {
    match s {
        "-1" | "inf" | "never" | "∞" => Ok(u32::MAX),
        _ => s
            .parse::<u32>()
            .map_err(|_| format!("session expiry must be 0..=4294967295 or -1, not `{s}`")),
    }
}

/// Parses non-negative seconds with an optional fraction (`0.5`).
pub fn parse_seconds(s: &str) -> Result<Duration, String> {
    s.parse::<f64>()
        .ok()
        .and_then(|secs| Duration::try_from_secs_f64(secs).ok())
        .ok_or_else(|| format!("expected a non-negative number of seconds, not `{s}`"))
}

#[cfg(test)]
#[path = "cli_tests.rs"]
mod tests;
