//! The server's configuration: one section per part of Meridian (core sections here,
//! capability sections in their crates), composed into [`Config`] and loaded once from
//! file, environment and overrides by `meridian-config`.

use crate::ratelimit::RateLimitConfig;
use meridian_collector::CollectorConfig;
use meridian_config::{check, check_range, FieldError, LoadError, Section, Sources};
use meridian_event::ValidationPolicy;
use meridian_log::embedded::EmbeddedLogConfig;
use meridian_state::StateBackend;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Declares the root config: one field per section, and the validation and secret list
/// that go over every section. A capability adds its section with one line here.
macro_rules! config_sections {
    ($($field:ident: $section:ty),+ $(,)?) => {
        /// Everything the server needs to start: one table per section of the config file.
        #[derive(Debug, Clone, Default, Serialize, Deserialize)]
        #[serde(default, deny_unknown_fields)]
        pub struct Config {
            $(
                #[doc = concat!("The `[", stringify!($field), "]` section.")]
                pub $field: $section,
            )+
        }

        impl Config {
            /// Checks every section; the error names the setting (`history.max_items`).
            pub fn validate(&self) -> Result<(), FieldError> {
                $(
                    debug_assert_eq!(<$section as Section>::NAME, stringify!($field));
                    Section::validate(&self.$field).map_err(|e| e.in_section(<$section as Section>::NAME))?;
                )+
                Ok(())
            }

            /// Dotted keys of every secret setting (masked when printed).
            pub fn secrets() -> Vec<String> {
                let mut keys = Vec::new();
                $(
                    keys.extend(<$section as Section>::SECRETS.iter().map(|k| format!("{}.{k}", <$section as Section>::NAME)));
                )+
                keys
            }
        }
    };
}

config_sections! {
    server: ServerSection,
    state: StateSection,
    log: LogSection,
    collector: CollectorSection,
    connect: ConnectSection,
    sources: SourcesSection,
    rate_limits: RateLimitConfig,
    tenancy: meridian_tenancy::TenancyConfig,
    catalog: meridian_catalog::CatalogConfig,
    counters: meridian_counters::CountersConfig,
    history: meridian_history::HistoryConfig,
    notify: meridian_notify::NotifyConfig,
    actions: meridian_actions::ActionsConfig,
    alerts: meridian_alerts::AlertsConfig,
    listing: meridian_listing::ListingConfig,
}

/// `MERIDIAN_*` variables that are not settings (read by the CLI and the tests).
pub const NOT_SETTINGS: &[&str] = &["MERIDIAN_CONFIG", "MERIDIAN_KEY", "MERIDIAN_REQUIRE_BACKENDS", "MERIDIAN_URL"];

impl Config {
    /// Defaults with `data_dir` as the data directory.
    pub fn for_data_dir(data_dir: impl Into<PathBuf>) -> Config {
        let mut config = Config::default();
        config.server.data_dir = data_dir.into();
        config
    }

    /// Loads and validates the config: `sources.file`, then the environment, then the
    /// overrides (see `meridian-config`). Returns it and warnings to show (e.g. a
    /// `MERIDIAN_*` variable that sets nothing).
    pub fn load(mut sources: Sources) -> Result<(Config, Vec<String>), ConfigError> {
        sources.bare_section = Some(ServerSection::NAME);
        sources.not_settings.extend_from_slice(NOT_SETTINGS);
        let (config, warnings) = meridian_config::load::<Config>(&sources)?;
        config.validate()?;
        Ok((config, warnings))
    }

    /// The effective config as TOML, secrets masked (`meridian config check`).
    pub fn masked_toml(&self) -> String {
        meridian_config::masked_toml(self, &Config::secrets())
    }

    /// The state backend to open: the configured one, else the data directory's, else
    /// the default.
    pub fn state_backend(&self) -> StateBackend {
        self.state.backend.unwrap_or_else(|| StateBackend::for_data_dir(&self.server.data_dir))
    }
}

/// Why the config cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// It could not be read or merged.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// A value is out of range.
    #[error("invalid setting {0}")]
    Invalid(FieldError),
}

impl From<FieldError> for ConfigError {
    fn from(e: FieldError) -> ConfigError {
        ConfigError::Invalid(e)
    }
}

/// Format of the server's log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// The `[server]` section: where it listens and keeps its data, who is master.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerSection {
    /// Data directory (log, state).
    pub data_dir: PathBuf,
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Master key authorising everything; required unless `dev`.
    pub master_key: Option<String>,
    /// Development mode: without a master key, generate one and print it.
    pub dev: bool,
    /// Threads serving HTTP (default: one per core).
    pub worker_threads: Option<usize>,
    /// Log line format.
    pub log_format: LogFormat,
    /// Largest request body on the wire, bytes.
    pub max_body_bytes: usize,
    /// Largest request body after gzip decompression, bytes.
    pub max_decompressed_bytes: usize,
    /// How often log retention runs, seconds.
    pub retention_interval_secs: u64,
    /// Mark the console's session cookie `Secure` (browsers then send it over HTTPS and
    /// to localhost only); turn off only behind plain HTTP on a trusted network.
    pub secure_cookies: bool,
}

impl Default for ServerSection {
    fn default() -> Self {
        ServerSection {
            data_dir: PathBuf::from("./meridian-data"),
            listen: SocketAddr::from(([127, 0, 0, 1], 7070)),
            master_key: None,
            dev: false,
            worker_threads: None,
            log_format: LogFormat::Text,
            max_body_bytes: 4 << 20,
            max_decompressed_bytes: 16 << 20,
            retention_interval_secs: 60,
            secure_cookies: true,
        }
    }
}

impl Section for ServerSection {
    const NAME: &'static str = "server";
    const SECRETS: &'static [&'static str] = &["master_key"];

    fn validate(&self) -> Result<(), FieldError> {
        check(!self.data_dir.as_os_str().is_empty(), "data_dir", || "must name a directory".into())?;
        check(self.master_key.as_deref() != Some(""), "master_key", || "is empty; set a long random secret or leave it unset with dev = true".into())?;
        if let Some(n) = self.worker_threads {
            check_range("worker_threads", n, 1, 1024)?;
        }
        check_range("max_body_bytes", self.max_body_bytes, 1024, 1 << 30)?;
        check(self.max_decompressed_bytes >= self.max_body_bytes, "max_decompressed_bytes", || "must be at least max_body_bytes".into())?;
        check_range("retention_interval_secs", self.retention_interval_secs, 1, 86_400)
    }
}

/// The `[state]` section: the embedded state store.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StateSection {
    /// `fjall` or `redb`; unset: the one the data directory was created with (fjall for a
    /// new one).
    pub backend: Option<StateBackend>,
}

impl Section for StateSection {
    const NAME: &'static str = "state";
}

/// The `[log]` section: the embedded event log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogSection {
    /// Partitions of new topics.
    pub partitions: u32,
    /// A new segment file starts beyond this size, bytes.
    pub segment_bytes: u64,
    /// Segments whose newest record is older than this are deleted, hours.
    pub retention_hours: Option<u64>,
    /// Oldest segments are deleted while a partition holds more than this, bytes.
    pub retention_bytes: Option<u64>,
    /// Appends are refused (429) while more than this is waiting for the disk, bytes.
    pub max_pending_bytes: u64,
    /// Largest record, bytes.
    pub max_record_bytes: usize,
    /// fdatasync before acknowledging; only turn off for throwaway data.
    pub fsync: bool,
}

impl Default for LogSection {
    fn default() -> Self {
        let log = EmbeddedLogConfig::default();
        LogSection {
            partitions: 4,
            segment_bytes: log.segment_bytes,
            retention_hours: None,
            retention_bytes: None,
            max_pending_bytes: log.max_pending_bytes,
            max_record_bytes: log.max_record_bytes,
            fsync: log.fsync,
        }
    }
}

impl Section for LogSection {
    const NAME: &'static str = "log";

    fn validate(&self) -> Result<(), FieldError> {
        check_range("partitions", self.partitions, 1, 256)?;
        check_range("segment_bytes", self.segment_bytes, 1 << 16, 1 << 34)?;
        if let Some(h) = self.retention_hours {
            check_range("retention_hours", h, 1, 24 * 365 * 100)?;
        }
        check_range("max_pending_bytes", self.max_pending_bytes, 1, 1 << 34)?;
        check_range("max_record_bytes", self.max_record_bytes, 1024, 64 << 20)
    }
}

impl LogSection {
    /// The embedded log's settings.
    pub fn embedded(&self) -> EmbeddedLogConfig {
        EmbeddedLogConfig {
            segment_bytes: self.segment_bytes,
            retention_ms: self.retention_hours.map(|h| h as i64 * 3_600_000),
            retention_bytes: self.retention_bytes,
            max_pending_bytes: self.max_pending_bytes,
            max_record_bytes: self.max_record_bytes,
            fsync: self.fsync,
        }
    }
}

/// The `[connect]` section: the long-lived client connection (`GET /v1/connect`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConnectSection {
    /// Largest WebSocket frame (one batch) read; a larger one closes the connection (1009).
    pub max_frame_bytes: usize,
    /// Most unacknowledged events per connection; beyond it the server reads no more
    /// frames from that client and tells it to slow down.
    pub max_in_flight_events: usize,
    /// The server pings every connection this often, seconds.
    pub heartbeat_secs: u64,
    /// A connection on which nothing (no frame, no pong) arrives for this long is closed
    /// (4408), seconds.
    pub idle_timeout_secs: u64,
    /// At shutdown, how long open connections get to finish their acknowledgements before
    /// they are closed (1001), seconds.
    pub shutdown_grace_secs: u64,
}

impl Default for ConnectSection {
    fn default() -> Self {
        ConnectSection { max_frame_bytes: 1 << 20, max_in_flight_events: 10_000, heartbeat_secs: 15, idle_timeout_secs: 45, shutdown_grace_secs: 5 }
    }
}

impl Section for ConnectSection {
    const NAME: &'static str = "connect";

    fn validate(&self) -> Result<(), FieldError> {
        check_range("max_frame_bytes", self.max_frame_bytes, 1024, 64 << 20)?;
        check_range("max_in_flight_events", self.max_in_flight_events, 1, 1_000_000)?;
        check_range("heartbeat_secs", self.heartbeat_secs, 1, 3600)?;
        check_range("idle_timeout_secs", self.idle_timeout_secs, 2, 86_400)?;
        check(self.idle_timeout_secs > self.heartbeat_secs, "idle_timeout_secs", || {
            format!("must be longer than heartbeat_secs ({}) so a live client can answer a ping in time", self.heartbeat_secs)
        })?;
        check_range("shutdown_grace_secs", self.shutdown_grace_secs, 0, 600)
    }
}

/// The `[sources]` section: message queues and directories consumed as event sources.
/// More can be added and removed at run time (`/v1/admin/sources`); those declared here
/// run whenever the server does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SourcesSection {
    /// Run sources at all.
    pub enabled: bool,
    /// Sources declared here (`[[sources.list]]`).
    pub list: Vec<meridian_api::sources::SourceSpec>,
}

impl Default for SourcesSection {
    fn default() -> Self {
        SourcesSection { enabled: true, list: Vec::new() }
    }
}

impl Section for SourcesSection {
    const NAME: &'static str = "sources";

    fn validate(&self) -> Result<(), FieldError> {
        for (i, spec) in self.list.iter().enumerate() {
            crate::modules::sources::check_spec(spec).map_err(|(field, message)| FieldError { field: format!("list[{i}].{field}"), message })?;
            if self.list[..i].iter().any(|s| s.name == spec.name) {
                return Err(FieldError { field: format!("list[{i}].name"), message: format!("two sources are named {:?}; names are unique", spec.name) });
            }
        }
        Ok(())
    }
}

/// The `[collector]` section: pipeline, batches, de-duplication, event-time policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CollectorSection {
    /// Pipeline config (TOML), reloaded when it changes; the default pipeline when unset.
    pub pipeline: Option<PathBuf>,
    /// How often the pipeline file is checked for changes, milliseconds.
    pub pipeline_poll_ms: u64,
    /// Most events per request.
    pub max_batch_events: usize,
    /// How long event ids are remembered to drop retries, seconds.
    pub dedup_window_secs: u64,
    /// Most ids remembered per de-duplication generation (bounds memory).
    pub dedup_max_entries: usize,
    /// Events further in the future than this are rejected, seconds.
    pub max_future_secs: i64,
    /// Events further in the past than this are rejected, days.
    pub max_past_days: i64,
    /// `Retry-After` answered when the log is overloaded, seconds.
    pub overload_retry_after_secs: u64,
    /// A live stream ends after this long (clients resume with `Last-Event-ID`), seconds.
    pub stream_max_secs: u64,
}

impl Default for CollectorSection {
    fn default() -> Self {
        let collector = CollectorConfig::default();
        CollectorSection {
            pipeline: None,
            pipeline_poll_ms: 1000,
            max_batch_events: collector.max_events_per_batch,
            dedup_window_secs: collector.dedup_window.as_secs(),
            dedup_max_entries: collector.dedup_max_entries,
            max_future_secs: collector.policy.max_future_ms / 1000,
            max_past_days: collector.policy.max_past_ms / 86_400_000,
            overload_retry_after_secs: collector.overload_retry_after_secs,
            stream_max_secs: 3600,
        }
    }
}

impl Section for CollectorSection {
    const NAME: &'static str = "collector";

    fn validate(&self) -> Result<(), FieldError> {
        check_range("pipeline_poll_ms", self.pipeline_poll_ms, 10, 3_600_000)?;
        check_range("max_batch_events", self.max_batch_events, 1, 100_000)?;
        check_range("dedup_window_secs", self.dedup_window_secs, 1, 7 * 86_400)?;
        check_range("dedup_max_entries", self.dedup_max_entries, 1000, 1 << 30)?;
        check_range("max_future_secs", self.max_future_secs, 0, 365 * 86_400)?;
        check_range("max_past_days", self.max_past_days, 1, 36_500)?;
        check_range("overload_retry_after_secs", self.overload_retry_after_secs, 1, 3600)?;
        check_range("stream_max_secs", self.stream_max_secs, 1, 7 * 86_400)
    }
}

impl CollectorSection {
    /// The collector's settings, with `partitions` for the topics it creates.
    pub fn collector(&self, partitions: u32) -> CollectorConfig {
        CollectorConfig {
            max_events_per_batch: self.max_batch_events,
            dedup_window: Duration::from_secs(self.dedup_window_secs),
            dedup_max_entries: self.dedup_max_entries,
            policy: ValidationPolicy { max_future_ms: self.max_future_secs * 1000, max_past_ms: self.max_past_days * 86_400_000, ..ValidationPolicy::default() },
            partitions,
            overload_retry_after_secs: self.overload_retry_after_secs,
        }
    }

    /// The pipeline file, resolved against the working directory.
    pub fn pipeline_file(&self) -> Option<&Path> {
        self.pipeline.as_deref()
    }
}
