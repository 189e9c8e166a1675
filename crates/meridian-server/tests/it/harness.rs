//! A server on a temporary data directory and helpers to call its router.

use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use meridian_event::Event;
use meridian_log::TopicName;
use meridian_server::{Config, Parts, Server};
use serde_json::Value;
use tower::ServiceExt;

pub(crate) const MASTER: &str = "test-master-key";

pub(crate) struct TestServer {
    _dir: tempfile::TempDir,
    pub(crate) server: Server,
    pub(crate) router: Router,
}

/// A signed-in operator.
pub(crate) struct Session {
    pub(crate) cookie: String,
    pub(crate) csrf: String,
    pub(crate) set_cookie: String,
}

/// A console page as the browser gets it.
pub(crate) struct PageReply {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: String,
}

impl PageReply {
    /// The `Location` of a redirect.
    pub(crate) fn location(&self) -> &str {
        self.headers.get("location").map(|v| v.to_str().unwrap()).unwrap_or("")
    }
}

pub(crate) struct Reply {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) json: Value,
}

impl Reply {
    pub(crate) fn code(&self) -> &str {
        self.json["error"]["code"].as_str().unwrap_or("")
    }
}

impl TestServer {
    pub(crate) fn start() -> TestServer {
        TestServer::start_with(|_| {})
    }

    pub(crate) fn start_with(adjust: impl FnOnce(&mut Config)) -> TestServer {
        TestServer::start_with_parts(adjust, Parts::default())
    }

    pub(crate) fn start_with_parts(adjust: impl FnOnce(&mut Config), parts: Parts<'_>) -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::for_data_dir(dir.path().join("data"));
        config.server.master_key = Some(MASTER.into());
        config.tenancy.password_hashing = meridian_tenancy::PasswordHashing::fast_insecure_for_tests();
        adjust(&mut config);
        let server = Server::open_with(config, parts).unwrap();
        let router = server.router();
        TestServer { _dir: dir, server, router }
    }

    /// Stops the server and opens it again on the same data directory, with its config
    /// changed by `adjust`.
    pub(crate) fn restart_with(self, adjust: impl FnOnce(&mut Config)) -> TestServer {
        let TestServer { _dir, server, router } = self;
        let mut config = server.config().clone();
        server.shutdown();
        drop(router);
        drop(server);
        adjust(&mut config);
        let server = Server::open_with(config, Parts::default()).unwrap();
        let router = server.router();
        TestServer { _dir, server, router }
    }

    pub(crate) async fn request(&self, method: Method, uri: &str, headers: &[(&str, &str)], body: impl Into<Body>) -> Reply {
        let mut builder = Request::builder().method(method).uri(uri);
        for (k, v) in headers {
            builder = builder.header(*k, *v);
        }
        let response = self.router.clone().oneshot(builder.body(body.into()).unwrap()).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Reply { status, headers, json }
    }

    /// The status and headers of a request, without reading the body (streams never end).
    pub(crate) async fn head_of(&self, method: Method, uri: &str, headers: &[(&str, &str)]) -> (StatusCode, HeaderMap) {
        let mut builder = Request::builder().method(method).uri(uri);
        for (k, v) in headers {
            builder = builder.header(*k, *v);
        }
        let response = self.router.clone().oneshot(builder.body(Body::empty()).unwrap()).await.unwrap();
        (response.status(), response.headers().clone())
    }

    pub(crate) async fn post(&self, uri: &str, key: &str, body: impl Into<Body>) -> Reply {
        let auth = format!("Bearer {key}");
        self.request(Method::POST, uri, &[("authorization", &auth), ("content-type", "application/json")], body).await
    }

    pub(crate) async fn patch(&self, uri: &str, key: &str, body: impl Into<Body>) -> Reply {
        let auth = format!("Bearer {key}");
        self.request(Method::PATCH, uri, &[("authorization", &auth), ("content-type", "application/json")], body).await
    }

    /// The test's temporary directory.
    pub(crate) fn dir(&self) -> &std::path::Path {
        self._dir.path()
    }

    pub(crate) async fn get(&self, uri: &str, key: &str) -> Reply {
        let auth = format!("Bearer {key}");
        self.request(Method::GET, uri, &[("authorization", &auth)], Body::empty()).await
    }

    /// Signs `login` in; returns its cookie header value and CSRF token.
    pub(crate) async fn login(&self, login: &str, password: &str) -> Session {
        let body = serde_json::json!({"login": login, "password": password}).to_string();
        let reply = self.request(Method::POST, "/v1/session", &[("content-type", "application/json")], body).await;
        assert_eq!(reply.status, StatusCode::OK, "login {login}: {:?}", reply.json);
        let set_cookie = reply.headers.get("set-cookie").unwrap().to_str().unwrap().to_owned();
        let cookie = set_cookie.split(';').next().unwrap().to_owned();
        Session { cookie, csrf: reply.json["csrf_token"].as_str().unwrap().to_owned(), set_cookie }
    }

    /// A request made with a session cookie (and its CSRF token unless `csrf` is false).
    pub(crate) async fn as_session(&self, session: &Session, method: Method, uri: &str, body: impl Into<Body>, extra: &[(&str, &str)]) -> Reply {
        let mut headers: Vec<(&str, &str)> = vec![("cookie", &session.cookie), ("content-type", "application/json"), ("x-csrf-token", &session.csrf)];
        headers.extend_from_slice(extra);
        self.request(method, uri, &headers, body).await
    }

    /// A console page as a browser asks for it: with the session's cookie (if any) and
    /// `extra` headers; the body as text.
    pub(crate) async fn page(&self, session: Option<&Session>, uri: &str, extra: &[(&str, &str)]) -> PageReply {
        let mut builder = Request::builder().method(Method::GET).uri(uri);
        if !extra.iter().any(|(k, _)| k.eq_ignore_ascii_case("accept")) {
            builder = builder.header("accept", "text/html,application/xhtml+xml");
        }
        if let Some(session) = session {
            builder = builder.header("cookie", &session.cookie);
        }
        for (k, v) in extra {
            builder = builder.header(*k, *v);
        }
        let response = self.router.clone().oneshot(builder.body(Body::empty()).unwrap()).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        PageReply { status, headers, body: String::from_utf8(bytes.to_vec()).expect("pages are UTF-8") }
    }

    /// Creates `app` and returns a key with `scopes`.
    pub(crate) async fn app_with_key(&self, app: &str, scopes: &[&str]) -> String {
        let created = self.post("/v1/apps", MASTER, serde_json::json!({"id": app}).to_string()).await;
        assert!(created.status == StatusCode::CREATED || created.code() == "app_exists", "{:?}", created.json);
        let key = self.post(&format!("/v1/apps/{app}/keys"), MASTER, serde_json::json!({"scopes": scopes}).to_string()).await;
        assert_eq!(key.status, StatusCode::CREATED, "{:?}", key.json);
        key.json["key"].as_str().unwrap().to_owned()
    }

    /// Every event stored in a topic.
    pub(crate) fn stored(&self, topic: &str) -> Vec<Event> {
        let log = self.server.log();
        let topic = TopicName::new(topic).unwrap();
        let mut out = Vec::new();
        for p in 0..log.partition_count(&topic).unwrap() {
            for record in log.read(&topic, p, 0, usize::MAX, usize::MAX).unwrap() {
                out.push(Event::decode_any(&record.value).unwrap());
            }
        }
        out
    }

    pub(crate) fn stored_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.stored("events").into_iter().map(|e| e.id.to_string()).collect();
        ids.sort();
        ids
    }
}

/// Current time in ms.
pub(crate) fn now_ms() -> i64 {
    meridian_event::Timestamp::now().millis()
}

/// `path` with every `{param}` replaced by `value(param)`.
pub(crate) fn fill_path(path: &str, value: impl Fn(&str) -> &'static str) -> String {
    let mut out = String::new();
    let mut rest = path;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let end = rest[start..].find('}').expect("closed parameter") + start;
        out.push_str(value(&rest[start + 1..end]));
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}
