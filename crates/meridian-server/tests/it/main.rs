//! Handler tests without a socket (`Router::oneshot`), on a real embedded log and state
//! store in a temporary directory: bad input, auth, dead letters, streams, Segment routes,
//! the console's pages.

mod bad_input;
mod console;
mod harness;
mod history;
mod modules;
mod openapi;
mod routes;
mod tenancy;
mod webhooks;
