//! The server's own routes (not a capability's): collect, apps and keys, sessions and
//! operators, users, admin, operability, docs and console.

pub(crate) mod admin;
pub(crate) mod apps;
pub(crate) mod connect;
pub(crate) mod dead_letters;
pub(crate) mod docs;
pub(crate) mod ingest;
pub(crate) mod observe;
pub(crate) mod session;
pub(crate) mod stream;
pub(crate) mod users;
