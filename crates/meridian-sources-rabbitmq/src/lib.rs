//! RabbitMQ source of Meridian: [`RabbitMqSource`] consumes one durable queue with manual
//! acknowledgements, sent only when the runner says the messages are durable in Meridian
//! (see `meridian_sources` for the contract).
//!
//! - **Queue.** `queue` in [`RabbitMqSourceConfig`], declared durable when absent (or only
//!   checked, with `declare = false`), consumed with `basic.qos(prefetch)` and manual acks.
//! - **Id.** The AMQP `message_id` property when the producer set it — **a producer should
//!   set it**, to a value unique per message and kept when it republishes — else the hex
//!   SHA-256 of the payload (then two equal payloads count as one message). RabbitMQ has no
//!   message sequence: the origin's offset is the delivery tag, which numbers deliveries
//!   on one channel (a redelivered message gets a new one), its location the queue.
//! - **Ack.** By delivery tag; when the tokens cover every delivery handed out up to the
//!   highest one (the runner acks whole batches in order), one `basic.ack` with
//!   `multiple` for the highest tag, else one per tag. AMQP 0-9-1 does not confirm acks:
//!   an ack lost with the connection means a redelivery, which Meridian drops as a
//!   duplicate by its id.
//! - **Close.** Closes the channel and the connection: RabbitMQ requeues every delivery not
//!   acknowledged (handed out or only prefetched), in its place in the queue. Dropping the
//!   source (a crash) closes the connection too, with the same effect; a killed process's
//!   socket closes and the broker requeues likewise.
//! - **Lag.** The queue's ready-message count, from a passive `queue.declare`.
//!
//! At-least-once from RabbitMQ plus de-duplication by id in Meridian gives each message
//! counted once, provided producers set `message_id`.
//!
//! Built without TLS (`lapin` without default features: no openssl, no native-tls, no
//! rustls): `amqps://` URLs are refused with that reason.

use futures::{FutureExt, StreamExt};
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{Channel, Connection, ConnectionProperties, Consumer};
use meridian_sources::{payload_id, AckToken, Origin, Result, Source, SourceError, SourceMessage};
use std::collections::BTreeSet;
use std::fmt;
use std::time::Duration;

/// What a [`RabbitMqSource`] reads.
#[derive(Debug, Clone, PartialEq)]
pub struct RabbitMqSourceConfig {
    /// Configured name of the source.
    pub name: String,
    /// AMQP URL (default `amqp://guest:guest@127.0.0.1:5672/%2f`; the vhost URL-encoded).
    pub url: String,
    /// The queue to consume.
    pub queue: String,
    /// Declare the queue (durable) when it is absent; when false, only check it exists.
    pub declare: bool,
    /// Deliveries the broker may send ahead of acknowledgements (default 4,000: the
    /// runner keeps up to 4 batches of 500 in flight and fills a fifth meanwhile).
    pub prefetch: u16,
    /// How long connecting may take (default 5 s).
    pub connect_timeout: Duration,
}

impl RabbitMqSourceConfig {
    /// A config with the defaults, consuming `queue`.
    pub fn new(name: impl Into<String>, queue: impl Into<String>) -> RabbitMqSourceConfig {
        RabbitMqSourceConfig {
            name: name.into(),
            url: "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned(),
            queue: queue.into(),
            declare: true,
            prefetch: 4_000,
            connect_timeout: Duration::from_secs(5),
        }
    }

    /// Checks what can be checked without a broker.
    pub fn validate(&self) -> Result<()> {
        let err = |m: String| Err(SourceError::config(&self.name, m));
        if self.name.trim().is_empty() {
            return err("the source name is empty; give the source a name such as \"orders-rabbitmq\"".into());
        }
        if self.queue.trim().is_empty() || self.queue.len() > 255 {
            return err(format!("queue {:?} is empty or longer than 255 bytes; set queue to the name of the queue to consume", self.queue));
        }
        if self.queue.starts_with("amq.") {
            return err(format!("queue {:?} starts with \"amq.\", which RabbitMQ reserves; use another name", self.queue));
        }
        if self.prefetch == 0 {
            return err("prefetch is 0 (unlimited); use a bound such as 1000".into());
        }
        if self.url.starts_with("amqps://") {
            return err("amqps:// needs TLS, which this build leaves out; use amqp:// (e.g. through a local TLS tunnel)".into());
        }
        if !self.url.starts_with("amqp://") {
            return err(format!("url {:?} is not an amqp:// URL; e.g. amqp://guest:guest@127.0.0.1:5672/%2f", redact(&self.url)));
        }
        Ok(())
    }
}

/// The URL without its password, for messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{}{user}:***{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_owned(),
    }
}

/// What a RabbitMQ source's [`AckToken`] holds.
struct RabbitToken {
    tag: u64,
}

/// A RabbitMQ queue as a [`Source`] (see the crate docs).
pub struct RabbitMqSource {
    config: RabbitMqSourceConfig,
    connection: Connection,
    channel: Channel,
    consumer: Consumer,
    /// Delivery tags handed out and not acknowledged.
    unacked: BTreeSet<u64>,
}

impl fmt::Debug for RabbitMqSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RabbitMqSource").field("name", &self.config.name).field("queue", &self.config.queue).field("unacked", &self.unacked.len()).finish_non_exhaustive()
    }
}

impl RabbitMqSource {
    /// Connects, declares (or checks) the queue, sets the prefetch and starts consuming.
    pub async fn open(config: RabbitMqSourceConfig) -> Result<RabbitMqSource> {
        config.validate()?;
        let name = config.name.clone();
        let url = redact(&config.url);
        let connection = match tokio::time::timeout(config.connect_timeout, Connection::connect(&config.url, ConnectionProperties::default())).await {
            Ok(Ok(connection)) => connection,
            Ok(Err(e)) => {
                let hint = if e.to_string().to_lowercase().contains("access") || e.to_string().contains("ACCESS_REFUSED") || e.to_string().contains("auth") {
                    "check the user and password in url (the guest user may log in only from localhost)"
                } else {
                    "check that rabbitmq-server runs there and that url (host, port, vhost) is right"
                };
                return Err(SourceError::connect(&name, format!("RabbitMQ at {url}: {e}; {hint}")));
            }
            Err(_) => return Err(SourceError::connect(&name, format!("RabbitMQ at {url} did not answer within {:?}; check the url and the network", config.connect_timeout))),
        };
        let channel = connection.create_channel().await.map_err(|e| SourceError::connect(&name, format!("opening a channel: {e}")))?;
        let options = QueueDeclareOptions { durable: true, passive: !config.declare, ..QueueDeclareOptions::default() };
        if let Err(e) = channel.queue_declare(config.queue.as_str().into(), options, FieldTable::default()).await {
            return Err(if config.declare {
                SourceError::config(&name, format!("declaring durable queue {:?}: {e}; if it exists with other properties (not durable, other arguments), consume it with declare = false", config.queue))
            } else {
                SourceError::config(&name, format!("queue {:?} cannot be used ({e}); create it, or set declare = true so Meridian declares it durable", config.queue))
            });
        }
        channel.basic_qos(config.prefetch, BasicQosOptions::default()).await.map_err(|e| SourceError::connect(&name, format!("setting the prefetch: {e}")))?;
        let consumer = channel
            .basic_consume(config.queue.as_str().into(), format!("meridian-{name}").as_str().into(), BasicConsumeOptions::default(), FieldTable::default())
            .await
            .map_err(|e| SourceError::connect(&name, format!("consuming queue {:?}: {e}", config.queue)))?;
        Ok(RabbitMqSource { config, connection, channel, consumer, unacked: BTreeSet::new() })
    }

    fn message(&mut self, delivery: lapin::message::Delivery) -> SourceMessage {
        let tag = delivery.delivery_tag;
        self.unacked.insert(tag);
        let id = match delivery.properties.message_id() {
            Some(id) if !id.as_str().is_empty() => id.as_str().to_owned(),
            _ => payload_id(&delivery.data),
        };
        SourceMessage {
            payload: delivery.data.into(),
            origin: Origin { source: self.config.name.clone(), kind: "rabbitmq", location: self.config.queue.clone(), offset: tag },
            id,
            token: AckToken::new(RabbitToken { tag }),
        }
    }

    fn broken(&self, what: &str, e: impl fmt::Display) -> SourceError {
        SourceError::backend(&self.config.name, format!("{what}: {e}"))
    }
}

#[async_trait::async_trait]
impl Source for RabbitMqSource {
    fn name(&self) -> &str {
        &self.config.name
    }

    fn kind(&self) -> &'static str {
        "rabbitmq"
    }

    async fn next(&mut self, max: usize, wait: Duration) -> Result<Vec<SourceMessage>> {
        let max = max.max(1);
        let first = match tokio::time::timeout(wait, self.consumer.next()).await {
            Err(_) => return Ok(Vec::new()),
            Ok(None) => return Err(self.broken("consuming", "the consumer was cancelled (queue deleted?)")),
            Ok(Some(Err(e))) => return Err(self.broken("consuming", e)),
            Ok(Some(Ok(delivery))) => delivery,
        };
        let mut batch = vec![self.message(first)];
        // Then what has already arrived (prefetched), without waiting.
        while batch.len() < max {
            match self.consumer.next().now_or_never() {
                Some(Some(Ok(delivery))) => {
                    let message = self.message(delivery);
                    batch.push(message);
                }
                Some(Some(Err(e))) => {
                    tracing::warn!(source = %self.config.name, "consuming: {e}");
                    break;
                }
                Some(None) | None => break,
            }
        }
        Ok(batch)
    }

    async fn ack(&mut self, tokens: Vec<AckToken>) -> Result<()> {
        let mut tags = Vec::with_capacity(tokens.len());
        for t in &tokens {
            let Some(t) = t.downcast_ref::<RabbitToken>() else {
                return Err(SourceError::backend(&self.config.name, "an ack token of another kind of source was handed to a RabbitMQ source"));
            };
            tags.push(t.tag);
        }
        tags.sort_unstable();
        tags.dedup();
        let Some(&highest) = tags.last() else { return Ok(()) };
        // `multiple` acks every unacked delivery up to `highest`: only when they are all here.
        let covered = self.unacked.range(..=highest).count() == tags.len() && tags.iter().all(|t| self.unacked.contains(t));
        if covered {
            self.channel.basic_ack(highest, BasicAckOptions { multiple: true }).await.map_err(|e| self.broken("acking", e))?;
        } else {
            for &tag in &tags {
                self.channel.basic_ack(tag, BasicAckOptions { multiple: false }).await.map_err(|e| self.broken("acking", e))?;
            }
        }
        for tag in tags {
            self.unacked.remove(&tag);
        }
        Ok(())
    }

    async fn lag(&mut self) -> Option<u64> {
        let options = QueueDeclareOptions { passive: true, ..QueueDeclareOptions::default() };
        match self.channel.queue_declare(self.config.queue.as_str().into(), options, FieldTable::default()).await {
            Ok(queue) => Some(u64::from(queue.message_count())),
            Err(e) => {
                tracing::debug!(source = %self.config.name, "passive declare: {e}");
                None
            }
        }
    }

    async fn close(self: Box<Self>) -> Result<()> {
        // Closing the channel requeues every delivery it did not acknowledge.
        let channel = self.channel.close(200, "OK".into()).await;
        let connection = self.connection.close(200, "OK".into()).await;
        channel.map_err(|e| self.broken("closing the channel (its unacked messages are requeued when the connection closes)", e))?;
        connection.map_err(|e| self.broken("closing the connection", e))
    }
}
