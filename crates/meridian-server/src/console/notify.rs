//! The notifications capability's console pages: webhook endpoints (create, edit, disable,
//! rotate the secret — shown once —, delete), the delivery log with a state filter, and a
//! delivery's attempts and body with redelivery.

use super::answers::{AppPage, SignedInPage};
use super::{api, ser, with_query, Page, PageRequest, PageSpec};
use crate::module::{ConsoleSection, ModuleContext, NavAccess, NavEntry, NavGroup};
use crate::state::AppState;
use crate::extract::Path;
use axum::extract::State;
use axum::response::Response;
use meridian_api::webhooks::{DeliveryDetail, DeliveryPage, WebhookList};
use meridian_tenancy::Permission;
use minijinja::context;
use std::sync::Arc;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// The webhooks and deliveries pages.
pub(crate) fn section(ctx: &ModuleContext<'_>) -> ConsoleSection {
    ConsoleSection {
        nav: vec![
            NavEntry { id: "webhooks", label: "nav.webhooks", href: "/console/apps/{app}/webhooks", access: NavAccess::App(Permission::Admin), group: NavGroup::App, order: 30 },
            NavEntry { id: "deliveries", label: "nav.deliveries", href: "/console/apps/{app}/deliveries", access: NavAccess::App(Permission::Read), group: NavGroup::App, order: 35 },
        ],
        routes: OpenApiRouter::new().routes(routes!(webhooks)).routes(routes!(deliveries)).routes(routes!(delivery)).with_state(ctx.state.clone()),
    }
}

fn failure_context(failure: &super::ApiFailure) -> minijinja::Value {
    context! { message => &failure.message, code => &failure.code }
}

/// The app's webhook endpoints: create, edit, disable or enable, rotate the signing secret
/// (shown once), delete.
#[utoipa::path(
    get,
    path = "/console/apps/{app}/webhooks",
    tag = "console",
    params(("app" = String, Path, description = "App id")),
    responses(AppPage),
    security(("session" = [])),
    extensions(("x-permission" = json!("admin"))),
)]
async fn webhooks(State(state): State<Arc<AppState>>, Path(app): Path<String>, request: PageRequest) -> Response {
    let spec = PageSpec { id: "webhooks", title: "webhooks.title", access: Some(NavAccess::App(Permission::Admin)) };
    let page = match Page::open(&state, request, Some(&app), spec).await {
        Ok(page) => page,
        Err(response) => return response,
    };
    let (list, error) = match page.api::<WebhookList>(&format!("/v1/apps/{}/webhooks", api::encode(&app))).await {
        Ok(list) => (list.webhooks, None),
        Err(failure) => (Vec::new(), Some(failure_context(&failure))),
    };
    page.render("webhooks.html", context! { webhooks => ser(&list), error => error })
}

/// The app's webhook deliveries, newest first, filtered by state and endpoint.
#[utoipa::path(
    get,
    path = "/console/apps/{app}/deliveries",
    tag = "console",
    params(
        ("app" = String, Path, description = "App id"),
        ("state" = Option<String>, Query, description = "pending, delivered or dead"),
        ("endpoint" = Option<String>, Query, description = "Only this endpoint's"),
        ("cursor" = Option<String>, Query, description = "The page after this cursor"),
    ),
    responses(AppPage),
    security(("session" = [])),
    extensions(("x-permission" = json!("read"))),
)]
async fn deliveries(State(state): State<Arc<AppState>>, Path(app): Path<String>, request: PageRequest) -> Response {
    let spec = PageSpec { id: "deliveries", title: "deliveries.title", access: Some(NavAccess::App(Permission::Read)) };
    let page = match Page::open(&state, request, Some(&app), spec).await {
        Ok(page) => page,
        Err(response) => return response,
    };
    let app = api::encode(&app);
    let mut query = vec![("limit".to_owned(), "50".to_owned())];
    for name in ["state", "endpoint", "cursor"] {
        if let Some(value) = page.query(name) {
            query.push((name.to_owned(), value));
        }
    }
    let (list, next, error) = match page.api::<DeliveryPage>(&with_query(&format!("/v1/apps/{app}/deliveries"), &query)).await {
        Ok(p) => {
            let next = p.next_cursor.map(|c| {
                let mut pairs: Vec<(String, String)> = ["state", "endpoint"].iter().filter_map(|n| page.query(n).map(|v| ((*n).to_owned(), v))).collect();
                pairs.push(("cursor".to_owned(), c));
                with_query("", &pairs)
            });
            (p.deliveries, next, None)
        }
        Err(failure) if failure.status.is_client_error() && failure.status.as_u16() != 401 => (Vec::new(), None, Some(failure_context(&failure))),
        Err(failure) => return page.api_failure(&failure),
    };
    // Admins may list endpoints (to filter by them) and open a delivery.
    let can_open = page.allows(Permission::Admin);
    let endpoints = if can_open { page.api::<WebhookList>(&format!("/v1/apps/{app}/webhooks")).await.map(|l| l.webhooks).unwrap_or_default() } else { Vec::new() };
    page.render(
        "deliveries.html",
        context! {
            deliveries => ser(&list), next => next, error => error, can_open => can_open, endpoints => ser(&endpoints),
            state => page.query("state"), endpoint => page.query("endpoint"),
        },
    )
}

/// A delivery: its attempts (status, error, latency, response), the exact body sent, and
/// redelivery.
#[utoipa::path(
    get,
    path = "/console/apps/{app}/deliveries/{id}",
    tag = "console",
    params(("app" = String, Path, description = "App id"), ("id" = String, Path, description = "Delivery id")),
    responses(
        SignedInPage,
        (status = 403, description = "The operator lacks the role: a page naming it and whom to ask (JSON when asked with Accept: application/json)", content((meridian_api::ErrorBody = "application/json"), (String = "text/html"))),
        (status = 404, description = "Unknown app or delivery", content((meridian_api::ErrorBody = "application/json"), (String = "text/html"))),
    ),
    security(("session" = [])),
    extensions(("x-permission" = json!("admin"))),
)]
async fn delivery(State(state): State<Arc<AppState>>, Path((app, id)): Path<(String, String)>, request: PageRequest) -> Response {
    let spec = PageSpec { id: "deliveries", title: "delivery.title", access: Some(NavAccess::App(Permission::Admin)) };
    let page = match Page::open(&state, request, Some(&app), spec).await {
        Ok(page) => page,
        Err(response) => return response,
    };
    let detail = match page.api::<DeliveryDetail>(&format!("/v1/apps/{}/deliveries/{}", api::encode(&app), api::encode(&id))).await {
        Ok(detail) => detail,
        Err(failure) => return page.api_failure(&failure),
    };
    let body = serde_json::from_str::<serde_json::Value>(&detail.body).ok().and_then(|v| serde_json::to_string_pretty(&v).ok()).unwrap_or_else(|| detail.body.clone());
    page.render("delivery.html", context! { d => ser(&detail.delivery), attempts => ser(&detail.attempts), body => body })
}
