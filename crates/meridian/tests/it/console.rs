//! The web console in a real browser (Debian's Chromium driven by playwright-core, checked
//! with axe-core): the real binary with `--demo`, a global admin created through the API
//! with the master key, every page visited and used (tests/console/check_console.js), then
//! the demo operator with the password the server printed.

use crate::process::{binary, free_port, skip_or_fail, MASTER};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const ROOT_PASSWORD: &str = "root-password-for-the-browser";

fn browser_tools_present(dir: &Path) -> bool {
    Path::new(&std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into())).exists()
        && dir.join("node_modules/playwright-core").exists()
        && dir.join("node_modules/axe-core").exists()
        && Command::new("node").arg("--version").output().is_ok_and(|o| o.status.success())
}

/// The server with `--demo`; killed on drop.
struct DemoServer(Child);

impl Drop for DemoServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `meridian serve --demo` and returns it with the demo operator's password, read
/// from what it prints ("--demo: sign in to the console at … as demo / <password>").
fn start_demo(data_dir: &Path, port: u16) -> (DemoServer, String) {
    let mut child = Command::new(binary())
        .arg("serve")
        .arg("--data-dir")
        .arg(data_dir)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--demo", "--demo-events", "3000", "--demo-rate", "50"])
        // The browser test's webhook receiver listens on loopback.
        .args(["--set", "notify.network.allow_loopback=true"])
        .env("MERIDIAN_MASTER_KEY", MASTER)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start meridian");
    let stderr = child.stderr.take().unwrap();
    let server = DemoServer(child);
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some((_, password)) = line.split_once("as demo / ") {
                let _ = sender.send(password.trim().to_owned());
            }
            eprintln!("[meridian] {line}");
        }
    });
    let password = receiver.recv_timeout(Duration::from_secs(60)).expect("the demo operator's password is printed");
    (server, password)
}

async fn wait_ready(base: &str) {
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !client.get(format!("{base}/readyz")).send().await.is_ok_and(|r| r.status().is_success()) {
        assert!(Instant::now() < deadline, "server did not become ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_console_page_works_in_a_browser_with_no_serious_accessibility_violation() {
    let tools = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/console");
    if !browser_tools_present(&tools) {
        skip_or_fail("Chromium (/usr/bin/chromium), node, playwright-core and axe-core (npm ci in crates/meridian/tests/console)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let (_server, demo_password) = start_demo(&dir.path().join("data"), port);
    let base = format!("http://127.0.0.1:{port}");
    wait_ready(&base).await;
    let created = reqwest::Client::new()
        .post(format!("{base}/v1/operators"))
        .bearer_auth(MASTER)
        .json(&serde_json::json!({"login": "root", "display_name": "Root Admin", "password": ROOT_PASSWORD, "grants": [{"role": "admin"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201, "{:?}", created.text().await);
    let shots = dir.path().join("screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let output = tokio::task::spawn_blocking(move || {
        Command::new("node").arg(tools.join("check_console.js")).arg(&base).arg(ROOT_PASSWORD).arg(&demo_password).arg(&shots).output().unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
    eprintln!("{stdout}");
    if let Ok(keep) = std::env::var("KEEP_CONSOLE_SCREENSHOTS") {
        let _ = Command::new("cp").arg("-r").arg(dir.path().join("screenshots")).arg(keep).status();
    }
}
