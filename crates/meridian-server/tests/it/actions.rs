//! The user action system end to end through the collector, the log, the actions
//! processors and the query service: profile values, aggregation windows, segment
//! membership, counts and exports, trigger records, back-fills, an erasure reaching an
//! isolated group's topic, and every bad input answered with its code and changing nothing.

use crate::harness::{now_ms, Reply, TestServer, MASTER};
use axum::body::Body;
use axum::http::{Method, StatusCode};
use http_body_util::BodyExt;
use meridian_log::TopicName;
use meridian_server::Config;
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use tower::ServiceExt;

const DAY: i64 = 86_400_000;

const ACTIONS: &str = r#"
retention_days = 60
mask_key = "test-mask-key"
max_batch_users = 3

[[aggregations]]
name = "views"
kind = "count"
filter = { action = "view" }

[[aggregations]]
name = "skus_viewed"
kind = "distinct"
filter = { action = "view", "target.type" = "sku" }

[[aggregations]]
name = "order_amount"
kind = "sum"
prop = "props.amount"
filter = 'action == "order"'

[[segments]]
name = "browsers"
when = "views_7d >= 3"

[[triggers]]
name = "big_spender"
when = "order_amount_30d >= 100"
webhook = false
"#;

fn configure(c: &mut Config) {
    c.actions = toml::from_str(ACTIONS).unwrap();
}

fn view(id: &str, user: &str, sku: u64, time: i64) -> Value {
    json!({"id": id, "user": user, "action": "view", "target": {"type": "sku", "id": sku.to_string()}, "time": time})
}

fn order(id: &str, user: &str, amount: f64, time: i64) -> Value {
    json!({"id": id, "user": user, "action": "order", "props": {"amount": amount}, "time": time})
}

async fn ingest_and_wait(t: &TestServer, key: &str, events: Vec<Value>) {
    let reply = t.post("/v1/events", key, json!(events).to_string()).await;
    assert_eq!(reply.json["rejected"], 0, "{:?}", reply.json);
    assert!(t.server.runtime().wait_caught_up(Duration::from_secs(10)));
}

/// A server with the test's `[actions]`, app `shop`, a read/write key and an admin key,
/// and events of ann (three views today, one ten days ago; orders of 60 today and 50
/// three days ago) and bob (one view).
async fn world() -> (TestServer, String, String) {
    let t = TestServer::start_with(configure);
    let key = t.app_with_key("shop", &["write", "read"]).await;
    let admin = t.app_with_key("shop", &["read", "admin"]).await;
    let now = now_ms() - 1000;
    ingest_and_wait(
        &t,
        &key,
        vec![
            view("a1", "ann", 1, now),
            view("a2", "ann", 2, now),
            view("a3", "ann", 2, now),
            view("a4", "ann", 3, now - 10 * DAY),
            order("o1", "ann", 60.0, now),
            order("o2", "ann", 50.0, now - 3 * DAY),
            view("b1", "bob", 1, now),
        ],
    )
    .await;
    (t, key, admin)
}

/// A GET whose body is returned as text, with its content type.
async fn get_text(t: &TestServer, uri: &str, key: &str) -> (StatusCode, String, String) {
    let request = axum::http::Request::builder().method(Method::GET).uri(uri).header("authorization", format!("Bearer {key}")).body(Body::empty()).unwrap();
    let response = t.router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let content_type = response.headers().get("content-type").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, content_type, String::from_utf8(bytes.to_vec()).unwrap())
}

/// Records of a topic (JSON bodies).
fn records(t: &TestServer, topic: &str) -> Vec<Value> {
    let log = t.server.log();
    let topic = TopicName::new(topic).unwrap();
    let mut out = Vec::new();
    for p in 0..log.partition_count(&topic).unwrap() {
        for record in log.read(&topic, p, 0, usize::MAX, usize::MAX).unwrap() {
            out.push(serde_json::from_slice(&record.value).unwrap_or(Value::Null));
        }
    }
    out
}

/// Everything a bad request could have changed: ann's profile, the definitions (segment
/// counts, back-fills), the ends of the topics, the audit log.
async fn snapshot(t: &TestServer, key: &str) -> Value {
    let log = t.server.log();
    let mut ends = serde_json::Map::new();
    for topic in ["events", "segment-changes", "triggers", "notifications"] {
        let name = TopicName::new(topic).unwrap();
        let end: u64 = (0..log.partition_count(&name).unwrap()).map(|p| log.offsets(&name, p).unwrap().end).sum();
        ends.insert(topic.to_owned(), end.into());
    }
    json!({
        "profile": t.get("/v1/apps/shop/users/ann/profile", key).await.json,
        "definitions": t.get("/v1/apps/shop/actions/definitions", key).await.json,
        "ends": ends,
        "audit": t.get("/v1/audit", MASTER).await.json["entries"].as_array().map(Vec::len),
    })
}

fn value(reply: &Reply) -> &Value {
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.json);
    &reply.json["value"]
}

#[tokio::test]
async fn events_become_profiles_windows_segments_exports_and_triggers() {
    let (t, key, admin) = world().await;
    let agg = |name: &str, window: Option<&str>| match window {
        Some(w) => format!("/v1/apps/shop/users/ann/actions/{name}?window={w}"),
        None => format!("/v1/apps/shop/users/ann/actions/{name}"),
    };
    let reply = t.get(&agg("views", None), &key).await;
    assert_eq!((value(&reply).clone(), reply.json["window"].clone(), reply.json["kind"].clone()), (json!(3), json!("7d"), json!("count")), "the default window is 7d");
    assert_eq!(value(&t.get(&agg("views", Some("today")), &key).await), &json!(3));
    assert_eq!(value(&t.get(&agg("views", Some("30d")), &key).await), &json!(4));
    assert_eq!(value(&t.get(&agg("skus_viewed", Some("today")), &key).await), &json!(2));
    assert_eq!(value(&t.get(&agg("skus_viewed", Some("30d")), &key).await), &json!(3));
    assert_eq!(value(&t.get(&agg("order_amount", Some("today")), &key).await), &json!(60.0));
    assert_eq!(value(&t.get(&agg("order_amount", Some("7d")), &key).await), &json!(110.0));

    let profile = t.get("/v1/apps/shop/users/ann/profile", &key).await;
    assert_eq!(profile.status, StatusCode::OK, "{:?}", profile.json);
    let p = &profile.json;
    assert_eq!(p["known"], true);
    assert_eq!(p["values"]["views"], json!({"today": 3, "7d": 3, "30d": 4, "all": 4}));
    assert_eq!(p["values"]["order_amount"]["30d"], json!(110.0));
    assert_eq!(p["segments"], json!(["browsers"]));
    assert_eq!(p["events"]["all"], json!(6));
    assert!(p["first_seen_ms"].as_i64().unwrap() < now_ms() - 9 * DAY, "{p}");
    assert!(!p["stage"].as_str().unwrap().is_empty(), "{p}");
    assert_eq!(p["timeline"].as_array().unwrap().len(), 6);
    assert_eq!((p["timeline"][1]["action"].as_str(), p["timeline"][1]["target"]["type"].as_str()), (Some("view"), Some("sku")), "{p}");

    let nobody = t.get("/v1/apps/shop/users/nobody/profile", &key).await;
    assert_eq!((nobody.status, nobody.json["known"].clone(), nobody.json["values"]["views"]["all"].clone()), (StatusCode::OK, json!(false), json!(0)));
    let batch = t.post("/v1/apps/shop/profiles", &key, json!({"users": ["bob", "ann", "nobody"]}).to_string()).await;
    assert_eq!(batch.status, StatusCode::OK, "{:?}", batch.json);
    let users: Vec<&str> = batch.json["profiles"].as_array().unwrap().iter().map(|p| p["user"].as_str().unwrap()).collect();
    assert_eq!(users, vec!["bob", "ann", "nobody"], "in the order asked");
    assert_eq!(batch.json["profiles"][0]["values"]["views"]["today"], 1);

    assert_eq!(t.get("/v1/apps/shop/segments/browsers/members/ann", &key).await.json, json!({"member": true}));
    assert_eq!(t.get("/v1/apps/shop/segments/browsers/members/bob", &key).await.json, json!({"member": false}));
    assert_eq!(t.get("/v1/apps/shop/segments/browsers", &key).await.json, json!({"segment": "browsers", "members": 1}));

    // Exports: masked for a reader, ids for an admin of the app.
    let (status, content_type, body) = get_text(&t, "/v1/apps/shop/segments/browsers/export", &key).await;
    assert_eq!((status, content_type.as_str()), (StatusCode::OK, "application/x-ndjson"), "{body}");
    let line: Value = serde_json::from_str(body.trim()).unwrap();
    assert_eq!(line["segment"], "browsers");
    assert_eq!(line["user_hash"].as_str().unwrap().len(), 32, "{line}");
    assert!(!body.contains("ann"), "{body}");
    let (status, content_type, body) = get_text(&t, "/v1/apps/shop/segments/browsers/export?format=csv", &admin).await;
    assert_eq!((status, content_type.as_str(), body.as_str()), (StatusCode::OK, "text/csv; charset=utf-8", "user\nann\n"));
    let (_, _, body) = get_text(&t, "/v1/apps/shop/segments/browsers/export?format=csv", &key).await;
    assert_eq!(body.lines().next(), Some("user_hash"));

    let definitions = t.get("/v1/apps/shop/actions/definitions", &key).await;
    let defs = definitions.json["definitions"].as_array().unwrap();
    assert!(defs.iter().any(|d| d["kind"] == "aggregation" && d["name"] == "skus_viewed"), "{defs:?}");
    assert!(defs.iter().any(|d| d["kind"] == "segment" && d["name"] == "browsers" && d["members"] == 1), "{defs:?}");
    assert!(defs.iter().any(|d| d["kind"] == "trigger" && d["name"] == "big_spender"), "{defs:?}");

    // The trigger fired once, for ann (the outbox appends after the commit).
    let deadline = Instant::now() + Duration::from_secs(10);
    let fired = loop {
        let fired = records(&t, "triggers");
        if !fired.is_empty() || Instant::now() > deadline {
            break fired;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(fired.len(), 1, "{fired:?}");
    assert_eq!((fired[0]["trigger"].as_str(), fired[0]["user"].as_str(), fired[0]["app"].as_str()), (Some("big_spender"), Some("ann"), Some("shop")));
    assert!(records(&t, "segment-changes").iter().any(|r| r["segment"] == "browsers" && r["user"] == "ann" && r["change"] == "enter"));
}

#[tokio::test]
async fn bad_inputs_get_their_codes_and_change_nothing() {
    let (t, key, _) = world().await;
    let write_only = t.app_with_key("shop", &["write"]).await;
    let other_app = t.app_with_key("blog", &["read"]).await;
    let before = snapshot(&t, &key).await;
    let long_user = "u".repeat(129);
    let cases: Vec<(Method, String, &str, Value, StatusCode, &str, &str)> = vec![
        (Method::GET, "/v1/apps/shop/users/ann/actions/nope".into(), key.as_str(), Value::Null, StatusCode::NOT_FOUND, "unknown_aggregation", "nope"),
        (Method::GET, "/v1/apps/shop/segments/nope".into(), key.as_str(), Value::Null, StatusCode::NOT_FOUND, "unknown_segment", "nope"),
        (Method::GET, "/v1/apps/shop/segments/nope/members/ann".into(), key.as_str(), Value::Null, StatusCode::NOT_FOUND, "unknown_segment", "nope"),
        (Method::GET, "/v1/apps/shop/segments/nope/export".into(), key.as_str(), Value::Null, StatusCode::NOT_FOUND, "unknown_segment", "nope"),
        (Method::GET, "/v1/apps/shop/users/ann/actions/views?window=90d".into(), key.as_str(), Value::Null, StatusCode::BAD_REQUEST, "window_beyond_retention", "60 days"),
        (Method::GET, "/v1/apps/shop/users/ann/actions/views?window=fortnight".into(), key.as_str(), Value::Null, StatusCode::BAD_REQUEST, "invalid_window", "fortnight"),
        (Method::GET, format!("/v1/apps/shop/users/{long_user}/actions/views"), key.as_str(), Value::Null, StatusCode::BAD_REQUEST, "invalid_user", "user id"),
        (Method::GET, format!("/v1/apps/shop/users/{long_user}/profile"), key.as_str(), Value::Null, StatusCode::BAD_REQUEST, "invalid_user", "user id"),
        (Method::GET, "/v1/apps/shop/segments/browsers/members/a%01b".into(), key.as_str(), Value::Null, StatusCode::BAD_REQUEST, "invalid_user", "user id"),
        (Method::POST, "/v1/apps/shop/profiles".into(), key.as_str(), json!({"users": ["a", "b", "c", "d"]}), StatusCode::PAYLOAD_TOO_LARGE, "too_many_users", "at most 3"),
        (Method::POST, "/v1/apps/shop/profiles".into(), key.as_str(), json!({"users": ["a", "\u{7}"]}), StatusCode::BAD_REQUEST, "invalid_user", "user id"),
        (Method::POST, "/v1/apps/shop/profiles".into(), key.as_str(), json!({"people": ["a"]}), StatusCode::BAD_REQUEST, "invalid_json", ""),
        (Method::GET, "/v1/apps/shop/segments/browsers/export?format=xml".into(), key.as_str(), Value::Null, StatusCode::BAD_REQUEST, "invalid_format", "xml"),
        (Method::GET, "/v1/apps/shop/users/ann/profile".into(), "", Value::Null, StatusCode::UNAUTHORIZED, "unauthorized", ""),
        (Method::GET, "/v1/apps/shop/users/ann/profile".into(), "not-a-key", Value::Null, StatusCode::UNAUTHORIZED, "invalid_key", ""),
        (Method::GET, "/v1/apps/shop/users/ann/profile".into(), write_only.as_str(), Value::Null, StatusCode::FORBIDDEN, "insufficient_scope", ""),
        (Method::GET, "/v1/apps/shop/users/ann/actions/views".into(), other_app.as_str(), Value::Null, StatusCode::FORBIDDEN, "insufficient_scope", "blog"),
        (Method::POST, "/v1/apps/shop/profiles".into(), write_only.as_str(), json!({"users": ["ann"]}), StatusCode::FORBIDDEN, "insufficient_scope", ""),
        (Method::GET, "/v1/apps/shop/segments/browsers/export".into(), other_app.as_str(), Value::Null, StatusCode::FORBIDDEN, "insufficient_scope", ""),
        (Method::POST, "/v1/actions/aggregations/views/backfill".into(), key.as_str(), Value::Null, StatusCode::FORBIDDEN, "forbidden", ""),
        (Method::GET, "/v1/actions/aggregations/views/backfill".into(), key.as_str(), Value::Null, StatusCode::FORBIDDEN, "forbidden", ""),
        (Method::POST, "/v1/actions/aggregations/nope/backfill".into(), MASTER, Value::Null, StatusCode::NOT_FOUND, "unknown_aggregation", "nope"),
        (Method::GET, "/v1/actions/aggregations/nope/backfill".into(), MASTER, Value::Null, StatusCode::NOT_FOUND, "unknown_aggregation", "nope"),
        (Method::GET, "/v1/actions/aggregations/views/backfill".into(), MASTER, Value::Null, StatusCode::NOT_FOUND, "no_backfill", "views"),
        (Method::POST, "/v1/actions/aggregations/views/recompute".into(), key.as_str(), Value::Null, StatusCode::FORBIDDEN, "forbidden", ""),
        (Method::POST, "/v1/actions/aggregations/nope/recompute".into(), MASTER, Value::Null, StatusCode::NOT_FOUND, "unknown_aggregation", "nope"),
        (Method::GET, "/v1/actions/aggregations/views/recompute".into(), MASTER, Value::Null, StatusCode::NOT_FOUND, "no_recompute", "views"),
    ];
    for (method, uri, key, body, status, code, says) in cases {
        let auth = format!("Bearer {key}");
        let mut headers = vec![("content-type", "application/json")];
        if !key.is_empty() {
            headers.push(("authorization", &auth));
        }
        let body = if body.is_null() { String::new() } else { body.to_string() };
        let reply = t.request(method.clone(), &uri, &headers, body).await;
        assert_eq!((reply.status, reply.code()), (status, code), "{method} {uri}: {:?}", reply.json);
        let message = reply.json["error"]["message"].as_str().unwrap_or("");
        assert!(message.contains(says), "{method} {uri}: {message:?} does not say {says:?}");
    }
    assert_eq!(snapshot(&t, &key).await, before, "nothing changed");
}

#[tokio::test]
async fn an_aggregation_added_later_is_back_filled_from_the_log() {
    let (t, key, _) = world().await;
    // Restart with one more aggregation: it goes live at the current positions, so ann's
    // earlier orders are counted only by a back-fill.
    let t = t.restart_with(|c| {
        let mut toml = ACTIONS.to_owned();
        toml.push_str("\n[[aggregations]]\nname = \"orders\"\nkind = \"count\"\nfilter = { action = \"order\" }\n");
        c.actions = toml::from_str(&toml).unwrap();
    });
    ingest_and_wait(&t, &key, vec![order("o3", "ann", 5.0, now_ms() - 1000)]).await;
    let orders = "/v1/apps/shop/users/ann/actions/orders?window=30d";
    assert_eq!(value(&t.get(orders, &key).await), &json!(1), "only the order since it went live");
    let started = t.post("/v1/actions/aggregations/orders/backfill", MASTER, Body::empty()).await;
    assert_eq!(started.status, StatusCode::ACCEPTED, "{:?}", started.json);
    assert_eq!((started.json["aggregation"].as_str(), started.json["refire"].as_bool()), (Some("orders"), Some(false)));
    assert!(started.json["total"].as_u64().unwrap() >= 7, "{:?}", started.json);
    let deadline = Instant::now() + Duration::from_secs(20);
    let job = loop {
        let job = t.get("/v1/actions/aggregations/orders/backfill", MASTER).await;
        assert_eq!(job.status, StatusCode::OK, "{:?}", job.json);
        if job.json["done"] == true {
            break job.json;
        }
        assert!(Instant::now() < deadline, "the back-fill did not finish: {:?}", job.json);
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(job["read"], job["total"], "{job}");
    assert_eq!(value(&t.get(orders, &key).await), &json!(3), "the two earlier orders were back-filled");
    let again = t.post("/v1/actions/aggregations/orders/backfill", MASTER, Body::empty()).await;
    assert_eq!((again.status, again.code()), (StatusCode::CONFLICT, "backfill_conflict"));
    let audit = t.get("/v1/audit?action=actions.backfill", MASTER).await;
    assert_eq!(audit.json["entries"].as_array().unwrap().len(), 1, "{:?}", audit.json);
    assert_eq!(audit.json["entries"][0]["target"], "orders", "{:?}", audit.json);
}

#[tokio::test]
async fn a_trigger_fired_by_an_event_from_days_ago_reaches_the_webhook_endpoints() {
    let t = TestServer::start_with(|c| {
        configure(c);
        c.notify.network.allow_loopback = true;
        let mut actions = ACTIONS.to_owned();
        actions.push_str("\n[[triggers]]\nname = \"first_order\"\nwhen = \"order_amount_all > 0\"\n");
        c.actions = toml::from_str(&actions).unwrap();
    });
    let key = t.app_with_key("shop", &["write", "read"]).await;
    let admin = t.app_with_key("shop", &["read", "admin"]).await;
    let created = t.post("/v1/apps/shop/webhooks", &admin, json!({"url": "http://127.0.0.1:9/hook", "event_types": ["trigger.fired"]}).to_string()).await;
    assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.json);
    // A client sends, now, an order it made three days ago.
    ingest_and_wait(&t, &key, vec![order("late-order", "cid", 20.0, now_ms() - 3 * DAY)]).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let deliveries = t.get("/v1/apps/shop/deliveries", &admin).await;
        let found = deliveries.json["deliveries"].as_array().unwrap().iter().any(|d| d["event_type"] == "trigger.fired");
        if found {
            break;
        }
        assert!(Instant::now() < deadline, "no trigger.fired delivery: {:?}", deliveries.json);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_recompute_replaces_older_days_from_the_log_and_keeps_the_values() {
    let (t, key, _) = world().await;
    let profile = t.get("/v1/apps/shop/users/ann/profile", &key).await.json;
    let started = t.post("/v1/actions/aggregations/views/recompute", MASTER, Body::empty()).await;
    assert_eq!(started.status, StatusCode::ACCEPTED, "{:?}", started.json);
    assert_eq!(started.json["phase"], "batch");
    let deadline = Instant::now() + Duration::from_secs(20);
    let job = loop {
        let job = t.get("/v1/actions/aggregations/views/recompute", MASTER).await;
        assert_eq!(job.status, StatusCode::OK, "{:?}", job.json);
        if job.json["phase"] == "done" {
            break job.json;
        }
        assert!(Instant::now() < deadline, "the recompute did not finish: {:?}", job.json);
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(job["read"].as_u64().unwrap() >= job["total"].as_u64().unwrap(), "{job}");
    assert_eq!(t.get("/v1/apps/shop/users/ann/profile", &key).await.json["values"], profile["values"], "the log agrees with the live layer");
    let audit = t.get("/v1/audit?action=actions.recompute", MASTER).await;
    assert_eq!(audit.json["entries"].as_array().unwrap().len(), 1, "{:?}", audit.json);
    // The console shows it on the aggregation's row, with a progress bar.
    let shop = meridian_event::AppId::new("shop").unwrap();
    let grant = meridian_tenancy::Grant::on_app(shop, meridian_tenancy::Role::Viewer);
    t.server.tenancy().create_operator(&meridian_tenancy::Actor::System, &meridian_tenancy::OperatorId::new("viewer").unwrap(), "Viewer", "a long test password", &[grant]).unwrap();
    let viewer = t.login("viewer", "a long test password").await;
    let page = t.page(Some(&viewer), "/console/apps/shop/actions", &[]).await;
    let row = &page.body[page.body.find("data-aggregation=\"views\"").expect("the views row")..];
    let row = &row[..row.find("</tr>").unwrap()];
    assert!(row.contains("<progress class=\"recompute\"") && row.contains("done"), "{row}");
    let other = &page.body[page.body.find("data-aggregation=\"skus_viewed\"").expect("another row")..];
    assert!(other[..other.find("</tr>").unwrap()].contains("never"), "an aggregation never recomputed says so");
}

#[tokio::test]
async fn an_erasure_reaches_the_topic_of_an_isolated_group() {
    let dir = tempfile::tempdir().unwrap();
    let pipeline = dir.path().join("pipeline.toml");
    std::fs::write(&pipeline, "[[routes]]\ntopic = \"orders\"\nactions = [\"order\"]\n\n[[routes]]\ntopic = \"events\"\n").unwrap();
    let t = TestServer::start_with(move |c| {
        c.collector.pipeline = Some(pipeline);
        let mut toml = ACTIONS.replace("filter = 'action == \"order\"'", "filter = 'action == \"order\"'\ngroup = \"core\"");
        toml.push_str("\n[[groups]]\nname = \"core\"\ntopic = \"orders\"\n");
        c.actions = toml::from_str(&toml).unwrap();
    });
    let key = t.app_with_key("shop", &["write", "read"]).await;
    ingest_and_wait(&t, &key, vec![view("a1", "ann", 1, now_ms() - 1000), order("o1", "ann", 60.0, now_ms() - 1000)]).await;
    let profile = t.get("/v1/apps/shop/users/ann/profile", &key).await.json;
    assert_eq!((profile["values"]["views"]["all"].clone(), profile["values"]["order_amount"]["all"].clone()), (json!(1), json!(60.0)), "{profile}");
    let statuses = t.server.runtime().status();
    assert!(statuses.iter().any(|s| s.name == "actions-core" && s.partitions.iter().all(|p| p.topic == "orders")), "the core group reads its topic");

    let erased = t.request(Method::DELETE, "/v1/apps/shop/users/ann", &[("authorization", &format!("Bearer {MASTER}"))], Body::empty()).await;
    assert_eq!(erased.status, StatusCode::OK, "every erasing processor passed the record: {:?}", erased.json);
    assert_eq!(erased.json["complete"], true);
    assert!(erased.json["modules"]["actions"]["status"].is_string() || erased.json["modules"]["actions"].is_object(), "{:?}", erased.json);
    let profile = t.get("/v1/apps/shop/users/ann/profile", &key).await.json;
    assert_eq!((profile["known"].clone(), profile["values"]["order_amount"]["all"].clone()), (json!(false), json!(0.0)), "{profile}");
    let audit = t.get("/v1/audit?action=user.erase", MASTER).await.json;
    assert_eq!(audit["entries"][0]["after"]["also"][0]["topic"], "orders", "{audit}");
}

#[tokio::test]
async fn the_console_shows_the_definitions_and_a_users_profile() {
    let (t, _, _) = world().await;
    let shop = meridian_event::AppId::new("shop").unwrap();
    let grant = meridian_tenancy::Grant::on_app(shop, meridian_tenancy::Role::Viewer);
    t.server.tenancy().create_operator(&meridian_tenancy::Actor::System, &meridian_tenancy::OperatorId::new("viewer").unwrap(), "Viewer", "a long test password", &[grant]).unwrap();
    let boss = t.login("viewer", "a long test password").await;
    let page = t.page(Some(&boss), "/console/apps/shop/actions", &[]).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    for expected in ["data-aggregation=\"views\"", "data-aggregation=\"skus_viewed\"", "data-trigger=\"big_spender\"", "<strong>churned</strong>"] {
        assert!(page.body.contains(expected), "the actions page shows {expected}: {}", page.body);
    }
    let segment_row = &page.body[page.body.find("data-segment=\"browsers\"").expect("the segment")..];
    assert!(segment_row[..segment_row.find("</tr>").unwrap()].contains("<td class=\"members\">1</td>"), "its live member count: {segment_row}");

    let profile = t.page(Some(&boss), "/console/apps/shop/profile?user=ann", &[]).await;
    assert_eq!(profile.status, StatusCode::OK, "{}", profile.body);
    for expected in ["id=\"profile-facts\"", "data-aggregation=\"views\"", "<td>3</td><td>3</td><td>4</td><td>4</td>", "browsers", "id=\"profile-timeline\""] {
        assert!(profile.body.contains(expected), "ann's profile shows {expected}: {}", profile.body);
    }
    let unknown = t.page(Some(&boss), "/console/apps/shop/profile?user=nobody", &[("accept-language", "zh-CN")]).await;
    assert!(unknown.body.contains("id=\"profile-unknown\"") && unknown.body.contains("没有关于 nobody 的任何信息"), "{}", unknown.body);
    let bad = t.page(Some(&boss), &format!("/console/apps/shop/profile?user={}", "u".repeat(129)), &[]).await;
    assert_eq!(bad.status, StatusCode::OK);
    assert!(bad.body.contains("invalid_user"), "{}", bad.body);
    let form = t.page(Some(&boss), "/console/apps/shop/profile", &[]).await;
    assert!(form.body.contains("id=\"profile-user\"") && !form.body.contains("id=\"profile-facts\""));
}

#[test]
fn an_unreachable_redis_profile_store_stops_the_start_with_its_setting_named() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::for_data_dir(dir.path().join("data"));
    configure(&mut config);
    config.actions.store = meridian_actions::StoreKind::Redis;
    config.actions.redis_url = "redis://127.0.0.1:1/0".into();
    let Err(err) = meridian_server::Server::open(config) else { panic!("no Redis listens on port 1") };
    let err = format!("{err:#}");
    assert!(err.contains("actions.redis_url") && err.contains("unreachable"), "{err}");
}
