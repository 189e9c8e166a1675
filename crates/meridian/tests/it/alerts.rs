//! Alerts across SIGKILL: a rule fires on events sent to the real binary, the server is
//! killed (once before the window closes, once right after the firing notification
//! arrived) and restarted on the same data directory; the receiver gets exactly one firing
//! and one resolved notification (distinct webhook ids: deliveries are at-least-once with
//! a stable id, so a receiver de-duplicates by it; the alert itself is emitted once).

use crate::process::{app_key, free_port, ServerProcess, MASTER};
use meridian_log::embedded::{EmbeddedLog, EmbeddedLogConfig};
use meridian_log::{Log, TopicName};
use axum::http::{HeaderMap, StatusCode};
use bytes::Bytes;
use parking_lot::Mutex;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

type Received = Arc<Mutex<Vec<(String, Value)>>>;

async fn receiver() -> (String, Received) {
    let received: Received = Arc::default();
    let store = received.clone();
    let app = axum::Router::new().fallback(move |headers: HeaderMap, body: Bytes| {
        let store = store.clone();
        async move {
            let id = headers.get("webhook-id").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
            store.lock().push((id, serde_json::from_slice(&body).unwrap_or(Value::Null)));
            StatusCode::NO_CONTENT
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, received)
}

/// Distinct webhook ids per alert status.
fn by_status(received: &Received) -> BTreeMap<String, std::collections::BTreeSet<String>> {
    let mut out: BTreeMap<String, std::collections::BTreeSet<String>> = BTreeMap::new();
    for (id, body) in received.lock().iter() {
        out.entry(body["status"].as_str().unwrap_or("?").to_owned()).or_default().insert(id.clone());
    }
    out
}

async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

const FLAGS: [&str; 4] = ["--set", "notify.network.allow_loopback=true", "--set", "alerts.tick_interval_ms=100"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alert_notifies_exactly_once_across_sigkill_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let port = free_port();
    let mut server = ServerProcess::start(&data, port, &FLAGS).await;
    let base = server.base.clone();
    let client = reqwest::Client::new();
    let key = app_key(&base, "shop", &["write", "read"]).await;
    let (url, received) = receiver().await;
    let hook: Value = client.post(format!("{base}/v1/apps/shop/webhooks")).bearer_auth(MASTER).json(&json!({"url": url})).send().await.unwrap().json().await.unwrap();
    let hook_id = hook["id"].as_str().unwrap().to_owned();
    let rule = json!({
        "id": "crashes", "name": "Crashes", "severity": "critical", "channels": [hook_id],
        "metric": {"kind": "count"}, "filter": {"action": "crash"},
        "window": {"kind": "tumbling", "size_secs": 2},
        "condition": {"kind": "threshold", "op": ">", "value": 2},
    });
    let created = client.post(format!("{base}/v1/apps/shop/alerts/rules")).bearer_auth(MASTER).json(&rule).send().await.unwrap();
    assert_eq!(created.status(), 201, "{}", created.text().await.unwrap());

    // Crashes, acknowledged (durable), then SIGKILL before their window has closed.
    // (A little ahead: in a window that starts after the rule does.)
    let time = meridian_event::Timestamp::now().millis() + 5_000;
    let events: Vec<Value> = (0..5).map(|i| json!({"id": format!("c{i}"), "user": "ann", "action": "crash", "time": time})).collect();
    let reply: Value = client.post(format!("{base}/v1/events")).bearer_auth(&key).json(&events).send().await.unwrap().json().await.unwrap();
    assert_eq!(reply["rejected"], 0, "{reply}");
    server.kill9();

    let mut server = ServerProcess::start(&data, port, &FLAGS).await;
    wait_until("the firing notification", || by_status(&received).contains_key("firing")).await;
    // SIGKILL right after the firing arrived, then once more after a restart.
    server.kill9();
    let mut server = ServerProcess::start(&data, port, &FLAGS).await;
    wait_until("the resolved notification", || by_status(&received).contains_key("resolved")).await;
    // Time for anything sent twice to arrive.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let statuses = by_status(&received);
    assert_eq!(statuses["firing"].len(), 1, "exactly one firing notification: {:?}", received.lock());
    assert_eq!(statuses["resolved"].len(), 1, "exactly one resolved notification: {:?}", received.lock());
    let history: Value = client.get(format!("{base}/v1/apps/shop/alerts/history")).bearer_auth(MASTER).send().await.unwrap().json().await.unwrap();
    let states: Vec<&str> = history["transitions"].as_array().unwrap().iter().map(|t| t["state"].as_str().unwrap()).collect();
    assert_eq!(states, ["resolved", "fired"], "{history}");
    assert!(server.terminate());
    // What the processor emitted is in the log exactly once: the history stream and the
    // notification requests (one per transition and channel).
    let log = EmbeddedLog::open(data.join("log"), EmbeddedLogConfig::default()).unwrap();
    for (topic, n) in [("alerts", 2), ("notifications", 2)] {
        let topic = TopicName::new(topic).unwrap();
        let mut ids: Vec<String> = Vec::new();
        for partition in 0..log.partition_count(&topic).unwrap() {
            for record in log.read(&topic, partition, 0, usize::MAX, usize::MAX).unwrap() {
                let value: Value = serde_json::from_slice(&record.value).unwrap();
                ids.push(value["id"].as_str().unwrap().to_owned());
            }
        }
        ids.retain(|id| id.starts_with("alert:"));
        let mut distinct = ids.clone();
        distinct.sort();
        distinct.dedup();
        assert_eq!((ids.len(), distinct.len()), (n, n), "{topic}: {ids:?}");
    }
}
