//! The console's pages through the router: every page renders for an operator with the
//! role it needs and sends others to sign-in (303) or to a 403 page naming the role; an
//! app admin (like the demo operator) sees every app page and no server page; Chinese
//! comes from the query, the cookie or Accept-Language; the navigation follows the
//! registered modules; no page ever shows a secret.

use crate::harness::{PageReply, Session, TestServer, MASTER};
use axum::http::StatusCode;
use bytes::Bytes;
use meridian_log::{AppendRecord, TopicName};
use meridian_notify::NotificationRequest;
use meridian_server::{Capability, ConsoleSection, Erasure, Module, ModuleBuilder, ModuleContext, NavAccess, NavEntry, NavGroup, Parts};
use meridian_tenancy::{Actor, Grant, OperatorId, Permission, Role};
use serde_json::json;
use std::time::{Duration, Instant};

const PASSWORD: &str = "correct horse battery";

/// A server with apps `shop` and `blog`; operators `boss` (global admin), `shopadmin`
/// (admin of shop only, like the demo operator) and `viewer` (viewer of shop); in shop:
/// views of ann, a pay, an invalid event, a webhook endpoint and a delivery.
struct World {
    t: TestServer,
    key: String,
    webhook_id: String,
    delivery_id: String,
}

async fn world() -> World {
    let t = TestServer::start_with(|c| c.notify.network.allow_loopback = true);
    let key = t.app_with_key("shop", &["write", "read"]).await;
    t.app_with_key("blog", &["read"]).await;
    let tenancy = t.server.tenancy().clone();
    let shop = meridian_event::AppId::new("shop").unwrap();
    for (login, grant) in [("boss", Grant::global(Role::Admin)), ("shopadmin", Grant::on_app(shop.clone(), Role::Admin)), ("viewer", Grant::on_app(shop.clone(), Role::Viewer))] {
        tenancy.create_operator(&Actor::System, &OperatorId::new(login).unwrap(), &format!("{login} name"), PASSWORD, &[grant]).unwrap();
    }
    let now = meridian_event::Timestamp::now().millis();
    let events = json!([
        {"id": "v1", "user": "ann", "action": "view", "target": {"type": "sku", "id": "11"}, "time": now - 3000},
        {"id": "v2", "user": "ann", "action": "view", "target": {"type": "sku", "id": "12"}, "time": now - 2000},
        {"id": "p1", "user": "ann", "action": "pay", "time": now - 1000},
        {"id": "bad", "user": "bob", "action": "view", "time": "not a time"},
    ]);
    let reply = t.post("/v1/events", &key, events.to_string()).await;
    assert_eq!(reply.json["rejected"], 1, "{:?}", reply.json);
    let created = t.post("/v1/apps/shop/webhooks", MASTER, json!({"url": "http://127.0.0.1:9/hook", "event_types": ["trigger.fired"]}).to_string()).await;
    assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.json);
    let webhook_id = created.json["id"].as_str().unwrap().to_owned();
    let rule = json!({"id": "crashes", "name": "Crashes", "metric": {"kind": "count"}, "filter": {"action": "crash"}, "window": {"kind": "tumbling", "size_secs": 60}, "condition": {"kind": "threshold", "op": ">", "value": 2}});
    assert_eq!(t.post("/v1/apps/shop/alerts/rules", MASTER, rule.to_string()).await.status, StatusCode::CREATED);
    // A request is delivered to the endpoints that existed when it was made.
    let now = meridian_event::Timestamp::now().millis();
    let request = NotificationRequest { id: "n-1".into(), app: shop, event_type: "trigger.fired".into(), payload: json!({"user": "ann"}), created_ms: now, endpoint: None, bare: false };
    let record = AppendRecord { key: Bytes::from("ann"), value: Bytes::from(request.to_record_value()), timestamp: now };
    t.server.log().append(&TopicName::new("notifications").unwrap(), vec![record]).await.unwrap();
    assert!(t.server.runtime().wait_caught_up(Duration::from_secs(10)));
    let deadline = Instant::now() + Duration::from_secs(10);
    let delivery_id = loop {
        let deliveries = t.get("/v1/apps/shop/deliveries", MASTER).await;
        if let Some(id) = deliveries.json["deliveries"][0]["id"].as_str() {
            break id.to_owned();
        }
        assert!(Instant::now() < deadline, "no delivery: {:?}", deliveries.json);
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    World { t, key, webhook_id, delivery_id }
}

/// Every console page of the OpenAPI document that needs a session, with its permission,
/// its parameters filled for app shop.
fn console_pages(t: &TestServer, delivery_id: &str) -> Vec<(String, String)> {
    let doc = t.server.openapi();
    let mut pages = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        let Some(op) = item.get("get") else { continue };
        if !path.starts_with("/console") || op["tags"][0] != "console" {
            continue;
        }
        let permission = op["x-permission"].as_str().unwrap().to_owned();
        if permission == "public" {
            continue;
        }
        // `{id}` is the alert rule's on its page, the delivery's elsewhere.
        let id = if path.contains("/alerts/rules/") { "crashes" } else { delivery_id };
        pages.push((path.replace("{app}", "shop").replace("{id}", id), permission));
    }
    pages
}

fn assert_html(reply: &PageReply, what: &str) {
    let content_type = reply.headers["content-type"].to_str().unwrap();
    assert!(content_type.starts_with("text/html"), "{what}: {content_type}");
    assert!(reply.body.starts_with("<!doctype html>"), "{what}: {}", &reply.body[..reply.body.len().min(200)]);
    assert!(reply.headers["content-security-policy"].to_str().unwrap().contains("default-src 'self'"), "{what}");
}

/// The hrefs of the layout's navigation.
fn nav_links(body: &str) -> Vec<String> {
    let start = body.find("<nav class=\"side\"").expect("the layout has its navigation");
    let nav = &body[start..start + body[start..].find("</nav>").unwrap()];
    nav.split("href=\"").skip(1).map(|s| s[..s.find('"').unwrap()].to_owned()).collect()
}

#[tokio::test]
async fn every_page_renders_for_a_global_admin_and_sends_the_signed_out_to_sign_in() {
    let w = world().await;
    let t = &w.t;
    let boss = t.login("boss", PASSWORD).await;
    let pages = console_pages(t, &w.delivery_id);
    assert!(pages.len() >= 12, "{pages:?}");
    for (path, permission) in &pages {
        let reply = t.page(Some(&boss), path, &[]).await;
        if path == "/console" || path == "/console/" {
            assert_eq!(reply.status, StatusCode::SEE_OTHER, "{path}");
            assert_eq!(reply.location(), "/console/apps/blog/overview", "{path}: the first page of the first app");
            continue;
        }
        assert_eq!(reply.status, StatusCode::OK, "{path} ({permission}): {}", reply.body);
        assert_html(&reply, path);
        assert!(reply.body.contains("<meta name=\"csrf-token\""), "{path} gives scripts the CSRF token");
        assert!(reply.body.contains("boss name"), "{path} shows who is signed in");

        let anonymous = t.page(None, path, &[]).await;
        assert_eq!(anonymous.status, StatusCode::SEE_OTHER, "{path}");
        let encoded: String = path.bytes().map(|b| if b.is_ascii_alphanumeric() || b"-._~".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") }).collect();
        assert_eq!(anonymous.location(), format!("/console/login?next={encoded}"), "{path}");
        let expired = t.page(Some(&Session { cookie: "meridian_session=not-a-session".into(), csrf: String::new(), set_cookie: String::new() }), path, &[]).await;
        assert_eq!(expired.status, StatusCode::SEE_OTHER, "{path}: an unknown session signs in again");
        let script = t.page(None, path, &[("accept", "application/json")]).await;
        assert_eq!(script.status, StatusCode::UNAUTHORIZED, "{path}: scripts get the JSON error");
    }
    // What the pages show.
    let overview = t.page(Some(&boss), "/console/apps/shop/overview", &[]).await.body;
    assert!(overview.contains("<rect") && overview.contains("<polyline"), "bars and a line");
    assert!(overview.contains(">view</text>") && overview.contains(">pay</text>"), "actions label the bars");
    assert!(overview.contains("id=\"dead-letters\"") && overview.contains("not a time"), "the invalid event is a dead letter");
    assert!(overview.contains("id=\"replay\""), "admins may replay");
    assert!(overview.contains("data-src=\"/v1/streams/events?app=shop\""), "the live stream");
    let users = t.page(Some(&boss), "/console/apps/shop/users?user=ann", &[]).await.body;
    assert!(users.contains("data-sku=\"12\"") && users.contains("data-sku=\"11\""), "ann's history");
    assert!(users.find("data-sku=\"12\"") < users.find("data-sku=\"11\""), "newest first");
    assert!(users.contains("id=\"recent-users\"") && users.contains("?user=ann&amp;kind=user"), "ann is recently active");
    assert!(users.contains("id=\"erase-open\"") && users.contains("id=\"clear-history\""));
    let webhooks = t.page(Some(&boss), "/console/apps/shop/webhooks", &[]).await.body;
    assert!(webhooks.contains(&w.webhook_id) && webhooks.contains("http://127.0.0.1:9/hook"));
    let deliveries = t.page(Some(&boss), "/console/apps/shop/deliveries?state=pending", &[]).await.body;
    assert!(deliveries.contains(&w.delivery_id), "{deliveries}");
    assert!(!t.page(Some(&boss), "/console/apps/shop/deliveries?state=dead", &[]).await.body.contains(&w.delivery_id), "the state filter");
    let delivery = t.page(Some(&boss), &format!("/console/apps/shop/deliveries/{}", w.delivery_id), &[]).await.body;
    assert!(delivery.contains("trigger.fired") && delivery.contains("&quot;user&quot;: &quot;ann&quot;"), "the body sent, pretty: {delivery}");
    let admin = t.page(Some(&boss), "/console/admin", &[]).await.body;
    for processor in ["counters", "history", "notify"] {
        assert!(admin.contains(&format!("data-processor=\"{processor}")), "{processor}");
    }
    assert!(t.page(Some(&boss), "/console/admin/history", &[]).await.body.contains("id=\"rebuild-progress\""));
    let unknown = t.page(Some(&boss), "/console/apps/shop/deliveries/no-such-delivery", &[]).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND, "the API's 404 shows as the page's");
    assert!(unknown.body.contains("no-such-delivery"), "with the API's message");
}

#[tokio::test]
async fn a_viewer_gets_a_403_page_naming_the_role_and_whom_to_ask() {
    let w = world().await;
    let t = &w.t;
    let viewer = t.login("viewer", PASSWORD).await;
    for (path, permission) in console_pages(t, &w.delivery_id) {
        let reply = t.page(Some(&viewer), &path, &[]).await;
        match permission.as_str() {
            "any" => assert_eq!((reply.status, reply.location()), (StatusCode::SEE_OTHER, "/console/apps/shop/overview"), "{path}"),
            "read" => assert_eq!(reply.status, StatusCode::OK, "{path}: {}", reply.body),
            "admin" | "global_admin" => {
                assert_eq!(reply.status, StatusCode::FORBIDDEN, "{path}");
                assert_html(&reply, &path);
                let needed = if permission == "admin" { "the admin role on app shop" } else { "the admin role on every app (a global admin)" };
                assert!(reply.body.contains(needed), "{path} names the role: {}", reply.body);
                assert!(reply.body.contains("boss name") && reply.body.contains("<code>boss</code>"), "{path} names whom to ask");
                let script = t.page(Some(&viewer), &path, &[("accept", "application/json")]).await;
                assert_eq!(script.status, StatusCode::FORBIDDEN, "{path}");
                assert!(script.body.contains("insufficient_scope"), "{path}: {}", script.body);
            }
            other => panic!("{path}: unexpected permission {other}"),
        }
    }
    let overview = t.page(Some(&viewer), "/console/apps/shop/overview", &[]).await.body;
    assert_eq!(nav_links(&overview), vec!["/console/apps/shop/overview", "/console/apps/shop/users", "/console/apps/shop/actions", "/console/apps/shop/profile", "/console/apps/shop/alerts", "/console/apps/shop/listing", "/console/apps/shop/deliveries"], "a viewer is shown only what it may open");
    assert!(!overview.contains("id=\"replay\""), "a viewer cannot replay");
    let users = t.page(Some(&viewer), "/console/apps/shop/users?user=ann", &[]).await.body;
    assert!(users.contains("data-sku=\"11\"") && !users.contains("class=\"small delete-item\"") && !users.contains("id=\"erase-open\""), "reads, no delete or erase");
    // Another app's pages: forbidden when it exists, not found when it does not.
    assert_eq!(t.page(Some(&viewer), "/console/apps/blog/overview", &[]).await.status, StatusCode::FORBIDDEN);
    assert_eq!(t.page(Some(&viewer), "/console/apps/nope/overview", &[]).await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn an_app_admin_like_the_demo_operator_sees_every_app_page_and_no_server_page() {
    let w = world().await;
    let t = &w.t;
    let admin = t.login("shopadmin", PASSWORD).await;
    let overview = t.page(Some(&admin), "/console/apps/shop/overview", &[]).await;
    let links = nav_links(&overview.body);
    let app_pages: Vec<(String, String)> = console_pages(t, &w.delivery_id).into_iter().filter(|(p, _)| p.starts_with("/console/apps/")).collect();
    for (path, _) in &app_pages {
        assert_eq!(t.page(Some(&admin), path, &[]).await.status, StatusCode::OK, "{path}");
        if path.matches('/').count() == 4 {
            assert!(links.contains(path), "{path} is in the navigation: {links:?}");
        }
    }
    assert_eq!(links.len(), 10, "overview, users, actions, profile, alerts, listing, webhooks, deliveries, keys, audit: {links:?}");
    assert_eq!(overview.body.matches("<option").count(), 1, "its one app in the switcher");
    for path in ["/console/operators", "/console/admin", "/console/audit", "/console/admin/history"] {
        assert_eq!(t.page(Some(&admin), path, &[]).await.status, StatusCode::FORBIDDEN, "{path}");
    }
    // Its audit page shows the app's changes, filtered.
    t.post("/v1/apps/shop/keys", MASTER, json!({"scopes": ["read"]}).to_string()).await;
    let audit = t.page(Some(&admin), "/console/apps/shop/audit?action=key.", &[]).await.body;
    let actions: Vec<&str> = audit.split("class=\"audit-action\"><code>").skip(1).map(|s| &s[..s.find('<').unwrap()]).collect();
    assert!(!actions.is_empty() && actions.iter().all(|a| a.starts_with("key.")), "{actions:?}");
    let bad = t.page(Some(&admin), "/console/apps/shop/audit?from=yesterday", &[]).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.body.contains("2025-01-31"), "says what a date looks like");
}

#[tokio::test]
async fn the_audit_log_pages_and_shows_before_and_after() {
    let w = world().await;
    let t = &w.t;
    for _ in 0..55 {
        t.post("/v1/apps/shop/keys", MASTER, json!({"scopes": ["read"]}).to_string()).await;
    }
    t.patch("/v1/apps/shop", MASTER, json!({"time_zone": "Asia/Shanghai"}).to_string()).await;
    let boss = t.login("boss", PASSWORD).await;
    let first = t.page(Some(&boss), "/console/audit", &[]).await.body;
    let rows = |body: &str| body.matches("class=\"audit-action\"").count();
    assert_eq!(rows(&first), 50);
    assert!(first.contains("<th scope=\"row\">time_zone</th><td><code>UTC</code></td><td><code>Asia/Shanghai</code></td>"), "before and after, field by field");
    let older = first.split("id=\"audit-older\"").next().unwrap();
    let href = older[older.rfind("href=\"").unwrap() + 6..].split('"').next().unwrap().replace("&amp;", "&");
    let second = t.page(Some(&boss), &format!("/console/audit{href}"), &[]).await.body;
    assert!(rows(&second) > 0, "{href}");
    let filtered = t.page(Some(&boss), "/console/audit?actor=operator:boss", &[]).await.body;
    assert_eq!(rows(&filtered), 1, "only boss's sign-in");
}

#[tokio::test]
async fn chinese_comes_from_the_query_the_cookie_or_accept_language() {
    let w = world().await;
    let t = &w.t;
    let boss = t.login("boss", PASSWORD).await;
    let path = "/console/apps/shop/overview";
    let english = t.page(Some(&boss), path, &[]).await;
    assert!(english.body.contains("<html lang=\"en\">") && english.body.contains(">Overview</a>"));
    let by_header = t.page(Some(&boss), path, &[("accept-language", "zh-CN,zh;q=0.9,en;q=0.8")]).await;
    assert!(by_header.body.contains("<html lang=\"zh-CN\">") && by_header.body.contains(">概览</a>") && by_header.body.contains("按行为统计的事件"), "{}", by_header.body);
    assert!(by_header.headers.get("set-cookie").is_none(), "a header is not remembered");
    let chosen = t.page(Some(&boss), &format!("{path}?lang=zh-CN"), &[]).await;
    assert!(chosen.body.contains(">概览</a>"));
    let cookie = chosen.headers["set-cookie"].to_str().unwrap();
    assert!(cookie.starts_with("meridian_lang=zh-CN;") && cookie.contains("Max-Age=31536000"), "{cookie}");
    let remembered = format!("{}; meridian_lang=zh-CN", boss.cookie);
    let again = t.page(None, path, &[("cookie", &remembered)]).await;
    assert!(again.body.contains(">概览</a>"), "the cookie is remembered");
    let back = t.page(None, &format!("{path}?lang=en"), &[("cookie", &remembered), ("accept-language", "zh-CN")]).await;
    assert!(back.body.contains(">Overview</a>"), "the query beats the cookie");
    // The sign-in page and the 403 page too.
    let login = t.page(None, "/console/login", &[("accept-language", "zh")]).await;
    assert!(login.body.contains("登录名") && login.body.contains("lang=\"zh-CN\""));
    let viewer = t.login("viewer", PASSWORD).await;
    let forbidden = t.page(Some(&viewer), "/console/admin", &[("accept-language", "zh-CN")]).await;
    assert!(forbidden.body.contains("全局管理员"), "{}", forbidden.body);
}

#[tokio::test]
async fn no_page_shows_a_secret() {
    let w = world().await;
    let t = &w.t;
    let webhook_secret = t.get(&format!("/v1/apps/shop/webhooks/{}/secrets", w.webhook_id), MASTER).await.json["secrets"][0]["secret"].as_str().unwrap().to_owned();
    let admin_key = t.post("/v1/apps/shop/keys", MASTER, json!({"scopes": ["admin"]}).to_string()).await.json["key"].as_str().unwrap().to_owned();
    let boss = t.login("boss", PASSWORD).await;
    let session_token = boss.cookie.split_once('=').unwrap().1.to_owned();
    let secrets = [w.key.as_str(), admin_key.as_str(), webhook_secret.as_str(), MASTER, PASSWORD, session_token.as_str()];
    let mut pages: Vec<String> = console_pages(t, &w.delivery_id).into_iter().map(|(p, _)| p).collect();
    pages.extend(["/console/apps/shop/users?user=ann".into(), "/console/login".into(), "/console/apps/shop/deliveries?state=pending".into()]);
    for path in &pages {
        let reply = t.page(Some(&boss), path, &[]).await;
        for secret in secrets {
            assert!(!reply.body.contains(secret), "{path} shows a secret ({}…)", &secret[..4]);
        }
    }
}

#[tokio::test]
async fn sign_in_is_public_and_goes_back_only_within_the_console() {
    let w = world().await;
    let t = &w.t;
    let page = t.page(None, "/console/login?next=/console/apps/shop/keys", &[]).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("id=\"login-form\" data-next=\"/console/apps/shop/keys\""));
    assert!(page.body.contains("type=\"password\"") && !page.body.contains("#key=") && page.body.matches("<input").count() == 2, "operators sign in with a login and password; no key box");
    for evil in ["//evil.example/x", "https://evil.example/", "/v1/apps", "/console/login"] {
        let page = t.page(None, &format!("/console/login?next={evil}"), &[]).await;
        assert!(page.body.contains("data-next=\"/console\""), "{evil}");
    }
    let boss = t.login("boss", PASSWORD).await;
    let signed_in = t.page(Some(&boss), "/console/login?next=/console/operators", &[]).await;
    assert_eq!((signed_in.status, signed_in.location()), (StatusCode::SEE_OTHER, "/console/operators"));
    for asset in ["console.css", "console.js", "icon.svg"] {
        assert_eq!(t.page(None, &format!("/console/assets/{asset}"), &[]).await.status, StatusCode::OK, "{asset}");
    }
    let unknown = t.page(None, "/console/no/such/page", &[]).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert_html(&unknown, "an unknown console page");
    let root = t.page(None, "/", &[]).await;
    assert_eq!(root.location(), "/console");
}

/// A capability of the test with one console page entry.
struct Probe;

impl Capability for Probe {
    fn name(&self) -> &'static str {
        "probe"
    }
    fn open(&self, _ctx: &ModuleContext<'_>) -> anyhow::Result<Option<Module>> {
        let nav = vec![NavEntry { id: "probe", label: "nav.probe", href: "/console/apps/{app}/probe", access: NavAccess::App(Permission::Read), group: NavGroup::App, order: 5 }];
        Ok(Some(ModuleBuilder::new("probe").console(ConsoleSection { nav, routes: Default::default() }).erasure(Erasure::NoUserData { why: "nothing" }).build()?))
    }
}

#[tokio::test]
async fn the_navigation_follows_the_registered_modules() {
    // History off: no users page, in the navigation or behind its path.
    let t = TestServer::start_with(|c| c.history.enabled = false);
    t.app_with_key("shop", &["read"]).await;
    t.server.tenancy().create_operator(&Actor::System, &OperatorId::new("boss").unwrap(), "Boss", PASSWORD, &[Grant::global(Role::Admin)]).unwrap();
    let boss = t.login("boss", PASSWORD).await;
    let links = nav_links(&t.page(Some(&boss), "/console/apps/shop/overview", &[]).await.body);
    assert!(links.contains(&"/console/apps/shop/webhooks".to_owned()) && !links.iter().any(|l| l.contains("/users") || l.contains("/admin/history")), "{links:?}");
    assert_eq!(t.page(Some(&boss), "/console/apps/shop/users", &[]).await.status, StatusCode::NOT_FOUND);
    assert!(!t.server.openapi()["paths"].as_object().unwrap().contains_key("/console/apps/{app}/users"));

    // Only a probe module: its entry and the server's own pages.
    let t = TestServer::start_with_parts(|_| {}, Parts { capabilities: &[&Probe], ..Parts::default() });
    t.app_with_key("shop", &["read"]).await;
    t.server.tenancy().create_operator(&Actor::System, &OperatorId::new("boss").unwrap(), "Boss", PASSWORD, &[Grant::global(Role::Admin)]).unwrap();
    let boss = t.login("boss", PASSWORD).await;
    let landing = t.page(Some(&boss), "/console", &[]).await;
    assert_eq!(landing.location(), "/console/apps/shop/probe", "the first entry is the probe's");
    let links = nav_links(&t.page(Some(&boss), "/console/apps/shop/keys", &[]).await.body);
    assert_eq!(
        links,
        vec!["/console/apps/shop/probe", "/console/apps/shop/keys", "/console/apps/shop/audit", "/console/operators", "/console/audit", "/console/admin"],
        "the probe's entry, then the server's"
    );
}
