//! Run-time alert rules on live event streams (issue 14): a pure, deterministic engine —
//! events and the caller's clock in, evaluations and alert transitions out, its whole state
//! a snapshot the caller commits with its log position. No I/O, no wall clock, no threads
//! in the engine; [`processor`] and [`service`] wire it into the runtime and the state
//! store.
//!
//! # Parts
//!
//! * [`config`]: the `[alerts]` section ([`AlertsConfig`]).
//! * [`service`]: [`AlertsService`] — the rules in force (one store row per rule, shared
//!   with the processor behind an `ArcSwap` with a generation number), the alert history
//!   and each rule's recent evaluations.
//! * [`processor`]: [`AlertsProcessor`] — the engine over the `events` topic: rule changes
//!   synced at each round, the clock advanced by a processing-time timer, the state
//!   committed incrementally with the positions, transitions emitted through the outbox
//!   (the `alerts` topic, and Alertmanager-format webhook requests to the notify module).
//! * [`rule`]: the model — [`Rule`] (id, app, name, version, paused, severity, [`Metric`],
//!   filter, [`WindowSpec`], allowed lateness, [`Condition`], min samples, cool-down,
//!   channels) with [`Rule::validate`] and [`Rule::from_json`], whose [`RuleError`]s name the
//!   field (`window.slide_secs`, `metric.p`…) with a stable [`RuleErrorCode`].
//! * [`ruleset`]: [`RuleSet`], every rule with optimistic concurrency — a change names the
//!   version it was made from; a stale one is refused ([`RuleSetError::StaleVersion`],
//!   code `stale_version`).
//! * [`engine`]: [`AlertEngine`] — [`AlertEngine::process`] an event,
//!   [`AlertEngine::advance`] the clock, [`AlertEngine::upsert`] / [`AlertEngine::remove`] /
//!   [`AlertEngine::sync`] rules; results go to an [`Output`] of [`Transition`]s and
//!   [`Evaluation`]s. [`RuleMetrics`] per rule.
//! * [`snapshot`](AlertEngine::snapshot) / [`restore`](AlertEngine::restore): the state as
//!   bytes and back.
//! * [`backtest()`]: a rule over past events, without side effects.
//! * [`sketch`]: the percentile sketch; [`history`]: past window values.
//!
//! A rule as JSON (durations in seconds; `version` is set by the [`RuleSet`]):
//!
//! ```json
//! {
//!   "id": "ios-crash-rate", "app": "shop", "name": "iOS crashes per launch",
//!   "severity": "critical", "channels": ["ops-webhook"],
//!   "metric": {"kind": "ratio", "numerator": {"action": "crash"}, "denominator": {"action": "launch"}},
//!   "filter": {"context.platform": "ios"},
//!   "window": {"kind": "sliding", "size_secs": 600, "slide_secs": 60},
//!   "allowed_lateness_secs": 30,
//!   "condition": {"kind": "threshold", "op": ">", "value": 0.02},
//!   "min_samples": 200, "cooldown_secs": 1800
//! }
//! ```
//!
//! Other metrics: `{"kind": "count"}`, `{"kind": "distinct_users"}`,
//! `{"kind": "percentile", "p": 95, "field": "props.latency_ms"}`; other conditions:
//! `{"kind": "change", "op": "<", "percent": -30, "against": "week"}`,
//! `{"kind": "forecast", "k": 4, "min_history": 3, "direction": "above"}`.
//!
//! Filters and numeric fields are the pipeline's own ([`meridian_pipeline::EventFilter`],
//! [`meridian_pipeline::EventField`]), so a rule's filter is written like a route's `when` or
//! an aggregation's filter: `{ action = "crash", "context.platform" = "ios" }` or
//! `'action == "request" && props.status >= 500'`.
//!
//! # Windows, watermark, lateness
//!
//! Windows are by **event time**, aligned to the epoch: tumbling `[k·size, (k+1)·size)`, or
//! sliding windows of `size` every `slide` (`size` a multiple of `slide`). A rule keeps
//! **panes** of `slide` (a tumbling window is one pane); an event is added to exactly one
//! pane, and a window's value merges its `size / slide` panes when it closes (counts add,
//! user sets unite, sketches merge), so a sliding window costs no more per event than a
//! tumbling one.
//!
//! Each app has a **watermark**: the largest event time seen in its events (any event,
//! matching a rule or not), each event's contribution clamped to its `received` time plus
//! [`EngineSettings::max_event_time_ahead_ms`] (a fast client clock must not close the
//! app's windows early), or the caller's clock if later. A window `[s, e)` of a rule closes
//! when `watermark − allowed_lateness ≥ e`: events up to the lateness out of order still
//! count. An event that arrives after a window it belongs to has been evaluated is **late**:
//! never silently dropped, it is counted in the rule's `late_events` metric and in
//! [`Output::late_events`] (with sliding windows it still counts in the windows still open).
//!
//! **Idle semantics**: [`AlertEngine::advance`]`(now)` moves a clock every app shares; it
//! closes windows as an event at `now` would, for apps without traffic too — which is how
//! "no orders in 10 minutes" can fire at all. The caller passes its clock only when the
//! processor is caught up with the log (replaying a backlog with the wall clock would make
//! everything late); the runtime's processing-time timers, stored with the state, are the
//! intended source, so a replay after a crash repeats the same calls.
//!
//! A rule starts (when created, resumed or reset) at the **next full window** after its
//! app's watermark, so no partial window is ever judged; in an app with no time yet it
//! starts at the window holding the app's first event (that event's time taken within
//! `max_event_time_ahead_ms` of its `received` time, so a wrong client clock cannot start
//! it far away). Events before a rule's start are not its events (not late either).
//!
//! # Metrics
//!
//! * count — matching events; samples = the count.
//! * distinct users — an exact set per pane of 64-bit xxh3 hashes of the user id (the
//!   device id for anonymous events, in a separate namespace). Two users collide with
//!   probability 2⁻⁶⁴; with n users in a window the expected number of colliding pairs is
//!   about n² / 2⁶⁵ — 3·10⁻⁸ for a million users, i.e. never in practice. 8 bytes per user
//!   and pane (plus the hash table's slack). Samples = matching events.
//! * ratio — two counts (events matching the numerator, the denominator — after the rule's
//!   filter); no value when the denominator is 0. Samples = the denominator.
//! * percentile — a log-bucketed histogram ([`sketch::QuantileSketch`]): every answer within
//!   1 % of the exact order statistic of the same rank, mergeable across panes, about 2 KB
//!   for values spanning 1 ms–1 min. Samples = values seen.
//!
//! # Conditions and history
//!
//! * threshold — `value op threshold`.
//! * change — against the same window a day or a week earlier (`(v − earlier)/|earlier|`
//!   in percent, `op percent`). The history keeps every window value of the last period
//!   at the rule's slide ([`history`]); no earlier value → no verdict
//!   ([`Outcome::NoBaseline`]).
//! * forecast — deviation from a **seasonal baseline learned from the rule's own
//!   history**: for the window's hour of the week (UTC), the values of that hour in the last
//!   up to 8 weeks; the baseline is their **median**, the spread 1.4826 × their **median
//!   absolute deviation** (floored at 5 % of the median, and at 1 for counts); a breach
//!   when the value is more than `k` spreads away (above, below or either). Hour-of-week
//!   captures daily and weekly seasonality at once. Why this and not Holt-Winters: the
//!   median and MAD are **robust to past anomalies** (an incident last Tuesday does not
//!   raise next Tuesday's baseline, where Holt-Winters would fold it into its level and
//!   season and then miss or mis-fire); they need **no tuning** (no α, β, γ to fit per
//!   rule, which matters across 10,000 rules written by product people); the state is
//!   **small and fixed** (168 slots × 8 weeks of `f32` + counts, about 9 KB, only for
//!   forecast rules); and they **work with gaps** (a missing hour is simply one sample
//!   fewer, where Holt-Winters needs a regular series to update its recursion). The cost:
//!   it needs `min_history` weeks before it judges, and it does not extrapolate a trend
//!   (growth over eight weeks shows as a slowly moving median, not a forecast slope).
//!
//! History is recorded for every closed window that has a value, whatever its verdict
//! (robust statistics need no cleaning), and is part of the snapshot.
//!
//! # Lifecycle
//!
//! Per closed window: fewer samples than `min_samples` or no value or no baseline → not
//! judged, the alert state does not change. Otherwise a breach while ok **fires** (a
//! [`Transition`] `fired`) unless the rule fired less than `cooldown` ago (by window end;
//! [`Outcome::Suppressed`]); a non-breach while firing **resolves** (`resolved`, with the
//! reason "back to normal: …"). A firing rule that keeps breaching emits nothing more.
//! Every [`Evaluation`] and [`Transition`] carries the rule version that produced it;
//! [`Transition::id`] is deterministic, for the caller's outbox.
//!
//! # Rule changes
//!
//! Rules change while events flow ([`AlertEngine::upsert`] with the new version, or
//! [`AlertEngine::sync`] with the whole set); the change is in force for the next event:
//!
//! * **threshold, condition, severity, cool-down, lateness, min samples, name, channels**
//!   ([`Applied::Soft`]): open windows are kept; the next window evaluated uses the new
//!   version. A condition that needs history the rule did not keep starts keeping it now.
//! * **metric, filter or window** ([`Applied::Reset`]): the rule's open windows are
//!   discarded and fresh windows start at the next full window; the history is kept only
//!   when metric, filter *and window size* are unchanged (values of windows of another size
//!   or of another metric are not comparable — a slide-only change re-grids it). The alert
//!   state is kept: a firing rule resolves, or not, at its next evaluated window.
//! * **pause** ([`Applied::Paused`]): windows discarded, nothing accumulates or evaluates;
//!   a firing alert resolves with reason `"paused"`. **Resume** ([`Applied::Resumed`]):
//!   fresh windows from the next full window; the history is kept.
//! * **delete** ([`AlertEngine::remove`]): all state goes; a firing alert resolves with
//!   reason `"deleted"`.
//! * The same rule again is [`Applied::Unchanged`]; an older version than the one in force
//!   is [`Applied::Ignored`] (versions only move forward).
//!
//! # Exactly once, with the caller
//!
//! The engine is deterministic: the same calls in the same order give the same outputs,
//! and [`AlertEngine::snapshot`] holds everything that matters (watermarks, clock, rules in
//! force, panes, lifecycle, history, counters; indexes and timers are rebuilt). Processing
//! events e₁…eₙ in one go gives exactly what processing e₁…eₖ, snapshotting, restoring
//! and processing eₖ₊₁…eₙ gives (tested as a property, rule changes and clock moves
//! included). So the processor that wires it in commits, in one batch per round, the
//! engine's state, its log position and the round's transitions as outbox records keyed by
//! [`Transition::id`]: a crash before the commit replays the round from the old state and
//! emits the same transitions with the same ids; a crash after it emits nothing twice.
//!
//! Two ways to commit the state: the whole [`AlertEngine::snapshot`] (simple; about 650
//! bytes per rule in the benchmark), or incrementally — [`AlertEngine::take_dirty`] names
//! the rules and streams the round changed and removed, [`AlertEngine::snapshot_rule`] and
//! [`AlertEngine::snapshot_stream`] encode each (one state-store key each; events touch
//! only streams, window closes touch the rules), [`AlertEngine::snapshot_engine`] the
//! small rest (clock, watermarks); [`AlertEngine::restore_parts`] reassembles them. Either way
//! [`AlertEngine::restore`] / [`AlertEngine::sync`] then apply the rules in force now,
//! whatever changed since, like a live change.
//!
//! Rules reach the engine as values ([`AlertEngine::upsert`], [`AlertEngine::sync`]), so a
//! rule change is in force for the very next event the engine sees (microseconds; see the
//! benchmark); how fast a change made in the API reaches every processor is the server's
//! broadcast, not the engine's.
//!
//! # Scale
//!
//! Rules of one app that count the same thing over the same windows — same filter, same
//! pane accumulator (count, distinct users, ratio, or a percentile's sketch of one field),
//! same size, slide and lateness — share one **stream**: one pane ring that each event is
//! matched against and added to once, and whose window value is computed once at a close;
//! each member rule then judges it with its own condition, history, cool-down and
//! lifecycle. Many rules on one app usually differ in thresholds, conditions, severities
//! and channels rather than in what they count, so 10,000 such rules are a few hundred
//! streams (`meridian bench alerts`). A rule joins the stream of its shape that is in the
//! state it would start in (fresh windows at the next full window, or waiting for the
//! app's first event), else a new one; a rule created later gets its own stream, which
//! merges with its twin once both have closed the same windows and hold the same panes
//! (before its first window closes a stream ignores events older than its start; after,
//! they are late like any event for a closed window — so the start stops mattering). A
//! change of metric, filter or window leaves the stream for fresh windows (as before); a
//! lateness change takes a copy of the open windows to a stream of the new shape. Sharing
//! is invisible: each rule evaluates, fires and counts exactly as it would alone (a
//! property test over random events, clock moves and rule changes).
//!
//! Streams are indexed per app by the actions their filter requires
//! ([`meridian_pipeline::EventFilter::required_actions`]; a ratio without a filter-level
//! action is indexed by its numerator's and denominator's actions), so an event touches
//! only the streams of its app that can match its action, plus those that match any
//! action. Window closes are a timer heap per app ordered by (close time, stream), so an
//! event costs nothing for streams whose windows are not due. Everything one rule holds is
//! estimated in [`RuleMetrics::memory_bytes`]; the benchmark
//! (`examples/alerts_bench.rs`) runs 10,000 rules.
//!
//! The engine sees one stream: if the runtime ever splits an app's partitions across
//! processor instances, each instance would see part of every window (all accumulators
//! are mergeable, but merging across instances is not implemented).

pub mod backtest;
pub mod config;
pub mod engine;
pub mod history;
mod metric;
mod parse;
pub mod processor;
pub mod rule;
pub mod ruleset;
pub mod service;
pub mod sketch;
pub mod snapshot;

pub use backtest::{backtest, Backtest};
pub use config::AlertsConfig;
pub use processor::{alertmanager_body, chat_body, AlertsProcessor, ProcessorSettings, TimeZones, PROCESSOR_NAME};
pub use service::{AlertsService, HistoryEntry, RulesInForce};
pub use engine::{AlertEngine, AlertState, Applied, DirtyRules, EngineSettings, Evaluation, Outcome, Output, RuleMetrics, Transition};
pub use rule::{BodyFormat, Channel, CompareOp, Condition, Direction, Metric, Period, Rule, RuleError, RuleErrorCode, RuleId, Severity, WindowSpec};
pub use ruleset::{RuleSet, RuleSetError};
pub use snapshot::{Restored, SnapshotError, SNAPSHOT_FORMAT};
