//! The runner's checks, on the file source and the in-memory sink: overload (same batch
//! again, nothing acked meanwhile), sink failures, sources that fail and are reopened,
//! poison messages acked, the status.

use crate::{append, FileHarness};
use meridian_sources::{AckToken, FileSource, MemorySink, RunnerConfig, Source, SourceError, SourceMessage, SourceRunner};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

fn config() -> RunnerConfig {
    RunnerConfig { batch_max: 10, wait: Duration::from_millis(50), backoff_min: Duration::from_millis(5), backoff_max: Duration::from_millis(50), lag_every: Duration::from_millis(10), ..RunnerConfig::default() }
}

fn lines(h: &FileHarness, n: usize) {
    let text: String = (0..n).map(|i| format!("{{\"n\":{i}}}\n")).collect();
    append(h.dir.path(), "events.ndjson", &text);
}

fn file_runner(h: &Arc<FileHarness>, sink: &Arc<MemorySink>) -> SourceRunner {
    let h2 = h.clone();
    SourceRunner::new("files", "file", move || {
        let h = h2.clone();
        async move { Ok(Box::new(h.source().await) as Box<dyn Source>) }
    }, sink.clone(), config())
}

async fn until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn an_overloaded_sink_gets_the_same_batch_again_and_each_message_is_stored_once() {
    let h = Arc::new(FileHarness::new());
    lines(&h, 25);
    let sink = Arc::new(MemorySink::new());
    sink.overload_next(3, Duration::from_millis(10));
    let runner = file_runner(&h, &sink);
    let status = runner.status();
    let cancel = CancellationToken::new();
    let task = tokio::spawn(runner.run(cancel.clone()));
    until("all stored", || sink.len() == 25).await;
    cancel.cancel();
    let last = task.await.unwrap();
    assert_eq!(last.overloaded, 3);
    assert_eq!((last.stored, last.duplicates, last.messages_total), (25, 0, 25), "{last:?}");
    assert_eq!(sink.duplicates(), 0, "an overloaded batch was not acked and not re-read: the same batch was delivered again");
    assert!(!status.get().running);
}

#[tokio::test]
async fn nothing_is_acked_while_the_sink_is_overloaded() {
    let h = Arc::new(FileHarness::new());
    lines(&h, 5);
    let sink = Arc::new(MemorySink::new());
    sink.overload_next(u32::MAX, Duration::from_millis(5));
    let cancel = CancellationToken::new();
    let task = tokio::spawn(file_runner(&h, &sink).run(cancel.clone()));
    until("several refused deliveries", || sink.calls() >= 5).await;
    cancel.cancel();
    let last = task.await.unwrap();
    assert_eq!(last.messages_total, 0);
    assert!(last.overloaded >= 5);
    let mut source = h.source().await;
    assert!(source.positions().is_empty(), "no position was stored");
    assert_eq!(source.next(10, Duration::from_millis(200)).await.unwrap().len(), 5, "every message is still there");
}

#[tokio::test]
async fn a_failing_sink_is_retried_and_the_error_shown_until_it_recovers() {
    let h = Arc::new(FileHarness::new());
    lines(&h, 10);
    let sink = Arc::new(MemorySink::new());
    sink.fail_next(2);
    let runner = file_runner(&h, &sink);
    let status = runner.status();
    let cancel = CancellationToken::new();
    let task = tokio::spawn(runner.run(cancel.clone()));
    until("all stored", || sink.len() == 10).await;
    until("the error cleared once a batch was acked", || status.get().last_error.is_none()).await;
    cancel.cancel();
    let last = task.await.unwrap();
    assert_eq!(last.stored, 10);
    assert_eq!(sink.calls(), 3, "two failures, then the same batch again");
    assert_eq!(sink.duplicates(), 0);
}

#[tokio::test]
async fn poison_messages_are_dead_lettered_acked_and_do_not_block() {
    let h = Arc::new(FileHarness::new());
    append(h.dir.path(), "events.ndjson", "{\"n\":1}\nnot json {\n[1,2]\n{\"n\":2}\n");
    let sink = Arc::new(MemorySink::new());
    let cancel = CancellationToken::new();
    let task = tokio::spawn(file_runner(&h, &sink).run(cancel.clone()));
    until("all answered", || sink.len() == 4).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    cancel.cancel();
    let last = task.await.unwrap();
    assert_eq!((last.stored, last.dead_lettered, last.messages_total), (2, 2, 4), "{last:?}");
    let codes: Vec<Option<String>> = sink.held().into_iter().map(|m| m.dead_letter).collect();
    assert_eq!(codes, [None, Some("invalid_json".into()), Some("not_an_object".into()), None]);
    let mut source = h.source().await;
    assert!(source.next(10, Duration::from_millis(100)).await.unwrap().is_empty(), "the poison messages were acked with the rest");
}

/// A file source whose `next` fails on its second call: a connection that breaks.
struct Breaks {
    inner: FileSource,
    calls: u32,
}

#[async_trait::async_trait]
impl Source for Breaks {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn kind(&self) -> &'static str {
        "file"
    }
    async fn next(&mut self, max: usize, wait: Duration) -> meridian_sources::Result<Vec<SourceMessage>> {
        self.calls += 1;
        if self.calls == 2 {
            return Err(SourceError::backend("files", "connection reset"));
        }
        self.inner.next(max, wait).await
    }
    async fn ack(&mut self, tokens: Vec<AckToken>) -> meridian_sources::Result<()> {
        self.inner.ack(tokens).await
    }
    async fn lag(&mut self) -> Option<u64> {
        Some(7)
    }
    async fn close(self: Box<Self>) -> meridian_sources::Result<()> {
        Box::new(self.inner).close().await
    }
}

#[tokio::test]
async fn a_failing_source_is_reopened_with_backoff_and_loses_nothing() {
    let h = Arc::new(FileHarness::new());
    lines(&h, 35);
    let sink = Arc::new(MemorySink::new());
    let opens = Arc::new(AtomicU32::new(0));
    let (h2, opens2) = (h.clone(), opens.clone());
    let runner = SourceRunner::new("files", "file", move || {
        let (h, opens) = (h2.clone(), opens2.clone());
        async move {
            // The first two opens fail as an unreachable server would.
            if opens.fetch_add(1, Ordering::SeqCst) < 2 {
                return Err(SourceError::connect("files", "connection refused"));
            }
            Ok(Box::new(Breaks { inner: h.source().await, calls: 0 }) as Box<dyn Source>)
        }
    }, sink.clone(), config());
    let status = runner.status();
    let cancel = CancellationToken::new();
    let task = tokio::spawn(runner.run(cancel.clone()));
    until("all stored", || sink.len() == 35).await;
    let seen = status.get();
    assert_eq!(seen.lag, Some(7), "lag read from the source");
    assert!(seen.running);
    cancel.cancel();
    let last = task.await.unwrap();
    assert_eq!(last.stored, 35);
    assert_eq!(sink.duplicates(), 0, "each batch was acked before the source broke");
    assert!(opens.load(Ordering::SeqCst) >= 2 + 4, "reopened after each break: {} opens", opens.load(Ordering::SeqCst));
}

#[tokio::test]
async fn the_status_counts_and_the_rate_are_readable_while_running() {
    let h = Arc::new(FileHarness::new());
    let sink = Arc::new(MemorySink::new());
    let runner = file_runner(&h, &sink);
    let status = runner.status();
    assert!(!status.get().running);
    let cancel = CancellationToken::new();
    let task = tokio::spawn(runner.run(cancel.clone()));
    until("running", || status.get().running && status.get().connected).await;
    for _ in 0..12 {
        lines(&h, 50);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    until("all stored", || sink.len() == 600).await;
    let seen = status.get();
    assert!(seen.events_per_second > 0.0, "{seen:?}");
    assert_eq!((seen.name.as_str(), seen.kind, seen.messages_total, seen.lag), ("files", "file", 600, None));
    cancel.cancel();
    let last = task.await.unwrap();
    assert!(!last.running && !last.connected);
}

/// A sink that takes a while for some batches (the first one longest) and counts how
/// many deliveries overlap.
struct SlowSink {
    now: AtomicU32,
    most: AtomicU32,
    calls: AtomicU32,
    stored: parking_lot::Mutex<Vec<String>>,
}

#[async_trait::async_trait]
impl meridian_sources::Sink for SlowSink {
    async fn deliver(&self, _source: &str, messages: &[SourceMessage]) -> Result<Vec<meridian_sources::Delivery>, meridian_sources::SinkError> {
        let now = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.most.fetch_max(now, Ordering::SeqCst);
        // The first batch is the slowest: later ones finish before it.
        let delay = if self.calls.fetch_add(1, Ordering::SeqCst) == 0 { 150 } else { 20 };
        tokio::time::sleep(Duration::from_millis(delay)).await;
        self.stored.lock().extend(messages.iter().map(|m| m.id.clone()));
        self.now.fetch_sub(1, Ordering::SeqCst);
        Ok(vec![meridian_sources::Delivery::Stored; messages.len()])
    }
}

/// A file source that records the ids of each acknowledged batch, in ack order (its
/// tokens carry the message id beside the file source's own token).
struct RecordsAcks {
    inner: FileSource,
    acked: Arc<parking_lot::Mutex<Vec<Vec<String>>>>,
}

#[async_trait::async_trait]
impl Source for RecordsAcks {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn kind(&self) -> &'static str {
        "file"
    }
    async fn next(&mut self, max: usize, wait: Duration) -> meridian_sources::Result<Vec<SourceMessage>> {
        let mut batch = self.inner.next(max, wait).await?;
        for m in &mut batch {
            m.token = AckToken::new((m.token.clone(), m.id.clone()));
        }
        Ok(batch)
    }
    async fn ack(&mut self, tokens: Vec<AckToken>) -> meridian_sources::Result<()> {
        let pairs: Vec<(AckToken, String)> = tokens.iter().map(|t| t.downcast_ref::<(AckToken, String)>().expect("this source's token").clone()).collect();
        self.acked.lock().push(pairs.iter().map(|(_, id)| id.clone()).collect());
        self.inner.ack(pairs.into_iter().map(|(t, _)| t).collect()).await
    }
    async fn lag(&mut self) -> Option<u64> {
        None
    }
    async fn close(self: Box<Self>) -> meridian_sources::Result<()> {
        Box::new(self.inner).close().await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_are_delivered_together_and_acknowledged_in_the_order_they_were_read() {
    let h = Arc::new(FileHarness::new());
    lines(&h, 100);
    let sink = Arc::new(SlowSink { now: AtomicU32::new(0), most: AtomicU32::new(0), calls: AtomicU32::new(0), stored: Default::default() });
    let acked = Arc::new(parking_lot::Mutex::new(Vec::new()));
    let (h2, acked2) = (h.clone(), acked.clone());
    let runner = SourceRunner::new("files", "file", move || {
        let (h, acked) = (h2.clone(), acked2.clone());
        async move { Ok(Box::new(RecordsAcks { inner: h.source().await, acked }) as Box<dyn Source>) }
    }, sink.clone(), RunnerConfig { in_flight: 4, ..config() });
    let cancel = CancellationToken::new();
    let task = tokio::spawn(runner.run(cancel.clone()));
    until("all acknowledged", || acked.lock().iter().map(Vec::len).sum::<usize>() == 100).await;
    cancel.cancel();
    let last = task.await.unwrap();
    assert_eq!(last.stored, 100);
    let most = sink.most.load(Ordering::SeqCst);
    assert!(most > 1 && most <= 4, "up to 4 batches in flight at once, here {most}");
    // Acknowledged in read order (the file's order), though the first batch finished last.
    let acked_ids: Vec<String> = acked.lock().concat();
    let mut source = h.source().await;
    assert!(source.next(10, Duration::from_millis(100)).await.unwrap().is_empty(), "the position is past every line");
    let stored = sink.stored.lock().clone();
    assert_ne!(stored[..10], acked_ids[..10], "the sink finished the batches out of order");
    assert_eq!(acked_ids.len(), 100);
    assert_eq!(acked.lock()[0].len(), 10, "batches of batch_max");
    let first_batch: std::collections::HashSet<&String> = acked_ids[..10].iter().collect();
    let first_stored_at = stored.iter().position(|id| first_batch.contains(id)).unwrap();
    assert!(first_stored_at >= 10, "the slow first batch was stored after others ({first_stored_at}), yet acknowledged first");
}
