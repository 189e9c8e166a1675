//! `SourceRunner`: drives one [`Source`] into a [`Sink`] until cancelled — `next` →
//! `deliver` → `ack` every message the sink answered for → repeat — backing off when the
//! sink is overloaded (the same batch again, nothing acked) and reopening the source with
//! exponential backoff when it fails. Keeps a [`SourceStatus`] other threads can read and
//! emits the `meridian_source_*` metrics.
//!
//! Up to `in_flight` batches are delivered at once (each its own task), so reading the
//! next batch and making the previous ones durable overlap, and a sink that commits in
//! groups (the collector and its log) shares one commit among them. While batches are in
//! flight, what is read fills the next batch until it is full or the oldest delivery is
//! done, so batches stay near `batch_max` when the backend hands out messages in small
//! bursts (measured: 105–125 messages per batch of 500 without this). Batches are
//! acknowledged strictly in the order they were read, and only once the sink answered for
//! them: a batch that could not be delivered stops the acknowledgements of every later
//! one (those come back from the backend and are recognised as duplicates).

use crate::{AckToken, Delivery, Sink, SinkError, Source, SourceMessage};
use parking_lot::Mutex;
use serde::Serialize;
use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// How a runner paces itself.
#[derive(Debug, Clone)]
pub struct RunnerConfig {
    /// Most messages asked of the source at once (default 500).
    pub batch_max: usize,
    /// How long one `next` waits for the first message (default 1 s); also how quickly an
    /// idle runner notices its lag changed.
    pub wait: Duration,
    /// First pause after a failure (default 100 ms); doubled after each failure in a row.
    pub backoff_min: Duration,
    /// Longest pause after failures (default 30 s).
    pub backoff_max: Duration,
    /// How often the source is asked for its lag (default 1 s).
    pub lag_every: Duration,
    /// How long `close` may take when the runner stops or reopens (default 5 s).
    pub close_timeout: Duration,
    /// Most batches being delivered at once (default 4; 1 delivers one after the other).
    pub in_flight: usize,
}

impl Default for RunnerConfig {
    fn default() -> RunnerConfig {
        RunnerConfig {
            batch_max: 500,
            wait: Duration::from_secs(1),
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(30),
            lag_every: Duration::from_secs(1),
            close_timeout: Duration::from_secs(5),
            in_flight: 4,
        }
    }
}

/// What a runner has done, readable while it runs (see [`StatusHandle`]).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SourceStatus {
    /// Configured name of the source.
    pub name: String,
    /// Kind of source.
    pub kind: &'static str,
    /// True from the start of [`SourceRunner::run`] until it returns.
    pub running: bool,
    /// True while the source is open (false while reconnecting).
    pub connected: bool,
    /// Messages the sink answered for.
    pub messages_total: u64,
    /// … stored.
    pub stored: u64,
    /// … recognised as duplicates.
    pub duplicates: u64,
    /// … dead-lettered.
    pub dead_lettered: u64,
    /// Times the sink said it was overloaded.
    pub overloaded: u64,
    /// Messages waiting in the backend, when it knows.
    pub lag: Option<u64>,
    /// The last failure (source, sink or ack); cleared when a batch is next acknowledged.
    pub last_error: Option<String>,
    /// Messages per second over the last second or so.
    pub events_per_second: f64,
}

/// A shared, cheap-to-clone view of a runner's [`SourceStatus`].
#[derive(Debug, Clone)]
pub struct StatusHandle(Arc<Mutex<SourceStatus>>);

impl StatusHandle {
    /// The status now.
    pub fn get(&self) -> SourceStatus {
        self.0.lock().clone()
    }

    fn update(&self, f: impl FnOnce(&mut SourceStatus)) {
        f(&mut self.0.lock())
    }
}

type OpenFuture = Pin<Box<dyn Future<Output = crate::Result<Box<dyn Source>>> + Send>>;
type Opener = Box<dyn FnMut() -> OpenFuture + Send + Sync>;

/// Drives one source into a sink (see the module docs).
pub struct SourceRunner {
    name: String,
    open: Opener,
    sink: Arc<dyn Sink>,
    config: RunnerConfig,
    status: StatusHandle,
}

impl fmt::Debug for SourceRunner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SourceRunner").field("name", &self.name).field("config", &self.config).finish_non_exhaustive()
    }
}

impl SourceRunner {
    /// A runner of the source named `name` of kind `kind`, which `open` opens (again after
    /// each failure), delivering into `sink`.
    pub fn new<F, Fut>(name: impl Into<String>, kind: &'static str, mut open: F, sink: Arc<dyn Sink>, config: RunnerConfig) -> SourceRunner
    where
        F: FnMut() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = crate::Result<Box<dyn Source>>> + Send + 'static,
    {
        let name = name.into();
        let status = SourceStatus {
            name: name.clone(),
            kind,
            running: false,
            connected: false,
            messages_total: 0,
            stored: 0,
            duplicates: 0,
            dead_lettered: 0,
            overloaded: 0,
            lag: None,
            last_error: None,
            events_per_second: 0.0,
        };
        SourceRunner { name, open: Box::new(move || Box::pin(open()) as OpenFuture), sink, config, status: StatusHandle(Arc::new(Mutex::new(status))) }
    }

    /// The runner's status, readable from anywhere while it runs.
    pub fn status(&self) -> StatusHandle {
        self.status.clone()
    }

    /// Runs until `cancel` is cancelled, then closes the source (messages not acknowledged
    /// go back to the backend) and returns the final status. Never fails: failures are
    /// retried with backoff and shown in [`SourceStatus::last_error`].
    pub async fn run(mut self, cancel: CancellationToken) -> SourceStatus {
        let name = self.name.clone();
        let counter = |outcome: &'static str| metrics::counter!("meridian_source_messages_total", "source" => name.clone(), "outcome" => outcome);
        let counters = Counters { stored: counter("stored"), duplicate: counter("duplicate"), dead: counter("dead_lettered") };
        let lag_g = metrics::gauge!("meridian_source_lag", "source" => name.clone());
        let batch_h = metrics::histogram!("meridian_source_batch_messages", "source" => name.clone());
        let errors_c = metrics::counter!("meridian_source_errors_total", "source" => name.clone());
        self.status.update(|s| s.running = true);
        let deliverer = Arc::new(Deliverer {
            name: name.clone(),
            sink: self.sink.clone(),
            status: self.status.clone(),
            backoff_min: self.config.backoff_min,
            backoff_max: self.config.backoff_max,
            errors: errors_c.clone(),
            cancel: cancel.clone(),
        });
        let in_flight_max = self.config.in_flight.max(1);
        let mut in_flight: VecDeque<InFlight> = VecDeque::with_capacity(in_flight_max);
        // Messages read and not yet handed to a delivery (less than a batch).
        let mut pending: Vec<SourceMessage> = Vec::new();
        let mut source: Option<Box<dyn Source>> = None;
        let mut backoff = self.config.backoff_min;
        let mut last_lag: Option<Instant> = None;
        let mut rate = (Instant::now(), 0u64);
        loop {
            if cancel.is_cancelled() {
                break;
            }
            let Some(src) = source.as_mut() else {
                // Nothing is in flight while the source is closed.
                let opened = tokio::select! {
                    _ = cancel.cancelled() => break,
                    opened = (self.open)() => opened,
                };
                match opened {
                    Ok(src) => {
                        self.status.update(|s| s.connected = true);
                        source = Some(src);
                    }
                    Err(e) => {
                        deliverer.fail("cannot open the source", &e);
                        if !pause(&cancel, backoff).await {
                            break;
                        }
                        backoff = (backoff * 2).min(self.config.backoff_max);
                    }
                }
                continue;
            };
            // A full batch, or any batch when nothing else is in flight, is delivered now;
            // a partial one keeps filling while earlier ones are in flight, so batches stay
            // large however the backend hands messages out.
            let batch_max = self.config.batch_max.max(1);
            if !pending.is_empty() && in_flight.len() < in_flight_max && (pending.len() >= batch_max || in_flight.is_empty()) {
                batch_h.record(pending.len() as f64);
                in_flight.push_back(deliverer.clone().spawn(std::mem::take(&mut pending)));
                continue;
            }
            let room = batch_max.saturating_sub(pending.len());
            let read = if in_flight.len() >= in_flight_max || room == 0 {
                None
            } else if in_flight.is_empty() {
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    batch = src.next(room, self.config.wait) => Some(batch),
                }
            } else {
                // Fill the pending batch until the oldest delivery is done (`next` is
                // cancel-safe: a read cut short hands nothing out).
                let oldest = in_flight.front_mut().expect("in flight");
                tokio::select! {
                    biased;
                    _ = cancel.cancelled() => break,
                    _ = oldest.ready() => None,
                    batch = src.next(room, self.config.wait) => Some(batch),
                }
            };
            if let Some(batch) = read {
                match batch {
                    Ok(batch) => pending.extend(batch),
                    Err(e) => {
                        deliverer.fail("reading the source failed; reopening it", &e);
                        // What was read and not delivered comes back from the backend.
                        pending.clear();
                        let src = source.take().expect("open");
                        self.settle(src, &mut in_flight, &counters, &deliverer).await;
                        self.reopen(&cancel, &mut backoff).await;
                        continue;
                    }
                }
                if last_lag.is_none_or(|t| t.elapsed() >= self.config.lag_every) {
                    let lag = src.lag().await;
                    if let Some(lag) = lag {
                        lag_g.set(lag as f64);
                    }
                    self.status.update(|s| s.lag = lag);
                    last_lag = Some(Instant::now());
                }
                continue;
            }
            let Some(oldest) = in_flight.pop_front() else { continue };
            let (tokens, deliveries) = oldest.finish().await;
            let Some(deliveries) = deliveries else {
                // Cancelled while the sink was overloaded: nothing more is acknowledged.
                break;
            };
            self.count(&deliveries, &counters);
            // Not raced with the cancellation: the messages are durable, so the ack
            // should reach the backend (if it does not, they come back as duplicates).
            if let Err(e) = src.ack(tokens).await {
                deliverer.fail("acknowledging failed; reopening the source (the messages will come back as duplicates)", &e);
                let src = source.take().expect("open");
                self.settle(src, &mut in_flight, &counters, &deliverer).await;
                self.reopen(&cancel, &mut backoff).await;
                continue;
            }
            self.status.update(|s| s.last_error = None);
            backoff = self.config.backoff_min;
            let elapsed = rate.0.elapsed();
            if elapsed >= Duration::from_secs(1) {
                let total = self.status.get().messages_total;
                let eps = (total - rate.1) as f64 / elapsed.as_secs_f64();
                self.status.update(|s| s.events_per_second = eps);
                rate = (Instant::now(), total);
            }
        }
        // Stopping: what is in flight finishes; what the sink answered for is acknowledged
        // in order, up to the first batch it did not.
        if let Some(src) = source.take() {
            self.settle(src, &mut in_flight, &counters, &deliverer).await;
        }
        self.status.update(|s| {
            s.running = false;
            s.connected = false;
            s.events_per_second = 0.0;
        });
        self.status.get()
    }

    /// Adds a delivered batch to the status and the metrics.
    fn count(&self, deliveries: &[Delivery], counters: &Counters) {
        let (mut stored, mut duplicates, mut dead) = (0u64, 0u64, 0u64);
        for d in deliveries {
            match d {
                Delivery::Stored => stored += 1,
                Delivery::Duplicate => duplicates += 1,
                Delivery::DeadLettered { .. } => dead += 1,
            }
        }
        counters.stored.increment(stored);
        counters.duplicate.increment(duplicates);
        counters.dead.increment(dead);
        self.status.update(|s| {
            s.messages_total += deliveries.len() as u64;
            s.stored += stored;
            s.duplicates += duplicates;
            s.dead_lettered += dead;
        });
    }

    /// Before the source is closed (to stop or to reopen it): waits for what is in
    /// flight, acknowledges in order what the sink answered for — up to the first batch it
    /// did not, or the first failed ack (what follows comes back as duplicates) — and
    /// closes the source.
    async fn settle(&self, mut src: Box<dyn Source>, in_flight: &mut VecDeque<InFlight>, counters: &Counters, deliverer: &Deliverer) {
        let mut acking = true;
        while let Some(oldest) = in_flight.pop_front() {
            let (tokens, deliveries) = oldest.finish().await;
            let Some(deliveries) = deliveries else {
                acking = false;
                continue;
            };
            self.count(&deliveries, counters);
            if acking {
                if let Err(e) = src.ack(tokens).await {
                    deliverer.fail("acknowledging failed (the messages will come back as duplicates)", &e);
                    acking = false;
                }
            }
        }
        self.status.update(|s| s.connected = false);
        self.close(src).await;
    }

    async fn reopen(&self, cancel: &CancellationToken, backoff: &mut Duration) {
        pause(cancel, *backoff).await;
        *backoff = (*backoff * 2).min(self.config.backoff_max);
    }

    async fn close(&self, src: Box<dyn Source>) {
        match tokio::time::timeout(self.config.close_timeout, src.close()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(source = %self.name, "closing the source failed: {e}"),
            Err(_) => tracing::warn!(source = %self.name, "closing the source took over {:?}; dropped it", self.config.close_timeout),
        }
    }
}

/// The runner's message counters.
struct Counters {
    stored: metrics::Counter,
    duplicate: metrics::Counter,
    dead: metrics::Counter,
}

/// What a delivery task needs of its runner.
struct Deliverer {
    name: String,
    sink: Arc<dyn Sink>,
    status: StatusHandle,
    backoff_min: Duration,
    backoff_max: Duration,
    errors: metrics::Counter,
    cancel: CancellationToken,
}

/// A batch being delivered: its ack tokens, the task that answers for it, and the answer
/// once it came.
struct InFlight {
    tokens: Vec<AckToken>,
    task: tokio::task::JoinHandle<Option<Vec<Delivery>>>,
    answer: Option<Option<Vec<Delivery>>>,
}

impl InFlight {
    /// Waits until the delivery is done (cancel-safe: the answer is kept).
    async fn ready(&mut self) {
        if self.answer.is_none() {
            let answer = (&mut self.task).await.unwrap_or_else(|e| {
                tracing::error!("a delivery task failed: {e}");
                None
            });
            self.answer = Some(answer);
        }
    }

    /// The batch's tokens and the sink's answers; None when the delivery was cancelled
    /// (or its task failed), so nothing of it may be acknowledged.
    async fn finish(mut self) -> (Vec<AckToken>, Option<Vec<Delivery>>) {
        self.ready().await;
        (self.tokens, self.answer.flatten())
    }
}

impl Deliverer {
    fn fail(&self, what: &str, error: &dyn fmt::Display) {
        self.errors.increment(1);
        tracing::warn!(source = %self.name, "{what}: {error}");
        let message = format!("{what}: {error}");
        self.status.update(|s| s.last_error = Some(message));
    }

    /// Delivers `batch` on a task of its own.
    fn spawn(self: Arc<Self>, mut batch: Vec<SourceMessage>) -> InFlight {
        let tokens = batch.iter_mut().map(|m| std::mem::replace(&mut m.token, AckToken::new(()))).collect();
        let task = tokio::spawn(async move { self.deliver(&batch).await });
        InFlight { tokens, task, answer: None }
    }

    /// Hands `batch` to the sink until it answers for every message; None when cancelled
    /// first (nothing of the batch is then acknowledged).
    async fn deliver(&self, batch: &[SourceMessage]) -> Option<Vec<Delivery>> {
        let mut backoff = self.backoff_min;
        loop {
            // Not raced with the cancellation: a delivery in progress finishes, so a stop
            // acknowledges what was stored.
            let pause_for = match self.sink.deliver(&self.name, batch).await {
                Ok(deliveries) if deliveries.len() == batch.len() => return Some(deliveries),
                Ok(deliveries) => {
                    self.fail("the sink broke its contract", &format!("{} answers for {} messages; delivering them again", deliveries.len(), batch.len()));
                    backoff
                }
                Err(SinkError::Overloaded { retry_after }) => {
                    self.status.update(|s| s.overloaded += 1);
                    tracing::debug!(source = %self.name, "sink overloaded; retrying the same {} messages in {retry_after:?}", batch.len());
                    retry_after
                }
                Err(e @ SinkError::Failed(_)) => {
                    self.fail("the sink failed; delivering the same messages again", &e);
                    backoff
                }
            };
            if !pause(&self.cancel, pause_for).await {
                return None;
            }
            backoff = (backoff * 2).min(self.backoff_max);
        }
    }
}

/// Sleeps for `duration`; false when cancelled first.
async fn pause(cancel: &CancellationToken, duration: Duration) -> bool {
    tokio::select! {
        _ = cancel.cancelled() => false,
        _ = tokio::time::sleep(duration) => true,
    }
}
