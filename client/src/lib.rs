//! canopy-client: the reusable parts of the `canopy` command line, over rumqttc.
//!
//! - [`cli`]: the clap grammar of `canopy pub` / `canopy sub` (mosquitto_pub/sub compatible)
//!   and `canopy config`;
//! - [`url`]: `mqtt://` broker URLs;
//! - [`options`]: validated connection settings and rumqttc `MqttOptions` for 3.1.1 and 5.0;
//! - [`adapter`]: the workspace's one rumqttc adapter (3.1.1 and 5.0 behind one face, reconnect
//!   backoff), also used by the metabroker and the integration tests;
//! - [`link`]: one CLI connection whose event loop runs in its own task;
//! - [`format`]: how received messages are printed (payload, `-v`, JSON);
//! - [`publish`] / [`subscribe`]: the two commands' flows;
//! - [`config_doc`]: `canopy config get|set`, built on those two flows;
//! - [`cluster`]: `canopy cluster status|assign|drain`;
//! - [`resource`]: `canopy resource acquire|reserve|status`;
//! - [`passwd`]: `canopy passwd`, the broker password file editor;
//! - [`presence`]: `canopy presence set|watch|allow`;
//! - [`presence_agent`]: the device-side presence agent for brokers without one;
//! - [`redirect`]: following Server Reference (CONNACK and DISCONNECT 0x9C/0x9D);
//! - [`reason`]: MQTT reason code names; [`error`]: the error type and exit statuses.
//!
//! This crate must never publish from the task that polls a rumqttc event loop (see [`link`]).
#![warn(missing_docs)]

pub mod adapter;
pub mod cli;
pub mod cluster;
pub mod config_doc;
pub mod error;
pub mod format;
pub mod link;
pub mod options;
pub mod passwd;
pub mod presence;
pub mod presence_agent;
pub mod publish;
pub mod reason;
pub mod redirect;
pub mod resource;
pub mod subscribe;
pub mod url;

pub use error::CliError;
