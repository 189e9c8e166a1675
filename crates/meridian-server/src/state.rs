//! The state every handler shares: config, log, state store, tenancy, collector, runtime,
//! rate limits, the pipeline in force, the registered capability modules and the console's
//! navigation.

use crate::config::Config;
use crate::module::Registered;
use crate::ratelimit::RateLimits;
use meridian_api::admin::PipelineStatus;
use meridian_collector::Collector;
use meridian_log::{Log, TopicName};
use meridian_pipeline::Pipeline;
use meridian_runtime::Runtime;
use meridian_tenancy::Tenancy;
use parking_lot::Mutex;
use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

/// The topic every behaviour event goes to (the default route's) and every capability's
/// processors consume.
pub const EVENTS_TOPIC: &str = "events";

/// Shared state of the handlers.
pub(crate) struct AppState {
    pub(crate) config: Config,
    pub(crate) log: Arc<dyn Log>,
    pub(crate) tenancy: Arc<Tenancy>,
    pub(crate) collector: Arc<Collector>,
    pub(crate) runtime: Arc<Runtime>,
    pub(crate) events_topic: TopicName,
    pub(crate) rate_limits: RateLimits,
    /// The capability modules, set once they are open (they get this state to open).
    pub(crate) modules: OnceLock<Vec<Registered>>,
    pub(crate) pipeline_status: Mutex<PipelineStatus>,
    pub(crate) pipeline_mtime: Mutex<Option<SystemTime>>,
    /// The OpenAPI document, rendered once the router is built.
    pub(crate) openapi: OnceLock<serde_json::Value>,
    /// The console's navigation and the router its pages read through.
    pub(crate) console: crate::console::ConsoleState,
    /// The open long-lived client connections (`GET /v1/connect`).
    pub(crate) connections: crate::routes::connect::Connections,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState").field("data_dir", &self.config.server.data_dir).finish_non_exhaustive()
    }
}

/// The pipeline file's modification time, if it has one.
pub(crate) fn modified(path: &std::path::Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// The status of a pipeline just loaded from `file`.
pub(crate) fn pipeline_status(pipeline: &Pipeline, file: Option<&std::path::Path>) -> PipelineStatus {
    PipelineStatus {
        file: file.map(|f| f.display().to_string()),
        revision: pipeline.revision(),
        topics: pipeline.topics().iter().map(|t| t.to_string()).collect(),
        loaded_ms: Some(meridian_event::Timestamp::now().millis()),
        last_error: None,
    }
}

impl AppState {
    /// The registered modules (empty before they are open).
    pub(crate) fn modules(&self) -> &[Registered] {
        self.modules.get().map(Vec::as_slice).unwrap_or_default()
    }

    /// Reloads the pipeline file (blocking: reads it); on error the old pipeline stays and
    /// the error is kept in the status.
    pub(crate) fn reload_pipeline(&self) -> Result<PipelineStatus, String> {
        let Some(path) = self.config.collector.pipeline_file() else {
            return Err("no pipeline file is configured (collector.pipeline, or --pipeline)".into());
        };
        let mtime = modified(path);
        let result = Pipeline::from_file(path).map_err(|e| e.to_string()).and_then(|p| {
            let status = pipeline_status(&p, Some(path));
            self.collector.set_pipeline(p).map_err(|e| e.to_string())?;
            Ok(status)
        });
        *self.pipeline_mtime.lock() = mtime;
        let mut status = self.pipeline_status.lock();
        match result {
            Ok(new) => {
                tracing::info!(revision = %new.revision, file = %path.display(), "pipeline loaded");
                metrics::counter!("meridian_pipeline_reloads_total", "result" => "ok").increment(1);
                *status = new;
                Ok(status.clone())
            }
            Err(message) => {
                tracing::warn!(error = %message, file = %path.display(), "pipeline reload refused; the previous pipeline stays in force");
                metrics::counter!("meridian_pipeline_reloads_total", "result" => "error").increment(1);
                status.last_error = Some(message.clone());
                Err(message)
            }
        }
    }

    /// Whether the pipeline file changed since it was last loaded.
    pub(crate) fn pipeline_file_changed(&self) -> bool {
        let Some(path) = self.config.collector.pipeline_file() else { return false };
        let mtime = modified(path);
        mtime.is_some() && mtime != *self.pipeline_mtime.lock()
    }
}

/// Runs blocking work (store commits, file reads, log reads) on the blocking pool.
pub(crate) async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, crate::error::ApiError> {
    tokio::task::spawn_blocking(f).await.map_err(crate::error::ApiError::internal)
}

/// `prefix` and `n_bytes` random bytes in hex: ids of erasures, test notifications…
pub(crate) fn random_id(prefix: &str, n_bytes: usize) -> Result<String, crate::error::ApiError> {
    let mut bytes = vec![0u8; n_bytes];
    getrandom::getrandom(&mut bytes).map_err(crate::error::ApiError::internal)?;
    Ok(format!("{prefix}{}", hex::encode(bytes)))
}
