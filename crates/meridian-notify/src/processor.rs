//! The notification processor: requests of the notifications topic → pending deliveries,
//! written into the runtime's batch (committed with its positions). No network I/O.

use crate::model::{Delivery, DeliveryId, DeliveryState, Endpoint, NotificationRequest};
use crate::notifier::DeliveryWaker;
use crate::{store, NotifyConfig, Result};
use meridian_event::AppId;
use meridian_log::{Record, TopicName};
use meridian_runtime::{ProcessContext, Processor, RuntimeError};
use meridian_state::WriteBatch;
use std::collections::HashMap;

/// Turns notification requests into one pending delivery per enabled endpoint of the
/// request's app that subscribes to its event type and existed when it was created.
///
/// Exactly once in effect: a delivery's id is derived from (request id, endpoint id) and
/// its content only from the request and the endpoint id, so a record processed again
/// (after a crash before the commit, a `seek`, a rebuild) finds its deliveries already
/// stored and writes nothing; before the commit an identical re-write is harmless.
///
/// `clear_state` (a rebuild) deliberately clears nothing: deliveries are outside effects
/// already made or promised, and the delivery log is their history. A rebuild replays the
/// requests, finds every delivery already there and sends nothing again; requests whose
/// deliveries were never written (an endpoint created since is skipped by its creation
/// time) get theirs.
#[derive(Debug)]
pub struct NotificationProcessor {
    topic: TopicName,
    waker: Option<DeliveryWaker>,
    undecodable: u64,
}

impl NotificationProcessor {
    /// The processor's name (the key of its log positions).
    pub const NAME: &'static str = "notify";

    /// A processor over `config.topic`.
    pub fn new(config: &NotifyConfig) -> Result<NotificationProcessor> {
        Ok(NotificationProcessor { topic: config.topic_name()?, waker: None, undecodable: 0 })
    }

    /// Wakes `waker`'s notifier after writing deliveries, so they go out within
    /// milliseconds of the commit rather than at the next poll.
    pub fn with_waker(mut self, waker: DeliveryWaker) -> NotificationProcessor {
        self.waker = Some(waker);
        self
    }

    /// Records skipped because they were not notification requests.
    pub fn undecodable(&self) -> u64 {
        self.undecodable
    }
}

fn failed(error: impl std::fmt::Display) -> RuntimeError {
    RuntimeError::Processor { processor: NotificationProcessor::NAME.into(), message: error.to_string() }
}

impl Processor for NotificationProcessor {
    fn name(&self) -> &str {
        NotificationProcessor::NAME
    }

    fn topics(&self) -> Vec<TopicName> {
        vec![self.topic.clone()]
    }

    fn process(&mut self, ctx: &mut ProcessContext<'_>, _topic: &TopicName, records: &[Record]) -> meridian_runtime::Result<()> {
        let mut endpoints_of: HashMap<AppId, Vec<Endpoint>> = HashMap::new();
        let mut n_written = 0usize;
        let mut earliest_due = i64::MAX;
        let mut one_written = None;
        for record in records {
            let request = match NotificationRequest::from_record_value(&record.value) {
                Ok(request) => request,
                Err(e) => {
                    // A poison record must not stop every later notification.
                    self.undecodable += 1;
                    tracing::warn!(partition = record.partition, offset = record.offset, error = %e, "skipping a record that is not a notification request");
                    metrics::counter!("meridian_webhook_undecodable_requests_total").increment(1);
                    continue;
                }
            };
            if !endpoints_of.contains_key(&request.app) {
                let endpoints = store::list_endpoints(ctx.store(), &request.app).map_err(failed)?;
                endpoints_of.insert(request.app.clone(), endpoints);
            }
            let body = request.webhook_body();
            for endpoint in &endpoints_of[&request.app] {
                let wanted = match &request.endpoint {
                    Some(only) => only == &endpoint.id,
                    None => endpoint.matches(&request.event_type),
                };
                if endpoint.disabled || !wanted || request.created_ms < endpoint.created_ms {
                    continue;
                }
                let id = DeliveryId::derive(&request.id, &endpoint.id);
                if ctx.store().get(store::DELIVERIES, id.as_str().as_bytes())?.is_some() {
                    continue;
                }
                let delivery = Delivery {
                    id,
                    app: request.app.clone(),
                    endpoint_id: endpoint.id.clone(),
                    request_id: request.id.clone(),
                    event_type: request.event_type.clone(),
                    body: body.clone(),
                    state: DeliveryState::Pending,
                    attempts: 0,
                    failed_attempts: 0,
                    created_ms: request.created_ms,
                    next_attempt_ms: Some(request.created_ms.max(0)),
                    last_attempt_ms: None,
                    last_result: None,
                    delivered_ms: None,
                };
                earliest_due = earliest_due.min(request.created_ms.max(0));
                one_written.get_or_insert_with(|| delivery.id.clone());
                store::put_new_delivery(ctx.batch(), &delivery);
                n_written += 1;
            }
        }
        if let Some(written) = one_written {
            metrics::counter!("meridian_webhook_deliveries_created_total").increment(n_written as u64);
            if let Some(waker) = &self.waker {
                waker.wake_from(earliest_due, written);
            }
        }
        Ok(())
    }

    fn clear_state(&mut self, _batch: &mut WriteBatch) {
        // Nothing: see the type's docs (deliveries survive rebuilds so nothing is resent).
    }
}
