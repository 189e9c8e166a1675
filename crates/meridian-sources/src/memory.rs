//! `MemorySink`: an in-memory [`Sink`] that de-duplicates by message id, for tests, the
//! conformance suite and benchmarks. It plays Meridian's part: stores each id once,
//! dead-letters payloads that are not a JSON object, and can be told to be overloaded, to
//! fail, or to hang after storing (a crash between `deliver` and `ack`).

use crate::{Delivery, Sink, SinkError, SourceMessage};
use bytes::Bytes;
use parking_lot::Mutex;
use std::collections::HashSet;
use std::time::Duration;
use tokio::sync::Notify;

/// A message the sink holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    /// The message id.
    pub id: String,
    /// Its payload.
    pub payload: Bytes,
    /// `None` when stored, the error code when dead-lettered.
    pub dead_letter: Option<String>,
}

#[derive(Debug, Default)]
struct Inner {
    held: Vec<Held>,
    ids: HashSet<String>,
    duplicates: u64,
    calls: u64,
    overloads: u32,
    overload_retry: Duration,
    failures: u32,
    hang_after: Option<usize>,
    hanging: bool,
}

/// An in-memory, de-duplicating [`Sink`] (see the module docs).
#[derive(Debug, Default)]
pub struct MemorySink {
    inner: Mutex<Inner>,
    released: Notify,
    count_only: bool,
}

impl MemorySink {
    /// An empty sink.
    pub fn new() -> MemorySink {
        MemorySink::default()
    }

    /// A sink that only counts (no payloads kept, no de-duplication): for benchmarks.
    pub fn counting() -> MemorySink {
        MemorySink { count_only: true, ..MemorySink::default() }
    }

    /// Everything held (stored and dead-lettered), in arrival order.
    pub fn held(&self) -> Vec<Held> {
        self.inner.lock().held.clone()
    }

    /// Number of distinct messages held (stored or dead-lettered; for a counting sink, the
    /// messages delivered).
    pub fn len(&self) -> usize {
        let inner = self.inner.lock();
        inner.held.len().max(inner.ids.len())
    }

    /// True when nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Messages answered [`Delivery::Duplicate`] so far.
    pub fn duplicates(&self) -> u64 {
        self.inner.lock().duplicates
    }

    /// Calls of `deliver` so far (including refused ones).
    pub fn calls(&self) -> u64 {
        self.inner.lock().calls
    }

    /// The next `n` calls answer [`SinkError::Overloaded`] and store nothing.
    pub fn overload_next(&self, n: u32, retry_after: Duration) {
        let mut inner = self.inner.lock();
        inner.overloads = n;
        inner.overload_retry = retry_after;
    }

    /// The next `n` calls answer [`SinkError::Failed`] and store nothing.
    pub fn fail_next(&self, n: u32) {
        self.inner.lock().failures = n;
    }

    /// The first call after which at least `n` messages are held stores its messages and
    /// then never returns until [`MemorySink::release`]: what a crash between `deliver`
    /// and `ack` leaves behind.
    pub fn hang_after(&self, n: usize) {
        self.inner.lock().hang_after = Some(n);
    }

    /// True while a call hangs (see [`MemorySink::hang_after`]).
    pub fn is_hanging(&self) -> bool {
        self.inner.lock().hanging
    }

    /// Lets a hanging call return.
    pub fn release(&self) {
        self.inner.lock().hanging = false;
        self.released.notify_waiters();
    }
}

/// The dead-letter code of a payload, when it is not a JSON object.
fn check_payload(payload: &[u8]) -> Option<&'static str> {
    match serde_json::from_slice::<serde_json::Value>(payload) {
        Ok(serde_json::Value::Object(_)) => None,
        Ok(_) => Some("not_an_object"),
        Err(_) => Some("invalid_json"),
    }
}

#[async_trait::async_trait]
impl Sink for MemorySink {
    async fn deliver(&self, _source: &str, messages: &[SourceMessage]) -> Result<Vec<Delivery>, SinkError> {
        let released = self.released.notified();
        {
            let mut inner = self.inner.lock();
            inner.calls += 1;
            if inner.overloads > 0 {
                inner.overloads -= 1;
                return Err(SinkError::Overloaded { retry_after: inner.overload_retry });
            }
            if inner.failures > 0 {
                inner.failures -= 1;
                return Err(SinkError::Failed("told to fail".to_owned()));
            }
        }
        if self.count_only {
            let mut inner = self.inner.lock();
            for m in messages {
                inner.ids.insert(m.id.clone());
            }
            return Ok(vec![Delivery::Stored; messages.len()]);
        }
        let mut out = Vec::with_capacity(messages.len());
        let hang = {
            let mut inner = self.inner.lock();
            for m in messages {
                if !inner.ids.insert(m.id.clone()) {
                    inner.duplicates += 1;
                    out.push(Delivery::Duplicate);
                    continue;
                }
                let dead_letter = check_payload(&m.payload).map(str::to_owned);
                out.push(match &dead_letter {
                    None => Delivery::Stored,
                    Some(code) => Delivery::DeadLettered { code: code.clone() },
                });
                inner.held.push(Held { id: m.id.clone(), payload: m.payload.clone(), dead_letter });
            }
            let hang = inner.hang_after.is_some_and(|n| inner.held.len() >= n);
            if hang {
                inner.hang_after = None;
                inner.hanging = true;
            }
            hang
        };
        if hang {
            released.await;
        }
        Ok(out)
    }
}
