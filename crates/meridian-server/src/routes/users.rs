//! Erasing a user everywhere: `DELETE /v1/apps/{app}/users/{user}` appends a durable
//! erasure record to the `events` topic (after the user's earlier events, in their
//! partition) and to every other topic an erasing processor reads (e.g. the topic of an
//! isolated group of the user action system), waits for every capability's erasing
//! processors to pass it in each of their topics, and answers what each capability
//! removed. A replay of the log meets the record again, so the data stays gone after a
//! rebuild.

use crate::auth::{app_id, require};
use crate::error::ApiError;
use crate::module::Erasure as ModuleErasurePolicy;
use crate::state::{blocking, random_id, AppState};
use crate::extract::{Path, Query};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use bytes::Bytes;
use meridian_api::users::{ErasureReport, ModuleErasure};
use meridian_event::{Erasure, SubjectKind, Timestamp};
use meridian_log::{AppendRecord, Position, TopicName};
use meridian_runtime::ProcessorStatus;
use meridian_tenancy::{NewAuditEntry, Permission};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// How long the route waits for the processors to reach the erasure before answering 202.
const WAIT: Duration = Duration::from_secs(10);

/// The user routes.
pub(crate) fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new().routes(routes!(erase_user))
}

/// Whose data.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct SubjectQuery {
    /// `user` (default) or `device`.
    #[param(pattern = "^(user|device)$")]
    kind: Option<String>,
}

/// The topics an erasure record goes to: the events topic first, then every other topic
/// an erasing processor reads.
fn erasure_topics(events: &TopicName, erasing: &[(String, Vec<TopicName>)]) -> Vec<TopicName> {
    let mut topics = vec![events.clone()];
    for topic in erasing.iter().flat_map(|(_, topics)| topics) {
        if !topics.contains(topic) {
            topics.push(topic.clone());
        }
    }
    topics
}

/// Whether every erasing processor has committed a position past the erasure record in
/// each topic it reads.
fn passed(statuses: &[ProcessorStatus], erasing: &[(String, Vec<TopicName>)], positions: &[(TopicName, Position)]) -> bool {
    erasing.iter().all(|(name, topics)| {
        statuses.iter().find(|s| &s.name == name).is_some_and(|s| {
            positions.iter().filter(|(topic, _)| topics.contains(topic)).all(|(topic, at)| {
                s.partitions.iter().any(|p| p.topic == topic.as_str() && p.partition == at.partition && p.position > at.offset)
            })
        })
    })
}

/// Removes a user's (or device's) data from every capability that keeps per-user data.
/// The erasure is a durable record in the log: capabilities whose processors are behind
/// erase when they reach it (answer 202 with them `pending`), and a rebuild from the log
/// erases again.
#[utoipa::path(
    delete,
    path = "/v1/apps/{app}/users/{user}",
    tag = "users",
    params(("app" = String, Path, description = "App id", pattern = "^[a-z0-9_.-]{1,64}$"), ("user" = String, Path, description = "User (or device) id, 1-128 bytes", min_length = 1, max_length = 128), SubjectQuery),
    responses(
        (status = 200, description = "Erased everywhere", body = ErasureReport),
        (status = 202, description = "Recorded; some capabilities are still behind and will erase when they reach it", body = ErasureReport),
        (status = 404, description = "Unknown app", body = meridian_api::ErrorBody),
    ),
    extensions(("x-permission" = json!("admin"))),
)]
async fn erase_user(State(state): State<Arc<AppState>>, Path((app, user)): Path<(String, String)>, Query(q): Query<SubjectQuery>, headers: HeaderMap) -> Result<(StatusCode, Json<ErasureReport>), ApiError> {
    let app = app_id(&app)?;
    let principal = require(&state, &headers, Permission::Admin, &app)?;
    let kind = match q.kind.as_deref().unwrap_or("user") {
        "user" => SubjectKind::User,
        "device" => SubjectKind::Device,
        other => return Err(ApiError::bad_request("invalid_kind", format!("kind must be user or device, not {other:?}"))),
    };
    if user.is_empty() || user.len() > 128 {
        return Err(ApiError::bad_request("invalid_user", "user ids are 1 to 128 bytes"));
    }
    if !state.tenancy.app_exists(&app) {
        return Err(ApiError::not_found("unknown_app", format!("unknown app {:?}", app.as_str())));
    }
    let erasure = Erasure { id: random_id("er_", 12)?, app: app.clone(), kind, subject: user.clone(), requested_ms: Timestamp::now().millis(), requested_by: principal.actor().to_string() };
    let erasing: Vec<(String, Vec<TopicName>)> = state.modules().iter().flat_map(|m| m.erasing()).collect();
    let mut positions: Vec<(TopicName, Position)> = Vec::new();
    for topic in erasure_topics(&state.events_topic, &erasing) {
        let record = AppendRecord { key: Bytes::from(erasure.partition_key().to_owned()), value: Bytes::from(erasure.encode()), timestamp: erasure.requested_ms };
        let position = state.log.append(&topic, vec![record]).await.map_err(|e| match e {
            meridian_log::LogError::Overloaded { .. } => ApiError::new(StatusCode::TOO_MANY_REQUESTS, "overloaded", "the event log cannot keep up; retry shortly").retry_after(1),
            other => ApiError::internal(other),
        })?[0];
        positions.push((topic, position));
    }
    let position = positions[0].1;
    let mut after = serde_json::json!({"erasure_id": erasure.id, "partition": position.partition, "offset": position.offset});
    if positions.len() > 1 {
        after["also"] = positions[1..].iter().map(|(topic, at)| serde_json::json!({"topic": topic.as_str(), "partition": at.partition, "offset": at.offset})).collect();
    }
    let entry = NewAuditEntry::new(principal.actor(), "user.erase", format!("{}:{user}", kind.as_str())).app(app.clone()).after(after);
    let tenancy = state.tenancy.clone();
    blocking(move || tenancy.audit().record(entry)).await??;

    let deadline = Instant::now() + WAIT;
    while !passed(&state.runtime.status(), &erasing, &positions) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let runtime = state.runtime.clone();
    let id = erasure.id.clone();
    let receipts: BTreeMap<String, serde_json::Value> = blocking(move || runtime.erasure_receipts(&id)).await?.map_err(ApiError::internal)?.into_iter().collect();
    let mut modules = BTreeMap::new();
    for module in state.modules() {
        let outcome = match &module.erasure {
            ModuleErasurePolicy::NoUserData { why } => ModuleErasure::NoUserData { why: (*why).to_owned() },
            ModuleErasurePolicy::ByProcessors(names) if names.iter().all(|n| receipts.contains_key(n)) => {
                let mut removed = BTreeMap::new();
                for name in names {
                    if let Some(serde_json::Value::Object(fields)) = receipts.get(name) {
                        removed.extend(fields.clone());
                    }
                }
                ModuleErasure::Erased { removed }
            }
            ModuleErasurePolicy::ByProcessors(_) => ModuleErasure::Pending,
        };
        modules.insert(module.name.to_owned(), outcome);
    }
    let complete = !modules.values().any(|m| matches!(m, ModuleErasure::Pending));
    let report = ErasureReport {
        erasure_id: erasure.id,
        app: app.to_string(),
        kind: kind.as_str().to_owned(),
        id: user,
        partition: position.partition,
        offset: position.offset,
        modules,
        complete,
    };
    Ok((if complete { StatusCode::OK } else { StatusCode::ACCEPTED }, Json(report)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use meridian_runtime::PartitionStatus;

    fn topic(name: &str) -> TopicName {
        TopicName::new(name).unwrap()
    }

    fn status(name: &str, at: &[(&str, u32, u64)]) -> ProcessorStatus {
        let partitions = at.iter().map(|(t, p, position)| PartitionStatus { topic: (*t).to_owned(), partition: *p, position: *position, end: *position, lag: 0 }).collect();
        ProcessorStatus { name: name.to_owned(), partitions, ..ProcessorStatus::default() }
    }

    #[test]
    fn the_record_goes_to_the_events_topic_first_then_to_every_other_topic_an_eraser_reads() {
        let erasing = vec![("history".to_owned(), vec![topic("events")]), ("actions-core".to_owned(), vec![topic("orders")]), ("actions".to_owned(), vec![topic("events")])];
        assert_eq!(erasure_topics(&topic("events"), &erasing), vec![topic("events"), topic("orders")]);
        assert_eq!(erasure_topics(&topic("events"), &[]), vec![topic("events")]);
    }

    #[test]
    fn an_erasure_has_passed_when_every_eraser_is_past_it_in_each_of_its_topics() {
        let erasing = vec![("history".to_owned(), vec![topic("events")]), ("actions-core".to_owned(), vec![topic("orders")])];
        let positions = vec![(topic("events"), Position { partition: 1, offset: 10 }), (topic("orders"), Position { partition: 0, offset: 4 })];
        let history_past = status("history", &[("events", 0, 0), ("events", 1, 11)]);
        assert!(passed(&[history_past.clone(), status("actions-core", &[("orders", 0, 5)])], &erasing, &positions));
        assert!(!passed(&[history_past.clone(), status("actions-core", &[("orders", 0, 4)])], &erasing, &positions), "at the record, not past it");
        assert!(!passed(&[history_past.clone(), status("actions-core", &[("orders", 1, 9)])], &erasing, &positions), "another partition");
        assert!(!passed(&[history_past, status("actions-core", &[])], &erasing, &positions), "no position yet");
        assert!(!passed(&[status("actions-core", &[("orders", 0, 5)])], &erasing, &positions), "history is not running");
        assert!(passed(&[], &[], &positions), "nothing erases");
    }
}
