//! Erasure receipts: written with the round that removed the data (a failed round leaves
//! none), read back per erasure id, kept across a restart and a rebuild.

use crate::support::{append_input, caught_up, env, eventually, input_topic};
use bytes::Bytes;
use meridian_event::Event;
use meridian_log::{AppendRecord, Log, Record, TopicName};
use meridian_runtime::{ProcessContext, Processor, Runtime, RuntimeConfig, RuntimeError};
use meridian_state::{KvStore, WriteBatch};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

const ERASER_TABLE: &str = "test_eraser";

/// Counts events per user; an erasure record (`{"id": …, "erase_user": …}`) removes the
/// user's count and reports it in a receipt with the attempt number. Optionally fails its
/// first erasure attempt after writing the receipt.
struct Eraser {
    name: String,
    attempts: Arc<AtomicUsize>,
    fail_first_erasure: bool,
    /// This round's changes: user → new count (None = removed).
    pending: HashMap<String, Option<u64>>,
}

impl Eraser {
    fn new(name: &str, fail_first_erasure: bool) -> Eraser {
        Eraser { name: name.into(), attempts: Arc::new(AtomicUsize::new(0)), fail_first_erasure, pending: HashMap::new() }
    }

    fn key(&self, user: &str) -> Vec<u8> {
        format!("{}/{user}", self.name).into_bytes()
    }

    fn current(&self, store: &dyn KvStore, user: &str) -> Option<u64> {
        match self.pending.get(user) {
            Some(pending) => *pending,
            None => store.get(ERASER_TABLE, &self.key(user)).unwrap().map(|v| u64::from_be_bytes(v.try_into().unwrap())),
        }
    }
}

impl Processor for Eraser {
    fn name(&self) -> &str {
        &self.name
    }
    fn topics(&self) -> Vec<TopicName> {
        vec![input_topic()]
    }
    fn process(&mut self, ctx: &mut ProcessContext<'_>, _topic: &TopicName, records: &[Record]) -> meridian_runtime::Result<()> {
        for record in records {
            if record.value.first() == Some(&b'{') {
                let erasure: Value = serde_json::from_slice(&record.value).unwrap();
                let user = erasure["erase_user"].as_str().unwrap();
                let removed = self.current(ctx.store(), user).unwrap_or(0);
                let attempt = self.attempts.fetch_add(1, Ordering::SeqCst) + 1;
                ctx.erasure_receipt(erasure["id"].as_str().unwrap(), json!({"user": user, "events": removed, "attempt": attempt}))?;
                self.pending.insert(user.to_owned(), None);
                if self.fail_first_erasure && attempt == 1 {
                    return Err(RuntimeError::Processor { processor: self.name.clone(), message: "injected failure after the receipt".into() });
                }
            } else {
                let user = Event::decode(&record.value).unwrap().user.unwrap().as_str().to_owned();
                let count = self.current(ctx.store(), &user).unwrap_or(0) + 1;
                self.pending.insert(user, Some(count));
            }
        }
        Ok(())
    }
    fn end_of_round(&mut self, ctx: &mut ProcessContext<'_>) -> meridian_runtime::Result<()> {
        for (user, count) in std::mem::take(&mut self.pending) {
            let key = self.key(&user);
            match count {
                Some(n) => ctx.batch().put(ERASER_TABLE, key, n.to_be_bytes().to_vec()),
                None => ctx.batch().delete(ERASER_TABLE, key),
            }
        }
        Ok(())
    }
    fn reset_cache(&mut self) {
        self.pending.clear();
    }
    fn clear_state(&mut self, batch: &mut WriteBatch) {
        batch.delete_prefix(ERASER_TABLE, format!("{}/", self.name).into_bytes());
    }
}

fn erasure_record(id: &str, user: &str) -> AppendRecord {
    AppendRecord { key: Bytes::from(user.to_owned()), value: Bytes::from(json!({"id": id, "erase_user": user}).to_string()), timestamp: 0 }
}

fn count(store: &dyn KvStore, processor: &str, user: &str) -> Option<u64> {
    store.get(ERASER_TABLE, format!("{processor}/{user}").as_bytes()).unwrap().map(|v| u64::from_be_bytes(v.try_into().unwrap()))
}

/// Receipts as (processor, receipt without its attempt number).
fn without_attempts(receipts: &[(String, Value)]) -> Vec<(&str, Value)> {
    receipts
        .iter()
        .map(|(processor, receipt)| {
            let mut receipt = receipt.clone();
            receipt.as_object_mut().unwrap().remove("attempt");
            (processor.as_str(), receipt)
        })
        .collect()
}

fn runtime_over(e: &crate::support::Env) -> Runtime {
    // Large rounds: an erasure and the events after it are often handled in one round.
    let config = RuntimeConfig { max_batch_records: 64, idle_wait: Duration::from_millis(10), ..RuntimeConfig::default() };
    Runtime::new(e.log.clone(), e.store.clone(), config)
}

#[test]
fn erasure_receipts_commit_with_the_round_and_survive_restart_and_rebuild() {
    let e = env();
    append_input(&e.log, 0, 40);
    futures::executor::block_on(e.log.append(&input_topic(), vec![erasure_record("erase-1", "u1")])).unwrap();
    append_input(&e.log, 40, 60);
    futures::executor::block_on(e.log.append(&input_topic(), vec![erasure_record("erase-10", "u10")])).unwrap();

    let rt = runtime_over(&e);
    assert_eq!(rt.erasure_receipts("erase-1").unwrap(), Vec::new(), "no receipt before any round");
    let flaky = Eraser::new("eraser-a", true);
    let flaky_attempts = flaky.attempts.clone();
    rt.spawn(Box::new(flaky)).unwrap();
    rt.spawn(Box::new(Eraser::new("eraser-b", false))).unwrap();
    assert!(eventually(Duration::from_secs(20), || caught_up(&rt)));

    // u1 had 3 events (1, 14, 27) before its erasure and 2 (40, 53) after; u10 had 4.
    let erase_1 = rt.erasure_receipts("erase-1").unwrap();
    let erase_10 = rt.erasure_receipts("erase-10").unwrap();
    assert_eq!(without_attempts(&erase_1), vec![("eraser-a", json!({"user": "u1", "events": 3})), ("eraser-b", json!({"user": "u1", "events": 3}))]);
    assert_eq!(without_attempts(&erase_10), vec![("eraser-a", json!({"user": "u10", "events": 4})), ("eraser-b", json!({"user": "u10", "events": 4}))]);
    // eraser-a's first erasure attempt (whichever erasure its round reached first) wrote a
    // receipt and failed: that receipt was never committed.
    let mut attempts_a = vec![erase_1[0].1["attempt"].as_u64().unwrap(), erase_10[0].1["attempt"].as_u64().unwrap()];
    attempts_a.sort();
    assert_eq!(attempts_a, vec![2, 3], "the failed attempt's receipt was not committed");
    assert_eq!(rt.erasure_receipts("erase-2").unwrap(), Vec::new());
    assert_eq!(count(&*e.store, "eraser-a", "u1"), Some(2));
    assert_eq!(count(&*e.store, "eraser-a", "u10"), None);
    rt.shutdown();
    drop(rt);

    // A restart reads them back; a rebuild clears the processor's state but not its
    // receipts, and its replay of the erasure does not overwrite the original receipt.
    let rt = runtime_over(&e);
    assert_eq!(rt.erasure_receipts("erase-1").unwrap(), erase_1);
    let again = Eraser { attempts: flaky_attempts.clone(), ..Eraser::new("eraser-a", false) };
    rt.spawn(Box::new(again)).unwrap();
    assert!(eventually(Duration::from_secs(20), || caught_up(&rt)));
    rt.rebuild("eraser-a").unwrap();
    assert!(eventually(Duration::from_secs(20), || caught_up(&rt) && count(&*e.store, "eraser-a", "u1") == Some(2)));
    assert!(flaky_attempts.load(Ordering::SeqCst) >= 5, "the replay handled both erasures again");
    assert_eq!(count(&*e.store, "eraser-a", "u0"), Some(5), "the state was rebuilt from the start");
    assert_eq!(rt.erasure_receipts("erase-1").unwrap(), erase_1);
    assert_eq!(rt.erasure_receipts("erase-10").unwrap(), erase_10);
    rt.shutdown();
}
