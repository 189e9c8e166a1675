//! Server configuration: built by the CLI from file, environment and flags.

use crate::ratelimit::RateLimitConfig;
use meridian_collector::CollectorConfig;
use meridian_history::catalog::CatalogLookup;
use meridian_history::service::HistoryConfig;
use std::sync::Arc;
use meridian_log::embedded::EmbeddedLogConfig;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Everything the server needs to start.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Data directory (log, state).
    pub data_dir: PathBuf,
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Master key; required unless `dev`.
    pub master_key: Option<String>,
    /// Pipeline config file (TOML); the default pipeline when absent.
    pub pipeline_file: Option<PathBuf>,
    /// How often the pipeline file is checked for changes.
    pub pipeline_poll: Duration,
    /// Largest request body on the wire, bytes.
    pub max_body_bytes: usize,
    /// Largest request body after gzip decompression, bytes.
    pub max_decompressed_bytes: usize,
    /// Collector limits.
    pub collector: CollectorConfig,
    /// Log settings.
    pub log: EmbeddedLogConfig,
    /// How often retention runs.
    pub retention_interval: Duration,
    /// Browsing history; `None` disables it.
    pub history: Option<HistorySettings>,
    /// Rate limits of the query routes.
    pub rate_limits: RateLimitConfig,
    /// Where processor state (and apps, keys, history's cold tier) is kept.
    pub state_backend: StateBackend,
}

/// The embedded state store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StateBackend {
    /// redb, a B-tree in one file (`state.redb`).
    Redb,
    /// fjall, an LSM tree in a folder (`state-fjall/`): the default. Smaller on disk
    /// (history's cold tier: 6.4 bytes per entry against redb's 9.7, docs/benchmarks.md)
    /// and 2–5× faster small durable commits.
    #[default]
    Fjall,
}

impl StateBackend {
    /// Parses `redb` or `fjall`.
    pub fn parse(text: &str) -> Option<StateBackend> {
        match text {
            "redb" => Some(StateBackend::Redb),
            "fjall" => Some(StateBackend::Fjall),
            _ => None,
        }
    }

    /// Where this backend keeps its data inside a data directory.
    pub fn path(self, data_dir: &std::path::Path) -> std::path::PathBuf {
        match self {
            StateBackend::Redb => data_dir.join("state.redb"),
            StateBackend::Fjall => data_dir.join("state-fjall"),
        }
    }

    /// The backend whose data is in `data_dir`, if any.
    pub fn detect(data_dir: &std::path::Path) -> Option<StateBackend> {
        [StateBackend::Redb, StateBackend::Fjall].into_iter().find(|b| b.path(data_dir).exists())
    }

    /// The backend for `data_dir`: the one its data was created with, else the default.
    pub fn for_data_dir(data_dir: &std::path::Path) -> StateBackend {
        StateBackend::detect(data_dir).unwrap_or_default()
    }

    /// Opens the store in `data_dir`.
    pub fn open(self, data_dir: &std::path::Path) -> meridian_state::Result<Arc<dyn meridian_state::KvStore>> {
        Ok(match self {
            StateBackend::Redb => Arc::new(meridian_state::RedbStore::open(self.path(data_dir))?),
            StateBackend::Fjall => Arc::new(meridian_state::FjallStore::open(self.path(data_dir))?),
        })
    }
}

/// Where the history hot tier lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HotBackend {
    /// In this process, within a memory budget (bytes).
    Embedded {
        /// Most bytes the hot tier may hold before evicting the least recently active owners.
        budget_bytes: usize,
    },
    /// Redis sorted sets.
    Redis {
        /// `redis://host:port/db`.
        url: String,
        /// Key prefix.
        prefix: String,
    },
}

/// Browsing-history settings.
#[derive(Debug, Clone)]
pub struct HistorySettings {
    /// N, TTLs, catalog batch size, count cache.
    pub config: HistoryConfig,
    /// Hot tier backend.
    pub hot: HotBackend,
    /// SKU names, images and SPUs; without one, SKUs are listed as their own SPU.
    pub catalog: Option<Arc<dyn CatalogLookup>>,
}

impl Default for HistorySettings {
    fn default() -> Self {
        HistorySettings { config: HistoryConfig::default(), hot: HotBackend::Embedded { budget_bytes: 1 << 30 }, catalog: None }
    }
}

impl ServerConfig {
    /// Defaults for a data directory.
    pub fn new(data_dir: impl Into<PathBuf>) -> ServerConfig {
        ServerConfig {
            data_dir: data_dir.into(),
            listen: SocketAddr::from(([127, 0, 0, 1], 7070)),
            master_key: None,
            pipeline_file: None,
            pipeline_poll: Duration::from_secs(1),
            max_body_bytes: 4 << 20,
            max_decompressed_bytes: 16 << 20,
            collector: CollectorConfig::default(),
            log: EmbeddedLogConfig::default(),
            retention_interval: Duration::from_secs(60),
            history: Some(HistorySettings::default()),
            rate_limits: RateLimitConfig::default(),
            state_backend: StateBackend::default(),
        }
    }
}
