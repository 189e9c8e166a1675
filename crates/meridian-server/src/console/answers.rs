//! The answers console pages document, shared so that every page says them the same way
//! (`responses(AppPage)` in a page's `#[utoipa::path]`).

use std::collections::BTreeMap;
use utoipa::openapi::schema::{Object, Ref, Type};
use utoipa::openapi::{Content, RefOr, Response, ResponseBuilder};
use utoipa::IntoResponses;

const HTML_PAGE: &str = "HTML page";
const NOT_SIGNED_IN: &str = "Not signed in: to /console/login?next=…";
const ROLE_MISSING: &str = "The operator lacks the role: a page naming it and whom to ask (JSON when asked with Accept: application/json)";
const NOT_GLOBAL_ADMIN: &str = "Not a global admin: a page saying so and whom to ask (JSON when asked with Accept: application/json)";
const UNKNOWN_APP: &str = "Unknown app";

fn html() -> Content {
    Content::new(Some(Object::with_type(Type::String)))
}

fn response(description: &str, json_error: bool, html_body: bool) -> RefOr<Response> {
    let mut builder = ResponseBuilder::new().description(description);
    if json_error {
        builder = builder.content("application/json", Content::new(Some(Ref::from_schema_name("ErrorBody"))));
    }
    if html_body {
        builder = builder.content("text/html", html());
    }
    RefOr::T(builder.build())
}

fn signed_in_page() -> BTreeMap<String, RefOr<Response>> {
    BTreeMap::from([("200".to_owned(), response(HTML_PAGE, false, true)), ("303".to_owned(), response(NOT_SIGNED_IN, false, false))])
}

/// A page of a signed-in operator: the page, or the way to the sign-in.
pub(crate) struct SignedInPage;

impl IntoResponses for SignedInPage {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        signed_in_page()
    }
}

/// A page of one app: [`SignedInPage`], the role missing, the app unknown.
pub(crate) struct AppPage;

impl IntoResponses for AppPage {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        let mut answers = signed_in_page();
        answers.insert("403".to_owned(), response(ROLE_MISSING, true, true));
        answers.insert("404".to_owned(), response(UNKNOWN_APP, true, true));
        answers
    }
}

/// A page for global admins only: [`SignedInPage`] or the role missing.
pub(crate) struct GlobalAdminPage;

impl IntoResponses for GlobalAdminPage {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        let mut answers = signed_in_page();
        answers.insert("403".to_owned(), response(NOT_GLOBAL_ADMIN, true, true));
        answers
    }
}
