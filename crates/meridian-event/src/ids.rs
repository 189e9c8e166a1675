//! Newtype ids, so ids of different kinds cannot be mixed.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Why a string is not a valid id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// The id is empty.
    #[error("{kind} must not be empty")]
    Empty {
        /// Kind of id.
        kind: &'static str,
    },
    /// The id is too long.
    #[error("{kind} is {len} bytes long, the limit is {max}")]
    TooLong {
        /// Kind of id.
        kind: &'static str,
        /// Actual length.
        len: usize,
        /// Limit.
        max: usize,
    },
    /// The id has a character outside its alphabet.
    #[error("{kind} {value:?} may only contain {alphabet}")]
    BadChar {
        /// Kind of id.
        kind: &'static str,
        /// Offending value (truncated).
        value: String,
        /// Allowed alphabet, for the message.
        alphabet: &'static str,
    },
}

fn check(kind: &'static str, value: &str, max: usize, strict: bool) -> Result<(), IdError> {
    if value.is_empty() {
        return Err(IdError::Empty { kind });
    }
    if value.len() > max {
        return Err(IdError::TooLong { kind, len: value.len(), max });
    }
    let ok = if strict {
        value.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-' || b == b'.')
    } else {
        !value.chars().any(|c| c.is_control())
    };
    if !ok {
        let shown: String = value.chars().take(40).collect();
        let alphabet = if strict { "lowercase ascii letters, digits, '_', '-' and '.'" } else { "printable characters" };
        return Err(IdError::BadChar { kind, value: shown, alphabet });
    }
    Ok(())
}

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident, $kind:literal, $max:expr, $strict:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Longest accepted id, in bytes.
            pub const MAX_LEN: usize = $max;

            /// Validates and wraps `value`.
            pub fn new(value: impl Into<String>) -> Result<Self, IdError> {
                let value = value.into();
                check($kind, &value, $max, $strict)?;
                Ok($name(value))
            }

            /// The id as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(value: String) -> Result<Self, IdError> {
                $name::new(value)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

string_id!(
    /// A tenant: every event, key and query belongs to one app. `[a-z0-9_.-]{1,64}`.
    AppId, "app id", 64, true
);
string_id!(
    /// A logged-in user's id.
    UserId, "user id", 128, false
);
string_id!(
    /// An anonymous device id.
    DeviceId, "device id", 128, false
);
string_id!(
    /// The client's event id, used to de-duplicate retries.
    EventId, "event id", 128, false
);
string_id!(
    /// What was done: view, click, order… An open set, `[a-z0-9_.-]{1,64}`.
    Action, "action", 64, true
);
string_id!(
    /// The kind of object acted on: sku, spu, shop, page… `[a-z0-9_.-]{1,64}`.
    TargetType, "target type", 64, true
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_ids_are_strict() {
        assert!(AppId::new("shop-1").is_ok());
        assert!(matches!(AppId::new(""), Err(IdError::Empty { .. })));
        assert!(matches!(AppId::new("Shop"), Err(IdError::BadChar { .. })));
        assert!(matches!(AppId::new("a".repeat(65)), Err(IdError::TooLong { len: 65, .. })));
    }

    #[test]
    fn user_ids_accept_unicode_but_not_controls() {
        assert!(UserId::new("用户42").is_ok());
        assert!(UserId::new("a\u{0}b").is_err());
    }

    #[test]
    fn serde_validates() {
        let ok: AppId = serde_json::from_str("\"demo\"").unwrap();
        assert_eq!(ok.as_str(), "demo");
        assert!(serde_json::from_str::<AppId>("\"BAD APP\"").is_err());
    }
}
