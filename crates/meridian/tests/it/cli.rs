//! The command line: the master-key rule, offline apps and keys used by a live server,
//! and the demo generator's files.

use crate::process::{binary, free_port, ServerProcess};
use serde_json::json;
use std::process::Command;

#[test]
fn serve_refuses_to_start_without_a_master_key_unless_dev() {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(binary())
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .env_remove("MERIDIAN_MASTER_KEY")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("MERIDIAN_MASTER_KEY") && stderr.contains("--dev"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_apps_and_keys_work_with_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let run = |args: &[&str]| {
        let output = Command::new(binary()).args(args).arg("--data-dir").arg(&data).output().unwrap();
        assert!(output.status.success(), "{args:?}: {}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8(output.stdout).unwrap()
    };
    run(&["apps", "create", "offline"]);
    assert_eq!(run(&["apps", "list"]).trim(), "offline\tUTC");
    let key = run(&["keys", "create", "--app", "offline", "--scope", "write,read"]).trim().to_owned();
    assert!(key.starts_with("mk_"), "{key}");
    let bad = Command::new(binary()).args(["keys", "create", "--app", "offline", "--scope", "root", "--data-dir"]).arg(&data).output().unwrap();
    assert!(!bad.status.success() && String::from_utf8_lossy(&bad.stderr).contains("unknown scope"));

    let server = ServerProcess::start(&data, free_port(), &[]).await;
    let reply: serde_json::Value = reqwest::Client::new()
        .post(format!("{}/v1/events", server.base))
        .bearer_auth(&key)
        .json(&json!([{"user": "u1", "action": "view"}]))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(reply["accepted"], 1, "{reply}");
    // The state is locked while the server runs: offline changes are refused clearly.
    let locked = Command::new(binary()).args(["apps", "create", "second", "--data-dir"]).arg(&data).output().unwrap();
    assert!(!locked.status.success());
    assert!(String::from_utf8_lossy(&locked.stderr).contains("in use"), "{}", String::from_utf8_lossy(&locked.stderr));
}

#[test]
fn demo_generate_writes_catalog_dimensions_and_events() {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(binary()).args(["demo", "generate", "--events", "5000", "--users", "500", "--out"]).arg(dir.path()).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let events = std::fs::read_to_string(dir.path().join("events.ndjson")).unwrap();
    assert_eq!(events.lines().count(), 5000);
    assert!(dir.path().join("dims/sku.csv").exists());
    assert!(dir.path().join("catalog/skus.jsonl").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edited_pipeline_file_applies_without_restart() {
    let dir = tempfile::tempdir().unwrap();
    let pipeline = dir.path().join("pipeline.toml");
    std::fs::write(&pipeline, "# nothing yet\n").unwrap();
    let server = ServerProcess::start(&dir.path().join("data"), free_port(), &["--pipeline", pipeline.to_str().unwrap()]).await;
    let key = crate::process::app_key(&server.base, "legacy", &["write"]).await;
    let client = reqwest::Client::new();
    let send = |n: usize| {
        let request = client.post(format!("{}/v1/events", server.base)).bearer_auth(&key).json(&json!([{"id": format!("l{n}"), "uid": "u1", "evt": "view"}]));
        async move { request.send().await.unwrap().json::<serde_json::Value>().await.unwrap() }
    };
    assert_eq!(send(0).await["rejected"], 1, "legacy field names are unknown at first");
    // Written to a temporary file and renamed, as editors and deploy tools do.
    let staged = dir.path().join("pipeline.toml.new");
    std::fs::write(&staged, "[[parsers]]\n[parsers.aliases]\nuid = \"user\"\nevt = \"action\"\n").unwrap();
    std::fs::rename(&staged, &pipeline).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut n = 1;
    loop {
        if send(n).await["accepted"] == 1 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the edited pipeline was not applied within 10 s");
        n += 1;
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_rebuild_command_follows_the_server_job_to_its_report() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(&dir.path().join("data"), free_port(), &[]).await;
    let key = crate::process::app_key(&server.base, "shop", &["write"]).await;
    let now = chrono_like_now_ms();
    let views: Vec<_> = (0..20).map(|i| json!({"id": format!("v{i}"), "user": format!("u{}", i % 4), "action": "view", "target": {"type": "sku", "id": format!("{}", 500 + i)}, "time": now - 1000})).collect();
    let reply: serde_json::Value = reqwest::Client::new().post(format!("{}/v1/events", server.base)).bearer_auth(&key).json(&views).send().await.unwrap().json().await.unwrap();
    assert_eq!(reply["accepted"], 20);
    crate::process::wait_processed(&server.base).await;
    let base = server.base.clone();
    let output = tokio::task::spawn_blocking(move || {
        Command::new(binary()).args(["history", "rebuild", "--url", &base]).env("MERIDIAN_MASTER_KEY", crate::process::MASTER).output().unwrap()
    })
    .await
    .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!((report["owners"].as_u64(), report["entries"].as_u64()), (Some(4), Some(20)), "{report}");
    let wrong_key = Command::new(binary()).args(["history", "rebuild", "--url", &server.base]).env("MERIDIAN_MASTER_KEY", "nope").output().unwrap();
    assert!(!wrong_key.status.success());
    assert!(String::from_utf8_lossy(&wrong_key.stderr).contains("401"), "{}", String::from_utf8_lossy(&wrong_key.stderr));
}

fn chrono_like_now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_dir_keeps_the_state_backend_it_was_created_with() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut server = ServerProcess::start(&data, free_port(), &["--state-backend", "redb"]).await;
    assert!(server.terminate());
    assert!(data.join("state.redb").exists());
    // Without a choice, the server keeps the store the directory was created with.
    let mut server = ServerProcess::start(&data, free_port(), &[]).await;
    assert!(server.terminate());
    assert!(!data.join("state-fjall").exists(), "no second store beside the first");
    // Asking for the other one is refused, with what to do.
    let output = Command::new(binary())
        .args(["serve", "--listen", "127.0.0.1:0", "--state-backend", "fjall", "--data-dir"])
        .arg(&data)
        .env("MERIDIAN_MASTER_KEY", crate::process::MASTER)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("holds redb state") && stderr.contains("start with the backend it was created with"), "{stderr}");
    // Offline commands find the backend by themselves.
    let apps = Command::new(binary()).args(["apps", "create", "later", "--data-dir"]).arg(&data).output().unwrap();
    assert!(apps.status.success(), "{}", String::from_utf8_lossy(&apps.stderr));
    // A new data directory gets fjall.
    let fresh = dir.path().join("fresh");
    let mut server = ServerProcess::start(&fresh, free_port(), &[]).await;
    assert!(server.terminate());
    assert!(fresh.join("state-fjall").is_dir() && !fresh.join("state.redb").exists());
    let bad = Command::new(binary()).args(["serve", "--dev", "--state-backend", "sqlite", "--data-dir"]).arg(&data).output().unwrap();
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(stderr.contains("sqlite") && stderr.contains("`redb` or `fjall`") && stderr.contains("state.backend"), "{stderr}");
}

#[test]
fn config_check_prints_the_effective_config_masked_or_says_which_line_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("meridian.toml");
    std::fs::write(&file, "[server]\nmaster_key = \"super-secret-value\"\n[history]\nmax_items = 50\n").unwrap();
    let output = Command::new(binary()).args(["config", "check"]).arg(&file).env("MERIDIAN_LOG_PARTITIONS", "6").env_remove("MERIDIAN_MASTER_KEY").output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(!stdout.contains("super-secret-value"), "{stdout}");
    assert!(stdout.contains("master_key = \"********\""), "{stdout}");
    assert!(stdout.contains("[history]") && stdout.contains("max_items = 50"), "{stdout}");
    let log_section = stdout.split("[log]").nth(1).unwrap().split("\n\n").next().unwrap();
    assert!(log_section.contains("partitions = 6"), "the environment is applied: {log_section}");
    // Every section, so the printed config is a complete reference.
    for section in ["[server]", "[state]", "[log]", "[collector]", "[connect]", "[rate_limits]", "[tenancy]", "[catalog]", "[counters]", "[history]", "[notify]"] {
        assert!(stdout.contains(section), "{section} missing");
    }

    std::fs::write(&file, "[server]\nlisten = \"127.0.0.1:1\"\n\n[histroy]\nmax_items = 5\n").unwrap();
    let output = Command::new(binary()).args(["config", "check"]).arg(&file).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("meridian.toml") && stderr.contains("line 4") && stderr.contains("histroy"), "{stderr}");

    std::fs::write(&file, "[history]\ncold_ttl_days = 0\n").unwrap();
    let output = Command::new(binary()).args(["config", "check"]).arg(&file).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success() && stderr.contains("history.cold_ttl_days"), "{stderr}");
    let output = Command::new(binary()).args(["config", "check"]).arg(&file).env("MERIDIAN_HISTORY_COLD_TTL_DAYS", "lots").output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success() && stderr.contains("MERIDIAN_HISTORY_COLD_TTL_DAYS"), "{stderr}");

    // A connection whose pings could never be answered in time is refused, naming the field.
    std::fs::write(&file, "[connect]\nheartbeat_secs = 30\nidle_timeout_secs = 20\n").unwrap();
    let output = Command::new(binary()).args(["config", "check"]).arg(&file).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success() && stderr.contains("connect.idle_timeout_secs") && stderr.contains("heartbeat_secs"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_created_offline_sign_in_and_disabled_ones_cannot() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let run = |args: &[&str], password: Option<&str>| {
        let mut command = Command::new(binary());
        command.args(args).arg("--data-dir").arg(&data);
        if let Some(p) = password {
            command.env("MERIDIAN_OPERATOR_PASSWORD", p);
        }
        let output = command.output().unwrap();
        assert!(output.status.success(), "{args:?}: {}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8(output.stdout).unwrap()
    };
    run(&["apps", "create", "shop"], None);
    run(&["operators", "create", "ann", "--role", "admin@shop", "--name", "Ann"], Some("a long password"));
    run(&["operators", "create", "bob", "--role", "viewer"], Some("another long one"));
    let list = run(&["operators", "list"], None);
    assert!(list.contains("ann\tAnn\tadmin@shop\tenabled") && list.contains("bob\tbob\tviewer\tenabled"), "{list}");
    let weak = Command::new(binary()).args(["operators", "create", "cy", "--role", "viewer", "--data-dir"]).arg(&data).env("MERIDIAN_OPERATOR_PASSWORD", "short").output().unwrap();
    assert!(!weak.status.success() && String::from_utf8_lossy(&weak.stderr).contains("at least 10"), "{}", String::from_utf8_lossy(&weak.stderr));
    run(&["operators", "disable", "bob"], None);

    let server = ServerProcess::start(&data, free_port(), &[]).await;
    let client = reqwest::Client::new();
    let login = |who: &str, password: &str| client.post(format!("{}/v1/session", server.base)).json(&json!({"login": who, "password": password})).send();
    let ann = login("ann", "a long password").await.unwrap();
    assert_eq!(ann.status(), 200);
    let bob = login("bob", "another long one").await.unwrap();
    assert_eq!(bob.status(), 403, "a disabled operator cannot sign in");
    let audit: serde_json::Value = client.get(format!("{}/v1/audit?action=operator.", server.base)).bearer_auth(crate::process::MASTER).send().await.unwrap().json().await.unwrap();
    let actions: Vec<&str> = audit["entries"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(actions, vec!["operator.disable", "operator.create", "operator.create"], "the CLI's changes are audited as the system");
    assert_eq!(audit["entries"][0]["actor"], "system");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_server_on_the_same_data_directory_is_refused_naming_the_first() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let first = ServerProcess::start(&data, free_port(), &[]).await;
    let second = Command::new(binary())
        .args(["serve", "--listen", &format!("127.0.0.1:{}", free_port()), "--data-dir"])
        .arg(&data)
        .env("MERIDIAN_MASTER_KEY", crate::process::MASTER)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(!second.status.success(), "the second server started: {stderr}");
    assert!(stderr.contains(&format!("in use by process {}", first.child.id())), "{stderr}");
    // The first one is unharmed.
    let ready = reqwest::get(format!("{}/readyz", first.base)).await.unwrap();
    assert_eq!(ready.status(), 200);
}
