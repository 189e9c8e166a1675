//! The notification processor: deliveries per matching endpoint, none twice on replay or
//! rebuild, and never held up by a slow receiver.

use crate::{app, request, test_config, Fixture, Receiver, Reply};
use meridian_log::{Log, Record, TopicName};
use meridian_notify::{DeliveryFilter, DeliveryId, DeliveryState, EndpointUpdate, NewEndpoint, NotificationProcessor, NotificationRequest};
use meridian_runtime::{ProcessContext, Processor, Timer};
use meridian_state::WriteBatch;
use parking_lot::Mutex;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_delivery_per_matching_enabled_endpoint_and_none_again_on_replay_or_rebuild() {
    let receiver = Receiver::ok("127.0.0.1").await;
    let f = Fixture::start(test_config()).await;
    let all = f.endpoint(&format!("{}?to=all", receiver.url()), &[]).await;
    let alerts = f.endpoint(&format!("{}?to=alerts", receiver.url()), &["alert.firing"]).await;
    let disabled = f.endpoint(&format!("{}?to=disabled", receiver.url()), &[]).await;
    f.notifier.update_endpoint(&disabled.id, EndpointUpdate { disabled: Some(true), ..EndpointUpdate::default() }).await.unwrap();
    let other_app = f
        .notifier
        .create_endpoint(NewEndpoint { app: meridian_event::AppId::new("other").unwrap(), url: receiver.url(), description: String::new(), event_types: vec![], disabled: false })
        .await
        .unwrap();

    let mut requests: Vec<NotificationRequest> = (0..3).map(|n| request(&format!("trigger-{n}"), "trigger.fired")).collect();
    requests.push(request("alert-0", "alert.firing"));
    let mut before_endpoints = request("too-old", "trigger.fired");
    before_endpoints.created_ms = all.created_ms - 60_000;
    requests.push(before_endpoints);
    f.emit(&requests).await;
    f.caught_up().await;

    let expected: Vec<DeliveryId> = requests[..4].iter().map(|r| DeliveryId::derive(&r.id, &all.id)).chain([DeliveryId::derive("alert-0", &alerts.id)]).collect();
    for id in &expected {
        f.wait_state(id, DeliveryState::Delivered, Duration::from_secs(10)).await;
    }
    let listed = |state| {
        let notifier = f.notifier.clone();
        async move { notifier.deliveries(&app(), DeliveryFilter { state, ..DeliveryFilter::default() }, None, 100).await.unwrap().deliveries }
    };
    let deliveries = listed(None).await;
    assert_eq!(deliveries.len(), 5, "4 to the catch-all endpoint, 1 to the alerts endpoint: {deliveries:#?}");
    assert!(deliveries.iter().all(|d| d.endpoint_id != disabled.id), "a disabled endpoint gets none");
    assert!(deliveries.iter().all(|d| d.endpoint_id != alerts.id || d.event_type == "alert.firing"), "a non-matching event type gets none");
    assert!(deliveries.iter().all(|d| d.request_id != "too-old"), "requests older than the endpoint are not delivered to it");
    let other = f.notifier.deliveries(&other_app.app, DeliveryFilter::default(), None, 100).await.unwrap();
    assert!(other.deliveries.is_empty(), "another app's endpoint gets none");
    let only_alerts = f.notifier.deliveries(&app(), DeliveryFilter { endpoint: Some(alerts.id.clone()), state: None }, None, 100).await.unwrap();
    assert_eq!(only_alerts.deliveries.len(), 1);

    // Replay every record (a seek to the start), then a full rebuild.
    let partitions = f.log.partition_count(&f.topic).unwrap();
    f.runtime.seek(NotificationProcessor::NAME, &f.topic, (0..partitions).map(|p| (p, 0)).collect()).unwrap();
    f.caught_up().await;
    f.runtime.rebuild(NotificationProcessor::NAME).unwrap();
    f.caught_up().await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    let after = listed(None).await;
    assert_eq!(after.len(), 5, "replaying created no second delivery");
    assert!(after.iter().all(|d| d.state == DeliveryState::Delivered && d.attempts == 1), "{after:#?}");
    let received = receiver.received();
    assert_eq!(received.len(), 5, "each delivery reached the receiver once");
    let mut ids: Vec<&str> = received.iter().map(|r| r.webhook_id()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 5);

    // Paging: newest request first, cursor continues without repeats.
    let first = f.notifier.deliveries(&app(), DeliveryFilter::default(), None, 2).await.unwrap();
    assert_eq!(first.deliveries.len(), 2);
    let second = f.notifier.deliveries(&app(), DeliveryFilter::default(), first.next_cursor.as_deref(), 10).await.unwrap();
    assert_eq!(second.deliveries.len(), 3);
    assert!(second.next_cursor.is_none());
    assert!(first.deliveries[0].created_ms >= second.deliveries[2].created_ms);
    assert!(f.notifier.deliveries(&app(), DeliveryFilter::default(), Some("zz"), 10).await.is_err(), "a foreign cursor is refused");
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_for_one_endpoint_goes_to_it_alone_whatever_its_event_types() {
    let receiver = Receiver::ok("127.0.0.1").await;
    let f = Fixture::start(test_config()).await;
    let alerts = f.endpoint(&format!("{}?to=alerts", receiver.url()), &["alert.firing"]).await;
    let all = f.endpoint(&format!("{}?to=all", receiver.url()), &[]).await;
    let mut test = request("test-1", "webhook.test");
    test.endpoint = Some(alerts.id.clone());
    f.emit(&[test]).await;
    f.caught_up().await;
    f.wait_state(&DeliveryId::derive("test-1", &alerts.id), DeliveryState::Delivered, Duration::from_secs(10)).await;
    let deliveries = f.notifier.deliveries(&app(), DeliveryFilter::default(), None, 10).await.unwrap().deliveries;
    assert_eq!(deliveries.len(), 1, "{deliveries:#?}");
    assert_eq!(deliveries[0].endpoint_id, alerts.id, "not the catch-all endpoint {}", all.id);
    f.stop().await;
}

/// Records how long each `process` call of the wrapped processor takes.
struct Timed {
    inner: NotificationProcessor,
    durations: Arc<Mutex<Vec<Duration>>>,
}

impl Processor for Timed {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn topics(&self) -> Vec<TopicName> {
        self.inner.topics()
    }
    fn process(&mut self, ctx: &mut ProcessContext<'_>, topic: &TopicName, records: &[Record]) -> meridian_runtime::Result<()> {
        let started = Instant::now();
        let result = self.inner.process(ctx, topic, records);
        self.durations.lock().push(started.elapsed());
        result
    }
    fn on_timer(&mut self, ctx: &mut ProcessContext<'_>, timer: &Timer) -> meridian_runtime::Result<()> {
        self.inner.on_timer(ctx, timer)
    }
    fn clear_state(&mut self, batch: &mut WriteBatch) {
        self.inner.clear_state(batch)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_receiver_never_blocks_the_processor() {
    let slow = Receiver::start("127.0.0.1", |_, _| Reply { delay: Duration::from_secs(2), ..Reply::status(200) }).await;
    let durations = Arc::new(Mutex::new(Vec::new()));
    let timed = durations.clone();
    let config = meridian_notify::NotifyConfig { max_concurrency: 4, ..test_config() };
    let f = Fixture::start_with(config, move |inner| Box::new(Timed { inner, durations: timed })).await;
    let endpoint = f.endpoint(&slow.url(), &[]).await;
    let started = Instant::now();
    let requests: Vec<NotificationRequest> = (0..200).map(|n| request(&format!("slow-{n}"), "trigger.fired")).collect();
    for chunk in requests.chunks(20) {
        f.emit(chunk).await;
    }
    f.caught_up().await;
    let caught_up_after = started.elapsed();

    // Every delivery exists while the receiver has answered at most a handful.
    let page = f.notifier.deliveries(&app(), Default::default(), None, 1_000).await.unwrap();
    assert_eq!(page.deliveries.len(), 200);
    assert!(caught_up_after < Duration::from_millis(1_500), "the processor took {caught_up_after:?} to catch up behind a 2 s receiver");
    let slowest = durations.lock().iter().max().copied().unwrap();
    assert!(slowest < Duration::from_millis(200), "a process() call took {slowest:?}");
    let in_flight = f.notifier.stats().in_flight;
    assert!((1..=4).contains(&in_flight) || slow.received().len() <= 4, "concurrency is bounded: {in_flight} in flight");
    assert!(slow.received().len() <= 4, "at most max_concurrency requests are open at once: {}", slow.received().len());

    // And the deliveries do complete, 4 at a time.
    crate::wait_until("the first slow deliveries to complete", Duration::from_secs(10), || async { f.notifier.stats().delivered >= 4 }).await;
    let delivered = f.notifier.deliveries(&app(), DeliveryFilter { state: Some(DeliveryState::Delivered), endpoint: Some(endpoint.id.clone()) }, None, 1_000).await.unwrap();
    assert!(delivered.deliveries.len() >= 4);
    f.stop().await;
}
