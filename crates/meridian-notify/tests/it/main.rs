//! Integration tests of webhook notifications against real HTTP receivers on loopback, the
//! real embedded log, runtime and fjall store.

mod processor;
mod restart;
mod retries;
mod signing;
mod ssrf;
mod tls;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use meridian_event::AppId;
use meridian_log::embedded::{EmbeddedLog, EmbeddedLogConfig};
use meridian_log::{AppendRecord, Log, TopicName};
use meridian_notify::{DeliveryDetail, DeliveryId, DeliveryState, Endpoint, NewEndpoint, NotificationProcessor, NotificationRequest, Notifier, NotifyConfig};
use meridian_runtime::{Processor, Runtime, RuntimeConfig};
use meridian_state::{FjallStore, KvStore};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Loudly skips a test whose outside dependency is absent, unless CI demands it.
pub(crate) fn skip_or_fail(what: &str) {
    if std::env::var("MERIDIAN_REQUIRE_BACKENDS").is_ok_and(|v| v == "1") {
        panic!("{what} is required (MERIDIAN_REQUIRE_BACKENDS=1) but absent");
    }
    eprintln!("\n!!!!!!!!!! SKIPPED: {what} is absent; install it (see scripts/test.sh) — CI sets MERIDIAN_REQUIRE_BACKENDS=1 and fails instead !!!!!!!!!!\n");
}

/// One request a receiver got.
#[derive(Debug, Clone)]
pub(crate) struct Received {
    pub(crate) path: String,
    pub(crate) headers: HashMap<String, String>,
    pub(crate) body: Bytes,
}

impl Received {
    pub(crate) fn webhook_id(&self) -> &str {
        &self.headers["webhook-id"]
    }
}

/// How a receiver answers its n-th request (0-based).
#[derive(Debug, Clone)]
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) location: Option<String>,
    pub(crate) delay: Duration,
    pub(crate) body: String,
}

impl Reply {
    pub(crate) fn status(status: u16) -> Reply {
        Reply { status, location: None, delay: Duration::ZERO, body: format!("status {status}") }
    }
}

type Handler = Arc<dyn Fn(usize, &str) -> Reply + Send + Sync>;

/// A real HTTP/1.1 server (hyper) recording what it receives.
pub(crate) struct Receiver {
    pub(crate) addr: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
    handler: Arc<Mutex<Handler>>,
    task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    /// Listens on `ip` (an ephemeral port) and answers with `handler`.
    pub(crate) async fn start(ip: &str, handler: impl Fn(usize, &str) -> Reply + Send + Sync + 'static) -> Receiver {
        let listener = tokio::net::TcpListener::bind((ip, 0)).await.expect("bind the receiver");
        let addr = listener.local_addr().unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let handler: Arc<Mutex<Handler>> = Arc::new(Mutex::new(Arc::new(handler)));
        let (task_received, task_handler) = (received.clone(), handler.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { return };
                let (received, handler) = (task_received.clone(), task_handler.clone());
                tokio::spawn(async move {
                    let service = service_fn(move |request: Request<hyper::body::Incoming>| {
                        let (received, handler) = (received.clone(), handler.clone());
                        async move {
                            let path = request.uri().path().to_owned();
                            let headers = request.headers().iter().map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or_default().to_owned())).collect();
                            let body = request.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                            let n = {
                                let mut all = received.lock();
                                all.push(Received { path: path.clone(), headers, body });
                                all.len() - 1
                            };
                            let handler = handler.lock().clone();
                            let reply = handler(n, &path);
                            if !reply.delay.is_zero() {
                                tokio::time::sleep(reply.delay).await;
                            }
                            let mut response = Response::builder().status(reply.status);
                            if let Some(location) = reply.location {
                                response = response.header("location", location);
                            }
                            Ok::<_, std::convert::Infallible>(response.body(Full::new(Bytes::from(reply.body))).unwrap())
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
                });
            }
        });
        Receiver { addr, received, handler, task }
    }

    /// A receiver answering 200 to everything.
    pub(crate) async fn ok(ip: &str) -> Receiver {
        Receiver::start(ip, |_, _| Reply::status(200)).await
    }

    pub(crate) fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    pub(crate) fn received(&self) -> Vec<Received> {
        self.received.lock().clone()
    }

    pub(crate) fn set_handler(&self, handler: impl Fn(usize, &str) -> Reply + Send + Sync + 'static) {
        *self.handler.lock() = Arc::new(handler);
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Settings for tests: loopback allowed, millisecond backoff.
pub(crate) fn test_config() -> NotifyConfig {
    let mut config = NotifyConfig {
        timeout_ms: 3_000,
        backoff_base_ms: 20,
        backoff_factor: 2.0,
        backoff_cap_ms: 200,
        poll_interval_ms: 50,
        ..NotifyConfig::default()
    };
    config.network.allow_loopback = true;
    config
}

pub(crate) fn app() -> AppId {
    AppId::new("shop").unwrap()
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

pub(crate) fn request(id: &str, event_type: &str) -> NotificationRequest {
    NotificationRequest { id: id.into(), app: app(), event_type: event_type.into(), payload: serde_json::json!({"request": id}), created_ms: now_ms(), endpoint: None, bare: false }
}

/// The log, store, runtime (with the notification processor) and notifier of one test.
pub(crate) struct Fixture {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) log: Arc<EmbeddedLog>,
    pub(crate) store: Arc<FjallStore>,
    pub(crate) topic: TopicName,
    pub(crate) runtime: Runtime,
    pub(crate) notifier: Arc<Notifier>,
    pub(crate) notifier_task: Option<tokio::task::JoinHandle<()>>,
}

impl Fixture {
    /// Starts everything in a new temp dir.
    pub(crate) async fn start(config: NotifyConfig) -> Fixture {
        Fixture::start_with(config, |p| Box::new(p)).await
    }

    /// Starts everything, letting the test wrap the processor.
    pub(crate) async fn start_with(config: NotifyConfig, wrap: impl FnOnce(NotificationProcessor) -> Box<dyn Processor>) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        Fixture::open(dir, config, wrap, true).await
    }

    /// Opens (or reopens) the data in `dir`; spawns the notifier if `spawn_notifier`.
    pub(crate) async fn open(dir: tempfile::TempDir, config: NotifyConfig, wrap: impl FnOnce(NotificationProcessor) -> Box<dyn Processor>, spawn_notifier: bool) -> Fixture {
        let (log, store) = open_data(dir.path());
        let topic = config.topic_name().unwrap();
        log.ensure_topic(&topic, 2).unwrap();
        let notifier = Arc::new(Notifier::new(store.clone(), config.clone()).unwrap());
        let runtime = Runtime::new(log.clone(), store.clone(), RuntimeConfig { max_batch_records: 64, idle_wait: Duration::from_millis(20), ..RuntimeConfig::default() });
        let processor = NotificationProcessor::new(&config).unwrap().with_waker(notifier.waker());
        runtime.spawn(wrap(processor)).unwrap();
        let notifier_task = spawn_notifier.then(|| notifier.clone().spawn(&tokio::runtime::Handle::current()));
        Fixture { dir, log, store, topic, runtime, notifier, notifier_task }
    }

    /// Stops the runtime and the notifier and gives the data directory back.
    pub(crate) async fn stop(mut self) -> tempfile::TempDir {
        self.notifier.shutdown();
        if let Some(task) = self.notifier_task.take() {
            task.await.unwrap();
        }
        let Fixture { dir, log, store, runtime, notifier, .. } = self;
        tokio::task::spawn_blocking(move || runtime.shutdown()).await.unwrap();
        drop(notifier);
        log.close().unwrap();
        drop(log);
        drop(store);
        dir
    }

    pub(crate) async fn endpoint(&self, url: &str, event_types: &[&str]) -> Endpoint {
        self.notifier
            .create_endpoint(NewEndpoint { app: app(), url: url.into(), description: "test".into(), event_types: event_types.iter().map(|s| s.to_string()).collect(), disabled: false })
            .await
            .unwrap()
    }

    /// Appends requests to the notifications topic (durably).
    pub(crate) async fn emit(&self, requests: &[NotificationRequest]) {
        let records = requests
            .iter()
            .map(|r| AppendRecord { key: Bytes::from(r.id.clone()), value: Bytes::from(r.to_record_value()), timestamp: r.created_ms })
            .collect();
        self.log.append(&self.topic, records).await.unwrap();
    }

    /// Waits until the processor has processed everything in the log.
    pub(crate) async fn caught_up(&self) {
        wait_until("the processor to catch up", Duration::from_secs(10), || async { self.runtime.total_lag() == 0 && self.runtime.status().iter().all(|s| !s.partitions.is_empty()) }).await;
    }

    /// Waits until a delivery satisfies `done`; returns it with its attempts.
    pub(crate) async fn wait_delivery(&self, id: &DeliveryId, timeout: Duration, done: impl Fn(&DeliveryDetail) -> bool) -> DeliveryDetail {
        let deadline = Instant::now() + timeout;
        loop {
            let detail = self.notifier.delivery(id).await.ok();
            if let Some(detail) = detail {
                if done(&detail) {
                    return detail;
                }
                assert!(Instant::now() < deadline, "delivery {id} did not reach the expected state: {detail:#?}");
            } else {
                assert!(Instant::now() < deadline, "delivery {id} was never created");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    pub(crate) async fn wait_state(&self, id: &DeliveryId, state: DeliveryState, timeout: Duration) -> DeliveryDetail {
        self.wait_delivery(id, timeout, |d| d.delivery.state == state).await
    }
}

pub(crate) fn open_data(dir: &Path) -> (Arc<EmbeddedLog>, Arc<FjallStore>) {
    let log = EmbeddedLog::open(dir.join("log"), EmbeddedLogConfig::default()).unwrap();
    let store = Arc::new(FjallStore::open(dir.join("state")).unwrap());
    (log, store)
}

/// Polls `condition` every 10 ms until it holds, failing after `timeout`.
pub(crate) async fn wait_until<F, Fut>(what: &str, timeout: Duration, condition: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while !condition().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The store, as the trait object the notifier uses (for tests that read it directly).
pub(crate) fn kv(store: &Arc<FjallStore>) -> Arc<dyn KvStore> {
    store.clone()
}
