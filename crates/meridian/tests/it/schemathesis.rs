//! The served OpenAPI document fuzzed by a property-based API tester nobody here wrote
//! (schemathesis, from PyPI) against the real binary: no 5xx, no status code, content type,
//! header or body off the document. Fixtures (an app with a write key, a webhook endpoint
//! with a delivery, an operator, a key) let it reach every operation's logic, not only 404s.

use crate::process::{app_key, free_port, skip_or_fail, ServerProcess, MASTER};
use serde_json::{json, Value};
use std::process::Command;

fn schemathesis_present() -> bool {
    Command::new("schemathesis").arg("--version").output().map(|o| o.status.success()).unwrap_or(false)
}

async fn post(base: &str, path: &str, body: Value) -> Value {
    let reply = reqwest::Client::new().post(format!("{base}{path}")).bearer_auth(MASTER).json(&body).send().await.unwrap();
    assert!(reply.status().is_success(), "{path}: {}", reply.status());
    reply.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_server_error_and_no_answer_off_the_document() {
    if !schemathesis_present() {
        skip_or_fail("schemathesis (pip install schemathesis==4.32.5)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pipeline = dir.path().join("pipeline.toml");
    std::fs::write(&pipeline, "[[parsers]]\n[parsers.aliases]\nuid = \"user\"\n").unwrap();
    let extra = ["--set", "collector.stream_max_secs=1", "--set", "notify.network.allow_loopback=true", "--pipeline", pipeline.to_str().unwrap()];
    let server = ServerProcess::start(&dir.path().join("data"), free_port(), &extra).await;
    let base = server.base.clone();
    let write_key = app_key(&base, "shop", &["write", "read"]).await;
    let key_id = post(&base, "/v1/apps/shop/keys", json!({"scopes": ["read"]})).await["key_id"].as_str().unwrap().to_owned();
    let endpoint = post(&base, "/v1/apps/shop/webhooks", json!({"url": "http://127.0.0.1:9/hook"})).await["id"].as_str().unwrap().to_owned();
    let delivery = post(&base, &format!("/v1/apps/shop/webhooks/{endpoint}/test"), json!({})).await["delivery_id"].as_str().unwrap().to_owned();
    post(&base, "/v1/operators", json!({"login": "op1", "password": "a long enough password", "grants": [{"app": "shop", "role": "viewer"}]})).await;
    let login = reqwest::Client::new().post(format!("{base}/v1/session")).json(&json!({"login": "op1", "password": "a long enough password"})).send().await.unwrap();
    let cookie = login.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_owned();
    let config = format!(
        r#"
[parameters]
"path.app" = "shop"
"path.login" = "op1"
"path.name" = "counters"
"path.topic" = "events"
"path.file" = "swagger-ui.css"

[[operations]]
include-path-regex = '^/v1/apps/\{{app\}}/webhooks/\{{id\}}'
parameters = {{ "path.id" = "{endpoint}" }}

[[operations]]
include-path-regex = '^/v1/apps/\{{app\}}/deliveries/\{{id\}}'
parameters = {{ "path.id" = "{delivery}" }}

[[operations]]
include-path = "/v1/apps/{{app}}/keys/{{key_id}}"
parameters = {{ "path.key_id" = "{key_id}" }}

[[operations]]
include-path-regex = '^/v1/(events|batch|track|page|screen|identify|group|alias)$'
headers = {{ Authorization = "Bearer {write_key}" }}

[[operations]]
include-path = "/v1/session"
include-method = "GET"
headers = {{ Cookie = "{cookie}" }}
"#
    );
    let config_file = dir.path().join("schemathesis.toml");
    std::fs::write(&config_file, config).unwrap();
    // Schemathesis keeps a `.schemathesis/` cache in its working directory: keep it in the temp dir.
    let work_dir = dir.path().to_path_buf();
    let output = tokio::task::spawn_blocking(move || {
        Command::new("schemathesis")
            .current_dir(&work_dir)
            .arg("--config-file")
            .arg(&config_file)
            .args(["run", &format!("{base}/openapi.json"), "-H", &format!("Authorization: Bearer {MASTER}")])
            .args(["--checks", "not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance"])
            .args(["--max-examples", "25", "--request-timeout", "10", "--no-color"])
            .env("SCHEMATHESIS_HOOKS", "")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let summary = stdout.rfind("WARNINGS").or_else(|| stdout.rfind("SUMMARY")).map(|i| &stdout[i..]).unwrap_or(&stdout);
    eprintln!("{summary}");
    assert!(output.status.success(), "schemathesis found failures:\n{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    assert!(summary.contains("Tested: "), "{summary}");
    drop(server);
}
