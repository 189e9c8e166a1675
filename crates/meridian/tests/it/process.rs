//! Starting and stopping the real server binary.

use meridian_event::Event;
use meridian_log::embedded::{EmbeddedLog, EmbeddedLogConfig};
use meridian_log::{Log, TopicName};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub(crate) const MASTER: &str = "e2e-master-key";

pub(crate) fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_meridian"))
}

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A running server process; killed (SIGKILL) on drop if still running.
pub(crate) struct ServerProcess {
    pub(crate) child: Child,
    pub(crate) base: String,
}

impl ServerProcess {
    pub(crate) async fn start(data_dir: &Path, port: u16, extra: &[&str]) -> ServerProcess {
        let child = Command::new(binary())
            .arg("serve")
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(extra)
            .env("MERIDIAN_MASTER_KEY", MASTER)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .spawn()
            .expect("start meridian");
        let server = ServerProcess { child, base: format!("http://127.0.0.1:{port}") };
        server.wait_ready().await;
        server
    }

    async fn wait_ready(&self) {
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(r) = client.get(format!("{}/readyz", self.base)).send().await {
                if r.status().is_success() {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "server did not become ready");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGKILL: no chance to flush anything.
    pub(crate) fn kill9(&mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().unwrap();
    }

    /// SIGTERM and wait; returns whether it exited successfully.
    pub(crate) fn terminate(&mut self) -> bool {
        Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status().unwrap();
        self.child.wait().unwrap().success()
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Creates `app` with a key of `scopes` through the admin API.
pub(crate) async fn app_key(base: &str, app: &str, scopes: &[&str]) -> String {
    let client = reqwest::Client::new();
    let r = client.post(format!("{base}/v1/apps")).bearer_auth(MASTER).json(&serde_json::json!({"id": app})).send().await.unwrap();
    assert!(r.status().is_success() || r.status() == 409, "{}", r.status());
    let key: serde_json::Value =
        client.post(format!("{base}/v1/apps/{app}/keys")).bearer_auth(MASTER).json(&serde_json::json!({"scopes": scopes})).send().await.unwrap().json().await.unwrap();
    key["key"].as_str().unwrap().to_owned()
}

/// Waits until every processor has no lag; returns the processors' status.
pub(crate) async fn wait_processed(base: &str) -> serde_json::Value {
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let status: serde_json::Value = client.get(format!("{base}/v1/admin/processors")).bearer_auth(MASTER).send().await.unwrap().json().await.unwrap();
        let done = status["processors"].as_array().unwrap().iter().all(|p| p["lag"] == 0 && !p["partitions"].as_array().unwrap().is_empty());
        if done {
            return status;
        }
        assert!(Instant::now() < deadline, "processors did not catch up: {status}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Loudly skips a test whose outside dependency is absent, unless CI demands it.
pub(crate) fn skip_or_fail(what: &str) {
    if std::env::var("MERIDIAN_REQUIRE_BACKENDS").is_ok_and(|v| v == "1") {
        panic!("{what} is required (MERIDIAN_REQUIRE_BACKENDS=1) but absent");
    }
    eprintln!("\n!!!!!!!!!! SKIPPED: {what} is absent; install it (see .ci/run) — CI sets MERIDIAN_REQUIRE_BACKENDS=1 and fails instead !!!!!!!!!!\n");
}

/// Every event id in the `events` topic with how often it is there (the server stopped).
pub(crate) fn stored_ids(data: &Path) -> HashMap<String, usize> {
    let log = EmbeddedLog::open(data.join("log"), EmbeddedLogConfig::default()).unwrap();
    let topic = TopicName::new("events").unwrap();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for partition in 0..log.partition_count(&topic).unwrap() {
        for record in log.read(&topic, partition, 0, usize::MAX, usize::MAX).unwrap() {
            *seen.entry(Event::decode(&record.value).unwrap().id.to_string()).or_default() += 1;
        }
    }
    seen
}
