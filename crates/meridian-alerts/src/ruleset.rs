//! The rules of every app with optimistic concurrency: each change names the version it
//! was made from, and a change from a stale version is refused (no lost update).

use crate::rule::{Rule, RuleError, RuleErrorCode, RuleId};
use meridian_event::AppId;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Why a change to a [`RuleSet`] is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleSetError {
    /// The rule is invalid (names the field).
    #[error("invalid rule: {0}")]
    Invalid(#[from] RuleError),
    /// No rule of that id.
    #[error("no rule {0:?}")]
    NotFound(RuleId),
    /// A rule of that id exists already.
    #[error("rule {0:?} exists already")]
    AlreadyExists(RuleId),
    /// The change was made from an older version than the current one: someone else
    /// changed the rule in between. Re-read it and apply the change again.
    #[error("rule {id:?} is at version {current}, the change was made from version {expected}; re-read the rule and try again")]
    StaleVersion {
        /// The rule.
        id: RuleId,
        /// The version the caller had.
        expected: u64,
        /// The version it is at.
        current: u64,
    },
}

impl RuleSetError {
    /// The stable code: `invalid` errors give their field's code, then `not_found`,
    /// `already_exists`, `stale_version`.
    pub fn code(&self) -> &'static str {
        match self {
            RuleSetError::Invalid(e) => e.code.as_str(),
            RuleSetError::NotFound(_) => "not_found",
            RuleSetError::AlreadyExists(_) => "already_exists",
            RuleSetError::StaleVersion { .. } => "stale_version",
        }
    }
}

/// Every rule, by id. Serde, so the server can store it as it is; every change returns the
/// rule as stored (with its new version), which is what the engines are then given.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RuleSet {
    rules: BTreeMap<RuleId, Rule>,
}

impl RuleSet {
    /// No rules.
    pub fn new() -> RuleSet {
        RuleSet::default()
    }

    /// Rules as they were stored (with their versions), e.g. read back at start.
    pub fn restore(rules: impl IntoIterator<Item = Rule>) -> RuleSet {
        RuleSet { rules: rules.into_iter().map(|rule| (rule.id.clone(), rule)).collect() }
    }

    /// The rule `id`.
    pub fn get(&self, id: &RuleId) -> Option<&Rule> {
        self.rules.get(id)
    }

    /// Every rule, by id.
    pub fn iter(&self) -> impl Iterator<Item = &Rule> {
        self.rules.values()
    }

    /// The rules of `app`, by id.
    pub fn for_app<'a>(&'a self, app: &'a AppId) -> impl Iterator<Item = &'a Rule> + 'a {
        self.rules.values().filter(move |rule| &rule.app == app)
    }

    /// How many rules.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Adds a new rule at version 1 (whatever version it carries).
    pub fn create(&mut self, mut rule: Rule) -> Result<&Rule, RuleSetError> {
        rule.validate()?;
        if self.rules.contains_key(&rule.id) {
            return Err(RuleSetError::AlreadyExists(rule.id));
        }
        rule.version = 1;
        let id = rule.id.clone();
        Ok(self.rules.entry(id).or_insert(rule))
    }

    /// Replaces rule `rule.id`, which must be at `expected_version`; the stored rule gets
    /// the next version. The app of a rule cannot change.
    pub fn update(&mut self, mut rule: Rule, expected_version: u64) -> Result<&Rule, RuleSetError> {
        rule.validate()?;
        let current = self.current(&rule.id, expected_version)?;
        if current.app != rule.app {
            return Err(RuleError::new("app", RuleErrorCode::Immutable, format!("rule {} belongs to app {}; create a new rule for another app", rule.id, current.app)).into());
        }
        rule.version = current.version + 1;
        let slot = self.rules.get_mut(&rule.id).ok_or_else(|| RuleSetError::NotFound(rule.id.clone()))?;
        *slot = rule;
        Ok(slot)
    }

    /// Pauses (`true`) or resumes a rule at `expected_version`.
    pub fn set_paused(&mut self, id: &RuleId, paused: bool, expected_version: u64) -> Result<&Rule, RuleSetError> {
        self.current(id, expected_version)?;
        let rule = self.rules.get_mut(id).ok_or_else(|| RuleSetError::NotFound(id.clone()))?;
        rule.paused = paused;
        rule.version += 1;
        Ok(rule)
    }

    /// Deletes a rule at `expected_version`, returning it.
    pub fn delete(&mut self, id: &RuleId, expected_version: u64) -> Result<Rule, RuleSetError> {
        self.current(id, expected_version)?;
        self.rules.remove(id).ok_or_else(|| RuleSetError::NotFound(id.clone()))
    }

    fn current(&self, id: &RuleId, expected_version: u64) -> Result<&Rule, RuleSetError> {
        let current = self.rules.get(id).ok_or_else(|| RuleSetError::NotFound(id.clone()))?;
        if current.version != expected_version {
            return Err(RuleSetError::StaleVersion { id: id.clone(), expected: expected_version, current: current.version });
        }
        Ok(current)
    }
}
