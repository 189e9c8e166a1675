//! Stable, machine-readable error codes for rejected events.

use std::fmt;

/// A stable error code. The string form (`as_str`) is part of the public API: clients
/// match on it, so variants may be added but never renamed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// The event is not valid JSON (or not valid UTF-8).
    InvalidJson,
    /// The event bytes are not valid UTF-8.
    InvalidUtf8,
    /// The event is JSON but not an object.
    NotAnObject,
    /// A field has the wrong JSON type.
    InvalidType,
    /// A required field is absent.
    MissingField,
    /// Neither `user` nor `device` is present.
    MissingIdentity,
    /// A field has the right type but an invalid value.
    InvalidField,
    /// A string field is longer than allowed.
    FieldTooLong,
    /// The time could not be parsed in any accepted format.
    InvalidTimestamp,
    /// The event time is further in the future than the policy allows.
    TimestampTooFarFuture,
    /// The event time is further in the past than the policy allows.
    TimestampTooFarPast,
    /// The encoded event is larger than the per-event limit.
    EventTooLarge,
    /// The event id was already accepted within the de-duplication window.
    DuplicateEvent,
    /// A pipeline filter or transformer rejected the event.
    Filtered,
    /// A pipeline transformer failed on the event.
    TransformFailed,
}

impl ErrorCode {
    /// The stable snake_case code.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidJson => "invalid_json",
            ErrorCode::InvalidUtf8 => "invalid_utf8",
            ErrorCode::NotAnObject => "not_an_object",
            ErrorCode::InvalidType => "invalid_type",
            ErrorCode::MissingField => "missing_field",
            ErrorCode::MissingIdentity => "missing_identity",
            ErrorCode::InvalidField => "invalid_field",
            ErrorCode::FieldTooLong => "field_too_long",
            ErrorCode::InvalidTimestamp => "invalid_timestamp",
            ErrorCode::TimestampTooFarFuture => "timestamp_too_far_future",
            ErrorCode::TimestampTooFarPast => "timestamp_too_far_past",
            ErrorCode::EventTooLarge => "event_too_large",
            ErrorCode::DuplicateEvent => "duplicate_event",
            ErrorCode::Filtered => "filtered",
            ErrorCode::TransformFailed => "transform_failed",
        }
    }

    /// Parses a code back from its string form.
    pub fn from_str_code(code: &str) -> Option<ErrorCode> {
        ALL_CODES.iter().copied().find(|c| c.as_str() == code)
    }
}

const ALL_CODES: [ErrorCode; 15] = [
    ErrorCode::InvalidJson,
    ErrorCode::InvalidUtf8,
    ErrorCode::NotAnObject,
    ErrorCode::InvalidType,
    ErrorCode::MissingField,
    ErrorCode::MissingIdentity,
    ErrorCode::InvalidField,
    ErrorCode::FieldTooLong,
    ErrorCode::InvalidTimestamp,
    ErrorCode::TimestampTooFarFuture,
    ErrorCode::TimestampTooFarPast,
    ErrorCode::EventTooLarge,
    ErrorCode::DuplicateEvent,
    ErrorCode::Filtered,
    ErrorCode::TransformFailed,
];

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why one event was rejected: a stable code, the offending field (dotted path) and a
/// human message that says what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct EventError {
    /// Stable code.
    pub code: ErrorCode,
    /// Dotted path of the field at fault, if one is.
    pub field: Option<String>,
    /// Human-readable message, lowercase, no trailing period.
    pub message: String,
}

impl EventError {
    /// A new error about `field`.
    pub fn field(code: ErrorCode, field: impl Into<String>, message: impl Into<String>) -> Self {
        EventError { code, field: Some(field.into()), message: message.into() }
    }

    /// A new error about the whole event.
    pub fn whole(code: ErrorCode, message: impl Into<String>) -> Self {
        EventError { code, field: None, message: message.into() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for code in ALL_CODES {
            assert!(seen.insert(code.as_str()), "duplicate code {code}");
            assert_eq!(ErrorCode::from_str_code(code.as_str()), Some(code));
        }
        assert_eq!(ErrorCode::from_str_code("nope"), None);
    }
}
