//! `meridian bench sources`: each queue source through the whole server (source, runner,
//! collector, pipeline, log fsync, queue ack) against the queue's own plain consumer on
//! the same data in the same run, and `POST /v1/events` of the same events as the
//! server's own ceiling.

use super::{bench_key, event_templates, json_tail, start_server, BENCH_MASTER_KEY};
use async_nats::jetstream::{self, consumer::pull, AckKind};
use clap::Args;
use futures::StreamExt;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions, ConfirmSelectOptions, QueueDeclareOptions, QueueDeleteOptions};
use std::time::{Duration, Instant};

#[derive(Debug, Args)]
pub(super) struct SourcesBenchArgs {
    /// Messages per queue (each one event of the demo world, ~300 bytes).
    #[arg(long, default_value_t = 200_000)]
    events: usize,
    /// NATS server with JetStream.
    #[arg(long, default_value = "nats://127.0.0.1:4222")]
    nats_url: String,
    /// RabbitMQ server.
    #[arg(long, default_value = "amqp://guest:guest@127.0.0.1:5672/%2f")]
    amqp_url: String,
    /// Directory for the temporary data (default: the system temp dir).
    #[arg(long)]
    dir: Option<std::path::PathBuf>,
}

/// One queue's figures.
struct Row {
    queue: &'static str,
    plain: f64,
    through_server: f64,
    stored: u64,
    duplicates: u64,
    dead: u64,
}

/// Runs the benchmark and prints its table.
pub(super) fn sources_bench(args: SourcesBenchArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        let tmp = match &args.dir {
            Some(d) => tempfile::tempdir_in(d)?,
            None => tempfile::tempdir()?,
        };
        let n = args.events;
        let templates: Vec<String> = tokio::task::spawn_blocking(move || event_templates(n.min(20_000))).await??.iter().map(json_tail).collect();
        // Unique payloads (the `n` prop), no ids: the source's message id becomes the event id.
        let payloads: Vec<Vec<u8>> = (0..n).map(|i| format!("{{\"props\":{{\"n\":{i}}},{}", strip_props(&templates[i % templates.len()])).into_bytes()).collect();
        let (server, base) = start_server(&tmp.path().join("server"), &[]).await?;
        let key = bench_key(&base, &["write"]).await?;
        let post = post_rate(&base, &key, &payloads).await?;
        let suffix = format!("{:x}", std::process::id() ^ Instant::now().elapsed().subsec_nanos());
        let mut rows = Vec::new();
        match nats(&args.nats_url, &base, &payloads, &suffix).await {
            Ok(row) => rows.push(row),
            Err(e) => eprintln!("NATS skipped: {e:#}"),
        }
        match rabbit(&args.amqp_url, &base, &payloads, &suffix).await {
            Ok(row) => rows.push(row),
            Err(e) => eprintln!("RabbitMQ skipped: {e:#}"),
        }
        drop(server);
        println!("## meridian bench sources ({n} messages per queue, one event each, through the server: collector, pipeline, log fsync, queue ack)");
        println!("baseline: POST /v1/events of the same events, batches of 500, 4 in flight: {post:.0} events/s");
        println!("| queue | plain consumer (events/s) | source through the server (events/s) | ratio | ratio to POST | stored / duplicates / dead letters |");
        println!("|---|---|---|---|---|---|");
        for r in &rows {
            println!("| {} | {:.0} | {:.0} | {:.2} | {:.2} | {} / {} / {} |", r.queue, r.plain, r.through_server, r.through_server / r.plain, r.through_server / post, r.stored, r.duplicates, r.dead);
        }
        anyhow::ensure!(!rows.is_empty(), "no queue was reachable");
        Ok(())
    })
}

/// The template without its `props` (the bench puts its own first).
fn strip_props(tail: &str) -> String {
    let mut value: serde_json::Value = serde_json::from_str(&format!("{{{tail}")).expect("a template is a JSON object");
    if let Some(o) = value.as_object_mut() {
        o.remove("props");
    }
    value.to_string()[1..].to_owned()
}

/// Events/s of `POST /v1/events` with the same events (with ids of their own, so they
/// are not duplicates of the sources' events).
async fn post_rate(base: &str, key: &str, payloads: &[Vec<u8>]) -> anyhow::Result<f64> {
    let http = reqwest::Client::new();
    let bodies: Vec<(usize, String)> = payloads
        .chunks(500)
        .enumerate()
        .map(|(c, chunk)| {
            let events: Vec<String> = chunk.iter().enumerate().map(|(i, p)| format!("{{\"id\":\"post-{c}-{i}\",{}", &String::from_utf8_lossy(p)[1..])).collect();
            (chunk.len(), format!("[{}]", events.join(",")))
        })
        .collect();
    let start = Instant::now();
    let mut stream = futures::stream::iter(bodies.into_iter().map(|(n, body)| {
        let http = http.clone();
        async move {
            let r = http.post(format!("{base}/v1/events")).bearer_auth(key).header("content-type", "application/json").body(body).send().await?;
            anyhow::ensure!(r.status().is_success(), "POST /v1/events answered {}", r.status());
            let answer: serde_json::Value = r.json().await?;
            anyhow::ensure!(answer["accepted"].as_u64() == Some(n as u64), "POST /v1/events accepted {} of {n}: {}", answer["accepted"], answer["results"][0]);
            Ok::<_, anyhow::Error>(())
        }
    }))
    .buffer_unordered(4);
    while let Some(r) = stream.next().await {
        r?;
    }
    Ok(payloads.len() as f64 / start.elapsed().as_secs_f64())
}

/// Adds the source, waits until it has handled every message, removes it; events/s.
async fn through_server(base: &str, spec: serde_json::Value, n: usize) -> anyhow::Result<(f64, u64, u64, u64)> {
    let http = reqwest::Client::new();
    let name = spec["name"].as_str().unwrap_or_default().to_owned();
    let start = Instant::now();
    let added = http.post(format!("{base}/v1/admin/sources")).bearer_auth(BENCH_MASTER_KEY).json(&spec).send().await?;
    anyhow::ensure!(added.status().as_u16() == 201, "adding the source: {} {}", added.status(), added.text().await?);
    let deadline = start + Duration::from_secs(900);
    loop {
        let list: serde_json::Value = http.get(format!("{base}/v1/admin/sources")).bearer_auth(BENCH_MASTER_KEY).send().await?.json().await?;
        let state = list["sources"].as_array().and_then(|s| s.iter().find(|s| s["spec"]["name"] == name.as_str())).map(|s| s["state"].clone()).unwrap_or_default();
        let (stored, duplicates, dead) = (state["stored"].as_u64().unwrap_or(0), state["duplicates"].as_u64().unwrap_or(0), state["dead_lettered"].as_u64().unwrap_or(0));
        if stored + duplicates + dead >= n as u64 {
            let rate = n as f64 / start.elapsed().as_secs_f64();
            let metrics = http.get(format!("{base}/metrics")).send().await?.text().await?;
            let series = |what: &str| super::metric_value(&metrics, &format!("meridian_source_batch_messages_{what}{{source=\"{name}\"}}"));
            if let (Some(sum), Some(count)) = (series("sum"), series("count")) {
                eprintln!("{name}: {count} batches, {:.0} messages per batch on average", sum / count.max(1.0));
            }
            http.delete(format!("{base}/v1/admin/sources/{name}")).bearer_auth(BENCH_MASTER_KEY).send().await?;
            return Ok((rate, stored, duplicates, dead));
        }
        anyhow::ensure!(Instant::now() < deadline, "the source handled {} of {n} messages in 15 minutes: {state}", stored + duplicates + dead);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn nats(url: &str, base: &str, payloads: &[Vec<u8>], suffix: &str) -> anyhow::Result<Row> {
    let client = tokio::time::timeout(Duration::from_secs(3), async_nats::connect(url)).await??;
    let js = jetstream::new(client);
    let (stream_name, subject) = (format!("BENCH_SOURCES_{}", suffix.to_uppercase()), format!("bench.{suffix}.events"));
    let stream = js.create_stream(jetstream::stream::Config { name: stream_name.clone(), subjects: vec![subject.clone()], ..Default::default() }).await?;
    eprintln!("NATS: publishing {} messages…", payloads.len());
    let mut pending = Vec::with_capacity(1000);
    for p in payloads {
        pending.push(js.publish(subject.clone(), p.clone().into()).await?);
        if pending.len() == 1000 {
            for ack in pending.drain(..) {
                ack.await?;
            }
        }
    }
    for ack in pending.drain(..) {
        ack.await?;
    }
    eprintln!("NATS: the queue's own consumer…");
    let plain: jetstream::consumer::PullConsumer =
        stream.create_consumer(pull::Config { durable_name: Some("plain".into()), ack_policy: jetstream::consumer::AckPolicy::Explicit, max_ack_pending: 20_000, ..Default::default() }).await?;
    let start = Instant::now();
    let mut messages = plain.stream().max_messages_per_batch(1000).messages().await?;
    for _ in 0..payloads.len() {
        let message = messages.next().await.ok_or_else(|| anyhow::anyhow!("the stream ended"))?.map_err(|e| anyhow::anyhow!("{e}"))?;
        message.ack_with(AckKind::Ack).await.map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    js.get_stream(&stream_name).await?;
    let plain_rate = payloads.len() as f64 / start.elapsed().as_secs_f64();
    drop(messages);
    eprintln!("NATS: through the server…");
    let spec = serde_json::json!({"name": "bench-nats", "kind": "nats", "app": "bench", "url": url, "stream": stream_name, "subjects": [subject]});
    let result = through_server(base, spec, payloads.len()).await;
    js.delete_stream(&stream_name).await?;
    let (rate, stored, duplicates, dead) = result?;
    Ok(Row { queue: "NATS JetStream", plain: plain_rate, through_server: rate, stored, duplicates, dead })
}

async fn rabbit(url: &str, base: &str, payloads: &[Vec<u8>], suffix: &str) -> anyhow::Result<Row> {
    let connection = tokio::time::timeout(Duration::from_secs(3), lapin::Connection::connect(url, lapin::ConnectionProperties::default())).await??;
    let channel = connection.create_channel().await?;
    channel.confirm_select(ConfirmSelectOptions::default()).await?;
    let (plain_queue, source_queue) = (format!("bench-sources-plain-{suffix}"), format!("bench-sources-{suffix}"));
    let durable = QueueDeclareOptions { durable: true, ..QueueDeclareOptions::default() };
    for q in [&plain_queue, &source_queue] {
        channel.queue_declare(q.as_str().into(), durable, lapin::types::FieldTable::default()).await?;
    }
    eprintln!("RabbitMQ: publishing {} messages to each of two queues…", payloads.len());
    for q in [&plain_queue, &source_queue] {
        let mut confirms = Vec::with_capacity(1000);
        for p in payloads {
            let properties = lapin::BasicProperties::default().with_delivery_mode(2);
            confirms.push(channel.basic_publish("".into(), q.as_str().into(), BasicPublishOptions::default(), p, properties).await?);
            if confirms.len() == 1000 {
                for c in confirms.drain(..) {
                    anyhow::ensure!(c.await?.is_ack(), "a publish was not confirmed");
                }
            }
        }
        for c in confirms.drain(..) {
            anyhow::ensure!(c.await?.is_ack(), "a publish was not confirmed");
        }
    }
    eprintln!("RabbitMQ: the queue's own consumer…");
    let consumer_channel = connection.create_channel().await?;
    consumer_channel.basic_qos(1000, BasicQosOptions::default()).await?;
    let start = Instant::now();
    let mut consumer = consumer_channel.basic_consume(plain_queue.as_str().into(), "plain".into(), BasicConsumeOptions::default(), lapin::types::FieldTable::default()).await?;
    for _ in 0..payloads.len() {
        let delivery = consumer.next().await.ok_or_else(|| anyhow::anyhow!("the consumer ended"))??;
        delivery.ack(BasicAckOptions::default()).await?;
    }
    let plain_rate = payloads.len() as f64 / start.elapsed().as_secs_f64();
    consumer_channel.close(200, "done".into()).await?;
    eprintln!("RabbitMQ: through the server…");
    let spec = serde_json::json!({"name": "bench-rabbitmq", "kind": "rabbitmq", "app": "bench", "url": url, "queue": source_queue});
    let result = through_server(base, spec, payloads.len()).await;
    for q in [&plain_queue, &source_queue] {
        channel.queue_delete(q.as_str().into(), QueueDeleteOptions::default()).await?;
    }
    let (rate, stored, duplicates, dead) = result?;
    Ok(Row { queue: "RabbitMQ", plain: plain_rate, through_server: rate, stored, duplicates, dead })
}
