//! The web console: server-rendered pages for operators, in English and Simplified Chinese.
//!
//! * Every page is a route like any other (OpenAPI tag `console`, `text/html`, the
//!   `session` security scheme, `x-permission`). A page opens with [`Page::open`]: no
//!   valid session → 303 to `/console/login?next=…`; a role missing → a 403 page naming
//!   the role and the global admins to ask; then it renders its template inside one
//!   layout (navigation, app switcher, language switch, the operator, sign-out).
//! * The navigation is built from [`NavEntry`]s: the server's own ([`server_nav`]) and
//!   those of every registered capability's [`crate::ConsoleSection`], listed to an
//!   operator only where it may open them. A module that is off has no entries and no
//!   routes.
//! * Pages render their data on the server. The server's own pages read tenancy, the
//!   runtime and the log directly; capability pages read their capability's JSON routes
//!   in process ([`api`]), so they show what the API answers that operator. Actions are
//!   plain `fetch` calls of the JSON API from `assets/console/console.js`, with the
//!   session's CSRF token from a `<meta>` tag; their errors show the API's message.
//! * Templates, style sheet, script and message catalogs are embedded in the binary:
//!   no build step, no CDN.

mod answers;
pub(crate) mod api;
mod charts;
pub(crate) mod actions;
pub(crate) mod alerts;
pub(crate) mod counters;
pub(crate) mod history;
pub(crate) mod listing;
mod i18n;
pub(crate) mod notify;
mod pages;
mod render;

use crate::auth::session_cookie;
use crate::error::ApiError;
use crate::module::{NavAccess, NavEntry, NavGroup};
use crate::state::AppState;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use i18n::Lang;
use meridian_event::AppId;
use meridian_tenancy::{AppRecord, OperatorSession, Permission, Principal, Role};
use minijinja::{context, Value};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::sync::{Arc, OnceLock};
use utoipa_axum::router::OpenApiRouter;

pub(crate) use api::ApiFailure;
pub(crate) use render::format_value;

/// The console's sources that name messages (checked against the catalogs by a test).
#[cfg(test)]
pub(crate) static SOURCES: &[&str] = &[
    include_str!("mod.rs"),
    include_str!("pages.rs"),
    include_str!("counters.rs"),
    include_str!("history.rs"),
    include_str!("notify.rs"),
    include_str!("listing.rs"),
    include_str!("../../assets/console/console.js"),
];

/// What the console keeps in the server's state: the navigation of every registered
/// module and the router its pages read the API through (both set once the router is built;
/// the router is let go at shutdown, since it holds the state that holds it).
#[derive(Default)]
pub(crate) struct ConsoleState {
    nav: OnceLock<Vec<NavEntry>>,
    router: parking_lot::RwLock<Option<Router>>,
}

impl std::fmt::Debug for ConsoleState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsoleState").field("nav", &self.nav().iter().map(|n| n.id).collect::<Vec<_>>()).finish_non_exhaustive()
    }
}

impl ConsoleState {
    /// Sets the navigation (sorted by group, then order).
    pub(crate) fn set_nav(&self, mut nav: Vec<NavEntry>) {
        nav.sort_by_key(|n| (n.group, n.order, n.id));
        let _ = self.nav.set(nav);
    }

    /// Sets the router pages read the API through.
    pub(crate) fn set_router(&self, router: Router) {
        *self.router.write() = Some(router);
    }

    /// Lets go of the router (it holds the server's state, which holds this).
    pub(crate) fn clear_router(&self) {
        self.router.write().take();
    }

    /// Every navigation entry.
    pub(crate) fn nav(&self) -> &[NavEntry] {
        self.nav.get().map(Vec::as_slice).unwrap_or_default()
    }
}

/// The server's own console routes: sign-in, the landing redirect, API keys, audit,
/// operators, administration, and the console's assets.
pub(crate) fn routes() -> OpenApiRouter<Arc<AppState>> {
    pages::routes()
}

/// The server's own navigation entries.
pub(crate) fn server_nav() -> Vec<NavEntry> {
    pages::nav()
}

/// A serialisable value as a template value.
pub(crate) fn ser<T: Serialize>(value: T) -> Value {
    Value::from(minijinja::value::Serde(value))
}

/// `12345` → `12,345`.
pub(crate) fn group_digits(n: u64) -> String {
    let digits = n.to_string();
    let mut groups: Vec<&str> = digits.as_bytes().rchunks(3).map(|g| std::str::from_utf8(g).unwrap_or_default()).collect();
    groups.reverse();
    groups.join(",")
}

/// A page request's headers and URI (extracted for every page handler).
#[derive(Debug, Clone)]
pub(crate) struct PageRequest {
    headers: HeaderMap,
    uri: Uri,
}

impl<S: Send + Sync> FromRequestParts<S> for PageRequest {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(PageRequest { headers: parts.headers.clone(), uri: parts.uri.clone() })
    }
}

impl PageRequest {
    /// The query parameter `name`, decoded, if present.
    pub(crate) fn query(&self, name: &str) -> Option<String> {
        api::query_pairs(self.uri.query()).into_iter().find(|(k, _)| k == name).map(|(_, v)| v)
    }

    /// The path and query, as asked.
    fn path_and_query(&self) -> String {
        self.uri.path_and_query().map(|p| p.as_str().to_owned()).unwrap_or_else(|| self.uri.path().to_owned())
    }

    /// This request's path and query with `name` set to `value` (or removed).
    fn with_param(&self, name: &str, value: Option<&str>) -> String {
        let mut pairs: Vec<(String, String)> = api::query_pairs(self.uri.query()).into_iter().filter(|(k, _)| k != name).collect();
        if let Some(value) = value {
            pairs.push((name.to_owned(), value.to_owned()));
        }
        with_query(self.uri.path(), &pairs)
    }

    /// Whether the client asked for JSON rather than a page (scripts get JSON errors).
    fn wants_json(&self) -> bool {
        let accept = self.headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or_default();
        accept.contains("application/json") && !accept.contains("text/html")
    }

    /// The language, and whether it was chosen by `?lang=` (then remembered in a cookie).
    fn lang(&self) -> (Lang, bool) {
        i18n::negotiate(&self.headers, self.query("lang").as_deref())
    }
}

/// `path?k=v&…`, encoded.
pub(crate) fn with_query(path: &str, pairs: &[(String, String)]) -> String {
    if pairs.is_empty() {
        return path.to_owned();
    }
    let query = pairs.iter().map(|(k, v)| format!("{}={}", api::encode(k), api::encode(v))).collect::<Vec<_>>().join("&");
    format!("{path}?{query}")
}

/// What a page is: its navigation id, its title's message key, and who may open it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PageSpec {
    /// The navigation entry shown as current.
    pub(crate) id: &'static str,
    /// Message key of the title.
    pub(crate) title: &'static str,
    /// Who may open it (`None`: any signed-in operator).
    pub(crate) access: Option<NavAccess>,
}

/// An opened page: a signed-in operator allowed to see it, the language and the app.
#[derive(Debug)]
pub(crate) struct Page {
    state: Arc<AppState>,
    session: OperatorSession,
    principal: Principal,
    /// The session token (used for in-process API calls; never rendered).
    token: String,
    lang: Lang,
    remember_lang: bool,
    app: Option<AppRecord>,
    apps: Vec<AppRecord>,
    spec: PageSpec,
    request: PageRequest,
}

/// The least role that grants `permission`.
fn role_for(permission: Permission) -> Role {
    match permission {
        Permission::Read => Role::Viewer,
        Permission::Write => Role::Operator,
        Permission::Review => Role::Reviewer,
        Permission::Admin => Role::Admin,
    }
}

/// Where to go back to after signing in: a console path, never another site.
pub(crate) fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n) if n.starts_with("/console") && !n.starts_with("//") && !n.contains('\\') && !n.starts_with("/console/login") => n.to_owned(),
        _ => "/console".to_owned(),
    }
}

/// A 303 to `location`.
pub(crate) fn see_other(location: &str) -> Response {
    let value = HeaderValue::from_str(location).unwrap_or_else(|_| HeaderValue::from_static("/console"));
    (StatusCode::SEE_OTHER, [(header::LOCATION, value), (header::CACHE_CONTROL, HeaderValue::from_static("no-store"))]).into_response()
}

/// Security headers of every console page: nothing from elsewhere but item images, no
/// framing, no caching.
fn secure_headers(response: &mut Response) {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'self'; img-src 'self' data: https: http:; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
}

/// The `Set-Cookie` that remembers a language for a year.
fn lang_cookie(lang: Lang, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!("{}={}; Path=/; Max-Age=31536000; SameSite=Lax{secure}", i18n::LANG_COOKIE, lang.tag())).expect("a language tag is header text")
}

/// An app as the switcher and pages show it.
#[derive(Debug, Serialize)]
struct AppView {
    id: String,
    name: String,
    time_zone: String,
    href: String,
    current: bool,
}

/// A navigation link.
#[derive(Debug, Serialize)]
struct NavLink {
    id: &'static str,
    label: String,
    href: String,
    current: bool,
}

/// A language of the switcher.
#[derive(Debug, Serialize)]
struct LangLink {
    tag: &'static str,
    name: &'static str,
    href: String,
    current: bool,
}

/// An operator to ask for a role.
#[derive(Debug, Serialize)]
struct Contact {
    login: String,
    display_name: String,
}

impl Page {
    /// Opens a page for the request's operator: 303 to sign-in without a valid session,
    /// 404 for an unknown app, the 403 page without the access `spec` needs. `app` is the
    /// app of the path (app pages); global pages take `?app=` or the first visible app.
    pub(crate) async fn open(state: &Arc<AppState>, request: PageRequest, app: Option<&str>, spec: PageSpec) -> Result<Page, Response> {
        let (lang, remember_lang) = request.lang();
        let Some(token) = session_cookie(&request.headers).map(str::to_owned) else {
            return Err(to_sign_in(&request));
        };
        let now = state.tenancy.clock().now_ms();
        let session = match state.tenancy.session(&token, now) {
            Ok(session) => session,
            Err(_) => return Err(to_sign_in(&request)),
        };
        let principal = Principal::Operator(session.clone());
        let apps = principal.apps_visible(&state.tenancy.apps());
        let mut page = Page { state: state.clone(), session, principal, token, lang, remember_lang, app: None, apps, spec, request };
        match app {
            Some(id) => {
                let Ok(id) = AppId::new(id) else { return Err(page.not_found()) };
                match page.apps.iter().find(|a| a.id == id) {
                    Some(record) => page.app = Some(record.clone()),
                    None if state.tenancy.app_exists(&id) => return Err(page.forbidden(spec.access.unwrap_or(NavAccess::App(Permission::Read)), Some(&id))),
                    None => return Err(page.not_found()),
                }
            }
            None => {
                let asked = page.request.query("app");
                page.app = asked.and_then(|a| page.apps.iter().find(|r| r.id.as_str() == a).cloned()).or_else(|| page.apps.first().cloned());
            }
        }
        if let Some(access) = spec.access {
            if !page.may(access) {
                let app = page.app.as_ref().map(|a| a.id.clone());
                return Err(page.forbidden(access, app.as_ref()));
            }
        }
        Ok(page)
    }

    /// The current app (always set on app pages).
    pub(crate) fn app(&self) -> Option<&AppRecord> {
        self.app.as_ref()
    }

    /// The current app's id (always set on app pages).
    pub(crate) fn app_id(&self) -> Option<AppId> {
        self.app.as_ref().map(|a| a.id.clone())
    }

    /// The signed-in operator's principal.
    pub(crate) fn principal(&self) -> &Principal {
        &self.principal
    }

    /// Whether the operator has `access` (app access on the current app).
    pub(crate) fn may(&self, access: NavAccess) -> bool {
        match access {
            NavAccess::App(permission) => self.allows(permission),
            NavAccess::Global(permission) => self.principal.allows_global(permission),
        }
    }

    /// Whether the operator has `permission` on the current app.
    pub(crate) fn allows(&self, permission: Permission) -> bool {
        self.app.as_ref().is_some_and(|a| self.principal.allows(permission, &a.id))
    }

    /// The query parameter `name`, decoded, if present and not empty.
    pub(crate) fn query(&self, name: &str) -> Option<String> {
        self.request.query(name).filter(|v| !v.is_empty())
    }

    /// A message in the page's language.
    pub(crate) fn message(&self, key: &str) -> String {
        self.lang.message(key).to_owned()
    }

    /// `GET path` of the JSON API as this operator.
    pub(crate) async fn api<T: DeserializeOwned>(&self, path: &str) -> Result<T, ApiFailure> {
        let router = self.state.console.router.read().clone().ok_or_else(|| ApiFailure { status: StatusCode::SERVICE_UNAVAILABLE, code: "unavailable".into(), message: "the server is starting or stopping; retry".into() })?;
        api::get(&router, &self.token, path).await
    }

    /// The first page of the navigation this operator may open (app pages first).
    pub(crate) fn first_nav_href(&self) -> Option<String> {
        let (app, admin) = self.nav_links();
        app.into_iter().chain(admin).next().map(|l| l.href)
    }

    fn nav_links(&self) -> (Vec<NavLink>, Vec<NavLink>) {
        let (mut app_links, mut admin_links) = (Vec::new(), Vec::new());
        for entry in self.state.console.nav() {
            let (visible, href) = match (entry.access, &self.app) {
                (NavAccess::App(permission), Some(app)) => (self.principal.allows(permission, &app.id), entry.href.replace("{app}", &api::encode(app.id.as_str()))),
                (NavAccess::App(_), None) => (false, String::new()),
                (NavAccess::Global(permission), app) => {
                    let href = match app {
                        Some(app) if entry.href.contains("{app}") => entry.href.replace("{app}", &api::encode(app.id.as_str())),
                        _ => entry.href.to_owned(),
                    };
                    (self.principal.allows_global(permission), href)
                }
            };
            if !visible {
                continue;
            }
            let link = NavLink { id: entry.id, label: self.message(entry.label), href, current: entry.id == self.spec.id };
            match entry.group {
                NavGroup::App => app_links.push(link),
                NavGroup::Admin => admin_links.push(link),
            }
        }
        (app_links, admin_links)
    }

    /// Where the switcher takes this page for `other` app: the same section of an app
    /// page, or this global page with `?app=`.
    fn switch_href(&self, other: &AppRecord) -> String {
        let path = self.request.uri.path();
        if let Some(current) = &self.app {
            let prefix = format!("/console/apps/{}/", api::encode(current.id.as_str()));
            if let Some(rest) = path.strip_prefix(&prefix) {
                let section = rest.split('/').next().unwrap_or_default();
                return format!("/console/apps/{}/{section}", api::encode(other.id.as_str()));
            }
        }
        self.request.with_param("app", Some(other.id.as_str()))
    }

    /// The layout's context.
    fn base_context(&self) -> Value {
        let (app_nav, admin_nav) = self.nav_links();
        let apps: Vec<AppView> = self
            .apps
            .iter()
            .map(|a| AppView {
                id: a.id.to_string(),
                name: a.name.clone().unwrap_or_else(|| a.id.to_string()),
                time_zone: a.time_zone.as_str().to_owned(),
                href: self.switch_href(a),
                current: self.app.as_ref().is_some_and(|c| c.id == a.id),
            })
            .collect();
        let app = self.app.as_ref().map(|a| AppView {
            id: a.id.to_string(),
            name: a.name.clone().unwrap_or_else(|| a.id.to_string()),
            time_zone: a.time_zone.as_str().to_owned(),
            href: String::new(),
            current: true,
        });
        context! {
            lang => self.lang.tag(),
            langs => ser(self.lang_links()),
            title => self.message(self.spec.title),
            page_id => self.spec.id,
            csrf => self.session.csrf_token.as_str(),
            operator => context! { login => self.session.login.as_str(), display_name => &self.session.display_name },
            apps => ser(&apps),
            app => ser(&app),
            tz => self.app.as_ref().map(|a| a.time_zone.as_str()).unwrap_or("UTC"),
            nav_app => ser(&app_nav),
            nav_admin => ser(&admin_nav),
            js_messages => js_messages(self.lang),
            asset_version => pages::asset_version(),
        }
    }

    fn lang_links(&self) -> Vec<LangLink> {
        lang_links(&self.request, self.lang)
    }

    /// Renders `template` in the layout with the page's `context`.
    pub(crate) fn render(&self, template: &str, context: Value) -> Response {
        self.render_status(StatusCode::OK, template, context)
    }

    fn render_status(&self, status: StatusCode, template: &str, page_context: Value) -> Response {
        let context = context! { ..page_context, ..self.base_context() };
        let mut response = html(status, template, context);
        if self.remember_lang {
            response.headers_mut().append(header::SET_COOKIE, lang_cookie(self.lang, self.state.config.server.secure_cookies));
        }
        response
    }

    /// The 404 page (or JSON error for scripts).
    pub(crate) fn not_found(&self) -> Response {
        if self.request.wants_json() {
            return ApiError::not_found("not_found", "no such console page or app").into_response();
        }
        let context = context! { status => 404, heading => self.message("error.not_found_title"), text => self.message("error.not_found") };
        self.render_status(StatusCode::NOT_FOUND, "error.html", context)
    }

    /// The 403 page: which role on which app (or globally) the page needs, and the global
    /// admins who can grant it.
    fn forbidden(&self, access: NavAccess, app: Option<&AppId>) -> Response {
        let (role, global, permission) = match access {
            NavAccess::App(p) => (role_for(p), false, p),
            NavAccess::Global(p) => (role_for(p), true, p),
        };
        let needed = match (global, app) {
            (false, Some(app)) => self.lang.message("error.needs_app_role").replace("{role}", role.as_str()).replace("{app}", app.as_str()),
            _ => self.lang.message("error.needs_global_role").replace("{role}", role.as_str()),
        };
        if self.request.wants_json() {
            return ApiError::new(StatusCode::FORBIDDEN, "insufficient_scope", format!("this page needs the {} permission: {needed}", permission.as_str())).into_response();
        }
        let admins: Vec<Contact> = self
            .state
            .tenancy
            .list_operators()
            .into_iter()
            .filter(|o| !o.disabled && o.grants.iter().any(|g| g.allows_global(Permission::Admin)))
            .map(|o| Contact { login: o.login.to_string(), display_name: o.display_name })
            .collect();
        let context = context! {
            status => 403,
            heading => self.message("error.forbidden_title"),
            text => needed,
            role => role.as_str(),
            admins => ser(&admins),
        };
        self.render_status(StatusCode::FORBIDDEN, "error.html", context)
    }

    /// The page with an error of the API in place of its data.
    pub(crate) fn api_failure(&self, failure: &ApiFailure) -> Response {
        if failure.status == StatusCode::UNAUTHORIZED {
            return to_sign_in(&self.request);
        }
        let status = if failure.status.is_client_error() || failure.status.is_server_error() { failure.status } else { StatusCode::BAD_GATEWAY };
        let context = context! { status => status.as_u16(), heading => self.message("error.api_title"), text => &failure.message, code => &failure.code };
        self.render_status(status, "error.html", context)
    }
}

/// The script's messages (`js.*`) in `lang`.
fn js_messages(lang: Lang) -> Value {
    ser(lang.messages_with_prefix("js.").into_iter().collect::<std::collections::BTreeMap<_, _>>())
}

/// The language switcher's links for `request`.
fn lang_links(request: &PageRequest, current: Lang) -> Vec<LangLink> {
    Lang::ALL.into_iter().map(|l| LangLink { tag: l.tag(), name: l.native_name(), href: request.with_param("lang", Some(l.tag())), current: l == current }).collect()
}

/// 303 to the sign-in page, coming back here after (401 JSON for scripts).
fn to_sign_in(request: &PageRequest) -> Response {
    if request.wants_json() {
        return ApiError::unauthorized("no operator session; sign in at /console/login").into_response();
    }
    let next = request.path_and_query();
    see_other(&with_query("/console/login", &[("next".to_owned(), next)]))
}

/// Renders `template` with `context` as an HTML response with the console's headers.
fn html(status: StatusCode, template: &str, context: Value) -> Response {
    let rendered = render::environment().get_template(template).and_then(|t| t.render(context));
    let mut response = match rendered {
        Ok(body) => (status, [(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"))], body).into_response(),
        Err(e) => {
            tracing::error!(template, error = %format!("{e:#}"), "console template failed");
            (StatusCode::INTERNAL_SERVER_ERROR, [(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"))], "the page could not be rendered; see the server log").into_response()
        }
    };
    secure_headers(&mut response);
    response
}

/// The console's 404 for an unknown `/console/…` path (no session needed).
pub(crate) fn unknown_page(headers: &HeaderMap, uri: &Uri) -> Response {
    let request = PageRequest { headers: headers.clone(), uri: uri.clone() };
    let (lang, _) = request.lang();
    let context = context! {
        lang => lang.tag(),
        langs => ser(lang_links(&request, lang)),
        title => lang.message("error.not_found_title"),
        status => 404,
        heading => lang.message("error.not_found_title"),
        text => lang.message("error.not_found"),
        bare => true,
        js_messages => js_messages(lang),
        asset_version => pages::asset_version(),
    };
    html(StatusCode::NOT_FOUND, "error.html", context)
}
