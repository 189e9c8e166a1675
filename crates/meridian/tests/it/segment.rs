//! Segment compatibility proven with Segment's own published Python library: it sends to
//! Meridian unchanged (basic auth with the write key, gzip, `/v1/batch`).

use crate::process::{app_key, free_port, skip_or_fail, wait_processed, ServerProcess};
use std::process::Command;

fn segment_library_present() -> bool {
    Command::new("python3").args(["-c", "import segment.analytics"]).output().map(|o| o.status.success()).unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_published_segment_python_library_sends_unchanged() {
    if !segment_library_present() {
        skip_or_fail("the Python package segment-analytics-python (pip install segment-analytics-python)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(&dir.path().join("data"), free_port(), &[]).await;
    let key = app_key(&server.base, "segment", &["write", "read"]).await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/segment_client.py");
    let output = tokio::task::spawn_blocking({
        let base = server.base.clone();
        let key = key.clone();
        move || Command::new("python3").arg(script).arg(&base).arg(&key).output().unwrap()
    })
    .await
    .unwrap();
    assert!(output.status.success(), "segment client failed: {}\n{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    wait_processed(&server.base).await;
    let counters: serde_json::Value =
        reqwest::Client::new().get(format!("{}/v1/apps/segment/counters", server.base)).bearer_auth(&key).send().await.unwrap().json().await.unwrap();
    assert_eq!(
        counters["by_action"],
        serde_json::json!({"identify": 1, "order_completed": 1, "product_viewed": 1, "page": 1, "screen": 1}),
        "{counters}"
    );
    let dead: serde_json::Value =
        reqwest::Client::new().get(format!("{}/v1/apps/segment/dead-letters", server.base)).bearer_auth(&key).send().await.unwrap().json().await.unwrap();
    assert_eq!(dead["dead_letters"].as_array().unwrap().len(), 0, "{dead}");
}
