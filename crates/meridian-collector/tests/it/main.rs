//! Collector tests on the real embedded log, wrapped in a gate that stalls or fails
//! appends on demand and records which threads read the log and the store.

mod gated;
mod replay;
mod retries;
