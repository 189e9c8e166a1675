//! Definitions compiled from the config: aggregations with their filters and fields, and
//! conditions (lifecycle, segments, triggers) with their variables resolved.

use crate::config::{default_lifecycle, ActionsConfig, AggregationKind, DEFAULT_GROUP};
use crate::expr::{self, Cond, Literal};
use meridian_config::FieldError;
use meridian_pipeline::{EventField, EventFilter};
use std::collections::HashSet;

/// A window named in a condition variable (`orders_30d`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WindowRef {
    /// `_today`.
    Today,
    /// `_Nd`.
    Days(u32),
    /// `_month`: this calendar month.
    Month,
    /// `_all` or no suffix: everything kept.
    All,
}

impl WindowRef {
    /// The window.
    pub fn window(self) -> crate::window::Window {
        use crate::window::Window;
        match self {
            WindowRef::Today => Window::Today,
            WindowRef::Days(n) => Window::Days(n),
            WindowRef::Month => Window::Month,
            WindowRef::All => Window::All,
        }
    }

    /// The most days it reaches back.
    pub fn reach(self, retention_days: u32) -> u32 {
        match self {
            WindowRef::Today => 1,
            WindowRef::Days(n) => n,
            WindowRef::Month => 31,
            WindowRef::All => retention_days,
        }
    }

    fn parse(suffix: &str) -> Option<WindowRef> {
        match suffix {
            "today" => Some(WindowRef::Today),
            "month" => Some(WindowRef::Month),
            "all" => Some(WindowRef::All),
            _ => suffix.strip_suffix('d')?.parse().ok().filter(|n| *n > 0).map(WindowRef::Days),
        }
    }
}

/// A variable of a condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Var {
    /// The lifecycle stage (a string).
    Stage,
    /// Whole local days since the last event (0 on a day with events).
    DaysInactive,
    /// Whole local days since the first event.
    DaysSinceFirstSeen,
    /// Events of any kind in a window.
    Events(WindowRef),
    /// Days with at least one event in a window.
    ActiveDays(WindowRef),
    /// An aggregation (index into [`Definitions::aggregations`]) over a window.
    Agg(usize, WindowRef),
}

/// Names no aggregation may take (they are built-in variables).
const RESERVED: [&str; 5] = ["stage", "days_inactive", "days_since_first_seen", "events", "active_days"];

/// A compiled aggregation.
#[derive(Debug)]
pub struct Aggregation {
    /// Its name.
    pub name: String,
    /// Its storage key: name and a hash of its definition, so a changed definition starts
    /// from empty buckets (back-fill them) instead of mixing two meanings.
    pub key: String,
    /// Its field in a user's stored fields ([`crate::state::agg_field`] of `key`).
    pub stored_field: String,
    /// What it computes.
    pub kind: AggregationKind,
    /// Which events count.
    pub filter: Option<EventFilter>,
    /// The field read (`of` or `prop`).
    pub field: Option<EventField>,
    /// The field's path as written (the namespace of interned distinct values).
    pub field_path: String,
    /// Its group.
    pub group: String,
    /// For the console.
    pub description: String,
    /// The filter as written, for the console.
    pub filter_text: String,
}

/// A compiled named condition (segment, trigger or lifecycle stage).
#[derive(Debug)]
pub struct Named {
    /// Its name.
    pub name: String,
    /// The condition.
    pub cond: Cond<Var>,
    /// The condition as written.
    pub text: String,
    /// The group whose processor evaluates it.
    pub group: String,
    /// Triggers: also send a webhook.
    pub webhook: bool,
    /// For the console.
    pub description: String,
}

/// An isolation group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    /// Name.
    pub name: String,
    /// Topic it reads (`None`: the events topic).
    pub topic: Option<String>,
}

/// Everything compiled from `[actions]`.
#[derive(Debug)]
pub struct Definitions {
    /// Aggregations, in config order.
    pub aggregations: Vec<Aggregation>,
    /// Lifecycle stages, first match wins.
    pub stages: Vec<Named>,
    /// Segments.
    pub segments: Vec<Named>,
    /// Triggers.
    pub triggers: Vec<Named>,
    /// Groups: `default` first.
    pub groups: Vec<Group>,
    /// Daily buckets kept.
    pub retention_days: u32,
    /// Local days after a user's last event during which time alone can still change a
    /// stage, a segment or a trigger (daily reviews stop after it).
    pub horizon_days: u32,
    /// Distinct list limit.
    pub distinct_list_max: usize,
    /// Timeline length.
    pub timeline_len: usize,
    /// Processor threads per group (0: one per core).
    pub threads: usize,
}

fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 48 && name.as_bytes()[0].is_ascii_lowercase() && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

impl Definitions {
    /// Compiles the section; the error names the entry (by name) and the field.
    pub fn compile(config: &ActionsConfig) -> Result<Definitions, FieldError> {
        let mut groups = vec![Group { name: DEFAULT_GROUP.to_owned(), topic: None }];
        for (i, g) in config.groups.iter().enumerate() {
            let field = |f: &str| format!("groups[{i}].{f}");
            if !valid_name(&g.name) || g.name == DEFAULT_GROUP {
                return Err(FieldError::new(field("name"), format!("group {:?}: names are lowercase letters, digits and _, and \"default\" is taken", g.name)));
            }
            if groups.iter().any(|x| x.name == g.name) {
                return Err(FieldError::new(field("name"), format!("group {:?} is declared twice", g.name)));
            }
            meridian_log::TopicName::new(g.topic.as_str()).map_err(|e| FieldError::new(field("topic"), format!("group {:?}: {e}", g.name)))?;
            groups.push(Group { name: g.name.clone(), topic: Some(g.topic.clone()) });
        }
        let mut aggregations: Vec<Aggregation> = Vec::new();
        for (i, a) in config.aggregations.iter().enumerate() {
            let field = |f: &str| format!("aggregations[{i}].{f}");
            let named = |message: String| format!("aggregation {:?}: {message}", a.name);
            if !valid_name(&a.name) || RESERVED.contains(&a.name.as_str()) {
                return Err(FieldError::new(field("name"), named(format!("names are 1-48 lowercase letters, digits and _, starting with a letter, and not one of {RESERVED:?}"))));
            }
            if aggregations.iter().any(|x| x.name == a.name) {
                return Err(FieldError::new(field("name"), named("declared twice".into())));
            }
            if !groups.iter().any(|g| g.name == a.group) {
                return Err(FieldError::new(field("group"), named(format!("unknown group {:?}; declare it in [[actions.groups]]", a.group))));
            }
            let (path, which) = match a.kind {
                AggregationKind::Distinct => {
                    if a.prop.is_some() {
                        return Err(FieldError::new(field("prop"), named("distinct counts read `of`, not `prop`".into())));
                    }
                    (a.of.clone().unwrap_or_else(|| "target.id".into()), "of")
                }
                kind if kind.needs_prop() => {
                    if a.of.is_some() {
                        return Err(FieldError::new(field("of"), named(format!("{} reads `prop`, not `of`", kind.as_str()))));
                    }
                    let Some(prop) = a.prop.clone() else {
                        return Err(FieldError::new(field("prop"), named(format!("{} needs `prop`, the event field it reads (e.g. \"props.amount\")", kind.as_str()))));
                    };
                    (prop, "prop")
                }
                kind => {
                    if a.of.is_some() || a.prop.is_some() {
                        return Err(FieldError::new(field(if a.of.is_some() { "of" } else { "prop" }), named(format!("{} reads no field; remove it", kind.as_str()))));
                    }
                    (String::new(), "")
                }
            };
            let event_field = if path.is_empty() {
                None
            } else {
                let f = EventField::parse(&path).map_err(|e| FieldError::new(field(which), named(e)))?;
                if a.kind.numeric() && !f.can_be_numeric() {
                    return Err(FieldError::new(field(which), named(format!("{} needs a numeric field, and {path:?} is text; use a props field", a.kind.as_str()))));
                }
                Some(f)
            };
            let filter = a.filter.as_ref().map(EventFilter::compile).transpose().map_err(|e| FieldError::new(field("filter"), named(e)))?;
            let filter_text = a.filter.as_ref().map(|f| serde_json::to_string(f).unwrap_or_default()).unwrap_or_default();
            let canonical = format!("{}|{}|{}", a.kind.as_str(), path, filter_text);
            let key = format!("{}@{:08x}", a.name, xxhash_rust::xxh3::xxh3_64(canonical.as_bytes()) as u32);
            aggregations.push(Aggregation {
                name: a.name.clone(),
                stored_field: crate::state::agg_field(&key),
                key,
                kind: a.kind,
                filter,
                field: event_field,
                field_path: path,
                group: a.group.clone(),
                description: a.description.clone(),
                filter_text,
            });
        }
        let retention = config.retention_days;
        let compile_named = |kind: &str, index: usize, name: &str, text: &str, fixed_group: Option<&str>| -> Result<(Cond<Var>, String), FieldError> {
            let field = format!("{kind}s[{index}].when");
            let mut groups_used: HashSet<String> = HashSet::new();
            let mut resolve = |var: &str| -> Result<Var, String> {
                let (v, group) = resolve(var, &aggregations, retention)?;
                groups_used.insert(group);
                Ok(v)
            };
            let cond = expr::compile(text, &mut resolve).map_err(|e| FieldError::new(field.clone(), format!("{kind} {name:?}: {e}")))?;
            if groups_used.len() > 1 {
                let mut list: Vec<_> = groups_used.into_iter().collect();
                list.sort();
                return Err(FieldError::new(field, format!("{kind} {name:?} reads aggregations of groups {list:?}; a condition reads one group (lifecycle values belong to \"default\")")));
            }
            let group = groups_used.into_iter().next().unwrap_or_else(|| DEFAULT_GROUP.to_owned());
            if let Some(fixed) = fixed_group {
                if group != fixed {
                    return Err(FieldError::new(field, format!("{kind} {name:?} reads group {group:?}; lifecycle stages read the default group only")));
                }
            }
            Ok((cond, group))
        };
        let lifecycle = if config.lifecycle.is_empty() { default_lifecycle() } else { config.lifecycle.clone() };
        let mut stages = Vec::new();
        for (i, s) in lifecycle.iter().enumerate() {
            if !valid_name(&s.stage) || stages.iter().any(|x: &Named| x.name == s.stage) {
                return Err(FieldError::new(format!("lifecycle[{i}].stage"), format!("stage {:?}: names are unique lowercase words", s.stage)));
            }
            let (cond, group) = match &s.when {
                Some(text) => compile_named("lifecycle", i, &s.stage, text, Some(DEFAULT_GROUP))?,
                None if i + 1 == lifecycle.len() => (Cond::Const(true), DEFAULT_GROUP.to_owned()),
                None => return Err(FieldError::new(format!("lifecycle[{i}].when"), format!("stage {:?} has no condition; only the last stage may omit `when`", s.stage))),
            };
            if cond.vars().contains(&&Var::Stage) {
                return Err(FieldError::new(format!("lifecycle[{i}].when"), format!("stage {:?}: a stage's condition cannot read the stage", s.stage)));
            }
            stages.push(Named { name: s.stage.clone(), text: s.when.clone().unwrap_or_default(), cond, group, webhook: false, description: String::new() });
        }
        let mut segments = Vec::new();
        for (i, s) in config.segments.iter().enumerate() {
            if !valid_name(&s.name) || segments.iter().any(|x: &Named| x.name == s.name) {
                return Err(FieldError::new(format!("segments[{i}].name"), format!("segment {:?}: names are unique, 1-48 lowercase letters, digits and _", s.name)));
            }
            let (cond, group) = compile_named("segment", i, &s.name, &s.when, None)?;
            segments.push(Named { name: s.name.clone(), text: s.when.clone(), cond, group, webhook: false, description: s.description.clone() });
        }
        let mut triggers = Vec::new();
        for (i, t) in config.triggers.iter().enumerate() {
            if !valid_name(&t.name) || triggers.iter().any(|x: &Named| x.name == t.name) {
                return Err(FieldError::new(format!("triggers[{i}].name"), format!("trigger {:?}: names are unique, 1-48 lowercase letters, digits and _", t.name)));
            }
            let (cond, group) = compile_named("trigger", i, &t.name, &t.when, None)?;
            triggers.push(Named { name: t.name.clone(), text: t.when.clone(), cond, group, webhook: t.webhook, description: t.description.clone() });
        }
        let mut horizon = 1u32;
        for named in stages.iter().chain(&segments).chain(&triggers) {
            horizon = horizon.max(reach(&named.cond, retention));
        }
        Ok(Definitions {
            aggregations,
            stages,
            segments,
            triggers,
            groups,
            retention_days: retention,
            horizon_days: horizon.min(3660),
            distinct_list_max: config.distinct_list_max,
            timeline_len: config.timeline_len,
            threads: config.threads,
        })
    }

    /// The aggregation named `name`.
    pub fn aggregation(&self, name: &str) -> Option<(usize, &Aggregation)> {
        self.aggregations.iter().enumerate().find(|(_, a)| a.name == name)
    }

    /// The segment named `name`.
    pub fn segment(&self, name: &str) -> Option<&Named> {
        self.segments.iter().find(|s| s.name == name)
    }
}

/// How far back in days a condition can look, or how long time alone can change it.
fn reach(cond: &Cond<Var>, retention: u32) -> u32 {
    let mut days = 1;
    fn walk(c: &Cond<Var>, retention: u32, days: &mut u32) {
        match c {
            Cond::Const(_) => {}
            Cond::Cmp(var, _, lit) => {
                let d = match var {
                    Var::Events(w) | Var::ActiveDays(w) | Var::Agg(_, w) => w.reach(retention),
                    Var::DaysInactive | Var::DaysSinceFirstSeen => match lit {
                        Literal::Num(n) if *n >= 0.0 => (*n as u32).saturating_add(1),
                        _ => 1,
                    },
                    Var::Stage => 1,
                };
                *days = (*days).max(d);
            }
            Cond::And(a, b) | Cond::Or(a, b) => {
                walk(a, retention, days);
                walk(b, retention, days);
            }
            Cond::Not(a) => walk(a, retention, days),
        }
    }
    walk(cond, retention, &mut days);
    days
}

/// Resolves a variable name to a variable and the group it belongs to.
fn resolve(name: &str, aggregations: &[Aggregation], retention: u32) -> Result<(Var, String), String> {
    let default = || DEFAULT_GROUP.to_owned();
    match name {
        "stage" => return Ok((Var::Stage, default())),
        "days_inactive" => return Ok((Var::DaysInactive, default())),
        "days_since_first_seen" => return Ok((Var::DaysSinceFirstSeen, default())),
        _ => {}
    }
    let check = |w: WindowRef| -> Result<WindowRef, String> {
        if w.reach(retention) > retention {
            return Err(format!("{name} reaches {} days back, beyond the {retention} days kept (actions.retention_days)", w.reach(retention)));
        }
        Ok(w)
    };
    if let Some((i, a)) = aggregations.iter().enumerate().find(|(_, a)| a.name == name) {
        return Ok((Var::Agg(i, WindowRef::All), a.group.clone()));
    }
    if let Some((prefix, suffix)) = name.rsplit_once('_') {
        if let Some(w) = WindowRef::parse(suffix) {
            match prefix {
                "events" => return Ok((Var::Events(check(w)?), default())),
                "active_days" => return Ok((Var::ActiveDays(check(w)?), default())),
                _ => {
                    if let Some((i, a)) = aggregations.iter().enumerate().find(|(_, a)| a.name == prefix) {
                        return Ok((Var::Agg(i, check(w)?), a.group.clone()));
                    }
                }
            }
        }
    }
    let known: Vec<&str> = aggregations.iter().map(|a| a.name.as_str()).collect();
    Err(format!(
        "unknown variable {name:?}; use stage, days_inactive, days_since_first_seen, events_<window>, active_days_<window> or <aggregation>_<window> (windows: today, 7d, month, all; aggregations: {known:?})"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{AggregationConfig, SegmentConfig, TriggerConfig};
    use meridian_config::Section;

    fn agg(name: &str, kind: AggregationKind, prop: Option<&str>) -> AggregationConfig {
        AggregationConfig { name: name.into(), kind, of: None, prop: prop.map(Into::into), filter: None, group: DEFAULT_GROUP.into(), description: String::new() }
    }

    #[test]
    fn bad_configs_are_refused_naming_the_aggregation_and_field() {
        let mut c = ActionsConfig { aggregations: vec![agg("spend", AggregationKind::Sum, Some("target.id"))], ..ActionsConfig::default() };
        let e = c.validate().unwrap_err();
        assert_eq!(e.field, "aggregations[0].prop");
        assert!(e.message.contains("aggregation \"spend\"") && e.message.contains("numeric"), "{}", e.message);

        c.aggregations = vec![agg("spend", AggregationKind::Sum, None)];
        let e = c.validate().unwrap_err();
        assert_eq!(e.field, "aggregations[0].prop");

        c.aggregations = vec![agg("spend", AggregationKind::Sum, Some("props.amount")), agg("spend", AggregationKind::Count, None)];
        assert_eq!(c.validate().unwrap_err().field, "aggregations[1].name");

        c.aggregations = vec![agg("orders", AggregationKind::Count, None)];
        c.segments = vec![SegmentConfig { name: "big".into(), when: "orders_400d >= 1".into(), description: String::new() }];
        let e = c.validate().unwrap_err();
        assert_eq!(e.field, "segments[0].when");
        assert!(e.message.contains("segment \"big\"") && e.message.contains("beyond the 120 days kept"), "{}", e.message);

        c.segments = vec![SegmentConfig { name: "big".into(), when: "ordrs_30d >= 1".into(), description: String::new() }];
        let e = c.validate().unwrap_err();
        assert!(e.message.contains("unknown variable \"ordrs_30d\""), "{}", e.message);

        c.segments.clear();
        c.triggers = vec![TriggerConfig { name: "third".into(), when: "orders_30d >= 3 &&".into(), webhook: true, description: String::new() }];
        assert_eq!(c.validate().unwrap_err().field, "triggers[0].when");

        c.triggers.clear();
        c.profile_memo_users = 100_000_001;
        let e = c.validate().unwrap_err();
        assert_eq!(e.field, "profile_memo_users");

        let toml = "aggregations = [{ name = \"x\", kind = \"count\", colour = \"red\" }]";
        let e = toml::from_str::<ActionsConfig>(toml).unwrap_err().to_string();
        assert!(e.contains("unknown field `colour`"), "{e}");
    }

    #[test]
    fn variables_resolve_with_windows_and_horizon() {
        let c = ActionsConfig { aggregations: vec![agg("orders", AggregationKind::Count, None), agg("order_total", AggregationKind::Sum, Some("props.amount"))], segments: vec![SegmentConfig { name: "s".into(), when: "order_total_90d > 100 && orders_today >= 1 && orders >= 2".into(), description: String::new() }], ..ActionsConfig::default() };
        let d = Definitions::compile(&c).unwrap();
        let vars = d.segments[0].cond.vars();
        assert_eq!(vars, vec![&Var::Agg(1, WindowRef::Days(90)), &Var::Agg(0, WindowRef::Today), &Var::Agg(0, WindowRef::All)]);
        assert_eq!(d.horizon_days, 120);
        assert_eq!(d.stages.len(), 5);
        assert_ne!(d.aggregations[0].key, d.aggregations[1].key);
        assert!(d.aggregations[0].key.starts_with("orders@"));
    }
}
