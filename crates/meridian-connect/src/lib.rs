//! Client of Meridian's long-lived connection (`GET /v1/connect`, a WebSocket; the
//! protocol is docs/connect.md). Used by the tests, the demo and the benchmark, and small
//! enough to read as a reference for a client in another language.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let client = meridian_connect::connect("http://127.0.0.1:7390", "mk_…").await?;
//! let report = client.send(vec![serde_json::json!({"user": "u1", "action": "view"})]).await?;
//! assert_eq!(report.accepted, 1);
//! # Ok(()) }
//! ```
//!
//! [`Client::send`] gives every event without an `id` one before sending it, resolves
//! once the server has acknowledged the batch (its events are durable), and, if the
//! connection ends first, hands the events back ([`SendError::Disconnected`]) so the
//! caller resends them on a new connection: the server recognises them by id, so each is
//! stored once. Many `send`s may run at once (one connection pipelines them); the client
//! keeps within the server's `max_in_flight_events` by itself.

use futures::{SinkExt, StreamExt};
use meridian_api::connect::{Hello, ServerFrame};
use meridian_api::events::IngestReport;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

pub use meridian_api::connect::{close, ClientFrame, SlowDownReason};

/// Why a connection could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The base URL is not `http://…` or `ws://…`.
    #[error("{0}")]
    Url(String),
    /// The network or the WebSocket handshake failed.
    #[error("cannot connect: {0}")]
    Io(String),
    /// The server refused the connection (bad key, unknown app…) with this close code.
    #[error("the server refused the connection ({close_code} {code}): {message}")]
    Refused {
        /// WebSocket close code ([`close`]).
        close_code: u16,
        /// Stable error code.
        code: String,
        /// What to do.
        message: String,
    },
    /// The server did not speak the protocol.
    #[error("protocol error: {0}")]
    Protocol(String),
}

/// Why a batch was not acknowledged.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The connection ended before the batch was acknowledged: its events may or may not
    /// be stored. Resend them (they carry their ids) on a new connection.
    #[error("the connection ended before the batch was acknowledged ({reason}); resend its events on a new connection")]
    Disconnected {
        /// The batch's events, with the ids they were sent with.
        events: Vec<Value>,
        /// How the connection ended.
        reason: String,
    },
    /// The server refused the batch as a whole (none of its events was stored).
    #[error("the server refused the batch ({code}): {message}")]
    Refused {
        /// Stable code (`too_many_events`, `empty_batch`…).
        code: String,
        /// What to do.
        message: String,
    },
}

/// A batch waiting for its acknowledgement.
struct Pending {
    reply: oneshot::Sender<Result<IngestReport, SendError>>,
    events: Vec<Value>,
}

enum Command {
    Send { batch: u64, frame: String, pending: Pending },
    Close { done: oneshot::Sender<()> },
}

/// What the client has seen of the server's flow control, and how the connection ended.
#[derive(Debug, Default)]
struct Seen {
    slow_downs: AtomicU64,
}

/// One open connection.
pub struct Client {
    hello: Hello,
    commands: mpsc::UnboundedSender<Command>,
    room: Arc<Semaphore>,
    seen: Arc<Seen>,
    next_batch: AtomicU64,
    id_prefix: String,
    next_id: AtomicU64,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("hello", &self.hello).finish_non_exhaustive()
    }
}

/// Opens a connection to the server at `base` (`http://host:port`) with a write key of
/// the app (the connection writes to the key's app).
pub async fn connect(base: &str, key: &str) -> Result<Client, ConnectError> {
    connect_to(base, key, None).await
}

/// [`connect`] for a key that may write to several apps (the master key): names the app.
pub async fn connect_to(base: &str, key: &str, app: Option<&str>) -> Result<Client, ConnectError> {
    let ws_base = if let Some(rest) = base.strip_prefix("http://") {
        format!("ws://{rest}")
    } else if base.starts_with("ws://") {
        base.to_owned()
    } else {
        return Err(ConnectError::Url(format!("{base:?}: use http://host:port or ws://host:port (this client has no TLS; put it behind a local proxy)")));
    };
    let mut url = format!("{}/v1/connect", ws_base.trim_end_matches('/'));
    if let Some(app) = app {
        url.push_str("?app=");
        url.push_str(app);
    }
    let mut request = url.as_str().into_client_request().map_err(|e| ConnectError::Url(e.to_string()))?;
    let bearer = HeaderValue::from_str(&format!("Bearer {key}")).map_err(|_| ConnectError::Url("the key is not valid header text".into()))?;
    request.headers_mut().insert("authorization", bearer);
    let (mut ws, _) = tokio::time::timeout(Duration::from_secs(10), tokio_tungstenite::connect_async_with_config(request, None, true))
        .await
        .map_err(|_| ConnectError::Io("no handshake within 10 s".into()))?
        .map_err(|e| ConnectError::Io(e.to_string()))?;
    // The first frame is `hello`, or an `error` and a close when the server refuses.
    let mut refusal: Option<(String, String)> = None;
    let hello = loop {
        let message = tokio::time::timeout(Duration::from_secs(10), ws.next()).await.map_err(|_| ConnectError::Protocol("no hello within 10 s".into()))?;
        match message {
            Some(Ok(Message::Text(text))) => match serde_json::from_str::<ServerFrame>(text.as_str()) {
                Ok(ServerFrame::Hello(hello)) => break hello,
                Ok(ServerFrame::Error { code, message, .. }) => refusal = Some((code, message)),
                Ok(other) => return Err(ConnectError::Protocol(format!("expected hello, got {other:?}"))),
                Err(e) => return Err(ConnectError::Protocol(format!("unreadable frame: {e}"))),
            },
            Some(Ok(Message::Close(frame))) => {
                let close_code = frame.as_ref().map_or(1005, |f| u16::from(f.code));
                let (code, message) = refusal.unwrap_or_else(|| (frame.as_ref().map(|f| f.reason.to_string()).unwrap_or_default(), "closed before hello".into()));
                return Err(ConnectError::Refused { close_code, code, message });
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(ConnectError::Io(e.to_string())),
            None => return Err(ConnectError::Io("the server closed the connection before hello".into())),
        }
    };
    let (commands, rx) = mpsc::unbounded_channel();
    let seen = Arc::new(Seen::default());
    tokio::spawn(drive(ws, rx, seen.clone()));
    Ok(Client {
        room: Arc::new(Semaphore::new(hello.max_in_flight_events)),
        hello,
        commands,
        seen,
        next_batch: AtomicU64::new(1),
        id_prefix: format!("c{:016x}", rand::random::<u64>()),
        next_id: AtomicU64::new(0),
    })
}

impl Client {
    /// The server's limits for this connection.
    pub fn hello(&self) -> &Hello {
        &self.hello
    }

    /// How many `slow_down` frames the server has sent so far.
    pub fn slow_downs(&self) -> u64 {
        self.seen.slow_downs.load(Ordering::Relaxed)
    }

    /// Sends a batch (at most `hello().max_batch_events` events) and waits for its
    /// acknowledgement: one outcome per event, as `POST /v1/events` reports. Events
    /// without an `id` get one first.
    pub async fn send(&self, mut events: Vec<Value>) -> Result<IngestReport, SendError> {
        for event in &mut events {
            if let Value::Object(object) = event {
                if !object.contains_key("id") {
                    let n = self.next_id.fetch_add(1, Ordering::Relaxed);
                    object.insert("id".into(), Value::String(format!("{}-{n}", self.id_prefix)));
                }
            }
        }
        let n = events.len().clamp(1, self.hello.max_in_flight_events) as u32;
        let Ok(_room) = self.room.acquire_many(n).await else { unreachable!("the semaphore is never closed") };
        let batch = self.next_batch.fetch_add(1, Ordering::Relaxed);
        let frame = serde_json::json!({"type": "events", "batch": batch, "events": events}).to_string();
        let (reply, answer) = oneshot::channel();
        if let Err(mpsc::error::SendError(Command::Send { pending, .. })) = self.commands.send(Command::Send { batch, frame, pending: Pending { reply, events } }) {
            return Err(SendError::Disconnected { events: pending.events, reason: "the connection has ended".into() });
        }
        answer.await.unwrap_or_else(|_| Err(SendError::Disconnected { events: Vec::new(), reason: "the connection's task ended".into() }))
    }

    /// Closes the connection normally (1000) once the batches sent so far are
    /// acknowledged or the server closes.
    pub async fn close(self) {
        let (done, wait) = oneshot::channel();
        if self.commands.send(Command::Close { done }).is_ok() {
            let _ = wait.await;
        }
    }
}

/// Owns the socket: writes frames, matches acknowledgements to batches, and hands every
/// unacknowledged batch back when the connection ends.
async fn drive<S>(mut ws: tokio_tungstenite::WebSocketStream<S>, mut commands: mpsc::UnboundedReceiver<Command>, seen: Arc<Seen>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut pending: HashMap<u64, Pending> = HashMap::new();
    let mut closing: Option<oneshot::Sender<()>> = None;
    let reason = loop {
        tokio::select! {
            command = commands.recv(), if closing.is_none() => match command {
                Some(Command::Send { batch, frame, pending: p }) => {
                    pending.insert(batch, p);
                    // Batches queued meanwhile go out with the same flush.
                    let mut written = ws.feed(Message::Text(frame.into())).await;
                    while written.is_ok() {
                        match commands.try_recv() {
                            Ok(Command::Send { batch, frame, pending: p }) => {
                                pending.insert(batch, p);
                                written = ws.feed(Message::Text(frame.into())).await;
                            }
                            Ok(Command::Close { done }) => {
                                closing = Some(done);
                                break;
                            }
                            Err(_) => break,
                        }
                    }
                    if let Err(e) = written.and(ws.flush().await) {
                        break format!("write failed: {e}");
                    }
                    if closing.is_some() && pending.is_empty() {
                        let _ = ws.close(Some(CloseFrame { code: CloseCode::Normal, reason: "done".into() })).await;
                    }
                }
                Some(Command::Close { done }) => {
                    if pending.is_empty() {
                        let _ = ws.close(Some(CloseFrame { code: CloseCode::Normal, reason: "done".into() })).await;
                    }
                    closing = Some(done);
                }
                None => {
                    let _ = ws.close(None).await;
                    break "the client was dropped".into();
                }
            },
            message = ws.next() => match message {
                Some(Ok(Message::Text(text))) => match serde_json::from_str::<ServerFrame>(text.as_str()) {
                    Ok(ServerFrame::Ack { batch, report }) => {
                        if let Some(p) = pending.remove(&batch) {
                            let _ = p.reply.send(Ok(report));
                        }
                        if closing.is_some() && pending.is_empty() {
                            let _ = ws.close(Some(CloseFrame { code: CloseCode::Normal, reason: "done".into() })).await;
                        }
                    }
                    Ok(ServerFrame::Error { batch: Some(batch), code, message }) => {
                        if let Some(p) = pending.remove(&batch) {
                            let _ = p.reply.send(Err(SendError::Refused { code, message }));
                        }
                    }
                    Ok(ServerFrame::SlowDown { .. }) => {
                        seen.slow_downs.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(_) => {}
                    Err(e) => break format!("unreadable frame from the server: {e}"),
                },
                Some(Ok(Message::Close(frame))) => {
                    break match frame {
                        Some(f) => format!("closed by the server: {} {}", u16::from(f.code), f.reason),
                        None => "closed by the server".into(),
                    };
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => break format!("connection lost: {e}"),
                None => break "connection lost".into(),
            },
        }
    };
    for (_, p) in pending.drain() {
        let _ = p.reply.send(Err(SendError::Disconnected { events: p.events, reason: reason.clone() }));
    }
    if let Some(done) = closing {
        let _ = done.send(());
    }
    // Later sends find the channel closed and get their events back.
    commands.close();
    while let Ok(command) = commands.try_recv() {
        if let Command::Send { pending: p, .. } = command {
            let _ = p.reply.send(Err(SendError::Disconnected { events: p.events, reason: reason.clone() }));
        }
    }
}
