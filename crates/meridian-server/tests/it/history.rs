//! History routes end to end through the collector, the log, the history processor and
//! the query service: listing, counts, deletes, clears, identify merges, bad parameters
//! and rate limits.

use crate::harness::{now_ms, TestServer};
use axum::body::Body;
use axum::http::{Method, StatusCode};
use serde_json::json;
use std::time::Duration;

fn view(id: &str, user: &str, sku: u64, time: i64) -> serde_json::Value {
    json!({"id": id, "user": user, "action": "view", "target": {"type": "sku", "id": sku.to_string()}, "time": time})
}

async fn ingest_and_wait(t: &TestServer, key: &str, events: Vec<serde_json::Value>) {
    let reply = t.post("/v1/events", key, json!(events).to_string()).await;
    assert_eq!(reply.json["rejected"], 0, "{:?}", reply.json);
    assert!(t.server.runtime().wait_caught_up(Duration::from_secs(10)));
}

fn skus(reply: &crate::harness::Reply) -> Vec<u64> {
    reply.json["items"].as_array().unwrap().iter().map(|i| i["sku"].as_u64().unwrap()).collect()
}

#[tokio::test]
async fn list_count_delete_and_clear_through_http() {
    let t = TestServer::start();
    let key = t.app_with_key("shop", &["write", "read"]).await;
    let base = now_ms() - 60_000;
    // Out of order on purpose: event time decides; sku 2 is viewed twice.
    ingest_and_wait(&t, &key, vec![view("v3", "ann", 3, base + 3000), view("v1", "ann", 1, base + 1000), view("v2", "ann", 2, base + 2000), view("v4", "ann", 2, base + 4000)]).await;
    let list = t.get("/v1/apps/shop/users/ann/history", &key).await;
    assert_eq!(list.status, StatusCode::OK, "{:?}", list.json);
    assert_eq!(skus(&list), vec![2, 3, 1], "newest first, one entry per SKU");
    assert_eq!(t.get("/v1/apps/shop/users/ann/history/count", &key).await.json["count"], 3);

    let page1 = t.get("/v1/apps/shop/users/ann/history?limit=2", &key).await;
    assert_eq!(skus(&page1), vec![2, 3]);
    let cursor = page1.json["next_cursor"].as_str().unwrap().to_owned();
    let page2 = t.get(&format!("/v1/apps/shop/users/ann/history?limit=2&cursor={cursor}"), &key).await;
    assert_eq!(skus(&page2), vec![1]);
    assert!(page2.json["next_cursor"].is_null());

    let auth = format!("Bearer {key}");
    let reply = t.request(Method::DELETE, "/v1/apps/shop/users/ann/history/3", &[("authorization", &auth)], Body::empty()).await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    assert_eq!(skus(&t.get("/v1/apps/shop/users/ann/history", &key).await), vec![2, 1]);
    assert_eq!(t.get("/v1/apps/shop/users/ann/history/count", &key).await.json["count"], 2, "the count cache was invalidated");

    let reply = t.request(Method::DELETE, "/v1/apps/shop/users/ann/history", &[("authorization", &auth)], Body::empty()).await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    assert!(skus(&t.get("/v1/apps/shop/users/ann/history", &key).await).is_empty());
    assert_eq!(t.get("/v1/apps/shop/users/ann/history/count", &key).await.json["count"], 0);
    // A view after the clear shows again (history keeps whole seconds; this one is later).
    ingest_and_wait(&t, &key, vec![view("v5", "ann", 9, now_ms() + 2000)]).await;
    assert_eq!(skus(&t.get("/v1/apps/shop/users/ann/history", &key).await), vec![9]);
}

#[tokio::test]
async fn unknown_users_have_empty_history_and_devices_merge_on_identify() {
    let t = TestServer::start();
    let key = t.app_with_key("shop", &["write", "read"]).await;
    let nobody = t.get("/v1/apps/shop/users/nobody/history", &key).await;
    assert_eq!((nobody.status, nobody.json["items"].as_array().unwrap().len()), (StatusCode::OK, 0));
    assert_eq!(t.get("/v1/apps/shop/users/nobody/history/count", &key).await.json["count"], 0);

    let base = now_ms() - 60_000;
    let anonymous = |id: &str, sku: u64, time: i64| json!({"id": id, "device": "phone-1", "action": "view", "target": {"type": "sku", "id": sku.to_string()}, "time": time});
    ingest_and_wait(&t, &key, vec![anonymous("d1", 11, base), anonymous("d2", 12, base + 1000), view("u1", "bob", 13, base + 2000)]).await;
    assert_eq!(skus(&t.get("/v1/apps/shop/users/phone-1/history?kind=device", &key).await), vec![12, 11]);
    ingest_and_wait(&t, &key, vec![json!({"id": "idf", "user": "bob", "device": "phone-1", "action": "identify"})]).await;
    assert_eq!(skus(&t.get("/v1/apps/shop/users/bob/history", &key).await), vec![13, 12, 11], "the device's history merged into the user's");
}

#[tokio::test]
async fn bad_parameters_get_their_codes() {
    let t = TestServer::start();
    let key = t.app_with_key("shop", &["write", "read"]).await;
    let write_only = t.app_with_key("shop", &["write"]).await;
    for (uri, status, code) in [
        ("/v1/apps/shop/users/ann/history?limit=0", StatusCode::BAD_REQUEST, "invalid_limit"),
        ("/v1/apps/shop/users/ann/history?limit=201", StatusCode::BAD_REQUEST, "invalid_limit"),
        ("/v1/apps/shop/users/ann/history?limit=ten", StatusCode::BAD_REQUEST, ""),
        ("/v1/apps/shop/users/ann/history?cursor=not-a-cursor", StatusCode::BAD_REQUEST, "invalid_cursor"),
        ("/v1/apps/shop/users/ann/history?kind=robot", StatusCode::BAD_REQUEST, "invalid_kind"),
        ("/v1/apps/Bad!/users/ann/history", StatusCode::BAD_REQUEST, "invalid_app_id"),
    ] {
        let reply = t.get(uri, &key).await;
        assert_eq!(reply.status, status, "{uri}: {:?}", reply.json);
        if !code.is_empty() {
            assert_eq!(reply.code(), code, "{uri}");
        }
    }
    let reply = t.get(&format!("/v1/apps/shop/users/{}/history", "u".repeat(129)), &key).await;
    assert_eq!((reply.status, reply.code()), (StatusCode::BAD_REQUEST, "invalid_user"));
    let auth = format!("Bearer {key}");
    let reply = t.request(Method::DELETE, "/v1/apps/shop/users/ann/history/not-a-sku", &[("authorization", &auth)], Body::empty()).await;
    assert_eq!((reply.status, reply.code()), (StatusCode::BAD_REQUEST, "invalid_sku"));
    let reply = t.get("/v1/apps/shop/users/ann/history", &write_only).await;
    assert_eq!((reply.status, reply.code()), (StatusCode::FORBIDDEN, "insufficient_scope"));
    let reply = t.request(Method::DELETE, "/v1/apps/shop/users/ann/history", &[], Body::empty()).await;
    assert_eq!((reply.status, reply.code()), (StatusCode::UNAUTHORIZED, "unauthorized"));
}

#[tokio::test]
async fn rate_limits_answer_429_with_retry_after_per_user_and_per_caller() {
    let t = TestServer::start_with(|c| {
        c.rate_limits.user_per_sec = 3;
        c.rate_limits.caller_per_sec = 8;
    });
    let key = t.app_with_key("shop", &["read"]).await;
    for _ in 0..3 {
        assert_eq!(t.get("/v1/apps/shop/users/ann/history/count", &key).await.status, StatusCode::OK);
    }
    let limited = t.get("/v1/apps/shop/users/ann/history/count", &key).await;
    assert_eq!((limited.status, limited.code()), (StatusCode::TOO_MANY_REQUESTS, "rate_limited"));
    assert_eq!(limited.json["error"]["details"]["limit"], "user");
    assert_eq!(limited.headers.get("retry-after").and_then(|v| v.to_str().ok()), Some("1"));
    // Other users still have their own budget, until the caller's 8 run out (3 used by
    // ann; her refused request took nothing from the caller's bucket).
    let statuses: Vec<StatusCode> = futures_statuses(&t, &key).await;
    assert!(statuses[..5].iter().all(|s| *s == StatusCode::OK), "{statuses:?}");
    assert_eq!(statuses[5], StatusCode::TOO_MANY_REQUESTS, "{statuses:?}");
}

async fn futures_statuses(t: &TestServer, key: &str) -> Vec<StatusCode> {
    let mut out = Vec::new();
    for user in ["b", "c", "d", "e", "f", "g"] {
        out.push(t.get(&format!("/v1/apps/shop/users/{user}/history/count"), key).await.status);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebuild_runs_in_the_background_and_reports() {
    let t = TestServer::start();
    let key = t.app_with_key("shop", &["write", "read"]).await;
    let base = now_ms() - 60_000;
    ingest_and_wait(&t, &key, (0..30).map(|i| view(&format!("r{i}"), &format!("user-{}", i % 3), 100 + i as u64, base + i * 1000)).collect()).await;
    let reply = t.post("/v1/admin/history/rebuild", &key, Body::empty()).await;
    assert_eq!((reply.status, reply.code()), (StatusCode::FORBIDDEN, "forbidden"), "only the master key rebuilds");
    let reply = t.post("/v1/admin/history/rebuild", crate::harness::MASTER, Body::empty()).await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{:?}", reply.json);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let status = loop {
        let status = t.get("/v1/admin/history/rebuild", crate::harness::MASTER).await;
        if status.json["running"] == false {
            break status;
        }
        assert!(std::time::Instant::now() < deadline, "rebuild did not finish");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.json["error"].is_null(), "{:?}", status.json);
    assert_eq!(status.json["report"]["owners"], 3, "{:?}", status.json);
    assert_eq!(status.json["report"]["entries"], 30);
    // Reads are unchanged by the rebuild.
    assert_eq!(t.get("/v1/apps/shop/users/user-0/history/count", &key).await.json["count"], 10);
}
