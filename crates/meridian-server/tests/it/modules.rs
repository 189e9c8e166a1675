//! The module shape: a capability's processors, routes and OpenAPI operations appear when
//! it is registered; one that does not say how it erases a user is refused; its config
//! section is validated; and erasing a user reaches every capability, also after a replay.

use crate::harness::{now_ms, TestServer, MASTER};
use axum::body::Body;
use axum::extract::State;
use axum::http::{Method, StatusCode};
use axum::Json;
use meridian_log::{Record, TopicName};
use meridian_runtime::{ProcessContext, Processor};
use meridian_server::{Capability, Config, Erasure, Module, ModuleBuilder, ModuleContext, ModuleError, Parts, Server};
use meridian_state::WriteBatch;
use serde_json::json;
use std::sync::Arc;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// A processor of the probe capability: counts records.
struct ProbeProcessor;

impl Processor for ProbeProcessor {
    fn name(&self) -> &str {
        "probe"
    }
    fn topics(&self) -> Vec<TopicName> {
        vec![TopicName::new(meridian_server::EVENTS_TOPIC).unwrap()]
    }
    fn process(&mut self, ctx: &mut ProcessContext<'_>, _topic: &TopicName, records: &[Record]) -> meridian_runtime::Result<()> {
        ctx.batch().put("probe", b"seen".to_vec(), (records.len() as u64).to_be_bytes().to_vec());
        Ok(())
    }
    fn clear_state(&mut self, batch: &mut WriteBatch) {
        batch.delete_prefix("probe", Vec::new());
    }
}

/// The probe's answer.
#[derive(serde::Serialize, utoipa::ToSchema)]
struct ProbeAnswer {
    /// Always "probe".
    name: String,
}

/// Answers who it is.
#[utoipa::path(get, path = "/v1/probe", tag = "ops", responses((status = 200, description = "The probe", body = ProbeAnswer)), security(()), extensions(("x-permission" = json!("public"))))]
async fn probe_route(State(name): State<Arc<String>>) -> Json<ProbeAnswer> {
    Json(ProbeAnswer { name: name.to_string() })
}

/// A capability built in the test, with or without an erasure declaration.
struct Probe {
    erasure: Option<Erasure>,
}

impl Capability for Probe {
    fn name(&self) -> &'static str {
        "probe"
    }
    fn open(&self, _ctx: &ModuleContext<'_>) -> anyhow::Result<Option<Module>> {
        let mut builder = ModuleBuilder::new("probe").processor(Box::new(ProbeProcessor)).routes(OpenApiRouter::new().routes(routes!(probe_route)).with_state(Arc::new("probe".to_owned())));
        if let Some(erasure) = &self.erasure {
            builder = builder.erasure(erasure.clone());
        }
        Ok(Some(builder.build()?))
    }
}

fn config(dir: &tempfile::TempDir) -> Config {
    let mut config = Config::for_data_dir(dir.path().join("data"));
    config.server.master_key = Some(MASTER.into());
    config
}

#[tokio::test]
async fn a_registered_capability_brings_its_processors_routes_and_operations() {
    let dir = tempfile::tempdir().unwrap();
    let probe = Probe { erasure: Some(Erasure::NoUserData { why: "counts records" }) };
    let server = Server::open_with(config(&dir), Parts { capabilities: &[&probe], ..Parts::default() }).unwrap();
    assert_eq!(server.modules(), vec!["probe"]);
    assert_eq!(server.runtime().status().iter().map(|s| s.name.as_str()).collect::<Vec<_>>(), vec!["probe"], "only its processor runs");
    assert!(server.openapi()["paths"]["/v1/probe"]["get"].is_object(), "its operation is documented");
    assert!(server.openapi()["paths"]["/v1/apps/{app}/users/{user}/history"].is_null(), "history was not registered");
    let router = server.router();
    use tower::ServiceExt;
    let response = router.oneshot(axum::http::Request::get("/v1/probe").body(Body::empty()).unwrap()).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    server.shutdown();

    // The server's own list.
    let other = tempfile::tempdir().unwrap();
    let server = Server::open(config(&other)).unwrap();
    assert_eq!(server.modules(), vec!["counters", "history", "notify", "actions", "alerts", "listing", "sources"]);
    server.shutdown();
}

#[test]
fn a_capability_that_does_not_say_how_it_erases_a_user_is_refused() {
    let err = ModuleBuilder::new("probe").processor(Box::new(ProbeProcessor)).build().unwrap_err();
    assert_eq!(err, ModuleError::MissingErasure("probe"));
    let err = ModuleBuilder::new("probe").processor(Box::new(ProbeProcessor)).erasure(Erasure::ByProcessors(vec!["nobody".into()])).build().unwrap_err();
    assert!(matches!(err, ModuleError::UnknownErasureProcessor { .. }), "{err}");
    let dir = tempfile::tempdir().unwrap();
    let err = Server::open_with(config(&dir), Parts { capabilities: &[&Probe { erasure: None }], ..Parts::default() }).unwrap_err();
    let text = format!("{err:#}");
    assert!(text.contains("probe") && text.contains("erases a user"), "{text}");
    let twice = Probe { erasure: Some(Erasure::NoUserData { why: "" }) };
    let dir = tempfile::tempdir().unwrap();
    let err = Server::open_with(config(&dir), Parts { capabilities: &[&twice, &twice], ..Parts::default() }).unwrap_err();
    assert!(format!("{err:#}").contains("two capabilities are named probe"), "{err:#}");
}

#[test]
fn a_capability_section_is_validated_before_anything_opens() {
    let dir = tempfile::tempdir().unwrap();
    let mut bad = config(&dir);
    bad.history.max_items = 0;
    let err = Server::open(bad).unwrap_err();
    assert!(format!("{err:#}").contains("history.max_items"), "{err:#}");
    assert!(!dir.path().join("data").exists(), "nothing was created for a config that does not validate");
    let mut off = config(&dir);
    off.history.enabled = false;
    let server = Server::open(off).unwrap();
    assert_eq!(server.modules(), vec!["counters", "notify", "actions", "alerts", "listing", "sources"], "a section can turn its capability off");
    server.shutdown();
}

#[tokio::test]
async fn erasing_a_user_removes_history_everywhere_and_a_replay_does_not_bring_it_back() {
    let t = TestServer::start();
    let key = t.app_with_key("shop", &["write", "read"]).await;
    let views: Vec<_> = [11, 12, 13].iter().enumerate().map(|(i, sku)| json!({"id": format!("v{i}"), "user": "ann", "action": "view", "target": {"type": "sku", "id": sku.to_string()}, "time": now_ms() - 1000 + i as i64})).collect();
    let other = json!({"id": "b1", "user": "bob", "action": "view", "target": {"type": "sku", "id": "20"}, "time": now_ms()});
    let mut all = views.clone();
    all.push(other);
    assert_eq!(t.post("/v1/events", &key, json!(all).to_string()).await.json["accepted"], 4);
    assert!(t.server.runtime().wait_caught_up(std::time::Duration::from_secs(10)));
    assert_eq!(t.get("/v1/apps/shop/users/ann/history/count", &key).await.json["count"], 3);

    let forbidden = t.request(Method::DELETE, "/v1/apps/shop/users/ann", &[("authorization", &format!("Bearer {key}"))], Body::empty()).await;
    assert_eq!((forbidden.status, forbidden.code()), (StatusCode::FORBIDDEN, "insufficient_scope"), "erasure needs the admin scope");
    let reply = t.request(Method::DELETE, "/v1/apps/shop/users/ann", &[("authorization", &format!("Bearer {MASTER}"))], Body::empty()).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.json);
    assert_eq!(reply.json["complete"], true);
    assert_eq!(reply.json["modules"]["history"]["status"], "erased");
    assert_eq!(reply.json["modules"]["history"]["removed"]["cold_entries"], 3);
    assert_eq!(reply.json["modules"]["counters"]["status"], "no_user_data");
    assert_eq!(t.get("/v1/apps/shop/users/ann/history", &key).await.json["items"], json!([]));
    assert_eq!(t.get("/v1/apps/shop/users/bob/history/count", &key).await.json["count"], 1, "others keep theirs");

    // The erasure is a record of the log: replays meet it again.
    assert_eq!(t.post("/v1/admin/processors/history/rebuild", MASTER, Body::empty()).await.status, StatusCode::OK);
    assert!(t.server.runtime().wait_caught_up(std::time::Duration::from_secs(10)));
    assert_eq!(t.get("/v1/apps/shop/users/ann/history/count?kind=user", &key).await.json["count"], 0, "a processor rebuild does not bring it back");
    assert_eq!(t.post("/v1/admin/history/rebuild", MASTER, Body::empty()).await.status, StatusCode::ACCEPTED);
    for _ in 0..500 {
        if t.get("/v1/admin/history/rebuild", MASTER).await.json["running"] == false {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(t.get("/v1/admin/history/rebuild", MASTER).await.json["running"], false);
    assert_eq!(t.get("/v1/apps/shop/users/ann/history", &key).await.json["items"], json!([]), "a cold-tier rebuild does not bring it back");
    let audit = t.get("/v1/apps/shop/audit?action=user.erase", MASTER).await;
    assert_eq!(audit.json["entries"][0]["target"], "user:ann", "{}", audit.json);
    assert_eq!(audit.json["entries"][0]["after"]["erasure_id"], reply.json["erasure_id"]);

    for (uri, code) in [("/v1/apps/shop/users/ann?kind=robot", "invalid_kind"), ("/v1/apps/ghost/users/ann", "unknown_app")] {
        let reply = t.request(Method::DELETE, uri, &[("authorization", &format!("Bearer {MASTER}"))], Body::empty()).await;
        assert_eq!(reply.code(), code, "{uri}: {}", reply.json);
    }
}

#[test]
fn a_new_data_directory_gives_every_module_a_store_of_its_own_and_an_old_one_keeps_sharing() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::open(config(&dir)).unwrap();
    server.shutdown();
    drop(server);
    let data = dir.path().join("data");
    assert_eq!(std::fs::read_to_string(data.join("LAYOUT")).unwrap(), "modules-v1");
    for module in ["counters", "history", "notify"] {
        assert!(data.join("modules").join(module).join("state-fjall").is_dir(), "{module} has its store");
    }

    // A data directory from before per-module stores: a core store and no LAYOUT file.
    let old = tempfile::tempdir().unwrap();
    let old_data = old.path().join("data");
    std::fs::create_dir_all(&old_data).unwrap();
    // (redb: it lets go of its file when dropped; fjall's background threads may hold it a moment longer)
    drop(meridian_state::StateBackend::Redb.open(&old_data).unwrap());
    let server = Server::open(config(&old)).unwrap();
    server.shutdown();
    drop(server);
    assert_eq!(std::fs::read_to_string(old_data.join("LAYOUT")).unwrap(), "shared");
    assert!(!old_data.join("modules").exists(), "every module keeps its state in the shared store");

    std::fs::write(old_data.join("LAYOUT"), "mystery").unwrap();
    let err = Server::open(config(&old)).unwrap_err();
    assert!(format!("{err:#}").contains("mystery"), "{err:#}");
}
