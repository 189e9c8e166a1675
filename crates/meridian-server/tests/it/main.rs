//! Handler tests without a socket (`Router::oneshot`), on a real embedded log and state
//! store in a temporary directory: bad input, auth, dead letters, streams, Segment routes,
//! the console's pages, the history module's purge task, the user action system.

mod actions;
mod alerts;
mod bad_input;
mod console;
mod harness;
mod history;
mod listing;
mod modules;
mod openapi;
mod purge;
mod routes;
mod streams;
mod tenancy;
mod webhooks;
