//! `GET /v1/connect`: the long-lived client connection (a WebSocket). A client streams
//! batches of events and gets each batch's per-event report once its events are durable,
//! with flow control, heartbeats and a clean close at shutdown. docs/connect.md is the
//! protocol; the frames are `meridian_api::connect`.
//!
//! One connection is a reader (this handler's task), a writer task (the only one that
//! writes to the socket) and one task per batch in flight. A batch takes as many permits
//! of the connection's semaphore as it has events before it is read any further, so a
//! client never has more than `connect.max_in_flight_events` events in flight: beyond
//! that the reader stops reading (TCP pushes back) and says so with `slow_down`. A batch
//! the log refuses for now (`Overloaded`) is retried by the server, never dropped.

use crate::auth::{presented_key, principal_of_key};
use crate::error::ApiError;
use crate::extract::Query;
use crate::state::AppState;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::{SinkExt, StreamExt};
use meridian_api::connect::{close, Hello, ServerFrame, SlowDownReason, PROTOCOL_VERSION};
use meridian_collector::split::Framing;
use meridian_collector::{BodyFormat, CollectorError};
use meridian_event::AppId;
use serde::Deserialize;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch, Notify, Semaphore};
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// The connect route.
pub(crate) fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new().routes(routes!(connect))
}

/// The open connections, and the signal that closes them at shutdown.
pub(crate) struct Connections {
    closing: watch::Sender<bool>,
    open: AtomicUsize,
    closed: Notify,
}

impl Default for Connections {
    fn default() -> Self {
        Connections { closing: watch::channel(false).0, open: AtomicUsize::new(0), closed: Notify::new() }
    }
}

impl Connections {
    /// Asks every connection to finish its acknowledgements and close (1001).
    pub(crate) fn close_all(&self) {
        self.closing.send_replace(true);
    }

    /// Open connections now.
    pub(crate) fn open(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }

    /// Waits until every connection has closed or `timeout` passes; returns how many are
    /// still open.
    pub(crate) async fn wait_closed(&self, timeout: Duration) -> usize {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.closed.notified();
            let open = self.open.load(Ordering::SeqCst);
            if open == 0 {
                return 0;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.open.load(Ordering::SeqCst);
            }
        }
    }
}

/// Counts a connection as open while it lives.
struct OpenGuard(Arc<AppState>);

impl OpenGuard {
    fn new(state: Arc<AppState>) -> OpenGuard {
        let open = state.connections.open.fetch_add(1, Ordering::SeqCst) + 1;
        metrics::gauge!("meridian_connect_connections").set(open as f64);
        OpenGuard(state)
    }
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        let open = self.0.connections.open.fetch_sub(1, Ordering::SeqCst) - 1;
        metrics::gauge!("meridian_connect_connections").set(open as f64);
        self.0.connections.closed.notify_waiters();
    }
}

/// How a connection authenticates and which app it writes to.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ConnectQuery {
    /// App, for the master key (a key's own app otherwise).
    app: Option<String>,
    /// The key, for clients that cannot set headers (browsers' WebSocket).
    access_token: Option<String>,
}

/// Opens the long-lived client connection: a WebSocket on which the client sends batches
/// of events (`{"type":"events","batch":N,"events":[…]}`) and receives, for each, a
/// per-event report (`{"type":"ack","batch":N,…}`, the same outcomes as
/// `POST /v1/events`) once its events are durable. The first frame is `hello` with the
/// connection's limits; `slow_down` asks the client to wait; an unknown key or app closes
/// the connection with 4401/4403/4404 and a reason. The protocol is in docs/connect.md.
#[utoipa::path(
    get,
    path = "/v1/connect",
    tag = "collect",
    params(ConnectQuery),
    responses(
        (status = 101, description = "Switching protocols: the connection is a WebSocket from here on"),
        (status = 426, description = "Not a WebSocket upgrade request", body = meridian_api::ErrorBody),
    ),
    extensions(("x-permission" = json!("write"))),
)]
async fn connect(
    State(state): State<Arc<AppState>>,
    Query(query): Query<ConnectQuery>,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    let Ok(upgrade) = upgrade else {
        return ApiError::new(StatusCode::UPGRADE_REQUIRED, "websocket_required", "GET /v1/connect is a WebSocket: connect with a WebSocket client (Upgrade: websocket); see docs/connect.md")
            .into_response();
    };
    // Checked before the upgrade, reported after it: a browser cannot read why a
    // handshake was refused, but it can read a close code and reason.
    let authorized = authorize(&state, &headers, &query);
    let limits = state.config.connect.clone();
    upgrade.max_message_size(limits.max_frame_bytes).max_frame_size(limits.max_frame_bytes).on_upgrade(move |socket| async move {
        match authorized {
            Ok(app) => session(state, app, socket).await,
            Err(e) => refuse(socket, e).await,
        }
    })
}

fn authorize(state: &AppState, headers: &HeaderMap, query: &ConnectQuery) -> Result<AppId, ApiError> {
    let secret = match presented_key(headers)? {
        Some(secret) => Some(secret),
        None => query.access_token.clone(),
    };
    let principal = principal_of_key(state, secret)?;
    let app = crate::routes::ingest::target_app(&principal, query.app.as_deref())?;
    crate::routes::ingest::check_write(state, &principal, &app)?;
    Ok(app)
}

/// A client frame as the server reads it: the events stay JSON text (the collector splits
/// them as it splits a request body), so a batch is never parsed twice.
enum Incoming {
    /// `events`: the batch number, the events array's bytes and its number of events.
    Events { batch: u64, events: (Vec<u8>, usize) },
    /// `ping`.
    Ping { nonce: Option<u64> },
}

impl Incoming {
    /// Reads a text frame; on error, the batch number if it could be read, and what to do.
    fn read(frame: &str) -> Result<Incoming, (Option<u64>, String)> {
        /// Every field of every client frame (`meridian_api::connect::ClientFrame`), with the
        /// events borrowed as raw JSON (an internally tagged enum cannot borrow them).
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Raw<'a> {
            #[serde(rename = "type")]
            kind: &'a str,
            batch: Option<u64>,
            #[serde(borrow)]
            events: Option<&'a serde_json::value::RawValue>,
            nonce: Option<u64>,
        }
        let raw: Raw<'_> = serde_json::from_str(frame).map_err(|e| {
            let batch = serde_json::from_str::<serde_json::Value>(frame).ok().and_then(|v| v.get("batch").and_then(|b| b.as_u64()));
            (batch, format!("the frame is not a JSON object of the protocol: {e}; see docs/connect.md"))
        })?;
        match raw.kind {
            "ping" => Ok(Incoming::Ping { nonce: raw.nonce }),
            "events" => {
                let Some(batch) = raw.batch else { return Err((None, "an `events` frame needs a `batch` number".into())) };
                let Some(events) = raw.events.map(|e| e.get().as_bytes()).filter(|e| e.first() == Some(&b'[')) else {
                    return Err((Some(batch), "an `events` frame needs an `events` array".into()));
                };
                let n = meridian_collector::split::split_events(events, Framing::Auto).len();
                Ok(Incoming::Events { batch, events: (events.to_vec(), n) })
            }
            other => Err((raw.batch, format!("unknown frame type {other:?}; a client sends `events` or `ping`"))),
        }
    }
}

fn text(frame: &ServerFrame) -> Message {
    // Strings, numbers and reports only: serialising cannot fail.
    Message::Text(serde_json::to_string(frame).expect("a server frame always serialises").into())
}

fn close_frame(code: u16, reason: &str) -> Message {
    // A close reason is at most 123 bytes; the full message went in an `error` frame.
    let mut reason = reason.to_owned();
    while reason.len() > 123 {
        reason.pop();
    }
    Message::Close(Some(CloseFrame { code, reason: reason.into() }))
}

/// Refuses an upgraded connection: an `error` frame with the whole message, then a close
/// code by the refusal's status.
async fn refuse(mut socket: WebSocket, e: ApiError) {
    let code = match e.status {
        StatusCode::UNAUTHORIZED => close::UNAUTHORIZED,
        StatusCode::FORBIDDEN => close::FORBIDDEN,
        StatusCode::NOT_FOUND => close::UNKNOWN_APP,
        _ => close::BAD_REQUEST,
    };
    metrics::counter!("meridian_connect_refused_total", "code" => e.code).increment(1);
    let _ = socket.send(text(&ServerFrame::Error { batch: None, code: e.code.to_owned(), message: e.message.clone() })).await;
    let _ = socket.send(close_frame(code, e.code)).await;
}

/// What ends a connection's reading.
enum End {
    /// The client closed or went away.
    ClientGone,
    /// The server closes with this frame once the batches in flight are acknowledged.
    Close(Message),
}

/// Serves one authorised connection until it ends.
async fn session(state: Arc<AppState>, app: AppId, socket: WebSocket) {
    let _open = OpenGuard::new(state.clone());
    let limits = state.config.connect.clone();
    let (mut sink, mut stream) = socket.split();
    let (out, mut outgoing) = mpsc::unbounded_channel::<Message>();
    // The writer: the only task that writes to the socket; ends after a close frame. What
    // is queued together (acks of batches that became durable in one group commit) goes
    // out with one flush.
    let writer = tokio::spawn(async move {
        'write: while let Some(first) = outgoing.recv().await {
            let mut next = Some(first);
            while let Some(message) = next.take() {
                let last = matches!(message, Message::Close(_));
                if sink.feed(message).await.is_err() {
                    break 'write;
                }
                if last {
                    let _ = sink.flush().await;
                    break 'write;
                }
                next = outgoing.try_recv().ok();
            }
            if sink.flush().await.is_err() {
                break;
            }
        }
        let _ = sink.close().await;
    });
    let max_batch_events = state.config.collector.max_batch_events;
    let _ = out.send(text(&ServerFrame::Hello(Hello {
        protocol: PROTOCOL_VERSION,
        app: app.as_str().to_owned(),
        max_frame_bytes: limits.max_frame_bytes,
        max_batch_events,
        max_in_flight_events: limits.max_in_flight_events,
        heartbeat_secs: limits.heartbeat_secs,
        idle_timeout_secs: limits.idle_timeout_secs,
    })));
    let permits = Arc::new(Semaphore::new(limits.max_in_flight_events));
    let mut batches = tokio::task::JoinSet::new();
    let mut closing = state.connections.closing.subscribe();
    let heartbeat_every = Duration::from_secs(limits.heartbeat_secs);
    let idle_timeout = Duration::from_secs(limits.idle_timeout_secs);
    let mut heartbeat = tokio::time::interval_at(tokio::time::Instant::now() + heartbeat_every, heartbeat_every);
    let mut last_heard = Instant::now();
    let in_flight = |permits: &Semaphore| limits.max_in_flight_events - permits.available_permits();

    let end = loop {
        // Finished batch tasks are reaped as they end, so the set stays small.
        while batches.try_join_next().is_some() {}
        if *closing.borrow() {
            break End::Close(close_frame(1001, "server shutting down; reconnect and resend what was not acknowledged"));
        }
        tokio::select! {
            message = stream.next() => {
                let message = match message {
                    None => break End::ClientGone,
                    Some(Ok(message)) => message,
                    Some(Err(e)) => {
                        let e = e.to_string();
                        if e.contains("Space limit exceeded") || e.contains("too long") {
                            metrics::counter!("meridian_connect_frames_total", "outcome" => "too_large").increment(1);
                            let message = format!("a frame exceeded {} bytes (connect.max_frame_bytes); send smaller batches", limits.max_frame_bytes);
                            let _ = out.send(text(&ServerFrame::Error { batch: None, code: "frame_too_large".into(), message }));
                            break End::Close(close_frame(1009, "frame_too_large"));
                        }
                        break End::ClientGone;
                    }
                };
                last_heard = Instant::now();
                let frame_text = match message {
                    Message::Text(t) => t,
                    Message::Close(_) => break End::ClientGone,
                    Message::Ping(_) | Message::Pong(_) => continue,
                    Message::Binary(_) => {
                        let _ = out.send(text(&ServerFrame::Error { batch: None, code: "unsupported_frame".into(), message: "send JSON text frames; binary frames are not read".into() }));
                        continue;
                    }
                };
                let frame = match Incoming::read(frame_text.as_str()) {
                    Ok(frame) => frame,
                    Err((batch, message)) => {
                        metrics::counter!("meridian_connect_frames_total", "outcome" => "malformed").increment(1);
                        let _ = out.send(text(&ServerFrame::Error { batch, code: "malformed_frame".into(), message }));
                        continue;
                    }
                };
                match frame {
                    Incoming::Ping { nonce } => {
                        let _ = out.send(text(&ServerFrame::Pong { nonce }));
                    }
                    Incoming::Events { batch, events: (events, n) } => {
                        if n > limits.max_in_flight_events {
                            let message = format!("a batch of {n} events can never fit the {} events a connection may have in flight; split it", limits.max_in_flight_events);
                            let _ = out.send(text(&ServerFrame::Error { batch: Some(batch), code: "batch_over_in_flight_limit".into(), message }));
                            continue;
                        }
                        // Room for its events first: beyond the limit nothing more is read.
                        let held = match permits.clone().try_acquire_many_owned(n as u32) {
                            Ok(held) => held,
                            Err(_) => {
                                metrics::counter!("meridian_connect_slow_down_total", "reason" => "in_flight_limit").increment(1);
                                let _ = out.send(text(&ServerFrame::SlowDown {
                                    reason: SlowDownReason::InFlightLimit,
                                    in_flight_events: in_flight(&permits),
                                    max_in_flight_events: limits.max_in_flight_events,
                                    retry_after_ms: None,
                                }));
                                tokio::select! {
                                    held = permits.clone().acquire_many_owned(n as u32) => match held {
                                        Ok(held) => held,
                                        Err(_) => break End::ClientGone,
                                    },
                                    _ = closing.changed() => {
                                        // Not read any further: the client resends it after reconnecting.
                                        break End::Close(close_frame(1001, "server shutting down; reconnect and resend what was not acknowledged"));
                                    }
                                }
                            }
                        };
                        let (state, app, out, permits, max) = (state.clone(), app.clone(), out.clone(), permits.clone(), limits.max_in_flight_events);
                        batches.spawn(async move {
                            let frame = ingest_batch(&state, &app, batch, &events, n, &out, &permits, max).await;
                            let _ = out.send(text(&frame));
                            drop(held);
                        });
                    }
                }
            }
            _ = heartbeat.tick() => {
                if last_heard.elapsed() >= idle_timeout {
                    metrics::counter!("meridian_connect_idle_closed_total").increment(1);
                    let message = format!("nothing arrived for {} s (connect.idle_timeout_secs); answer pings and reconnect", limits.idle_timeout_secs);
                    let _ = out.send(text(&ServerFrame::Error { batch: None, code: "idle_timeout".into(), message }));
                    break End::Close(close_frame(close::IDLE_TIMEOUT, "idle_timeout"));
                }
                let _ = out.send(Message::Ping(Default::default()));
            }
            _ = closing.changed() => {}
        }
    };
    match end {
        End::ClientGone => {
            // The batches in flight still finish (their events are stored); their acks
            // have no one to go to.
            while batches.join_next().await.is_some() {}
            drop(out);
        }
        End::Close(frame) => {
            // Every batch read gets its ack before the close, within the grace period.
            let grace = Duration::from_secs(limits.shutdown_grace_secs.max(1));
            let _ = tokio::time::timeout(grace, async { while batches.join_next().await.is_some() {} }).await;
            let _ = out.send(frame);
            drop(out);
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(5), writer).await;
}

/// Ingests one batch: retried while the log refuses appends for now (telling the client
/// to slow down), answered with its report or its error.
#[allow(clippy::too_many_arguments)]
async fn ingest_batch(state: &AppState, app: &AppId, batch: u64, body: &[u8], n: usize, out: &mpsc::UnboundedSender<Message>, permits: &Semaphore, max: usize) -> ServerFrame {
    let mut pause = Duration::from_millis(5);
    loop {
        // The array is the body `POST /v1/events` would carry: split and reported per event.
        match state.collector.ingest(app, body, BodyFormat::Events(Framing::Auto)).await {
            Ok(report) => {
                metrics::counter!("meridian_connect_frames_total", "outcome" => "acked").increment(1);
                metrics::counter!("meridian_connect_events_total").increment(n as u64);
                return ServerFrame::Ack { batch, report };
            }
            Err(CollectorError::Overloaded { .. }) => {
                metrics::counter!("meridian_connect_slow_down_total", "reason" => "log_overloaded").increment(1);
                let _ = out.send(text(&ServerFrame::SlowDown {
                    reason: SlowDownReason::LogOverloaded,
                    in_flight_events: max - permits.available_permits(),
                    max_in_flight_events: max,
                    retry_after_ms: Some(pause.as_millis() as u64),
                }));
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(500));
            }
            Err(e) => {
                let e = ApiError::from(e);
                metrics::counter!("meridian_connect_frames_total", "outcome" => "refused").increment(1);
                return ServerFrame::Error { batch: Some(batch), code: e.code.to_owned(), message: e.message };
            }
        }
    }
}
