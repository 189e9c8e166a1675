//! End-to-end tests that start the real `meridian` binary: crash safety under SIGKILL,
//! a real Segment client library, the long-lived client connection, and the command line.

mod alerts;
mod cli;
mod connect;
mod console;
mod crash;
mod process;
mod schemathesis;
mod segment;
mod sources;
