//! Where notifications live in the state store: tables, key layouts and typed reads.
//!
//! | table | key | value |
//! |---|---|---|
//! | `notify_endpoints` | endpoint id | JSON [`Endpoint`] |
//! | `notify_app_endpoints` | app, 0, endpoint id | empty |
//! | `notify_deliveries` | delivery id | JSON [`Delivery`] |
//! | `notify_due` | next attempt ms (u64 BE), delivery id | empty (pending deliveries only) |
//! | `notify_app_deliveries` | app, 0, !created ms (u64 BE, newest first), delivery id | empty |
//! | `notify_attempts` | delivery id, 0, attempt (u32 BE) | JSON [`Attempt`] |

use crate::model::{Attempt, Delivery, DeliveryId, Endpoint, EndpointId};
use crate::{NotifyError, Result};
use meridian_event::AppId;
use meridian_state::{KvStore, WriteBatch};
use serde::de::DeserializeOwned;
use std::ops::Bound;

pub(crate) const ENDPOINTS: &str = "notify_endpoints";
pub(crate) const APP_ENDPOINTS: &str = "notify_app_endpoints";
pub(crate) const DELIVERIES: &str = "notify_deliveries";
pub(crate) const DUE: &str = "notify_due";
pub(crate) const APP_DELIVERIES: &str = "notify_app_deliveries";
pub(crate) const ATTEMPTS: &str = "notify_attempts";

fn decode<T: DeserializeOwned>(table: &'static str, bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| NotifyError::Corrupt { table, message: e.to_string() })
}

fn encode<T: serde::Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("notify values serialise")
}

pub(crate) fn app_prefix(app: &AppId) -> Vec<u8> {
    let mut k = app.as_str().as_bytes().to_vec();
    k.push(0);
    k
}

fn app_endpoint_key(app: &AppId, id: &EndpointId) -> Vec<u8> {
    let mut k = app_prefix(app);
    k.extend_from_slice(id.as_str().as_bytes());
    k
}

pub(crate) fn due_key(due_ms: i64, id: &DeliveryId) -> Vec<u8> {
    let mut k = (due_ms.max(0) as u64).to_be_bytes().to_vec();
    k.extend_from_slice(id.as_str().as_bytes());
    k
}

pub(crate) fn parse_due_key(key: &[u8]) -> Option<(i64, DeliveryId)> {
    let due: [u8; 8] = key.get(..8)?.try_into().ok()?;
    let id = DeliveryId::new(std::str::from_utf8(&key[8..]).ok()?).ok()?;
    Some((u64::from_be_bytes(due) as i64, id))
}

pub(crate) fn app_delivery_key(app: &AppId, created_ms: i64, id: &DeliveryId) -> Vec<u8> {
    let mut k = app_prefix(app);
    k.extend_from_slice(&(!(created_ms.max(0) as u64)).to_be_bytes());
    k.extend_from_slice(id.as_str().as_bytes());
    k
}

fn attempt_key(id: &DeliveryId, attempt: u32) -> Vec<u8> {
    let mut k = id.as_str().as_bytes().to_vec();
    k.push(0);
    k.extend_from_slice(&attempt.to_be_bytes());
    k
}

pub(crate) fn get_endpoint(store: &dyn KvStore, id: &EndpointId) -> Result<Option<Endpoint>> {
    store.get(ENDPOINTS, id.as_str().as_bytes())?.map(|v| decode(ENDPOINTS, &v)).transpose()
}

pub(crate) fn put_endpoint(batch: &mut WriteBatch, endpoint: &Endpoint) {
    batch.put(ENDPOINTS, endpoint.id.as_str().as_bytes().to_vec(), encode(endpoint));
    batch.put(APP_ENDPOINTS, app_endpoint_key(&endpoint.app, &endpoint.id), Vec::new());
}

pub(crate) fn delete_endpoint(batch: &mut WriteBatch, endpoint: &Endpoint) {
    batch.delete(ENDPOINTS, endpoint.id.as_str().as_bytes().to_vec());
    batch.delete(APP_ENDPOINTS, app_endpoint_key(&endpoint.app, &endpoint.id));
}

pub(crate) fn list_endpoints(store: &dyn KvStore, app: &AppId) -> Result<Vec<Endpoint>> {
    let prefix = app_prefix(app);
    let mut out = Vec::new();
    for (key, _) in store.scan_prefix(APP_ENDPOINTS, &prefix, usize::MAX)? {
        let Some(id) = std::str::from_utf8(&key[prefix.len()..]).ok().and_then(|s| EndpointId::new(s).ok()) else { continue };
        if let Some(endpoint) = get_endpoint(store, &id)? {
            out.push(endpoint);
        }
    }
    Ok(out)
}

pub(crate) fn get_delivery(store: &dyn KvStore, id: &DeliveryId) -> Result<Option<Delivery>> {
    store.get(DELIVERIES, id.as_str().as_bytes())?.map(|v| decode(DELIVERIES, &v)).transpose()
}

/// Writes a new delivery with its indexes.
pub(crate) fn put_new_delivery(batch: &mut WriteBatch, delivery: &Delivery) {
    put_delivery(batch, delivery);
    batch.put(APP_DELIVERIES, app_delivery_key(&delivery.app, delivery.created_ms, &delivery.id), Vec::new());
    if let Some(due) = delivery.next_attempt_ms {
        batch.put(DUE, due_key(due, &delivery.id), Vec::new());
    }
}

/// Replaces a delivery, moving its due-index entry from `previous`'s to its own.
pub(crate) fn replace_delivery(batch: &mut WriteBatch, previous: &Delivery, delivery: &Delivery) {
    if let Some(due) = previous.next_attempt_ms {
        batch.delete(DUE, due_key(due, &previous.id));
    }
    if let Some(due) = delivery.next_attempt_ms {
        batch.put(DUE, due_key(due, &delivery.id), Vec::new());
    }
    put_delivery(batch, delivery);
}

/// Deletes a finished delivery (not in the due index), its index entry and its attempts.
pub(crate) fn delete_delivery(batch: &mut WriteBatch, delivery: &Delivery) {
    batch.delete(DELIVERIES, delivery.id.as_str().as_bytes().to_vec());
    batch.delete(APP_DELIVERIES, app_delivery_key(&delivery.app, delivery.created_ms, &delivery.id));
    let mut attempts = delivery.id.as_str().as_bytes().to_vec();
    attempts.push(0);
    batch.delete_prefix(ATTEMPTS, attempts);
}

fn put_delivery(batch: &mut WriteBatch, delivery: &Delivery) {
    batch.put(DELIVERIES, delivery.id.as_str().as_bytes().to_vec(), encode(delivery));
}

pub(crate) fn put_attempt(batch: &mut WriteBatch, id: &DeliveryId, attempt: &Attempt) {
    batch.put(ATTEMPTS, attempt_key(id, attempt.attempt), encode(attempt));
}

pub(crate) fn attempts(store: &dyn KvStore, id: &DeliveryId) -> Result<Vec<Attempt>> {
    let mut prefix = id.as_str().as_bytes().to_vec();
    prefix.push(0);
    store.scan_prefix(ATTEMPTS, &prefix, usize::MAX)?.iter().map(|(_, v)| decode(ATTEMPTS, v)).collect()
}

/// Due-index entries with due time `<= now_ms`, earliest first, at most `limit`; and the
/// due time of the first entry after them, if any (to know how long to sleep).
/// A scan of the due index: due entries (due ms, delivery) and the next due time after them.
pub(crate) type DueScan = (Vec<(i64, DeliveryId)>, Option<i64>);

/// Due entries from `floor_ms` on (earlier keys are skipped without reading them: in an LSM
/// store the head of this queue-like index is mostly tombstones).
pub(crate) fn due(store: &dyn KvStore, floor_ms: i64, now_ms: i64, limit: usize) -> Result<DueScan> {
    let start = (floor_ms.max(0) as u64).to_be_bytes();
    let entries = store.range(DUE, Bound::Included(&start[..]), Bound::Unbounded, limit.saturating_add(1))?;
    let mut out = Vec::with_capacity(entries.len());
    let mut next = None;
    for (key, _) in entries {
        let Some((due_ms, id)) = parse_due_key(&key) else { continue };
        if due_ms <= now_ms && out.len() < limit {
            out.push((due_ms, id));
        } else {
            next = Some(due_ms);
            break;
        }
    }
    Ok((out, next))
}

/// Keys of `app`'s delivery index after `after` (exclusive), at most `limit`.
pub(crate) fn app_delivery_keys(store: &dyn KvStore, app: &AppId, after: Option<&[u8]>, limit: usize) -> Result<Vec<Vec<u8>>> {
    let prefix = app_prefix(app);
    let end = meridian_state::prefix_end(&prefix);
    let start = match after {
        Some(after) => Bound::Excluded(after),
        None => Bound::Included(prefix.as_slice()),
    };
    let end = match &end {
        Some(end) => Bound::Excluded(end.as_slice()),
        None => Bound::Unbounded,
    };
    Ok(store.range(APP_DELIVERIES, start, end, limit)?.into_iter().map(|(k, _)| k).collect())
}

/// The delivery id at the end of an app-delivery index key.
pub(crate) fn delivery_id_of_app_key(app: &AppId, key: &[u8]) -> Option<DeliveryId> {
    let rest = key.get(app_prefix(app).len() + 8..)?;
    DeliveryId::new(std::str::from_utf8(rest).ok()?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_keys_sort_by_time_and_parse_back() {
        let id = DeliveryId::new("msg_abc").unwrap();
        assert!(due_key(5, &id) < due_key(300, &id));
        assert_eq!(parse_due_key(&due_key(300, &id)), Some((300, id)));
    }

    #[test]
    fn app_delivery_keys_put_the_newest_first() {
        let app = AppId::new("shop").unwrap();
        let id = DeliveryId::new("msg_abc").unwrap();
        assert!(app_delivery_key(&app, 2_000, &id) < app_delivery_key(&app, 1_000, &id));
        assert_eq!(delivery_id_of_app_key(&app, &app_delivery_key(&app, 1_000, &id)), Some(id));
    }
}
