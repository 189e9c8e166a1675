//! Throughput of the NATS source against the queue's own consumer, on the same stream data:
//! publishes N small JSON events (default 200,000; `nats_source_bench [N]`) to a fresh
//! stream, then reads them all (a) with a plain async-nats pull consumer that only acks, and
//! (b) with `NatsSource` + `SourceRunner` into a counting sink, and prints events/s of both,
//! their ratio and the p50/p99 latency of the source's batch acks. Needs nats-server with
//! JetStream at 127.0.0.1:4222 (or `MERIDIAN_NATS_URL`). Run in release:
//! `cargo run --release -p meridian-sources-nats --example nats_source_bench`.

use async_nats::jetstream::{self, consumer::pull, AckKind};
use futures::StreamExt;
use hdrhistogram::Histogram;
use meridian_sources::{AckToken, MemorySink, RunnerConfig, Source, SourceMessage, SourceRunner};
use meridian_sources_nats::{NatsSource, NatsSourceConfig};
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

fn event(i: u64) -> bytes::Bytes {
    format!(r#"{{"app":"bench","user":"u{}","action":"view","target":"sku-{}","n":{i}}}"#, i % 1000, i % 97).into()
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let n: u64 = std::env::args().nth(1).map(|a| a.parse()).transpose()?.unwrap_or(200_000);
    let url = std::env::var("MERIDIAN_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned());
    let client = async_nats::connect(url.as_str()).await?;
    let js = jetstream::new(client);
    let suffix = format!("{:x}", rand::random::<u32>());
    let stream_name = format!("BENCH_{suffix}");
    let subject = format!("bench.{suffix}.events");
    let stream = js.create_stream(jetstream::stream::Config { name: stream_name.clone(), subjects: vec![format!("bench.{suffix}.>")], ..Default::default() }).await?;

    let start = Instant::now();
    let mut pending = Vec::with_capacity(1000);
    for i in 0..n {
        pending.push(js.publish(subject.clone(), event(i)).await?);
        if pending.len() == 1000 {
            for ack in pending.drain(..) {
                ack.await?;
            }
        }
    }
    for ack in pending.drain(..) {
        ack.await?;
    }
    let publish = start.elapsed();
    println!("published {n} events to stream {stream_name} in {:.2} s ({:.0} events/s)", publish.as_secs_f64(), n as f64 / publish.as_secs_f64());

    // (a) The queue's own consumer: a plain pull consumer that acks each message.
    let plain: jetstream::consumer::PullConsumer = stream
        .create_consumer(pull::Config { durable_name: Some("plain".into()), ack_policy: jetstream::consumer::AckPolicy::Explicit, max_ack_pending: 20_000, ..Default::default() })
        .await?;
    let start = Instant::now();
    let mut messages = plain.stream().max_messages_per_batch(1000).messages().await?;
    let mut got = 0u64;
    while got < n {
        let message = messages.next().await.ok_or("stream ended")??;
        message.ack_with(AckKind::Ack).await?;
        got += 1;
    }
    js.get_stream(&stream_name).await?; // a round trip: the acks were sent
    let plain_took = start.elapsed();
    drop(messages);
    let plain_rate = n as f64 / plain_took.as_secs_f64();

    // (b) NatsSource + SourceRunner into a counting sink, on the same stream data.
    let mut config = NatsSourceConfig::new("bench", &stream_name, vec![]);
    config.url = url.clone();
    config.consumer = "meridian".into();
    let acks = Arc::new(Mutex::new(Histogram::<u64>::new(3)?));
    let sink = Arc::new(MemorySink::counting());
    let opener_acks = acks.clone();
    let runner = SourceRunner::new("bench", "nats", move || {
        let (config, acks) = (config.clone(), opener_acks.clone());
        async move { Ok(Box::new(Timed { inner: Box::new(NatsSource::open(config).await?), acks }) as Box<dyn Source>) }
    }, sink.clone(), RunnerConfig { batch_max: 1000, ..RunnerConfig::default() });
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
    js.delete_stream(&stream_name).await?;

    let h = acks.lock().unwrap();
    println!();
    println!("NATS JetStream, {n} events of ~80 bytes, one stream, two durable pull consumers (pull batch 1000)");
    println!("  (a) plain async-nats consumer, ack each:     {plain_rate:>10.0} events/s  ({:.2} s)", plain_took.as_secs_f64());
    println!("  (b) NatsSource + SourceRunner, counting sink: {source_rate:>10.0} events/s  ({:.2} s, {} batches, {} stored, {} duplicates)", source_took.as_secs_f64(), h.len(), last.stored, last.duplicates);
    println!("  ratio (b)/(a): {:.2}", source_rate / plain_rate);
    println!("  batch ack latency (b): p50 {} µs, p99 {} µs, max {} µs", h.value_at_quantile(0.5), h.value_at_quantile(0.99), h.max());
    Ok(())
}
