//! The 5W1H behaviour event: ids, validation with stable error codes and the log encoding.

mod codec;
mod erasure;
mod error;
mod event;
mod ids;
mod time;

pub use codec::{payload_id, DecodeError, CODEC_VERSION};
pub use erasure::{Erasure, LogEntry, SubjectKind, ERASURE_TAG};
pub use error::{ErrorCode, EventError};
pub use event::{is_semver_like, Context, Event, Target, ValidationPolicy, MAX_EVENT_BYTES, MAX_STRING_LEN};
pub use ids::{Action, AppId, DeviceId, EventId, IdError, TargetType, UserId};
pub use time::{Timestamp, ZoneOffset};

/// Result type of this crate.
pub type Result<T, E = EventError> = std::result::Result<T, E>;
