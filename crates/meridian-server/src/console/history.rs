//! The history capability's console pages: a user's (or device's) recently viewed items
//! with delete and clear, erasing the user everywhere with the per-capability report, and
//! (global admins) the cold-tier rebuild with a progress bar.

use super::answers::{AppPage, GlobalAdminPage};
use super::{api, ser, with_query, Page, PageRequest, PageSpec};
use crate::module::{ConsoleSection, ModuleContext, NavAccess, NavEntry, NavGroup};
use crate::state::{blocking, AppState};
use crate::extract::Path;
use axum::extract::State;
use axum::response::Response;
use meridian_api::history::{HistoryCount, HistoryPage, RebuildStatus};
use meridian_event::{AppId, LogEntry};
use meridian_log::{Log, TopicName};
use meridian_tenancy::Permission;
use minijinja::context;
use serde::Serialize;
use std::collections::HashMap;
use std::sync::Arc;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// The users page and the rebuild page.
pub(crate) fn section(ctx: &ModuleContext<'_>) -> ConsoleSection {
    ConsoleSection {
        nav: vec![
            NavEntry { id: "users", label: "nav.users", href: "/console/apps/{app}/users", access: NavAccess::App(Permission::Read), group: NavGroup::App, order: 20 },
            NavEntry { id: "history_rebuild", label: "nav.history_rebuild", href: "/console/admin/history", access: NavAccess::Global(Permission::Admin), group: NavGroup::Admin, order: 40 },
        ],
        routes: OpenApiRouter::new().routes(routes!(users)).routes(routes!(rebuild)).with_state(ctx.state.clone()),
    }
}

/// Items per page of a history.
const PAGE: usize = 50;
/// Records read from the end of each partition to find recently active users.
const TAIL: u64 = 200;
/// Recently active users shown.
const RECENT: usize = 12;

/// A recently active user or device.
#[derive(Debug, Serialize, PartialEq, Eq)]
struct Recent {
    kind: &'static str,
    id: String,
    last_ms: i64,
    href: String,
}

/// The users and devices with the newest views among the last records of `topic` (blocking:
/// log reads).
fn recent_viewers(log: &dyn Log, topic: &TopicName, app: &AppId, max: usize) -> Result<Vec<Recent>, meridian_log::LogError> {
    let mut latest: HashMap<(&'static str, String), i64> = HashMap::new();
    for partition in 0..log.partition_count(topic)? {
        let offsets = log.offsets(topic, partition)?;
        let from = offsets.end.saturating_sub(TAIL).max(offsets.start);
        for record in log.read(topic, partition, from, TAIL as usize, 4 << 20)? {
            let Ok(LogEntry::Event(event)) = LogEntry::decode(&record.value) else { continue };
            if &event.app != app || event.action.as_str() != "view" || event.target.as_ref().is_none_or(|t| t.kind.as_str() != "sku") {
                continue;
            }
            let owner = match (&event.user, &event.device) {
                (Some(user), _) => ("user", user.as_str().to_owned()),
                (None, Some(device)) => ("device", device.as_str().to_owned()),
                (None, None) => continue,
            };
            let time = event.time.millis();
            latest.entry(owner).and_modify(|t| *t = (*t).max(time)).or_insert(time);
        }
    }
    let mut recent: Vec<Recent> = latest.into_iter().map(|((kind, id), last_ms)| Recent { kind, id, last_ms, href: String::new() }).collect();
    recent.sort_by(|a, b| b.last_ms.cmp(&a.last_ms).then_with(|| a.id.cmp(&b.id)));
    recent.truncate(max);
    Ok(recent)
}

/// Look up a user or device: its recently viewed items (delete one, clear all), and
/// erasing it everywhere with the report of every capability.
#[utoipa::path(
    get,
    path = "/console/apps/{app}/users",
    tag = "console",
    params(
        ("app" = String, Path, description = "App id"),
        ("user" = Option<String>, Query, description = "The user (or device) to show"),
        ("kind" = Option<String>, Query, description = "user (default) or device"),
        ("cursor" = Option<String>, Query, description = "The history's page after this cursor"),
    ),
    responses(AppPage),
    security(("session" = [])),
    extensions(("x-permission" = json!("read"))),
)]
async fn users(State(state): State<Arc<AppState>>, Path(app): Path<String>, request: PageRequest) -> Response {
    let spec = PageSpec { id: "users", title: "users.title", access: Some(NavAccess::App(Permission::Read)) };
    let page = match Page::open(&state, request, Some(&app), spec).await {
        Ok(page) => page,
        Err(response) => return response,
    };
    let Some(app_id) = page.app_id() else { return page.not_found() };
    let kind = match page.query("kind").as_deref() {
        Some("device") => "device",
        _ => "user",
    };
    let user = page.query("user");
    let (log, topic, for_task) = (state.log.clone(), state.events_topic.clone(), app_id.clone());
    let mut recent = match blocking(move || recent_viewers(&*log, &topic, &for_task, RECENT)).await {
        Ok(Ok(recent)) => recent,
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "reading recent viewers failed");
            Vec::new()
        }
        Err(_) => Vec::new(),
    };
    for r in &mut recent {
        r.href = with_query("", &[("user".to_owned(), r.id.clone()), ("kind".to_owned(), r.kind.to_owned())]);
    }
    let mut context = context! {
        user => user.clone(), kind => kind, recent => ser(&recent),
        can_write => page.allows(Permission::Write), can_erase => page.allows(Permission::Admin),
    };
    if let Some(user) = &user {
        let base = format!("/v1/apps/{}/users/{}/history", api::encode(app_id.as_str()), api::encode(user));
        let mut list_query = vec![("kind".to_owned(), kind.to_owned()), ("limit".to_owned(), PAGE.to_string())];
        if let Some(cursor) = page.query("cursor") {
            list_query.push(("cursor".to_owned(), cursor));
        }
        let list = page.api::<HistoryPage>(&with_query(&base, &list_query)).await;
        let count = page.api::<HistoryCount>(&with_query(&format!("{base}/count"), &[("kind".to_owned(), kind.to_owned())])).await;
        let (items, next, error) = match list {
            Ok(p) => {
                let next = p.next_cursor.map(|c| with_query("", &[("user".to_owned(), user.clone()), ("kind".to_owned(), kind.to_owned()), ("cursor".to_owned(), c)]));
                (p.items, next, None)
            }
            Err(failure) if failure.status.is_client_error() && failure.status.as_u16() != 401 => (Vec::new(), None, Some(context! { message => failure.message, code => failure.code })),
            Err(failure) => return page.api_failure(&failure),
        };
        context = context! { ..context, ..context! {
            items => ser(&items), next => next, history_error => error, count => count.map(|c| c.count).unwrap_or(items.len()),
        }};
    }
    page.render("users.html", context)
}

/// The cold-tier rebuild of browsing history (global admins): start it and follow its
/// progress bar until it finishes.
#[utoipa::path(
    get,
    path = "/console/admin/history",
    tag = "console",
    responses(GlobalAdminPage),
    security(("session" = [])),
    extensions(("x-permission" = json!("global_admin"))),
)]
async fn rebuild(State(state): State<Arc<AppState>>, request: PageRequest) -> Response {
    let spec = PageSpec { id: "history_rebuild", title: "rebuild.page_title", access: Some(NavAccess::Global(Permission::Admin)) };
    let page = match Page::open(&state, request, None, spec).await {
        Ok(page) => page,
        Err(response) => return response,
    };
    let (status, error) = match page.api::<RebuildStatus>("/v1/admin/history/rebuild").await {
        Ok(status) => (status, None),
        Err(failure) => (RebuildStatus::default(), Some(context! { message => failure.message, code => failure.code })),
    };
    page.render("history_rebuild.html", context! { status => ser(&status), status_error => error })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use meridian_log::embedded::EmbeddedLog;
    use meridian_log::AppendRecord;

    fn event(app: &str, user: &str, action: &str, time_ms: i64) -> AppendRecord {
        let json = serde_json::json!({"id": format!("{user}-{time_ms}"), "user": user, "action": action, "target": {"type": "sku", "id": "7"}, "time": time_ms});
        let app = AppId::new(app).unwrap();
        let event = meridian_event::Event::from_json(json, &app, meridian_event::Timestamp::now(), &meridian_event::ValidationPolicy::default(), || unreachable!("the event has an id")).unwrap();
        AppendRecord { key: Bytes::from(user.to_owned()), value: Bytes::from(event.encode()), timestamp: time_ms }
    }

    #[tokio::test]
    async fn recent_viewers_are_the_apps_latest_viewers_newest_first() {
        let dir = tempfile::tempdir().unwrap();
        let log = EmbeddedLog::open(dir.path(), Default::default()).unwrap();
        let topic = TopicName::new("events").unwrap();
        log.ensure_topic(&topic, 2).unwrap();
        let now = meridian_event::Timestamp::now().millis();
        log.append(&topic, vec![event("shop", "ann", "view", now - 3000), event("shop", "bob", "view", now - 1000), event("shop", "cy", "pay", now), event("other", "dan", "view", now), event("shop", "ann", "view", now - 2000)])
            .await
            .unwrap();
        let recent = recent_viewers(&*log, &topic, &AppId::new("shop").unwrap(), 10).unwrap();
        assert_eq!(recent.iter().map(|r| (r.id.as_str(), r.last_ms)).collect::<Vec<_>>(), vec![("bob", now - 1000), ("ann", now - 2000)]);
        assert_eq!(recent_viewers(&*log, &topic, &AppId::new("shop").unwrap(), 1).unwrap().len(), 1);
    }
}
