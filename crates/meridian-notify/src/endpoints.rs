//! Webhook endpoints: create (URL checked against the network policy), list, get, update,
//! delete and secret rotation.

use crate::client::{resolve_checked, ConnectFailure};
use crate::model::{check_event_type, Endpoint, EndpointId, EndpointSecret, EndpointUpdate, NewEndpoint};
use crate::notifier::{blocking, now_ms};
use crate::signing::generate_secret;
use crate::{store, Notifier, NotifyError, Result};
use hyper::Uri;
use meridian_event::AppId;
use meridian_state::WriteBatch;
use std::time::Duration;

/// The endpoints of `app` in the notify module's store `kv` (blocking), for other modules
/// that name endpoints (an alert rule's channels) without holding the [`Notifier`].
pub fn endpoints_in_store(kv: &dyn meridian_state::KvStore, app: &AppId) -> Result<Vec<Endpoint>> {
    store::list_endpoints(kv, app)
}

/// The delivery of request `request_id` to `endpoint` with its attempts, from the notify
/// module's store `kv` (blocking); `None` while the request has not reached the notify
/// processor yet. For modules that show what became of the notifications they asked for.
pub fn delivery_in_store(kv: &dyn meridian_state::KvStore, request_id: &str, endpoint: &EndpointId) -> Result<Option<crate::DeliveryDetail>> {
    let id = crate::DeliveryId::derive(request_id, endpoint);
    let Some(delivery) = store::get_delivery(kv, &id)? else { return Ok(None) };
    let attempts = store::attempts(kv, &id)?;
    Ok(Some(crate::DeliveryDetail { delivery, attempts }))
}

/// Longest accepted endpoint URL.
const MAX_URL_LEN: usize = 2048;
/// Longest accepted description.
const MAX_DESCRIPTION_LEN: usize = 1024;
/// Most event types per endpoint.
const MAX_EVENT_TYPES: usize = 100;

impl Notifier {
    /// Checks a URL's form, resolves its host and checks every address against the network
    /// policy (the delivery connector checks again at every connection).
    pub async fn check_url(&self, url: &str) -> Result<()> {
        let invalid = |reason: &str| NotifyError::InvalidUrl { url: url.to_owned(), reason: reason.to_owned() };
        if url.len() > MAX_URL_LEN {
            return Err(invalid(&format!("longer than {MAX_URL_LEN} bytes")));
        }
        let uri: Uri = url.parse().map_err(|e| invalid(&format!("{e}")))?;
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(invalid("use an http:// or https:// url")),
        };
        let authority = uri.authority().ok_or_else(|| invalid("it has no host"))?;
        if authority.as_str().contains('@') {
            return Err(invalid("credentials in the url are not supported; the signature authenticates deliveries"));
        }
        let host = authority.host();
        if host.is_empty() {
            return Err(invalid("it has no host"));
        }
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        match resolve_checked(host, port, &self.config.network).await {
            Ok(_) => Ok(()),
            Err(ConnectFailure::Ssrf(refusal)) => Err(NotifyError::SsrfRefused { url: url.to_owned(), refusal }),
            Err(ConnectFailure::Dns { message, .. }) => Err(NotifyError::UnresolvableHost { url: url.to_owned(), message }),
            Err(other) => Err(invalid(&other.to_string())),
        }
    }

    /// Creates an endpoint with a fresh secret, after checking its URL.
    pub async fn create_endpoint(&self, new: NewEndpoint) -> Result<Endpoint> {
        self.check_url(&new.url).await?;
        check_fields(&new.description, &new.event_types)?;
        let now = now_ms();
        let endpoint = Endpoint {
            id: EndpointId::generate(),
            app: new.app,
            url: new.url,
            description: new.description,
            event_types: new.event_types,
            disabled: new.disabled,
            secrets: vec![EndpointSecret { secret: generate_secret(), created_ms: now, expires_ms: None }],
            created_ms: now,
        };
        let store = self.store.clone();
        let written = endpoint.clone();
        blocking(move || {
            let mut batch = WriteBatch::new();
            store::put_endpoint(&mut batch, &written);
            store.commit(batch)?;
            Ok(())
        })
        .await?;
        tracing::info!(endpoint = %endpoint.id, app = %endpoint.app, url = %endpoint.url, "webhook endpoint created");
        Ok(endpoint)
    }

    /// `app`'s endpoints, by id.
    pub async fn list_endpoints(&self, app: &AppId) -> Result<Vec<Endpoint>> {
        let store = self.store.clone();
        let app = app.clone();
        blocking(move || store::list_endpoints(&*store, &app)).await
    }

    /// One endpoint.
    pub async fn endpoint(&self, id: &EndpointId) -> Result<Endpoint> {
        let store = self.store.clone();
        let id = id.clone();
        blocking(move || store::get_endpoint(&*store, &id)?.ok_or(NotifyError::EndpointNotFound(id))).await
    }

    /// Changes an endpoint; a new URL is checked like at creation. Pending deliveries go
    /// to the new URL from their next attempt.
    pub async fn update_endpoint(&self, id: &EndpointId, update: EndpointUpdate) -> Result<Endpoint> {
        if let Some(url) = &update.url {
            self.check_url(url).await?;
        }
        check_fields(update.description.as_deref().unwrap_or_default(), update.event_types.as_deref().unwrap_or_default())?;
        self.modify_endpoint(id, move |endpoint| {
            if let Some(url) = update.url {
                endpoint.url = url;
            }
            if let Some(description) = update.description {
                endpoint.description = description;
            }
            if let Some(event_types) = update.event_types {
                endpoint.event_types = event_types;
            }
            if let Some(disabled) = update.disabled {
                endpoint.disabled = disabled;
            }
        })
        .await
    }

    /// Adds a new secret; the previous ones keep signing until `now + grace` (default
    /// [`crate::NotifyConfig::rotation_grace_ms`]), so receivers can switch over. Secrets
    /// already expired are dropped.
    pub async fn rotate_secret(&self, id: &EndpointId, grace: Option<Duration>) -> Result<Endpoint> {
        let grace_ms = grace.map(|g| g.as_millis() as i64).unwrap_or(self.config.rotation_grace_ms as i64);
        let endpoint = self
            .modify_endpoint(id, move |endpoint| {
                let now = now_ms();
                let expires = now + grace_ms;
                endpoint.secrets.retain(|s| s.is_active(now));
                for secret in &mut endpoint.secrets {
                    secret.expires_ms = Some(secret.expires_ms.map_or(expires, |e| e.min(expires)));
                }
                endpoint.secrets.push(EndpointSecret { secret: generate_secret(), created_ms: now, expires_ms: None });
            })
            .await?;
        tracing::info!(endpoint = %endpoint.id, grace_ms, "webhook endpoint secret rotated");
        Ok(endpoint)
    }

    /// Deletes an endpoint. Its pending deliveries become dead at their next attempt
    /// (`endpoint_deleted`); its delivery log stays.
    pub async fn delete_endpoint(&self, id: &EndpointId) -> Result<()> {
        let store = self.store.clone();
        let lock = self.endpoint_lock.clone();
        let deleted = id.clone();
        blocking(move || {
            let _guard = lock.lock();
            let endpoint = store::get_endpoint(&*store, &deleted)?.ok_or_else(|| NotifyError::EndpointNotFound(deleted.clone()))?;
            let mut batch = WriteBatch::new();
            store::delete_endpoint(&mut batch, &endpoint);
            store.commit(batch)?;
            Ok(())
        })
        .await?;
        tracing::info!(endpoint = %id, "webhook endpoint deleted");
        Ok(())
    }

    async fn modify_endpoint(&self, id: &EndpointId, change: impl FnOnce(&mut Endpoint) + Send + 'static) -> Result<Endpoint> {
        let store = self.store.clone();
        let lock = self.endpoint_lock.clone();
        let id = id.clone();
        blocking(move || {
            let _guard = lock.lock();
            let mut endpoint = store::get_endpoint(&*store, &id)?.ok_or_else(|| NotifyError::EndpointNotFound(id.clone()))?;
            change(&mut endpoint);
            let mut batch = WriteBatch::new();
            store::put_endpoint(&mut batch, &endpoint);
            store.commit(batch)?;
            Ok(endpoint)
        })
        .await
    }
}

fn check_fields(description: &str, event_types: &[String]) -> Result<()> {
    if description.len() > MAX_DESCRIPTION_LEN {
        return Err(NotifyError::InvalidEndpoint(format!("description is longer than {MAX_DESCRIPTION_LEN} bytes")));
    }
    if event_types.len() > MAX_EVENT_TYPES {
        return Err(NotifyError::InvalidEndpoint(format!("{} event types; at most {MAX_EVENT_TYPES}", event_types.len())));
    }
    for event_type in event_types {
        check_event_type(event_type).map_err(NotifyError::InvalidEndpoint)?;
    }
    Ok(())
}
