//! The conformance suite every [`Source`] passes: `source_suite!(make)` expands to one
//! `#[test]` per check.
//!
//! ```text
//! // crates/<backend>/tests/it/main.rs
//! async fn harness(test: &'static str) -> Option<std::sync::Arc<dyn SourceHarness>> { … }
//! meridian_sources::source_suite!(harness);
//! ```
//!
//! `make` is an async function called once per test with the test's name; it returns a
//! [`SourceHarness`] over a backing queue of that test's own (its own stream, queue or
//! directory), or `None` when the backend is unreachable and the test is to be skipped (the
//! harness says so loudly, and panics instead under `MERIDIAN_REQUIRE_BACKENDS=1`). The
//! harness's `cleanup` runs after each check, also when it fails. Every check is also a
//! public async function taking the harness. Each test runs on its own two-worker runtime.

use crate::memory::MemorySink;
use crate::runner::{RunnerConfig, SourceRunner};
use crate::{AckToken, Source, SourceMessage};
use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// A backing queue of one test, and how to open sources on it.
#[async_trait::async_trait]
pub trait SourceHarness: Send + Sync {
    /// Publishes `payloads` to the backing queue, in order, each as one message (payloads
    /// hold no newline), durably: they are there when this returns.
    async fn publish(&self, payloads: Vec<Vec<u8>>);

    /// A newly opened source with the same durable consumer, queue or stored positions as
    /// every other source this harness opens, as a restarted Meridian would open it.
    async fn open(&self) -> Box<dyn Source>;

    /// The longest time after a reader crashed (its source dropped without `close`) before
    /// the backend delivers its unacknowledged messages again: an ack timeout, or zero.
    fn redelivery_after(&self) -> Duration;

    /// Removes the backing queue (stream, queue, directory).
    async fn cleanup(&self);
}

/// Expands to one `#[test]` per check of this suite, each running against a harness made
/// by `$make` (an async function `fn(&'static str) -> Option<Arc<dyn SourceHarness>>`,
/// called with the test's name; `None` skips the test).
#[macro_export]
macro_rules! source_suite {
    ($make:path) => {
        $crate::source_suite!(@checks $make;
            every_message_is_delivered_once_when_each_batch_is_acked,
            unacked_messages_are_delivered_again_after_close,
            unacked_messages_are_delivered_again_after_a_crash,
            acked_messages_are_not_delivered_again_after_reopen,
            a_poison_message_is_delivered_and_does_not_block_the_next,
            next_with_nothing_published_returns_empty_within_wait,
            each_message_is_counted_once_across_a_crash_of_the_runner,
        );
    };
    (@checks $make:path; $($check:ident),+ $(,)?) => {
        $(
            #[test]
            fn $check() {
                $crate::conformance::run(stringify!($check), $make, $crate::conformance::$check);
            }
        )+
    };
}

/// Runs one check on a fresh two-worker runtime: makes the harness, runs the check, cleans
/// up (also when the check panics), then re-raises the check's panic.
pub fn run<M, MF, C, CF>(test: &'static str, make: M, check: C)
where
    M: FnOnce(&'static str) -> MF,
    MF: Future<Output = Option<Arc<dyn SourceHarness>>>,
    C: FnOnce(Arc<dyn SourceHarness>) -> CF,
    CF: Future<Output = ()> + Send + 'static,
{
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("a tokio runtime");
    runtime.block_on(async move {
        let Some(harness) = make(test).await else { return };
        let outcome = tokio::spawn(check(harness.clone())).await;
        harness.cleanup().await;
        if let Err(e) = outcome {
            if e.is_panic() {
                std::panic::resume_unwind(e.into_panic());
            }
            panic!("{test}: {e}");
        }
    });
}

/// How long a check waits for messages it expects, beyond the backend's redelivery time.
const PATIENCE: Duration = Duration::from_secs(20);

fn payloads(tag: &str, range: std::ops::Range<usize>) -> Vec<Vec<u8>> {
    range.map(|i| format!(r#"{{"tag":"{tag}","n":{i}}}"#).into_bytes()).collect()
}

/// Reads until `count` messages arrived (or `patience` passed), acknowledging each batch
/// when `ack` is set. Panics when fewer arrived.
async fn collect(source: &mut dyn Source, count: usize, ack: bool, patience: Duration) -> Vec<SourceMessage> {
    let deadline = Instant::now() + patience;
    let mut got = Vec::new();
    while got.len() < count {
        assert!(Instant::now() < deadline, "{} of {count} messages arrived within {patience:?}", got.len());
        let batch = source.next((count - got.len()).min(16), Duration::from_millis(500)).await.expect("next");
        assert!(batch.len() <= (count - got.len()).min(16), "next returned {} messages, more than asked", batch.len());
        if ack && !batch.is_empty() {
            source.ack(batch.iter().map(|m| m.token.clone()).collect()).await.expect("ack");
        }
        got.extend(batch);
    }
    got
}

/// Asserts that nothing more arrives within `wait`.
async fn assert_nothing_more(source: &mut dyn Source, wait: Duration, what: &str) {
    let deadline = Instant::now() + wait;
    while Instant::now() < deadline {
        let batch = source.next(16, Duration::from_millis(300)).await.expect("next");
        assert!(batch.is_empty(), "{what}: {} unexpected messages, e.g. id {} payload {:?}", batch.len(), batch[0].id, String::from_utf8_lossy(&batch[0].payload));
    }
}

fn tokens(messages: &[SourceMessage]) -> Vec<AckToken> {
    messages.iter().map(|m| m.token.clone()).collect()
}

fn by_payload(messages: &[SourceMessage]) -> BTreeMap<Vec<u8>, String> {
    messages.iter().map(|m| (m.payload.to_vec(), m.id.clone())).collect()
}

fn assert_unique_ids(messages: &[SourceMessage]) {
    let ids: HashSet<&str> = messages.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(ids.len(), messages.len(), "ids are unique");
}

/// Every published message is delivered exactly once when each batch is acked: as many
/// messages as published, unique ids, the same payloads, in publishing order, each with
/// its origin; then nothing more.
pub async fn every_message_is_delivered_once_when_each_batch_is_acked(h: Arc<dyn SourceHarness>) {
    let published = payloads("once", 0..50);
    h.publish(published.clone()).await;
    let mut source = h.open().await;
    let got = collect(&mut *source, published.len(), true, PATIENCE).await;
    assert_unique_ids(&got);
    let got_payloads: Vec<Vec<u8>> = got.iter().map(|m| m.payload.to_vec()).collect();
    assert_eq!(got_payloads, published, "the payloads as published, in order");
    for m in &got {
        assert_eq!(m.origin.source, source.name(), "origin names the source");
        assert_eq!(m.origin.kind, source.kind(), "origin names the kind");
        assert!(!m.origin.location.is_empty(), "origin has a location");
    }
    assert_nothing_more(&mut *source, Duration::from_secs(1), "after every message was acked").await;
    source.close().await.expect("close");
}

/// Messages handed out and not acked before `close` are delivered again, with the same
/// ids, by a newly opened source.
pub async fn unacked_messages_are_delivered_again_after_close(h: Arc<dyn SourceHarness>) {
    let published = payloads("close", 0..10);
    h.publish(published.clone()).await;
    let mut source = h.open().await;
    let first = collect(&mut *source, 10, false, PATIENCE).await;
    source.close().await.expect("close");
    let mut source = h.open().await;
    let again = collect(&mut *source, 10, true, PATIENCE).await;
    assert_unique_ids(&again);
    assert_eq!(by_payload(&again), by_payload(&first), "the same messages with the same ids");
    assert_nothing_more(&mut *source, Duration::from_secs(1), "after the redelivered messages were acked").await;
    source.close().await.expect("close");
}

/// Messages handed out and not acked when the reader crashed (its source dropped without
/// `close`) are delivered again, with the same ids, by a newly opened source.
pub async fn unacked_messages_are_delivered_again_after_a_crash(h: Arc<dyn SourceHarness>) {
    let published = payloads("crash", 0..10);
    h.publish(published.clone()).await;
    let mut source = h.open().await;
    let first = collect(&mut *source, 10, false, PATIENCE).await;
    drop(source);
    let mut source = h.open().await;
    let again = collect(&mut *source, 10, true, h.redelivery_after() + PATIENCE).await;
    assert_unique_ids(&again);
    assert_eq!(by_payload(&again), by_payload(&first), "the same messages with the same ids");
    source.close().await.expect("close");
}

/// Acked messages are never delivered again: after acking the first 6 of 10 and closing,
/// a new source delivers exactly the other 4 (same ids), then what was published since.
pub async fn acked_messages_are_not_delivered_again_after_reopen(h: Arc<dyn SourceHarness>) {
    let published = payloads("acked", 0..10);
    h.publish(published.clone()).await;
    let mut source = h.open().await;
    let first = collect(&mut *source, 10, false, PATIENCE).await;
    source.ack(tokens(&first[..6])).await.expect("ack");
    source.close().await.expect("close");
    let mut source = h.open().await;
    let rest = collect(&mut *source, 4, true, PATIENCE).await;
    assert_eq!(by_payload(&rest), by_payload(&first[6..]), "exactly the unacked messages, with their ids");
    assert_nothing_more(&mut *source, Duration::from_secs(1), "after the unacked rest").await;
    let later = payloads("acked-later", 0..5);
    h.publish(later.clone()).await;
    let got = collect(&mut *source, 5, true, PATIENCE).await;
    assert_eq!(got.iter().map(|m| m.payload.to_vec()).collect::<Vec<_>>(), later, "what was published since");
    source.close().await.expect("close");
    let mut source = h.open().await;
    assert_nothing_more(&mut *source, Duration::from_secs(1), "after reopening with everything acked").await;
    source.close().await.expect("close");
}

/// A poison payload (`not json {`) is delivered like any other, and once acked the
/// following messages continue; it is not delivered again.
pub async fn a_poison_message_is_delivered_and_does_not_block_the_next(h: Arc<dyn SourceHarness>) {
    let mut published = payloads("poison", 0..2);
    published.insert(1, b"not json {".to_vec());
    published.extend(payloads("poison-after", 0..3));
    h.publish(published.clone()).await;
    let mut source = h.open().await;
    let got = collect(&mut *source, published.len(), true, PATIENCE).await;
    assert_eq!(got.iter().map(|m| m.payload.to_vec()).collect::<Vec<_>>(), published, "the poison in its place, the rest after it");
    source.close().await.expect("close");
    let mut source = h.open().await;
    assert_nothing_more(&mut *source, Duration::from_secs(1), "after the poison was acked").await;
    source.close().await.expect("close");
}

/// `next` with nothing published returns empty within its `wait` (plus a margin).
pub async fn next_with_nothing_published_returns_empty_within_wait(h: Arc<dyn SourceHarness>) {
    let mut source = h.open().await;
    for wait in [Duration::from_millis(10), Duration::from_millis(500)] {
        let start = Instant::now();
        let batch = source.next(10, wait).await.expect("next");
        let took = start.elapsed();
        assert!(batch.is_empty(), "nothing was published");
        assert!(took <= wait + Duration::from_millis(1500), "next({wait:?}) took {took:?}");
    }
    source.close().await.expect("close");
}

fn runner(h: &Arc<dyn SourceHarness>, sink: &Arc<MemorySink>) -> SourceRunner {
    let opener = h.clone();
    let config = RunnerConfig { batch_max: 32, wait: Duration::from_millis(200), backoff_min: Duration::from_millis(20), backoff_max: Duration::from_millis(500), ..RunnerConfig::default() };
    SourceRunner::new("conformance", "any", move || {
        let h = opener.clone();
        async move { Ok(h.open().await) }
    }, sink.clone(), config)
}

async fn wait_for(what: &str, patience: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + patience;
    while !done() {
        assert!(Instant::now() < deadline, "{what} within {patience:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// End to end, each message counted once: a runner feeding a de-duplicating sink crashes
/// (its task aborted, the source dropped without close) while the sink holds a batch it
/// stored but did not answer for, more messages are published, and a new runner takes
/// over: in the end the sink holds every published message exactly once, and saw the
/// crashed batch again as duplicates.
pub async fn each_message_is_counted_once_across_a_crash_of_the_runner(h: Arc<dyn SourceHarness>) {
    let mut published = payloads("runner", 0..200);
    published[37] = b"not json {".to_vec();
    h.publish(published.clone()).await;
    let sink = Arc::new(MemorySink::new());
    sink.hang_after(60);
    let cancel = CancellationToken::new();
    let task = tokio::spawn(runner(&h, &sink).run(cancel.clone()));
    wait_for("the sink to hold 60 messages", PATIENCE, || sink.is_hanging()).await;
    task.abort();
    let _ = task.await;
    sink.release();
    let held_at_crash = sink.len();
    assert!((60..200).contains(&held_at_crash), "crashed mid-stream: {held_at_crash} held");
    let more = payloads("runner-after", 0..100);
    h.publish(more.clone()).await;
    published.extend(more);
    let cancel = CancellationToken::new();
    let runner = runner(&h, &sink);
    let status = runner.status();
    let task = tokio::spawn(runner.run(cancel.clone()));
    wait_for("the sink to hold every message", h.redelivery_after() + PATIENCE, || sink.len() >= published.len()).await;
    // Give a stray redelivery the chance to show up as a second copy.
    tokio::time::sleep(Duration::from_millis(500)).await;
    cancel.cancel();
    let last = task.await.expect("the runner stops when cancelled");
    assert!(!last.running, "stopped");
    let held = sink.held();
    let mut got: Vec<Vec<u8>> = held.iter().map(|m| m.payload.to_vec()).collect();
    let mut want = published.clone();
    got.sort();
    want.sort();
    assert_eq!(got, want, "every message exactly once");
    assert!(sink.duplicates() >= 1, "the batch stored but not acked before the crash came back as duplicates");
    assert_eq!(held.iter().filter(|m| m.dead_letter.is_some()).count(), 1, "the poison message dead-lettered once");
    let st = status.get();
    assert!(st.duplicates >= 1 && st.messages_total >= (published.len() - held_at_crash) as u64, "status counts: {st:?}");
}
