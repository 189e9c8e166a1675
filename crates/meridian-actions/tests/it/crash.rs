//! Triggers exactly once across a SIGKILL in the middle of a round: a child process (this
//! test binary, re-executed) runs the actions processor and is killed after a round's
//! crossings went into its batch, before the commit. After a restart every crossing is in
//! the triggers and notifications topics exactly once.

use crate::*;
use meridian_runtime::testing::{sigkill_mid_round, StopAt, StopsMidRound};
use std::collections::HashMap;
use std::path::Path;

const CHILD_DIR: &str = "MERIDIAN_ACTIONS_CRASH_CHILD_DIR";
const TEST: &str = "crash::triggers_fire_exactly_once_across_a_sigkill_mid_round";
const USERS: usize = 30;
const ORDERS: usize = 600;

fn open(dir: &Path) -> (Arc<EmbeddedLog>, Arc<dyn KvStore>, ActionsService) {
    let log = open_log(dir);
    let store: Arc<dyn KvStore> = Arc::new(meridian_state::RedbStore::open(dir.join("state.redb")).unwrap());
    let service = service_on(&config(), store.clone(), log.clone(), Arc::new(ManualClock::at(now())));
    (log, store, service)
}

fn now() -> i64 {
    // Fixed per run (the child and the parent must agree): the start of this hour.
    real_now() / 3_600_000 * 3_600_000
}

fn runtime(log: &Arc<EmbeddedLog>, store: &Arc<dyn KvStore>) -> Runtime {
    Runtime::new(log.clone(), store.clone(), RuntimeConfig { max_batch_records: 16, idle_wait: Duration::from_millis(5), ..RuntimeConfig::default() })
}

fn child(dir: &Path) {
    let (log, store, service) = open(dir);
    let rt = runtime(&log, &store);
    let p = service.processors().unwrap().remove(0);
    rt.spawn(Box::new(StopsMidRound::new(Box::new(p), StopAt::EndOfRound(6)))).unwrap();
    std::thread::sleep(Duration::from_secs(60));
    panic!("the crash round was never reached");
}

#[test]
fn triggers_fire_exactly_once_across_a_sigkill_mid_round() {
    if let Ok(dir) = std::env::var(CHILD_DIR) {
        child(Path::new(&dir));
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    {
        let log = open_log(dir.path());
        let records: Vec<AppendRecord> = (0..ORDERS)
            .map(|n| {
                let e = Event {
                    id: EventId::new(format!("o{n}")).unwrap(),
                    app: AppId::new("z").unwrap(),
                    user: Some(UserId::new(format!("u{}", n * 7 % USERS)).unwrap()),
                    device: None,
                    time: Timestamp(now() - (n as i64 % 50) * 60_000),
                    received: Timestamp(now()),
                    action: Action::new(if (n / USERS).is_multiple_of(4) { "checkin" } else { "order" }).unwrap(),
                    target: None,
                    context: Default::default(),
                    props: serde_json::json!({"amount": 10}).as_object().cloned().unwrap(),
                };
                AppendRecord { key: Bytes::from(e.partition_key().to_owned()), value: Bytes::from(e.encode()), timestamp: now() }
            })
            .collect();
        futures_lite(log.append(&TopicName::new("events").unwrap(), records)).unwrap();
    }
    let killed = sigkill_mid_round(TEST, CHILD_DIR, dir.path());
    assert!(killed.in_round > 0, "killed with records in the open round");
    let (log, store, service) = open(dir.path());
    let rt = runtime(&log, &store);
    for p in service.processors().unwrap() {
        rt.spawn(Box::new(p)).unwrap();
    }
    assert!(rt.wait_caught_up(Duration::from_secs(30)));
    std::thread::sleep(Duration::from_millis(100));
    let read = |topic: &str| -> Vec<Value> {
        let t = TopicName::new(topic).unwrap();
        (0..log.partition_count(&t).unwrap()).flat_map(|p| log.read(&t, p, 0, 100_000, 64 << 20).unwrap()).map(|r| serde_json::from_slice(&r.value).unwrap()).collect()
    };
    let triggers = read("triggers");
    let mut per: HashMap<(String, String), usize> = HashMap::new();
    for t in &triggers {
        *per.entry((t["user"].as_str().unwrap().to_owned(), t["trigger"].as_str().unwrap().to_owned())).or_default() += 1;
    }
    // Every user orders more than 3 times within 30 days and checks in: one crossing each.
    for u in 0..USERS {
        for trig in ["third_order", "first_checkin"] {
            assert_eq!(per.get(&(format!("u{u}"), trig.to_owned())), Some(&1), "u{u} {trig}: exactly one record");
        }
    }
    assert_eq!(triggers.len(), USERS * 2, "no other crossing (no time passes)");
    let notes = read("notifications");
    assert_eq!(notes.len(), USERS * 2, "one webhook request per crossing");
    // And the counts are exact: every order once.
    let total: u64 = (0..USERS).map(|u| service.aggregate(&AppId::new("z").unwrap(), &format!("u{u}"), "orders", "all").unwrap().value.as_u64().unwrap()).sum();
    assert_eq!(total as usize, ORDERS - ORDERS / 4);
}

fn futures_lite<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
}
