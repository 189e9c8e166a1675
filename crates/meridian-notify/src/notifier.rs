//! The delivery worker: finds due deliveries, signs and posts them with bounded
//! concurrency, and commits every attempt's result (grouped) with its delivery-log entry.
//!
//! Three kinds of tasks run on the given tokio runtime, each in a named `tracing` span:
//! `notify-dispatcher` scans the due index and starts attempts, one `notify-attempt` per
//! delivery in flight posts it, and `notify-committer` writes the results of all attempts
//! that finished meanwhile in one store commit (on a blocking thread), so a burst of
//! deliveries costs a few fsyncs rather than one each. A delivery stays "in flight" from
//! its dispatch until its result is committed, so it is never posted twice at once.

use crate::client::{SendOutcome, WebhookClient};
use crate::model::{Attempt, Delivery, DeliveryDetail, DeliveryFilter, DeliveryId, DeliveryPage, DeliveryState, Endpoint};
use crate::signing::{self, HEADER_ID, HEADER_SIGNATURE, HEADER_TIMESTAMP};
use crate::store;
use crate::{NotifyConfig, NotifyError, Result};
use bytes::Bytes;
use hyper::header::{HeaderName, HeaderValue};
use meridian_event::AppId;
use meridian_state::{KvStore, WriteBatch};
use parking_lot::Mutex;
use serde::Serialize;
use std::collections::HashSet;
use std::ops::Bound;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, Notify, OwnedSemaphorePermit, Semaphore};
use tracing::Instrument;

/// Most attempt results written by one commit.
const MAX_RESULTS_PER_COMMIT: usize = 1024;
/// After a wake-up from the processor, the dispatcher looks again after 1, 2, 4 … ms up to
/// this long, because the wake-up comes before the runtime commits the new deliveries.
const WAKE_BURST_MAX: Duration = Duration::from_millis(128);

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// Longest a processor's hint keeps the scan floor down while its deliveries are not yet
/// visible (a failed round's hint; the re-processed round gives a new one).
const HINT_LIFETIME: Duration = Duration::from_secs(60);
/// The dispatcher scans the whole due index this often, whatever the floor says.
const FULL_SCAN_INTERVAL: Duration = Duration::from_secs(30);

/// Where the dispatcher starts scanning the due index. Everything below `floor_ms` is known
/// to be gone (the head of the index is tombstones, which an LSM store would otherwise
/// read on every scan). Whoever writes a due entry lowers it: the committer and
/// redeliveries after their commit (`epoch` tells the dispatcher not to raise the floor
/// over them), the processor before its commit (a hint naming one delivery of its batch,
/// kept until a scan runs after that delivery became visible, at most [`HINT_LIFETIME`]).
#[derive(Debug, Default)]
struct ScanFloor {
    floor_ms: i64,
    epoch: u64,
    hints: Vec<(std::time::Instant, i64, DeliveryId)>,
}

/// Wakes the notifier when new deliveries were written (handed to the processor).
#[derive(Debug, Clone)]
pub struct DeliveryWaker {
    wake: Arc<Notify>,
    floor: Arc<Mutex<ScanFloor>>,
}

impl DeliveryWaker {
    /// Tells the notifier to look for due deliveries now.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Tells the notifier that deliveries due from `earliest_due_ms` on, among them
    /// `written`, are being written in one batch, and to look for them now.
    pub fn wake_from(&self, earliest_due_ms: i64, written: DeliveryId) {
        self.floor.lock().hints.push((std::time::Instant::now(), earliest_due_ms, written));
        self.wake.notify_one();
    }
}

/// Counts since the notifier was created (also exported as metrics).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct NotifierStats {
    /// Deliveries that got a 2xx answer.
    pub delivered: u64,
    /// Failed attempts that were scheduled for a retry.
    pub failed_attempts: u64,
    /// Deliveries that became dead.
    pub dead: u64,
    /// Attempts whose connection the network policy refused.
    pub ssrf_refused: u64,
    /// Deliveries dispatched and not yet committed.
    pub in_flight: u64,
}

#[derive(Debug, Default)]
struct Counters {
    delivered: AtomicU64,
    failed_attempts: AtomicU64,
    dead: AtomicU64,
    ssrf_refused: AtomicU64,
}

/// What an attempt task hands the committer.
#[derive(Debug)]
enum Outcome {
    /// An attempt was made (or refused before the network): write `updated` and `attempt`
    /// if the delivery is still `previous`.
    Attempted { previous: Box<Delivery>, updated: Box<Delivery>, attempt: Box<Attempt> },
    /// The due entry did not match a pending delivery: remove it unless it matches now.
    Stale { due_ms: i64, id: DeliveryId },
    /// Nothing to write (a read failed); the delivery stays due.
    Abandoned { id: DeliveryId },
}

impl Outcome {
    fn id(&self) -> &DeliveryId {
        match self {
            Outcome::Attempted { previous, .. } => &previous.id,
            Outcome::Stale { id, .. } | Outcome::Abandoned { id } => id,
        }
    }
}

/// Webhook deliveries: the worker ([`Notifier::spawn`]) and the service API (endpoints in
/// `endpoints.rs`, deliveries and redelivery here).
pub struct Notifier {
    pub(crate) store: Arc<dyn KvStore>,
    pub(crate) config: NotifyConfig,
    client: WebhookClient,
    wake: Arc<Notify>,
    floor: Arc<Mutex<ScanFloor>>,
    progress: Notify,
    shutdown: tokio::sync::watch::Sender<bool>,
    in_flight: Mutex<HashSet<DeliveryId>>,
    /// Serialises read-modify-write of deliveries (committer, redelivery).
    delivery_lock: Arc<Mutex<()>>,
    /// Serialises read-modify-write of endpoints.
    pub(crate) endpoint_lock: Arc<Mutex<()>>,
    counters: Counters,
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifier").field("topic", &self.config.topic).field("in_flight", &self.in_flight.lock().len()).finish()
    }
}

/// Runs blocking store work off the async threads.
pub(crate) async fn blocking<T: Send + 'static>(work: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(work).await.map_err(|e| NotifyError::Stopped(format!("a blocking store task failed: {e}")))?
}

impl Notifier {
    /// A notifier over `store` (validates `config`, builds the HTTPS client). Nothing runs
    /// until [`Notifier::spawn`].
    pub fn new(store: Arc<dyn KvStore>, config: NotifyConfig) -> Result<Notifier> {
        config.validate()?;
        let client = WebhookClient::new(&config)?;
        Ok(Notifier {
            store,
            config,
            client,
            wake: Arc::new(Notify::new()),
            floor: Arc::new(Mutex::new(ScanFloor::default())),
            progress: Notify::new(),
            shutdown: tokio::sync::watch::channel(false).0,
            in_flight: Mutex::new(HashSet::new()),
            delivery_lock: Arc::new(Mutex::new(())),
            endpoint_lock: Arc::new(Mutex::new(())),
            counters: Counters::default(),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &NotifyConfig {
        &self.config
    }

    /// A handle the processor uses to wake the notifier after writing deliveries.
    pub fn waker(&self) -> DeliveryWaker {
        DeliveryWaker { wake: self.wake.clone(), floor: self.floor.clone() }
    }

    /// Starts the delivery tasks on `handle`; returns the dispatcher's handle, which ends
    /// after [`Notifier::shutdown`] once the attempts in flight are committed.
    pub fn spawn(self: Arc<Self>, handle: &tokio::runtime::Handle) -> tokio::task::JoinHandle<()> {
        let span = tracing::info_span!("notify-dispatcher", topic = %self.config.topic);
        let inner = handle.clone();
        handle.spawn(self.dispatch_loop(inner).instrument(span))
    }

    /// Stops dispatching; attempts in flight finish and are committed.
    pub fn shutdown(&self) {
        self.shutdown.send_replace(true);
    }

    /// Counts since creation.
    pub fn stats(&self) -> NotifierStats {
        NotifierStats {
            delivered: self.counters.delivered.load(Ordering::Relaxed),
            failed_attempts: self.counters.failed_attempts.load(Ordering::Relaxed),
            dead: self.counters.dead.load(Ordering::Relaxed),
            ssrf_refused: self.counters.ssrf_refused.load(Ordering::Relaxed),
            in_flight: self.in_flight.lock().len() as u64,
        }
    }

    async fn dispatch_loop(self: Arc<Self>, handle: tokio::runtime::Handle) {
        let (results, results_rx) = mpsc::unbounded_channel();
        let committer = handle.spawn(self.clone().commit_loop(results_rx).instrument(tracing::info_span!("notify-committer")));
        let permits = Arc::new(Semaphore::new(self.config.max_concurrency));
        let mut shutdown = self.shutdown.subscribe();
        let poll_interval = Duration::from_millis(self.config.poll_interval_ms);
        let mut burst: Option<Duration> = None;
        tracing::info!(max_concurrency = self.config.max_concurrency, "webhook notifier started");
        let mut last_full_scan = std::time::Instant::now();
        while !*shutdown.borrow() {
            let now = now_ms();
            let free = permits.available_permits();
            let limit = self.in_flight.lock().len() + free + 16;
            let store = self.store.clone();
            if last_full_scan.elapsed() >= FULL_SCAN_INTERVAL {
                self.lower_floor(0);
                last_full_scan = std::time::Instant::now();
            }
            let (scan_from, epoch, hints) = self.scan_start();
            let scanned = blocking(move || {
                // Hints whose delivery is visible before this scan are served by it.
                let mut served = Vec::new();
                for id in hints {
                    if store.get(store::DELIVERIES, id.as_str().as_bytes())?.is_some() {
                        served.push(id);
                    }
                }
                Ok((store::due(&*store, scan_from, now, limit)?, served))
            })
            .await;
            let scanned = scanned.map(|(scan, served)| {
                self.floor.lock().hints.retain(|(_, _, id)| !served.contains(id));
                scan
            });
            if let Ok((due, next)) = &scanned {
                // Nothing before the first entry seen is left (or, with none, before now).
                self.raise_floor(epoch, due.first().map(|(d, _)| *d).or(*next).unwrap_or(now).min(now));
            }
            let (due, next_due) = match scanned {
                Ok(scan) => scan,
                Err(e) => {
                    tracing::error!(error = %e, "cannot read due webhook deliveries; retrying");
                    (Vec::new(), Some(now + self.config.poll_interval_ms as i64))
                }
            };
            let mut dispatched = 0usize;
            for (due_ms, id) in due {
                if !self.in_flight.lock().insert(id.clone()) {
                    continue;
                }
                let Ok(permit) = permits.clone().try_acquire_owned() else {
                    self.in_flight.lock().remove(&id);
                    break;
                };
                dispatched += 1;
                let span = tracing::info_span!("notify-attempt", delivery = %id);
                handle.spawn(self.clone().attempt(due_ms, id, permit, results.clone()).instrument(span));
            }
            let mut wait = poll_interval;
            if permits.available_permits() > 0 {
                if let Some(next) = next_due {
                    wait = wait.min(Duration::from_millis((next - now_ms()).max(1) as u64));
                }
            }
            if let Some(delay) = burst {
                wait = wait.min(delay);
                burst = if dispatched > 0 { Some(Duration::from_millis(1)) } else if delay < WAKE_BURST_MAX { Some(delay * 2) } else { None };
            }
            tokio::select! {
                biased;
                _ = shutdown.changed() => {}
                _ = self.wake.notified() => burst = Some(Duration::from_millis(1)),
                _ = self.progress.notified() => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
        // Let the attempts in flight finish (they are bounded by the timeout) and commit.
        let drain = permits.acquire_many(self.config.max_concurrency as u32);
        let _ = tokio::time::timeout(self.config.timeout() + Duration::from_secs(5), drain).await;
        drop(results);
        let _ = committer.await;
        tracing::info!("webhook notifier stopped");
    }

    /// Where to start the next scan (the floor, lowered by live processor hints) and the
    /// floor's epoch.
    fn scan_start(&self) -> (i64, u64, Vec<DeliveryId>) {
        let mut floor = self.floor.lock();
        floor.hints.retain(|(at, _, _)| at.elapsed() < HINT_LIFETIME);
        let hinted = floor.hints.iter().map(|(_, due, _)| *due).min().unwrap_or(i64::MAX);
        let ids = floor.hints.iter().map(|(_, _, id)| id.clone()).collect();
        (floor.floor_ms.min(hinted), floor.epoch, ids)
    }

    fn lower_floor(&self, due_ms: i64) {
        let mut floor = self.floor.lock();
        floor.floor_ms = floor.floor_ms.min(due_ms);
        floor.epoch += 1;
    }

    /// After a scan from its start: nothing is left before `to_ms` (the first entry seen),
    /// unless someone lowered the floor meanwhile. Hints not yet served stay in force.
    fn raise_floor(&self, epoch: u64, to_ms: i64) {
        let mut floor = self.floor.lock();
        if floor.epoch == epoch {
            floor.floor_ms = to_ms;
        }
    }

    async fn attempt(self: Arc<Self>, due_ms: i64, id: DeliveryId, permit: OwnedSemaphorePermit, results: mpsc::UnboundedSender<Outcome>) {
        let outcome = self.make_attempt(due_ms, id).await;
        drop(permit);
        let _ = results.send(outcome);
    }

    async fn make_attempt(&self, due_ms: i64, id: DeliveryId) -> Outcome {
        let store = self.store.clone();
        let lookup_id = id.clone();
        let loaded = blocking(move || {
            let Some(delivery) = store::get_delivery(&*store, &lookup_id)? else { return Ok(None) };
            let endpoint = store::get_endpoint(&*store, &delivery.endpoint_id)?;
            Ok(Some((delivery, endpoint)))
        })
        .await;
        let (delivery, endpoint) = match loaded {
            Ok(Some(found)) => found,
            Ok(None) => return Outcome::Stale { due_ms, id },
            Err(e) => {
                tracing::error!(error = %e, "cannot read a webhook delivery; it stays due");
                return Outcome::Abandoned { id };
            }
        };
        if delivery.state != DeliveryState::Pending || delivery.next_attempt_ms != Some(due_ms) {
            return Outcome::Stale { due_ms, id };
        }
        let started_ms = now_ms();
        let (url, outcome) = match &endpoint {
            None => (String::new(), refused("endpoint_deleted", "the endpoint was deleted")),
            Some(endpoint) if endpoint.disabled => (endpoint.url.clone(), refused("endpoint_disabled", "the endpoint is disabled; enable it to resume deliveries")),
            Some(endpoint) => (endpoint.url.clone(), self.send(&delivery, endpoint).await),
        };
        let finished_ms = now_ms();
        let number = delivery.attempts + 1;
        let mut attempt = Attempt {
            attempt: number,
            started_ms,
            url,
            status: outcome.status,
            error_code: outcome.error.as_ref().map(|(code, _)| (*code).to_owned()),
            error: outcome.error.as_ref().map(|(_, message)| message.clone()),
            latency_us: outcome.latency.as_micros() as u64,
            response_body: outcome.body_prefix,
            redirects: outcome.redirects,
            retry_delay_ms: None,
        };
        let mut updated = delivery.clone();
        updated.attempts = number;
        updated.last_attempt_ms = Some(started_ms);
        updated.last_result = Some(match (&attempt.error_code, attempt.status) {
            (None, Some(status)) => status.to_string(),
            (Some(code), Some(status)) if code == "http_status" => status.to_string(),
            (Some(code), _) => code.clone(),
            (None, None) => "ok".into(),
        });
        if attempt.succeeded() {
            updated.state = DeliveryState::Delivered;
            updated.next_attempt_ms = None;
            updated.delivered_ms = Some(finished_ms);
        } else {
            updated.failed_attempts += 1;
            if endpoint.is_none() || updated.failed_attempts >= self.config.max_attempts {
                updated.state = DeliveryState::Dead;
                updated.next_attempt_ms = None;
            } else {
                let delay = self.config.backoff_delay_ms(updated.failed_attempts, &mut rand::thread_rng());
                attempt.retry_delay_ms = Some(delay);
                updated.next_attempt_ms = Some(finished_ms + delay as i64);
            }
        }
        Outcome::Attempted { previous: Box::new(delivery), updated: Box::new(updated), attempt: Box::new(attempt) }
    }

    async fn send(&self, delivery: &Delivery, endpoint: &Endpoint) -> SendOutcome {
        let now = now_ms();
        let timestamp_s = now / 1000;
        let secrets: Vec<&str> = endpoint.active_secrets(now).map(|s| s.secret.as_str()).collect();
        let signature = match signing::signature_header(secrets, delivery.id.as_str(), timestamp_s, delivery.body.as_bytes()) {
            Ok(signature) if !signature.is_empty() => signature,
            Ok(_) => return refused("request_error", "the endpoint has no active secret; rotate its secret"),
            Err(e) => return refused("request_error", &e.to_string()),
        };
        let header = |value: &str| HeaderValue::from_str(value).expect("ids, numbers and base64 are header values");
        let headers = [
            (HeaderName::from_static(HEADER_ID), header(delivery.id.as_str())),
            (HeaderName::from_static(HEADER_TIMESTAMP), header(&timestamp_s.to_string())),
            (HeaderName::from_static(HEADER_SIGNATURE), header(&signature)),
        ];
        self.client.post(&endpoint.url, &headers, Bytes::from(delivery.body.clone())).await
    }

    async fn commit_loop(self: Arc<Self>, mut results: mpsc::UnboundedReceiver<Outcome>) {
        while let Some(first) = results.recv().await {
            let mut outcomes = vec![first];
            while outcomes.len() < MAX_RESULTS_PER_COMMIT {
                match results.try_recv() {
                    Ok(outcome) => outcomes.push(outcome),
                    Err(_) => break,
                }
            }
            let ids: Vec<DeliveryId> = outcomes.iter().map(|o| o.id().clone()).collect();
            let this = self.clone();
            match blocking(move || this.apply(outcomes)).await {
                Ok(applied) => {
                    if let Some(earliest) = applied.iter().filter_map(|(d, _)| d.next_attempt_ms).min() {
                        self.lower_floor(earliest);
                    }
                    self.count(&applied);
                }
                Err(e) => tracing::error!(error = %e, n_results = ids.len(), "cannot commit webhook attempt results; those deliveries will be attempted again"),
            }
            let mut in_flight = self.in_flight.lock();
            for id in &ids {
                in_flight.remove(id);
            }
            drop(in_flight);
            self.progress.notify_one();
        }
    }

    /// Writes the outcomes whose delivery has not changed since the attempt read it, in
    /// one commit; returns the attempts written.
    fn apply(&self, outcomes: Vec<Outcome>) -> Result<Vec<(Box<Delivery>, Box<Attempt>)>> {
        let _guard = self.delivery_lock.lock();
        let mut batch = WriteBatch::new();
        let mut applied = Vec::new();
        for outcome in outcomes {
            match outcome {
                Outcome::Attempted { previous, updated, attempt } => {
                    let current = store::get_delivery(&*self.store, &previous.id)?;
                    if current.as_ref() != Some(&*previous) {
                        tracing::warn!(delivery = %previous.id, "webhook delivery changed during its attempt; its result is dropped");
                        continue;
                    }
                    store::replace_delivery(&mut batch, &previous, &updated);
                    store::put_attempt(&mut batch, &updated.id, &attempt);
                    applied.push((updated, attempt));
                }
                Outcome::Stale { due_ms, id } => {
                    let current = store::get_delivery(&*self.store, &id)?;
                    let still_due = current.is_some_and(|d| d.state == DeliveryState::Pending && d.next_attempt_ms == Some(due_ms));
                    if !still_due {
                        batch.delete(store::DUE, store::due_key(due_ms, &id));
                    }
                }
                Outcome::Abandoned { .. } => {}
            }
        }
        if !batch.is_empty() {
            self.store.commit(batch)?;
        }
        Ok(applied)
    }

    fn count(&self, applied: &[(Box<Delivery>, Box<Attempt>)]) {
        for (delivery, attempt) in applied {
            let result = match delivery.state {
                DeliveryState::Delivered => {
                    self.counters.delivered.fetch_add(1, Ordering::Relaxed);
                    "delivered"
                }
                DeliveryState::Dead => {
                    self.counters.dead.fetch_add(1, Ordering::Relaxed);
                    "dead"
                }
                DeliveryState::Pending => {
                    self.counters.failed_attempts.fetch_add(1, Ordering::Relaxed);
                    "failed"
                }
            };
            if attempt.error_code.as_deref() == Some("ssrf_refused") {
                self.counters.ssrf_refused.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(delivery = %delivery.id, endpoint = %delivery.endpoint_id, error = attempt.error.as_deref().unwrap_or_default(), "webhook refused by the network policy");
            }
            metrics::counter!("meridian_webhook_deliveries_total", "result" => result).increment(1);
            metrics::histogram!("meridian_webhook_delivery_seconds").record(attempt.latency_us as f64 / 1e6);
            tracing::debug!(
                delivery = %delivery.id,
                endpoint = %delivery.endpoint_id,
                attempt = attempt.attempt,
                status = attempt.status,
                error_code = attempt.error_code.as_deref(),
                result,
                "webhook attempt"
            );
        }
    }

    /// One delivery with its delivery log.
    pub async fn delivery(&self, id: &DeliveryId) -> Result<DeliveryDetail> {
        let store = self.store.clone();
        let id = id.clone();
        blocking(move || {
            let delivery = store::get_delivery(&*store, &id)?.ok_or_else(|| NotifyError::DeliveryNotFound(id.clone()))?;
            let attempts = store::attempts(&*store, &id)?;
            Ok(DeliveryDetail { delivery, attempts })
        })
        .await
    }

    /// `app`'s deliveries matching `filter`, newest request first, at most `limit` (1-1000)
    /// per page. A page may hold fewer than `limit` while `next_cursor` is set (a selective
    /// filter scans at most 10,000 index entries per call).
    pub async fn deliveries(&self, app: &AppId, filter: DeliveryFilter, cursor: Option<&str>, limit: usize) -> Result<DeliveryPage> {
        let limit = limit.clamp(1, 1_000);
        let after = match cursor {
            Some(cursor) => Some(decode_cursor(app, cursor)?),
            None => None,
        };
        let store = self.store.clone();
        let app = app.clone();
        blocking(move || {
            let mut deliveries = Vec::new();
            let mut last_key = after;
            let mut scanned = 0usize;
            loop {
                let chunk = limit.max(64);
                let keys = store::app_delivery_keys(&*store, &app, last_key.as_deref(), chunk)?;
                let exhausted = keys.len() < chunk;
                for key in keys {
                    scanned += 1;
                    let id = store::delivery_id_of_app_key(&app, &key);
                    last_key = Some(key);
                    let Some(id) = id else { continue };
                    let Some(delivery) = store::get_delivery(&*store, &id)? else { continue };
                    let wanted = filter.endpoint.as_ref().is_none_or(|e| *e == delivery.endpoint_id) && filter.state.is_none_or(|s| s == delivery.state);
                    if wanted {
                        deliveries.push(delivery);
                        if deliveries.len() == limit {
                            return Ok(DeliveryPage { deliveries, next_cursor: last_key.as_deref().map(hex::encode) });
                        }
                    }
                }
                if exhausted {
                    return Ok(DeliveryPage { deliveries, next_cursor: None });
                }
                if scanned >= 10_000 {
                    return Ok(DeliveryPage { deliveries, next_cursor: last_key.as_deref().map(hex::encode) });
                }
            }
        })
        .await
    }

    /// Deletes delivered and dead deliveries whose last change (delivery, else last
    /// attempt, else creation) is before `cutoff_ms`, with their attempts and index
    /// entries. Pending deliveries are kept whatever their age. Works in chunks, each read
    /// and committed under the delivery lock (so it never races an attempt's result or a
    /// redelivery); blocking: call it off the async threads.
    pub fn purge_finished_before(&self, cutoff_ms: i64) -> Result<PurgeReport> {
        const CHUNK: usize = 512;
        let mut report = PurgeReport::default();
        let mut after: Option<Vec<u8>> = None;
        loop {
            let _guard = self.delivery_lock.lock();
            let start = match &after {
                Some(key) => Bound::Excluded(key.as_slice()),
                None => Bound::Unbounded,
            };
            let entries = self.store.range(store::DELIVERIES, start, Bound::Unbounded, CHUNK)?;
            let mut batch = WriteBatch::new();
            for (_, value) in &entries {
                let delivery: Delivery = serde_json::from_slice(value).map_err(|e| NotifyError::Corrupt { table: store::DELIVERIES, message: e.to_string() })?;
                let last_change = delivery.delivered_ms.or(delivery.last_attempt_ms).unwrap_or(delivery.created_ms);
                if delivery.state == DeliveryState::Pending || last_change >= cutoff_ms {
                    continue;
                }
                store::delete_delivery(&mut batch, &delivery);
                report.deliveries += 1;
                report.attempts += u64::from(delivery.attempts);
            }
            if !batch.is_empty() {
                self.store.commit(batch)?;
            }
            let done = entries.len() < CHUNK;
            after = entries.into_iter().next_back().map(|(key, _)| key);
            if done || after.is_none() {
                break;
            }
        }
        metrics::counter!("meridian_notify_purged_deliveries_total").increment(report.deliveries);
        Ok(report)
    }

    /// Sends a dead or delivered delivery again: it becomes pending and due now, with a
    /// fresh budget of attempts (its attempt numbers go on).
    pub async fn redeliver(&self, id: &DeliveryId) -> Result<Delivery> {
        let store = self.store.clone();
        let lock = self.delivery_lock.clone();
        let id = id.clone();
        let delivery = blocking(move || {
            let _guard = lock.lock();
            let previous = store::get_delivery(&*store, &id)?.ok_or_else(|| NotifyError::DeliveryNotFound(id.clone()))?;
            if previous.state == DeliveryState::Pending {
                return Err(NotifyError::DeliveryPending(id));
            }
            let mut updated = previous.clone();
            updated.state = DeliveryState::Pending;
            updated.failed_attempts = 0;
            updated.next_attempt_ms = Some(now_ms());
            let mut batch = WriteBatch::new();
            store::replace_delivery(&mut batch, &previous, &updated);
            store.commit(batch)?;
            Ok(updated)
        })
        .await?;
        self.lower_floor(delivery.next_attempt_ms.unwrap_or(0));
        tracing::info!(delivery = %delivery.id, endpoint = %delivery.endpoint_id, "webhook redelivery requested");
        self.progress.notify_one();
        Ok(delivery)
    }
}


/// What [`Notifier::purge_finished_before`] removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PurgeReport {
    /// Deliveries deleted.
    pub deliveries: u64,
    /// Their attempts deleted with them.
    pub attempts: u64,
}


fn refused(code: &'static str, message: &str) -> SendOutcome {
    SendOutcome { status: None, error: Some((code, message.to_owned())), body_prefix: String::new(), redirects: 0, latency: Duration::ZERO }
}

fn decode_cursor(app: &AppId, cursor: &str) -> Result<Vec<u8>> {
    let bad = || NotifyError::InvalidRequest(format!("cursor {cursor:?} is not one this api returned; start again without it"));
    if cursor.len() > 512 {
        return Err(bad());
    }
    let bytes = hex::decode(cursor).map_err(|_| bad())?;
    if !bytes.starts_with(&store::app_prefix(app)) {
        return Err(bad());
    }
    Ok(bytes)
}
