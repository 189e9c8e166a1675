//! The API document (`/openapi.json`), its browsable form (`/docs`, Swagger UI vendored
//! in `assets/vendor/swagger-ui`), and the 404 of unknown routes (JSON; the console's page
//! under `/console/`). The console itself is in `crate::console`.

use crate::error::ApiError;
use crate::state::AppState;
use crate::extract::Path;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::{Html, IntoResponse, Response};
use axum::Json;
use std::sync::Arc;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

const SWAGGER_UI_JS: &str = include_str!("../../assets/vendor/swagger-ui/swagger-ui-bundle.js");
const SWAGGER_UI_CSS: &str = include_str!("../../assets/vendor/swagger-ui/swagger-ui.css");
const DOCS_HTML: &str = r##"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Meridian API</title>
<link rel="stylesheet" href="/docs/assets/swagger-ui.css"></head>
<body><div id="docs"></div>
<script src="/docs/assets/swagger-ui-bundle.js"></script>
<script>window.ui = SwaggerUIBundle({url: "/openapi.json", dom_id: "#docs", deepLinking: true, persistAuthorization: true});</script>
</body></html>"##;

/// The document and docs routes (all public).
pub(crate) fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new().routes(routes!(openapi)).routes(routes!(docs)).routes(routes!(docs_asset))
}

/// This document: every route with its parameters, bodies, security and error codes.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "docs",
    responses((status = 200, description = "OpenAPI 3.1 document", body = Object, content_type = "application/json")),
    security(()),
    extensions(("x-permission" = json!("public"))),
)]
async fn openapi(State(state): State<Arc<AppState>>) -> Json<serde_json::Value> {
    Json(state.openapi.get().cloned().unwrap_or_default())
}

/// The API documentation, browsable (Swagger UI).
#[utoipa::path(
    get,
    path = "/docs",
    tag = "docs",
    responses((status = 200, description = "HTML page", body = String, content_type = "text/html")),
    security(()),
    extensions(("x-permission" = json!("public"))),
)]
async fn docs() -> Html<&'static str> {
    Html(DOCS_HTML)
}

/// The documentation page's script and style sheet.
#[utoipa::path(
    get,
    path = "/docs/assets/{file}",
    tag = "docs",
    params(("file" = String, Path, description = "swagger-ui-bundle.js or swagger-ui.css")),
    responses(
        (status = 200, description = "The file", content((String = "text/javascript"), (String = "text/css"))),
        (status = 404, description = "No such file", body = meridian_api::ErrorBody),
    ),
    security(()),
    extensions(("x-permission" = json!("public"))),
)]
async fn docs_asset(Path(file): Path<String>) -> Response {
    let (body, content_type) = match file.as_str() {
        "swagger-ui-bundle.js" => (SWAGGER_UI_JS, "text/javascript; charset=utf-8"),
        "swagger-ui.css" => (SWAGGER_UI_CSS, "text/css; charset=utf-8"),
        _ => return ApiError::not_found("not_found", format!("no docs asset {file:?}")).into_response(),
    };
    ([(header::CONTENT_TYPE, content_type), (header::CACHE_CONTROL, "public, max-age=86400")], body).into_response()
}

/// Unknown routes answer with the JSON error shape (an unknown console page with the
/// console's 404 page).
pub(crate) async fn not_found(uri: Uri, headers: HeaderMap) -> Response {
    if uri.path() == "/console" || uri.path().starts_with("/console/") {
        return crate::console::unknown_page(&headers, &uri);
    }
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route; see /openapi.json or /docs").into_response()
}

/// A known path with a method it does not have.
pub(crate) async fn method_not_allowed() -> Response {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "this route does not take this method; see /openapi.json or /docs").into_response()
}
