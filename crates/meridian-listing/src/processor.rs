//! The listing's processors.
//!
//! * [`ProductsProcessor`] applies the product-change topic (bulk loads, price, stock,
//!   shelf, new and removed SKUs, quality scores) to the durable catalog in its round's
//!   batch — committed with its positions, so each change takes effect exactly once — and,
//!   once the round has committed, to the live index ([`ListingService::apply_committed`]).
//!   A crash between the commit and that call loses nothing: the index is rebuilt from the
//!   catalog at start.
//! * [`BehaviourProcessor`] counts views, carts and orders of SKUs from the `events` topic
//!   (the quality job's signals), per app and SKU, in the same store.

use crate::catalog::{CatalogSku, ProductMessage};
use crate::error::ListingError;
use crate::quality::{Behaviour, Signals};
use crate::service::{AppRound, LineError, ListingService};
use crate::store;
use meridian_event::LogEntry;
use meridian_log::{Record, TopicName};
use meridian_runtime::{ProcessContext, Processor, Result};
use meridian_state::WriteBatch;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// Name of the product-change processor (and the key of its positions).
pub const PRODUCTS_PROCESSOR: &str = "listing";
/// Name of the behaviour-counting processor.
pub const BEHAVIOUR_PROCESSOR: &str = "listing-behaviour";

/// Per job: applied, refused, first errors.
type Tally = (u64, u64, Vec<LineError>);

/// Applies the product-change topic to the catalog and the live index.
#[derive(Debug)]
pub struct ProductsProcessor {
    topic: TopicName,
    service: Arc<ListingService>,
    /// This round's versions of the SKUs it changed (the store does not hold them yet).
    overlay: HashMap<(String, u64), Option<CatalogSku>>,
    /// This round's new category parents, per app.
    parents: HashMap<(String, u32), Option<u32>>,
    rounds: BTreeMap<String, AppRound>,
    tallies: HashMap<String, Tally>,
}

impl ProductsProcessor {
    /// Applies `topic` through `service`.
    pub fn new(topic: TopicName, service: Arc<ListingService>) -> ProductsProcessor {
        ProductsProcessor { topic, service, overlay: HashMap::new(), parents: HashMap::new(), rounds: BTreeMap::new(), tallies: HashMap::new() }
    }

    /// Refuses an item whose path contradicts the category tree (a category under another
    /// parent), as the index would.
    fn check_path(&self, app: &str, sku: &CatalogSku) -> std::result::Result<(), ListingError> {
        let listing = self.service.app(app);
        for (i, &c) in sku.item.category_path.iter().enumerate() {
            let parent = if i == 0 { None } else { Some(sku.item.category_path[i - 1]) };
            let known = match self.parents.get(&(app.to_owned(), c)) {
                Some(p) => Some(*p),
                None => listing.as_ref().and_then(|l| l.engine.category_path(c).ok()).map(|path| path.len().checked_sub(2).map(|j| path[j])),
            };
            if let Some(known) = known {
                if known != parent {
                    return Err(ListingError::InvalidItem { sku: sku.item.sku.to_string(), reason: format!("category {c} is under {known:?}, not {parent:?}") });
                }
            }
        }
        Ok(())
    }

    fn apply(&mut self, ctx: &mut ProcessContext<'_>, message: &ProductMessage) -> Result<std::result::Result<(), ListingError>> {
        let Some(sku) = message.change.sku() else {
            return Ok(Err(ListingError::InvalidItem { sku: "?".into(), reason: "the change names no SKU".into() }));
        };
        let app = message.app.as_str();
        let key = (app.to_owned(), sku);
        let current = match self.overlay.get(&key) {
            Some(v) => v.clone(),
            None => store::get_sku(ctx.store(), app, sku)?,
        };
        let (next, change) = match message.change.apply(current.as_ref()) {
            Ok(applied) => applied,
            Err(e) => return Ok(Err(e)),
        };
        if let Some(next) = &next {
            if let Err(e) = self.check_path(app, next) {
                return Ok(Err(e));
            }
            for (i, &c) in next.item.category_path.iter().enumerate() {
                let parent = if i == 0 { None } else { Some(next.item.category_path[i - 1]) };
                self.parents.entry((app.to_owned(), c)).or_insert(parent);
            }
        }
        store::put_sku(ctx.batch(), app, sku, next.as_ref());
        let round = self.rounds.entry(app.to_owned()).or_default();
        round.changes.push(change);
        round.display.push((sku, next.as_ref().map(CatalogSku::info)));
        self.overlay.insert(key, next);
        Ok(Ok(()))
    }

    fn forget_round(&mut self) {
        self.overlay.clear();
        self.parents.clear();
        self.rounds.clear();
        self.tallies.clear();
    }
}

impl Processor for ProductsProcessor {
    fn name(&self) -> &str {
        PRODUCTS_PROCESSOR
    }

    fn topics(&self) -> Vec<TopicName> {
        vec![self.topic.clone()]
    }

    fn process(&mut self, ctx: &mut ProcessContext<'_>, _topic: &TopicName, records: &[Record]) -> Result<()> {
        for record in records {
            let message: ProductMessage = match serde_json::from_slice(&record.value) {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(partition = record.partition, offset = record.offset, error = %e, "listing: skipping a product change that does not decode");
                    metrics::counter!("meridian_listing_changes_total", "outcome" => "undecodable").increment(1);
                    continue;
                }
            };
            let outcome = self.apply(ctx, &message)?;
            let label = if outcome.is_ok() { "applied" } else { "refused" };
            metrics::counter!("meridian_listing_changes_total", "outcome" => label).increment(1);
            if let Some(job) = &message.job {
                let tally = self.tallies.entry(job.clone()).or_default();
                match outcome {
                    Ok(()) => tally.0 += 1,
                    Err(e) => {
                        tally.1 += 1;
                        if tally.2.len() < 100 {
                            tally.2.push(LineError { line: 0, code: e.code().to_owned(), message: e.to_string() });
                        }
                    }
                }
            }
        }
        Ok(())
    }

    fn after_commit(&mut self) -> Result<()> {
        let rounds = std::mem::take(&mut self.rounds);
        self.service.apply_committed(rounds);
        let tallies = std::mem::take(&mut self.tallies).into_iter().map(|(job, (a, r, e))| (job, a, r, e)).collect();
        self.service.tally_jobs(tallies);
        self.forget_round();
        Ok(())
    }

    fn reset_cache(&mut self) {
        self.forget_round();
    }

    fn clear_state(&mut self, _batch: &mut WriteBatch) {
        // The catalog is the product's source of truth, not state derived from the topic
        // alone (a bulk load's records may have left the log by retention): a rebuild
        // replays the changes onto it. Upserts carry whole SKUs and the other changes set
        // values, so a replay in log order ends where the catalog already is.
        self.forget_round();
    }
}

/// Counts views, carts and orders of SKUs from the `events` topic.
#[derive(Debug)]
pub struct BehaviourProcessor {
    topic: TopicName,
    service: Arc<ListingService>,
    cache: HashMap<Vec<u8>, Signals>,
    /// This round's behaviour, for the live adjustment once it has committed.
    recent: Vec<(String, u64, Behaviour, i64)>,
}

/// Counts kept in memory at most (then the cache starts over from the store).
const MAX_CACHED_SIGNALS: usize = 1 << 20;

impl BehaviourProcessor {
    /// Counts the events of `topic`; `service` gets the recent behaviour for live scores.
    pub fn new(topic: TopicName, service: Arc<ListingService>) -> BehaviourProcessor {
        BehaviourProcessor { topic, service, cache: HashMap::new(), recent: Vec::new() }
    }
}

impl Processor for BehaviourProcessor {
    fn name(&self) -> &str {
        BEHAVIOUR_PROCESSOR
    }

    fn topics(&self) -> Vec<TopicName> {
        vec![self.topic.clone()]
    }

    fn process(&mut self, ctx: &mut ProcessContext<'_>, _topic: &TopicName, records: &[Record]) -> Result<()> {
        let mut touched: HashMap<Vec<u8>, Signals> = HashMap::new();
        for record in records {
            let Ok(LogEntry::Event(event)) = LogEntry::decode(&record.value) else { continue };
            let Some(target) = &event.target else { continue };
            if target.kind.as_str() != "sku" {
                continue;
            }
            let Ok(sku) = target.id.parse::<u64>() else { continue };
            let field = match event.action.as_str() {
                "view" => 0,
                "cart" | "add_to_cart" => 1,
                "order" => 2,
                _ => continue,
            };
            let behaviour = [Behaviour::View, Behaviour::Cart, Behaviour::Order][field];
            self.recent.push((event.app.as_str().to_owned(), sku, behaviour, event.time.millis()));
            let key = store::sku_key(event.app.as_str(), sku);
            let mut signals = match touched.get(&key).or_else(|| self.cache.get(&key)) {
                Some(s) => *s,
                None => ctx.store().get(store::SIGNALS_TABLE, &key)?.map(|v| store::decode_signals(&v)).unwrap_or_default(),
            };
            match field {
                0 => signals.views += 1,
                1 => signals.carts += 1,
                _ => signals.orders += 1,
            }
            touched.insert(key, signals);
        }
        if self.cache.len() + touched.len() > MAX_CACHED_SIGNALS {
            self.cache.clear();
        }
        for (key, signals) in touched {
            ctx.batch().put(store::SIGNALS_TABLE, key.clone(), store::encode_signals(&signals));
            self.cache.insert(key, signals);
        }
        Ok(())
    }

    fn after_commit(&mut self) -> Result<()> {
        self.service.record_recent(std::mem::take(&mut self.recent));
        Ok(())
    }

    fn reset_cache(&mut self) {
        self.cache.clear();
        self.recent.clear();
    }

    fn clear_state(&mut self, batch: &mut WriteBatch) {
        batch.delete_prefix(store::SIGNALS_TABLE, Vec::new());
        self.cache.clear();
    }
}
