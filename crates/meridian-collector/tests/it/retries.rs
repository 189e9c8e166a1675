//! A retry is never answered `duplicate` for an event whose first append is not durable:
//! it waits for that append's outcome.

use crate::gated::{fixture, Fixture, Verdict};
use meridian_collector::{BodyFormat, CollectorError, EventStatus, IngestReport};
use meridian_collector::split::Framing;
use meridian_event::AppId;
use std::sync::Arc;
use tokio::task::JoinHandle;

const BODY: &str = r#"[{"id": "e1", "user": "u1", "action": "view"}]"#;

fn send(f: &Fixture) -> JoinHandle<Result<IngestReport, CollectorError>> {
    let collector = Arc::clone(&f.collector);
    tokio::spawn(async move { collector.ingest(&AppId::new("shop").unwrap(), BODY.as_bytes(), BodyFormat::Events(Framing::Auto)).await })
}

/// Lets the (single-threaded) runtime run every task that can make progress.
async fn settle() {
    for _ in 0..100 {
        tokio::task::yield_now().await;
    }
}

/// Sends the first request with the gate closed and waits until its append is held.
async fn first_request_held(f: &Fixture) -> JoinHandle<Result<IngestReport, CollectorError>> {
    f.log.close_gate();
    let first = send(f);
    for _ in 0..1000 {
        if f.log.held() == 1 {
            return first;
        }
        tokio::task::yield_now().await;
    }
    panic!("the first request's append never reached the log");
}

#[tokio::test(flavor = "current_thread")]
async fn a_retry_waits_for_the_first_append_and_is_stored_when_it_fails() {
    let f = fixture();
    let first = first_request_held(&f).await;
    let retry = send(&f);
    settle().await;
    assert!(!retry.is_finished(), "the retry was answered while the first append was still in flight: {:?}", retry.await);
    f.log.release(Verdict::Fail);
    let failed = first.await.unwrap();
    assert!(matches!(failed, Err(CollectorError::Log(_))), "{failed:?}");
    let report = retry.await.unwrap().unwrap();
    assert_eq!((report.accepted, report.duplicates), (1, 0), "the retry stored the event the failed append lost: {report:?}");
    assert_eq!(f.stored_ids(), vec!["e1"]);
}

#[tokio::test(flavor = "current_thread")]
async fn a_retry_waits_for_the_first_append_and_is_a_duplicate_when_it_succeeds() {
    let f = fixture();
    let first = first_request_held(&f).await;
    let retry = send(&f);
    settle().await;
    assert!(!retry.is_finished(), "the retry was answered while the first append was still in flight");
    f.log.release(Verdict::Pass);
    assert_eq!(first.await.unwrap().unwrap().accepted, 1);
    let report = retry.await.unwrap().unwrap();
    assert_eq!((report.accepted, report.duplicates), (0, 1), "{report:?}");
    assert_eq!(report.results[0].status, EventStatus::Duplicate);
    assert_eq!(f.stored_ids(), vec!["e1"], "stored once");
}

#[tokio::test(flavor = "current_thread")]
async fn a_first_request_dropped_mid_append_still_settles_what_its_retry_sees() {
    let f = fixture();
    let first = first_request_held(&f).await;
    // The client goes away: its request future is dropped while the append is held.
    first.abort();
    assert!(first.await.unwrap_err().is_cancelled());
    let retry = send(&f);
    settle().await;
    assert!(!retry.is_finished(), "the append outlives its request; the retry waits for it");
    f.log.release(Verdict::Pass);
    let report = retry.await.unwrap().unwrap();
    assert_eq!(report.duplicates, 1, "the dropped request's append became durable: {report:?}");
    assert_eq!(f.stored_ids(), vec!["e1"]);
}
