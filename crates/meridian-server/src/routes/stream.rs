//! `GET /v1/streams/{topic}`: a topic's events as server-sent events, filtered to the
//! key's app, resumable with `Last-Event-ID`.
//!
//! Every SSE event's id is the position *after* it in every partition, written
//! `p0:o0,p1:o1,…`; a client that reconnects with that id as `Last-Event-ID` continues
//! exactly after the last event it saw. Without one the stream starts at the end (live),
//! or at the start with `?from=beginning`.

use crate::auth::{app_id, check, presented_key, principal, principal_of_key};
use crate::error::ApiError;
use crate::state::AppState;
use crate::extract::{Path, Query};
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures::stream::{self, Stream};
use meridian_event::{AppId, LogEntry};
use meridian_tenancy::{Permission, Principal};
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use meridian_log::{Log, TopicName};
use serde::Deserialize;
use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

/// The stream route.
pub(crate) fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new().routes(routes!(stream_topic))
}

/// Where a stream starts and whose events it carries.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct StreamQuery {
    /// `beginning` or `end` (default) when there is no `Last-Event-ID`.
    #[param(pattern = "^(beginning|end)$")]
    from: Option<String>,
    /// App, for the master key and global roles (which otherwise see every app).
    app: Option<String>,
    /// The key, for clients that cannot set headers (browsers' EventSource).
    access_token: Option<String>,
    /// `false`: send what the topic holds now, then end (default `true`: stay open for new
    /// events, up to the server's `collector.stream_max_secs`).
    follow: Option<bool>,
}

fn parse_positions(text: &str, partitions: u32) -> Result<Vec<u64>, ApiError> {
    let bad = || ApiError::bad_request("invalid_last_event_id", "Last-Event-ID must be an id this stream sent (p0:o0,p1:o1,…)");
    let mut positions = vec![0; partitions as usize];
    for part in text.split(',').filter(|p| !p.is_empty()) {
        let (p, o) = part.split_once(':').ok_or_else(bad)?;
        let p: usize = p.trim().parse().map_err(|_| bad())?;
        let o: u64 = o.trim().parse().map_err(|_| bad())?;
        *positions.get_mut(p).ok_or_else(bad)? = o;
    }
    Ok(positions)
}

fn format_positions(positions: &[u64]) -> String {
    positions.iter().enumerate().map(|(p, o)| format!("{p}:{o}")).collect::<Vec<_>>().join(",")
}

struct Cursor {
    log: Arc<dyn Log>,
    topic: TopicName,
    app: Option<AppId>,
    positions: Vec<u64>,
    pending: VecDeque<SseEvent>,
    appended: tokio::sync::watch::Receiver<u64>,
    /// Without `follow`: the end offsets when the stream started; it ends there.
    end: Option<Vec<u64>>,
    /// The stream ends then (clients resume with `Last-Event-ID`).
    deadline: tokio::time::Instant,
    _open: OpenStream,
}

/// Counts a stream in `meridian_streams_open` for as long as it lives, however it ends.
struct OpenStream;

impl OpenStream {
    fn new() -> OpenStream {
        metrics::gauge!("meridian_streams_open").increment(1.0);
        OpenStream
    }
}

impl Drop for OpenStream {
    fn drop(&mut self) {
        metrics::gauge!("meridian_streams_open").decrement(1.0);
    }
}

/// What one fill read: entries to send, the positions after each, where it ended, and
/// whether it read any record at all (filtered out or not).
struct Filled {
    entries: Vec<(Vec<u64>, LogEntry)>,
    positions: Vec<u64>,
    read_any: bool,
}

/// Reads the next records of every partition after `positions`, up to `end` if given
/// (blocking: file reads).
fn fill(log: &dyn Log, topic: &TopicName, app: Option<&AppId>, mut positions: Vec<u64>, end: Option<&[u64]>) -> Result<Filled, meridian_log::LogError> {
    let mut entries = Vec::new();
    let mut read_any = false;
    for partition in 0..positions.len() {
        let limit = end.map_or(u64::MAX, |e| e[partition]);
        if positions[partition] >= limit {
            continue;
        }
        let records = log.read(topic, partition as u32, positions[partition], 256, 1 << 20)?;
        for record in records.into_iter().take_while(|r| r.offset < limit) {
            read_any = true;
            positions[partition] = record.offset + 1;
            let Ok(entry) = LogEntry::decode(&record.value) else { continue };
            let entry_app = match &entry {
                LogEntry::Event(event) => &event.app,
                LogEntry::Erasure(erasure) => &erasure.app,
            };
            if app.is_some_and(|app| app != entry_app) {
                continue;
            }
            entries.push((positions.clone(), entry));
        }
    }
    Ok(Filled { entries, positions, read_any })
}

impl Cursor {
    /// Reads the next records of every partition into `pending`, on the blocking pool;
    /// returns whether it read any record (so a caller knows whether to wait for more).
    async fn fill(&mut self) -> Result<bool, String> {
        let (log, topic, app, positions, end) = (self.log.clone(), self.topic.clone(), self.app.clone(), self.positions.clone(), self.end.clone());
        let filled = tokio::task::spawn_blocking(move || fill(&*log, &topic, app.as_ref(), positions, end.as_deref())).await.map_err(|e| e.to_string())?.map_err(|e| e.to_string())?;
        self.positions = filled.positions;
        for (positions, entry) in filled.entries {
            let (name, data) = match &entry {
                LogEntry::Event(event) => (event.action.as_str().to_owned(), serde_json::to_string(event)),
                LogEntry::Erasure(erasure) => ("erasure".to_owned(), serde_json::to_string(erasure)),
            };
            let data = data.map_err(|e| e.to_string())?;
            self.pending.push_back(SseEvent::default().id(format_positions(&positions)).event(name).data(data));
        }
        Ok(filled.read_any)
    }

    /// Whether a stream that does not follow has sent everything up to its end.
    fn done(&self) -> bool {
        self.end.as_ref().is_some_and(|end| self.positions.iter().zip(end).all(|(p, e)| p >= e))
    }
}

/// A topic's events as server-sent events, filtered to the caller's app; every event's id
/// is the position after it, so a client that reconnects with `Last-Event-ID` continues
/// exactly after the last event it saw. A user erasure comes as an event named `erasure`:
/// downstream consumers remove what they keep about that user.
#[utoipa::path(
    get,
    path = "/v1/streams/{topic}",
    tag = "collect",
    params(("topic" = String, Path, description = "Topic (e.g. events)"), ("last-event-id" = Option<String>, Header, description = "Resume after this event"), StreamQuery),
    responses((status = 200, description = "Server-sent events (id, event = action, data = the event as JSON)", body = meridian_api::events::StreamEvent, content_type = "text/event-stream"), (status = 404, description = "Unknown topic", body = meridian_api::ErrorBody)),
    extensions(("x-permission" = json!("read"))),
)]
async fn stream_topic(
    State(state): State<Arc<AppState>>,
    Path(topic): Path<String>,
    Query(query): Query<StreamQuery>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    let caller: Principal = match (presented_key(&headers)?, query.access_token.clone()) {
        (None, Some(token)) => principal_of_key(&state, Some(token))?,
        _ => principal(&state, &headers)?,
    };
    let own = match &caller {
        Principal::Key(key) => key.app.clone(),
        _ => None,
    };
    let app = match (own, query.app.as_deref()) {
        (Some(own), _) => Some(own),
        (None, Some(asked)) => Some(app_id(asked)?),
        (None, None) => None,
    };
    match &app {
        Some(app) => check(&caller, Permission::Read, app)?,
        None if caller.allows_global(Permission::Read) => {}
        None => return Err(ApiError::bad_request("missing_app", "name the app whose events to stream: add ?app=<app>")),
    }
    let topic = TopicName::new(topic).map_err(|e| ApiError::bad_request("invalid_topic", e.to_string()))?;
    let partitions = state.log.partition_count(&topic).map_err(|_| ApiError::not_found("unknown_topic", format!("no topic {:?}; see the pipeline's routes", topic.as_str())))?;
    let last_event_id = headers.get("last-event-id").and_then(|v| v.to_str().ok());
    let positions = match (last_event_id, query.from.as_deref()) {
        (Some(id), _) => parse_positions(id, partitions)?,
        (None, Some("beginning")) => (0..partitions).map(|p| state.log.offsets(&topic, p).map(|o| o.start)).collect::<Result<_, _>>().map_err(ApiError::internal)?,
        (None, None | Some("end")) => (0..partitions).map(|p| state.log.offsets(&topic, p).map(|o| o.end)).collect::<Result<_, _>>().map_err(ApiError::internal)?,
        (None, Some(other)) => return Err(ApiError::bad_request("invalid_from", format!("from must be beginning or end, not {other:?}"))),
    };
    let end = if query.follow == Some(false) {
        Some((0..partitions).map(|p| state.log.offsets(&topic, p).map(|o| o.end)).collect::<Result<Vec<_>, _>>().map_err(ApiError::internal)?)
    } else {
        None
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(state.config.collector.stream_max_secs);
    let cursor = Cursor { log: state.log.clone(), topic, app, positions, pending: VecDeque::new(), appended: state.log.subscribe(), end, deadline, _open: OpenStream::new() };
    let events = stream::unfold(cursor, |mut cursor| async move {
        loop {
            if let Some(event) = cursor.pending.pop_front() {
                return Some((Ok(event), cursor));
            }
            if cursor.done() || tokio::time::Instant::now() >= cursor.deadline {
                return None;
            }
            cursor.appended.borrow_and_update();
            match cursor.fill().await {
                Err(e) => {
                    tracing::warn!(error = %e, "stream read failed; closing the stream");
                    return None;
                }
                // Records remain (perhaps all of other apps): read on without waiting.
                Ok(true) => {}
                Ok(false) if cursor.end.is_some() => {}
                Ok(false) => {
                    let wait = Duration::from_secs(5).min(cursor.deadline.saturating_duration_since(tokio::time::Instant::now()));
                    let _ = tokio::time::timeout(wait, cursor.appended.changed()).await;
                }
            }
        }
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_round_trip() {
        let positions = vec![3, 0, 17];
        assert_eq!(parse_positions(&format_positions(&positions), 3).unwrap(), positions);
        assert!(parse_positions("9:1", 3).is_err());
        assert!(parse_positions("x", 3).is_err());
    }
}
