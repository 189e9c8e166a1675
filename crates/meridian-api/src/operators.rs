//! Operators (human accounts of the console) and their sessions.

use crate::apps::Grant;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// `POST /v1/session`: sign in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    /// Operator login.
    pub login: String,
    /// Password.
    pub password: String,
}

/// The signed-in operator's session (the token itself is only in the cookie).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SessionView {
    /// Operator login.
    pub login: String,
    /// Name shown in the console.
    pub display_name: String,
    /// Roles per app or global.
    pub grants: Vec<Grant>,
    /// Send it as `X-CSRF-Token` on every state-changing request made with the cookie.
    pub csrf_token: String,
    /// The session ends then however active, ms since the epoch.
    pub expires_ms: i64,
}

/// An operator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct OperatorView {
    /// Login.
    pub login: String,
    /// Name shown in the console.
    pub display_name: String,
    /// Roles per app or global.
    pub grants: Vec<Grant>,
    /// A disabled operator cannot sign in.
    pub disabled: bool,
    /// Creation time, ms since the epoch.
    pub created_ms: i64,
}

/// `GET /v1/operators`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct OperatorList {
    /// Every operator, by login.
    pub operators: Vec<OperatorView>,
}

/// `POST /v1/operators`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateOperator {
    /// Login: 1-64 of `[a-z0-9_.@-]`.
    #[schema(pattern = "^[a-z0-9_.@-]{1,64}$")]
    pub login: String,
    /// Name shown in the console (default: the login).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// At least 10 characters.
    #[schema(min_length = 10)]
    pub password: String,
    /// Roles per app or global.
    pub grants: Vec<Grant>,
}

/// `PATCH /v1/operators/{login}`: every field is optional.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateOperator {
    /// New display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// New roles (replace the old ones).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grants: Option<Vec<Grant>>,
    /// Disable (ends its sessions) or enable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled: Option<bool>,
    /// New password, at least 10 characters (ends its sessions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(min_length = 10)]
    pub password: Option<String>,
}
