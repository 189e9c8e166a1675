//! The long-lived client connection (`GET /v1/connect`) against the real server: acks
//! only after durability across a SIGKILL, flow control under a slow log and over the
//! in-flight limit, heartbeats, oversized and malformed frames, refused keys and apps, the
//! close at shutdown, and a published WebSocket client (Python's `websockets`).

use crate::process::{app_key, free_port, skip_or_fail, stored_ids, ServerProcess, MASTER};
use futures::{SinkExt, StreamExt};
use meridian_connect::{close, ConnectError, SendError};
use serde_json::{json, Value};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

type Raw = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

fn events(prefix: &str, n: usize) -> Vec<Value> {
    (0..n).map(|i| json!({"id": format!("{prefix}-{i}"), "user": format!("u{}", i % 37), "action": "view", "target": {"type": "sku", "id": format!("{}", i % 11)}})).collect()
}

/// A bare WebSocket connection, to send what the client library never would.
async fn raw(base: &str, key: &str, query: &str) -> Raw {
    let url = format!("{}/v1/connect{query}", base.replacen("http://", "ws://", 1));
    let mut request = url.into_client_request().unwrap();
    request.headers_mut().insert("authorization", format!("Bearer {key}").parse().unwrap());
    tokio_tungstenite::connect_async(request).await.unwrap().0
}

/// The next text frame as JSON (skipping pings), or the close frame's code and reason.
async fn next_frame(ws: &mut Raw) -> Result<Value, (u16, String)> {
    loop {
        match tokio::time::timeout(Duration::from_secs(20), ws.next()).await.expect("a frame within 20 s") {
            Some(Ok(Message::Text(t))) => return Ok(serde_json::from_str(t.as_str()).unwrap()),
            Some(Ok(Message::Close(f))) => return Err(f.map(|f| (u16::from(f.code), f.reason.to_string())).unwrap_or((1005, String::new()))),
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err((1006, e.to_string())),
            None => return Err((1006, "ended".into())),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_events_survive_sigkill_and_a_resend_is_stored_once() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let port = free_port();
    let mut server = ServerProcess::start(&data, port, &[]).await;
    let key = app_key(&server.base, "ws", &["write", "read"]).await;
    let client = Arc::new(meridian_connect::connect(&server.base, &key).await.unwrap());
    let acked: Arc<Mutex<HashSet<String>>> = Arc::default();
    let unacked: Arc<Mutex<Vec<Value>>> = Arc::default();
    let sent: Arc<Mutex<HashSet<String>>> = Arc::default();
    // Four pipelined senders on the one connection, until it breaks.
    let mut senders = Vec::new();
    for task in 0..4 {
        let (client, acked, unacked, sent) = (client.clone(), acked.clone(), unacked.clone(), sent.clone());
        senders.push(tokio::spawn(async move {
            for seq in 0.. {
                let batch = events(&format!("t{task}-s{seq}"), 50);
                sent.lock().unwrap().extend(batch.iter().map(|e| e["id"].as_str().unwrap().to_owned()));
                match client.send(batch).await {
                    Ok(report) => {
                        assert_eq!(report.accepted, 50, "{report:?}");
                        acked.lock().unwrap().extend(report.results.into_iter().map(|r| r.id.unwrap()));
                    }
                    Err(SendError::Disconnected { events, .. }) => {
                        unacked.lock().unwrap().extend(events);
                        return;
                    }
                    Err(e) => panic!("{e}"),
                }
            }
        }));
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while acked.lock().unwrap().len() < 3000 {
        assert!(std::time::Instant::now() < deadline, "fewer than 3000 events acknowledged within 60 s");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    server.kill9();
    for s in senders {
        s.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    let unacked = std::mem::take(&mut *unacked.lock().unwrap());
    assert!(!unacked.is_empty(), "the kill left no batch in flight: the test proves nothing");

    // Restart; a new connection resends what was not acknowledged, with the same ids.
    server = ServerProcess::start(&data, port, &[]).await;
    let client = meridian_connect::connect(&server.base, &key).await.unwrap();
    let mut resent = 0;
    for chunk in unacked.chunks(100) {
        let report = client.send(chunk.to_vec()).await.unwrap();
        assert_eq!(report.rejected, 0, "{report:?}");
        resent += report.results.len();
        assert!(report.results.iter().all(|r| matches!(r.status, meridian_api::events::EventStatus::Accepted | meridian_api::events::EventStatus::Duplicate)));
    }
    client.close().await;
    assert!(server.terminate(), "graceful shutdown exits cleanly");

    let seen = stored_ids(&data);
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "stored more than once: {:?}", &twice[..twice.len().min(5)]);
    let lost: Vec<_> = acked.iter().filter(|id| !seen.contains_key(*id)).collect();
    assert!(lost.is_empty(), "{} acknowledged events lost, e.g. {:?}", lost.len(), &lost[..lost.len().min(5)]);
    let sent = sent.lock().unwrap();
    assert_eq!(seen.len(), sent.len(), "every event sent is stored once, acknowledged before the kill or resent after it");
    eprintln!("connect crash test: {} acknowledged before the kill, {resent} resent, {} stored", acked.len(), seen.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_log_slows_the_client_down_and_drops_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // Every append while another is pending is refused: the log is as slow as it gets.
    let mut server = ServerProcess::start(&data, free_port(), &["--set", "log.max_pending_bytes=1", "--set", "connect.max_in_flight_events=400"]).await;
    let key = app_key(&server.base, "slow", &["write"]).await;
    let client = Arc::new(meridian_connect::connect(&server.base, &key).await.unwrap());
    assert_eq!(client.hello().max_in_flight_events, 400);
    let sends = (0..30).map(|b| {
        let client = client.clone();
        async move { client.send(events(&format!("b{b}"), 100)).await }
    });
    for report in futures::future::join_all(sends).await {
        assert_eq!(report.unwrap().accepted, 100);
    }
    assert!(client.slow_downs() > 0, "the server never asked the client to slow down");
    assert!(server.terminate());
    let seen = stored_ids(&data);
    assert_eq!(seen.len(), 3000);
    assert!(seen.values().all(|n| *n == 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_the_in_flight_limit_the_server_stops_reading_and_says_slow_down() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut server = ServerProcess::start(&data, free_port(), &["--set", "connect.max_in_flight_events=100"]).await;
    let key = app_key(&server.base, "burst", &["write"]).await;
    let mut ws = raw(&server.base, &key, "").await;
    let hello = next_frame(&mut ws).await.unwrap();
    assert_eq!(hello["type"], "hello");
    assert_eq!(hello["max_in_flight_events"], 100);
    // 20 batches of 60 at once: at most one fits in flight at a time.
    for b in 0..20u64 {
        ws.send(Message::Text(json!({"type": "events", "batch": b, "events": events(&format!("x{b}"), 60)}).to_string().into())).await.unwrap();
    }
    // A batch that could never fit is refused, not waited for forever.
    ws.send(Message::Text(json!({"type": "events", "batch": 99, "events": events("huge", 101)}).to_string().into())).await.unwrap();
    let (mut acks, mut slow_downs, mut refused) = (HashSet::new(), 0, None);
    while acks.len() < 20 || refused.is_none() {
        let frame = next_frame(&mut ws).await.unwrap();
        match frame["type"].as_str().unwrap() {
            "ack" => {
                assert_eq!(frame["accepted"], 60, "{frame}");
                assert!(acks.insert(frame["batch"].as_u64().unwrap()), "acknowledged twice: {frame}");
            }
            "slow_down" => {
                assert_eq!(frame["reason"], "in_flight_limit");
                assert!(frame["in_flight_events"].as_u64().unwrap() <= 100, "{frame}");
                slow_downs += 1;
            }
            "error" => {
                assert_eq!(frame["batch"], 99);
                refused = Some(frame["code"].as_str().unwrap().to_owned());
            }
            other => panic!("unexpected frame {other}: {frame}"),
        }
    }
    assert!(slow_downs > 0, "the server never said slow down");
    assert_eq!(refused.as_deref(), Some("batch_over_in_flight_limit"));
    drop(ws);
    assert!(server.terminate());
    assert_eq!(stored_ids(&data).len(), 1200, "every batch stored, the refused one not");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_client_is_closed_and_a_live_one_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(&dir.path().join("data"), free_port(), &["--set", "connect.heartbeat_secs=1", "--set", "connect.idle_timeout_secs=2"]).await;
    let key = app_key(&server.base, "beat", &["write"]).await;
    // The library client reads all the time, so it answers every ping.
    let live = meridian_connect::connect(&server.base, &key).await.unwrap();
    let mut silent = raw(&server.base, &key, "").await;
    assert_eq!(next_frame(&mut silent).await.unwrap()["type"], "hello");
    // Not reading: its pings go unanswered.
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let error = next_frame(&mut silent).await.unwrap();
    assert_eq!(error["code"], "idle_timeout", "{error}");
    assert_eq!(next_frame(&mut silent).await.unwrap_err().0, close::IDLE_TIMEOUT);
    let report = live.send(events("alive", 3)).await.expect("a client that answers pings stays connected");
    assert_eq!(report.accepted, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_frame_closes_only_its_own_connection() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(&dir.path().join("data"), free_port(), &["--set", "connect.max_frame_bytes=4096"]).await;
    let key = app_key(&server.base, "big", &["write"]).await;
    let other = meridian_connect::connect(&server.base, &key).await.unwrap();
    let mut ws = raw(&server.base, &key, "").await;
    assert_eq!(next_frame(&mut ws).await.unwrap()["max_frame_bytes"], 4096);
    ws.send(Message::Text(json!({"type": "events", "batch": 1, "events": events("big", 100)}).to_string().into())).await.unwrap();
    let mut closed = None;
    while closed.is_none() {
        match next_frame(&mut ws).await {
            Ok(frame) => assert_eq!(frame["code"], "frame_too_large", "{frame}"),
            Err(close) => closed = Some(close),
        }
    }
    assert_eq!(closed.unwrap().0, 1009);
    assert_eq!(other.send(events("small", 5)).await.unwrap().accepted, 5, "the other connection is unharmed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_frames_are_refused_one_by_one_and_the_connection_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(&dir.path().join("data"), free_port(), &[]).await;
    let key = app_key(&server.base, "bad", &["write"]).await;
    let mut ws = raw(&server.base, &key, "").await;
    next_frame(&mut ws).await.unwrap();
    let cases: [(Message, Option<u64>, &str); 7] = [
        (Message::Text("not json {".into()), None, "malformed_frame"),
        (Message::Text(r#"{"type":"events","events":[]}"#.into()), None, "malformed_frame"),
        (Message::Text(r#"{"type":"events","batch":3,"events":{"user":"u"}}"#.into()), Some(3), "malformed_frame"),
        (Message::Text(r#"{"type":"teleport","batch":4}"#.into()), Some(4), "malformed_frame"),
        (Message::Binary(vec![1, 2, 3].into()), None, "unsupported_frame"),
        (Message::Text(r#"{"type":"events","batch":5,"events":[]}"#.into()), Some(5), "empty_batch"),
        (Message::Text(json!({"type": "events", "batch": 6, "events": events("many", 2001)}).to_string().into()), Some(6), "too_many_events"),
    ];
    for (message, batch, code) in cases {
        ws.send(message).await.unwrap();
        let frame = next_frame(&mut ws).await.unwrap();
        assert_eq!(frame["type"], "error", "{frame}");
        assert_eq!(frame["code"], code, "{frame}");
        assert_eq!(frame["batch"].as_u64(), batch, "{frame}");
        assert!(!frame["message"].as_str().unwrap().is_empty());
    }
    // A batch with one bad event: per-event outcomes, the good ones stored.
    let batch = json!({"type": "events", "batch": 7, "events": [{"id": "ok-1", "user": "u1", "action": "view"}, {"id": "bad-1", "action": "view"}]});
    ws.send(Message::Text(batch.to_string().into())).await.unwrap();
    let ack = next_frame(&mut ws).await.unwrap();
    assert_eq!((ack["type"].as_str(), ack["batch"].as_u64(), ack["accepted"].as_u64(), ack["rejected"].as_u64()), (Some("ack"), Some(7), Some(1), Some(1)), "{ack}");
    assert_eq!(ack["results"][1]["status"], "rejected");
    assert!(ack["results"][1]["error"]["code"].is_string());
    ws.send(Message::Text(r#"{"type":"ping","nonce":42}"#.into())).await.unwrap();
    let pong = next_frame(&mut ws).await.unwrap();
    assert_eq!((pong["type"].as_str(), pong["nonce"].as_u64()), (Some("pong"), Some(42)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_keys_and_apps_close_with_a_code_and_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(&dir.path().join("data"), free_port(), &[]).await;
    let key = app_key(&server.base, "mine", &["write"]).await;
    let read_only = app_key(&server.base, "mine", &["read"]).await;
    let cases = [
        ("mk_not_a_key", None, close::UNAUTHORIZED, "invalid_key"),
        (read_only.as_str(), None, close::FORBIDDEN, "insufficient_scope"),
        (key.as_str(), Some("theirs"), close::FORBIDDEN, "forbidden"),
        (MASTER, Some("nowhere"), close::UNKNOWN_APP, "unknown_app"),
        (MASTER, None, close::BAD_REQUEST, "missing_app"),
    ];
    for (key, app, close_code, code) in cases {
        match meridian_connect::connect_to(&server.base, key, app).await {
            Err(ConnectError::Refused { close_code: got, code: got_code, message }) => {
                assert_eq!((got, got_code.as_str()), (close_code, code), "{key} {app:?}: {message}");
                assert!(!message.is_empty());
            }
            other => panic!("{key} {app:?}: expected a refusal, got {other:?}"),
        }
    }
    // Not a WebSocket request: a JSON error saying what to use.
    let r = reqwest::Client::new().get(format!("{}/v1/connect", server.base)).bearer_auth(&key).send().await.unwrap();
    assert_eq!(r.status(), 426);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "websocket_required");
    // The master key naming an existing app is let in.
    assert!(meridian_connect::connect_to(&server.base, MASTER, Some("mine")).await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_acknowledges_what_was_read_and_closes_with_1001() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut server = ServerProcess::start(&data, free_port(), &[]).await;
    let key = app_key(&server.base, "bye", &["write"]).await;
    let mut ws = raw(&server.base, &key, "").await;
    next_frame(&mut ws).await.unwrap();
    ws.send(Message::Text(json!({"type": "events", "batch": 1, "events": events("last", 10)}).to_string().into())).await.unwrap();
    assert_eq!(next_frame(&mut ws).await.unwrap()["type"], "ack");
    let waiter = tokio::spawn(async move {
        let mut frames = Vec::new();
        loop {
            match next_frame(&mut ws).await {
                Ok(frame) => frames.push(frame),
                Err(close) => return (frames, close),
            }
        }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(server.terminate(), "graceful shutdown exits cleanly with a connection open");
    let (_, (code, reason)) = waiter.await.unwrap();
    assert_eq!(code, 1001, "{reason}");
    assert!(reason.contains("shutting down"), "{reason}");
    assert_eq!(stored_ids(&data).len(), 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_published_websocket_client_drives_the_protocol() {
    let has_websockets = std::process::Command::new("python3").args(["-c", "import websockets.sync.client"]).output().map(|o| o.status.success()).unwrap_or(false);
    if !has_websockets {
        skip_or_fail("Python's websockets package (pip install websockets)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut server = ServerProcess::start(&data, free_port(), &[]).await;
    let key = app_key(&server.base, "py", &["write"]).await;
    let script = r#"
import json, sys
from websockets.sync.client import connect
base, key = sys.argv[1], sys.argv[2]
with connect(base.replace("http://", "ws://") + "/v1/connect", additional_headers={"Authorization": "Bearer " + key}) as ws:
    hello = json.loads(ws.recv())
    assert hello["type"] == "hello", hello
    events = [{"id": "py-%d" % i, "user": "u%d" % i, "action": "share"} for i in range(5)]
    acks = {}
    for batch in (1, 2):
        ws.send(json.dumps({"type": "events", "batch": batch, "events": events}))
        while batch not in acks:
            frame = json.loads(ws.recv())
            if frame["type"] == "ack":
                acks[frame["batch"]] = frame
    print(json.dumps({"first": acks[1]["accepted"], "second_duplicates": acks[2]["duplicates"]}))
"#;
    let (base, key2) = (server.base.clone(), key.clone());
    let out = tokio::task::spawn_blocking(move || std::process::Command::new("python3").args(["-c", script, &base, &key2]).output().unwrap()).await.unwrap();
    assert!(out.status.success(), "python client failed: {}", String::from_utf8_lossy(&out.stderr));
    let result: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(result["first"], 5, "{result}");
    assert_eq!(result["second_duplicates"], 5, "the same ids again are duplicates: {result}");
    assert!(server.terminate());
    assert_eq!(stored_ids(&data).len(), 5);
}
