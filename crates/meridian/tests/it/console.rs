//! The web console in a real browser (Debian's Chromium driven by playwright-core): it
//! shows counts as bars, processor lag, and live events while the demo feeder runs.

use crate::process::{free_port, skip_or_fail, ServerProcess, MASTER};
use std::path::Path;
use std::process::Command;

fn browser_tools_present(dir: &Path) -> bool {
    Path::new(&std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into())).exists()
        && dir.join("node_modules/playwright-core").exists()
        && Command::new("node").arg("--version").output().is_ok_and(|o| o.status.success())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_shows_counts_lag_and_live_events_in_a_browser() {
    let tools = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/console");
    if !browser_tools_present(&tools) {
        skip_or_fail("Chromium (/usr/bin/chromium), node and playwright-core (npm ci in crates/meridian/tests/console)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(&dir.path().join("data"), free_port(), &["--demo", "--demo-events", "3000", "--demo-rate", "50"]).await;
    let url = format!("{}/console#key={MASTER}", server.base);
    let screenshot = dir.path().join("console.png");
    let output = tokio::task::spawn_blocking(move || Command::new("node").arg(tools.join("check_console.js")).arg(&url).arg(&screenshot).output().unwrap()).await.unwrap();
    assert!(output.status.success(), "{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
}
