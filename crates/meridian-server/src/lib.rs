//! The HTTP edge of Meridian and the composition of its parts.
//!
//! * [`config`]: the root [`Config`], one section per part, loaded by `meridian-config`.
//! * [`module`]: the capability module shape ([`Capability`], [`ModuleBuilder`],
//!   [`Erasure`]); `modules/` holds one adapter per capability, listed once.
//! * [`Server`]: opens log, state, tenancy, collector and runtime, opens every module and
//!   wires its processors, routes (with OpenAPI operations) and tasks.
//! * `routes/`: the server's own routes; `openapi`: the generated document's common parts.
//! * `console/`: the web console: server-rendered pages (minijinja templates and message
//!   catalogs embedded from `assets/console`), the server's own pages and the capability
//!   modules' [`ConsoleSection`]s.

mod auth;
pub mod config;
mod console;
mod error;
mod extract;
mod layout;
pub mod module;
mod modules;
mod openapi;
pub mod ratelimit;
mod routes;
mod server;
mod session;
mod state;

pub use config::{Config, ConfigError};
pub use error::ApiError;
pub use module::{Capability, ConsoleSection, Erasure, Module, ModuleBuilder, ModuleContext, ModuleError, NavAccess, NavEntry, NavGroup, Service, Task};
pub use openapi::operations;
pub use server::{serve, Parts, Server};
pub use state::EVENTS_TOPIC;
