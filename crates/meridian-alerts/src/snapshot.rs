//! The engine's state as bytes, to commit with the processor's log position, and back.
//!
//! Layout: the magic `MRAL`, a format byte, then the postcard encoding of `Snapshot`:
//! settings, the caller's clock, each app's watermark and the next stream id; per rule the
//! rule in force (as its JSON, since filters are schema-free) with its runtime state —
//! the stream it reads, the alert lifecycle, history and counters; per stream (the pane
//! ring rules of one shape share) its open panes and counters. Indexes, stream
//! memberships and timers are derived and rebuilt on restore. The incremental form splits
//! the same data: one engine part (`MRAE`), one part per rule (`MRAR`) and one per stream
//! (`MRAS`), each with the format byte. Format 1 (before streams: each rule with its own
//! panes) is still read; each of its rules becomes a stream of its own, and streams with
//! the same panes merge at their next window close.

use crate::engine::{AlertEngine, EngineSettings, Output, RuleRuntime, RuleRuntimeV1, StreamCounters, Windows};
use crate::metric::CompiledRule;
use crate::rule::{Rule, RuleError, RuleId};
use serde::{Deserialize, Serialize};

const MAGIC: &[u8; 4] = b"MRAL";
const ENGINE_MAGIC: &[u8; 4] = b"MRAE";
const RULE_MAGIC: &[u8; 4] = b"MRAR";
const STREAM_MAGIC: &[u8; 4] = b"MRAS";
/// The snapshot format written by this version (it also reads format 1, from before
/// rules shared pane rings).
pub const SNAPSHOT_FORMAT: u8 = 2;

/// Why bytes are not a snapshot this version can read.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// Not a snapshot of the alert engine (or not the part expected).
    #[error("not an alert engine snapshot (bad magic)")]
    BadMagic,
    /// A format this version does not know.
    #[error("alert engine snapshot format {0} is not supported (this version reads 1 and {SNAPSHOT_FORMAT})")]
    UnknownFormat(u8),
    /// The bytes do not decode.
    #[error("corrupt alert engine snapshot: {0}")]
    Corrupt(String),
}

#[derive(Deserialize)]
struct Snapshot {
    engine: EnginePart,
    /// By rule JSON.
    rules: Vec<RulePart>,
    /// By id.
    streams: Vec<StreamPart>,
}

/// What is not any one rule's or stream's.
#[derive(Serialize, Deserialize)]
struct EnginePart {
    settings: EngineSettings,
    now: Option<i64>,
    /// (app, largest event time seen), by app.
    apps: Vec<(String, Option<i64>)>,
    /// The next stream's id.
    next_stream: u64,
}

/// One rule in force and its runtime state (its panes are its stream's).
#[derive(Deserialize)]
struct RulePart {
    rule_json: String,
    runtime: RuleRuntime,
}

/// One stream: the panes its rules share, and what it counted.
#[derive(Serialize, Deserialize)]
struct StreamPart {
    id: u64,
    windows: Option<Windows>,
    counters: StreamCounters,
}

/// [`StreamPart`] borrowed from the engine, for writing.
#[derive(Serialize)]
struct StreamPartRef<'a> {
    id: u64,
    windows: &'a Option<Windows>,
    counters: StreamCounters,
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
    streams: Vec<StreamPartRef<'a>>,
}

/// Format 1: every rule with its own windows.
#[derive(Deserialize)]
#[cfg_attr(test, derive(Serialize))]
struct SnapshotV1 {
    engine: EnginePartV1,
    rules: Vec<RulePartV1>,
}

#[derive(Deserialize)]
#[cfg_attr(test, derive(Serialize))]
struct EnginePartV1 {
    settings: EngineSettings,
    now: Option<i64>,
    apps: Vec<(String, Option<i64>)>,
}

#[derive(Deserialize)]
#[cfg_attr(test, derive(Serialize))]
struct RulePartV1 {
    rule_json: String,
    runtime: RuleRuntimeV1,
}

impl EnginePartV1 {
    fn upgrade(self) -> EnginePart {
        EnginePart { settings: self.settings, now: self.now, apps: self.apps, next_stream: 0 }
    }
}

/// Format-1 rules as format 2: each rule with windows gets a stream of its own (streams
/// that hold the same panes merge at their next window close).
fn upgrade_rules(engine: &mut EnginePart, rules: Vec<RulePartV1>) -> (Vec<RulePart>, Vec<StreamPart>) {
    let mut streams = Vec::new();
    let rules = rules
        .into_iter()
        .map(|part| {
            let RulePartV1 { rule_json, mut runtime } = part;
            let stream = runtime.windows.take().map(|windows| {
                let id = engine.next_stream;
                engine.next_stream += 1;
                streams.push(StreamPart { id, windows: Some(windows), counters: StreamCounters::default() });
                id
            });
            RulePart { rule_json, runtime: runtime.upgrade(stream) }
        })
        .collect();
    (rules, streams)
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

/// The format and the encoded value.
fn split<'a>(magic: &[u8; 4], bytes: &'a [u8]) -> Result<(u8, &'a [u8]), SnapshotError> {
    let rest = bytes.strip_prefix(magic.as_slice()).ok_or(SnapshotError::BadMagic)?;
    let (&format, rest) = rest.split_first().ok_or_else(|| SnapshotError::Corrupt("no format byte".into()))?;
    if format != 1 && format != SNAPSHOT_FORMAT {
        return Err(SnapshotError::UnknownFormat(format));
    }
    Ok((format, rest))
}

fn decode_as<'a, T: Deserialize<'a>>(rest: &'a [u8]) -> Result<T, SnapshotError> {
    postcard::from_bytes(rest).map_err(|e| SnapshotError::Corrupt(e.to_string()))
}

impl AlertEngine {
    /// The whole state as bytes. Commit them with the log position of the last event
    /// processed: restoring them and processing from that position gives exactly what an
    /// engine that never stopped would have given.
    pub fn snapshot(&self) -> Vec<u8> {
        let mut rules: Vec<RulePartRef<'_>> = self.slots.iter().flatten().map(rule_part).collect();
        rules.sort_by(|a, b| a.rule_json.cmp(b.rule_json));
        let mut streams: Vec<StreamPartRef<'_>> = self.streams.iter().flatten().map(stream_part).collect();
        streams.sort_by_key(|s| s.id);
        encode(MAGIC, &SnapshotRef { engine: self.engine_part(), rules, streams })
    }

    /// The part of the state that is no rule's or stream's (settings, clock, watermarks):
    /// small, and changed by every event. With [`AlertEngine::snapshot_rule`] and
    /// [`AlertEngine::snapshot_stream`] of what [`AlertEngine::take_dirty`] names, an
    /// incremental alternative to [`AlertEngine::snapshot`]: a round commits only what it
    /// touched.
    pub fn snapshot_engine(&self) -> Vec<u8> {
        encode(ENGINE_MAGIC, &self.engine_part())
    }

    /// One rule in force and its state, `None` for an unknown rule.
    pub fn snapshot_rule(&self, id: &RuleId) -> Option<Vec<u8>> {
        self.slot(id).map(|slot| encode(RULE_MAGIC, &rule_part(slot)))
    }

    /// One stream (the panes its rules share), `None` for an unknown stream.
    pub fn snapshot_stream(&self, id: u64) -> Option<Vec<u8>> {
        self.stream_by_id(id).map(|s| encode(STREAM_MAGIC, &stream_part(s)))
    }

    fn engine_part(&self) -> EnginePart {
        let mut apps: Vec<(String, Option<i64>)> = self.apps.iter().map(|(name, app)| (name.clone(), app.max_time)).collect();
        apps.sort();
        EnginePart { settings: self.settings.clone(), now: self.now, apps, next_stream: self.next_stream }
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
        let (format, rest) = split(MAGIC, bytes)?;
        if format == 1 {
            let old: SnapshotV1 = decode_as(rest)?;
            let mut engine = old.engine.upgrade();
            let (rules, streams) = upgrade_rules(&mut engine, old.rules);
            return AlertEngine::assemble(engine, rules, streams);
        }
        let snapshot: Snapshot = decode_as(rest)?;
        AlertEngine::assemble(snapshot.engine, snapshot.rules, snapshot.streams)
    }

    /// Restores from the parts of an incremental commit: the latest
    /// [`AlertEngine::snapshot_engine`], and the latest [`AlertEngine::snapshot_rule`] of
    /// every rule and [`AlertEngine::snapshot_stream`] of every stream not removed since.
    /// Then [`AlertEngine::sync`] with the rules in force.
    pub fn restore_parts<'a>(engine: &[u8], rules: impl IntoIterator<Item = &'a [u8]>, streams: impl IntoIterator<Item = &'a [u8]>) -> Result<AlertEngine, SnapshotError> {
        let (format, rest) = split(ENGINE_MAGIC, engine)?;
        let mut engine: EnginePart = if format == 1 { decode_as::<EnginePartV1>(rest)?.upgrade() } else { decode_as(rest)? };
        let mut parts = Vec::new();
        let mut old = Vec::new();
        for bytes in rules {
            let (format, rest) = split(RULE_MAGIC, bytes)?;
            if format == 1 {
                old.push(decode_as::<RulePartV1>(rest)?);
            } else {
                parts.push(decode_as::<RulePart>(rest)?);
            }
        }
        let mut stream_parts = streams.into_iter().map(|bytes| split(STREAM_MAGIC, bytes).and_then(|(_, rest)| decode_as::<StreamPart>(rest))).collect::<Result<Vec<_>, _>>()?;
        if !old.is_empty() {
            old.sort_by(|a, b| a.rule_json.cmp(&b.rule_json));
            let (rules, streams) = upgrade_rules(&mut engine, old);
            parts.extend(rules);
            stream_parts.extend(streams);
        }
        parts.sort_by(|a, b| a.rule_json.cmp(&b.rule_json));
        stream_parts.sort_by_key(|s| s.id);
        AlertEngine::assemble(engine, parts, stream_parts)
    }

    fn assemble(part: EnginePart, rules: Vec<RulePart>, streams: Vec<StreamPart>) -> Result<AlertEngine, SnapshotError> {
        let mut engine = AlertEngine::new(part.settings);
        engine.now = part.now;
        engine.next_stream = part.next_stream;
        for (name, max_time) in part.apps {
            engine.apps.entry(name).or_default().max_time = max_time;
        }
        let mut members: rustc_hash::FxHashMap<u64, Vec<u32>> = rustc_hash::FxHashMap::default();
        let mut unlinked = Vec::new();
        for saved in rules {
            let rule: Rule = serde_json::from_str(&saved.rule_json).map_err(|e| SnapshotError::Corrupt(format!("rule: {e}")))?;
            if engine.rule(&rule.id).is_some() {
                return Err(SnapshotError::Corrupt(format!("rule {} twice", rule.id)));
            }
            let compiled = CompiledRule::compile(rule).map_err(|e| SnapshotError::Corrupt(format!("rule: {e}")))?;
            let paused = compiled.rule.paused;
            let link = saved.runtime.link;
            let idx = engine.insert(compiled, saved.runtime);
            match (paused, link) {
                (true, _) => {}
                (false, Some(link)) => members.entry(link.stream).or_default().push(idx),
                (false, None) => unlinked.push(idx),
            }
        }
        for stream in streams {
            // A stream no rule reads any more is left out.
            let Some(members) = members.remove(&stream.id) else { continue };
            engine.restore_stream(stream.id, stream.windows, stream.counters, members);
        }
        // Rules whose stream is missing start afresh, like rules without windows.
        let mut orphans: Vec<u32> = members.into_values().flatten().collect();
        orphans.sort_unstable();
        unlinked.extend(orphans);
        for idx in unlinked {
            engine.unlink(idx);
            engine.attach_fresh(idx);
        }
        // What was restored is what is stored: nothing to write back.
        engine.take_dirty();
        Ok(engine)
    }
}

fn rule_part(slot: &crate::engine::Slot) -> RulePartRef<'_> {
    RulePartRef { rule_json: slot.compiled.rule_json(), runtime: &slot.runtime }
}

fn stream_part(stream: &crate::engine::Stream) -> StreamPartRef<'_> {
    StreamPartRef { id: stream.id, windows: &stream.windows, counters: stream.counters }
}

#[cfg(test)]
mod tests {
    use super::*;
    use meridian_event::{Action, AppId, Context, Event, EventId, Timestamp, UserId};

    fn rule(id: &str, limit: f64) -> Rule {
        let json = serde_json::json!({"id": id, "app": "shop", "name": id, "metric": {"kind": "count"}, "filter": {"action": "click"},
            "window": {"kind": "tumbling", "size_secs": 60}, "condition": {"kind": "threshold", "op": ">", "value": limit}});
        Rule::from_json(&json).unwrap()
    }

    fn click(n: i64) -> Event {
        let t = 1_700_000_040_000 + n * 1_000;
        Event {
            id: EventId::new(format!("e{n}")).unwrap(),
            app: AppId::new("shop").unwrap(),
            user: Some(UserId::new("u").unwrap()),
            device: None,
            time: Timestamp(t),
            received: Timestamp(t),
            action: Action::new("click").unwrap(),
            target: None,
            context: Context::default(),
            props: serde_json::Map::new(),
        }
    }

    /// The engine's state as format 1 wrote it: every rule with its (stream's) windows.
    fn as_format_1(engine: &AlertEngine) -> Vec<u8> {
        let mut apps: Vec<(String, Option<i64>)> = engine.apps.iter().map(|(name, app)| (name.clone(), app.max_time)).collect();
        apps.sort();
        let mut rules: Vec<RulePartV1> = engine
            .slots
            .iter()
            .flatten()
            .map(|slot| {
                let windows = slot.runtime.link.and_then(|link| engine.stream_by_id(link.stream)).and_then(|s| s.windows.clone());
                RulePartV1 { rule_json: slot.compiled.rule_json().to_owned(), runtime: RuleRuntimeV1::downgrade(&slot.runtime, windows) }
            })
            .collect();
        rules.sort_by(|a, b| a.rule_json.cmp(&b.rule_json));
        let mut bytes = encode(MAGIC, &SnapshotV1 { engine: EnginePartV1 { settings: engine.settings.clone(), now: engine.now, apps }, rules });
        bytes[4] = 1;
        bytes
    }

    #[test]
    fn a_format_1_snapshot_is_read_with_a_stream_per_rule_that_merge_at_the_next_close() {
        let mut engine = AlertEngine::default();
        let mut out = Output::default();
        for r in [rule("busy", 30.0), rule("quiet", 100.0)] {
            engine.upsert(r, &mut out).unwrap();
        }
        for n in 0..90 {
            engine.process(&click(n), &mut out);
        }
        assert_eq!(engine.stream_count(), 1);
        let mut upgraded = AlertEngine::restore_exact(&as_format_1(&engine)).unwrap();
        assert_eq!(upgraded.stream_count(), 2, "one stream per format-1 rule");
        let mut again = Output::default();
        out.clear();
        for n in 90..300 {
            engine.process(&click(n), &mut out);
            upgraded.process(&click(n), &mut again);
        }
        assert!(!out.evaluations.is_empty());
        // The same windows and verdicts (streams closing at the same moment may take
        // turns in another order).
        let sorted = |o: &Output| {
            let mut e = o.evaluations.clone();
            e.sort_by(|a, b| (a.window_start, &a.rule).cmp(&(b.window_start, &b.rule)));
            let mut t = o.transitions.clone();
            t.sort_by(|a, b| (a.window_start, &a.rule).cmp(&(b.window_start, &b.rule)));
            (e, t)
        };
        assert_eq!(sorted(&again), sorted(&out));
        assert_eq!(upgraded.stream_count(), 1, "the two streams hold the same panes after a close: merged");
        // A format the version does not know is refused.
        let mut bytes = as_format_1(&engine);
        bytes[4] = 3;
        assert!(matches!(AlertEngine::restore_exact(&bytes), Err(SnapshotError::UnknownFormat(3))));
    }
}
