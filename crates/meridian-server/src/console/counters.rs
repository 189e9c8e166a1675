//! The counters capability's console page, the app overview: events by action (bars) and
//! by day (a line), the processors' lag, the app's dead letters with their replay, and the
//! live event stream (an `EventSource` on `/v1/streams/events?app=…`, which takes the
//! session cookie).

use super::answers::AppPage;
use super::{api, charts, ser, with_query, Page, PageRequest, PageSpec};
use crate::module::{ConsoleSection, ModuleContext, NavAccess, NavEntry, NavGroup};
use crate::state::{AppState, EVENTS_TOPIC};
use crate::extract::Path;
use axum::extract::State;
use axum::response::Response;
use meridian_api::counters::AppCounters;
use meridian_api::dead_letters::DeadLetterPage;
use meridian_tenancy::Permission;
use minijinja::context;
use std::sync::Arc;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// The overview's navigation entry and route.
pub(crate) fn section(ctx: &ModuleContext<'_>) -> ConsoleSection {
    ConsoleSection {
        nav: vec![NavEntry { id: "overview", label: "nav.overview", href: "/console/apps/{app}/overview", access: NavAccess::App(Permission::Read), group: NavGroup::App, order: 10 }],
        routes: OpenApiRouter::new().routes(routes!(overview)).with_state(ctx.state.clone()),
    }
}

/// Days the line shows.
const DAYS: usize = 30;
/// Actions the bars show.
const ACTIONS: usize = 12;

/// The app at a glance: event counts by action and by day, processors' lag, dead letters
/// (with replay for admins) and the live event stream.
#[utoipa::path(
    get,
    path = "/console/apps/{app}/overview",
    tag = "console",
    params(("app" = String, Path, description = "App id"), ("dead_cursor" = Option<String>, Query, description = "The dead letters' page after this cursor")),
    responses(AppPage),
    security(("session" = [])),
    extensions(("x-permission" = json!("read"))),
)]
async fn overview(State(state): State<Arc<AppState>>, Path(app): Path<String>, request: PageRequest) -> Response {
    let spec = PageSpec { id: "overview", title: "overview.title", access: Some(NavAccess::App(Permission::Read)) };
    let page = match Page::open(&state, request, Some(&app), spec).await {
        Ok(page) => page,
        Err(response) => return response,
    };
    let app = api::encode(&app);
    let (counters, counters_error) = match page.api::<AppCounters>(&format!("/v1/apps/{app}/counters")).await {
        Ok(c) => (c, None),
        Err(failure) => (AppCounters::default(), Some(context! { message => failure.message, code => failure.code })),
    };
    let mut dead_query = vec![("limit".to_owned(), "20".to_owned())];
    if let Some(cursor) = page.query("dead_cursor") {
        dead_query.push(("cursor".to_owned(), cursor));
    }
    let (dead_letters, dead_next, dead_error) = match page.api::<DeadLetterPage>(&with_query(&format!("/v1/apps/{app}/dead-letters"), &dead_query)).await {
        Ok(p) => {
            let next = (p.dead_letters.len() == 20).then(|| with_query("", &[("dead_cursor".to_owned(), p.next_cursor.clone())]));
            (p.dead_letters, next, None)
        }
        Err(failure) => (Vec::new(), None, Some(context! { message => failure.message, code => failure.code })),
    };
    let processors = crate::routes::admin::processor_views(&state);
    page.render(
        "overview.html",
        context! {
            total => counters.total,
            bars => ser(charts::bar_chart(counters.by_action, ACTIONS)),
            line => ser(charts::line_chart(counters.by_day, DAYS)),
            counters_error => counters_error,
            processors => ser(&processors),
            dead_letters => ser(&dead_letters),
            dead_next => dead_next,
            dead_error => dead_error,
            can_replay => page.allows(Permission::Admin),
            stream_url => format!("/v1/streams/{EVENTS_TOPIC}?app={app}"),
        },
    )
}
