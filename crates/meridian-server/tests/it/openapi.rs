//! The generated OpenAPI document and the router agree: every documented operation is
//! routed to a handler, no documented path answers a method the document does not list,
//! and every operation carries what a client needs (parameters, responses, security).

use crate::harness::{TestServer, MASTER};
use axum::body::Body;
use axum::http::{Method, StatusCode};
use serde_json::Value;

/// A value for a path parameter that routes (the handler may still refuse it).
fn sample(param: &str) -> &'static str {
    match param {
        "file" => "swagger-ui.css",
        "topic" => "events",
        "name" => "counters",
        "sku" => "1",
        _ => "x",
    }
}

fn fill(path: &str) -> String {
    crate::harness::fill_path(path, sample)
}

#[tokio::test]
async fn every_documented_operation_is_routed_and_no_undocumented_method_is() {
    let t = TestServer::start();
    let doc = t.server.openapi().clone();
    let operations = meridian_server::operations(&doc);
    assert!(operations.len() > 30, "{} operations", operations.len());
    for (path, item) in doc["paths"].as_object().unwrap() {
        let uri = fill(path);
        for method in ["GET", "POST", "PUT", "PATCH", "DELETE"] {
            let documented = item.get(method.to_ascii_lowercase()).is_some();
            let method_value = Method::from_bytes(method.as_bytes()).unwrap();
            let auth = format!("Bearer {MASTER}");
            let (status, headers) = t.head_of(method_value.clone(), &uri, &[("authorization", &auth)]).await;
            if headers.get("content-type").is_some_and(|v| v.to_str().unwrap_or("").starts_with("text/event-stream")) {
                assert!(documented && status == StatusCode::OK, "{method} {path}: a stream");
                continue;
            }
            let reply = t.request(method_value, &uri, &[("authorization", &auth)], Body::empty()).await;
            if documented {
                assert!(
                    !(reply.status == StatusCode::NOT_FOUND && reply.json["error"]["message"].as_str().is_some_and(|m| m.contains("no such route"))),
                    "{method} {path} is documented but not routed"
                );
                assert_ne!(reply.status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path} is documented but its method is not routed");
            } else {
                assert_eq!(reply.status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path} answers a method the document does not list: {:?}", reply.json);
                assert_eq!(reply.code(), "method_not_allowed");
            }
        }
    }
    let reply = t.get("/v1/not/documented", MASTER).await;
    assert_eq!((reply.status, reply.code()), (StatusCode::NOT_FOUND, "not_found"));
}

#[tokio::test]
async fn every_operation_documents_parameters_responses_and_security() {
    let t = TestServer::start();
    let doc = t.server.openapi().clone();
    assert_eq!(t.get("/openapi.json", "").await.json, doc, "the served document is the generated one");
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."), "{}", doc["openapi"]);
    assert!(doc["components"]["schemas"]["ErrorBody"].is_object());
    for name in ["bearer", "basic", "session"] {
        assert!(doc["components"]["securitySchemes"][name].is_object(), "{name}");
    }
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let here = format!("{} {path}", method.to_uppercase());
            assert!(op["x-permission"].is_string(), "{here} says which permission it needs");
            assert!(op["tags"].as_array().is_some_and(|t| !t.is_empty()), "{here} has a tag");
            assert!(op["description"].is_string() || op["summary"].is_string(), "{here} is described");
            let responses = op["responses"].as_object().unwrap();
            // 101: the upgrade of `GET /v1/connect` to a WebSocket.
            assert!(responses.keys().any(|k| k.starts_with('2') || k.starts_with('3') || k == "101"), "{here} documents its success");
            let public = op["x-permission"] == "public";
            assert_eq!(op["security"].as_array().is_some_and(|s| s.iter().all(|r| r.as_object().unwrap().is_empty())), public, "{here}: public routes, and only they, need no credentials");
            if !public {
                for code in ["401", "403"] {
                    assert_eq!(responses[code]["content"]["application/json"]["schema"]["$ref"], "#/components/schemas/ErrorBody", "{here} documents {code}");
                }
            }
            // Every `{param}` of the path is a documented path parameter.
            let params: Vec<&str> = op["parameters"].as_array().map(|a| a.iter().filter(|p| p["in"] == "path").filter_map(|p| p["name"].as_str()).collect()).unwrap_or_default();
            for segment in path.split('/').filter(|s| s.starts_with('{')) {
                let name = segment.trim_matches(|c| c == '{' || c == '}');
                assert!(params.contains(&name), "{here} documents path parameter {name}");
            }
            if op.get("parameters").is_some_and(|p| p.as_array().is_some_and(|a| !a.is_empty())) || op.get("requestBody").is_some() {
                assert!(responses.contains_key("400"), "{here} takes input and documents 400");
            }
        }
    }
    let paths = doc["paths"].as_object().unwrap();
    let schema_ref = |path: &str, method: &str, status: &str| paths[path][method]["responses"][status]["content"]["application/json"]["schema"]["$ref"].clone();
    assert_eq!(schema_ref("/v1/events", "post", "200"), Value::from("#/components/schemas/IngestReport"));
    assert_eq!(schema_ref("/v1/apps/{app}/users/{user}/history", "get", "200"), Value::from("#/components/schemas/HistoryPage"));
    assert_eq!(schema_ref("/v1/apps/{app}/users/{user}", "delete", "200"), Value::from("#/components/schemas/ErasureReport"));
}
