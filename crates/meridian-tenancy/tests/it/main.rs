//! Integration tests of meridian-tenancy, each against `MemoryStore` and `FjallStore`.

#[macro_use]
mod support;

mod apps;
mod audit;
mod compat;
mod keys;
mod permissions;
mod reopen;
mod sessions;
