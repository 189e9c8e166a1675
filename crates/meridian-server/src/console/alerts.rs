//! The alerts capability's console pages, read through the JSON routes as the signed-in
//! operator:
//! * the app's alert rules with their status (ok, firing, paused), metric, window and
//!   condition, and the alert history (fired and resolved, newest first);
//! * one rule: a preview chart of its metric against its threshold over the last day, the
//!   editor (the rule's JSON; a test over the last hours before saving; save with its
//!   version, pause, resume, delete), and its delivery log (each transition's notification
//!   to each channel: delivered, retrying, dead);
//! * a new rule: the editor with a starting rule.

use super::answers::AppPage;
use super::{api, ser, Page, PageRequest, PageSpec};
use crate::extract::Path;
use crate::module::{ConsoleSection, ModuleContext, NavAccess, NavEntry, NavGroup};
use crate::state::AppState;
use axum::extract::State;
use axum::response::Response;
use meridian_api::alerts::{AlertEvaluations, AlertHistory, AlertRule, AlertRuleList};
use meridian_tenancy::Permission;
use minijinja::context;
use std::sync::Arc;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// The alerts page.
pub(crate) fn section(ctx: &ModuleContext<'_>) -> ConsoleSection {
    ConsoleSection {
        nav: vec![NavEntry { id: "alerts", label: "nav.alerts", href: "/console/apps/{app}/alerts", access: NavAccess::App(Permission::Read), group: NavGroup::App, order: 25 }],
        routes: OpenApiRouter::new().routes(routes!(alerts)).routes(routes!(alert_rule)).routes(routes!(new_alert_rule)).with_state(ctx.state.clone()),
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
    page.render("alerts.html", context! { rules => ser(&rules), history => ser(&history), can_edit => page.allows(Permission::Admin) })
}

/// The rule's JSON as the editor shows it: what a client sends (no id, app or version).
fn editable(rule: &serde_json::Value) -> String {
    let mut rule = rule.clone();
    if let Some(object) = rule.as_object_mut() {
        for key in ["id", "app", "version", "paused"] {
            object.remove(key);
        }
    }
    serde_json::to_string_pretty(&rule).unwrap_or_default()
}

/// One rule: the preview chart of the last day, the editor and the delivery log.
#[utoipa::path(
    get,
    path = "/console/apps/{app}/alerts/rules/{id}",
    tag = "console",
    params(("app" = String, Path, description = "App id"), ("id" = String, Path, description = "Rule id")),
    responses(AppPage),
    security(("session" = [])),
    extensions(("x-permission" = json!("read"))),
)]
async fn alert_rule(State(state): State<Arc<AppState>>, Path((app, id)): Path<(String, String)>, request: PageRequest) -> Response {
    let spec = PageSpec { id: "alert_rule", title: "alerts.rule_title", access: Some(NavAccess::App(Permission::Read)) };
    let page = match Page::open(&state, request, Some(&app), spec).await {
        Ok(page) => page,
        Err(response) => return response,
    };
    let (app_path, rule_path) = (api::encode(&app), api::encode(&id));
    let rule = match page.api::<AlertRule>(&format!("/v1/apps/{app_path}/alerts/rules/{rule_path}")).await {
        Ok(rule) => rule,
        Err(failure) => return page.api_failure(&failure),
    };
    let evaluations = match page.api::<AlertEvaluations>(&format!("/v1/apps/{app_path}/alerts/rules/{rule_path}/evaluations?limit=1440")).await {
        Ok(e) => e.evaluations,
        Err(failure) => return page.api_failure(&failure),
    };
    let history = match page.api::<AlertHistory>(&format!("/v1/apps/{app_path}/alerts/history?rule={rule_path}&limit=50")).await {
        Ok(history) => history.transitions,
        Err(failure) => return page.api_failure(&failure),
    };
    // The last day of windows, at most 1,440 (the evaluation ring's default).
    let day_ago = meridian_event::Timestamp::now().millis() - 86_400_000;
    let windows: Vec<super::charts::WindowValue> = evaluations
        .iter()
        .filter(|e| e.window_end_ms >= day_ago)
        .map(|e| (meridian_event::Timestamp(e.window_end_ms).to_rfc3339().get(11..16).unwrap_or_default().to_owned(), e.value, e.threshold, e.outcome == "breach"))
        .collect();
    let breaches = windows.iter().filter(|w| w.3).count();
    let chart = super::charts::threshold_chart(&windows);
    page.render(
        "alert_rule.html",
        context! {
            rule_id => id, rule => ser(&rule.rule), version => rule.version, status => rule.status, in_force => rule.in_force,
            firing_since_ms => rule.firing_since_ms, editable => editable(&rule.rule), chart => ser(&chart), windows => windows.len(),
            breaches => breaches, history => ser(&history), can_edit => page.allows(Permission::Admin), is_new => false,
        },
    )
}

/// A new rule: the editor with a starting rule (crashes over 5 minutes).
#[utoipa::path(
    get,
    path = "/console/apps/{app}/alerts/new",
    tag = "console",
    params(("app" = String, Path, description = "App id")),
    responses(AppPage),
    security(("session" = [])),
    extensions(("x-permission" = json!("admin"))),
)]
async fn new_alert_rule(State(state): State<Arc<AppState>>, Path(app): Path<String>, request: PageRequest) -> Response {
    let spec = PageSpec { id: "alert_rule", title: "alerts.new_title", access: Some(NavAccess::App(Permission::Admin)) };
    let page = match Page::open(&state, request, Some(&app), spec).await {
        Ok(page) => page,
        Err(response) => return response,
    };
    let starting = serde_json::json!({
        "name": "Crashes in 5 minutes", "severity": "critical", "metric": {"kind": "count"}, "filter": {"action": "crash"},
        "window": {"kind": "sliding", "size_secs": 300, "slide_secs": 60}, "condition": {"kind": "threshold", "op": ">", "value": 10},
        "cooldown_secs": 600, "channels": [],
    });
    page.render("alert_rule.html", context! { is_new => true, can_edit => true, editable => editable(&starting), version => 0, rule_id => "" })
}
