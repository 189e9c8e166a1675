//! NATS JetStream source of Meridian: [`NatsSource`] reads a stream through a durable pull
//! consumer and acknowledges each message only when the runner says it is durable in
//! Meridian (see `meridian_sources` for the contract).
//!
//! - **Consumer.** A durable pull consumer (`consumer` in [`NatsSourceConfig`]) with the
//!   explicit ack policy, `ack_wait` and `max_ack_pending`, filtered by `filter_subject`, on
//!   the stream `stream` — created with `subjects` when absent. An existing consumer is used
//!   as it is (its filter and limits are not changed).
//! - **Reading.** One continuous pull subscription (`Consumer::stream`, pull requests of
//!   `pull_batch` messages kept ahead of the reader); [`Source::next`] waits up to `wait`
//!   for the first message, then takes what has already arrived, up to `max`.
//! - **Id.** `<stream>:<stream sequence>`: the same every time the message is redelivered.
//!   The origin's location is the message's subject, its offset the stream sequence.
//! - **Ack.** Every message of a batch but the last gets a plain `+ACK` (`AckKind::Ack`,
//!   no reply); the last gets a *double ack* (`+ACK` with a reply the server sends once it
//!   recorded it). The server handles one connection's acks of one consumer in order, so
//!   when the double ack returns, the whole batch is recorded: a batch costs one round
//!   trip, not one per message. Were the order ever not kept, the worst outcome is a
//!   redelivery, which Meridian drops as a duplicate by its id — never a loss.
//! - **Close.** The pull subscription is dropped and the connection drained. Messages handed
//!   out and not acknowledged come back when `ack_wait` expires, as after a crash (no close).
//!   They are deliberately not `-NAK`ed for an immediate redelivery: nats-server 2.9.10 (the
//!   one here) was seen delivering a nak'd message twice to the next reader. So keep
//!   `ack_wait` modest: it is how long a restart waits for the messages a crash left behind.
//! - **Lag.** The consumer's `num_pending` (messages of the filter not yet delivered).
//!
//! At-least-once from JetStream (nothing unacknowledged is lost: it comes back after `nak`
//! or `ack_wait`) plus de-duplication by the stable id in Meridian gives each message
//! counted once. JetStream may redeliver an acknowledged message only if the ack itself was
//! lost, which the double ack rules out for every batch `ack` returned for.

use async_nats::jetstream::{self, consumer::pull, message::Acker, AckKind};
use futures::{FutureExt, StreamExt};
use meridian_sources::{AckToken, Origin, Result, Source, SourceError, SourceMessage};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// What a [`NatsSource`] reads.
#[derive(Debug, Clone, PartialEq)]
pub struct NatsSourceConfig {
    /// Configured name of the source.
    pub name: String,
    /// Server URL(s), comma-separated (default `nats://127.0.0.1:4222`).
    pub url: String,
    /// The JetStream stream (created when absent).
    pub stream: String,
    /// Subjects of the stream when it has to be created (e.g. `["orders.>"]`); unused when
    /// it exists.
    pub subjects: Vec<String>,
    /// Subject filter of the consumer (empty: the whole stream).
    pub filter_subject: String,
    /// Durable consumer name (default: the source's name).
    pub consumer: String,
    /// How long the server waits for an ack before redelivering (default 30 s).
    pub ack_wait: Duration,
    /// Most messages handed out and not yet acknowledged (default 20,000).
    pub max_ack_pending: i64,
    /// Messages asked per pull request (default 1,000).
    pub pull_batch: usize,
    /// How long connecting may take (default 5 s).
    pub connect_timeout: Duration,
}

impl NatsSourceConfig {
    /// A config with the defaults, reading `stream` (created with `subjects` when absent).
    pub fn new(name: impl Into<String>, stream: impl Into<String>, subjects: Vec<String>) -> NatsSourceConfig {
        let name = name.into();
        NatsSourceConfig {
            consumer: name.clone(),
            name,
            url: "nats://127.0.0.1:4222".to_owned(),
            stream: stream.into(),
            subjects,
            filter_subject: String::new(),
            ack_wait: Duration::from_secs(30),
            max_ack_pending: 20_000,
            pull_batch: 1_000,
            connect_timeout: Duration::from_secs(5),
        }
    }

    /// Checks what can be checked without a server.
    pub fn validate(&self) -> Result<()> {
        let err = |m: String| Err(SourceError::config(&self.name, m));
        if self.name.trim().is_empty() {
            return err("the source name is empty; give the source a name such as \"orders-nats\"".into());
        }
        let bad_name = |s: &str| s.is_empty() || s.chars().any(|c| c.is_whitespace() || matches!(c, '.' | '*' | '>' | '/' | '\\'));
        if bad_name(&self.stream) {
            return err(format!("stream {:?} is empty or holds whitespace, '.', '*', '>', '/' or '\\'; set stream to the JetStream stream name, e.g. \"ORDERS\"", self.stream));
        }
        if bad_name(&self.consumer) {
            return err(format!("consumer {:?} is empty or holds whitespace, '.', '*', '>', '/' or '\\'; set consumer to a durable name, e.g. \"meridian\"", self.consumer));
        }
        if self.subjects.iter().any(|s| s.trim().is_empty() || s.contains(char::is_whitespace)) {
            return err(format!("subjects {:?} holds an empty subject or whitespace", self.subjects));
        }
        if self.ack_wait < Duration::from_secs(1) {
            return err(format!("ack_wait {:?} is under 1 s; use at least the time a batch takes to become durable (default 30 s)", self.ack_wait));
        }
        if self.max_ack_pending < 1 || self.pull_batch == 0 {
            return err("max_ack_pending and pull_batch must be at least 1".into());
        }
        if self.url.trim().is_empty() {
            return err("url is empty; e.g. nats://127.0.0.1:4222".into());
        }
        Ok(())
    }
}

/// What a NATS source's [`AckToken`] holds.
struct NatsToken {
    sequence: u64,
    acker: Arc<Acker>,
}

/// A JetStream durable pull consumer as a [`Source`] (see the crate docs).
pub struct NatsSource {
    config: NatsSourceConfig,
    client: async_nats::Client,
    consumer: jetstream::consumer::PullConsumer,
    messages: pull::Stream,
    location_cache: Option<(async_nats::Subject, Arc<str>)>,
}

impl fmt::Debug for NatsSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatsSource").field("config", &self.config).finish_non_exhaustive()
    }
}

impl NatsSource {
    /// Connects, creates the stream when absent and the durable consumer when absent, and
    /// starts pulling.
    pub async fn open(config: NatsSourceConfig) -> Result<NatsSource> {
        config.validate()?;
        let name = config.name.clone();
        let connect = async_nats::ConnectOptions::new().connection_timeout(config.connect_timeout).connect(config.url.as_str());
        let client = match tokio::time::timeout(config.connect_timeout + Duration::from_secs(1), connect).await {
            Ok(Ok(client)) => client,
            Ok(Err(e)) => return Err(SourceError::connect(&name, format!("NATS at {}: {e}; check that nats-server runs there with JetStream (-js) and that url is right", config.url))),
            Err(_) => return Err(SourceError::connect(&name, format!("NATS at {} did not answer within {:?}; check the url and the network", config.url, config.connect_timeout))),
        };
        let js = jetstream::new(client.clone());
        let stream = match js.get_stream(&config.stream).await {
            Ok(stream) => stream,
            Err(e) if matches!(e.kind(), jetstream::context::GetStreamErrorKind::JetStream(ref j) if j.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND) => {
                if config.subjects.is_empty() {
                    return Err(SourceError::config(&name, format!("stream {:?} does not exist ({e}) and subjects is empty: create the stream, or set subjects so Meridian creates it", config.stream)));
                }
                let stream_config = jetstream::stream::Config { name: config.stream.clone(), subjects: config.subjects.clone(), ..Default::default() };
                js.get_or_create_stream(stream_config).await.map_err(|e| SourceError::connect(&name, format!("creating stream {:?} with subjects {:?}: {e}", config.stream, config.subjects)))?
            }
            Err(e) => return Err(SourceError::connect(&name, format!("getting stream {:?}: {e}; is JetStream enabled (nats-server -js)?", config.stream))),
        };
        let consumer_config = pull::Config {
            durable_name: Some(config.consumer.clone()),
            ack_policy: jetstream::consumer::AckPolicy::Explicit,
            ack_wait: config.ack_wait,
            max_ack_pending: config.max_ack_pending,
            filter_subject: config.filter_subject.clone(),
            deliver_policy: jetstream::consumer::DeliverPolicy::All,
            ..Default::default()
        };
        let consumer: jetstream::consumer::PullConsumer = stream
            .get_or_create_consumer(&config.consumer, consumer_config)
            .await
            .map_err(|e| SourceError::connect(&name, format!("getting or creating durable consumer {:?} on stream {:?}: {e}", config.consumer, config.stream)))?;
        let messages = pull_stream(&consumer, &config).await?;
        Ok(NatsSource { config, client, consumer, messages, location_cache: None })
    }

    fn message(&mut self, message: jetstream::Message) -> Result<SourceMessage> {
        let sequence = message.info().map_err(|e| SourceError::backend(&self.config.name, format!("a message without JetStream metadata: {e}")))?.stream_sequence;
        let (message, acker) = message.split();
        let acker = Arc::new(acker);
        let location = match &self.location_cache {
            Some((subject, text)) if *subject == message.subject => text.clone(),
            _ => {
                let text: Arc<str> = Arc::from(message.subject.as_str());
                self.location_cache = Some((message.subject.clone(), text.clone()));
                text
            }
        };
        Ok(SourceMessage {
            payload: message.payload,
            origin: Origin { source: self.config.name.clone(), kind: "nats", location: location.to_string(), offset: sequence },
            id: format!("{}:{sequence}", self.config.stream),
            token: AckToken::new(NatsToken { sequence, acker }),
        })
    }
}

fn nats_token<'a>(name: &str, token: &'a AckToken) -> Result<&'a NatsToken> {
    token.downcast_ref::<NatsToken>().ok_or_else(|| SourceError::backend(name, "an ack token of another kind of source was handed to a NATS source"))
}

async fn pull_stream(consumer: &jetstream::consumer::PullConsumer, config: &NatsSourceConfig) -> Result<pull::Stream> {
    consumer
        .stream()
        .max_messages_per_batch(config.pull_batch)
        .heartbeat(Duration::from_secs(5))
        .expires(Duration::from_secs(30))
        .messages()
        .await
        .map_err(|e| SourceError::connect(&config.name, format!("pulling from consumer {:?}: {e}", config.consumer)))
}

#[async_trait::async_trait]
impl Source for NatsSource {
    fn name(&self) -> &str {
        &self.config.name
    }

    fn kind(&self) -> &'static str {
        "nats"
    }

    async fn next(&mut self, max: usize, wait: Duration) -> Result<Vec<SourceMessage>> {
        let max = max.max(1);
        let first = match tokio::time::timeout(wait, self.messages.next()).await {
            Err(_) => return Ok(Vec::new()),
            Ok(None) => return Err(SourceError::backend(&self.config.name, "the pull subscription ended")),
            Ok(Some(Err(e))) => return Err(SourceError::backend(&self.config.name, format!("pulling: {e}"))),
            Ok(Some(Ok(message))) => message,
        };
        let mut batch = Vec::with_capacity(max.min(self.config.pull_batch));
        batch.push(self.message(first)?);
        // Then what has already arrived, without waiting.
        while batch.len() < max {
            match self.messages.next().now_or_never() {
                Some(Some(Ok(message))) => batch.push(self.message(message)?),
                Some(Some(Err(e))) => {
                    tracing::warn!(source = %self.config.name, "pulling: {e}");
                    break;
                }
                Some(None) | None => break,
            }
        }
        Ok(batch)
    }

    async fn ack(&mut self, tokens: Vec<AckToken>) -> Result<()> {
        let Some((last, rest)) = tokens.split_last() else { return Ok(()) };
        let name = self.config.name.as_str();
        let token = |t| nats_token(name, t);
        for t in rest {
            let t = token(t)?;
            t.acker.ack_with(AckKind::Ack).await.map_err(|e| SourceError::backend(&self.config.name, format!("acking stream sequence {}: {e}", t.sequence)))?;
        }
        let t = token(last)?;
        t.acker.double_ack_with(AckKind::Ack).await.map_err(|e| SourceError::backend(&self.config.name, format!("acking stream sequence {} (confirmed): {e}", t.sequence)))?;
        Ok(())
    }

    async fn lag(&mut self) -> Option<u64> {
        match self.consumer.info().await {
            Ok(info) => Some(info.num_pending),
            Err(e) => {
                tracing::debug!(source = %self.config.name, "consumer info: {e}");
                None
            }
        }
    }

    async fn close(self: Box<Self>) -> Result<()> {
        // No `-NAK` of what was handed out and not acknowledged: nats-server 2.9 was seen
        // delivering a nak'd message twice to the next reader. The server redelivers those
        // messages when `ack_wait` expires, as after a crash.
        let this = *self;
        drop(this.messages);
        this.client.drain().await.map_err(|e| SourceError::backend(&this.config.name, format!("draining the connection: {e}; un-acked messages are redelivered after ack_wait")))
    }
}
