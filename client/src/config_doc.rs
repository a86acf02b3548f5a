//! `canopy config get|set`: configuration documents at `$config/<client-id>` (SPEC §5).
//!
//! Owns the translation of [`ConfigGetArgs`] / [`ConfigSetArgs`] into the subscribe and publish
//! plans of [`crate::subscribe`] and [`crate::publish`], which do the network work, and the
//! wording of a refused write. It must never decide access itself: the broker lets only admins
//! write and lets a client read only its own document (or `$config/default`).

use bytes::Bytes;

use crate::cli::{
    ConfigAction, ConfigArgs, ConfigGetArgs, ConfigSetArgs, OutputFormat, ProtocolVersion, Qos,
};
use crate::error::CliError;
use crate::link::{FilterRequest, PublishOptions, SubscribeRequest};
use crate::options::ConnectSettings;
use crate::publish::{PublishPlan, Source};
use crate::subscribe::SubscribePlan;

pub use canopy_model::config_doc::CONFIG_PREFIX;

/// How long `canopy config get` waits for a document when neither -W nor --watch is given.
pub const DEFAULT_GET_TIMEOUT_SECS: u64 = 5;

/// Role tag in generated client ids (`canopycfg…`).
const ROLE: &str = "cfg";

/// The topic of `client`'s document; refuses ids that cannot be part of a topic name.
pub fn config_topic(client: &str) -> Result<String, CliError> {
    if client.is_empty() {
        return Err(CliError::Usage("the client id must not be empty".into()));
    }
    let topic = canopy_model::config_doc::config_topic(client);
    if !rumqttc::valid_topic(&topic) {
        return Err(CliError::Usage(format!(
            "client id `{client}` cannot name a topic (it contains + or #)"
        )));
    }
    Ok(topic)
}

/// What `canopy config get` will do: one subscription to the document's topic.
pub fn get_plan(args: &ConfigGetArgs) -> Result<SubscribePlan, CliError> {
    let connect = ConnectSettings::from_args(&args.connect, ROLE)?;
    let whose = match (&args.for_client, args.connect.id.as_deref()) {
        (Some(client), _) => client.clone(),
        (None, Some(own)) if !own.is_empty() => own.to_owned(),
        _ => {
            return Err(CliError::Usage(
                "say whose document to read: -i ID (your own) or --for CLIENT".into(),
            ));
        }
    };
    let topic = config_topic(&whose)?;
    let timeout = match (args.timeout, args.watch) {
        (Some(secs), _) => Some(secs),
        (None, true) => None,
        (None, false) => Some(DEFAULT_GET_TIMEOUT_SECS),
    };
    Ok(SubscribePlan {
        connect,
        request: SubscribeRequest {
            filters: vec![FilterRequest {
                filter: topic,
                qos: Qos::AtLeastOnce,
                no_local: false,
                retain_as_published: false,
                retain_handling: 0,
            }],
            subscription_id: None,
            user_properties: Vec::new(),
        },
        count: (!args.watch).then_some(1),
        timeout: timeout.map(std::time::Duration::from_secs),
        skip_retained: false,
        format: args.format.unwrap_or(OutputFormat::Payload),
        newline: true,
    })
}

/// What `canopy config set` will do: one retained QoS 1 PUBLISH to the document's topic.
pub fn set_plan(args: &ConfigSetArgs) -> Result<PublishPlan, CliError> {
    let connect = ConnectSettings::from_args(&args.connect, ROLE)?;
    if args.content_type.is_some() && connect.version != ProtocolVersion::V5 {
        return Err(CliError::RequiresV5("--content-type"));
    }
    let topic = config_topic(&args.for_client)?;
    let source = match (&args.message, &args.file) {
        (Some(text), _) => Source::Message(Bytes::from(text.clone().into_bytes())),
        (None, Some(path)) => Source::File(path.clone()),
        (None, None) if args.null_message => Source::Null,
        (None, None) => {
            return Err(CliError::Usage(
                "give the document with -m TEXT or -f FILE (or -n to remove it)".into(),
            ));
        }
    };
    Ok(PublishPlan {
        connect,
        topic,
        source,
        qos: Qos::AtLeastOnce,
        retain: true,
        repeat: 1,
        repeat_delay: std::time::Duration::ZERO,
        properties: PublishOptions {
            content_type: args.content_type.clone(),
            ..PublishOptions::default()
        },
    })
}

/// Runs `canopy config get` or `canopy config set`.
pub async fn run(args: ConfigArgs) -> Result<(), CliError> {
    match args.action {
        // With --watch, -W is how long to watch: reaching it is the expected end.
        ConfigAction::Get(get) if get.watch => match crate::subscribe::run(get_plan(&get)?).await {
            Err(CliError::Timeout) => Ok(()),
            other => other,
        },
        ConfigAction::Get(get) => crate::subscribe::run(get_plan(&get)?).await,
        ConfigAction::Set(set) => {
            let plan = set_plan(&set)?;
            let topic = plan.topic.clone();
            match crate::publish::run(plan).await {
                Err(CliError::PublishRefused { code }) => {
                    Err(CliError::ConfigWriteRefused { topic, code })
                }
                other => other,
            }
        }
    }
}

#[cfg(test)]
#[path = "config_doc_tests.rs"]
mod tests;
