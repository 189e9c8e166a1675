//! Errors of the demo generator, writers and sender.

use std::path::PathBuf;

/// Why a demo operation failed.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// The configuration cannot produce a world.
    #[error("invalid demo config: {0}")]
    InvalidConfig(String),
    /// A file could not be created or written.
    #[error("cannot write {path}: {source}")]
    Io {
        /// File or directory at fault.
        path: PathBuf,
        /// Underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A CSV dimension table could not be written.
    #[error("cannot write csv {path}: {source}")]
    Csv {
        /// File at fault.
        path: PathBuf,
        /// Underlying error.
        #[source]
        source: csv::Error,
    },
    /// A value could not be serialised to JSON.
    #[error("cannot encode json: {0}")]
    Json(#[from] serde_json::Error),
    /// The HTTP client could not be built or a request failed for good.
    #[error("http request failed: {0}")]
    Http(#[from] reqwest::Error),
    /// The server answered a status that retrying cannot fix.
    #[error("server answered {status}: {body}")]
    Status {
        /// HTTP status code.
        status: u16,
        /// Start of the response body.
        body: String,
    },
    /// A batch still failed after every retry.
    #[error("batch failed after {attempts} attempts: {last}")]
    RetriesExhausted {
        /// Attempts made.
        attempts: u32,
        /// The last failure.
        last: String,
    },
}

impl DemoError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        DemoError::Io { path: path.into(), source }
    }
}

/// Result type of this crate.
pub type Result<T, E = DemoError> = std::result::Result<T, E>;
