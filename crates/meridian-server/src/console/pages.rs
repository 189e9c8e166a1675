//! The server's own console pages: sign-in, the landing redirect, API keys, the audit log
//! (per app and whole), operators, administration (processors, pipeline, topics), and the
//! console's embedded style sheet, script and icon.

use super::answers::{AppPage, GlobalAdminPage};
use super::{api, ser, see_other, with_query, Page, PageRequest, PageSpec};
use crate::auth::session_cookie;
use crate::error::ApiError;
use crate::module::{NavAccess, NavEntry, NavGroup};
use crate::state::{blocking, AppState};
use crate::extract::Path;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use meridian_api::audit::AuditPage;
use meridian_tenancy::{Permission, Role, TimeZoneName};
use minijinja::{context, Value};
use serde::Serialize;
use std::sync::{Arc, OnceLock};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

const CSS: &str = include_str!("../../assets/console/console.css");
const JS: &str = include_str!("../../assets/console/console.js");
const ICON: &str = include_str!("../../assets/console/icon.svg");

/// The server's console routes.
pub(crate) fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(root))
        .routes(routes!(favicon))
        .routes(routes!(home))
        .routes(routes!(home_slash))
        .routes(routes!(login))
        .routes(routes!(asset))
        .routes(routes!(keys))
        .routes(routes!(app_audit))
        .routes(routes!(audit))
        .routes(routes!(operators))
        .routes(routes!(admin))
}

/// The server's navigation entries.
pub(crate) fn nav() -> Vec<NavEntry> {
    vec![
        NavEntry { id: "keys", label: "nav.keys", href: "/console/apps/{app}/keys", access: NavAccess::App(Permission::Admin), group: NavGroup::App, order: 50 },
        NavEntry { id: "app_audit", label: "nav.audit", href: "/console/apps/{app}/audit", access: NavAccess::App(Permission::Admin), group: NavGroup::App, order: 60 },
        NavEntry { id: "operators", label: "nav.operators", href: "/console/operators", access: NavAccess::Global(Permission::Admin), group: NavGroup::Admin, order: 10 },
        NavEntry { id: "audit", label: "nav.audit_all", href: "/console/audit", access: NavAccess::Global(Permission::Admin), group: NavGroup::Admin, order: 20 },
        NavEntry { id: "admin", label: "nav.admin", href: "/console/admin", access: NavAccess::Global(Permission::Admin), group: NavGroup::Admin, order: 30 },
    ]
}

/// A short fingerprint of the embedded assets, so browsers fetch new ones after an upgrade.
pub(crate) fn asset_version() -> &'static str {
    static VERSION: OnceLock<String> = OnceLock::new();
    VERSION.get_or_init(|| {
        // FNV-1a over the assets: stable, and enough to tell versions apart.
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for byte in CSS.bytes().chain(JS.bytes()).chain(ICON.bytes()) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        format!("{:012x}", hash & 0xffff_ffff_ffff)
    })
}

/// Redirects to the console.
#[utoipa::path(
    get,
    path = "/",
    tag = "console",
    responses((status = 307, description = "To /console")),
    security(()),
    extensions(("x-permission" = json!("public"))),
)]
async fn root() -> Redirect {
    Redirect::temporary("/console")
}

/// The console's icon.
#[utoipa::path(
    get,
    path = "/favicon.ico",
    tag = "console",
    responses((status = 200, description = "The icon (SVG)", body = String, content_type = "image/svg+xml")),
    security(()),
    extensions(("x-permission" = json!("public"))),
)]
async fn favicon() -> Response {
    ([(header::CONTENT_TYPE, "image/svg+xml"), (header::CACHE_CONTROL, "public, max-age=86400")], ICON).into_response()
}

async fn landing(state: Arc<AppState>, request: PageRequest) -> Response {
    let page = match Page::open(&state, request, None, PageSpec { id: "home", title: "home.title", access: None }).await {
        Ok(page) => page,
        Err(response) => return response,
    };
    match page.first_nav_href() {
        Some(href) => see_other(&href),
        None => {
            let admins: Vec<_> = state
                .tenancy
                .list_operators()
                .into_iter()
                .filter(|o| !o.disabled && o.grants.iter().any(|g| g.allows_global(Permission::Admin)))
                .map(|o| context! { login => o.login.to_string(), display_name => o.display_name })
                .collect();
            page.render("no_apps.html", context! { admins => admins })
        }
    }
}

/// The console: to the first page the operator may open (to sign-in without a session).
#[utoipa::path(
    get,
    path = "/console",
    tag = "console",
    responses(
        (status = 303, description = "To the operator's first page, or to /console/login?next=… without a session"),
        (status = 200, description = "A page saying the operator has no role yet, and whom to ask", body = String, content_type = "text/html"),
    ),
    security(("session" = [])),
    extensions(("x-permission" = json!("any"))),
)]
async fn home(State(state): State<Arc<AppState>>, request: PageRequest) -> Response {
    landing(state, request).await
}

/// The console (as `/console`).
#[utoipa::path(
    get,
    path = "/console/",
    tag = "console",
    responses(
        (status = 303, description = "To the operator's first page, or to /console/login?next=… without a session"),
        (status = 200, description = "A page saying the operator has no role yet, and whom to ask", body = String, content_type = "text/html"),
    ),
    security(("session" = [])),
    extensions(("x-permission" = json!("any"))),
)]
async fn home_slash(State(state): State<Arc<AppState>>, request: PageRequest) -> Response {
    landing(state, request).await
}

/// The sign-in page (the form posts to `POST /v1/session`, then goes to `next`).
#[utoipa::path(
    get,
    path = "/console/login",
    tag = "console",
    params(("next" = Option<String>, Query, description = "Console path to go to after signing in")),
    responses(
        (status = 200, description = "HTML page", body = String, content_type = "text/html"),
        (status = 303, description = "Already signed in: to `next`"),
    ),
    security(()),
    extensions(("x-permission" = json!("public"))),
)]
async fn login(State(state): State<Arc<AppState>>, request: PageRequest) -> Response {
    let next = super::safe_next(request.query("next").as_deref());
    if let Some(token) = session_cookie(&request.headers) {
        if state.tenancy.session(token, state.tenancy.clock().now_ms()).is_ok() {
            return see_other(&next);
        }
    }
    let (lang, remember) = request.lang();
    let context = context! {
        lang => lang.tag(),
        langs => ser(super::lang_links(&request, lang)),
        title => lang.message("login.title"),
        page_id => "login",
        next => next,
        bare => true,
        asset_version => asset_version(),
        js_messages => super::js_messages(lang),
    };
    let mut response = super::html(StatusCode::OK, "login.html", context);
    if remember {
        response.headers_mut().append(header::SET_COOKIE, super::lang_cookie(lang, state.config.server.secure_cookies));
    }
    response
}

/// The console's style sheet, script and icon.
#[utoipa::path(
    get,
    path = "/console/assets/{file}",
    tag = "console",
    params(("file" = String, Path, description = "console.css, console.js or icon.svg")),
    responses((status = 200, description = "The file", body = String, content_type = "text/plain"), (status = 404, description = "No such file", body = meridian_api::ErrorBody)),
    security(()),
    extensions(("x-permission" = json!("public"))),
)]
async fn asset(Path(file): Path<String>) -> Response {
    let (body, content_type) = match file.as_str() {
        "console.css" => (CSS, "text/css; charset=utf-8"),
        "console.js" => (JS, "text/javascript; charset=utf-8"),
        "icon.svg" => (ICON, "image/svg+xml"),
        _ => return ApiError::not_found("not_found", format!("no console asset {file:?}")).into_response(),
    };
    ([(header::CONTENT_TYPE, content_type), (header::CACHE_CONTROL, "public, max-age=86400"), (header::X_CONTENT_TYPE_OPTIONS, "nosniff")], body).into_response()
}

/// A key as the keys page shows it (never its secret, which only its creation shows).
#[derive(Debug, Serialize)]
struct KeyRow {
    key_id: String,
    scopes: Vec<&'static str>,
    created_ms: i64,
}

/// The app's API keys: list, create (the secret is shown once), revoke.
#[utoipa::path(
    get,
    path = "/console/apps/{app}/keys",
    tag = "console",
    params(("app" = String, Path, description = "App id")),
    responses(AppPage),
    security(("session" = [])),
    extensions(("x-permission" = json!("admin"))),
)]
async fn keys(State(state): State<Arc<AppState>>, Path(app): Path<String>, request: PageRequest) -> Response {
    let spec = PageSpec { id: "keys", title: "keys.title", access: Some(NavAccess::App(Permission::Admin)) };
    let page = match Page::open(&state, request, Some(&app), spec).await {
        Ok(page) => page,
        Err(response) => return response,
    };
    let Some(app) = page.app_id() else { return page.not_found() };
    let keys: Vec<KeyRow> =
        state.tenancy.list_keys(&app).iter().map(|k| KeyRow { key_id: k.key_id.clone(), scopes: k.scopes.iter().map(|s| s.as_str()).collect(), created_ms: k.created_ms }).collect();
    page.render("keys.html", context! { keys => ser(&keys) })
}

/// One field of an audit entry before and after, as text.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub(crate) struct Change {
    field: String,
    before: String,
    after: String,
    changed: bool,
}

/// A value as text; integer times (fields named `…_ms`) as times in `zone`.
fn compact(field: &str, value: Option<&serde_json::Value>, zone: &TimeZoneName) -> String {
    match value {
        None | Some(serde_json::Value::Null) => "—".to_owned(),
        Some(serde_json::Value::Number(n)) if field.ends_with("_ms") && n.as_i64().is_some() => super::render::format_time(n.as_i64().unwrap_or_default(), zone),
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

/// What changed: for objects one row per field (both sides' fields, changed ones marked),
/// else one row for the whole value.
pub(crate) fn changes(before: Option<&serde_json::Value>, after: Option<&serde_json::Value>, zone: &TimeZoneName) -> Vec<Change> {
    use serde_json::Value as J;
    match (before, after) {
        (None, None) => Vec::new(),
        (b, a) if matches!(b, None | Some(J::Object(_))) && matches!(a, None | Some(J::Object(_))) => {
            let empty = serde_json::Map::new();
            let b = b.and_then(J::as_object).unwrap_or(&empty);
            let a = a.and_then(J::as_object).unwrap_or(&empty);
            let mut fields: Vec<&String> = b.keys().chain(a.keys()).collect();
            fields.sort();
            fields.dedup();
            fields
                .into_iter()
                .map(|f| Change { field: f.clone(), before: compact(f, b.get(f), zone), after: compact(f, a.get(f), zone), changed: b.get(f) != a.get(f) })
                .collect()
        }
        (b, a) => vec![Change { field: "value".to_owned(), before: compact("value", b, zone), after: compact("value", a, zone), changed: b != a }],
    }
}

/// `YYYY-MM-DD` → the start of that day in `zone`, ms since the epoch.
pub(crate) fn day_start_ms(date: &str, zone: &TimeZoneName) -> Option<i64> {
    use chrono::TimeZone as _;
    let date = chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d").ok()?;
    let midnight = date.and_hms_opt(0, 0, 0)?;
    zone.tz().from_local_datetime(&midnight).earliest().map(|t| t.timestamp_millis())
}

const KNOWN_ACTIONS: &[&str] =
    &["app.", "key.", "operator.", "session.", "webhook.", "delivery.", "user.erase", "dead_letters.replay", "processor.", "pipeline.", "history."];

async fn audit_page(page: Page, api_path: String, show_app: bool) -> Response {
    // Days and times are those of the app chosen in the switcher, as every time shown.
    let zone = page.app().map(|a| a.time_zone).unwrap_or_default();
    let filter = context! {
        actor => page.query("actor"),
        action => page.query("action"),
        from => page.query("from"),
        to => page.query("to"),
    };
    let mut params: Vec<(String, String)> = Vec::new();
    for name in ["actor", "action", "cursor"] {
        if let Some(value) = page.query(name) {
            params.push((name.to_owned(), value));
        }
    }
    for (name, param, days) in [("from", "from_ms", 0), ("to", "to_ms", 1)] {
        if let Some(date) = page.query(name) {
            match day_start_ms(&date, &zone) {
                Some(ms) => params.push((param.to_owned(), (ms + days * 86_400_000).to_string())),
                None => {
                    let failure = super::ApiFailure { status: StatusCode::BAD_REQUEST, code: "invalid_date".into(), message: format!("{name} must be a date like 2025-01-31, not {date:?}") };
                    return page.api_failure(&failure);
                }
            }
        }
    }
    params.push(("limit".to_owned(), "50".to_owned()));
    let result: Result<AuditPage, _> = page.api(&with_query(&api_path, &params)).await;
    let (entries, next, error) = match result {
        Ok(audit) => {
            let next = audit.next_cursor.as_ref().map(|c| {
                let mut pairs: Vec<(String, String)> = ["actor", "action", "from", "to"].iter().filter_map(|n| page.query(n).map(|v| ((*n).to_owned(), v))).collect();
                pairs.push(("cursor".to_owned(), c.clone()));
                with_query("", &pairs)
            });
            let entries: Vec<Value> = audit
                .entries
                .iter()
                .map(|e| {
                    context! {
                        time_ms => e.time_ms, actor => &e.actor, app => &e.app, action => &e.action, target => &e.target,
                        changes => ser(changes(e.before.as_ref(), e.after.as_ref(), &zone)),
                    }
                })
                .collect();
            (entries, next.filter(|_| !audit.entries.is_empty()), None)
        }
        Err(failure) if failure.status == StatusCode::BAD_REQUEST => (Vec::new(), None, Some(failure)),
        Err(failure) => return page.api_failure(&failure),
    };
    page.render(
        "audit.html",
        context! {
            filter => filter, entries => entries, next => next, show_app => show_app, known_actions => KNOWN_ACTIONS.to_vec(),
            error => error.map(|f| context! { message => f.message, code => f.code }),
        },
    )
}

/// The app's audit log: filters (actor, action, days), paging, before and after side by side.
#[utoipa::path(
    get,
    path = "/console/apps/{app}/audit",
    tag = "console",
    params(
        ("app" = String, Path, description = "App id"),
        ("actor" = Option<String>, Query, description = "Only this actor (master, system, key:<id>, operator:<login>)"),
        ("action" = Option<String>, Query, description = "Only actions starting with this"),
        ("from" = Option<String>, Query, description = "From this day (YYYY-MM-DD, the app's time zone)"),
        ("to" = Option<String>, Query, description = "Up to and including this day"),
        ("cursor" = Option<String>, Query, description = "The page after this cursor"),
    ),
    responses(AppPage),
    security(("session" = [])),
    extensions(("x-permission" = json!("admin"))),
)]
async fn app_audit(State(state): State<Arc<AppState>>, Path(app): Path<String>, request: PageRequest) -> Response {
    let spec = PageSpec { id: "app_audit", title: "audit.title", access: Some(NavAccess::App(Permission::Admin)) };
    let page = match Page::open(&state, request, Some(&app), spec).await {
        Ok(page) => page,
        Err(response) => return response,
    };
    let path = format!("/v1/apps/{}/audit", api::encode(&app));
    audit_page(page, path, false).await
}

/// The whole audit log (global admins): every app and the server's own changes.
#[utoipa::path(
    get,
    path = "/console/audit",
    tag = "console",
    params(
        ("actor" = Option<String>, Query, description = "Only this actor (master, system, key:<id>, operator:<login>)"),
        ("action" = Option<String>, Query, description = "Only actions starting with this"),
        ("from" = Option<String>, Query, description = "From this day (YYYY-MM-DD, in the time zone of the app chosen in the switcher)"),
        ("to" = Option<String>, Query, description = "Up to and including this day"),
        ("cursor" = Option<String>, Query, description = "The page after this cursor"),
    ),
    responses(GlobalAdminPage),
    security(("session" = [])),
    extensions(("x-permission" = json!("global_admin"))),
)]
async fn audit(State(state): State<Arc<AppState>>, request: PageRequest) -> Response {
    let spec = PageSpec { id: "audit", title: "audit.title_all", access: Some(NavAccess::Global(Permission::Admin)) };
    let page = match Page::open(&state, request, None, spec).await {
        Ok(page) => page,
        Err(response) => return response,
    };
    audit_page(page, "/v1/audit".to_owned(), true).await
}

/// An operator as the operators page shows it.
#[derive(Debug, Serialize)]
struct OperatorRow {
    login: String,
    display_name: String,
    grants: Vec<GrantRow>,
    disabled: bool,
    created_ms: i64,
}

#[derive(Debug, Serialize)]
struct GrantRow {
    app: Option<String>,
    role: &'static str,
}

/// Operators (global admins): list, create, change roles, disable and enable.
#[utoipa::path(
    get,
    path = "/console/operators",
    tag = "console",
    responses(GlobalAdminPage),
    security(("session" = [])),
    extensions(("x-permission" = json!("global_admin"))),
)]
async fn operators(State(state): State<Arc<AppState>>, request: PageRequest) -> Response {
    let spec = PageSpec { id: "operators", title: "operators.title", access: Some(NavAccess::Global(Permission::Admin)) };
    let page = match Page::open(&state, request, None, spec).await {
        Ok(page) => page,
        Err(response) => return response,
    };
    let operators: Vec<OperatorRow> = state
        .tenancy
        .list_operators()
        .into_iter()
        .map(|o| OperatorRow {
            login: o.login.to_string(),
            display_name: o.display_name,
            grants: o.grants.iter().map(|g| GrantRow { app: g.app.as_ref().map(ToString::to_string), role: g.role.as_str() }).collect(),
            disabled: o.disabled,
            created_ms: o.created_ms,
        })
        .collect();
    let all_apps: Vec<String> = state.tenancy.apps().into_iter().map(|a| a.id.to_string()).collect();
    let roles: Vec<&str> = Role::ALL.iter().map(|r| r.as_str()).collect();
    let self_login = match page.principal() {
        meridian_tenancy::Principal::Operator(session) => session.login.to_string(),
        _ => String::new(),
    };
    page.render("operators.html", context! { operators => ser(&operators), all_apps => all_apps, roles => roles, self_login => self_login })
}

/// Administration (global admins): processors (lag, rebuild, seek), the pipeline (status,
/// reload), topics, sources (stored, duplicates, dead letters, lag, rate) and the open
/// long-lived client connections.
#[utoipa::path(
    get,
    path = "/console/admin",
    tag = "console",
    responses(GlobalAdminPage),
    security(("session" = [])),
    extensions(("x-permission" = json!("global_admin"))),
)]
async fn admin(State(state): State<Arc<AppState>>, request: PageRequest) -> Response {
    let spec = PageSpec { id: "admin", title: "admin.title", access: Some(NavAccess::Global(Permission::Admin)) };
    let page = match Page::open(&state, request, None, spec).await {
        Ok(page) => page,
        Err(response) => return response,
    };
    let processors: Vec<Value> = crate::routes::admin::processor_views(&state)
        .into_iter()
        .map(|p| {
            let mut topics: Vec<String> = p.partitions.iter().map(|part| part.topic.clone()).collect();
            topics.dedup();
            let first = topics.first().cloned().unwrap_or_default();
            let seek_default = p.partitions.iter().filter(|part| part.topic == first).map(|part| format!("{}:{}", part.partition, part.position)).collect::<Vec<_>>().join(", ");
            context! { ..ser(&p), ..context! { topics => topics, seek_default => seek_default } }
        })
        .collect();
    let pipeline = state.pipeline_status.lock().clone();
    let log = state.log.clone();
    let topics = blocking(move || crate::routes::admin::topic_offsets(&*log)).await;
    let (topics, topics_error) = match topics {
        Ok(Ok(topics)) => (topics, None),
        Ok(Err(e)) => (Vec::new(), Some(context! { message => e.to_string(), code => "internal" })),
        Err(e) => (Vec::new(), Some(context! { message => e.message, code => e.code })),
    };
    // Sources, when the module runs (its route is absent otherwise).
    let sources = if state.config.sources.enabled {
        match page.api::<meridian_api::sources::SourceList>("/v1/admin/sources").await {
            Ok(list) => {
                let charts: Vec<Value> = list.sources.iter().filter(|s| s.history.len() > 1).map(source_charts).collect();
                context! { list => ser(&list.sources), charts => charts }
            }
            Err(failure) => context! { list => Vec::<Value>::new(), error => context! { message => failure.message, code => failure.code } },
        }
    } else {
        Value::from(())
    };
    let connections = state.connections.open();
    page.render("admin.html", context! { processors => processors, pipeline => ser(&pipeline), topics => ser(&topics), topics_error => topics_error, sources => sources, connections => connections })
}

/// A source's lag and rate over its sampled history, as line charts (times in UTC).
fn source_charts(source: &meridian_api::sources::SourceView) -> Value {
    let time = |ms: i64| chrono::DateTime::from_timestamp_millis(ms).map(|t| t.format("%H:%M:%S").to_string()).unwrap_or_default();
    let rate: Vec<(String, u64)> = source.history.iter().map(|s| (time(s.at_ms), s.events_per_second.round() as u64)).collect();
    let lag: Vec<(String, u64)> = source.history.iter().filter_map(|s| Some((time(s.at_ms), s.lag?))).collect();
    context! {
        name => source.spec.name.clone(),
        rate => ser(super::charts::series_chart(&rate)),
        lag => if lag.len() > 1 { ser(super::charts::series_chart(&lag)) } else { Value::from(()) },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn changes_pair_fields_of_both_sides() {
        let utc = TimeZoneName::default();
        let rows = changes(Some(&json!({"a": 1, "b": "x"})), Some(&json!({"b": "y", "c": [1]})), &utc);
        assert_eq!(
            rows,
            vec![
                Change { field: "a".into(), before: "1".into(), after: "—".into(), changed: true },
                Change { field: "b".into(), before: "x".into(), after: "y".into(), changed: true },
                Change { field: "c".into(), before: "—".into(), after: "[1]".into(), changed: true },
            ]
        );
        assert_eq!(changes(None, Some(&json!({"k": 1})), &utc)[0].before, "—");
        assert_eq!(changes(Some(&json!(3)), None, &utc), vec![Change { field: "value".into(), before: "3".into(), after: "—".into(), changed: true }]);
        assert!(changes(None, None, &utc).is_empty());
        let shanghai = TimeZoneName::new("Asia/Shanghai").unwrap();
        assert_eq!(changes(None, Some(&json!({"created_ms": 0})), &shanghai)[0].after, "1970-01-01 08:00:00", "times read as times");
    }

    #[test]
    fn days_start_at_local_midnight() {
        let shanghai = TimeZoneName::new("Asia/Shanghai").unwrap();
        assert_eq!(day_start_ms("1970-01-02", &shanghai), Some(86_400_000 - 8 * 3_600_000));
        assert_eq!(day_start_ms("1970-01-02", &TimeZoneName::default()), Some(86_400_000));
        assert_eq!(day_start_ms("yesterday", &shanghai), None);
    }
}
