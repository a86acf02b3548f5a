//! One CLI connection over the rumqttc [`adapter`](crate::adapter), 3.1.1 or 5.0 behind the
//! same face, in the CLI's terms (its [`Qos`], [`Message`] and [`CliError`]).
//!
//! Owns the adapter's [`Connection`]: it is polled in a task of its own (the driver), which
//! turns adapter events into [`LinkEvent`]s on a bounded channel. Callers publish, subscribe and
//! disconnect only through the `AsyncClient` half. The driver must never publish or subscribe
//! itself: rumqttc deadlocks when the task that polls the event loop also waits on its request
//! channel (ARCHITECTURE.md, "what not to copy").

use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::adapter::{self, Client, Connection, Event, FailureKind};
use crate::cli::{ProtocolVersion, Qos};
use crate::error::CliError;
use crate::format::Message;
use crate::options::{ConnectSettings, v5_qos};
use crate::redirect;

/// Capacity of the driver-to-caller event channel; a full channel pauses the driver, which
/// pauses reading the socket, so a slow stdout cannot grow memory.
const EVENT_CAPACITY: usize = 256;
/// How long a clean disconnect may take before the caller gives up on it.
const DISCONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// What happened on the connection, in the order it happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkEvent {
    /// CONNACK with success.
    Connected {
        /// The broker kept a session for this client id.
        session_present: bool,
    },
    /// An application message arrived.
    Message(Message),
    /// PUBACK for a QoS 1 publish (reason code 0 on 3.1.1).
    PubAck(u8),
    /// PUBREC for a QoS 2 publish.
    PubRec(u8),
    /// PUBCOMP ending a QoS 2 publish.
    PubComp(u8),
    /// SUBACK with one return/reason code per filter, in request order.
    SubAck(Vec<u8>),
    /// The connection ended with an error; no further events follow.
    Failed(LinkFailure),
}

/// Why the connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkFailure {
    /// TCP connect or CONNACK failed or timed out before the session started.
    Unreachable(String),
    /// The broker refused the connection; the text names the CONNACK code.
    Refused(String),
    /// The broker sent DISCONNECT (5.0); the text names the reason code.
    Disconnected(String),
    /// The broker sent the client elsewhere (CONNACK or DISCONNECT 0x9C/0x9D); the text
    /// names the reason code. [`Link::open`] follows it.
    Redirected(String),
    /// Any other loss of the connection.
    Lost(String),
}

impl LinkFailure {
    /// The library error for this failure at connection `addr`.
    pub fn into_error(self, addr: String) -> CliError {
        match self {
            Self::Unreachable(reason) => CliError::Unreachable { addr, reason },
            Self::Refused(reason) => CliError::Refused(reason),
            Self::Disconnected(reason) => {
                CliError::ConnectionLost(format!("the broker disconnected: {reason}"))
            }
            Self::Redirected(reason) => CliError::Refused(format!("{reason} (not followed)")),
            Self::Lost(reason) => CliError::ConnectionLost(reason),
        }
    }
}

/// A message to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingMessage {
    /// Topic name (validated by the caller).
    pub topic: String,
    /// Payload.
    pub payload: Bytes,
    /// QoS.
    pub qos: Qos,
    /// Retain flag.
    pub retain: bool,
    /// 5.0 properties; must be default on a 3.1.1 link.
    pub properties: PublishOptions,
}

/// 5.0 PUBLISH properties set from the command line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PublishOptions {
    /// User properties.
    pub user_properties: Vec<(String, String)>,
    /// Content type.
    pub content_type: Option<String>,
    /// Response topic.
    pub response_topic: Option<String>,
    /// Correlation data.
    pub correlation_data: Option<Bytes>,
    /// Message expiry interval in seconds.
    pub message_expiry: Option<u32>,
}

/// One topic filter with its subscription options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterRequest {
    /// Topic filter.
    pub filter: String,
    /// Maximum QoS.
    pub qos: Qos,
    /// 5.0 No Local.
    pub no_local: bool,
    /// 5.0 Retain As Published.
    pub retain_as_published: bool,
    /// 5.0 Retain Handling (0, 1 or 2).
    pub retain_handling: u8,
}

/// A SUBSCRIBE request: filters plus 5.0 properties.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubscribeRequest {
    /// Filters, in order; SUBACK codes come back in the same order.
    pub filters: Vec<FilterRequest>,
    /// 5.0 subscription identifier.
    pub subscription_id: Option<u32>,
    /// 5.0 user properties.
    pub user_properties: Vec<(String, String)>,
}

/// The request half of a connection; cheap to clone into a producer task.
#[derive(Debug, Clone)]
pub struct Sender(Client);

/// A running connection: the request half plus the driver's events.
#[derive(Debug)]
pub struct Link {
    sender: Sender,
    events: mpsc::Receiver<LinkEvent>,
    driver: JoinHandle<()>,
    addr: String,
}

impl Link {
    /// Starts connecting in the background (must be called inside a tokio runtime). The first
    /// event is [`LinkEvent::Connected`] or [`LinkEvent::Failed`].
    pub fn start(settings: &ConnectSettings) -> Self {
        let (tx, events) = mpsc::channel(EVENT_CAPACITY);
        let (client, connection) = settings.adapter_options().connect();
        let v5 = settings.version == ProtocolVersion::V5;
        let driver = tokio::spawn(drive(connection, v5, tx));
        let sender = Sender(client);
        Self {
            sender,
            events,
            driver,
            addr: settings.addr(),
        }
    }

    /// Connects as [`Link::start`] and waits for the CONNACK, following Server Reference
    /// (CONNACK 0x9C/0x9D, see [`crate::redirect`]) at most
    /// [`MAX_REDIRECTS`](crate::redirect::MAX_REDIRECTS) times without loops. Returns the
    /// link, whether a session was present, and the settings that reached the broker.
    pub async fn open(
        settings: &ConnectSettings,
    ) -> Result<(Self, bool, ConnectSettings), CliError> {
        let mut chain = redirect::Chain::default();
        let mut settings = settings.clone();
        loop {
            let mut link = Link::start(&settings);
            match link.next_event().await {
                Some(LinkEvent::Connected { session_present }) => {
                    return Ok((link, session_present, settings));
                }
                Some(LinkEvent::Failed(LinkFailure::Redirected(why))) => {
                    link.driver.abort();
                    settings = redirect::next(&settings, &mut chain, &why).await?;
                }
                Some(LinkEvent::Failed(failure)) => {
                    return Err(failure.into_error(link.addr.clone()));
                }
                Some(other) => {
                    return Err(CliError::ConnectionLost(format!(
                        "unexpected event before CONNACK: {other:?}"
                    )));
                }
                None => return Err(CliError::ConnectionLost("event loop stopped".into())),
            }
        }
    }

    /// `host:port` of the broker, for messages.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// A clone of the request half.
    pub fn sender(&self) -> Sender {
        self.sender.clone()
    }

    /// The next event; `None` once the driver has stopped.
    pub async fn next_event(&mut self) -> Option<LinkEvent> {
        self.events.recv().await
    }

    /// Waits for the CONNACK; returns whether a session was present.
    pub async fn connected(&mut self) -> Result<bool, CliError> {
        match self.next_event().await {
            Some(LinkEvent::Connected { session_present }) => Ok(session_present),
            Some(LinkEvent::Failed(failure)) => Err(failure.into_error(self.addr.clone())),
            Some(other) => Err(CliError::ConnectionLost(format!(
                "unexpected event before CONNACK: {other:?}"
            ))),
            None => Err(CliError::ConnectionLost("event loop stopped".into())),
        }
    }

    /// Sends DISCONNECT after everything queued before it and waits for the driver to write
    /// it, discarding events meanwhile (so the driver is never stuck on a full channel).
    pub async fn disconnect(mut self) -> Result<(), CliError> {
        let queued = self.sender.0.disconnect().await.is_ok();
        if queued {
            let drain = async { while self.events.recv().await.is_some() {} };
            if tokio::time::timeout(DISCONNECT_TIMEOUT, drain)
                .await
                .is_err()
            {
                tracing::warn!("DISCONNECT not written within {DISCONNECT_TIMEOUT:?}");
            }
        }
        self.driver.abort();
        Ok(())
    }
}

impl Sender {
    /// Queues a publish. Fails only when the driver has stopped.
    pub async fn publish(&self, message: OutgoingMessage) -> Result<(), CliError> {
        let p = message.properties;
        let properties = adapter::PublishProperties {
            user_properties: p.user_properties,
            content_type: p.content_type,
            response_topic: p.response_topic,
            correlation_data: p.correlation_data,
            message_expiry_interval: p.message_expiry,
            ..Default::default()
        };
        let publish = adapter::new_publish(
            message.topic,
            v5_qos(message.qos),
            message.retain,
            message.payload,
            Some(properties),
        );
        let sent = self.0.publish(publish);
        sent.await.map_err(|_| closed())
    }

    /// Queues one SUBSCRIBE carrying every filter. Fails only when the driver has stopped.
    pub async fn subscribe(&self, request: SubscribeRequest) -> Result<(), CliError> {
        let filters = request
            .filters
            .iter()
            .map(|f| {
                adapter::filter(
                    f.filter.clone(),
                    v5_qos(f.qos),
                    f.no_local,
                    f.retain_as_published,
                    f.retain_handling,
                )
            })
            .collect();
        let properties = adapter::SubscribeProperties {
            id: request.subscription_id.map(|id| id as usize),
            user_properties: request.user_properties,
        };
        let sent = self.0.subscribe(filters, Some(properties));
        sent.await.map_err(|_| closed())
    }
}

fn closed() -> CliError {
    CliError::ConnectionLost("the connection is closed".into())
}

/// Polls `connection` until DISCONNECT is written, the first failure (reported as
/// [`LinkEvent::Failed`]) or the caller drops its receiver. `v5`: messages carry their
/// properties (a 3.1.1 message has none).
async fn drive(mut connection: Connection, v5: bool, tx: mpsc::Sender<LinkEvent>) {
    let mut connected = false;
    loop {
        let event = match connection.poll().await {
            Ok(Event::ConnAck { session_present }) => {
                connected = true;
                LinkEvent::Connected { session_present }
            }
            Ok(Event::Publish(publish)) => LinkEvent::Message(message(*publish, v5)),
            Ok(Event::PubAck { reason, .. }) => LinkEvent::PubAck(reason),
            Ok(Event::PubRec { reason, .. }) => LinkEvent::PubRec(reason),
            Ok(Event::PubComp { reason, .. }) => LinkEvent::PubComp(reason),
            Ok(Event::SubAck { codes, .. }) => LinkEvent::SubAck(codes),
            Ok(Event::OutgoingDisconnect) => break,
            Ok(_) => continue,
            Err(failure) => {
                let failure = match failure.kind {
                    FailureKind::Refused(code) => LinkFailure::Refused(code),
                    FailureKind::Disconnected(reason) => LinkFailure::Disconnected(reason),
                    FailureKind::Redirected(reason) => LinkFailure::Redirected(reason),
                    FailureKind::Lost if !connected => LinkFailure::Unreachable(failure.message),
                    FailureKind::Lost => LinkFailure::Lost(failure.message),
                };
                let _ = tx.send(LinkEvent::Failed(failure)).await;
                break;
            }
        };
        if tx.send(event).await.is_err() {
            break;
        }
    }
}

fn message(publish: adapter::Publish, v5: bool) -> Message {
    let properties = v5.then(|| {
        let props = publish.properties.unwrap_or_default();
        crate::format::MessageProperties {
            user_properties: props.user_properties,
            content_type: props.content_type,
            response_topic: props.response_topic,
            correlation_data: props.correlation_data,
            message_expiry: props.message_expiry_interval,
            subscription_ids: props.subscription_identifiers,
        }
    });
    Message {
        topic: String::from_utf8_lossy(&publish.topic).into_owned(),
        payload: publish.payload,
        qos: publish.qos as u8,
        retain: publish.retain,
        properties,
    }
}
