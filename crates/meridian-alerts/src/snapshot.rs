//! The engine's state as bytes, to commit with the processor's log position, and back.
//!
//! Layout: the magic `MRAL`, a format byte, then the postcard encoding of `Snapshot`:
//! settings, the caller's clock, each app's watermark, and per rule the rule in force (as
//! its JSON, since filters are schema-free) with its runtime state — open panes, the alert
//! lifecycle, history and counters. Indexes and timers are derived and rebuilt on restore.
//! The incremental form splits the same data: one engine part (`MRAE`: settings, clock,
//! watermarks) and one part per rule (`MRAR`), each with the format byte.

use crate::engine::{AlertEngine, EngineSettings, Output, RuleRuntime};
use crate::metric::CompiledRule;
use crate::rule::{Rule, RuleError, RuleId};
use serde::{Deserialize, Serialize};

const MAGIC: &[u8; 4] = b"MRAL";
const ENGINE_MAGIC: &[u8; 4] = b"MRAE";
const RULE_MAGIC: &[u8; 4] = b"MRAR";
/// The snapshot format written by this version.
pub const SNAPSHOT_FORMAT: u8 = 1;

/// Why bytes are not a snapshot this version can read.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// Not a snapshot of the alert engine (or not the part expected).
    #[error("not an alert engine snapshot (bad magic)")]
    BadMagic,
    /// A format this version does not know.
    #[error("alert engine snapshot format {0} is not supported (this version reads {SNAPSHOT_FORMAT})")]
    UnknownFormat(u8),
    /// The bytes do not decode.
    #[error("corrupt alert engine snapshot: {0}")]
    Corrupt(String),
}

#[derive(Deserialize)]
struct Snapshot {
    engine: EnginePart,
    /// By rule id.
    rules: Vec<RulePart>,
}

/// What is not any one rule's.
#[derive(Serialize, Deserialize)]
struct EnginePart {
    settings: EngineSettings,
    now: Option<i64>,
    /// (app, largest event time seen), by app.
    apps: Vec<(String, Option<i64>)>,
}

/// One rule in force and its runtime state.
#[derive(Deserialize)]
struct RulePart {
    rule_json: String,
    runtime: RuleRuntime,
}

/// [`RulePart`] borrowed from the engine, for writing (the same encoding, nothing copied).
#[derive(Serialize)]
struct RulePartRef<'a> {
    rule_json: &'a str,
    runtime: &'a RuleRuntime,
}

/// [`Snapshot`] borrowed from the engine, for writing.
#[derive(Serialize)]
struct SnapshotRef<'a> {
    engine: EnginePart,
    rules: Vec<RulePartRef<'a>>,
}

/// An engine restored from a snapshot and brought to the rules in force.
#[derive(Debug)]
pub struct Restored {
    /// The engine.
    pub engine: AlertEngine,
    /// What bringing it to the given rules produced (resolutions of rules deleted or
    /// paused since the snapshot).
    pub output: Output,
    /// Given rules that are invalid, left out.
    pub rejected: Vec<(RuleId, RuleError)>,
}

fn encode<T: Serialize>(magic: &[u8; 4], value: &T) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(256);
    bytes.extend_from_slice(magic);
    bytes.push(SNAPSHOT_FORMAT);
    match postcard::to_extend(value, bytes) {
        Ok(bytes) => bytes,
        // Serialising plain data into a vector cannot fail.
        Err(e) => unreachable!("snapshot serialisation failed: {e}"),
    }
}

fn decode<'a, T: Deserialize<'a>>(magic: &[u8; 4], bytes: &'a [u8]) -> Result<T, SnapshotError> {
    let rest = bytes.strip_prefix(magic.as_slice()).ok_or(SnapshotError::BadMagic)?;
    let (&format, rest) = rest.split_first().ok_or_else(|| SnapshotError::Corrupt("no format byte".into()))?;
    if format != SNAPSHOT_FORMAT {
        return Err(SnapshotError::UnknownFormat(format));
    }
    postcard::from_bytes(rest).map_err(|e| SnapshotError::Corrupt(e.to_string()))
}

impl AlertEngine {
    /// The whole state as bytes. Commit them with the log position of the last event
    /// processed: restoring them and processing from that position gives exactly what an
    /// engine that never stopped would have given.
    pub fn snapshot(&self) -> Vec<u8> {
        let mut rules: Vec<RulePartRef<'_>> = self.slots.iter().flatten().map(rule_part).collect();
        rules.sort_by(|a, b| a.rule_json.cmp(b.rule_json));
        encode(MAGIC, &SnapshotRef { engine: self.engine_part(), rules })
    }

    /// The part of the state that is no rule's (settings, clock, watermarks): small, and
    /// changed by every event. With [`AlertEngine::snapshot_rule`] of the rules
    /// [`AlertEngine::take_dirty`] names, an incremental alternative to
    /// [`AlertEngine::snapshot`]: a round commits only what it touched.
    pub fn snapshot_engine(&self) -> Vec<u8> {
        encode(ENGINE_MAGIC, &self.engine_part())
    }

    /// One rule in force and its state, `None` for an unknown rule.
    pub fn snapshot_rule(&self, id: &RuleId) -> Option<Vec<u8>> {
        self.slot(id).map(|slot| encode(RULE_MAGIC, &rule_part(slot)))
    }

    fn engine_part(&self) -> EnginePart {
        let mut apps: Vec<(String, Option<i64>)> = self.apps.iter().map(|(name, app)| (name.clone(), app.max_time)).collect();
        apps.sort();
        EnginePart { settings: self.settings.clone(), now: self.now, apps }
    }

    /// Restores a snapshot, then brings it to `rules` (the rules in force now, which may
    /// have changed since): each difference is applied like a live change (see the crate
    /// docs), deleted or paused firing rules resolving into [`Restored::output`].
    pub fn restore(bytes: &[u8], rules: impl IntoIterator<Item = Rule>) -> Result<Restored, SnapshotError> {
        let mut engine = AlertEngine::restore_exact(bytes)?;
        let mut output = Output::default();
        let rejected = engine.sync(rules, &mut output);
        Ok(Restored { engine, output, rejected })
    }

    /// Restores a snapshot as it was, with the rules it holds.
    pub fn restore_exact(bytes: &[u8]) -> Result<AlertEngine, SnapshotError> {
        let snapshot: Snapshot = decode(MAGIC, bytes)?;
        AlertEngine::assemble(snapshot.engine, snapshot.rules)
    }

    /// Restores from the parts of an incremental commit: the latest
    /// [`AlertEngine::snapshot_engine`] and the latest [`AlertEngine::snapshot_rule`] of
    /// every rule not removed since. Then [`AlertEngine::sync`] with the rules in force.
    pub fn restore_parts<'a>(engine: &[u8], rules: impl IntoIterator<Item = &'a [u8]>) -> Result<AlertEngine, SnapshotError> {
        let engine: EnginePart = decode(ENGINE_MAGIC, engine)?;
        let mut parts = rules.into_iter().map(|bytes| decode::<RulePart>(RULE_MAGIC, bytes)).collect::<Result<Vec<_>, _>>()?;
        parts.sort_by(|a, b| a.rule_json.cmp(&b.rule_json));
        AlertEngine::assemble(engine, parts)
    }

    fn assemble(part: EnginePart, rules: Vec<RulePart>) -> Result<AlertEngine, SnapshotError> {
        let mut engine = AlertEngine::new(part.settings);
        engine.now = part.now;
        for (name, max_time) in part.apps {
            engine.apps.entry(name).or_default().max_time = max_time;
        }
        for saved in rules {
            let rule: Rule = serde_json::from_str(&saved.rule_json).map_err(|e| SnapshotError::Corrupt(format!("rule: {e}")))?;
            if engine.rule(&rule.id).is_some() {
                return Err(SnapshotError::Corrupt(format!("rule {} twice", rule.id)));
            }
            let compiled = CompiledRule::compile(rule).map_err(|e| SnapshotError::Corrupt(format!("rule: {e}")))?;
            let paused = compiled.rule.paused;
            let has_windows = saved.runtime.windows.is_some();
            let idx = engine.insert(compiled, saved.runtime);
            if paused {
                continue;
            }
            engine.index(idx);
            if has_windows {
                engine.push_timer(idx, true);
            } else {
                engine.start_fresh(idx);
            }
        }
        // What was restored is what is stored: nothing to write back.
        engine.take_dirty();
        Ok(engine)
    }
}

fn rule_part(slot: &crate::engine::Slot) -> RulePartRef<'_> {
    RulePartRef { rule_json: slot.compiled.rule_json(), runtime: &slot.runtime }
}
