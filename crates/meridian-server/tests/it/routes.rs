//! Routes that work: dead-letter replay after a pipeline fix, live streams with resume,
//! Segment-compatible routes, counters, processors, health.

use crate::harness::{now_ms, TestServer, MASTER};
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use base64::Engine;
use futures::StreamExt;
use serde_json::json;
use std::time::Duration;
use tower::ServiceExt;

#[tokio::test]
async fn dead_letters_replay_after_the_pipeline_is_fixed() {
    let pipeline_dir = tempfile::tempdir().unwrap();
    let pipeline_file = pipeline_dir.path().join("pipeline.toml");
    std::fs::write(&pipeline_file, "# no parsers yet\n").unwrap();
    let file = pipeline_file.clone();
    let t = TestServer::start_with(move |c| c.collector.pipeline = Some(file));
    let key = t.app_with_key("shop", &["write", "read", "admin"]).await;
    // A legacy client (v1) sends other field names.
    let legacy = json!([{"id": "legacy-1", "uid": "u1", "evt": "view"}, {"id": "legacy-2", "uid": "u2", "evt": "cart"}, {"id": "modern", "user": "u3", "action": "view"}]);
    let reply = t.post("/v1/events", &key, legacy.to_string()).await;
    assert_eq!((reply.json["accepted"].as_u64(), reply.json["rejected"].as_u64()), (Some(1), Some(2)), "{:?}", reply.json);
    assert_eq!(reply.json["results"][0]["error"]["code"], "invalid_field");
    let letters = t.get("/v1/apps/shop/dead-letters", &key).await;
    assert_eq!(letters.json["dead_letters"].as_array().unwrap().len(), 2);
    assert_eq!(letters.json["dead_letters"][0]["raw"], json!({"id": "legacy-1", "uid": "u1", "evt": "view"}).to_string());

    // A broken config is refused and the old pipeline stays in force.
    std::fs::write(&pipeline_file, "[[parsers]\n").unwrap();
    let reply = t.post("/v1/admin/pipeline/reload", MASTER, Body::empty()).await;
    assert_eq!((reply.status, reply.code()), (StatusCode::BAD_REQUEST, "invalid_pipeline"));
    assert_eq!(t.post("/v1/events", &key, json!([{"user": "u4", "action": "view"}]).to_string()).await.json["accepted"], 1);

    // Fix the config, reload, replay.
    std::fs::write(&pipeline_file, "[[parsers]]\n[parsers.aliases]\nuid = \"user\"\nevt = \"action\"\n").unwrap();
    let reply = t.post("/v1/admin/pipeline/reload", MASTER, Body::empty()).await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.json);
    let audit = t.get("/v1/audit?action=pipeline.reload", MASTER).await;
    assert_eq!(audit.json["entries"].as_array().unwrap().len(), 1, "the refused reload is not audited, the good one is: {}", audit.json);
    assert_eq!(audit.json["entries"][0]["after"]["revision"], reply.json["revision"]);
    let replay = t.post("/v1/apps/shop/dead-letters/replay", &key, Body::empty()).await;
    assert_eq!(replay.status, StatusCode::OK, "{:?}", replay.json);
    assert_eq!((replay.json["replayed"].as_u64(), replay.json["accepted"].as_u64(), replay.json["still_failing"].as_u64()), (Some(2), Some(2), Some(0)));
    let ids = t.stored_ids();
    assert!(ids.contains(&"legacy-1".to_owned()) && ids.contains(&"legacy-2".to_owned()), "{ids:?}");
    let legacy_1 = t.stored("events").into_iter().find(|e| e.id.as_str() == "legacy-1").unwrap();
    assert_eq!(legacy_1.user.unwrap().as_str(), "u1");
    // A second replay has nothing new to do.
    let again = t.post("/v1/apps/shop/dead-letters/replay", &key, Body::empty()).await;
    assert_eq!(again.json["replayed"], 0);
    assert_eq!(t.stored_ids().len(), 4);
}

async fn read_sse(t: &TestServer, uri: &str, key: &str, last_event_id: Option<&str>, n_events: usize) -> Vec<(String, serde_json::Value)> {
    let mut builder = Request::builder().uri(uri).header("authorization", format!("Bearer {key}"));
    if let Some(id) = last_event_id {
        builder = builder.header("last-event-id", id);
    }
    let response = t.router.clone().oneshot(builder.body(Body::empty()).unwrap()).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let mut body = response.into_body().into_data_stream();
    let mut text = String::new();
    let mut events = Vec::new();
    while events.len() < n_events {
        let chunk = tokio::time::timeout(Duration::from_secs(5), body.next()).await.expect("stream stalled").unwrap().unwrap();
        text.push_str(std::str::from_utf8(&chunk).unwrap());
        while let Some(end) = text.find("\n\n") {
            let block: String = text.drain(..end + 2).collect();
            let id = block.lines().find_map(|l| l.strip_prefix("id: ")).map(str::to_owned);
            let data = block.lines().find_map(|l| l.strip_prefix("data: "));
            if let (Some(id), Some(data)) = (id, data) {
                events.push((id, serde_json::from_str(data).unwrap()));
            }
        }
    }
    events
}

#[tokio::test]
async fn streams_are_filtered_by_app_and_resume_from_last_event_id() {
    let t = TestServer::start();
    let shop = t.app_with_key("shop", &["write", "read"]).await;
    let other = t.app_with_key("other", &["write"]).await;
    let events: Vec<_> = (0..6).map(|i| json!({"id": format!("s{i}"), "user": "same-user", "action": "view", "time": now_ms() + i})).collect();
    t.post("/v1/events", &other, json!([{"id": "foreign", "user": "same-user", "action": "view"}]).to_string()).await;
    assert_eq!(t.post("/v1/events", &shop, json!(events).to_string()).await.json["accepted"], 6);
    let first = read_sse(&t, "/v1/streams/events?from=beginning", &shop, None, 3).await;
    let ids: Vec<&str> = first.iter().map(|(_, e)| e["id"].as_str().unwrap()).collect();
    assert_eq!(ids, vec!["s0", "s1", "s2"], "other apps' events are not streamed");
    let resumed = read_sse(&t, "/v1/streams/events", &shop, Some(&first[2].0), 3).await;
    let ids: Vec<&str> = resumed.iter().map(|(_, e)| e["id"].as_str().unwrap()).collect();
    assert_eq!(ids, vec!["s3", "s4", "s5"], "resumes right after the last event seen");
    let bad = t.request(Method::GET, "/v1/streams/events", &[("authorization", &format!("Bearer {shop}")), ("last-event-id", "garbage")], Body::empty()).await;
    assert_eq!((bad.status, bad.code()), (StatusCode::BAD_REQUEST, "invalid_last_event_id"));
}

#[tokio::test]
async fn live_stream_delivers_events_appended_after_connecting() {
    let t = TestServer::start();
    let shop = t.app_with_key("shop", &["write", "read"]).await;
    let (connected, is_connected) = tokio::sync::oneshot::channel();
    let reader = {
        let router = t.router.clone();
        let key = shop.clone();
        tokio::spawn(async move {
            let request = Request::builder().uri("/v1/streams/events").header("authorization", format!("Bearer {key}")).body(Body::empty()).unwrap();
            let response = router.oneshot(request).await.unwrap();
            // The stream's start (the log's end) is fixed once the handler answered.
            connected.send(()).unwrap();
            let mut body = response.into_body().into_data_stream();
            let mut text = String::new();
            while !text.contains("live-1") {
                let chunk = tokio::time::timeout(Duration::from_secs(5), body.next()).await.expect("no live event").unwrap().unwrap();
                text.push_str(std::str::from_utf8(&chunk).unwrap());
            }
            text
        })
    };
    is_connected.await.unwrap();
    t.post("/v1/events", &shop, json!([{"id": "live-1", "user": "u", "action": "click"}]).to_string()).await;
    let text = reader.await.unwrap();
    assert!(text.contains("event: click"), "{text}");
}

#[tokio::test]
async fn segment_routes_accept_write_keys_as_basic_auth() {
    let t = TestServer::start();
    let key = t.app_with_key("shop", &["write"]).await;
    let basic = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{key}:")));
    let batch = json!({"batch": [
        {"type": "track", "event": "Order Completed", "userId": "u1", "messageId": "m1", "timestamp": "2026-11-21T05:00:00Z", "properties": {"sku": "77", "revenue": 10}},
        {"type": "page", "anonymousId": "a1", "messageId": "m2", "name": "Home"},
        {"type": "identify", "userId": "u1", "anonymousId": "a1", "messageId": "m3", "traits": {"plan": "pro"}},
        {"type": "launch-rocket", "userId": "u1", "messageId": "m4"}
    ], "sentAt": "2026-11-21T05:00:01Z"});
    let reply = t.request(Method::POST, "/v1/batch", &[("authorization", &basic), ("content-type", "application/json")], batch.to_string()).await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.json);
    assert_eq!((reply.json["accepted"].as_u64(), reply.json["rejected"].as_u64()), (Some(3), Some(1)));
    assert_eq!(reply.json["results"][3]["error"]["field"], "type");
    let reply = t.request(Method::POST, "/v1/track", &[("authorization", &basic)], json!({"event": "Added To Cart", "userId": "u2", "messageId": "m5"}).to_string()).await;
    assert_eq!(reply.json["accepted"], 1);
    // writeKey in the body, as some libraries send it.
    let reply = t.request(Method::POST, "/v1/identify", &[], json!({"writeKey": key, "userId": "u3", "messageId": "m6"}).to_string()).await;
    assert_eq!(reply.json["accepted"], 1, "{:?}", reply.json);
    let stored = t.stored("events");
    let order = stored.iter().find(|e| e.id.as_str() == "m1").unwrap();
    assert_eq!(order.action.as_str(), "order_completed");
    assert_eq!(order.target.as_ref().unwrap().id, "77");
    let actions: std::collections::BTreeSet<&str> = stored.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(actions.into_iter().collect::<Vec<_>>(), vec!["added_to_cart", "identify", "order_completed", "page"]);
    let reply = t.request(Method::POST, "/v1/batch", &[("authorization", &basic)], "{\"batch\": 3}").await;
    assert_eq!((reply.status, reply.code()), (StatusCode::BAD_REQUEST, "malformed_body"));
}

#[tokio::test]
async fn counters_follow_the_log_and_rebuild_gives_the_same_counts() {
    let t = TestServer::start();
    let key = t.app_with_key("shop", &["write", "read"]).await;
    let events: Vec<_> = (0..50).map(|i| json!({"id": format!("c{i}"), "user": format!("u{}", i % 7), "action": if i % 5 == 0 { "order" } else { "view" }})).collect();
    assert_eq!(t.post("/v1/events", &key, json!(events).to_string()).await.json["accepted"], 50);
    assert!(t.server.runtime().wait_caught_up(Duration::from_secs(10)));
    let counts = t.get("/v1/apps/shop/counters", &key).await;
    assert_eq!(counts.json["total"], 50);
    assert_eq!(counts.json["by_action"], json!({"order": 10, "view": 40}));
    let reply = t.post("/v1/admin/processors/counters/rebuild", MASTER, Body::empty()).await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.json);
    assert!(t.server.runtime().wait_caught_up(Duration::from_secs(10)));
    assert_eq!(t.get("/v1/apps/shop/counters", &key).await.json["total"], 50);
    let reply = t.post("/v1/admin/processors/nope/rebuild", MASTER, Body::empty()).await;
    assert_eq!((reply.status, reply.code()), (StatusCode::NOT_FOUND, "unknown_processor"));
    let processors = t.get("/v1/admin/processors", MASTER).await;
    let counters = processors.json["processors"].as_array().unwrap().iter().find(|p| p["name"] == "counters").cloned().unwrap_or_default();
    assert_eq!(counters["lag"], 0, "{}", processors.json);
}

#[tokio::test]
async fn health_metrics_console_and_openapi() {
    let t = TestServer::start();
    assert_eq!(t.get("/healthz", "").await.status, StatusCode::OK);
    let ready = t.get("/readyz", "").await;
    assert_eq!((ready.status, ready.json["status"].as_str()), (StatusCode::OK, Some("ready")));
    assert!(t.get("/openapi.json", "").await.json["paths"]["/v1/events"].is_object());
    let console = t.router.clone().oneshot(Request::builder().uri("/console").body(Body::empty()).unwrap()).await.unwrap();
    assert_eq!((console.status(), console.headers()["location"].to_str().unwrap()), (StatusCode::SEE_OTHER, "/console/login?next=%2Fconsole"), "the console asks to sign in");
    let metrics = t.router.clone().oneshot(Request::builder().uri("/metrics").body(Body::empty()).unwrap()).await.unwrap();
    assert_eq!(metrics.status(), StatusCode::OK);
}

#[tokio::test]
async fn seek_moves_a_processor_back_and_validates_its_input() {
    let t = TestServer::start();
    let key = t.app_with_key("shop", &["write", "read"]).await;
    let events: Vec<_> = (0..20).map(|i| json!({"id": format!("k{i}"), "user": "same-user", "action": "view"})).collect();
    t.post("/v1/events", &key, json!(events).to_string()).await;
    assert!(t.server.runtime().wait_caught_up(Duration::from_secs(10)));
    let partition = t.get("/v1/admin/processors", MASTER).await.json["processors"][0]["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["position"] == 20)
        .map(|p| p["partition"].as_u64().unwrap())
        .expect("one user's events are in one partition");
    let body = json!({"topic": "events", "offsets": {partition.to_string(): 15}}).to_string();
    let reply = t.post("/v1/admin/processors/counters/seek", MASTER, body).await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.json);
    assert!(t.server.runtime().wait_caught_up(Duration::from_secs(10)));
    assert_eq!(t.get("/v1/apps/shop/counters", &key).await.json["total"], 25, "the last 5 were counted again");
    for (body, status, code) in [
        (json!({"topic": "events", "offsets": {"x": 1}}), StatusCode::BAD_REQUEST, "invalid_partition"),
        (json!({"topic": "events", "offsets": {"99": 1}}), StatusCode::BAD_REQUEST, "invalid_seek"),
        (json!({"topic": "nope", "offsets": {"0": 1}}), StatusCode::NOT_FOUND, "unknown_topic"),
        (json!({"topic": "events"}), StatusCode::BAD_REQUEST, "invalid_json"),
    ] {
        let reply = t.post("/v1/admin/processors/counters/seek", MASTER, body.to_string()).await;
        assert_eq!((reply.status, reply.code()), (status, code), "{body}");
    }
    let reply = t.post("/v1/admin/processors/counters/seek", &key, json!({"topic": "events", "offsets": {}}).to_string()).await;
    assert_eq!((reply.status, reply.code()), (StatusCode::FORBIDDEN, "forbidden"));
}
