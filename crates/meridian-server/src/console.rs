//! The web console (one static page talking to the JSON API), the OpenAPI document and
//! the JSON 404.

use crate::error::ApiError;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::Json;
use serde_json::{json, Value};

const CONSOLE_HTML: &str = include_str!("../assets/console.html");

/// `GET /console`.
pub(crate) async fn page() -> Html<&'static str> {
    Html(CONSOLE_HTML)
}

/// `GET /` → the console.
pub(crate) async fn redirect_to_console() -> Redirect {
    Redirect::temporary("/console")
}

/// Unknown routes answer with the JSON error shape.
pub(crate) async fn not_found() -> Response {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route; see /openapi.json").into_response()
}

fn op(summary: &str, scope: &str) -> Value {
    json!({"summary": summary, "x-scope": scope, "responses": {"200": {"description": "ok"}, "4XX": {"description": "{\"error\": {\"code\", \"message\", \"details\"}}"}}})
}

/// `GET /openapi.json`: the route map.
pub(crate) async fn openapi() -> Json<Value> {
    Json(json!({
        "openapi": "3.0.3",
        "info": {"title": "Meridian", "version": env!("CARGO_PKG_VERSION")},
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}, "basic": {"type": "http", "scheme": "basic"}}},
        "security": [{"bearer": []}],
        "paths": {
            "/v1/events": {"post": op("send events: JSON array, one object or NDJSON; gzip accepted; per-event report", "write")},
            "/v1/batch": {"post": op("Segment-compatible batch", "write")},
            "/v1/track": {"post": op("Segment-compatible track", "write")},
            "/v1/page": {"post": op("Segment-compatible page", "write")},
            "/v1/screen": {"post": op("Segment-compatible screen", "write")},
            "/v1/identify": {"post": op("Segment-compatible identify", "write")},
            "/v1/apps": {"post": op("create an app {\"id\"}", "master"), "get": op("list apps", "master")},
            "/v1/apps/{app}/keys": {"post": op("create a key {\"scopes\": [\"write\"|\"read\"|\"admin\"]}", "admin")},
            "/v1/apps/{app}/dead-letters": {"get": op("list invalid events with their reasons (?cursor=&limit=)", "read")},
            "/v1/apps/{app}/dead-letters/replay": {"post": op("replay dead letters through the current pipeline", "admin")},
            "/v1/apps/{app}/counters": {"get": op("event counts by action and day", "read")},
            "/v1/streams/{topic}": {"get": op("server-sent events of a topic; resumable with Last-Event-ID; ?from=beginning|end", "read")},
            "/v1/admin/processors": {"get": op("processor positions, lag and throughput", "master")},
            "/v1/admin/processors/{name}/rebuild": {"post": op("clear a processor's state and replay the log", "master")},
            "/v1/admin/processors/{name}/seek": {"post": op("move a processor's positions without clearing its state {\"topic\", \"offsets\": {\"0\": 120}}", "master")},
            "/v1/apps/{app}/users/{user}/history": {"get": op("recently viewed, newest first, one per SPU (?limit=&cursor=&kind=user|device)", "read"), "delete": op("clear all", "write")},
            "/v1/apps/{app}/users/{user}/history/count": {"get": op("number of history items", "read")},
            "/v1/apps/{app}/users/{user}/history/{sku}": {"delete": op("delete one SKU", "write")},
            "/v1/admin/history/rebuild": {"post": op("rebuild the cold history tier from the log (background)", "master"), "get": op("rebuild progress", "master")},
            "/v1/admin/pipeline": {"get": op("pipeline in force", "master")},
            "/v1/admin/pipeline/reload": {"post": op("reload the pipeline file", "master")},
            "/v1/admin/topics": {"get": op("topics and offsets", "master")},
            "/metrics": {"get": op("Prometheus metrics", "none")},
            "/healthz": {"get": op("liveness", "none")},
            "/readyz": {"get": op("readiness and processor lag", "none")}
        }
    }))
}
