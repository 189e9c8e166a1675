//! Measures `EmbeddedLog` append throughput: 16 concurrent tokio tasks appending batches
//! of 100 records with ~200-byte values, every batch fsync'd before it is acknowledged.
//!
//! Usage: `cargo run --release -p meridian-log --example append_throughput [seconds] [partitions] [dir]`
//! (`BENCH_FSYNC=0` turns fsync off, to see the CPU-bound ceiling).

use bytes::Bytes;
use meridian_log::embedded::{EmbeddedLog, EmbeddedLogConfig};
use meridian_log::{AppendRecord, Log, TopicName};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const TASKS: u64 = 16;
const BATCH: u64 = 100;
const VALUE_BYTES: usize = 200;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let seconds: f64 = args.get(1).map(|s| s.parse()).transpose()?.unwrap_or(5.0);
    let partitions: u32 = args.get(2).map(|s| s.parse()).transpose()?.unwrap_or(8);
    let tmp = tempfile::tempdir()?;
    let dir = args.get(3).map(std::path::PathBuf::from).unwrap_or_else(|| tmp.path().to_path_buf());
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let fsync = std::env::var("BENCH_FSYNC").map(|v| v != "0").unwrap_or(true);
    let log: Arc<dyn Log> = EmbeddedLog::open(&dir, EmbeddedLogConfig { fsync, ..EmbeddedLogConfig::default() })?;
    let topic = TopicName::new("bench")?;
    log.ensure_topic(&topic, partitions)?;
    let appended = Arc::new(AtomicU64::new(0));
    let batches = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let started = Instant::now();
    runtime.block_on(async {
        let mut tasks = Vec::new();
        for task in 0..TASKS {
            let (log, topic, appended, batches) = (log.clone(), topic.clone(), appended.clone(), batches.clone());
            tasks.push(tokio::spawn(async move {
                let value = Bytes::from(vec![b'v'; VALUE_BYTES]);
                let mut seq = 0u64;
                while Instant::now() < deadline {
                    let records = (0..BATCH)
                        .map(|i| AppendRecord {
                            key: Bytes::from(format!("user-{}", (task * 7919 + seq * BATCH + i) % 10_000)),
                            value: value.clone(),
                            timestamp: 1_700_000_000_000,
                        })
                        .collect();
                    seq += 1;
                    match log.append(&topic, records).await {
                        Ok(p) => {
                            appended.fetch_add(p.len() as u64, Ordering::Relaxed);
                            batches.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(meridian_log::LogError::Overloaded { .. }) => tokio::task::yield_now().await,
                        Err(e) => panic!("append failed: {e}"),
                    }
                }
            }));
        }
        for t in tasks {
            t.await.expect("task");
        }
    });
    let elapsed = started.elapsed().as_secs_f64();
    log.close()?;
    let n = appended.load(Ordering::Relaxed);
    let b = batches.load(Ordering::Relaxed);
    println!(
        "{n} records in {b} batches over {elapsed:.2} s: {:.0} records/s, {:.1} MB/s of values ({TASKS} tasks, {BATCH}-record batches, {partitions} partitions, fsync {fsync})",
        n as f64 / elapsed,
        (n as f64 * VALUE_BYTES as f64) / elapsed / 1e6
    );
    Ok(())
}
