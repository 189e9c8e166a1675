//! The HTTP edge of Meridian and the wiring of its parts.

mod auth;
mod config;
mod console;
mod error;
mod history;
mod ingest;
mod manage;
mod observe;
pub mod ratelimit;
mod server;
mod stream;

pub use config::{HistorySettings, HotBackend, ServerConfig, StateBackend};
pub use history::PassThroughCatalog;
pub use error::ApiError;
pub use server::{serve, Server};
