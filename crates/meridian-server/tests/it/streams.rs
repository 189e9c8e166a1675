//! Streams: the open-streams gauge follows the streams however they end, and a filtered
//! stream catches up over other apps' records without waiting for new appends.

use crate::harness::TestServer;
use axum::body::Body;
use axum::http::{Method, Request};
use bytes::Bytes;
use futures::StreamExt;
use http_body_util::BodyExt;
use meridian_event::{Action, AppId, Event, EventId, Timestamp, UserId};
use meridian_log::{AppendRecord, TopicName};
use std::time::{Duration, Instant};
use tower::ServiceExt;

/// Set in the child process that runs an isolated test alone.
const ISOLATED: &str = "MERIDIAN_ISOLATED_TEST";

/// Runs `test` (this test, by its full name) alone in a child process: process-wide
/// metrics are then the test's own, not shared with tests running beside it. Returns
/// true in the child, which then runs the test's body.
fn isolated(test: &str) -> bool {
    if std::env::var(ISOLATED).is_ok() {
        return true;
    }
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(ISOLATED, "1")
        .output()
        .unwrap();
    let text = format!("{}\n{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "the isolated run failed:\n{text}");
    assert!(text.contains("1 passed"), "the isolated run did not run the test:\n{text}");
    false
}

/// The value of the gauge `meridian_streams_open` (0 before anything set it).
async fn streams_open(t: &TestServer) -> f64 {
    let reply = t.router.clone().oneshot(Request::builder().uri("/metrics").body(Body::empty()).unwrap()).await.unwrap();
    let text = String::from_utf8(reply.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
    text.lines().find_map(|l| l.strip_prefix("meridian_streams_open ")).map_or(0.0, |v| v.trim().parse().unwrap())
}

fn stream_request(uri: &str, key: &str) -> Request<Body> {
    Request::builder().method(Method::GET).uri(uri).header("authorization", format!("Bearer {key}")).body(Body::empty()).unwrap()
}

#[test]
fn the_open_streams_gauge_returns_to_its_value_when_streams_end() {
    if !isolated("streams::the_open_streams_gauge_returns_to_its_value_when_streams_end") {
        return;
    }
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
        let t = TestServer::start();
        let key = t.app_with_key("shop", &["write", "read"]).await;
        t.post("/v1/events", &key, r#"[{"id": "g1", "user": "u", "action": "click"}]"#).await;
        let before = streams_open(&t).await;

        // A live stream, then the client goes away.
        let live = t.router.clone().oneshot(stream_request("/v1/streams/events?from=beginning", &key)).await.unwrap();
        assert_eq!(streams_open(&t).await, before + 1.0, "counted while open");
        let mut body = live.into_body().into_data_stream();
        let first = tokio::time::timeout(Duration::from_secs(10), body.next()).await.expect("the stream sent its event").unwrap().unwrap();
        assert!(String::from_utf8_lossy(&first).contains("g1"));
        drop(body);
        assert_eq!(streams_open(&t).await, before, "a client disconnect closes the stream");

        // A stream that does not follow ends by itself after what the topic holds.
        let done = t.router.clone().oneshot(stream_request("/v1/streams/events?from=beginning&follow=false", &key)).await.unwrap();
        assert_eq!(streams_open(&t).await, before + 1.0);
        let text = tokio::time::timeout(Duration::from_secs(10), done.into_body().collect()).await.expect("the stream ended").unwrap().to_bytes();
        assert!(String::from_utf8_lossy(&text).contains("g1"));
        assert_eq!(streams_open(&t).await, before, "the end of a follow=false stream closes it");

        // Refused requests never count.
        let refused = t.router.clone().oneshot(stream_request("/v1/streams/no-such-topic", &key)).await.unwrap();
        assert_eq!(refused.status(), 404);
        assert_eq!(streams_open(&t).await, before);
    });
}

fn foreign_record(n: usize, received: i64) -> AppendRecord {
    let event = Event {
        id: EventId::new(format!("o{n}")).unwrap(),
        app: AppId::new(format!("other{}", n % 3)).unwrap(),
        user: Some(UserId::new(format!("u{}", n % 1000)).unwrap()),
        device: None,
        time: Timestamp(received),
        received: Timestamp(received),
        action: Action::new("view").unwrap(),
        target: None,
        context: Default::default(),
        props: Default::default(),
    };
    AppendRecord { key: Bytes::from(event.partition_key().to_owned()), value: Bytes::from(event.encode()), timestamp: received }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filtered_stream_catches_up_over_100k_records_of_other_apps_quickly() {
    let t = TestServer::start();
    let key = t.app_with_key("shop", &["write", "read"]).await;
    let topic = TopicName::new("events").unwrap();
    let now = Timestamp::now().millis();
    for chunk in 0..10 {
        let records = (chunk * 10_000..(chunk + 1) * 10_000).map(|n| foreign_record(n, now)).collect();
        t.server.log().append(&topic, records).await.unwrap();
    }
    let reply = t.post("/v1/events", &key, r#"[{"id": "s1", "user": "a", "action": "click"}, {"id": "s2", "user": "b", "action": "click"}, {"id": "s3", "user": "c", "action": "click"}]"#).await;
    assert_eq!(reply.json["accepted"], 3, "{}", reply.json);

    let started = Instant::now();
    // A following stream (the default), read until the app's three events arrived.
    let response = t.router.clone().oneshot(stream_request("/v1/streams/events?from=beginning", &key)).await.unwrap();
    let mut body = response.into_body().into_data_stream();
    let mut text = String::new();
    let ids = |text: &str| -> Vec<String> {
        text.lines().filter_map(|l| l.strip_prefix("data: ")).map(|d| serde_json::from_str::<serde_json::Value>(d).unwrap()["id"].as_str().unwrap().to_owned()).collect()
    };
    // Before the fix a fill without an event of the app waited up to 5 s for new appends,
    // about 100 times here (256 records per partition per fill): minutes.
    let read_all = async {
        while ids(&text).len() < 3 {
            let chunk = body.next().await.expect("the stream stays open").unwrap();
            text.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    };
    tokio::time::timeout(Duration::from_secs(30), read_all).await.unwrap_or_else(|_| panic!("catching up over 100k records of other apps took more than 30 s"));
    let elapsed = started.elapsed();
    let mut seen = ids(&text);
    seen.sort_unstable();
    assert_eq!(seen, vec!["s1", "s2", "s3"], "only the key's app's events");
    assert!(elapsed < Duration::from_secs(20), "caught up in {elapsed:?}");
    eprintln!("caught up over 100,000 records of other apps in {elapsed:?}");
}
