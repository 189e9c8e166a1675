//! Notifications: processors' notification requests turned into signed webhook deliveries,
//! with retries, a delivery log and an SSRF guard (DESIGN.md §4.9).
//!
//! # How a notification travels
//!
//! 1. A processor (a trigger, an alert rule) emits a [`NotificationRequest`] as a record of
//!    the notifications topic ([`NotificationRequest::to_record_value`]), through the
//!    runtime's outbox, so the request is in the log exactly once.
//! 2. [`NotificationProcessor`] (a `meridian_runtime::Processor`) turns each request into one
//!    pending [`Delivery`] per enabled, matching [`Endpoint`] of the request's app. It writes
//!    them into the runtime's batch, so they commit with its log positions; a delivery's id
//!    is a hash of (request id, endpoint id), so re-processing a record after a crash or a
//!    replay finds the delivery already there and writes nothing. It does no network I/O.
//! 3. [`Notifier`] (tasks on a tokio runtime) finds due deliveries through an index by
//!    next-attempt time, signs them per [Standard Webhooks](https://www.standardwebhooks.com)
//!    ([`signing`]), posts them with a timeout and bounded concurrency, and records every
//!    attempt in the delivery log. 2xx is success; anything else (status, timeout, connection
//!    error, SSRF refusal) is a failed attempt retried with exponential backoff and full
//!    jitter, until the delivery is `dead` after [`NotifyConfig::max_attempts`]. Each state
//!    change is a durable store commit (several attempts' results share one commit), so a
//!    restart resumes pending deliveries: delivery is at-least-once with a stable
//!    `webhook-id`, which receivers use to de-duplicate.
//!
//! # SSRF guard
//!
//! [`NetworkPolicy`] refuses loopback, private, link-local (cloud metadata included), CGNAT,
//! unspecified, multicast, broadcast, documentation and reserved addresses, also in their
//! IPv4-mapped / -compatible / NAT64 / 6to4 IPv6 forms, unless switched on or allow-listed.
//! It is checked when an endpoint is created or its URL updated, on every address the
//! delivery connector is about to connect to and on the peer address actually connected
//! (IP-literal URLs included), and again on every redirect hop (at most
//! [`NotifyConfig::max_redirects`]).

mod client;
mod config;
mod endpoints;
mod model;
mod notifier;
mod processor;
pub mod signing;
mod ssrf;
mod store;

pub use client::{SendOutcome, WebhookClient};
pub use config::NotifyConfig;
pub use endpoints::{delivery_in_store, endpoints_in_store};
pub use model::{
    Attempt, Delivery, DeliveryDetail, DeliveryFilter, DeliveryId, DeliveryPage, DeliveryState, Endpoint, EndpointId, EndpointSecret,
    EndpointUpdate, NewEndpoint, NotificationRequest,
};
pub use notifier::{DeliveryWaker, Notifier, NotifierStats, PurgeReport};
pub use processor::NotificationProcessor;
pub use ssrf::{canonical, classify, AddressClass, NetworkPolicy, SsrfRefusal};

/// Result type of this crate.
pub type Result<T, E = NotifyError> = std::result::Result<T, E>;

/// Errors of the notification service.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// The state store failed.
    #[error(transparent)]
    State(#[from] meridian_state::StateError),
    /// An endpoint URL is not acceptable.
    #[error("invalid webhook url {url:?}: {reason}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An endpoint URL points at an address the network policy refuses.
    #[error("webhook url {url:?} is refused: {refusal}")]
    SsrfRefused {
        /// The URL as given.
        url: String,
        /// The refused address and why.
        refusal: SsrfRefusal,
    },
    /// An endpoint's host name does not resolve.
    #[error("cannot resolve the host of webhook url {url:?}: {message}; check the name or use an address")]
    UnresolvableHost {
        /// The URL as given.
        url: String,
        /// The resolver's error.
        message: String,
    },
    /// No endpoint has this id.
    #[error("no webhook endpoint {0}")]
    EndpointNotFound(EndpointId),
    /// No delivery has this id.
    #[error("no webhook delivery {0}")]
    DeliveryNotFound(DeliveryId),
    /// The delivery is still pending, so there is nothing to redeliver.
    #[error("webhook delivery {0} is still pending; it will be attempted again without a redelivery")]
    DeliveryPending(DeliveryId),
    /// An endpoint's fields are not acceptable (other than its URL).
    #[error("invalid webhook endpoint: {0}")]
    InvalidEndpoint(String),
    /// A record of the notifications topic is not a notification request.
    #[error("invalid notification request: {0}")]
    InvalidRequest(String),
    /// A configuration value is not acceptable.
    #[error("invalid notify config `{field}`: {reason}")]
    InvalidConfig {
        /// The field, as named in the config file.
        field: &'static str,
        /// What is wrong and what to use.
        reason: String,
    },
    /// The HTTPS client could not be built (bad extra root certificate, …).
    #[error("cannot set up the webhook https client: {0}")]
    Tls(String),
    /// A stored value could not be read back.
    #[error("corrupt notify state in table {table}: {message}")]
    Corrupt {
        /// Table.
        table: &'static str,
        /// What failed.
        message: String,
    },
    /// The notifier was shut down, or a blocking task of it panicked.
    #[error("the notifier stopped: {0}")]
    Stopped(String),
}
