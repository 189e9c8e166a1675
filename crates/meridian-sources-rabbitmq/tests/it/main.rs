//! Integration tests of the RabbitMQ source against a real broker
//! (`amqp://guest:guest@127.0.0.1:5672/%2f`, or `MERIDIAN_AMQP_URL`): the source conformance
//! suite, each test on a queue of its own (deleted at the end), plus the source's own
//! checks. Without a broker they print "SKIPPED: …" and pass, unless
//! `MERIDIAN_REQUIRE_BACKENDS=1`.

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, QueueDeleteOptions};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use meridian_sources::conformance::SourceHarness;
use meridian_sources::{Source, SourceError};
use meridian_sources_rabbitmq::{RabbitMqSource, RabbitMqSourceConfig};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

fn url() -> String {
    std::env::var("MERIDIAN_AMQP_URL").unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned())
}

/// A publishing channel with publisher confirms, or None (with a loud line) when RabbitMQ
/// is unreachable.
async fn channel() -> Option<(Connection, Channel)> {
    let outcome = tokio::time::timeout(Duration::from_secs(3), Connection::connect(&url(), ConnectionProperties::default())).await;
    match outcome {
        Ok(Ok(connection)) => {
            let channel = connection.create_channel().await.expect("a channel");
            channel.confirm_select(ConfirmSelectOptions::default()).await.expect("publisher confirms");
            Some((connection, channel))
        }
        outcome => {
            let e = match outcome {
                Ok(Err(e)) => e.to_string(),
                _ => "timed out".to_owned(),
            };
            if std::env::var("MERIDIAN_REQUIRE_BACKENDS").as_deref() == Ok("1") {
                panic!("rabbitmq-server required (MERIDIAN_REQUIRE_BACKENDS=1) but unreachable at {}: {e}", url());
            }
            eprintln!("\n!!!!!!!!!! SKIPPED: rabbitmq-server is unreachable at {} ({e}); start it (see .ci/run) — CI sets MERIDIAN_REQUIRE_BACKENDS=1 and fails instead !!!!!!!!!!\n", url());
            None
        }
    }
}

fn unique(test: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let short: String = test.chars().filter(|c| c.is_ascii_alphanumeric()).take(24).collect();
    format!("mt-{short}-{}-{}-{:x}", std::process::id(), N.fetch_add(1, Ordering::SeqCst), rand::random::<u32>())
}

pub(crate) struct RabbitHarness {
    _connection: Connection,
    channel: Channel,
    config: RabbitMqSourceConfig,
    published: AtomicU64,
}

impl RabbitHarness {
    async fn new(test: &str) -> Option<RabbitHarness> {
        let (connection, channel) = channel().await?;
        let mut config = RabbitMqSourceConfig::new("rabbit-test", unique(test));
        config.url = url();
        config.prefetch = 100;
        Some(RabbitHarness { _connection: connection, channel, config, published: AtomicU64::new(0) })
    }

    /// Publishes to the queue (declared first), durably, with or without a message id.
    async fn publish_with(&self, payloads: Vec<Vec<u8>>, with_ids: bool) {
        let options = lapin::options::QueueDeclareOptions { durable: true, ..Default::default() };
        self.channel.queue_declare(self.config.queue.as_str().into(), options, Default::default()).await.expect("declare the test queue");
        let mut confirms = Vec::new();
        for p in payloads {
            let mut properties = BasicProperties::default().with_delivery_mode(2);
            if with_ids {
                let n = self.published.fetch_add(1, Ordering::SeqCst);
                properties = properties.with_message_id(format!("{}-{n}", self.config.queue).as_str().into());
            }
            confirms.push(self.channel.basic_publish("".into(), self.config.queue.as_str().into(), BasicPublishOptions::default(), &p, properties).await.expect("publish"));
        }
        for c in confirms {
            assert!(c.await.expect("confirm").is_ack(), "the broker took the message");
        }
    }
}

#[async_trait::async_trait]
impl SourceHarness for RabbitHarness {
    async fn publish(&self, payloads: Vec<Vec<u8>>) {
        self.publish_with(payloads, true).await
    }

    async fn open(&self) -> Box<dyn Source> {
        Box::new(RabbitMqSource::open(self.config.clone()).await.expect("open the RabbitMQ source"))
    }

    fn redelivery_after(&self) -> Duration {
        Duration::ZERO
    }

    async fn cleanup(&self) {
        let _ = self.channel.queue_delete(self.config.queue.as_str().into(), QueueDeleteOptions::default()).await;
    }
}

async fn rabbit_harness(test: &'static str) -> Option<Arc<dyn SourceHarness>> {
    Some(Arc::new(RabbitHarness::new(test).await?))
}

mod conformance {
    meridian_sources::source_suite!(super::rabbit_harness);
}

mod own {
    use super::*;

    #[tokio::test]
    async fn the_id_is_the_message_id_else_the_payload_hash_and_the_origin_is_the_queue() {
        let Some(h) = RabbitHarness::new("ids").await else { return };
        h.publish_with(vec![b"{\"a\":1}".to_vec()], true).await;
        h.publish_with(vec![b"{\"a\":2}".to_vec()], false).await;
        let mut source = h.open().await;
        let mut batch = source.next(10, Duration::from_secs(5)).await.unwrap();
        if batch.len() < 2 {
            batch.extend(source.next(10, Duration::from_secs(5)).await.unwrap());
        }
        assert_eq!(batch[0].id, format!("{}-0", h.config.queue));
        assert_eq!(batch[1].id, meridian_sources::payload_id(b"{\"a\":2}"), "without message_id: the SHA-256 of the payload");
        assert_eq!(batch[1].id.len(), 64);
        assert_eq!((batch[1].origin.kind, batch[1].origin.location.as_str()), ("rabbitmq", h.config.queue.as_str()));
        source.ack(batch.iter().map(|m| m.token.clone()).collect()).await.unwrap();
        source.close().await.unwrap();
        h.cleanup().await;
    }

    #[tokio::test]
    async fn lag_is_the_ready_count_and_the_prefetch_bounds_what_is_in_flight() {
        let Some(mut h) = RabbitHarness::new("lag").await else { return };
        h.publish((0..10).map(|i| format!("{{\"i\":{i}}}").into_bytes()).collect()).await;
        h.config.prefetch = 3;
        let mut source = RabbitMqSource::open(h.config.clone()).await.unwrap();
        let batch = source.next(10, Duration::from_secs(5)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let more = source.next(10, Duration::from_millis(300)).await.unwrap();
        assert_eq!(batch.len() + more.len(), 3, "no more than the prefetch unacked");
        assert_eq!(source.lag().await, Some(7));
        // Out of order (not every earlier delivery): acked one by one, not with `multiple`.
        let all: Vec<_> = batch.iter().chain(&more).collect();
        source.ack(vec![all[1].token.clone()]).await.unwrap();
        source.ack(vec![all[0].token.clone(), all[2].token.clone()]).await.unwrap();
        let next = source.next(10, Duration::from_secs(5)).await.unwrap();
        assert!(!next.is_empty(), "acking frees room for more");
        Box::new(source).close().await.unwrap();
        let mut source = h.open().await;
        let rest = {
            let mut got = Vec::new();
            while got.len() < 7 {
                let b = source.next(10, Duration::from_secs(5)).await.unwrap();
                assert!(!b.is_empty(), "the 7 unacked come back");
                source.ack(b.iter().map(|m| m.token.clone()).collect()).await.unwrap();
                got.extend(b);
            }
            got
        };
        assert_eq!(rest.len(), 7, "the three acked out of order stay acked");
        assert!(source.next(10, Duration::from_millis(500)).await.unwrap().is_empty(), "and nothing more");
        source.close().await.unwrap();
        h.cleanup().await;
    }

    #[tokio::test]
    async fn an_absent_queue_without_declare_is_a_clear_config_error() {
        let Some(mut h) = RabbitHarness::new("absent").await else { return };
        h.config.declare = false;
        let e = RabbitMqSource::open(h.config.clone()).await.unwrap_err();
        assert!(matches!(e, SourceError::Config { .. }), "{e}");
        assert!(e.to_string().contains("declare = true"), "{e}");
    }

    #[tokio::test]
    async fn unreachable_brokers_and_bad_credentials_are_clear_connect_errors() {
        let mut config = RabbitMqSourceConfig::new("r", "q");
        config.url = "amqp://guest:guest@127.0.0.1:1/%2f".to_owned();
        config.connect_timeout = Duration::from_secs(3);
        let e = RabbitMqSource::open(config).await.unwrap_err();
        assert!(matches!(e, SourceError::Connect { .. }), "{e}");
        assert!(e.to_string().contains("127.0.0.1:1") && e.to_string().contains("check that rabbitmq-server runs"), "{e}");
        assert!(!e.to_string().contains("guest:guest"), "the password is not shown: {e}");
        if channel().await.is_none() {
            return;
        }
        let mut config = RabbitMqSourceConfig::new("r", unique("badpass"));
        config.url = url().replacen("guest:guest", "guest:wrong", 1);
        let e = RabbitMqSource::open(config).await.unwrap_err();
        assert!(matches!(e, SourceError::Connect { .. }), "{e}");
        assert!(!e.to_string().contains("wrong"), "the password is not shown: {e}");
    }

    #[tokio::test]
    async fn invalid_configs_are_refused_before_connecting() {
        let base = RabbitMqSourceConfig::new("r", "q");
        for (config, needle) in [
            (RabbitMqSourceConfig { queue: String::new(), ..base.clone() }, "queue \"\""),
            (RabbitMqSourceConfig { queue: "amq.x".into(), ..base.clone() }, "reserves"),
            (RabbitMqSourceConfig { name: " ".into(), ..base.clone() }, "name is empty"),
            (RabbitMqSourceConfig { prefetch: 0, ..base.clone() }, "prefetch"),
            (RabbitMqSourceConfig { url: "amqps://h/%2f".into(), ..base.clone() }, "TLS"),
            (RabbitMqSourceConfig { url: "http://u:secret@h".into(), ..base.clone() }, "not an amqp:// URL"),
        ] {
            let e = RabbitMqSource::open(config).await.unwrap_err();
            assert!(matches!(e, SourceError::Config { .. }) && e.to_string().contains(needle), "{needle}: {e}");
            assert!(!e.to_string().contains("secret"), "{e}");
        }
    }
}
