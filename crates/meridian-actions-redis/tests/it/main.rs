//! Integration tests of the Redis profile store against a real server (127.0.0.1:6379, or
//! `MERIDIAN_REDIS_URL`; the test that flushes the script cache starts a private
//! `redis-server`). Every store lives under a key prefix of its own, deleted afterwards
//! (even when the test fails). Without a server the tests print "SKIPPED: …" and pass,
//! unless `MERIDIAN_REQUIRE_BACKENDS=1`.

use meridian_actions::{Error, ProfileStore, UserKey, UserWrite};
use meridian_actions_redis::RedisProfileStore;
use meridian_event::AppId;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

fn url() -> String {
    std::env::var("MERIDIAN_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

fn require_backends() -> bool {
    std::env::var("MERIDIAN_REQUIRE_BACKENDS").as_deref() == Ok("1")
}

/// `meridian-test:{pid}:{nanos}:{n}:` — unique per store, so tests never share keys.
fn unique_prefix() -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    format!("meridian-test:{}:{nanos}:{}:", std::process::id(), N.fetch_add(1, Ordering::SeqCst))
}

/// Deletes the keys of every store it made when dropped (also when a test panics).
struct Stores {
    url: String,
    made: Arc<Mutex<Vec<Arc<RedisProfileStore>>>>,
}

impl Stores {
    /// A guard over `url`, or None (with a loud line) when Redis is absent there.
    fn new(url: String) -> Option<Stores> {
        match RedisProfileStore::connect(&url, &unique_prefix()) {
            Ok(_) => Some(Stores { url, made: Arc::default() }),
            Err(e) => {
                if require_backends() {
                    panic!("redis required (MERIDIAN_REQUIRE_BACKENDS=1) but unreachable at {url}: {e}");
                }
                eprintln!("\n!!!!!!!!!! SKIPPED: redis absent ({url}: {e}); CI sets MERIDIAN_REQUIRE_BACKENDS=1 and fails instead !!!!!!!!!!\n");
                None
            }
        }
    }

    fn shared() -> Option<Stores> {
        Stores::new(url())
    }

    /// A fresh, empty store under a new prefix.
    fn make(&self) -> Arc<RedisProfileStore> {
        let store = Arc::new(RedisProfileStore::connect(&self.url, &unique_prefix()).expect("redis reachable"));
        self.made.lock().unwrap().push(store.clone());
        store
    }

    /// Deletes every made store's keys now; returns how many.
    fn cleanup(&self) -> u64 {
        self.made.lock().unwrap().drain(..).map(|s| s.delete_all().expect("delete test keys")).sum()
    }
}

impl Drop for Stores {
    fn drop(&mut self) {
        for s in self.made.lock().map(|mut m| std::mem::take(&mut *m)).unwrap_or_default() {
            let _ = s.delete_all();
        }
    }
}

/// The boxed store the conformance suite takes, sharing the guard's store.
#[derive(Debug)]
struct Shared(Arc<RedisProfileStore>);

impl ProfileStore for Shared {
    fn read_many(&self, users: &[UserKey]) -> meridian_actions::Result<Vec<meridian_actions::Fields>> {
        self.0.read_many(users)
    }
    fn read_field(&self, user: &UserKey, field: &str) -> meridian_actions::Result<Option<Vec<u8>>> {
        self.0.read_field(user, field)
    }
    fn stage(&self, batch: &mut meridian_state::WriteBatch, writes: &mut [UserWrite]) -> bool {
        self.0.stage(batch, writes)
    }
    fn apply(&self, writes: &[UserWrite]) -> meridian_actions::Result<()> {
        self.0.apply(writes)
    }
    fn users(&self, app: &AppId, after: Option<&str>, limit: usize) -> meridian_actions::Result<Vec<String>> {
        self.0.users(app, after, limit)
    }
    fn backend(&self) -> &'static str {
        self.0.backend()
    }
}

fn key(app: &str, user: &str) -> UserKey {
    UserKey::new(AppId::new(app).unwrap(), user)
}

fn set(user: &UserKey, fields: &[(&str, &[u8])]) -> UserWrite {
    UserWrite { set: fields.iter().map(|(f, v)| (f.to_string(), v.to_vec())).collect(), ..UserWrite::new(user.clone()) }
}

#[test]
fn redis_passes_the_profile_store_conformance_suite() {
    let Some(stores) = Stores::shared() else { return };
    meridian_actions::conformance::run_all(&mut || Box::new(Shared(stores.make())));
    assert!(stores.cleanup() > 0, "the suite wrote keys under its prefixes");
}

#[test]
fn a_round_of_a_thousand_users_is_one_pipeline_and_reads_back() {
    let Some(stores) = Stores::shared() else { return };
    let store = stores.make();
    let users: Vec<UserKey> = (0..1000).map(|i| key("bulk", &format!("user:{i:04}"))).collect();
    let round: Vec<UserWrite> = users
        .iter()
        .enumerate()
        .flat_map(|(i, u)| {
            // Two writes per user in one round: folded into one script call each.
            [set(u, &[("m", format!("meta{i}").as_bytes()), ("a:old", b"x")]), UserWrite { remove: vec!["a:old".into()], ..set(u, &[("a:n", &(i as u64).to_le_bytes())]) }]
        })
        .collect();
    store.apply(&round).unwrap();
    store.apply(&round).unwrap();
    let read = store.read_many(&users).unwrap();
    assert_eq!(read.len(), 1000);
    for (i, fields) in read.iter().enumerate() {
        assert_eq!(fields, &vec![("a:n".to_owned(), (i as u64).to_le_bytes().to_vec()), ("m".to_owned(), format!("meta{i}").into_bytes())], "user {i}");
    }
    let app = AppId::new("bulk").unwrap();
    let mut listed = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = store.users(&app, after.as_deref(), 300).unwrap();
        if page.is_empty() {
            break;
        }
        after = page.last().cloned();
        listed.extend(page);
    }
    assert_eq!(listed, users.iter().map(|u| u.user.clone()).collect::<Vec<_>>(), "every user once, in id order, paged");
    // Erase every other user in one round.
    let erase: Vec<UserWrite> = users.iter().step_by(2).map(|u| UserWrite { clear: true, ..UserWrite::new(u.clone()) }).collect();
    store.apply(&erase).unwrap();
    assert_eq!(store.users(&app, None, usize::MAX).unwrap().len(), 500);
    assert!(store.read_many(&users[..2]).unwrap()[0].is_empty());
    assert_eq!(store.read_many(&users[..2]).unwrap()[1].len(), 2);
    assert_eq!(stores.cleanup(), 500 + 1, "500 hashes and the app's users set");
}

#[test]
fn the_users_set_follows_whether_a_user_has_fields() {
    let Some(stores) = Stores::shared() else { return };
    let store = stores.make();
    let app = AppId::new("shop").unwrap();
    // Ids with ':' and ids shaped like key tails.
    let ids = [":", "sers", "u", "u:1", "users"];
    for id in ids {
        store.apply(&[set(&key("shop", id), &[("m", id.as_bytes())])]).unwrap();
    }
    assert_eq!(store.users(&app, None, 10).unwrap(), ids.to_vec());
    for id in ids {
        assert_eq!(store.read_field(&key("shop", id), "m").unwrap().as_deref(), Some(id.as_bytes()), "{id}");
    }
    // Removing the last field, clearing, and clearing-then-setting.
    store.apply(&[UserWrite { remove: vec!["m".into(), "absent".into()], ..UserWrite::new(key("shop", "u")) }]).unwrap();
    store.apply(&[UserWrite { clear: true, ..UserWrite::new(key("shop", "u:1")) }]).unwrap();
    store.apply(&[UserWrite { clear: true, ..set(&key("shop", ":"), &[("a:1", b"z")]) }]).unwrap();
    assert_eq!(store.users(&app, None, 10).unwrap(), vec![":", "sers", "users"]);
    assert_eq!(store.users(&app, Some(":"), 1).unwrap(), vec!["sers"]);
    assert_eq!(store.read_many(&[key("shop", ":")]).unwrap(), vec![vec![("a:1".to_owned(), b"z".to_vec())]]);
    // A user who gains fields again is listed again; a remove of a field never set is harmless.
    store.apply(&[set(&key("shop", "u"), &[("m", b"back")]), UserWrite { remove: vec!["zz".into()], ..UserWrite::new(key("shop", "new")) }]).unwrap();
    assert_eq!(store.users(&app, None, 10).unwrap(), vec![":", "sers", "u", "users"]);
    assert_eq!(store.backend(), "redis");
    assert!(!store.stage(&mut meridian_state::WriteBatch::new(), &mut [set(&key("shop", "x"), &[("m", b"1")])]), "not transactional with the state store");
    assert_eq!(store.read_field(&key("shop", "x"), "m").unwrap(), None, "stage wrote nothing");
    stores.cleanup();
}

#[test]
fn keys_on_the_server_have_the_documented_shape() {
    let Some(stores) = Stores::shared() else { return };
    let store = stores.make();
    let u = key("shop", "u:7");
    store.apply(&[set(&u, &[("m", b"1")])]).unwrap();
    let mut con = redis::Client::open(url()).unwrap().get_connection().unwrap();
    let hash: String = redis::cmd("TYPE").arg(store.user_key(&u)).query(&mut con).unwrap();
    let set: String = redis::cmd("TYPE").arg(store.users_key(&u.app)).query(&mut con).unwrap();
    assert_eq!((hash.as_str(), set.as_str()), ("hash", "zset"));
    assert!(store.user_key(&u).ends_with(b"shop:u:u:7"));
    assert_eq!(store.delete_all().unwrap(), 2);
    assert!(store.users(&u.app, None, 10).unwrap().is_empty());
}

#[test]
fn connecting_to_a_closed_port_fails_fast_with_a_clear_error() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let started = std::time::Instant::now();
    let err = RedisProfileStore::connect(&format!("redis://:hunter2@127.0.0.1:{port}"), "p:").unwrap_err();
    assert!(started.elapsed() < std::time::Duration::from_secs(5), "fails within the connect timeout");
    let msg = err.to_string();
    assert!(matches!(err, Error::Backend(_)), "{err:?}");
    assert!(msg.contains(&format!("redis at redis://***@127.0.0.1:{port} is unreachable")), "{msg}");
    assert!(!msg.contains("hunter2"), "no password in messages: {msg}");
    let err = RedisProfileStore::connect("not a url", "p:").unwrap_err();
    assert!(err.to_string().contains("invalid URL"), "{err}");
}

/// A Redis server of this test's own (`redis-server` on a free port, no persistence),
/// stopped on drop: what a test does to it (flushing its script cache) touches no one else.
struct PrivateRedis {
    child: std::process::Child,
    url: String,
}

impl PrivateRedis {
    /// Starts one, or None (with a loud line) when `redis-server` is not installed.
    fn start() -> Option<PrivateRedis> {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = match std::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .spawn()
        {
            Ok(child) => child,
            Err(e) => {
                if require_backends() {
                    panic!("redis-server required (MERIDIAN_REQUIRE_BACKENDS=1) but cannot be started: {e}");
                }
                eprintln!("\n!!!!!!!!!! SKIPPED: redis-server is absent ({e}); install it — CI sets MERIDIAN_REQUIRE_BACKENDS=1 and fails instead !!!!!!!!!!\n");
                return None;
            }
        };
        let redis = PrivateRedis { child, url: format!("redis://127.0.0.1:{port}") };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let ping = redis::Client::open(redis.url.as_str()).and_then(|c| c.get_connection()).and_then(|mut con| redis::cmd("PING").query::<String>(&mut con));
            if ping.is_ok() {
                return Some(redis);
            }
            assert!(std::time::Instant::now() < deadline, "redis-server on {} did not answer within 10 s: {ping:?}", redis.url);
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_lost_script_cache_falls_back_to_eval() {
    // SCRIPT FLUSH empties the script cache of the whole server: on a private one, so
    // tests using the shared server keep theirs.
    let Some(redis) = PrivateRedis::start() else { return };
    let stores = Stores::new(redis.url.clone()).expect("private redis reachable");
    let store = stores.make();
    let mut con = redis::Client::open(redis.url.as_str()).unwrap().get_connection().unwrap();
    redis::cmd("SCRIPT").arg("FLUSH").query::<()>(&mut con).unwrap();
    let (a, b) = (key("app", "a"), key("app", "b"));
    store.apply(&[set(&a, &[("m", b"1")]), set(&b, &[("m", b"2")])]).unwrap();
    assert_eq!(store.read_many(&[a.clone(), b.clone()]).unwrap(), vec![vec![("m".to_owned(), b"1".to_vec())], vec![("m".to_owned(), b"2".to_vec())]]);
    let cached: Vec<bool> = redis::cmd("SCRIPT").arg("EXISTS").arg(redis::Script::new(meridian_actions_redis::PROFILE_SCRIPT).get_hash()).query(&mut con).unwrap();
    assert_eq!(cached, vec![true], "EVAL cached the script again");
    store.apply(&[set(&a, &[("m", b"3")])]).unwrap();
    assert_eq!(store.read_field(&a, "m").unwrap().as_deref(), Some(&b"3"[..]));
    assert_eq!(stores.cleanup(), 3);
}

#[test]
fn a_server_that_goes_away_gives_clear_backend_errors() {
    let Some(redis) = PrivateRedis::start() else { return };
    let url = redis.url.clone();
    let store = RedisProfileStore::connect(&url, &unique_prefix()).unwrap();
    let u = key("app", "a");
    store.apply(&[set(&u, &[("m", b"1")])]).unwrap();
    drop(redis);
    let err = store.read_field(&u, "m").unwrap_err();
    assert!(matches!(err, Error::Backend(_)), "{err:?}");
    assert!(err.to_string().contains(&format!("redis at {url}")), "{err}");
    let err = store.apply(&[set(&u, &[("m", b"2")])]).unwrap_err();
    assert!(err.to_string().contains("unreachable") || err.to_string().contains("apply profile writes"), "{err}");
}

/// Fails its first `apply` calls (Redis unreachable after the round committed), then
/// passes them on.
#[derive(Debug)]
struct FlakyApply {
    inner: Arc<RedisProfileStore>,
    failures_left: std::sync::atomic::AtomicUsize,
}

impl ProfileStore for FlakyApply {
    fn read_many(&self, users: &[meridian_actions::UserKey]) -> meridian_actions::Result<Vec<meridian_actions::Fields>> {
        self.inner.read_many(users)
    }
    fn read_field(&self, user: &meridian_actions::UserKey, field: &str) -> meridian_actions::Result<Option<Vec<u8>>> {
        self.inner.read_field(user, field)
    }
    fn stage(&self, batch: &mut meridian_state::WriteBatch, writes: &mut [meridian_actions::UserWrite]) -> bool {
        self.inner.stage(batch, writes)
    }
    fn apply(&self, writes: &[meridian_actions::UserWrite]) -> meridian_actions::Result<()> {
        use std::sync::atomic::Ordering;
        if self.failures_left.load(Ordering::SeqCst) > 0 {
            self.failures_left.fetch_sub(1, Ordering::SeqCst);
            return Err(meridian_actions::Error::Backend("injected: redis unreachable".into()));
        }
        self.inner.apply(writes)
    }
    fn users(&self, app: &meridian_event::AppId, after: Option<&str>, limit: usize) -> meridian_actions::Result<Vec<String>> {
        self.inner.users(app, after, limit)
    }
    fn backend(&self) -> &'static str {
        "redis"
    }
}

/// The processor over Redis: its writes go to Redis after each round commits (from a redo
/// record committed with the round); when Redis refuses them the round is retried from
/// the redo record, and every order is counted exactly once, as on the embedded store.
#[test]
fn the_processor_on_redis_counts_every_event_once_even_when_writes_fail() {
    let Some(stores) = Stores::shared() else { return };
    let redis = stores.make();
    let flaky = Arc::new(FlakyApply { inner: redis.clone(), failures_left: std::sync::atomic::AtomicUsize::new(3) });
    let dir = tempfile::tempdir().unwrap();
    let log = meridian_log::embedded::EmbeddedLog::open(dir.path().join("log"), meridian_log::embedded::EmbeddedLogConfig::default()).unwrap();
    use meridian_log::Log;
    for (t, p) in [("events", 3), ("segment-changes", 1), ("triggers", 1), ("notifications", 1)] {
        log.ensure_topic(&meridian_log::TopicName::new(t).unwrap(), p).unwrap();
    }
    let config = meridian_actions::ActionsConfig {
        aggregations: vec![meridian_actions::config::AggregationConfig {
            name: "orders".into(),
            kind: meridian_actions::AggregationKind::Count,
            of: None,
            prop: None,
            filter: Some(meridian_pipeline::ConditionConfig::Expr("action == \"order\"".into())),
            group: "default".into(),
            description: String::new(),
        }],
        triggers: vec![meridian_actions::config::TriggerConfig { name: "third".into(), when: "orders_30d >= 3".into(), webhook: false, description: String::new() }],
        ..Default::default()
    };
    let settings = meridian_actions::ProcessorSettings {
        events_topic: meridian_log::TopicName::new("events").unwrap(),
        segments_topic: meridian_log::TopicName::new("segment-changes").unwrap(),
        triggers_topic: meridian_log::TopicName::new("triggers").unwrap(),
        notifications_topic: meridian_log::TopicName::new("notifications").unwrap(),
    };
    let kv: Arc<dyn meridian_state::KvStore> = Arc::new(meridian_state::MemoryStore::new());
    let service = meridian_actions::ActionsService::new(config, flaky, kv.clone(), Arc::new(meridian_actions::FixedZone(chrono_tz::UTC)), Arc::new(meridian_actions::SystemClock), log.clone(), settings).unwrap();
    let now = meridian_event::Timestamp::now().millis();
    let records: Vec<meridian_log::AppendRecord> = (0..500)
        .map(|i| {
            let e = meridian_event::Event {
                id: meridian_event::EventId::new(format!("r{i}")).unwrap(),
                app: meridian_event::AppId::new("z").unwrap(),
                user: Some(meridian_event::UserId::new(format!("u{}", i % 25)).unwrap()),
                device: None,
                time: meridian_event::Timestamp(now - i * 1000),
                received: meridian_event::Timestamp(now),
                action: meridian_event::Action::new("order").unwrap(),
                target: None,
                context: Default::default(),
                props: Default::default(),
            };
            meridian_log::AppendRecord { key: bytes::Bytes::from(e.partition_key().to_owned()), value: bytes::Bytes::from(e.encode()), timestamp: now }
        })
        .collect();
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    for chunk in records.chunks(50) {
        rt.block_on(log.append(&meridian_log::TopicName::new("events").unwrap(), chunk.to_vec())).unwrap();
    }
    let runtime = meridian_runtime::Runtime::new(log.clone(), kv.clone(), meridian_runtime::RuntimeConfig { max_batch_records: 16, idle_wait: std::time::Duration::from_millis(5), ..Default::default() });
    for p in service.processors().unwrap() {
        runtime.spawn(Box::new(p)).unwrap();
    }
    assert!(runtime.wait_caught_up(std::time::Duration::from_secs(30)));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let app = meridian_event::AppId::new("z").unwrap();
    let total = || (0..25).map(|u| service.aggregate(&app, &format!("u{u}"), "orders", "all").unwrap().value.as_u64().unwrap()).sum::<u64>();
    while total() != 500 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(total(), 500, "every order once in Redis");
    let triggers = meridian_log::TopicName::new("triggers").unwrap();
    while runtime.status().iter().any(|s| s.outbox_pending > 0) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(log.read(&triggers, 0, 0, 1000, 1 << 20).unwrap().len(), 25, "one crossing per user");
    runtime.shutdown();
    stores.cleanup();
}
