//! Processors that ship with the runtime.

pub mod counters;
