//! Every malformed, oversized, unauthorised or out-of-range input gets its own clear error
//! with a stable code, and the valid events of the same batch are kept.

use crate::harness::{now_ms, TestServer, MASTER};
use axum::body::Body;
use axum::http::{Method, StatusCode};
use serde_json::json;
use std::io::Write;

fn valid(id: &str) -> serde_json::Value {
    json!({"id": id, "user": "u1", "action": "view", "target": {"type": "sku", "id": "42"}, "time": now_ms()})
}

#[tokio::test]
async fn each_bad_event_has_its_code_and_valid_ones_are_kept() {
    let t = TestServer::start();
    let key = t.app_with_key("shop", &["write"]).await;
    let mut body = Vec::new();
    body.extend_from_slice(b"[");
    let parts: Vec<Vec<u8>> = vec![
        valid("ok-1").to_string().into_bytes(),
        br#"{"id": "bad-json", "user": "u1", "action": }"#.to_vec(),
        json!({"id": "wrong-type", "user": "u1", "action": "view", "context": {"city": "beijing"}}).to_string().into_bytes(),
        [&br#"{"id": "bad-utf8", "user": "u"#[..], &[0xff, 0xfe], &br#"", "action": "view"}"#[..]].concat(),
        json!({"id": "future", "user": "u1", "action": "view", "time": now_ms() + 3 * 86_400_000}).to_string().into_bytes(),
        json!({"id": "past", "user": "u1", "action": "view", "time": "2001-01-01T00:00:00Z"}).to_string().into_bytes(),
        json!({"id": "no-who", "action": "view"}).to_string().into_bytes(),
        json!({"id": "bad-time", "user": "u1", "action": "view", "time": "next tuesday"}).to_string().into_bytes(),
        valid("ok-2").to_string().into_bytes(),
        valid("ok-1").to_string().into_bytes(),
    ];
    body.extend_from_slice(&parts.join(&b","[..]));
    body.extend_from_slice(b"]");
    let reply = t.post("/v1/events", &key, body).await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.json);
    let results = reply.json["results"].as_array().unwrap();
    let codes: Vec<&str> = results.iter().map(|r| r["error"]["code"].as_str().unwrap_or(r["status"].as_str().unwrap())).collect();
    assert_eq!(
        codes,
        vec![
            "accepted",
            "invalid_json",
            "invalid_type",
            "invalid_utf8",
            "timestamp_too_far_future",
            "timestamp_too_far_past",
            "missing_identity",
            "invalid_timestamp",
            "accepted",
            "duplicate_event"
        ]
    );
    assert_eq!(results[2]["error"]["field"], "context.city");
    assert_eq!((reply.json["accepted"].as_u64(), reply.json["rejected"].as_u64(), reply.json["duplicates"].as_u64()), (Some(2), Some(7), Some(1)));
    assert_eq!(t.stored_ids(), vec!["ok-1", "ok-2"], "exactly the valid events are stored, once");
    // The rejected ones are dead letters with their reasons.
    let admin = t.app_with_key("shop", &["read"]).await;
    let letters = t.get("/v1/apps/shop/dead-letters?limit=100", &admin).await;
    assert_eq!(letters.json["dead_letters"].as_array().unwrap().len(), 7, "{:?}", letters.json);
}

#[tokio::test]
async fn duplicates_across_requests_are_not_stored_twice() {
    let t = TestServer::start();
    let key = t.app_with_key("shop", &["write"]).await;
    let batch = json!([valid("a"), valid("b")]).to_string();
    assert_eq!(t.post("/v1/events", &key, batch.clone()).await.json["accepted"], 2);
    let again = t.post("/v1/events", &key, batch).await;
    assert_eq!((again.json["accepted"].as_u64(), again.json["duplicates"].as_u64()), (Some(0), Some(2)));
    assert_eq!(t.stored_ids(), vec!["a", "b"]);
}

#[tokio::test]
async fn empty_batches_are_refused() {
    let t = TestServer::start();
    let key = t.app_with_key("shop", &["write"]).await;
    for body in ["[]", "", "  \n"] {
        let reply = t.post("/v1/events", &key, body).await;
        assert_eq!((reply.status, reply.code()), (StatusCode::BAD_REQUEST, "empty_batch"), "body {body:?}");
    }
}

#[tokio::test]
async fn oversized_bodies_and_batches_are_refused_whole() {
    let t = TestServer::start_with(|c| {
        c.server.max_body_bytes = 64 * 1024;
        c.server.max_decompressed_bytes = 128 * 1024;
        c.collector.max_batch_events = 10;
    });
    let key = t.app_with_key("shop", &["write"]).await;
    let huge = format!("[{}]", vec![valid("x").to_string(); 1000].join(","));
    let reply = t.post("/v1/events", &key, huge).await;
    assert_eq!((reply.status, reply.code()), (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"));
    let many: Vec<_> = (0..11).map(|i| valid(&format!("m{i}"))).collect();
    let reply = t.post("/v1/events", &key, json!(many).to_string()).await;
    assert_eq!((reply.status, reply.code()), (StatusCode::PAYLOAD_TOO_LARGE, "too_many_events"));
    assert_eq!(reply.json["error"]["details"]["max"], 10);
    // A gzip bomb: small on the wire, too large once decompressed.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(&vec![b' '; 1 << 20]).unwrap();
    let bomb = gz.finish().unwrap();
    let auth = format!("Bearer {key}");
    let reply = t.request(Method::POST, "/v1/events", &[("authorization", &auth), ("content-encoding", "gzip")], bomb).await;
    assert_eq!((reply.status, reply.code()), (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"));
    assert!(t.stored_ids().is_empty(), "nothing of a refused request is stored");
}

#[tokio::test]
async fn gzip_and_ndjson_are_accepted_and_bad_gzip_is_refused() {
    let t = TestServer::start();
    let key = t.app_with_key("shop", &["write"]).await;
    let auth = format!("Bearer {key}");
    let ndjson = format!("{}\n{}\nnot json\n", valid("n1"), valid("n2"));
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(ndjson.as_bytes()).unwrap();
    let reply = t
        .request(Method::POST, "/v1/events", &[("authorization", &auth), ("content-encoding", "gzip"), ("content-type", "application/x-ndjson")], gz.finish().unwrap())
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.json);
    assert_eq!((reply.json["accepted"].as_u64(), reply.json["rejected"].as_u64()), (Some(2), Some(1)));
    let reply = t.request(Method::POST, "/v1/events", &[("authorization", &auth), ("content-encoding", "gzip")], Body::from("not gzip")).await;
    assert_eq!((reply.status, reply.code()), (StatusCode::BAD_REQUEST, "invalid_gzip"));
    let reply = t.request(Method::POST, "/v1/events", &[("authorization", &auth), ("content-encoding", "br")], Body::from("[]")).await;
    assert_eq!((reply.status, reply.code()), (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_encoding"));
    assert_eq!(t.stored_ids(), vec!["n1", "n2"]);
}

#[tokio::test]
async fn keys_are_checked_for_existence_scope_and_app() {
    let t = TestServer::start();
    let write = t.app_with_key("shop", &["write"]).await;
    let read = t.app_with_key("shop", &["read"]).await;
    let other = t.app_with_key("other", &["write", "read", "admin"]).await;
    let body = json!([valid("k1")]).to_string();

    let reply = t.request(Method::POST, "/v1/events", &[], body.clone()).await;
    assert_eq!((reply.status, reply.code()), (StatusCode::UNAUTHORIZED, "unauthorized"));
    let reply = t.post("/v1/events", "mk_unknown_key", body.clone()).await;
    assert_eq!((reply.status, reply.code()), (StatusCode::UNAUTHORIZED, "invalid_key"));
    let reply = t.request(Method::POST, "/v1/events", &[("authorization", "Token abc")], body.clone()).await;
    assert_eq!((reply.status, reply.code()), (StatusCode::UNAUTHORIZED, "unauthorized"));
    let reply = t.post("/v1/events", &read, body.clone()).await;
    assert_eq!((reply.status, reply.code()), (StatusCode::FORBIDDEN, "insufficient_scope"));
    let reply = t.get("/v1/apps/shop/counters", &write).await;
    assert_eq!((reply.status, reply.code()), (StatusCode::FORBIDDEN, "insufficient_scope"));
    let reply = t.get("/v1/apps/shop/counters", &other).await;
    assert_eq!((reply.status, reply.code()), (StatusCode::FORBIDDEN, "insufficient_scope"));
    assert!(reply.json["error"]["message"].as_str().unwrap().contains("other"));
    let reply = t.post("/v1/apps", &other, json!({"id": "mine"}).to_string()).await;
    assert_eq!((reply.status, reply.code()), (StatusCode::FORBIDDEN, "forbidden"));
    let reply = t.post("/v1/apps/shop/keys", &write, json!({"scopes": ["admin"]}).to_string()).await;
    assert_eq!((reply.status, reply.code()), (StatusCode::FORBIDDEN, "insufficient_scope"));
    let reply = t.get("/v1/admin/processors", &other).await;
    assert_eq!((reply.status, reply.code()), (StatusCode::FORBIDDEN, "forbidden"));
    // The master key must name the app it sends for.
    let reply = t.post("/v1/events", MASTER, body.clone()).await;
    assert_eq!((reply.status, reply.code()), (StatusCode::BAD_REQUEST, "missing_app"));
    let reply = t.post("/v1/events?app=nope", MASTER, body.clone()).await;
    assert_eq!((reply.status, reply.code()), (StatusCode::NOT_FOUND, "unknown_app"));
    assert!(t.stored_ids().is_empty());
    assert_eq!(t.post("/v1/events?app=shop", MASTER, body).await.json["accepted"], 1);
}

#[tokio::test]
async fn management_requests_are_validated() {
    let t = TestServer::start();
    let reply = t.post("/v1/apps", MASTER, "{not json").await;
    assert_eq!((reply.status, reply.code()), (StatusCode::BAD_REQUEST, "invalid_json"));
    let reply = t.post("/v1/apps", MASTER, json!({"id": "Bad App!"}).to_string()).await;
    assert_eq!((reply.status, reply.code()), (StatusCode::BAD_REQUEST, "invalid_app_id"));
    t.app_with_key("shop", &["write"]).await;
    let reply = t.post("/v1/apps", MASTER, json!({"id": "shop"}).to_string()).await;
    assert_eq!((reply.status, reply.code()), (StatusCode::CONFLICT, "app_exists"));
    let reply = t.post("/v1/apps/shop/keys", MASTER, json!({"scopes": ["superuser"]}).to_string()).await;
    assert_eq!((reply.status, reply.code()), (StatusCode::BAD_REQUEST, "invalid_scope"));
    let reply = t.post("/v1/apps/shop/keys", MASTER, json!({"scopes": []}).to_string()).await;
    assert_eq!((reply.status, reply.code()), (StatusCode::BAD_REQUEST, "invalid_argument"));
    let reply = t.post("/v1/apps/ghost/keys", MASTER, json!({"scopes": ["read"]}).to_string()).await;
    assert_eq!((reply.status, reply.code()), (StatusCode::NOT_FOUND, "unknown_app"));
    let reply = t.get("/v1/apps/shop/dead-letters?limit=0", MASTER).await;
    assert_eq!((reply.status, reply.code()), (StatusCode::BAD_REQUEST, "invalid_limit"));
    let reply = t.get("/v1/apps/shop/dead-letters?cursor=abc", MASTER).await;
    assert_eq!((reply.status, reply.code()), (StatusCode::BAD_REQUEST, "invalid_cursor"));
    let reply = t.get("/v1/streams/no-such-topic", MASTER).await;
    assert_eq!((reply.status, reply.code()), (StatusCode::NOT_FOUND, "unknown_topic"));
    let reply = t.get("/v1/streams/events?from=yesterday", MASTER).await;
    assert_eq!((reply.status, reply.code()), (StatusCode::BAD_REQUEST, "invalid_from"));
    let reply = t.get("/v1/nothing-here", MASTER).await;
    assert_eq!((reply.status, reply.code()), (StatusCode::NOT_FOUND, "not_found"));
}

#[tokio::test]
async fn a_log_that_cannot_keep_up_answers_429_with_retry_after_and_loses_nothing() {
    let t = TestServer::start_with(|c| {
        c.log.max_pending_bytes = 1;
        c.server.max_body_bytes = 64 << 20;
        c.server.max_decompressed_bytes = 64 << 20;
    });
    let key = t.app_with_key("shop", &["write"]).await;
    // A large request keeps the writer busy (about 20 MB to write and fsync)…
    let blob = "x".repeat(20_000);
    let big: Vec<_> = (0..1000).map(|i| json!({"id": format!("big-{i}"), "user": format!("u{i}"), "action": "view", "props": {"blob": blob}})).collect();
    let big = json!(big).to_string();
    // …so a small one sent while it is pending is refused.
    let small = json!([valid("small-1")]).to_string();
    let (big_reply, small_reply) = tokio::join!(t.post("/v1/events", &key, big), async {
        tokio::task::yield_now().await;
        t.post("/v1/events", &key, small.clone()).await
    });
    assert_eq!(big_reply.json["accepted"], 1000, "{:?}", big_reply.json["error"]);
    assert_eq!((small_reply.status, small_reply.code()), (StatusCode::TOO_MANY_REQUESTS, "overloaded"));
    assert_eq!(small_reply.headers.get("retry-after").and_then(|v| v.to_str().ok()), Some("1"));
    assert!(!t.stored_ids().contains(&"small-1".to_owned()), "a refused request stores nothing");
    // The retry is not mistaken for a duplicate.
    let retry = t.post("/v1/events", &key, small).await;
    assert_eq!(retry.json["accepted"], 1, "{:?}", retry.json);
    assert_eq!(t.stored_ids().len(), 1001);
}
