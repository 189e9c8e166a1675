//! The listing capability's console page: the app's categories with SKU counts, index
//! memory and the update rate, links to the shopper pages, a catalog load from a file
//! with its job's progress bar (`POST …/listing/catalog`, then `GET …/listing/jobs/{id}`),
//! a query tryout (answered by the JSON listing route as the signed-in operator, errors
//! with their code), the tried category's merchandising (brand/shop interleaving and
//! pins, saved through `PUT …/settings`) and the shopper-page template editor (saved
//! through `PUT …/listing/template`, which validates and audits it).

use super::answers::AppPage;
use super::{api, ser, with_query, Page, PageRequest, PageSpec};
use crate::extract::Path;
use crate::module::{ConsoleSection, ModuleContext, NavAccess, NavEntry, NavGroup};
use crate::state::AppState;
use axum::extract::State;
use axum::response::Response;
use meridian_api::listing::{ListingCategories, ListingCategorySettings, ListingPageBody, ListingTemplate};
use meridian_tenancy::Permission;
use minijinja::context;
use std::sync::Arc;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// The listing page.
pub(crate) fn section(ctx: &ModuleContext<'_>) -> ConsoleSection {
    ConsoleSection {
        nav: vec![NavEntry { id: "listing", label: "nav.listing", href: "/console/apps/{app}/listing", access: NavAccess::App(Permission::Read), group: NavGroup::App, order: 27 }],
        routes: OpenApiRouter::new().routes(routes!(listing)).with_state(ctx.state.clone()),
    }
}

/// Query parameters the tryout passes on to the listing route.
const TRYOUT_PARAMS: [&str; 8] = ["sort", "brand", "shop", "price_min", "price_max", "in_stock", "page", "size"];

/// The app's categories, a query tryout and the shopper-page template editor.
#[utoipa::path(
    get,
    path = "/console/apps/{app}/listing",
    tag = "console",
    params(
        ("app" = String, Path, description = "App id"),
        ("category" = Option<String>, Query, description = "Tryout: the category to list"),
        ("sort" = Option<String>, Query, description = "Tryout: sort"),
        ("brand" = Option<String>, Query, description = "Tryout: brands"),
        ("in_stock" = Option<String>, Query, description = "Tryout: only SKUs with stock"),
        ("page" = Option<String>, Query, description = "Tryout: page"),
    ),
    responses(AppPage),
    security(("session" = [])),
    extensions(("x-permission" = json!("read"))),
)]
async fn listing(State(state): State<Arc<AppState>>, Path(app): Path<String>, request: PageRequest) -> Response {
    let spec = PageSpec { id: "listing", title: "listing.title", access: Some(NavAccess::App(Permission::Read)) };
    let page = match Page::open(&state, request, Some(&app), spec).await {
        Ok(page) => page,
        Err(response) => return response,
    };
    let encoded = api::encode(&app);
    let categories = match page.api::<ListingCategories>(&format!("/v1/apps/{encoded}/listing/categories")).await {
        Ok(c) => c,
        Err(failure) => return page.api_failure(&failure),
    };
    let template = match page.api::<ListingTemplate>(&format!("/v1/apps/{encoded}/listing/template")).await {
        Ok(t) => t,
        Err(failure) => return page.api_failure(&failure),
    };
    let tryout_category = page.query("category").or_else(|| categories.categories.iter().find(|c| c.parent.is_none()).map(|c| c.id.to_string()));
    let mut tryout = None;
    let mut tryout_error = None;
    let mut params: Vec<(String, String)> = Vec::new();
    for name in TRYOUT_PARAMS {
        if let Some(value) = page.query(name) {
            params.push((name.to_owned(), value));
        }
    }
    if page.query("facets").is_some() {
        params.push(("facets".to_owned(), "true".to_owned()));
    }
    if let Some(category) = &tryout_category {
        let path = with_query(&format!("/v1/apps/{encoded}/listing/categories/{}", api::encode(category)), &params);
        match page.api::<ListingPageBody>(&path).await {
            Ok(body) => tryout = Some(body),
            Err(failure) => tryout_error = Some(context! { message => failure.message, code => failure.code }),
        }
    }
    // The tried category's merchandising (none for an unknown category: the tryout says why).
    let mut settings = None;
    if let Some(category) = &tryout_category {
        if let Ok(found) = page.api::<ListingCategorySettings>(&format!("/v1/apps/{encoded}/listing/categories/{}/settings", api::encode(category))).await {
            settings = Some(found);
        }
    }
    let mut top: Vec<_> = categories.categories.iter().collect();
    top.sort_by_key(|c| (std::cmp::Reverse(c.skus), c.id));
    let shown: Vec<_> = top.into_iter().take(200).cloned().collect();
    page.render(
        "listing.html",
        context! {
            summary => ser(&categories),
            n_categories => categories.categories.len(),
            categories => ser(&shown),
            shop_base => format!("/shop/{encoded}/categories/"),
            tryout => tryout.as_ref().map(ser),
            tryout_error => tryout_error,
            tryout_category => tryout_category,
            settings => settings.as_ref().map(ser),
            sort => page.query("sort").unwrap_or_else(|| "quality".to_owned()),
            brand => page.query("brand").unwrap_or_default(),
            in_stock => page.query("in_stock").is_some(),
            facets => page.query("facets").is_some(),
            tryout_page => page.query("page").unwrap_or_else(|| "1".to_owned()),
            template => template.template,
            template_builtin => template.builtin,
            can_edit => page.allows(Permission::Admin),
        },
    )
}
