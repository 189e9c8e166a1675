//! Server configuration: built by the CLI from file, environment and flags.

use meridian_collector::CollectorConfig;
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
        }
    }
}
