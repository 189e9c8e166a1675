//! The config section trait and field-named validation errors.

use serde::de::DeserializeOwned;
use serde::Serialize;
use std::fmt;

/// A table of the config file owned by one part of Meridian (`[server]`, `[history]`…).
pub trait Section: Serialize + DeserializeOwned + Default + fmt::Debug {
    /// Its table name in the config file (and the `MERIDIAN_<NAME>_` prefix of its
    /// environment variables).
    const NAME: &'static str;

    /// Keys whose values are secrets, masked when the effective config is printed.
    const SECRETS: &'static [&'static str] = &[];

    /// Checks values the types alone do not constrain; the error names the field.
    fn validate(&self) -> Result<(), FieldError> {
        Ok(())
    }
}

/// A setting with an unacceptable value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    /// Dotted key of the setting (`history.max_items`).
    pub field: String,
    /// What is wrong and what is accepted.
    pub message: String,
}

impl FieldError {
    /// An error of `field` (a key within its section).
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> FieldError {
        FieldError { field: field.into(), message: message.into() }
    }

    /// The same error with the field prefixed by its section's name.
    pub fn in_section(self, section: &str) -> FieldError {
        FieldError { field: format!("{section}.{}", self.field), message: self.message }
    }
}

/// `Ok` when `condition` holds, else an error of `field`.
pub fn check(condition: bool, field: &str, message: impl FnOnce() -> String) -> Result<(), FieldError> {
    if condition {
        Ok(())
    } else {
        Err(FieldError::new(field, message()))
    }
}

/// `Ok` when `min <= value <= max`, else an error of `field` naming the range.
pub fn check_range<T: PartialOrd + fmt::Display>(field: &str, value: T, min: T, max: T) -> Result<(), FieldError> {
    if value >= min && value <= max {
        Ok(())
    } else {
        Err(FieldError::new(field, format!("{value} is out of range; use {min} to {max}")))
    }
}
