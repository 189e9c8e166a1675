//! Operators, sessions and the audit log over HTTP: a viewer cannot change anything (every
//! route, from the OpenAPI document), expired and cross-site sessions are refused, the
//! cookie is Secure/HttpOnly/SameSite=Strict, logins are rate limited, and every admin
//! action leaves an audit entry.

use crate::harness::{Session, TestServer, MASTER};
use axum::body::Body;
use axum::http::{Method, StatusCode};
use meridian_server::Parts;
use meridian_tenancy::{Actor, Grant, ManualClock, OperatorId, Role};
use serde_json::{json, Value};
use std::sync::Arc;

const PASSWORD: &str = "correct horse battery";

/// A server with app `shop` and operators `viewer` (viewer of shop), `ops` (operator of
/// shop) and `boss` (global admin), on a clock the test moves.
async fn server() -> (TestServer, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(meridian_event::Timestamp::now().millis()));
    let t = TestServer::start_with_parts(|c| c.notify.network.allow_loopback = true, Parts { clock: Some(clock.clone()), ..Parts::default() });
    t.app_with_key("shop", &["read"]).await;
    let tenancy = t.server.tenancy().clone();
    let shop = meridian_event::AppId::new("shop").unwrap();
    for (login, grant) in [("viewer", Grant { app: Some(shop.clone()), role: Role::Viewer }), ("ops", Grant { app: Some(shop.clone()), role: Role::Operator }), ("boss", Grant { app: None, role: Role::Admin })] {
        tenancy.create_operator(&Actor::System, &OperatorId::new(login).unwrap(), login, PASSWORD, &[grant]).unwrap();
    }
    (t, clock)
}

/// A path with every `{param}` filled so that the route finds what it names.
fn fill(path: &str) -> String {
    crate::harness::fill_path(path, |param| match param {
        "app" => "shop",
        "user" => "ann",
        "sku" => "11",
        "name" => "counters",
        "login" => "ops",
        _ => "x",
    })
}

#[tokio::test]
async fn a_viewer_cannot_change_anything_on_any_route() {
    let (t, _) = server().await;
    let viewer = t.login("viewer", PASSWORD).await;
    let doc = t.server.openapi().clone();
    let mut checked = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let permission = op["x-permission"].as_str().unwrap();
            // Reads (a POST that only reads, like a batch of profiles, included) are what a
            // viewer may do.
            if method == "get" || permission == "public" || permission == "any" || permission == "read" {
                continue;
            }
            let mut uri = fill(path);
            if path == "/v1/events" {
                uri.push_str("?app=shop");
            }
            let body = json!({"id": "x", "scopes": ["read"], "time_zone": "UTC", "url": "https://example.com/hook", "topic": "events", "offsets": {}}).to_string();
            let reply = t.as_session(&viewer, Method::from_bytes(method.to_uppercase().as_bytes()).unwrap(), &uri, body, &[]).await;
            let segment = ["/v1/batch", "/v1/track", "/v1/page", "/v1/screen", "/v1/identify", "/v1/group", "/v1/alias"].contains(&path.as_str());
            if segment {
                // Segment routes take write keys only: a session is not a credential there.
                assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{method} {path}: {:?}", reply.json);
            } else {
                assert_eq!(reply.status, StatusCode::FORBIDDEN, "{method} {path} ({permission}) let a viewer through: {:?}", reply.json);
            }
            checked += 1;
        }
    }
    assert!(checked >= 25, "only {checked} changing routes were checked");
    // Nothing was changed: no event, no new app, no audit entry by the viewer.
    assert!(t.stored_ids().is_empty());
    assert_eq!(t.get("/v1/apps", MASTER).await.json["apps"].as_array().unwrap().len(), 1);
    let audit = t.get("/v1/audit?actor=operator:viewer", MASTER).await;
    assert_eq!(audit.json["entries"].as_array().unwrap().iter().filter(|e| e["action"] != "session.login").count(), 0, "{}", audit.json);
    // Reading is what a viewer may do.
    assert_eq!(t.as_session(&viewer, Method::GET, "/v1/apps/shop/counters", Body::empty(), &[]).await.status, StatusCode::OK);
    assert_eq!(t.as_session(&viewer, Method::GET, "/v1/apps", Body::empty(), &[]).await.json["apps"][0]["id"], "shop");
}

#[tokio::test]
async fn sessions_use_a_strict_cookie_and_expire() {
    let (t, clock) = server().await;
    let ops = t.login("ops", PASSWORD).await;
    for attribute in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/", "Max-Age=43200"] {
        assert!(ops.set_cookie.contains(attribute), "{attribute} missing: {}", ops.set_cookie);
    }
    let me = t.as_session(&ops, Method::GET, "/v1/session", Body::empty(), &[]).await;
    assert_eq!((me.status, me.json["login"].as_str()), (StatusCode::OK, Some("ops")));
    assert_eq!(t.as_session(&ops, Method::GET, "/v1/whoami", Body::empty(), &[]).await.json["grants"][0]["role"], "operator");
    // Idle for longer than the idle expiry (2 h by default).
    clock.advance(2 * 3_600_000 + 1000);
    let expired = t.as_session(&ops, Method::GET, "/v1/apps/shop/counters", Body::empty(), &[]).await;
    assert_eq!((expired.status, expired.code()), (StatusCode::UNAUTHORIZED, "session_expired"));
    // Absolute expiry: active all along, still ends after 12 h.
    let ops = t.login("ops", PASSWORD).await;
    for _ in 0..13 {
        clock.advance(3_600_000);
        let _ = t.as_session(&ops, Method::GET, "/v1/session", Body::empty(), &[]).await;
    }
    let reply = t.as_session(&ops, Method::GET, "/v1/session", Body::empty(), &[]).await;
    assert_eq!((reply.status, reply.code()), (StatusCode::UNAUTHORIZED, "session_expired"));
    // Logged out: the cookie is cleared and the session is gone.
    let ops = t.login("ops", PASSWORD).await;
    let out = t.as_session(&ops, Method::DELETE, "/v1/session", Body::empty(), &[]).await;
    assert_eq!(out.status, StatusCode::NO_CONTENT);
    assert!(out.headers.get("set-cookie").unwrap().to_str().unwrap().contains("Max-Age=0"));
    let reply = t.as_session(&ops, Method::GET, "/v1/session", Body::empty(), &[]).await;
    assert_eq!((reply.status, reply.code()), (StatusCode::UNAUTHORIZED, "unknown_session"));
}

#[tokio::test]
async fn cross_site_requests_and_missing_csrf_tokens_are_refused() {
    let (t, _) = server().await;
    let boss = t.login("boss", PASSWORD).await;
    let create = |id: &str| json!({"id": id}).to_string();
    let from_elsewhere = t.as_session(&boss, Method::POST, "/v1/apps", create("evil1"), &[("origin", "https://evil.example"), ("host", "127.0.0.1:7070")]).await;
    assert_eq!((from_elsewhere.status, from_elsewhere.code()), (StatusCode::FORBIDDEN, "forbidden"), "{:?}", from_elsewhere.json);
    let fetch_site = t.as_session(&boss, Method::POST, "/v1/apps", create("evil2"), &[("sec-fetch-site", "cross-site")]).await;
    assert_eq!(fetch_site.status, StatusCode::FORBIDDEN);
    let no_token = Session { cookie: boss.cookie.clone(), csrf: String::new(), set_cookie: String::new() };
    let reply = t.as_session(&no_token, Method::POST, "/v1/apps", create("evil3"), &[]).await;
    assert_eq!((reply.status, reply.code()), (StatusCode::FORBIDDEN, "csrf_failed"));
    let other = t.login("ops", PASSWORD).await;
    let wrong_token = Session { cookie: boss.cookie.clone(), csrf: other.csrf.clone(), set_cookie: String::new() };
    assert_eq!(t.as_session(&wrong_token, Method::POST, "/v1/apps", create("evil4"), &[]).await.code(), "csrf_failed", "another session's token does not do");
    assert_eq!(t.get("/v1/apps", MASTER).await.json["apps"].as_array().unwrap().len(), 1, "no app was created");
    let same_origin = t.as_session(&boss, Method::POST, "/v1/apps", create("fine"), &[("origin", "http://127.0.0.1:7070"), ("host", "127.0.0.1:7070"), ("sec-fetch-site", "same-origin")]).await;
    assert_eq!(same_origin.status, StatusCode::CREATED, "{:?}", same_origin.json);
}

#[tokio::test]
async fn logins_are_rate_limited_and_fail_alike_for_unknown_logins_and_wrong_passwords() {
    let (t, _) = server().await;
    let attempt = |login: &str, password: &str| json!({"login": login, "password": password}).to_string();
    let unknown = t.request(Method::POST, "/v1/session", &[], attempt("nobody", PASSWORD)).await;
    let wrong = t.request(Method::POST, "/v1/session", &[], attempt("ops", "wrong password!")).await;
    assert_eq!((unknown.status, unknown.code()), (StatusCode::UNAUTHORIZED, "invalid_credentials"));
    assert_eq!((wrong.status, wrong.json["error"]["message"].clone()), (StatusCode::UNAUTHORIZED, unknown.json["error"]["message"].clone()));
    let mut limited = None;
    for _ in 0..10 {
        let reply = t.request(Method::POST, "/v1/session", &[], attempt("ops", "wrong password!")).await;
        if reply.status == StatusCode::TOO_MANY_REQUESTS {
            limited = Some(reply);
            break;
        }
    }
    let limited = limited.expect("the login limit answers 429 within 10 wrong passwords");
    assert_eq!(limited.code(), "rate_limited");
    assert!(limited.headers.get("retry-after").is_some());
    // boss is the only global admin: it cannot be disabled or demoted, and nothing changes.
    let refused = t.patch("/v1/operators/boss", MASTER, json!({"disabled": true}).to_string()).await;
    assert_eq!((refused.status, refused.code()), (StatusCode::CONFLICT, "last_global_admin"), "{:?}", refused.json);
    let refused = t.patch("/v1/operators/boss", MASTER, json!({"grants": [{"app": "shop", "role": "admin"}]}).to_string()).await;
    assert_eq!((refused.status, refused.code()), (StatusCode::CONFLICT, "last_global_admin"), "{:?}", refused.json);
    let boss = t.server.tenancy().operator(&OperatorId::new("boss").unwrap()).unwrap();
    assert!(!boss.disabled && boss.grants == vec![Grant { app: None, role: Role::Admin }]);
    let disabled = t.patch("/v1/operators/viewer", MASTER, json!({"disabled": true}).to_string()).await;
    assert_eq!(disabled.json["disabled"], true);
    let reply = t.request(Method::POST, "/v1/session", &[], attempt("viewer", PASSWORD)).await;
    assert_eq!((reply.status, reply.code()), (StatusCode::FORBIDDEN, "operator_disabled"));
}

/// Every admin action, with the audit action it must leave.
#[tokio::test]
async fn every_admin_action_leaves_an_audit_entry() {
    let (t, _) = server().await;
    let pipeline = t.dir().join("pipeline.toml");
    std::fs::write(&pipeline, "").unwrap();
    let key = t.post("/v1/apps/shop/keys", MASTER, json!({"scopes": ["write"]}).to_string()).await.json["key_id"].as_str().unwrap().to_owned();
    let hook = t.post("/v1/apps/shop/webhooks", MASTER, json!({"url": "http://127.0.0.1:9/hook"}).to_string()).await;
    let hook_id = hook.json["id"].as_str().unwrap_or_else(|| panic!("{:?}", hook.json)).to_owned();
    // (method, path as documented, uri, body, audit action)
    let actions: Vec<(&str, &str, String, Value, &str)> = vec![
        ("POST", "/v1/apps", "/v1/apps".into(), json!({"id": "blog"}), "app.create"),
        ("PATCH", "/v1/apps/{app}", "/v1/apps/blog".into(), json!({"time_zone": "Asia/Shanghai"}), "app.update"),
        ("POST", "/v1/apps/{app}/keys", "/v1/apps/blog/keys".into(), json!({"scopes": ["read"]}), "key.create"),
        ("DELETE", "/v1/apps/{app}/keys/{key_id}", format!("/v1/apps/shop/keys/{key}"), Value::Null, "key.revoke"),
        ("POST", "/v1/operators", "/v1/operators".into(), json!({"login": "new", "password": PASSWORD, "grants": [{"role": "viewer"}]}), "operator.create"),
        ("PATCH", "/v1/operators/{login}", "/v1/operators/new".into(), json!({"grants": [{"app": "shop", "role": "reviewer"}]}), "operator.grants"),
        ("POST", "/v1/apps/{app}/dead-letters/replay", "/v1/apps/shop/dead-letters/replay".into(), Value::Null, "dead_letters.replay"),
        ("POST", "/v1/admin/processors/{name}/rebuild", "/v1/admin/processors/counters/rebuild".into(), Value::Null, "processor.rebuild"),
        ("POST", "/v1/admin/processors/{name}/seek", "/v1/admin/processors/history/seek".into(), json!({"topic": "events", "offsets": {"0": 0}}), "processor.seek"),
        ("DELETE", "/v1/apps/{app}/users/{user}", "/v1/apps/shop/users/ann".into(), Value::Null, "user.erase"),
        ("PATCH", "/v1/apps/{app}/webhooks/{id}", format!("/v1/apps/shop/webhooks/{hook_id}"), json!({"description": "orders"}), "webhook.update"),
        ("POST", "/v1/apps/{app}/webhooks/{id}/rotate-secret", format!("/v1/apps/shop/webhooks/{hook_id}/rotate-secret"), json!({"grace_secs": 60}), "webhook.rotate_secret"),
        ("POST", "/v1/apps/{app}/webhooks/{id}/test", format!("/v1/apps/shop/webhooks/{hook_id}/test"), Value::Null, "webhook.test"),
        ("DELETE", "/v1/apps/{app}/webhooks/{id}", format!("/v1/apps/shop/webhooks/{hook_id}"), Value::Null, "webhook.delete"),
        ("POST", "/v1/admin/sources", "/v1/admin/sources".into(), json!({"name": "inbox", "kind": "file", "app": "shop", "dir": t.dir().to_str().unwrap()}), "source.add"),
        ("POST", "/v1/admin/sources/{name}/pause", "/v1/admin/sources/inbox/pause".into(), Value::Null, "source.pause"),
        ("POST", "/v1/admin/sources/{name}/resume", "/v1/admin/sources/inbox/resume".into(), Value::Null, "source.resume"),
        ("DELETE", "/v1/admin/sources/{name}", "/v1/admin/sources/inbox".into(), Value::Null, "source.remove"),
        ("POST", "/v1/apps/{app}/alerts/rules", "/v1/apps/shop/alerts/rules".into(), json!({"id": "crashes", "name": "crashes", "metric": {"kind": "count"}, "window": {"kind": "tumbling", "size_secs": 60}, "condition": {"kind": "threshold", "op": ">", "value": 2}}), "alert_rule.create"),
        ("PUT", "/v1/apps/{app}/alerts/rules/{id}", "/v1/apps/shop/alerts/rules/crashes".into(), json!({"name": "crashes", "version": 1, "metric": {"kind": "count"}, "window": {"kind": "tumbling", "size_secs": 60}, "condition": {"kind": "threshold", "op": ">", "value": 3}}), "alert_rule.update"),
        ("POST", "/v1/apps/{app}/alerts/rules/{id}/pause", "/v1/apps/shop/alerts/rules/crashes/pause".into(), json!({"version": 2}), "alert_rule.pause"),
        ("POST", "/v1/apps/{app}/alerts/rules/{id}/resume", "/v1/apps/shop/alerts/rules/crashes/resume".into(), json!({"version": 3}), "alert_rule.resume"),
        ("DELETE", "/v1/apps/{app}/alerts/rules/{id}", "/v1/apps/shop/alerts/rules/crashes".into(), json!({"version": 4}), "alert_rule.delete"),
        ("POST", "/v1/apps/{app}/listing/catalog", "/v1/apps/shop/listing/catalog?wait=true".into(), json!({"sku": 1, "category_path": [1]}), "listing.catalog_load"),
        ("POST", "/v1/apps/{app}/listing/changes", "/v1/apps/shop/listing/changes?wait=true".into(), json!([{"op": "price", "sku": 1, "price": 5}]), "listing.changes"),
        ("PUT", "/v1/apps/{app}/listing/categories/{category}/settings", "/v1/apps/shop/listing/categories/1/settings".into(), json!({"max_brand_run": 2}), "listing.category_settings"),
        ("PUT", "/v1/apps/{app}/listing/template", "/v1/apps/shop/listing/template".into(), json!({"template": "<p>{{ total }}</p>"}), "listing.template_update"),
        ("PUT", "/v1/apps/{app}/listing/backend-failure", "/v1/apps/shop/listing/backend-failure".into(), json!({"fail": false}), "listing.backend_failure"),
        ("POST", "/v1/apps/{app}/listing/quality/run", "/v1/apps/shop/listing/quality/run".into(), Value::Null, "listing.quality_run"),
    ];
    for (method, _, uri, body, action) in &actions {
        let body = if body.is_null() { String::new() } else { body.to_string() };
        let reply = t.request(Method::from_bytes(method.as_bytes()).unwrap(), uri, &[("authorization", &format!("Bearer {MASTER}")), ("content-type", "application/json")], body).await;
        assert!(reply.status.is_success(), "{method} {uri}: {} {:?}", reply.status, reply.json);
        let entries = t.get(&format!("/v1/audit?action={action}"), MASTER).await.json;
        let entry = &entries["entries"][0];
        assert_eq!(entry["action"], *action, "{method} {uri} left no {action} entry: {entries}");
        assert_eq!(entry["actor"], "master");
    }
    assert!(t.get("/v1/audit?action=webhook.create", MASTER).await.json["entries"][0]["after"]["url"] == "http://127.0.0.1:9/hook");
    assert!(t.get("/v1/audit?action=webhook.create", MASTER).await.json["entries"][0]["after"].get("secrets").is_none(), "secrets are never audited");
    // Every changing admin route of the document is in the list above (or is audited by
    // the tests of its own: pipeline reload needs a pipeline file, redelivery a delivery,
    // history rebuild runs in the background, an actions back-fill or recompute needs an
    // aggregation; both are audited in actions.rs).
    let covered: Vec<(String, String)> = actions.iter().map(|(m, p, ..)| (m.to_string(), p.to_string())).collect();
    let elsewhere = [("POST", "/v1/admin/pipeline/reload"), ("POST", "/v1/apps/{app}/deliveries/{id}/redeliver"), ("POST", "/v1/admin/history/rebuild"), ("POST", "/v1/apps/{app}/webhooks"), ("POST", "/v1/actions/aggregations/{name}/backfill"), ("POST", "/v1/actions/aggregations/{name}/recompute")];
    for (path, item) in t.server.openapi()["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let permission = op["x-permission"].as_str().unwrap();
            if method == "get" || !(permission == "admin" || permission == "global_admin") {
                continue;
            }
            let m = method.to_uppercase();
            assert!(
                covered.contains(&(m.clone(), path.clone())) || elsewhere.contains(&(m.as_str(), path.as_str())),
                "{m} {path} is an admin action without an audit check"
            );
        }
    }
    let create_hook = t.get("/v1/apps/shop/audit?action=webhook.create", MASTER).await;
    assert_eq!(create_hook.json["entries"].as_array().unwrap().len(), 1);
    let pipeline_reload = t.post("/v1/admin/pipeline/reload", MASTER, Body::empty()).await;
    assert_eq!(pipeline_reload.code(), "invalid_pipeline", "no pipeline file is configured here: refused, and not audited");
    assert!(t.get("/v1/audit?action=pipeline.reload", MASTER).await.json["entries"].as_array().unwrap().is_empty());
}
