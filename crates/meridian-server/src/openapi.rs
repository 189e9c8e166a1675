//! The OpenAPI document: generated from the handlers' `#[utoipa::path]` annotations and
//! the API types' schemas as the router is built (so a route cannot exist without its
//! operation), then completed here with what every operation shares: security schemes,
//! tags, and the error answers common to authenticated routes.

use meridian_api::ErrorBody;
use serde_json::{json, Value};
use utoipa::OpenApi;

/// The document's fixed parts.
#[derive(OpenApi)]
#[openapi(
    info(title = "Meridian", description = "A self-hosted, real-time user-behaviour data platform. Errors are always `{\"error\": {\"code\", \"message\", \"details\"}}` with a stable code."),
    components(schemas(ErrorBody)),
    tags(
        (name = "collect", description = "Sending events (JSON, NDJSON, Segment), dead letters, live streams"),
        (name = "apps", description = "Apps, API keys, who you are, the audit log"),
        (name = "users", description = "A user's data across every capability"),
        (name = "counters", description = "Event counts per app, action and day"),
        (name = "history", description = "Browsing history: recently viewed items"),
        (name = "actions", description = "User actions: aggregations in daily buckets, profiles, lifecycle stages, segments, triggers"),
        (name = "alerts", description = "Alert rules on live event streams: rules, evaluations, history, rule tests"),
        (name = "listing", description = "Category listing: the durable catalog, bulk loads and product changes (jobs), filtered and sorted category pages with facets, shopper pages with page cache and fallbacks, templates, quality scores"),
        (name = "webhooks", description = "Webhook endpoints (Standard Webhooks signatures) and their delivery log"),
        (name = "admin", description = "Processors, the pipeline, topics"),
        (name = "ops", description = "Metrics, health, readiness"),
        (name = "docs", description = "This document"),
        (name = "console", description = "The web console"),
    )
)]
pub(crate) struct BaseDoc;

const METHODS: [&str; 8] = ["get", "put", "post", "delete", "options", "head", "patch", "trace"];

/// Completes the generated document: version, security schemes and the default
/// requirement (a key or an operator session), and on every non-public operation the
/// error answers any authenticated route can give.
pub(crate) fn complete(doc: utoipa::openapi::OpenApi) -> Value {
    let mut doc = serde_json::to_value(doc).unwrap_or_default();
    doc["info"]["version"] = json!(env!("CARGO_PKG_VERSION"));
    doc["components"]["securitySchemes"] = json!({
        "bearer": {"type": "http", "scheme": "bearer", "description": "An API key (`Authorization: Bearer <key>`), or the master key."},
        "basic": {"type": "http", "scheme": "basic", "description": "A write key as the user name (how Segment libraries send it)."},
        "session": {"type": "apiKey", "in": "cookie", "name": crate::auth::SESSION_COOKIE, "description": "An operator's console session (POST /v1/session); state-changing requests also send X-CSRF-Token."}
    });
    doc["security"] = json!([{"bearer": []}, {"session": []}]);
    let error = |description: &str| json!({"description": description, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}});
    if let Some(paths) = doc["paths"].as_object_mut() {
        for item in paths.values_mut() {
            for method in METHODS {
                let Some(op) = item.get_mut(method) else { continue };
                let takes_input = op.get("parameters").is_some_and(|p| p.as_array().is_some_and(|a| !a.is_empty())) || op.get("requestBody").is_some();
                let public = op.get("security").and_then(Value::as_array).is_some_and(|s| s.iter().all(|r| r.as_object().is_some_and(|o| o.is_empty())));
                let responses = op["responses"].as_object_mut().expect("an operation has responses");
                if !public {
                    responses.entry("401").or_insert_with(|| error("Missing, unknown or expired credentials"));
                    responses.entry("403").or_insert_with(|| error("The credentials lack the permission this route needs (see x-permission)"));
                    responses.entry("429").or_insert_with(|| error("A rate limit or the log's capacity is exceeded; retry after Retry-After seconds"));
                }
                if takes_input {
                    responses.entry("400").or_insert_with(|| error("A parameter or the body is invalid; the code and message say which"));
                }
            }
        }
    }
    doc
}

/// Every `(METHOD, path)` the document has.
pub fn operations(doc: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if let Some(paths) = doc["paths"].as_object() {
        for (path, item) in paths {
            for method in METHODS {
                if item.get(method).is_some() {
                    out.push((method.to_ascii_uppercase(), path.clone()));
                }
            }
        }
    }
    out
}
