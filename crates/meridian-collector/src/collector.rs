//! The collector: split → pipeline → de-duplicate → append (acknowledged after fsync)
//! → per-event report; invalid events go to the dead-letter topic.

use crate::dedup::{event_hash, Deduplicator, Reservation};
use crate::split::{split_events, Framing};
use crate::{segment, CollectorError, Result};
use arc_swap::ArcSwap;
pub use meridian_api::dead_letters::ReplayReport;
pub use meridian_api::events::{EventOutcome, EventStatus, IngestReport, OutcomeError};
use bytes::Bytes;
use meridian_event::{AppId, ErrorCode, Event, EventError, EventId, Timestamp, ValidationPolicy};
use meridian_log::{AppendRecord, Log, LogError, TopicName};
use meridian_pipeline::Pipeline;
use meridian_state::{KvStore, WriteBatch};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The topic invalid events go to, with their reason.
pub const DEAD_LETTER_TOPIC: &str = "dead-letters";
const DEAD_LETTER_CURSORS_TABLE: &str = "dead_letter_cursors";

/// Collector limits and policies.
#[derive(Debug, Clone)]
pub struct CollectorConfig {
    /// Most events in one request.
    pub max_events_per_batch: usize,
    /// How long event ids are remembered for de-duplication.
    pub dedup_window: Duration,
    /// Most ids remembered per generation (bounds memory; see `dedup`).
    pub dedup_max_entries: usize,
    /// Event-time policy.
    pub policy: ValidationPolicy,
    /// Partitions of topics the collector creates.
    pub partitions: u32,
    /// `Retry-After` suggested when the log is overloaded.
    pub overload_retry_after_secs: u64,
}

impl Default for CollectorConfig {
    fn default() -> Self {
        CollectorConfig {
            max_events_per_batch: 2000,
            dedup_window: Duration::from_secs(600),
            dedup_max_entries: 4_000_000,
            policy: ValidationPolicy::default(),
            partitions: 4,
            overload_retry_after_secs: 1,
        }
    }
}

/// How a request body is to be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFormat {
    /// Canonical events: a JSON array, one object, or NDJSON.
    Events(Framing),
    /// Segment's `/v1/batch` body: `{"batch": [messages…]}`.
    SegmentBatch,
    /// One Segment message of the given type (`/v1/track`…).
    SegmentMessage(&'static str),
}

/// A rejected event's error for its report entry and dead letter.
fn outcome_error(e: &EventError) -> OutcomeError {
    OutcomeError { code: e.code.as_str().to_owned(), field: e.field.clone(), message: e.message.clone() }
}

/// A message a source consumed, handed to [`Collector::ingest_messages`].
#[derive(Debug, Clone, Copy)]
pub struct SourcedMessage<'a> {
    /// The source's name (parsers scoped to it apply).
    pub source: &'a str,
    /// The message as consumed (one JSON object).
    pub payload: &'a [u8],
    /// The event id when the payload has none (stable across redeliveries).
    pub default_id: &'a str,
    /// Where it came from, kept in its dead letter if it is rejected.
    pub origin: &'a str,
}

/// An invalid event kept with its reason.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// Offset in the dead-letter topic (filled when listed).
    #[serde(default)]
    pub offset: u64,
    /// App.
    pub app: AppId,
    /// When it was received, ms since the epoch.
    pub received: i64,
    /// Why it was rejected.
    pub error: OutcomeError,
    /// The event as sent (lossy UTF-8 if it was not valid UTF-8).
    pub raw: String,
    /// `event`, or the Segment message type it came as.
    pub format: String,
    /// Where a message from a source came from (source, kind, subject/queue/file, offset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
}


struct Prepared {
    outcome: EventOutcome,
    hash: Option<u64>,
    routes: Vec<(TopicName, AppendRecord)>,
    dead_letter: Option<AppendRecord>,
}

/// The collector (see the module docs).
pub struct Collector {
    log: Arc<dyn Log>,
    store: Arc<dyn KvStore>,
    pipeline: ArcSwap<Pipeline>,
    dedup: Arc<Deduplicator>,
    config: CollectorConfig,
    dead_letter_topic: TopicName,
    id_prefix: String,
    id_counter: AtomicU64,
    replay_lock: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Collector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Collector").field("config", &self.config).field("dedup_entries", &self.dedup.len()).finish()
    }
}

impl Collector {
    /// A collector appending to `log`. Creates the pipeline's topics and the dead-letter
    /// topic, and rebuilds the de-duplication window from the log's tail.
    pub fn new(log: Arc<dyn Log>, store: Arc<dyn KvStore>, pipeline: Pipeline, config: CollectorConfig) -> Result<Collector> {
        let dead_letter_topic = TopicName::new(DEAD_LETTER_TOPIC)?;
        log.ensure_topic(&dead_letter_topic, 1)?;
        let now = Timestamp::now().millis();
        let mut nonce = [0u8; 4];
        getrandom::getrandom(&mut nonce).map_err(|e| CollectorError::InvalidArgument(format!("no random source: {e}")))?;
        let collector = Collector {
            dedup: Arc::new(Deduplicator::new(config.dedup_window, config.dedup_max_entries, now)),
            log,
            store,
            pipeline: ArcSwap::from_pointee(Pipeline::default()),
            config,
            dead_letter_topic,
            id_prefix: format!("m{:08x}{:x}", u32::from_be_bytes(nonce), now),
            id_counter: AtomicU64::new(0),
            replay_lock: tokio::sync::Mutex::new(()),
        };
        collector.set_pipeline(pipeline)?;
        collector.recover_dedup()?;
        Ok(collector)
    }

    /// Installs a new pipeline (config reload); its topics are created first, so a bad
    /// pipeline is refused and the old one stays.
    pub fn set_pipeline(&self, pipeline: Pipeline) -> Result<()> {
        for topic in pipeline.topics() {
            self.log.ensure_topic(&topic, self.config.partitions)?;
        }
        self.pipeline.store(Arc::new(pipeline));
        Ok(())
    }

    /// The pipeline in force.
    pub fn pipeline(&self) -> Arc<Pipeline> {
        self.pipeline.load_full()
    }

    /// The log.
    pub fn log(&self) -> &Arc<dyn Log> {
        &self.log
    }

    /// Number of event ids remembered for de-duplication.
    pub fn dedup_entries(&self) -> usize {
        self.dedup.len()
    }

    fn recover_dedup(&self) -> Result<()> {
        let started = std::time::Instant::now();
        let cutoff = Timestamp::now().millis() - self.dedup.window_ms();
        let mut n = 0u64;
        for topic in self.pipeline().topics() {
            let partitions = self.log.partition_count(&topic)?;
            for partition in 0..partitions {
                let offsets = self.log.offsets(&topic, partition)?;
                // Binary search for the first record received within the window.
                let (mut lo, mut hi) = (offsets.start, offsets.end);
                while lo < hi {
                    let mid = lo + (hi - lo) / 2;
                    match self.log.read(&topic, partition, mid, 1, usize::MAX)?.first() {
                        Some(r) if r.timestamp < cutoff => lo = mid + 1,
                        _ => hi = mid,
                    }
                }
                let mut from = lo;
                while from < offsets.end {
                    let records = self.log.read(&topic, partition, from, 8192, 8 << 20)?;
                    let Some(last) = records.last() else { break };
                    from = last.offset + 1;
                    for record in &records {
                        if let Ok(event) = Event::decode_any(&record.value) {
                            self.dedup.remember(event_hash(event.app.as_str(), event.id.as_str()));
                            n += 1;
                        }
                    }
                }
            }
        }
        tracing::info!(events = n, elapsed_ms = started.elapsed().as_millis() as u64, "de-duplication window rebuilt from the log");
        Ok(())
    }

    fn next_id(&self) -> EventId {
        let n = self.id_counter.fetch_add(1, Ordering::Relaxed);
        EventId::new(format!("{}-{n}", self.id_prefix)).expect("generated ids are valid")
    }

    fn prepare(&self, pipeline: &Pipeline, app: &AppId, index: usize, bytes: &[u8], segment_type: Option<&str>, received: Timestamp) -> Prepared {
        let format = segment_type.unwrap_or("event");
        let parsed: std::result::Result<Value, EventError> = match std::str::from_utf8(bytes) {
            Err(e) => Err(EventError::whole(ErrorCode::InvalidUtf8, format!("event is not valid UTF-8 (bad byte at {})", e.valid_up_to()))),
            Ok(_) if bytes.is_empty() => Err(EventError::whole(ErrorCode::InvalidJson, "empty element; send one JSON object per event")),
            Ok(text) => serde_json::from_str::<Value>(text)
                .map_err(|e| EventError::whole(ErrorCode::InvalidJson, format!("malformed JSON at line {} column {}: {e}", e.line(), e.column()))),
        };
        self.prepare_value(pipeline, app, index, parsed, bytes, format, received, None)
    }

    #[allow(clippy::too_many_arguments)]
    fn prepare_value(
        &self,
        pipeline: &Pipeline,
        app: &AppId,
        index: usize,
        parsed: std::result::Result<Value, EventError>,
        raw: &[u8],
        format: &str,
        received: Timestamp,
        origin: Option<(&str, &str)>,
    ) -> Prepared {
        // (source name, origin): the source's parsers apply; its dead letter names the origin.
        let (source, origin) = match origin {
            Some((source, origin)) => (Some(source), Some(origin)),
            None => (None, None),
        };
        let result = parsed.and_then(|value| {
            let value = if format == "event" { value } else { segment::to_canonical(value, Some(format)) };
            pipeline.process_from(value, app, source, received, &self.config.policy, || self.next_id())
        });
        match result {
            Ok(processed) => {
                let event = processed.event;
                let routes = processed
                    .routes
                    .into_iter()
                    .map(|r| {
                        (r.topic, AppendRecord { key: Bytes::from(r.partition_key.into_bytes()), value: Bytes::from(r.payload), timestamp: received.millis() })
                    })
                    .collect();
                Prepared {
                    hash: Some(event_hash(app.as_str(), event.id.as_str())),
                    outcome: EventOutcome { index, status: EventStatus::Accepted, id: Some(event.id.as_str().to_owned()), error: None },
                    routes,
                    dead_letter: None,
                }
            }
            Err(error) if error.code == ErrorCode::Filtered => Prepared {
                hash: None,
                outcome: EventOutcome { index, status: EventStatus::Filtered, id: None, error: Some(outcome_error(&error)) },
                routes: Vec::new(),
                dead_letter: None,
            },
            Err(error) => {
                let letter = DeadLetter {
                    offset: 0,
                    app: app.clone(),
                    received: received.millis(),
                    error: outcome_error(&error),
                    raw: String::from_utf8_lossy(raw).into_owned(),
                    format: format.to_owned(),
                    origin: origin.map(str::to_owned),
                };
                Prepared {
                    hash: None,
                    outcome: EventOutcome { index, status: EventStatus::Rejected, id: None, error: Some(outcome_error(&error)) },
                    routes: Vec::new(),
                    dead_letter: Some(AppendRecord {
                        key: Bytes::copy_from_slice(app.as_str().as_bytes()),
                        // Strings and integers only: serialising it cannot fail.
                        value: Bytes::from(serde_json::to_vec(&letter).expect("a dead letter always serialises to JSON")),
                        timestamp: received.millis(),
                    }),
                }
            }
        }
    }

    /// Ingests one request body for `app`. Returns the per-event report once every
    /// accepted event is durable.
    pub async fn ingest(&self, app: &AppId, body: &[u8], format: BodyFormat) -> Result<IngestReport> {
        let received = Timestamp::now();
        let pipeline = self.pipeline();
        let prepared: Vec<Prepared> = match format {
            BodyFormat::Events(framing) => {
                let parts = split_events(body, framing);
                self.check_count(parts.len())?;
                parts.iter().enumerate().map(|(i, part)| self.prepare(&pipeline, app, i, part, None, received)).collect()
            }
            BodyFormat::SegmentMessage(kind) => {
                self.check_count(if body.iter().all(u8::is_ascii_whitespace) { 0 } else { 1 })?;
                vec![self.prepare(&pipeline, app, 0, body, Some(kind), received)]
            }
            BodyFormat::SegmentBatch => {
                let value: Value = serde_json::from_slice(body).map_err(|e| CollectorError::MalformedBody(format!("a Segment batch must be a JSON object with a \"batch\" array: {e}")))?;
                let Some(Value::Array(messages)) = value.get("batch") else {
                    return Err(CollectorError::MalformedBody("a Segment batch must be a JSON object with a \"batch\" array".into()));
                };
                self.check_count(messages.len())?;
                messages
                    .iter()
                    .enumerate()
                    .map(|(i, message)| {
                        let kind = message.get("type").and_then(Value::as_str).and_then(|t| segment::MESSAGE_TYPES.iter().copied().find(|k| *k == t));
                        // A JSON value just parsed: writing it back cannot fail.
                        let raw = serde_json::to_vec(message).expect("a parsed JSON value always serialises");
                        match kind {
                            Some(kind) => self.prepare_value(&pipeline, app, i, Ok(message.clone()), &raw, kind, received, None),
                            None => self.prepare_value(
                                &pipeline,
                                app,
                                i,
                                Err(EventError::field(ErrorCode::InvalidField, "type", format!("Segment message type must be one of {}", segment::MESSAGE_TYPES.join(", ")))),
                                &raw,
                                "segment",
                                received,
                                None,
                            ),
                        }
                    })
                    .collect()
            }
        };
        self.store_prepared(prepared, received).await
    }

    /// Ingests messages consumed from a source (one event each), for `app`: like
    /// [`Collector::ingest`], except that the pipeline's parsers scoped to the message's
    /// source apply, an event without an `id` gets the message's
    /// `default_id` (stable across redeliveries, so a redelivered message is a duplicate,
    /// not a second event), and a rejected one's dead letter names its `origin`. Returns
    /// the per-message report once every accepted event and dead letter is durable.
    pub async fn ingest_messages(&self, app: &AppId, messages: &[SourcedMessage<'_>]) -> Result<IngestReport> {
        let received = Timestamp::now();
        let pipeline = self.pipeline();
        self.check_count(messages.len())?;
        let prepared = messages
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let parsed = match std::str::from_utf8(m.payload) {
                    Err(e) => Err(EventError::whole(ErrorCode::InvalidUtf8, format!("message is not valid UTF-8 (bad byte at {})", e.valid_up_to()))),
                    Ok(text) => serde_json::from_str::<Value>(text)
                        .map_err(|e| EventError::whole(ErrorCode::InvalidJson, format!("malformed JSON at line {} column {}: {e}; a source's parser needs a JSON object per message", e.line(), e.column()))),
                };
                let parsed = parsed.map(|mut value| {
                    if let Value::Object(object) = &mut value {
                        if !object.contains_key("id") {
                            object.insert("id".into(), Value::String(m.default_id.to_owned()));
                        }
                    }
                    value
                });
                self.prepare_value(&pipeline, app, i, parsed, m.payload, "event", received, Some((m.source, m.origin)))
            })
            .collect();
        self.store_prepared(prepared, received).await
    }

    fn check_count(&self, count: usize) -> Result<()> {
        if count == 0 {
            return Err(CollectorError::EmptyBatch);
        }
        if count > self.config.max_events_per_batch {
            return Err(CollectorError::TooManyEvents { count, max: self.config.max_events_per_batch });
        }
        Ok(())
    }

    async fn store_prepared(&self, mut prepared: Vec<Prepared>, received: Timestamp) -> Result<IngestReport> {
        let hashes: Vec<u64> = prepared.iter().filter_map(|p| p.hash).collect();
        // A retry of an event whose first append is still in flight waits for its outcome:
        // it is a duplicate only once that append is durable.
        let (fresh, claim) = loop {
            match self.dedup.reserve(&hashes, received.millis()) {
                Reservation::Claimed(fresh, claim) => break (fresh, claim),
                Reservation::InFlight(waits) => {
                    metrics::counter!("meridian_collector_retry_waits_total").increment(1);
                    for wait in waits {
                        wait.settled().await;
                    }
                }
            }
        };
        let mut fresh_iter = fresh.into_iter();
        let mut by_topic: BTreeMap<TopicName, Vec<AppendRecord>> = BTreeMap::new();
        let mut dead_letters = Vec::new();
        for p in prepared.iter_mut() {
            if let Some(hash) = p.hash {
                debug_assert!(hashes.contains(&hash));
                if fresh_iter.next() == Some(true) {
                    for (topic, record) in std::mem::take(&mut p.routes) {
                        by_topic.entry(topic).or_default().push(record);
                    }
                } else {
                    p.outcome.status = EventStatus::Duplicate;
                    p.outcome.error = Some(OutcomeError {
                        code: ErrorCode::DuplicateEvent.as_str().into(),
                        field: Some("id".into()),
                        message: "an event with this id was already accepted; it was not stored again".into(),
                    });
                }
            }
            if let Some(letter) = p.dead_letter.take() {
                dead_letters.push(letter);
            }
        }
        if !dead_letters.is_empty() {
            by_topic.entry(self.dead_letter_topic.clone()).or_default().extend(dead_letters);
        }
        let appends: Vec<_> = by_topic.into_iter().map(|(topic, records)| self.log.append(&topic, records)).collect();
        // The appends are awaited and the claim settled in a task of its own, so the
        // outcome is recorded even if this request is dropped meanwhile (client gone):
        // retries waiting for it then see what really happened.
        let outcome = tokio::spawn(async move {
            let results = futures::future::join_all(appends).await;
            let error = results.into_iter().find_map(|r| r.err());
            claim.settle(error.is_none());
            error
        });
        // Only a panic or a runtime shutting down ends the task early; its claim then
        // counted as failed, so a retry is stored.
        let error = outcome.await.map_err(|e| LogError::Io(std::io::Error::other(format!("the append ended without an outcome: {e}"))))?;
        if let Some(error) = error {
            return Err(match error {
                LogError::Overloaded { .. } => {
                    metrics::counter!("meridian_collector_overloaded_total").increment(1);
                    CollectorError::Overloaded { retry_after_secs: self.config.overload_retry_after_secs }
                }
                other => other.into(),
            });
        }
        let mut report = IngestReport::default();
        for p in prepared {
            match p.outcome.status {
                EventStatus::Accepted => report.accepted += 1,
                EventStatus::Rejected => report.rejected += 1,
                EventStatus::Duplicate => report.duplicates += 1,
                EventStatus::Filtered => report.filtered += 1,
            }
            report.results.push(p.outcome);
        }
        metrics::counter!("meridian_collector_events_total", "status" => "accepted").increment(report.accepted as u64);
        metrics::counter!("meridian_collector_events_total", "status" => "rejected").increment(report.rejected as u64);
        metrics::counter!("meridian_collector_events_total", "status" => "duplicate").increment(report.duplicates as u64);
        metrics::counter!("meridian_collector_events_total", "status" => "filtered").increment(report.filtered as u64);
        Ok(report)
    }

    /// Dead letters of `app` from offset `from`, at most `limit`; returns them and the
    /// offset to continue from.
    pub fn dead_letters(&self, app: &AppId, from: u64, limit: usize) -> Result<(Vec<DeadLetter>, u64)> {
        let mut out = Vec::new();
        let end = self.log.offsets(&self.dead_letter_topic, 0)?.end;
        let mut next = from;
        while next < end && out.len() < limit {
            let records = self.log.read(&self.dead_letter_topic, 0, next, 1024, 4 << 20)?;
            let Some(last) = records.last() else { break };
            let last_offset = last.offset;
            for record in records {
                next = record.offset + 1;
                if let Ok(mut letter) = serde_json::from_slice::<DeadLetter>(&record.value) {
                    if &letter.app == app {
                        letter.offset = record.offset;
                        out.push(letter);
                        if out.len() >= limit {
                            break;
                        }
                    }
                }
            }
            if out.len() < limit {
                next = last_offset + 1;
            }
        }
        Ok((out, next))
    }

    /// Sends `app`'s dead letters received since the last replay through the current
    /// pipeline again. Valid ones are stored (de-duplicated by id), the others written
    /// again with their new reason. The log reads, the pipeline and the cursor's commit
    /// run on the blocking pool; only the appends are awaited here.
    pub async fn replay_dead_letters(self: &Arc<Self>, app: &AppId) -> Result<ReplayReport> {
        let _guard = self.replay_lock.lock().await;
        let cursor_key = app.as_str().as_bytes().to_vec();
        let (from, end) = {
            let (this, key) = (self.clone(), cursor_key.clone());
            off_async_thread(move || {
                let from = this.store.get(DEAD_LETTER_CURSORS_TABLE, &key)?.and_then(|b| b.try_into().ok()).map(u64::from_be_bytes).unwrap_or(0);
                Ok((from, this.log.offsets(&this.dead_letter_topic, 0)?.end))
            })
            .await?
        };
        let pipeline = self.pipeline();
        let mut report = ReplayReport::default();
        let mut next = from;
        while next < end {
            let (this, app, pipeline) = (self.clone(), app.clone(), pipeline.clone());
            let (prepared, after) = off_async_thread(move || {
                let (letters, after) = this.dead_letters(&app, next, 500)?;
                let prepared: Vec<Prepared> = letters
                    .iter()
                    .filter(|l| l.offset < end)
                    .enumerate()
                    .map(|(i, letter)| {
                        let format = match letter.format.as_str() {
                            "event" => None,
                            other => segment::MESSAGE_TYPES.iter().copied().find(|k| *k == other),
                        };
                        // Replays keep the original receive time so the time policy judges
                        // the event as it was judged when it arrived.
                        this.prepare(&pipeline, &app, i, letter.raw.as_bytes(), format, Timestamp(letter.received))
                    })
                    .collect();
                Ok((prepared, after.min(end)))
            })
            .await?;
            next = after;
            if prepared.is_empty() {
                continue;
            }
            report.replayed += prepared.len();
            let stored = self.store_prepared(prepared, Timestamp::now()).await?;
            report.accepted += stored.accepted;
            report.duplicates += stored.duplicates;
            report.still_failing += stored.rejected;
            report.filtered += stored.filtered;
        }
        let this = self.clone();
        off_async_thread(move || {
            let mut batch = WriteBatch::new();
            batch.put(DEAD_LETTER_CURSORS_TABLE, cursor_key, end.to_be_bytes().to_vec());
            Ok(this.store.commit(batch)?)
        })
        .await?;
        Ok(report)
    }

    /// Counts of dead letters per app (for the console), scanning at most `limit` records.
    pub fn dead_letter_counts(&self, limit: usize) -> Result<HashMap<String, u64>> {
        let offsets = self.log.offsets(&self.dead_letter_topic, 0)?;
        let from = offsets.end.saturating_sub(limit as u64).max(offsets.start);
        let mut counts = HashMap::new();
        for record in self.log.read(&self.dead_letter_topic, 0, from, limit, 16 << 20)? {
            if let Ok(letter) = serde_json::from_slice::<DeadLetter>(&record.value) {
                *counts.entry(letter.app.to_string()).or_default() += 1;
            }
        }
        Ok(counts)
    }
}

/// Runs blocking work (log reads, store reads and commits) on the blocking pool.
async fn off_async_thread<T: Send + 'static>(work: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(work).await.map_err(|e| LogError::Io(std::io::Error::other(format!("blocking task failed: {e}"))))?
}
