//! Pending deliveries survive a restart (the store and log reopened) and are delivered,
//! with the same `webhook-id` as before the restart.

use crate::{request, test_config, Fixture, Receiver, Reply};
use meridian_notify::{DeliveryId, DeliveryState, NotifyConfig};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_deliveries_survive_a_reopen_of_the_store_and_are_delivered() {
    let receiver = Receiver::start("127.0.0.1", |_, _| Reply::status(503)).await;
    // Retries every 0-400 ms (full jitter), and enough of them, keep the deliveries pending
    // across the restart.
    let config = NotifyConfig { backoff_base_ms: 400, backoff_cap_ms: 400, max_attempts: 50, ..test_config() };
    let f = Fixture::start(config.clone()).await;
    let endpoint = f.endpoint(&receiver.url(), &[]).await;
    let attempted: Vec<_> = (0..5).map(|n| request(&format!("before-{n}"), "trigger.fired")).collect();
    f.emit(&attempted).await;
    for r in &attempted {
        f.wait_delivery(&DeliveryId::derive(&r.id, &endpoint.id), Duration::from_secs(10), |d| d.delivery.attempts >= 1).await;
    }
    let dir = f.stop().await;
    let attempted_before = receiver.received().len();
    assert!(attempted_before >= 5);

    // Written by the processor while no notifier runs: never attempted before the restart.
    let f = Fixture::open(dir, config.clone(), |p| Box::new(p), false).await;
    let unattempted: Vec<_> = (0..5).map(|n| request(&format!("unsent-{n}"), "trigger.fired")).collect();
    f.emit(&unattempted).await;
    f.caught_up().await;
    for r in &unattempted {
        let detail = f.notifier.delivery(&DeliveryId::derive(&r.id, &endpoint.id)).await.unwrap();
        assert_eq!((detail.delivery.state, detail.delivery.attempts), (DeliveryState::Pending, 0));
    }
    let dir = f.stop().await;
    assert_eq!(receiver.received().len(), attempted_before, "nothing is sent while no notifier runs");
    assert!(receiver.received().iter().all(|got| got.webhook_id() != DeliveryId::derive(&unattempted[0].id, &endpoint.id).as_str()));

    receiver.set_handler(|_, _| Reply::status(200));
    let f = Fixture::open(dir, config, |p| Box::new(p), true).await;
    for r in attempted.iter().chain(&unattempted) {
        let id = DeliveryId::derive(&r.id, &endpoint.id);
        let detail = f.wait_state(&id, DeliveryState::Delivered, Duration::from_secs(10)).await;
        let (last, earlier) = detail.attempts.split_last().unwrap();
        assert_eq!(last.status, Some(200));
        assert!(earlier.iter().all(|a| a.status == Some(503)), "{}: {:?}", r.id, detail.attempts);
        if r.id.starts_with("before") {
            assert!(!earlier.is_empty(), "{} was attempted before the restart", r.id);
        } else {
            assert!(earlier.is_empty(), "{} was first attempted after the restart", r.id);
        }
    }
    let received = receiver.received();
    assert_eq!(received.len(), attempted_before + 10, "each delivery reached the recovered receiver once");
    for r in &attempted {
        let id = DeliveryId::derive(&r.id, &endpoint.id);
        let sent = received.iter().filter(|got| got.webhook_id() == id.as_str()).count();
        assert!(sent >= 2, "the same webhook-id before and after the restart ({sent} times)");
    }
    f.stop().await;
}
