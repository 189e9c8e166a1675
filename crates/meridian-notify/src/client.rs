//! The webhook HTTP client: hyper over a connector that checks the network policy on every
//! address it resolves and on the peer it actually connected to, rustls for HTTPS, and
//! redirects followed by hand so every hop goes through the same connector.

use crate::ssrf::{NetworkPolicy, SsrfRefusal};
use crate::{NotifyConfig, NotifyError, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{HeaderName, HeaderValue, CONTENT_TYPE, LOCATION, USER_AGENT};
use hyper::{Method, Request, Uri};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

/// Bytes of the response body kept in the delivery log.
pub(crate) const RESPONSE_BODY_KEPT: usize = 1024;
/// Bytes of a response body read at most (to let the connection be reused).
const RESPONSE_BODY_READ: usize = 64 * 1024;

/// Why the connector did not hand over a connection.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConnectFailure {
    /// The network policy refuses an address of the host.
    #[error("{0}")]
    Ssrf(SsrfRefusal),
    /// The host name does not resolve.
    #[error("cannot resolve {host}: {message}")]
    Dns {
        /// Host.
        host: String,
        /// Resolver error.
        message: String,
    },
    /// No address accepted a connection.
    #[error("cannot connect to {host}: {message}")]
    Connect {
        /// Host.
        host: String,
        /// Last error.
        message: String,
    },
    /// The URI has no host.
    #[error("url {0} has no host")]
    NoHost(String),
}

/// Resolves `host` (an IP literal, bracketed or not, needs no resolver) and checks every
/// address against `policy`: a host with any refused address is refused, so a name cannot
/// mix a public address with an internal one.
pub(crate) async fn resolve_checked(host: &str, port: u16, policy: &NetworkPolicy) -> std::result::Result<Vec<SocketAddr>, ConnectFailure> {
    let bare = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    let addresses: Vec<SocketAddr> = match bare.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => tokio::net::lookup_host((bare, port))
            .await
            .map_err(|e| ConnectFailure::Dns { host: bare.to_owned(), message: e.to_string() })?
            .collect(),
    };
    if addresses.is_empty() {
        return Err(ConnectFailure::Dns { host: bare.to_owned(), message: "no addresses".into() });
    }
    for address in &addresses {
        policy.check(address.ip()).map_err(ConnectFailure::Ssrf)?;
    }
    Ok(addresses)
}

/// A TCP connector that only connects to addresses the network policy allows, and checks
/// the peer address of the connection it made (IP literals included: nothing bypasses it).
#[derive(Debug, Clone)]
pub(crate) struct GuardedConnector {
    policy: Arc<NetworkPolicy>,
    connect_timeout: Duration,
}

impl GuardedConnector {
    pub(crate) fn new(policy: NetworkPolicy, connect_timeout: Duration) -> GuardedConnector {
        GuardedConnector { policy: Arc::new(policy), connect_timeout }
    }

    async fn connect(policy: Arc<NetworkPolicy>, connect_timeout: Duration, uri: Uri) -> std::result::Result<TokioIo<TcpStream>, ConnectFailure> {
        let host = uri.host().ok_or_else(|| ConnectFailure::NoHost(uri.to_string()))?.to_owned();
        let port = uri.port_u16().unwrap_or(if uri.scheme_str() == Some("https") { 443 } else { 80 });
        let addresses = resolve_checked(&host, port, &policy).await?;
        let mut last_error = String::from("no address tried");
        for address in addresses {
            match tokio::time::timeout(connect_timeout, TcpStream::connect(address)).await {
                Ok(Ok(stream)) => {
                    // The address actually connected to, whatever resolved it.
                    let peer = stream.peer_addr().map_err(|e| ConnectFailure::Connect { host: host.clone(), message: e.to_string() })?;
                    policy.check(peer.ip()).map_err(ConnectFailure::Ssrf)?;
                    let _ = stream.set_nodelay(true);
                    return Ok(TokioIo::new(stream));
                }
                Ok(Err(e)) => last_error = format!("{address}: {e}"),
                Err(_) => last_error = format!("{address}: connect timed out"),
            }
        }
        Err(ConnectFailure::Connect { host, message: last_error })
    }
}

impl tower_service::Service<Uri> for GuardedConnector {
    type Response = TokioIo<TcpStream>;
    type Error = ConnectFailure;
    type Future = Pin<Box<dyn Future<Output = std::result::Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<std::result::Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        Box::pin(GuardedConnector::connect(self.policy.clone(), self.connect_timeout, uri))
    }
}

/// What one attempt (with its redirects) came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendOutcome {
    /// Status of the final answer, if one came.
    pub status: Option<u16>,
    /// Failure: stable code and message. `None` for a 2xx answer.
    pub error: Option<(&'static str, String)>,
    /// First KiB of the final answer's body.
    pub body_prefix: String,
    /// Redirects followed.
    pub redirects: u32,
    /// Duration.
    pub latency: Duration,
}

struct Answer {
    status: u16,
    body_prefix: String,
}

struct Failure {
    code: &'static str,
    message: String,
    answer: Option<Answer>,
}

impl Failure {
    fn new(code: &'static str, message: impl Into<String>) -> Failure {
        Failure { code, message: message.into(), answer: None }
    }
}

/// The HTTP client deliveries use: the network policy enforced on every connection and
/// redirect hop, rustls for HTTPS, a keep-alive pool, the attempt timeout. Public for a
/// "send a test event" action and for the benchmark's baseline; it does not sign.
#[derive(Debug)]
pub struct WebhookClient {
    client: Client<HttpsConnector<GuardedConnector>, Full<Bytes>>,
    timeout: Duration,
    max_redirects: u32,
    user_agent: HeaderValue,
}

impl WebhookClient {
    /// A client with `config`'s network policy, timeout, redirects, roots and user agent.
    pub fn new(config: &NotifyConfig) -> Result<WebhookClient> {
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        for path in &config.extra_root_certificates {
            use rustls::pki_types::pem::PemObject;
            let certificates = rustls::pki_types::CertificateDer::pem_file_iter(path).map_err(|e| NotifyError::Tls(format!("cannot read {}: {e}", path.display())))?;
            let mut n_added = 0;
            for certificate in certificates {
                let certificate = certificate.map_err(|e| NotifyError::Tls(format!("bad certificate in {}: {e}", path.display())))?;
                roots.add(certificate).map_err(|e| NotifyError::Tls(format!("unusable certificate in {}: {e}", path.display())))?;
                n_added += 1;
            }
            if n_added == 0 {
                return Err(NotifyError::Tls(format!("{} holds no PEM certificate", path.display())));
            }
        }
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| NotifyError::Tls(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let connector = GuardedConnector::new(config.network.clone(), config.timeout());
        let https = hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(tls).https_or_http().enable_http1().wrap_connector(connector);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(config.max_concurrency)
            .build(https);
        let user_agent = HeaderValue::from_str(&config.user_agent).map_err(|_| NotifyError::InvalidConfig { field: "user_agent", reason: "not a header value".into() })?;
        Ok(WebhookClient { client, timeout: config.timeout(), max_redirects: config.max_redirects, user_agent })
    }

    /// Posts `body` to `url` with `headers`, following redirects, within the timeout.
    pub async fn post(&self, url: &str, headers: &[(HeaderName, HeaderValue)], body: Bytes) -> SendOutcome {
        let started = Instant::now();
        let mut redirects = 0;
        let result = match tokio::time::timeout(self.timeout, self.post_following(url, headers, body, &mut redirects)).await {
            Ok(result) => result,
            Err(_) => Err(Failure::new("timeout", format!("no complete answer within {} ms", self.timeout.as_millis()))),
        };
        let latency = started.elapsed();
        match result {
            Ok(answer) => SendOutcome { status: Some(answer.status), error: None, body_prefix: answer.body_prefix, redirects, latency },
            Err(failure) => SendOutcome {
                status: failure.answer.as_ref().map(|a| a.status),
                body_prefix: failure.answer.map(|a| a.body_prefix).unwrap_or_default(),
                error: Some((failure.code, failure.message)),
                redirects,
                latency,
            },
        }
    }

    async fn post_following(&self, url: &str, headers: &[(HeaderName, HeaderValue)], body: Bytes, redirects: &mut u32) -> std::result::Result<Answer, Failure> {
        let mut uri: Uri = url.parse().map_err(|e| Failure::new("request_error", format!("bad url {url:?}: {e}")))?;
        loop {
            check_scheme(&uri).map_err(|message| Failure::new(if *redirects == 0 { "request_error" } else { "invalid_redirect" }, message))?;
            let mut request = Request::builder().method(Method::POST).uri(uri.clone());
            for (name, value) in headers {
                request = request.header(name, value);
            }
            let request = request
                .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
                .header(USER_AGENT, self.user_agent.clone())
                .body(Full::new(body.clone()))
                .map_err(|e| Failure::new("request_error", e.to_string()))?;
            let response = self.client.request(request).await.map_err(|e| classify_error(&e))?;
            let status = response.status();
            if matches!(status.as_u16(), 301 | 302 | 303 | 307 | 308) {
                let location = response.headers().get(LOCATION).and_then(|v| v.to_str().ok()).map(str::to_owned);
                let body_prefix = read_prefix(response.into_body()).await;
                let Some(location) = location else {
                    return Err(Failure { code: "http_status", message: format!("{status} without a Location header"), answer: Some(Answer { status: status.as_u16(), body_prefix }) });
                };
                if *redirects >= self.max_redirects {
                    return Err(Failure {
                        code: "too_many_redirects",
                        message: format!("{status} to {location:?} after {} redirects; at most {} are followed", *redirects, self.max_redirects),
                        answer: Some(Answer { status: status.as_u16(), body_prefix }),
                    });
                }
                uri = join_location(&uri, &location).map_err(|message| Failure::new("invalid_redirect", message))?;
                *redirects += 1;
                continue;
            }
            let body_prefix = read_prefix(response.into_body()).await;
            let answer = Answer { status: status.as_u16(), body_prefix };
            return if status.is_success() { Ok(answer) } else { Err(Failure { code: "http_status", message: format!("answered {status}"), answer: Some(answer) }) };
        }
    }
}

fn check_scheme(uri: &Uri) -> std::result::Result<(), String> {
    match uri.scheme_str() {
        Some("http") | Some("https") if uri.host().is_some_and(|h| !h.is_empty()) => Ok(()),
        Some("http") | Some("https") => Err(format!("url {uri} has no host")),
        _ => Err(format!("url {uri} is not http or https")),
    }
}

/// Resolves a `Location` header against the URI it answered.
fn join_location(base: &Uri, location: &str) -> std::result::Result<Uri, String> {
    let bad = |e: &dyn std::fmt::Display| format!("bad redirect location {location:?}: {e}");
    if location.contains("://") {
        return location.parse::<Uri>().map_err(|e| bad(&e));
    }
    let scheme = base.scheme_str().unwrap_or("http");
    let authority = base.authority().map(|a| a.as_str()).unwrap_or_default();
    let joined = if let Some(rest) = location.strip_prefix("//") {
        format!("{scheme}://{rest}")
    } else if location.starts_with('/') {
        format!("{scheme}://{authority}{location}")
    } else {
        let path = base.path();
        let directory = &path[..path.rfind('/').map(|i| i + 1).unwrap_or(0)];
        format!("{scheme}://{authority}{directory}{location}")
    };
    joined.parse::<Uri>().map_err(|e| bad(&e))
}

async fn read_prefix(mut body: hyper::body::Incoming) -> String {
    let mut kept = Vec::new();
    let mut read = 0usize;
    while read < RESPONSE_BODY_READ {
        match body.frame().await {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    read += data.len();
                    let room = RESPONSE_BODY_KEPT.saturating_sub(kept.len());
                    kept.extend_from_slice(&data[..data.len().min(room)]);
                }
            }
            _ => break,
        }
    }
    String::from_utf8_lossy(&kept).into_owned()
}

/// The rustls error in `e`, looking through nested `io::Error`s (the TLS stream wraps its
/// error in one, the connector in another; `io::Error::source` skips the wrapped error).
fn tls_error_in<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    let mut current = e;
    loop {
        if let Some(tls) = current.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        current = current.downcast_ref::<std::io::Error>()?.get_ref()?;
    }
}

/// Maps a client error to a stable code by walking its causes.
fn classify_error(error: &(dyn std::error::Error + 'static)) -> Failure {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = cause {
        if let Some(failure) = e.downcast_ref::<ConnectFailure>() {
            let code = match failure {
                ConnectFailure::Ssrf(_) => "ssrf_refused",
                ConnectFailure::Dns { .. } => "dns_error",
                ConnectFailure::Connect { .. } => "connection_error",
                ConnectFailure::NoHost(_) => "request_error",
            };
            return Failure::new(code, failure.to_string());
        }
        if let Some(tls) = tls_error_in(e) {
            return Failure::new("tls_error", tls.to_string());
        }
        cause = e.source();
    }
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        message.push_str(": ");
        message.push_str(&e.to_string());
        source = e.source();
    }
    Failure::new("connection_error", message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_resolve_against_the_answering_url() {
        let base: Uri = "http://127.0.0.2:8080/hooks/in?x=1".parse().unwrap();
        assert_eq!(join_location(&base, "http://127.0.0.1:9/x").unwrap().to_string(), "http://127.0.0.1:9/x");
        assert_eq!(join_location(&base, "/other").unwrap().to_string(), "http://127.0.0.2:8080/other");
        assert_eq!(join_location(&base, "next").unwrap().to_string(), "http://127.0.0.2:8080/hooks/next");
        assert_eq!(join_location(&base, "//example.com/a").unwrap().to_string(), "http://example.com/a");
    }

    #[test]
    fn only_http_and_https_are_posted_to() {
        assert!(check_scheme(&"https://example.com/".parse().unwrap()).is_ok());
        assert!(check_scheme(&"ftp://example.com/".parse().unwrap()).is_err());
        assert!(check_scheme(&"/relative".parse().unwrap()).is_err());
    }

    #[tokio::test]
    async fn ip_literals_are_checked_without_a_resolver() {
        let policy = NetworkPolicy::default();
        for host in ["127.0.0.1", "[::1]", "::1", "169.254.169.254", "[::ffff:127.0.0.1]"] {
            assert!(matches!(resolve_checked(host, 80, &policy).await, Err(ConnectFailure::Ssrf(_))), "{host}");
        }
        assert_eq!(resolve_checked("8.8.8.8", 80, &policy).await.unwrap(), vec!["8.8.8.8:80".parse().unwrap()]);
    }
}
