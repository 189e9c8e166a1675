//! The capability modules the server is composed of: one adapter per capability, one line
//! each in [`CAPABILITIES`].

use crate::module::Capability;

pub(crate) mod actions;
pub(crate) mod alerts;
pub(crate) mod counters;
pub(crate) mod history;
pub(crate) mod listing;
pub(crate) mod notify;
pub(crate) mod sources;

/// Every capability, in the order they are opened.
pub(crate) static CAPABILITIES: &[&dyn Capability] = &[&counters::Counters, &history::History, &notify::Notify, &actions::Actions, &alerts::Alerts, &listing::Listing, &sources::Sources];
