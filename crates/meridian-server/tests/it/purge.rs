//! The history module's purge task, scheduled by the server, frees expired histories on
//! disk: the cold tier's key count falls.

use crate::harness::MASTER;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use meridian_server::{Config, Server};
use meridian_state::StateBackend;
use serde_json::{json, Value};
use std::path::Path;
use std::time::{Duration, Instant};
use tower::ServiceExt;

const DAY: i64 = 86_400_000;

fn config(data: &Path) -> Config {
    let mut config = Config::for_data_dir(data);
    config.server.master_key = Some(MASTER.into());
    config.history.cold_ttl_days = 1;
    config.history.hot_ttl_hours = 1;
    config.history.purge_interval_secs = 1;
    config
}

async fn call(server: &Server, method: Method, uri: &str, body: Value) -> (StatusCode, Value) {
    let request = Request::builder().method(method).uri(uri).header("authorization", format!("Bearer {MASTER}")).header("content-type", "application/json").body(Body::from(body.to_string())).unwrap();
    let response = server.router().oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

async fn purged_cold_owners(server: &Server) -> f64 {
    let response = server.router().oneshot(Request::builder().uri("/metrics").body(Body::empty()).unwrap()).await.unwrap();
    let text = String::from_utf8(response.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
    text.lines().find_map(|l| l.strip_prefix("meridian_history_purged_owners_total{tier=\"cold\"} ")).map_or(0.0, |v| v.trim().parse().unwrap())
}

/// Keys of the cold tier, read from the history module's store with no server running.
fn cold_keys(data: &Path) -> usize {
    let history = data.join("modules").join("history");
    let store = StateBackend::detect(&history).expect("the history module's store").open(&history).unwrap();
    store.range(meridian_history::cold::COLD_TABLE, std::ops::Bound::Unbounded, std::ops::Bound::Unbounded, usize::MAX).unwrap().len()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

#[test]
fn the_purge_task_frees_expired_histories_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // Views two days old for three users (past the 1-day cold TTL), fresh ones for a fourth.
    runtime().block_on(async {
        let server = Server::open(config(&data)).unwrap();
        assert_eq!(call(&server, Method::POST, "/v1/apps", json!({"id": "shop"})).await.0, StatusCode::CREATED);
        let now = meridian_event::Timestamp::now().millis();
        let mut events: Vec<Value> = (0..3).map(|u| json!({"id": format!("old{u}"), "user": format!("idle{u}"), "action": "view", "target": {"type": "sku", "id": "7"}, "time": now - 2 * DAY})).collect();
        events.push(json!({"id": "new", "user": "active", "action": "view", "target": {"type": "sku", "id": "7"}, "time": now}));
        let (status, report) = call(&server, Method::POST, "/v1/events?app=shop", json!(events)).await;
        assert_eq!((status, report["accepted"].as_u64()), (StatusCode::OK, Some(4)), "{report}");
        assert!(server.runtime().wait_caught_up(Duration::from_secs(20)));
        server.shutdown();
    });
    assert_eq!(cold_keys(&data), 4, "written to disk before the purge");

    let rt = runtime();
    rt.block_on(async {
        let server = Server::open(config(&data)).unwrap();
        let before = purged_cold_owners(&server).await;
        server.spawn_background_tasks();
        let deadline = Instant::now() + Duration::from_secs(20);
        while purged_cold_owners(&server).await < before + 3.0 {
            assert!(Instant::now() < deadline, "the purge task did not run within 20 s");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        server.shutdown();
    });
    // The background tasks hold the store until their runtime is gone.
    drop(rt);
    assert_eq!(cold_keys(&data), 1, "the expired owners' keys are gone; the active one stays");
}
