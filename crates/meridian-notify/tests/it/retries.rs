//! Retries, backoff with full jitter, dead-lettering and manual redelivery against real
//! failing receivers.

use crate::{app, now_ms, request, test_config, Fixture, Receiver, Reply};
use meridian_notify::{DeliveryFilter, DeliveryId, DeliveryState, NotifyConfig, PurgeReport};
use meridian_state::KvStore;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_failing_k_times_gets_the_delivery_on_attempt_k_plus_one_with_k_failures_logged() {
    const K: usize = 3;
    let receiver = Receiver::start("127.0.0.1", |n, _| if n < K { Reply { body: format!("boom {n}"), ..Reply::status(500) } } else { Reply::status(204) }).await;
    let f = Fixture::start(test_config()).await;
    let endpoint = f.endpoint(&receiver.url(), &[]).await;
    let r = request("flaky", "alert.firing");
    f.emit(std::slice::from_ref(&r)).await;
    let id = DeliveryId::derive(&r.id, &endpoint.id);
    let detail = f.wait_state(&id, DeliveryState::Delivered, Duration::from_secs(10)).await;

    assert_eq!(detail.delivery.attempts as usize, K + 1);
    assert_eq!(detail.attempts.len(), K + 1, "every attempt is in the delivery log");
    for (n, attempt) in detail.attempts.iter().take(K).enumerate() {
        assert_eq!(attempt.attempt as usize, n + 1);
        assert_eq!(attempt.status, Some(500));
        assert_eq!(attempt.error_code.as_deref(), Some("http_status"));
        assert_eq!(attempt.response_body, format!("boom {n}"), "the response body is logged");
        assert!(attempt.retry_delay_ms.is_some());
        assert!(attempt.latency_us > 0);
    }
    let last = &detail.attempts[K];
    assert_eq!((last.status, last.error_code.as_deref(), last.retry_delay_ms), (Some(204), None, None));
    assert_eq!(detail.delivery.last_result.as_deref(), Some("204"));

    let received = receiver.received();
    assert_eq!(received.len(), K + 1);
    assert!(received.iter().all(|r| r.webhook_id() == id.as_str()), "the webhook-id is the same on every retry");
    let stats = f.notifier.stats();
    assert_eq!((stats.delivered, stats.failed_attempts, stats.dead), (1, K as u64, 0));
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_is_dead_after_max_attempts_and_a_manual_redelivery_succeeds_once_the_receiver_recovers() {
    let receiver = Receiver::start("127.0.0.1", |_, _| Reply::status(500)).await;
    let config = NotifyConfig { max_attempts: 4, ..test_config() };
    let f = Fixture::start(config).await;
    let endpoint = f.endpoint(&receiver.url(), &[]).await;
    let r = request("always-failing", "alert.firing");
    f.emit(std::slice::from_ref(&r)).await;
    let id = DeliveryId::derive(&r.id, &endpoint.id);
    let dead = f.wait_state(&id, DeliveryState::Dead, Duration::from_secs(10)).await;
    assert_eq!(dead.attempts.len(), 4);
    assert!(dead.attempts.iter().all(|a| a.status == Some(500)));
    assert_eq!(dead.attempts[3].retry_delay_ms, None, "no retry is scheduled after the last attempt");
    assert_eq!(dead.delivery.next_attempt_ms, None);

    // Dead stays dead: nothing more arrives.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(receiver.received().len(), 4);
    let page = f.notifier.deliveries(&app(), DeliveryFilter { state: Some(DeliveryState::Dead), ..DeliveryFilter::default() }, None, 10).await.unwrap();
    assert_eq!(page.deliveries.iter().map(|d| d.id.clone()).collect::<Vec<_>>(), vec![id.clone()]);

    receiver.set_handler(|_, _| Reply::status(200));
    let pending = f.notifier.redeliver(&id).await.unwrap();
    assert_eq!(pending.state, DeliveryState::Pending);
    let delivered = f.wait_state(&id, DeliveryState::Delivered, Duration::from_secs(10)).await;
    assert_eq!(delivered.attempts.len(), 5, "the redelivery's attempt is logged after the four failures");
    assert_eq!(delivered.attempts[4].status, Some(200));
    let received = receiver.received();
    assert_eq!(received.len(), 5);
    assert_eq!(received[4].webhook_id(), id.as_str(), "a redelivery keeps the webhook-id");

    assert!(matches!(f.notifier.redeliver(&DeliveryId::new("msg_unknown").unwrap()).await, Err(meridian_notify::NotifyError::DeliveryNotFound(_))));
    let stats = f.notifier.stats();
    assert_eq!((stats.delivered, stats.failed_attempts, stats.dead), (1, 3, 1));
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_gaps_grow_with_the_attempt_number_and_are_jittered() {
    const DELIVERIES: usize = 16;
    let receiver = Receiver::start("127.0.0.1", |_, _| Reply::status(503)).await;
    // Bounds 100, 200, 400, 800 ms: mean delays 50, 100, 200, 400 ms, large against the
    // few ms (tens on a busy disk) between an attempt's end and its result's commit.
    let config = NotifyConfig { max_attempts: 5, backoff_base_ms: 100, backoff_factor: 2.0, backoff_cap_ms: 10_000, ..test_config() };
    let f = Fixture::start(config.clone()).await;
    let endpoint = f.endpoint(&receiver.url(), &[]).await;
    let requests: Vec<_> = (0..DELIVERIES).map(|n| request(&format!("gap-{n}"), "alert.firing")).collect();
    f.emit(&requests).await;

    // gaps[i] / delays[i]: the idle time between the end of attempt i+1 and the start of
    // attempt i+2, and the delay drawn for it, of every delivery.
    let mut gaps = vec![Vec::new(); 4];
    let mut delays = vec![Vec::new(); 4];
    for r in &requests {
        let detail = f.wait_state(&DeliveryId::derive(&r.id, &endpoint.id), DeliveryState::Dead, Duration::from_secs(20)).await;
        assert_eq!(detail.attempts.len(), 5);
        for i in 0..4 {
            let delay = detail.attempts[i].retry_delay_ms.expect("a retry was scheduled");
            let bound = config.backoff_bound_ms(i as u32 + 1);
            assert!(delay <= bound, "attempt {}: delay {delay} ms above its bound {bound} ms", i + 1);
            let finished_ms = detail.attempts[i].started_ms + (detail.attempts[i].latency_us / 1_000) as i64;
            let gap = (detail.attempts[i + 1].started_ms - finished_ms).max(0) as u64;
            assert!(gap + 1 >= delay, "attempt {} came {gap} ms after the previous one ended, before its delay of {delay} ms", i + 2);
            assert!(gap <= delay + 1_000, "attempt {} came {gap} ms after the previous one ended, long after its delay of {delay} ms", i + 2);
            gaps[i].push(gap as f64);
            delays[i].push(delay);
        }
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let gap_means: Vec<f64> = gaps.iter().map(|g| mean(g)).collect();
    let delay_means: Vec<f64> = delays.iter().map(|d| mean(&d.iter().map(|x| *x as f64).collect::<Vec<_>>())).collect();
    assert!(delay_means[3] > delay_means[0] * 2.0 && delay_means[3] > delay_means[1], "drawn delays do not grow: {delay_means:?}");
    assert!(gap_means[3] > gap_means[0] && gap_means[3] > gap_means[1], "observed gaps do not grow: {gap_means:?}");
    for (stage, drawn) in delays.iter().enumerate() {
        let mut distinct = drawn.clone();
        distinct.sort_unstable();
        distinct.dedup();
        assert!(distinct.len() >= 4, "delays after attempt {} are not jittered: {drawn:?}", stage + 1);
    }
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeouts_and_refused_connections_are_failed_attempts_with_their_codes() {
    let slow = Receiver::start("127.0.0.1", |_, _| Reply { delay: Duration::from_secs(5), ..Reply::status(200) }).await;
    // A port nobody listens on: bind, note, close.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let config = NotifyConfig { max_attempts: 2, timeout_ms: 300, ..test_config() };
    let f = Fixture::start(config).await;
    let slow_endpoint = f.endpoint(&slow.url(), &[]).await;
    let closed_endpoint = f.endpoint(&format!("http://{closed}/hook"), &[]).await;
    let r = request("unlucky", "alert.firing");
    f.emit(std::slice::from_ref(&r)).await;
    let timed_out = f.wait_state(&DeliveryId::derive(&r.id, &slow_endpoint.id), DeliveryState::Dead, Duration::from_secs(10)).await;
    assert!(timed_out.attempts.iter().all(|a| a.error_code.as_deref() == Some("timeout") && a.status.is_none()), "{:?}", timed_out.attempts);
    assert!(timed_out.attempts.iter().all(|a| (250_000..2_000_000).contains(&a.latency_us)), "the timeout bounds an attempt: {:?}", timed_out.attempts);
    let refused = f.wait_state(&DeliveryId::derive(&r.id, &closed_endpoint.id), DeliveryState::Dead, Duration::from_secs(10)).await;
    assert!(refused.attempts.iter().all(|a| a.error_code.as_deref() == Some("connection_error")), "{:?}", refused.attempts);
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purge_deletes_finished_deliveries_before_the_cutoff_with_their_attempts_and_keeps_pending_ones() {
    // /ok answers 200 at once, /dead 500 at once, /slow 500 after a second (its delivery is
    // pending, its attempt in flight, while the purge runs).
    let receiver = Receiver::start("127.0.0.1", |_, path| match path {
        "/ok" => Reply::status(200),
        "/slow" => Reply { delay: Duration::from_secs(1), ..Reply::status(500) },
        _ => Reply::status(500),
    })
    .await;
    let base = format!("http://{}", receiver.addr);
    let f = Fixture::start(NotifyConfig { max_attempts: 1, ..test_config() }).await;
    let ok = f.endpoint(&format!("{base}/ok"), &["ok"]).await;
    let dead = f.endpoint(&format!("{base}/dead"), &["dead"]).await;
    let slow = f.endpoint(&format!("{base}/slow"), &["slow"]).await;
    let (r_ok, r_dead, r_slow) = (request("purge-ok", "ok"), request("purge-dead", "dead"), request("purge-slow", "slow"));
    f.emit(&[r_ok.clone(), r_dead.clone()]).await;
    let id_ok = DeliveryId::derive(&r_ok.id, &ok.id);
    let id_dead = DeliveryId::derive(&r_dead.id, &dead.id);
    let id_slow = DeliveryId::derive(&r_slow.id, &slow.id);
    f.wait_state(&id_ok, DeliveryState::Delivered, Duration::from_secs(10)).await;
    f.wait_state(&id_dead, DeliveryState::Dead, Duration::from_secs(10)).await;
    f.emit(std::slice::from_ref(&r_slow)).await;
    crate::wait_until("the slow attempt to reach the receiver", Duration::from_secs(10), || async { receiver.received().iter().any(|r| r.path == "/slow") }).await;
    assert_eq!(f.notifier.delivery(&id_slow).await.unwrap().delivery.state, DeliveryState::Pending);

    // A cutoff before they finished removes nothing.
    let notifier = f.notifier.clone();
    let none = tokio::task::spawn_blocking(move || notifier.purge_finished_before(0)).await.unwrap().unwrap();
    assert_eq!(none, PurgeReport::default());

    let notifier = f.notifier.clone();
    let cutoff = now_ms() + 1;
    let report = tokio::task::spawn_blocking(move || notifier.purge_finished_before(cutoff)).await.unwrap().unwrap();
    assert_eq!(report, PurgeReport { deliveries: 2, attempts: 2 }, "the delivered one and the dead one, one attempt each");
    for id in [&id_ok, &id_dead] {
        assert!(matches!(f.notifier.delivery(id).await, Err(meridian_notify::NotifyError::DeliveryNotFound(_))), "{id} still there");
    }
    let page = f.notifier.deliveries(&app(), DeliveryFilter::default(), None, 10).await.unwrap();
    assert_eq!(page.deliveries.iter().map(|d| d.id.clone()).collect::<Vec<_>>(), vec![id_slow.clone()], "the list keeps only the pending one");
    let attempts_left = f.store.scan_prefix("notify_attempts", b"", usize::MAX).unwrap();
    assert!(attempts_left.is_empty(), "the purged deliveries' attempts are gone: {attempts_left:?}");

    // The attempt in flight during the purge still lands.
    let finished = f.wait_state(&id_slow, DeliveryState::Dead, Duration::from_secs(10)).await;
    assert_eq!(finished.attempts.len(), 1);
    f.stop().await;
}
