//! Errors of loading a pipeline config and of decoding routed payloads.

use std::path::PathBuf;

/// Result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a pipeline config could not be loaded. Every variant names where the problem is
/// (file, line, section and field) so a bad reload can be refused with a useful message.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The config file could not be read.
    #[error("cannot read pipeline config {path}: {source}; check the path and its permissions")]
    ReadConfig {
        /// File that was read.
        path: PathBuf,
        /// Underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The config is not valid TOML or does not match the schema.
    #[error("{location}: {message}")]
    Syntax {
        /// File and line (and column) of the problem.
        location: String,
        /// What is wrong, from the TOML parser.
        message: String,
    },
    /// The config parses but a value in it is not acceptable.
    #[error("{location}: {message}")]
    Invalid {
        /// Section, entry and field (and line when known), e.g. `routes[2].topic (line 40)`.
        location: String,
        /// What is wrong and how to fix it.
        message: String,
    },
    /// A dimension table file could not be read.
    #[error("table {table:?}: cannot read {path}: {source}; check the [[tables]] path (relative paths are resolved against the config file's directory)")]
    TableIo {
        /// Table name.
        table: String,
        /// Resolved file path.
        path: PathBuf,
        /// Underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A dimension table file has bad content.
    #[error("table {table:?}: {path} line {line}: {message}")]
    TableData {
        /// Table name.
        table: String,
        /// Resolved file path.
        path: PathBuf,
        /// 1-based line number.
        line: u64,
        /// What is wrong.
        message: String,
    },
}

/// Why a routed payload could not be decoded by [`crate::decode_payload`].
#[derive(Debug, thiserror::Error)]
pub enum PayloadError {
    /// Empty payload.
    #[error("empty payload; a routed event is a JSON object or a binary record")]
    Empty,
    /// A JSON payload that is not a valid event.
    #[error("invalid JSON event payload: {0}")]
    Json(#[from] serde_json::Error),
    /// A binary payload that is not a valid event.
    #[error("invalid binary event payload: {0}")]
    Binary(#[from] meridian_event::DecodeError),
}
