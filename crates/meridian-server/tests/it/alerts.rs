//! Alert rules through the server: CRUD with versions (stale changes refused), every
//! validation error naming its field, pause and resume, a rule that fires and resolves on
//! events sent through `POST /v1/events` with Alertmanager-format notifications reaching a
//! real receiver on loopback, the history and evaluations, and the rule test.

use crate::harness::{now_ms, TestServer, MASTER};
use crate::webhooks::{receiver, Received};
use axum::http::{Method, StatusCode};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

fn rule(name: &str) -> Value {
    json!({
        "name": name,
        "severity": "critical",
        "metric": {"kind": "count"},
        "filter": {"action": "crash"},
        "window": {"kind": "tumbling", "size_secs": 60},
        "condition": {"kind": "threshold", "op": ">", "value": 2},
    })
}

fn with(mut base: Value, path: &[&str], value: Value) -> Value {
    let mut at = &mut base;
    for key in &path[..path.len() - 1] {
        at = &mut at[*key];
    }
    at[path[path.len() - 1]] = value;
    base
}

async fn send(t: &TestServer, method: Method, uri: &str, body: Value, if_match: Option<&str>) -> crate::harness::Reply {
    let auth = format!("Bearer {MASTER}");
    let mut headers = vec![("authorization", auth.as_str()), ("content-type", "application/json")];
    if let Some(version) = if_match {
        headers.push(("if-match", version));
    }
    let body = if body.is_null() { String::new() } else { body.to_string() };
    t.request(method, uri, &headers, body).await
}

#[tokio::test]
async fn rules_are_created_read_changed_with_their_version_paused_resumed_and_deleted() {
    let t = TestServer::start();
    let reader = t.app_with_key("shop", &["read"]).await;
    let created = t.post("/v1/apps/shop/alerts/rules", MASTER, with(rule("crashes"), &["id"], json!("crashes")).to_string()).await;
    assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.json);
    assert_eq!(created.json["version"], 1);
    assert_eq!(created.json["status"], "ok");
    assert_eq!(created.json["rule"]["app"], "shop");
    assert_eq!(created.headers["etag"], "\"1\"");
    // A rule without an id gets one.
    let other = t.post("/v1/apps/shop/alerts/rules", MASTER, rule("other").to_string()).await;
    assert_eq!(other.status, StatusCode::CREATED, "{:?}", other.json);
    assert!(other.json["rule"]["id"].as_str().unwrap().starts_with("rule-"));

    let list = t.get("/v1/apps/shop/alerts/rules", &reader).await;
    assert_eq!(list.json["rules"].as_array().unwrap().len(), 2, "{:?}", list.json);
    assert_eq!(t.get("/v1/apps/shop/alerts/rules/crashes", &reader).await.json["rule"]["name"], "crashes");
    assert_eq!(t.post("/v1/apps/shop/alerts/rules", &reader, rule("x").to_string()).await.status, StatusCode::FORBIDDEN, "changing needs admin");
    assert_eq!(t.get("/v1/apps/shop/alerts/rules/nope", &reader).await.code(), "unknown_rule");
    // Another app does not see it.
    t.app_with_key("blog", &["read"]).await;
    assert_eq!(t.get("/v1/apps/blog/alerts/rules/crashes", MASTER).await.code(), "unknown_rule");

    // A change names its version: If-Match or the body's.
    let changed = send(&t, Method::PUT, "/v1/apps/shop/alerts/rules/crashes", with(rule("crashes"), &["condition", "value"], json!(5)), Some("\"1\"")).await;
    assert_eq!(changed.status, StatusCode::OK, "{:?}", changed.json);
    assert_eq!(changed.json["version"], 2);
    assert_eq!(changed.json["rule"]["condition"]["value"], 5.0);
    let stale = send(&t, Method::PUT, "/v1/apps/shop/alerts/rules/crashes", with(rule("crashes"), &["version"], json!(1)), None).await;
    assert_eq!(stale.status, StatusCode::CONFLICT, "{:?}", stale.json);
    assert_eq!(stale.code(), "stale_version");
    assert_eq!(stale.json["error"]["details"]["current_version"], 2);
    let unversioned = send(&t, Method::PUT, "/v1/apps/shop/alerts/rules/crashes", rule("crashes"), None).await;
    assert_eq!(unversioned.code(), "version_required");
    assert_eq!(unversioned.json["error"]["details"]["field"], "version");

    let paused = send(&t, Method::POST, "/v1/apps/shop/alerts/rules/crashes/pause", json!({"version": 2}), None).await;
    assert_eq!(paused.status, StatusCode::OK, "{:?}", paused.json);
    assert_eq!(paused.json["status"], "paused");
    assert_eq!(paused.json["version"], 3);
    assert_eq!(send(&t, Method::POST, "/v1/apps/shop/alerts/rules/crashes/resume", json!({"version": 2}), None).await.code(), "stale_version");
    let resumed = send(&t, Method::POST, "/v1/apps/shop/alerts/rules/crashes/resume", Value::Null, Some("3")).await;
    assert_eq!(resumed.json["status"], "ok", "{:?}", resumed.json);
    assert_eq!(resumed.json["version"], 4);

    assert_eq!(send(&t, Method::DELETE, "/v1/apps/shop/alerts/rules/crashes", json!({"version": 3}), None).await.code(), "stale_version");
    let deleted = send(&t, Method::DELETE, "/v1/apps/shop/alerts/rules/crashes", json!({"version": 4}), None).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    assert_eq!(t.get("/v1/apps/shop/alerts/rules/crashes", &reader).await.code(), "unknown_rule");
    for action in ["alert_rule.create", "alert_rule.update", "alert_rule.pause", "alert_rule.resume", "alert_rule.delete"] {
        let audit = t.get(&format!("/v1/apps/shop/audit?action={action}"), MASTER).await;
        let entries = audit.json["entries"].as_array().unwrap();
        assert!(entries.iter().any(|e| e["target"] == "crashes"), "{action} is audited: {:?}", audit.json);
    }

    // Rules survive a restart.
    let t = t.restart_with(|_| {});
    let list = t.get("/v1/apps/shop/alerts/rules", MASTER).await;
    assert_eq!(list.json["rules"].as_array().unwrap().len(), 1, "{:?}", list.json);
    assert_eq!(list.json["rules"][0]["rule"]["name"], "other");
}

#[tokio::test]
async fn every_invalid_rule_is_refused_naming_its_field() {
    let t = TestServer::start();
    t.app_with_key("shop", &["read"]).await;
    let cases: Vec<(Value, &str)> = vec![
        (with(rule("r"), &["metric", "kind"], json!("median")), "metric.kind"),
        (with(rule("r"), &["metric"], json!({"kind": "percentile", "p": 150, "field": "props.latency_ms"})), "metric.p"),
        (with(rule("r"), &["metric"], json!({"kind": "percentile", "p": 95, "field": "colour"})), "metric.field"),
        (with(rule("r"), &["window"], json!({"kind": "sliding", "size_secs": 60, "slide_secs": 120})), "window.slide_secs"),
        (with(rule("r"), &["window"], json!({"kind": "hopping", "size_secs": 60})), "window.kind"),
        (with(rule("r"), &["condition", "kind"], json!("guess")), "condition.kind"),
        (with(rule("r"), &["name"], json!("")), "name"),
        (with(rule("r"), &["colour"], json!("red")), "colour"),
        (with(rule("r"), &["filter"], json!({"colour": "red"})), "filter"),
        (with(rule("r"), &["channels"], json!(["no-such-endpoint"])), "channels[0]"),
        (with(rule("r"), &["app"], json!("blog")), "app"),
        (with(rule("r"), &["id"], json!("test")), "id"),
    ];
    for (body, field) in cases {
        let reply = t.post("/v1/apps/shop/alerts/rules", MASTER, body.to_string()).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{field}: {:?}", reply.json);
        assert_eq!(reply.code(), "invalid_rule", "{field}: {:?}", reply.json);
        assert_eq!(reply.json["error"]["details"]["field"], field, "{:?}", reply.json);
    }
    assert_eq!(t.post("/v1/apps/shop/alerts/rules", MASTER, "{").await.code(), "invalid_json");
    assert!(t.get("/v1/apps/shop/alerts/rules", MASTER).await.json["rules"].as_array().unwrap().is_empty(), "nothing was stored");
}

async fn wait_for(received: &Received, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while received.lock().len() < n {
        assert!(Instant::now() < deadline, "{} of {n} notifications arrived", received.lock().len());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rule_fires_and_resolves_on_events_and_notifies_a_real_receiver_in_alertmanager_format() {
    let t = TestServer::start_with(|c| {
        c.notify.network.allow_loopback = true;
        c.alerts.tick_interval_ms = 100;
    });
    t.server.spawn_background_tasks();
    let key = t.app_with_key("shop", &["write", "read"]).await;
    let (url, received) = receiver().await;
    let hook = t.post("/v1/apps/shop/webhooks", MASTER, json!({"url": url}).to_string()).await;
    let hook_id = hook.json["id"].as_str().unwrap().to_owned();
    // A chat channel too: the same transitions as a `{"text": …}` message.
    let (chat_url, chat_received) = receiver().await;
    let chat = t.post("/v1/apps/shop/webhooks", MASTER, json!({"url": chat_url}).to_string()).await;
    let chat_id = chat.json["id"].as_str().unwrap().to_owned();
    let channels = json!([hook_id, {"endpoint": chat_id, "format": "chat"}]);
    let body = with(with(with(rule("Crashes"), &["id"], json!("crashes")), &["window", "size_secs"], json!(1)), &["channels"], channels.clone());
    let created = t.post("/v1/apps/shop/alerts/rules", MASTER, body.to_string()).await;
    assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.json);
    assert_eq!(created.json["rule"]["channels"], channels, "the chat channel keeps its format");
    // In force within a second, as the rule says.
    let deadline = Instant::now() + Duration::from_secs(1);
    while t.get("/v1/apps/shop/alerts/rules/crashes", &key).await.json["in_force"] != true {
        assert!(Instant::now() < deadline, "the rule is not in force after 1 s");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // Five crashes in one second: more than 2, it fires when the window closes; the next
    // (empty) window resolves it. (Their time is a little ahead, in a window that starts
    // after the rule does: a rule starts at the next full window.)
    let time = now_ms() + 2_500;
    let events: Vec<Value> = (0..5).map(|i| json!({"id": format!("c{i}"), "user": "ann", "action": "crash", "time": time})).collect();
    let reply = t.post("/v1/events", &key, json!(events).to_string()).await;
    assert_eq!(reply.json["rejected"], 0, "{:?}", reply.json);
    wait_for(&received, 2).await;
    let bodies: Vec<Value> = received.lock().iter().map(|(_, b)| serde_json::from_slice(b).unwrap()).collect();
    let firing = &bodies[0];
    assert_eq!(firing["status"], "firing", "{firing}");
    assert_eq!(firing["version"], "4");
    let alert = &firing["alerts"][0];
    assert_eq!(alert["labels"]["alertname"], "Crashes");
    assert_eq!(alert["labels"]["severity"], "critical");
    assert_eq!(alert["labels"]["app"], "shop");
    assert_eq!(alert["labels"]["rule"], "crashes");
    assert_eq!(alert["labels"]["rule_version"], "1");
    assert_eq!(alert["annotations"]["value"], "5");
    assert_eq!(alert["endsAt"], "0001-01-01T00:00:00Z");
    let resolved = &bodies[1];
    assert_eq!(resolved["status"], "resolved", "{resolved}");
    assert_eq!(resolved["alerts"][0]["startsAt"], alert["startsAt"], "the resolution names when it started");
    assert_ne!(resolved["alerts"][0]["endsAt"], "0001-01-01T00:00:00Z");
    let (headers, _) = received.lock()[0].clone();
    assert!(headers["webhook-signature"].to_str().unwrap().starts_with("v1,"), "signed like every webhook");
    wait_for(&chat_received, 2).await;
    let chats: Vec<Value> = chat_received.lock().iter().map(|(_, b)| serde_json::from_slice(b).unwrap()).collect();
    let text = chats[0]["text"].as_str().unwrap_or_else(|| panic!("a chat body is {{\"text\": …}}: {}", chats[0]));
    assert!(text.contains("*FIRING* [critical] Crashes") && text.contains("count 5 > 2") && text.contains("`crashes` version 1"), "{text}");
    assert!(chats[1]["text"].as_str().unwrap().contains("*RESOLVED* [critical] Crashes"), "{}", chats[1]);
    assert_eq!(chats[0].as_object().unwrap().len(), 1, "only the text: {}", chats[0]);

    let history = t.get("/v1/apps/shop/alerts/history", &key).await;
    let transitions = history.json["transitions"].as_array().unwrap();
    assert_eq!(transitions.len(), 2, "{:?}", history.json);
    assert_eq!(transitions[0]["state"], "resolved", "newest first");
    assert_eq!(transitions[1]["state"], "fired");
    assert_eq!(transitions[1]["value"], 5.0);
    assert_eq!(transitions[1]["rule_version"], 1);
    assert_eq!(t.get("/v1/apps/shop/alerts/history?rule=other", &key).await.json["transitions"].as_array().unwrap().len(), 0);
    let evaluations = t.get("/v1/apps/shop/alerts/rules/crashes/evaluations", &key).await;
    let evaluations = evaluations.json["evaluations"].as_array().unwrap().clone();
    assert!(evaluations.iter().any(|e| e["outcome"] == "breach" && e["value"] == 5.0), "{evaluations:?}");
    assert!(evaluations.windows(2).all(|w| w[0]["window_end_ms"].as_i64() < w[1]["window_end_ms"].as_i64()), "oldest first");
    // The alert history as a stream, exactly once.
    let log = t.server.log();
    let topic = meridian_log::TopicName::new("alerts").unwrap();
    let mut records = 0;
    for p in 0..log.partition_count(&topic).unwrap() {
        records += log.read(&topic, p, 0, usize::MAX, usize::MAX).unwrap().len();
    }
    assert_eq!(records, 2);
    // No second firing was sent meanwhile.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(received.lock().len(), 2);

    // The console's Alerts page shows the rule and its history to a viewer.
    let shop = meridian_event::AppId::new("shop").unwrap();
    let viewer = meridian_tenancy::OperatorId::new("viewer").unwrap();
    let grant = meridian_tenancy::Grant::on_app(shop, meridian_tenancy::Role::Viewer);
    t.server.tenancy().create_operator(&meridian_tenancy::Actor::System, &viewer, "viewer name", "correct horse battery", &[grant]).unwrap();
    let session = t.login("viewer", "correct horse battery").await;
    let page = t.page(Some(&session), "/console/apps/shop/alerts", &[]).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains("id=\"alert-rules\"") && page.body.contains("<code>crashes</code>"), "{}", page.body);
    assert!(page.body.contains("id=\"alert-history\"") && page.body.contains("count 5 &gt; 2"), "{}", page.body);
    // The rule's page: the preview chart with the breach above the dashed threshold, and
    // the delivery log of both channels; a viewer gets no save button.
    let rule_page = t.page(Some(&session), "/console/apps/shop/alerts/rules/crashes", &[]).await;
    assert_eq!(rule_page.status, StatusCode::OK, "{}", rule_page.body);
    let body = &rule_page.body;
    assert!(body.contains("id=\"rule-preview\"") && body.contains("class=\"line threshold-line\"") && body.contains("<circle class=\"breach\""), "{body}");
    assert!(body.contains("id=\"rule-deliveries\"") && body.matches("data-state=\"delivered\"").count() == 4, "2 transitions × 2 channels delivered: {body}");
    assert!(body.contains("id=\"rule-json\"") && body.contains("readonly") && !body.contains("id=\"rule-save\""), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rule_test_evaluates_the_last_hours_of_events_and_notifies_nobody() {
    let t = TestServer::start_with(|c| c.notify.network.allow_loopback = true);
    let key = t.app_with_key("shop", &["write", "read"]).await;
    let now = now_ms();
    let minute = 60_000;
    let base = (now / minute - 30) * minute;
    // Half an hour ago: 4 crashes in one minute, 1 in the next.
    let mut events: Vec<Value> = (0..4).map(|i| json!({"id": format!("c{i}"), "user": "ann", "action": "crash", "time": base + 1_000 + i})).collect();
    events.push(json!({"id": "c9", "user": "bob", "action": "crash", "time": base + minute + 1_000}));
    events.push(json!({"id": "v1", "user": "bob", "action": "view", "time": base + 2 * minute}));
    let reply = t.post("/v1/events", &key, json!(events).to_string()).await;
    assert_eq!(reply.json["rejected"], 0, "{:?}", reply.json);
    let test = t.post("/v1/apps/shop/alerts/rules/test", &key, json!({"rule": rule("crashes"), "hours": 1}).to_string()).await;
    assert_eq!(test.status, StatusCode::OK, "{:?}", test.json);
    assert_eq!(test.json["events_read"], 6, "{:?}", test.json);
    let transitions = test.json["transitions"].as_array().unwrap();
    assert_eq!(transitions[0]["state"], "fired", "{:?}", test.json);
    assert_eq!(transitions[0]["window_start_ms"], base);
    assert_eq!(transitions[0]["value"], 4.0);
    assert_eq!(transitions[1]["state"], "resolved");
    let evaluations = test.json["evaluations"].as_array().unwrap();
    assert!(evaluations.len() >= 30, "a window per minute of the hour: {}", evaluations.len());
    let invalid = t.post("/v1/apps/shop/alerts/rules/test", &key, json!({"rule": with(rule("x"), &["metric", "p"], json!(1))}).to_string()).await;
    assert_eq!(invalid.code(), "invalid_rule");
    assert!(invalid.json["error"]["details"]["field"].as_str().unwrap().starts_with("metric"), "{:?}", invalid.json);
    let hours = t.post("/v1/apps/shop/alerts/rules/test", &key, json!({"rule": rule("x"), "hours": 0}).to_string()).await;
    assert_eq!(hours.json["error"]["details"]["field"], "hours");
    // Nothing was saved, nothing notified.
    assert!(t.get("/v1/apps/shop/alerts/rules", &key).await.json["rules"].as_array().unwrap().is_empty());
    assert!(t.get("/v1/apps/shop/alerts/history", &key).await.json["transitions"].as_array().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pausing_a_firing_rule_resolves_it_within_a_second_and_notifies_the_resolution() {
    let t = TestServer::start_with(|c| c.notify.network.allow_loopback = true);
    t.server.spawn_background_tasks();
    let key = t.app_with_key("shop", &["write", "read"]).await;
    let (url, received) = receiver().await;
    let hook = t.post("/v1/apps/shop/webhooks", MASTER, json!({"url": url}).to_string()).await;
    let hook_id = hook.json["id"].as_str().unwrap().to_owned();
    // Empty windows are not judged (min_samples 1): once firing, it stays firing.
    let body = with(with(with(with(rule("Crashes"), &["id"], json!("crashes")), &["window", "size_secs"], json!(1)), &["channels"], json!([hook_id])), &["min_samples"], json!(1));
    assert_eq!(t.post("/v1/apps/shop/alerts/rules", MASTER, body.to_string()).await.status, StatusCode::CREATED);
    let time = now_ms() + 2_500;
    let events: Vec<Value> = (0..5).map(|i| json!({"id": format!("c{i}"), "user": "ann", "action": "crash", "time": time})).collect();
    assert_eq!(t.post("/v1/events", &key, json!(events).to_string()).await.json["rejected"], 0);
    wait_for(&received, 1).await;
    assert_eq!(t.get("/v1/apps/shop/alerts/rules/crashes", &key).await.json["status"], "firing");

    let paused_at = Instant::now();
    let paused = send(&t, Method::POST, "/v1/apps/shop/alerts/rules/crashes/pause", Value::Null, Some("1")).await;
    assert_eq!(paused.status, StatusCode::OK, "{:?}", paused.json);
    let effect = loop {
        let history = t.get("/v1/apps/shop/alerts/history?rule=crashes", &key).await;
        if history.json["transitions"][0]["state"] == "resolved" {
            assert_eq!(history.json["transitions"][0]["reason"], "paused");
            assert_eq!(history.json["transitions"][0]["rule_version"], 2, "the version that produced it");
            break paused_at.elapsed();
        }
        assert!(paused_at.elapsed() < Duration::from_secs(10), "{:?}", history.json);
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    eprintln!("a rule change took effect (and committed) {} ms after the API answered", effect.as_millis());
    assert!(effect < Duration::from_secs(1), "in force within a second: {effect:?}");
    wait_for(&received, 2).await;
    let resolved: Value = serde_json::from_slice(&received.lock()[1].1).unwrap();
    assert_eq!(resolved["status"], "resolved");
    assert_eq!(resolved["alerts"][0]["annotations"]["description"], "paused");
}

#[tokio::test]
async fn an_app_has_at_most_max_rules_per_app_rules_and_an_unknown_app_none() {
    let t = TestServer::start_with(|c| c.alerts.max_rules_per_app = 1);
    t.app_with_key("shop", &["read"]).await;
    assert_eq!(t.post("/v1/apps/shop/alerts/rules", MASTER, rule("one").to_string()).await.status, StatusCode::CREATED);
    let second = t.post("/v1/apps/shop/alerts/rules", MASTER, rule("two").to_string()).await;
    assert_eq!((second.status, second.code()), (StatusCode::CONFLICT, "too_many_rules"), "{:?}", second.json);
    assert_eq!(t.post("/v1/apps/nope/alerts/rules", MASTER, rule("one").to_string()).await.code(), "unknown_app");
}

/// A receiver that answers 500 to its first `failures` requests, then 204.
async fn flaky_receiver(failures: usize) -> (String, Received) {
    let received: Received = Default::default();
    let store = received.clone();
    let app = axum::Router::new().fallback(move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
        let store = store.clone();
        async move {
            let mut all = store.lock();
            all.push((headers, body));
            if all.len() <= failures {
                StatusCode::INTERNAL_SERVER_ERROR
            } else {
                StatusCode::NO_CONTENT
            }
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, received)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_receiver_is_retried_and_the_history_shows_each_channels_delivery() {
    let t = TestServer::start_with(|c| {
        c.notify.network.allow_loopback = true;
        c.notify.backoff_base_ms = 50;
        c.notify.backoff_factor = 1.0;
        c.notify.backoff_cap_ms = 50;
        c.notify.max_attempts = 4;
        c.alerts.tick_interval_ms = 100;
    });
    t.server.spawn_background_tasks();
    let key = t.app_with_key("shop", &["write", "read"]).await;
    // One receiver fails twice then accepts; the other is a closed port and never answers.
    let (flaky_url, flaky) = flaky_receiver(2).await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_url = format!("http://{}/hook", closed.local_addr().unwrap());
    drop(closed);
    let flaky_id = t.post("/v1/apps/shop/webhooks", MASTER, json!({"url": flaky_url}).to_string()).await.json["id"].as_str().unwrap().to_owned();
    let closed_id = t.post("/v1/apps/shop/webhooks", MASTER, json!({"url": closed_url}).to_string()).await.json["id"].as_str().unwrap().to_owned();
    let body = with(with(with(with(rule("Crashes"), &["id"], json!("crashes")), &["window", "size_secs"], json!(1)), &["channels"], json!([flaky_id, closed_id])), &["min_samples"], json!(1));
    assert_eq!(t.post("/v1/apps/shop/alerts/rules", MASTER, body.to_string()).await.status, StatusCode::CREATED);
    let time = now_ms() + 2_500;
    let events: Vec<Value> = (0..5).map(|i| json!({"id": format!("c{i}"), "user": "ann", "action": "crash", "time": time})).collect();
    assert_eq!(t.post("/v1/events", &key, json!(events).to_string()).await.json["rejected"], 0);

    // The firing reaches the flaky receiver at its third attempt; the closed port's
    // delivery is given up after 4 failed attempts. The history says both.
    let deadline = Instant::now() + Duration::from_secs(30);
    let fired = loop {
        let history = t.get("/v1/apps/shop/alerts/history?rule=crashes", &key).await;
        let fired = history.json["transitions"].as_array().unwrap().iter().find(|t| t["state"] == "fired").cloned();
        if let Some(fired) = fired {
            let states: Vec<&str> = fired["deliveries"].as_array().unwrap().iter().map(|d| d["state"].as_str().unwrap()).collect();
            if states == ["delivered", "dead"] {
                break fired;
            }
            assert!(states.iter().all(|s| ["queued", "pending", "delivered", "dead"].contains(s)), "{fired}");
        }
        assert!(Instant::now() < deadline, "{:?}", history.json);
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let (delivered, dead) = (&fired["deliveries"][0], &fired["deliveries"][1]);
    assert_eq!(delivered["endpoint"], flaky_id.as_str());
    assert_eq!(delivered["attempts"], 3, "{delivered}");
    assert!(delivered["delivered_ms"].as_i64().is_some() && delivered["delivery_id"].as_str().unwrap().starts_with("msg_"), "{delivered}");
    assert_eq!(dead["endpoint"], closed_id.as_str());
    assert_eq!(dead["attempts"], 4, "{dead}");
    assert_eq!(dead["last_result"], "connection_error", "{dead}");
    assert!(!dead["last_error"].as_str().unwrap_or_default().is_empty(), "the error in words: {dead}");
    let bodies: Vec<Value> = flaky.lock().iter().map(|(_, b)| serde_json::from_slice(b).unwrap()).collect();
    assert!(bodies.len() >= 3 && bodies[..3].iter().all(|b| b == &bodies[0]), "each retry sends the same body");
    assert_eq!(bodies[0]["status"], "firing");
}
