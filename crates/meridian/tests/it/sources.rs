//! Sources against the real server and the real queues: a NATS JetStream stream and a
//! RabbitMQ queue added at run time, the server SIGKILLed mid-stream and restarted, every
//! message counted once, a poison message dead-lettered with its origin, the source
//! removed at run time (nothing more consumed); a file source resuming after a restart,
//! paused (nothing read, still paused after a restart) and resumed.

use crate::process::{app_key, free_port, skip_or_fail, stored_ids, ServerProcess, MASTER};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// Business messages (no event id: the source's message id becomes it), unique payloads.
fn messages(from: usize, n: usize) -> Vec<Vec<u8>> {
    (from..from + n).map(|i| json!({"user": format!("u{}", i % 50), "action": "order", "target": {"type": "sku", "id": format!("{i}")}, "props": {"n": i}}).to_string().into_bytes()).collect()
}

const POISON: &[u8] = b"not json {";

/// A suffix no other run uses (stream and queue names on the shared servers).
fn unique() -> u32 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos()
}

async fn admin(method: reqwest::Method, url: String, body: Option<Value>) -> (u16, Value) {
    let mut request = reqwest::Client::new().request(method, url).bearer_auth(MASTER);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let r = request.send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

/// The committed count of the app's events (the counters processor).
async fn counted(base: &str, key: &str) -> u64 {
    let r = reqwest::Client::new().get(format!("{base}/v1/apps/src/counters")).bearer_auth(key).send().await.unwrap();
    r.json::<Value>().await.unwrap()["total"].as_u64().unwrap_or(0)
}

async fn wait_counted(base: &str, key: &str, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let c = counted(base, key).await;
        if c >= n {
            assert_eq!(c, n, "more events than messages");
            return;
        }
        let (_, sources) = admin(reqwest::Method::GET, format!("{base}/v1/admin/sources"), None).await;
        assert!(Instant::now() < deadline, "only {c} of {n} events after 90 s: {sources}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn source_state(base: &str, name: &str) -> Value {
    let (_, list) = admin(reqwest::Method::GET, format!("{base}/v1/admin/sources"), None).await;
    list["sources"].as_array().unwrap().iter().find(|s| s["spec"]["name"] == name).map(|s| s["state"].clone()).unwrap_or(Value::Null)
}

/// A queue Meridian consumes, from the test's side.
trait Queue {
    async fn publish(&self, payloads: Vec<Vec<u8>>);
    fn spec(&self) -> Value;
    fn kind(&self) -> &'static str;
}

/// The whole scenario for one queue kind (see the module docs).
async fn counted_once_across_sigkill(queue: impl Queue) {
    const N: usize = 1500;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let port = free_port();
    let mut server = ServerProcess::start(&data, port, &[]).await;
    let key = app_key(&server.base, "src", &["write", "read"]).await;
    let mut first = messages(0, 700);
    first.push(POISON.to_vec());
    first.extend(messages(700, N - 700));
    queue.publish(first).await;

    // Added while the server runs.
    let spec = queue.spec();
    let name = spec["name"].as_str().unwrap().to_owned();
    let (status, view) = admin(reqwest::Method::POST, format!("{}/v1/admin/sources", server.base), Some(spec.clone())).await;
    assert_eq!(status, 201, "{view}");
    let (status, again) = admin(reqwest::Method::POST, format!("{}/v1/admin/sources", server.base), Some(spec.clone())).await;
    assert_eq!((status, again["error"]["code"].as_str()), (409, Some("source_exists")));

    // SIGKILL mid-stream.
    let deadline = Instant::now() + Duration::from_secs(60);
    while source_state(&server.base, &name).await["stored"].as_u64().unwrap_or(0) < 300 {
        assert!(Instant::now() < deadline, "the source stored nothing within 60 s: {}", source_state(&server.base, &name).await);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let at_kill = source_state(&server.base, &name).await;
    server.kill9();
    let stored_at_kill = at_kill["stored"].as_u64().unwrap();
    assert!(stored_at_kill < N as u64, "the kill came after the whole stream: {at_kill}");

    // The restarted server runs the source again (it was kept) and finishes the stream.
    server = ServerProcess::start(&data, port, &[]).await;
    wait_counted(&server.base, &key, N as u64).await;
    let dead: Value = reqwest::Client::new().get(format!("{}/v1/apps/src/dead-letters", server.base)).bearer_auth(&key).send().await.unwrap().json().await.unwrap();
    let letters = dead["dead_letters"].as_array().unwrap();
    assert!(!letters.is_empty(), "the poison message is a dead letter: {dead}");
    for letter in letters {
        assert_eq!(letter["raw"], "not json {", "{letter}");
        let origin = letter["origin"].as_str().unwrap();
        assert!(origin.contains(&name) && origin.contains(queue.kind()), "the dead letter names its origin: {origin}");
    }

    let after = source_state(&server.base, &name).await;
    eprintln!("{} source: {stored_at_kill} stored before the SIGKILL; after the restart {} stored, {} duplicates, {} dead-lettered", queue.kind(), after["stored"], after["duplicates"], after["dead_lettered"]);

    // Removed at run time: what is published afterwards stays in the queue.
    let (status, removed) = admin(reqwest::Method::DELETE, format!("{}/v1/admin/sources/{name}", server.base), None).await;
    assert_eq!(status, 200, "{removed}");
    assert_eq!(source_state(&server.base, &name).await, Value::Null, "the source is gone");
    queue.publish(messages(N, 20)).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(counted(&server.base, &key).await, N as u64, "a removed source consumes nothing");
    let (status, _) = admin(reqwest::Method::DELETE, format!("{}/v1/admin/sources/{name}", server.base), None).await;
    assert_eq!(status, 404);
    assert!(server.terminate());

    let seen = stored_ids(&data);
    assert_eq!(seen.len(), N, "every message is one event");
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "stored more than once: {:?}", &twice[..twice.len().min(5)]);
}

struct Nats {
    js: async_nats::jetstream::Context,
    stream: String,
    subject: String,
}

impl Queue for Nats {
    async fn publish(&self, payloads: Vec<Vec<u8>>) {
        let mut acks = Vec::new();
        for p in payloads {
            acks.push(self.js.publish(self.subject.clone(), p.into()).await.unwrap());
        }
        for a in acks {
            a.await.unwrap();
        }
    }
    fn spec(&self) -> Value {
        json!({"name": "orders-nats", "kind": "nats", "app": "src", "stream": self.stream, "subjects": [self.subject], "ack_wait_secs": 2})
    }
    fn kind(&self) -> &'static str {
        "nats"
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nats_stream_is_counted_once_across_a_sigkill_and_stops_when_removed() {
    let connect = async_nats::ConnectOptions::new().connection_timeout(Duration::from_secs(2)).connect("nats://127.0.0.1:4222");
    let Ok(Ok(client)) = tokio::time::timeout(Duration::from_secs(3), connect).await else {
        skip_or_fail("nats-server with JetStream at 127.0.0.1:4222");
        return;
    };
    let js = async_nats::jetstream::new(client);
    let id = format!("e2e_{}_{:x}", std::process::id(), unique());
    let stream = format!("MERIDIAN_{}", id.to_uppercase());
    let subject = format!("e2e.{id}.orders");
    js.get_or_create_stream(async_nats::jetstream::stream::Config { name: stream.clone(), subjects: vec![subject.clone()], ..Default::default() }).await.unwrap();
    counted_once_across_sigkill(Nats { js: js.clone(), stream: stream.clone(), subject }).await;
    js.delete_stream(&stream).await.unwrap();
}

struct Rabbit {
    channel: lapin::Channel,
    queue: String,
}

impl Queue for Rabbit {
    async fn publish(&self, payloads: Vec<Vec<u8>>) {
        let mut confirms = Vec::new();
        for p in payloads {
            let properties = lapin::BasicProperties::default().with_delivery_mode(2);
            confirms.push(self.channel.basic_publish("".into(), self.queue.as_str().into(), lapin::options::BasicPublishOptions::default(), &p, properties).await.unwrap());
        }
        for c in confirms {
            assert!(c.await.unwrap().is_ack());
        }
    }
    fn spec(&self) -> Value {
        json!({"name": "orders-rabbit", "kind": "rabbitmq", "app": "src", "queue": self.queue})
    }
    fn kind(&self) -> &'static str {
        "rabbitmq"
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rabbitmq_queue_is_counted_once_across_a_sigkill_and_stops_when_removed() {
    let connect = lapin::Connection::connect("amqp://guest:guest@127.0.0.1:5672/%2f", lapin::ConnectionProperties::default());
    let Ok(Ok(connection)) = tokio::time::timeout(Duration::from_secs(3), connect).await else {
        skip_or_fail("rabbitmq-server at 127.0.0.1:5672");
        return;
    };
    let channel = connection.create_channel().await.unwrap();
    channel.confirm_select(lapin::options::ConfirmSelectOptions::default()).await.unwrap();
    let queue = format!("meridian-e2e-{}-{:x}", std::process::id(), unique());
    channel.queue_declare(queue.as_str().into(), lapin::options::QueueDeclareOptions { durable: true, ..Default::default() }, Default::default()).await.unwrap();
    counted_once_across_sigkill(Rabbit { channel: channel.clone(), queue: queue.clone() }).await;
    channel.queue_delete(queue.as_str().into(), lapin::options::QueueDeleteOptions::default()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_source_resumes_after_a_restart_and_bad_specs_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let inbox = dir.path().join("inbox");
    std::fs::create_dir_all(&inbox).unwrap();
    // A back office writes `buyer`, not `user`: a parser scoped to this source says how.
    let lines = |from: usize, n: usize| messages(from, n).into_iter().map(|m| String::from_utf8(m).unwrap().replace("\"user\"", "\"buyer\"") + "\n").collect::<String>();
    std::fs::write(inbox.join("a.ndjson"), lines(0, 300)).unwrap();
    let pipeline = dir.path().join("pipeline.toml");
    std::fs::write(&pipeline, "[[parsers]]\nsources = [\"inbox\"]\n[parsers.aliases]\nbuyer = \"user\"\n").unwrap();
    let port = free_port();
    let pipeline_flag = ["--set", &format!("collector.pipeline={}", pipeline.display())].map(str::to_owned);
    let pipeline_flag: Vec<&str> = pipeline_flag.iter().map(String::as_str).collect();
    let mut server = ServerProcess::start(&data, port, &pipeline_flag).await;
    let key = app_key(&server.base, "src", &["write", "read"]).await;
    let post = |base: String, body: Value| async move { admin(reqwest::Method::POST, format!("{base}/v1/admin/sources"), Some(body)).await };
    // Bad specs: each refused with a code and the field, nothing started.
    for (body, field) in [
        (json!({"name": "Bad Name", "kind": "file", "app": "src", "dir": "/tmp"}), "name"),
        (json!({"name": "f", "kind": "ftp", "app": "src", "dir": "/tmp"}), "kind"),
        (json!({"name": "f", "kind": "file", "app": "src"}), "dir"),
        (json!({"name": "f", "kind": "nats", "app": "src", "stream": "S", "queue": "q"}), "queue"),
    ] {
        let (status, answer) = post(server.base.clone(), body).await;
        assert_eq!((status, answer["error"]["code"].as_str(), answer["error"]["details"]["field"].as_str()), (400, Some("invalid_source"), Some(field)), "{answer}");
    }
    let (status, answer) = post(server.base.clone(), json!({"name": "f", "kind": "file", "app": "nowhere", "dir": "/tmp"})).await;
    assert_eq!((status, answer["error"]["code"].as_str()), (404, Some("unknown_app")));
    let (status, answer) = post(server.base.clone(), json!({"name": "f", "kind": "file", "app": "src", "dir": "/tmp", "colour": "red"})).await;
    assert_eq!(status, 400, "{answer}");

    let (status, view) = post(server.base.clone(), json!({"name": "inbox", "kind": "file", "app": "src", "dir": inbox.to_str().unwrap()})).await;
    assert_eq!(status, 201, "{view}");
    wait_counted(&server.base, &key, 300).await;
    // The same message sent to the API is not the source's: the parser does not apply.
    let r = reqwest::Client::new().post(format!("{}/v1/events", server.base)).bearer_auth(&key).body(lines(900, 1)).send().await.unwrap();
    let report: Value = r.json().await.unwrap();
    assert_eq!(report["rejected"], 1, "{report}");
    assert!(server.terminate());
    // Written while the server is down: read from the stored position after the restart.
    std::fs::write(inbox.join("a.ndjson"), lines(0, 300) + &lines(300, 100)).unwrap();
    std::fs::write(inbox.join("b.ndjson"), lines(400, 100)).unwrap();
    server = ServerProcess::start(&data, port, &pipeline_flag).await;
    wait_counted(&server.base, &key, 500).await;

    // Paused: what arrives waits, across a restart, until resumed.
    let (status, view) = admin(reqwest::Method::POST, format!("{}/v1/admin/sources/inbox/pause", server.base), None).await;
    assert_eq!((status, view["paused"].as_bool(), view["state"]["running"].as_bool()), (200, Some(true), Some(false)), "{view}");
    let (status, answer) = admin(reqwest::Method::POST, format!("{}/v1/admin/sources/nowhere/pause", server.base), None).await;
    assert_eq!((status, answer["error"]["code"].as_str()), (404, Some("unknown_source")));
    std::fs::write(inbox.join("c.ndjson"), lines(500, 50)).unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(counted(&server.base, &key).await, 500, "a paused source reads nothing");
    assert!(server.terminate());
    server = ServerProcess::start(&data, port, &pipeline_flag).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let inbox_view = loop {
        let (_, list) = admin(reqwest::Method::GET, format!("{}/v1/admin/sources", server.base), None).await;
        if let Some(v) = list["sources"].as_array().unwrap().iter().find(|s| s["spec"]["name"] == "inbox") {
            break v.clone();
        }
        assert!(Instant::now() < deadline, "the source is back after the restart: {list}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(inbox_view["paused"], true, "still paused after the restart: {inbox_view}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(counted(&server.base, &key).await, 500, "a paused source reads nothing after a restart");
    let (status, view) = admin(reqwest::Method::POST, format!("{}/v1/admin/sources/inbox/resume", server.base), None).await;
    assert_eq!((status, view["paused"].as_bool()), (200, Some(false)), "{view}");
    wait_counted(&server.base, &key, 550).await;
    assert!(server.terminate());
    let seen = stored_ids(&data);
    assert_eq!(seen.len(), 550);
    assert!(seen.values().all(|n| *n == 1));
}
