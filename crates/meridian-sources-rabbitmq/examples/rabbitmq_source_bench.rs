//! Throughput of the RabbitMQ source against the queue's own consumer: publishes N small
//! JSON events (default 200,000; `rabbitmq_source_bench [N]`) to each of two fresh durable
//! queues (with publisher confirms), then reads one (a) with a plain lapin consumer that
//! acks each delivery and the other (b) with `RabbitMqSource` + `SourceRunner` into a
//! counting sink, both with prefetch 1000, and prints events/s of both, their ratio and the
//! p50/p99 latency of the source's batch acks. Needs RabbitMQ at 127.0.0.1:5672 (or
//! `MERIDIAN_AMQP_URL`). Run in release:
//! `cargo run --release -p meridian-sources-rabbitmq --example rabbitmq_source_bench`.

use futures::StreamExt;
use hdrhistogram::Histogram;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions, ConfirmSelectOptions, QueueDeclareOptions, QueueDeleteOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties};
use meridian_sources::{AckToken, MemorySink, RunnerConfig, Source, SourceMessage, SourceRunner};
use meridian_sources_rabbitmq::{RabbitMqSource, RabbitMqSourceConfig};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// A source that times each `ack` call (one per runner batch).
struct Timed {
    inner: Box<dyn Source>,
    acks: Arc<Mutex<Histogram<u64>>>,
}

#[async_trait::async_trait]
impl Source for Timed {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }
    async fn next(&mut self, max: usize, wait: Duration) -> meridian_sources::Result<Vec<SourceMessage>> {
        self.inner.next(max, wait).await
    }
    async fn ack(&mut self, tokens: Vec<AckToken>) -> meridian_sources::Result<()> {
        let start = Instant::now();
        let result = self.inner.ack(tokens).await;
        self.acks.lock().unwrap().record(start.elapsed().as_micros() as u64).unwrap();
        result
    }
    async fn lag(&mut self) -> Option<u64> {
        self.inner.lag().await
    }
    async fn close(self: Box<Self>) -> meridian_sources::Result<()> {
        self.inner.close().await
    }
}

fn event(i: u64) -> Vec<u8> {
    format!(r#"{{"app":"bench","user":"u{}","action":"view","target":"sku-{}","n":{i}}}"#, i % 1000, i % 97).into_bytes()
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let n: u64 = std::env::args().nth(1).map(|a| a.parse()).transpose()?.unwrap_or(200_000);
    let url = std::env::var("MERIDIAN_AMQP_URL").unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned());
    let connection = Connection::connect(&url, ConnectionProperties::default()).await?;
    let channel = connection.create_channel().await?;
    channel.confirm_select(ConfirmSelectOptions::default()).await?;
    let suffix = format!("{:x}", rand::random::<u32>());
    let (plain_q, source_q) = (format!("bench-plain-{suffix}"), format!("bench-source-{suffix}"));
    let start = Instant::now();
    for q in [&plain_q, &source_q] {
        channel.queue_declare(q.as_str().into(), QueueDeclareOptions { durable: true, ..Default::default() }, FieldTable::default()).await?;
        let mut confirms = Vec::with_capacity(1000);
        for i in 0..n {
            let properties = BasicProperties::default().with_delivery_mode(2).with_message_id(format!("{suffix}-{i}").as_str().into());
            confirms.push(channel.basic_publish("".into(), q.as_str().into(), BasicPublishOptions::default(), &event(i), properties).await?);
            if confirms.len() == 1000 {
                for c in confirms.drain(..) {
                    c.await?;
                }
            }
        }
        for c in confirms.drain(..) {
            c.await?;
        }
    }
    let publish = start.elapsed();
    println!("published {n} persistent events to each of {plain_q} and {source_q} in {:.2} s ({:.0} events/s)", publish.as_secs_f64(), 2.0 * n as f64 / publish.as_secs_f64());

    // (a) The queue's own consumer: plain lapin, prefetch 1000, ack each delivery.
    let consume_channel = connection.create_channel().await?;
    consume_channel.basic_qos(1000, BasicQosOptions::default()).await?;
    let start = Instant::now();
    let mut consumer = consume_channel.basic_consume(plain_q.as_str().into(), "plain".into(), BasicConsumeOptions::default(), FieldTable::default()).await?;
    let mut got = 0u64;
    while got < n {
        let delivery = consumer.next().await.ok_or("consumer ended")??;
        consume_channel.basic_ack(delivery.delivery_tag, BasicAckOptions::default()).await?;
        got += 1;
    }
    let plain_took = start.elapsed();
    let plain_rate = n as f64 / plain_took.as_secs_f64();
    consume_channel.close(200, "OK".into()).await?;

    // (b) RabbitMqSource + SourceRunner into a counting sink.
    let mut config = RabbitMqSourceConfig::new("bench", &source_q);
    config.url = url.clone();
    config.prefetch = 1000;
    let acks = Arc::new(Mutex::new(Histogram::<u64>::new(3)?));
    let sink = Arc::new(MemorySink::counting());
    let opener_acks = acks.clone();
    let runner = SourceRunner::new("bench", "rabbitmq", move || {
        let (config, acks) = (config.clone(), opener_acks.clone());
        async move { Ok(Box::new(Timed { inner: Box::new(RabbitMqSource::open(config).await?), acks }) as Box<dyn Source>) }
    }, sink.clone(), RunnerConfig { batch_max: 500, ..RunnerConfig::default() });
    let status = runner.status();
    let cancel = CancellationToken::new();
    let start = Instant::now();
    let task = tokio::spawn(runner.run(cancel.clone()));
    while (sink.len() as u64) < n {
        if start.elapsed() > Duration::from_secs(600) {
            return Err(format!("only {} of {n} events in 10 minutes: {:?}", sink.len(), status.get()).into());
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let source_took = start.elapsed();
    cancel.cancel();
    let last = task.await?;
    let source_rate = n as f64 / source_took.as_secs_f64();
    for q in [&plain_q, &source_q] {
        channel.queue_delete(q.as_str().into(), QueueDeleteOptions::default()).await?;
    }

    let h = acks.lock().unwrap();
    println!();
    println!("RabbitMQ, {n} persistent events of ~80 bytes per queue, prefetch 1000");
    println!("  (a) plain lapin consumer, ack each:              {plain_rate:>10.0} events/s  ({:.2} s)", plain_took.as_secs_f64());
    println!("  (b) RabbitMqSource + SourceRunner, counting sink: {source_rate:>10.0} events/s  ({:.2} s, {} batches, {} stored, {} duplicates)", source_took.as_secs_f64(), h.len(), last.stored, last.duplicates);
    println!("  ratio (b)/(a): {:.2}", source_rate / plain_rate);
    println!("  batch ack latency (b): p50 {} µs, p99 {} µs, max {} µs", h.value_at_quantile(0.5), h.value_at_quantile(0.99), h.max());
    Ok(())
}
