//! The user action system's console pages: the app's definitions (aggregations with their
//! back-fill progress, lifecycle stages, segments with live member counts, triggers), and
//! a user's profile (first seen, last active, stage, segments, every aggregation's values
//! today, over 7 and 30 days and in all, and the latest events).

use super::answers::AppPage;
use super::{api, ser, Page, PageRequest, PageSpec};
use crate::extract::Path;
use crate::module::{ConsoleSection, ModuleContext, NavAccess, NavEntry, NavGroup};
use crate::state::AppState;
use axum::extract::State;
use axum::response::Response;
use meridian_api::actions::{Definition, DefinitionList, Profile};
use meridian_tenancy::Permission;
use minijinja::context;
use std::sync::Arc;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// The actions page and the profile page.
pub(crate) fn section(ctx: &ModuleContext<'_>) -> ConsoleSection {
    ConsoleSection {
        nav: vec![
            NavEntry { id: "actions", label: "nav.actions", href: "/console/apps/{app}/actions", access: NavAccess::App(Permission::Read), group: NavGroup::App, order: 22 },
            NavEntry { id: "profile", label: "nav.profile", href: "/console/apps/{app}/profile", access: NavAccess::App(Permission::Read), group: NavGroup::App, order: 24 },
        ],
        routes: OpenApiRouter::new().routes(routes!(actions)).routes(routes!(profile)).with_state(ctx.state.clone()),
    }
}

/// The definitions of one kind.
fn of_kind(all: &[Definition], kind: &str) -> Vec<Definition> {
    all.iter().filter(|d| d.kind == kind).cloned().collect()
}

/// The `[actions]` definitions of the app: aggregations (with back-fill progress), lifecycle
/// stages, segments with their live member counts, and triggers.
#[utoipa::path(
    get,
    path = "/console/apps/{app}/actions",
    tag = "console",
    params(("app" = String, Path, description = "App id")),
    responses(AppPage),
    security(("session" = [])),
    extensions(("x-permission" = json!("read"))),
)]
async fn actions(State(state): State<Arc<AppState>>, Path(app): Path<String>, request: PageRequest) -> Response {
    let spec = PageSpec { id: "actions", title: "actions.title", access: Some(NavAccess::App(Permission::Read)) };
    let page = match Page::open(&state, request, Some(&app), spec).await {
        Ok(page) => page,
        Err(response) => return response,
    };
    let Some(app_id) = page.app_id() else { return page.not_found() };
    let definitions = match page.api::<DefinitionList>(&format!("/v1/apps/{}/actions/definitions", api::encode(app_id.as_str()))).await {
        Ok(list) => list.definitions,
        Err(failure) => return page.api_failure(&failure),
    };
    page.render(
        "actions.html",
        context! {
            aggregations => ser(of_kind(&definitions, "aggregation")),
            stages => ser(of_kind(&definitions, "stage")),
            segments => ser(of_kind(&definitions, "segment")),
            triggers => ser(of_kind(&definitions, "trigger")),
        },
    )
}

/// Look up a user's profile: first seen, last active, lifecycle stage, segments, every
/// aggregation's values and the latest events.
#[utoipa::path(
    get,
    path = "/console/apps/{app}/profile",
    tag = "console",
    params(("app" = String, Path, description = "App id"), ("user" = Option<String>, Query, description = "The user to show")),
    responses(AppPage),
    security(("session" = [])),
    extensions(("x-permission" = json!("read"))),
)]
async fn profile(State(state): State<Arc<AppState>>, Path(app): Path<String>, request: PageRequest) -> Response {
    let spec = PageSpec { id: "profile", title: "profile.title", access: Some(NavAccess::App(Permission::Read)) };
    let page = match Page::open(&state, request, Some(&app), spec).await {
        Ok(page) => page,
        Err(response) => return response,
    };
    let Some(app_id) = page.app_id() else { return page.not_found() };
    let user = page.query("user");
    let mut context = context! { user => user.clone() };
    if let Some(user) = &user {
        let path = format!("/v1/apps/{}/users/{}/profile", api::encode(app_id.as_str()), api::encode(user));
        let (profile, error) = match page.api::<Profile>(&path).await {
            Ok(profile) => (Some(profile), None),
            Err(failure) if failure.status.is_client_error() && failure.status.as_u16() != 401 => (None, Some(context! { message => failure.message, code => failure.code })),
            Err(failure) => return page.api_failure(&failure),
        };
        context = context! { ..context, ..context! { profile => ser(&profile), profile_error => error } };
    }
    page.render("profile.html", context)
}
