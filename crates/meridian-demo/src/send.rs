//! Sends events to a Meridian server: JSON-array batches to `/v1/events`, paced to a rate,
//! several requests in flight, retrying 429s and connection errors with the same batch.

use crate::error::{DemoError, Result};
use bytes::Bytes;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER};
use reqwest::StatusCode;
use serde_json::Value;
use std::time::Duration;
use tokio::task::JoinSet;
use tokio::time::Instant;

/// Attempts per batch before giving up on connection errors and 502/503/504.
pub const MAX_ATTEMPTS: u32 = 6;
/// 429 answers tolerated per batch (each honoured with its `Retry-After`).
pub const MAX_THROTTLED: u32 = 30;
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// Totals of one [`send`] run, summed from the server's per-batch answers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SendReport {
    /// Events sent (each counted once, however many retries).
    pub sent: u64,
    /// Events the server accepted.
    pub accepted: u64,
    /// Events the server rejected.
    pub rejected: u64,
    /// Events the server had already seen.
    pub duplicates: u64,
    /// Batch retries made.
    pub retries: u64,
    /// Wall time of the run.
    pub elapsed: Duration,
}

#[derive(Debug, Default)]
struct BatchOutcome {
    events: u64,
    accepted: u64,
    rejected: u64,
    duplicates: u64,
    retries: u64,
}

/// POSTs `events` in batches of `batch_size` as JSON arrays to `{url_base}/v1/events`
/// with `Authorization: Bearer {api_key}`, at most `rate_per_sec` events per second
/// (unlimited when `None`) and `concurrency` requests in flight. A batch answered 429 is
/// resent after `Retry-After` seconds (at most [`MAX_THROTTLED`] times); connection errors and 502/503/504 are retried with
/// backoff, [`MAX_ATTEMPTS`] attempts in all. Retries resend the same events (same ids),
/// so the server's de-duplication makes them safe. Other error statuses stop the run.
pub async fn send(
    url_base: &str,
    api_key: &str,
    events: impl Iterator<Item = Value>,
    rate_per_sec: Option<u64>,
    batch_size: usize,
    concurrency: usize,
    progress: bool,
) -> Result<SendReport> {
    let started = Instant::now();
    let client = reqwest::Client::builder().timeout(Duration::from_secs(30)).build()?;
    let url = format!("{}/v1/events", url_base.trim_end_matches('/'));
    let auth = format!("Bearer {api_key}");
    let batch_size = batch_size.max(1);
    let concurrency = concurrency.max(1);
    let mut events = events;
    let bar = crate::progress::bar(progress, events.size_hint().1.map(|n| n as u64), "sending events");
    let mut report = SendReport::default();
    let mut in_flight: JoinSet<Result<BatchOutcome>> = JoinSet::new();
    let mut queued = 0u64;
    loop {
        let batch: Vec<Value> = events.by_ref().take(batch_size).collect();
        if batch.is_empty() {
            break;
        }
        if let Some(rate) = rate_per_sec.filter(|r| *r > 0) {
            // Token pacing: event k may leave at start + k / rate.
            let due = started + Duration::from_secs_f64(queued as f64 / rate as f64);
            tokio::time::sleep_until(due).await;
        }
        while in_flight.len() >= concurrency {
            if let Some(done) = in_flight.join_next().await {
                add(&mut report, &bar, done)?;
            }
        }
        queued += batch.len() as u64;
        let body = Bytes::from(serde_json::to_vec(&batch)?);
        let (client, url, auth) = (client.clone(), url.clone(), auth.clone());
        let n = batch.len() as u64;
        in_flight.spawn(async move { post_batch(&client, &url, &auth, body, n).await });
    }
    while let Some(done) = in_flight.join_next().await {
        add(&mut report, &bar, done)?;
    }
    bar.finish_and_clear();
    report.elapsed = started.elapsed();
    Ok(report)
}

fn add(report: &mut SendReport, bar: &indicatif::ProgressBar, done: Result<Result<BatchOutcome>, tokio::task::JoinError>) -> Result<()> {
    let outcome = done.map_err(|e| DemoError::RetriesExhausted { attempts: 0, last: format!("send task failed: {e}") })??;
    report.sent += outcome.events;
    report.accepted += outcome.accepted;
    report.rejected += outcome.rejected;
    report.duplicates += outcome.duplicates;
    report.retries += outcome.retries;
    bar.inc(outcome.events);
    Ok(())
}

async fn post_batch(client: &reqwest::Client, url: &str, auth: &str, body: Bytes, events: u64) -> Result<BatchOutcome> {
    let mut retries = 0u64;
    let mut attempt = 0u32;
    let mut throttled = 0u32;
    loop {
        let result = client.post(url).header(AUTHORIZATION, auth).header(CONTENT_TYPE, "application/json").body(body.clone()).send().await;
        let (wait, last) = match result {
            Ok(response) if response.status().is_success() => {
                let text = response.bytes().await?;
                let mut outcome = parse_answer(&text);
                outcome.events = events;
                outcome.retries = retries;
                return Ok(outcome);
            }
            Ok(response) if response.status() == StatusCode::TOO_MANY_REQUESTS => {
                let wait = response
                    .headers()
                    .get(RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map_or_else(|| backoff(throttled + 1), Duration::from_secs)
                    .min(MAX_RETRY_AFTER);
                throttled += 1;
                if throttled >= MAX_THROTTLED {
                    return Err(DemoError::RetriesExhausted { attempts: attempt + throttled, last: "429 too many requests".to_owned() });
                }
                retries += 1;
                tokio::time::sleep(wait).await;
                continue;
            }
            Ok(response) if matches!(response.status().as_u16(), 502..=504) => (backoff(attempt), format!("status {}", response.status())),
            Ok(response) => {
                let status = response.status().as_u16();
                let text = response.text().await.unwrap_or_default();
                return Err(DemoError::Status { status, body: text.chars().take(500).collect() });
            }
            Err(e) if e.is_connect() || e.is_timeout() || e.is_request() => (backoff(attempt), e.to_string()),
            Err(e) => return Err(e.into()),
        };
        attempt += 1;
        if attempt >= MAX_ATTEMPTS {
            return Err(DemoError::RetriesExhausted { attempts: attempt, last });
        }
        retries += 1;
        tokio::time::sleep(wait).await;
    }
}

/// 250 ms doubling per attempt, at most 8 s.
fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(250u64 << attempt.saturating_sub(1).min(5))
}

/// Reads `accepted`, `rejected` and `duplicates` from a response body; anything missing or
/// unparsable counts 0.
fn parse_answer(body: &[u8]) -> BatchOutcome {
    let value: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let count = |key: &str| value.get(key).and_then(Value::as_u64).unwrap_or(0);
    BatchOutcome { accepted: count("accepted"), rejected: count("rejected"), duplicates: count("duplicates"), ..BatchOutcome::default() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_parsed_leniently() {
        let o = parse_answer(br#"{"accepted": 7, "rejected": 2, "duplicates": 1, "results": []}"#);
        assert_eq!((o.accepted, o.rejected, o.duplicates), (7, 2, 1));
        let o = parse_answer(br#"{"accepted": 3}"#);
        assert_eq!((o.accepted, o.rejected, o.duplicates), (3, 0, 0));
        let o = parse_answer(b"not json");
        assert_eq!((o.accepted, o.rejected, o.duplicates), (0, 0, 0));
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        assert_eq!(backoff(1), Duration::from_millis(250));
        assert_eq!(backoff(2), Duration::from_millis(500));
        assert_eq!(backoff(20), Duration::from_millis(8000));
    }

    #[tokio::test]
    async fn unreachable_server_is_retried_then_reported() {
        // Port 9 on localhost: nothing listens, connections are refused at once.
        tokio::time::pause();
        let events = (0..3).map(|i| serde_json::json!({"id": format!("e{i}"), "device": "d1", "action": "view"}));
        let err = send("http://127.0.0.1:9", "key", events, None, 10, 1, false).await.unwrap_err();
        assert!(matches!(err, DemoError::RetriesExhausted { attempts: MAX_ATTEMPTS, .. }), "{err}");
    }
}
