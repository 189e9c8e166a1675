//! The alert engine's integration tests: one binary, a module per concern.

mod backtests;
mod changes;
mod commit_size;
mod conditions;
mod forecast;
mod metrics;
mod sharing;
mod snapshots;
mod support;
mod validation;
mod windows;
