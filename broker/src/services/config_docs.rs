//! Configuration documents (SPEC §5): `$config/<client-id>`, written by admins and read
//! by their own client, with `$config/default` for clients that have none.
//!
//! Owns the set of clients subscribed to exactly their own document. When such a
//! client has no document, it receives `$config/default` on its own topic at once and
//! whenever the default changes. Who may read and write these topics is the access
//! seam's decision (`crate::access`), not this module's; it publishes nothing itself,
//! it only delivers copies of the default through its [`Host`].

use std::collections::HashSet;
use std::sync::Arc;

use canopy_proto::{QoS, TopicName};

use super::{ClientInfo, Disposition, Host, Service};
use crate::message::Message;

pub use canopy_model::config_doc::{CONFIG_DEFAULT, CONFIG_PREFIX};

/// Delivers `$config/default` to clients without a document of their own.
#[derive(Debug, Default)]
pub struct ConfigDocs {
    /// Clients subscribed to exactly their own `$config/<client-id>`.
    watchers: HashSet<Arc<str>>,
}

impl ConfigDocs {
    /// No watchers yet.
    pub fn new() -> ConfigDocs {
        ConfigDocs::default()
    }
}

/// `client_id`'s own document topic.
fn own_topic(client_id: &str) -> Option<TopicName> {
    TopicName::new(&format!("{CONFIG_PREFIX}{client_id}")).ok()
}

/// Offers `default` to `client_id` as if published on its own topic.
fn deliver_default(
    host: &mut dyn Host,
    client_id: &str,
    default: &Message,
    own: TopicName,
    qos: QoS,
    retain: bool,
) {
    let copy = Arc::new(Message {
        topic: own,
        ..default.clone()
    });
    host.deliver(client_id, copy, qos.min(default.qos), retain);
}

impl Service for ConfigDocs {
    fn name(&self) -> &'static str {
        "config"
    }

    fn topics(&self) -> &[&'static str] {
        &[CONFIG_PREFIX]
    }

    /// A client subscribed to its own document: remember it, and if it has none,
    /// deliver the default on its own topic (retained, as a new subscription would).
    fn on_subscribe(&mut self, host: &mut dyn Host, client: &ClientInfo, filter: &str, qos: QoS) {
        if filter.strip_prefix(CONFIG_PREFIX) != Some(&*client.client_id) {
            return;
        }
        self.watchers.insert(client.client_id.clone());
        let Some(own) = own_topic(&client.client_id) else {
            return;
        };
        if host.retained(&own).is_some() {
            return;
        }
        let default = TopicName::new(CONFIG_DEFAULT)
            .ok()
            .and_then(|t| host.retained(&t));
        if let Some(msg) = default {
            deliver_default(host, &client.client_id, &msg, own, qos, true);
        }
    }

    fn on_unsubscribe(&mut self, _host: &mut dyn Host, client: &ClientInfo, filter: &str) {
        if filter.strip_prefix(CONFIG_PREFIX) == Some(&*client.client_id) {
            self.watchers.remove(&client.client_id);
        }
    }

    fn on_session_end(&mut self, _host: &mut dyn Host, client_id: &str) {
        self.watchers.remove(client_id);
    }

    /// A new `$config/default`: every watcher without a document of its own receives
    /// it on its own topic.
    fn on_publish(
        &mut self,
        host: &mut dyn Host,
        _from: Option<&ClientInfo>,
        msg: &Arc<Message>,
    ) -> Disposition {
        if msg.topic.as_str() != CONFIG_DEFAULT {
            return Disposition::Route;
        }
        let mut gone = Vec::new();
        for client_id in &self.watchers {
            let Some(own) = own_topic(client_id) else {
                continue;
            };
            if host.retained(&own).is_some() {
                continue;
            }
            match host.subscription_qos(client_id, own.as_str()) {
                Some(qos) => deliver_default(host, client_id, msg, own, qos, false),
                None => gone.push(client_id.clone()),
            }
        }
        for id in gone {
            self.watchers.remove(&id);
        }
        Disposition::Route
    }
}
