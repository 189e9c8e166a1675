//! Meridian's HTTP API types: request and response bodies with their OpenAPI schemas.
//!
//! One module per area of the API map (DESIGN.md §6). Every type derives `Serialize`,
//! `Deserialize` and `utoipa::ToSchema`; the server answers with them and `/openapi.json`
//! is generated from them, so the document and the wire format cannot drift apart.
//! Errors are always [`ErrorBody`]: `{"error": {"code", "message", "details"}}` with a
//! stable snake_case code.

pub mod actions;
pub mod alerts;
pub mod admin;
pub mod apps;
pub mod audit;
pub mod connect;
pub mod counters;
pub mod dead_letters;
pub mod error;
pub mod events;
pub mod history;
pub mod listing;
pub mod operators;
pub mod sources;
pub mod ops;
pub mod users;
pub mod webhooks;

pub use error::{ErrorBody, ErrorDetail};
