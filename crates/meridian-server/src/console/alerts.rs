//! The alerts capability's console page: the app's alert rules with their status (ok,
//! firing, paused), metric, window and condition, and the alert history (fired and
//! resolved, newest first), read through the JSON routes as the signed-in operator.

use super::answers::AppPage;
use super::{api, ser, Page, PageRequest, PageSpec};
use crate::extract::Path;
use crate::module::{ConsoleSection, ModuleContext, NavAccess, NavEntry, NavGroup};
use crate::state::AppState;
use axum::extract::State;
use axum::response::Response;
use meridian_api::alerts::{AlertHistory, AlertRuleList};
use meridian_tenancy::Permission;
use minijinja::context;
use std::sync::Arc;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// The alerts page.
pub(crate) fn section(ctx: &ModuleContext<'_>) -> ConsoleSection {
    ConsoleSection {
        nav: vec![NavEntry { id: "alerts", label: "nav.alerts", href: "/console/apps/{app}/alerts", access: NavAccess::App(Permission::Read), group: NavGroup::App, order: 25 }],
        routes: OpenApiRouter::new().routes(routes!(alerts)).with_state(ctx.state.clone()),
    }
}

/// The app's alert rules with their status, and the alert history.
#[utoipa::path(
    get,
    path = "/console/apps/{app}/alerts",
    tag = "console",
    params(("app" = String, Path, description = "App id")),
    responses(AppPage),
    security(("session" = [])),
    extensions(("x-permission" = json!("read"))),
)]
async fn alerts(State(state): State<Arc<AppState>>, Path(app): Path<String>, request: PageRequest) -> Response {
    let spec = PageSpec { id: "alerts", title: "alerts.title", access: Some(NavAccess::App(Permission::Read)) };
    let page = match Page::open(&state, request, Some(&app), spec).await {
        Ok(page) => page,
        Err(response) => return response,
    };
    let app = api::encode(&app);
    let rules = match page.api::<AlertRuleList>(&format!("/v1/apps/{app}/alerts/rules")).await {
        Ok(list) => list.rules,
        Err(failure) => return page.api_failure(&failure),
    };
    let history = match page.api::<AlertHistory>(&format!("/v1/apps/{app}/alerts/history?limit=50")).await {
        Ok(history) => history.transitions,
        Err(failure) => return page.api_failure(&failure),
    };
    let rules: Vec<serde_json::Value> = rules
        .iter()
        .map(|r| {
            let rule = &r.rule;
            let window = match rule["window"]["kind"].as_str() {
                Some("sliding") => format!("{} s / {} s", rule["window"]["size_secs"], rule["window"]["slide_secs"]),
                _ => format!("{} s", rule["window"]["size_secs"]),
            };
            let condition = match rule["condition"]["kind"].as_str() {
                Some("threshold") => format!("{} {}", rule["condition"]["op"].as_str().unwrap_or("?"), rule["condition"]["value"]),
                Some("change") => format!("{} {} % vs {}", rule["condition"]["op"].as_str().unwrap_or("?"), rule["condition"]["percent"], rule["condition"]["against"].as_str().unwrap_or("?")),
                Some(other) => other.to_owned(),
                None => String::new(),
            };
            serde_json::json!({
                "id": rule["id"], "name": rule["name"], "severity": rule["severity"], "version": r.version, "status": r.status,
                "firing_since_ms": r.firing_since_ms, "metric": rule["metric"]["kind"], "window": window, "condition": condition,
            })
        })
        .collect();
    page.render("alerts.html", context! { rules => ser(&rules), history => ser(&history) })
}
