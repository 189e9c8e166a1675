//! Crash safety: the server is SIGKILLed under load, twice. After restart every
//! acknowledged event is in the log exactly once, and the counters processor's counts
//! equal the events in the log.

use crate::process::{app_key, free_port, stored_ids, wait_processed, ServerProcess};
use serde_json::{json, Value};
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Default)]
struct Ledger {
    acked: HashSet<String>,
    unacked: Vec<Vec<Value>>,
}

fn batch(task: usize, seq: usize, round: usize) -> Vec<Value> {
    const ACTIONS: [&str; 4] = ["view", "click", "cart", "order"];
    (0..50)
        .map(|i| {
            let action = ACTIONS[i % 4];
            json!({"id": format!("r{round}-t{task}-s{seq}-{i}"), "user": format!("u{}", (task * 7919 + seq * 31 + i) % 500), "action": action,
                   "target": {"type": "sku", "id": format!("{}", i * 13 % 97)}})
        })
        .collect()
}

async fn send(client: &reqwest::Client, base: &str, key: &str, events: &[Value]) -> Result<Value, String> {
    let r = client.post(format!("{base}/v1/events")).bearer_auth(key).json(events).send().await.map_err(|e| e.to_string())?;
    if !r.status().is_success() {
        return Err(format!("status {}", r.status()));
    }
    r.json().await.map_err(|e| e.to_string())
}

/// Loads the server with 4 concurrent senders until `stop`; acknowledged ids go to the
/// ledger, batches without an answer are kept for a retry.
async fn load(base: String, key: String, round: usize, ledger: Arc<Mutex<Ledger>>, stop: Arc<AtomicBool>) {
    let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
    let mut tasks = Vec::new();
    for task in 0..4 {
        let (base, key, ledger, stop, client) = (base.clone(), key.clone(), ledger.clone(), stop.clone(), client.clone());
        tasks.push(tokio::spawn(async move {
            let mut seq = 0;
            while !stop.load(Ordering::SeqCst) {
                let events = batch(task, seq, round);
                seq += 1;
                match send(&client, &base, &key, &events).await {
                    Ok(report) => {
                        assert_eq!(report["rejected"], 0, "{report}");
                        let mut ledger = ledger.lock().unwrap();
                        for result in report["results"].as_array().unwrap() {
                            assert_eq!(result["status"], "accepted", "{result}");
                            ledger.acked.insert(result["id"].as_str().unwrap().to_owned());
                        }
                    }
                    Err(_) => {
                        ledger.lock().unwrap().unacked.push(events);
                        return;
                    }
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_under_load_loses_nothing_acknowledged_and_counts_nothing_twice() {
    crash_run(&[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_holds_with_the_redb_state_store() {
    crash_run(&["--state-backend", "redb"]).await;
}

/// Two rounds of: load from 4 senders → SIGKILL → restart → retry what was not
/// acknowledged. Then every acknowledged event must be in the log exactly once and the
/// counters processor's total must equal the events in the log.
async fn crash_run(backend: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let port = free_port();
    let mut server = ServerProcess::start(&data, port, backend).await;
    let key = app_key(&server.base, "crash", &["write", "read"]).await;
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let mut retried: HashSet<String> = HashSet::new();
    for round in 0..2 {
        let stop = Arc::new(AtomicBool::new(false));
        let loader = tokio::spawn(load(server.base.clone(), key.clone(), round, ledger.clone(), stop.clone()));
        // Kill under load, once this round has had enough acknowledged to mean something.
        let enough = 1000 * (round + 1) + 500;
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while ledger.lock().unwrap().acked.len() < enough {
            assert!(std::time::Instant::now() < deadline, "fewer than {enough} events acknowledged within 60 s");
            assert!(!loader.is_finished(), "the senders stopped before the kill");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        server.kill9();
        stop.store(true, Ordering::SeqCst);
        loader.await.unwrap();
        let acked_so_far = ledger.lock().unwrap().acked.len();
        assert!(acked_so_far > 1000 * (round + 1), "the load was too light to mean anything: {acked_so_far} acknowledged");

        server = ServerProcess::start(&data, port, backend).await;
        // Clients retry what was not acknowledged, with the same ids.
        let unacked = std::mem::take(&mut ledger.lock().unwrap().unacked);
        let client = reqwest::Client::new();
        for events in unacked {
            let report = send(&client, &server.base, &key, &events).await.unwrap();
            assert_eq!(report["rejected"], 0, "{report}");
            for result in report["results"].as_array().unwrap() {
                let status = result["status"].as_str().unwrap();
                assert!(status == "accepted" || status == "duplicate", "{result}");
                retried.insert(result["id"].as_str().unwrap().to_owned());
            }
        }
    }
    let status = wait_processed(&server.base).await;
    let client = reqwest::Client::new();
    let counters: Value = client.get(format!("{}/v1/apps/crash/counters", server.base)).bearer_auth(&key).send().await.unwrap().json().await.unwrap();
    assert!(server.terminate(), "graceful shutdown exits cleanly");

    // Read the log directly, with the server stopped.
    let seen = stored_ids(&data);
    let ledger = ledger.lock().unwrap();
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "events stored more than once: {:?}", &twice[..twice.len().min(5)]);
    let missing: Vec<_> = ledger.acked.iter().filter(|id| !seen.contains_key(*id)).collect();
    assert!(missing.is_empty(), "{} acknowledged events lost, e.g. {:?}", missing.len(), &missing[..missing.len().min(5)]);
    let unexpected: Vec<_> = seen.keys().filter(|id| !ledger.acked.contains(*id) && !retried.contains(*id)).collect();
    assert!(unexpected.is_empty(), "events nobody sent: {unexpected:?}");
    assert_eq!(counters["total"].as_u64().unwrap() as usize, seen.len(), "counter total equals the events in the log ({status})");
    let per_action: u64 = counters["by_action"].as_object().unwrap().values().map(|v| v.as_u64().unwrap()).sum();
    assert_eq!(per_action as usize, seen.len());
    eprintln!("crash test {backend:?}: {} acknowledged, {} retried, {} stored, counters {}", ledger.acked.len(), retried.len(), seen.len(), counters["total"]);
}
