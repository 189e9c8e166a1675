//! Operator login sessions: password check with rate limits, random tokens stored only as
//! SHA-256 digests, absolute and idle expiry on an injected clock, CSRF tokens, logout,
//! revocation and purging.

use crate::audit::{Actor, NewAuditEntry};
use crate::operators::{Grant, Operator, OperatorId};
use crate::{Error, Result, Tenancy};
use meridian_state::WriteBatch;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Table of sessions: key = SHA-256 of the token, value = JSON session record.
pub const SESSIONS_TABLE: &str = "operator_sessions";

/// Longest client description kept with a session, in bytes.
const MAX_CLIENT_BYTES: usize = 128;

/// A session's secret token (`ms_` and 64 hex digits): the cookie value, shown once at
/// login. Its `Debug` hides it.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionToken(String);

impl SessionToken {
    /// Wraps a token presented by a client.
    pub fn new(token: impl Into<String>) -> SessionToken {
        SessionToken(token.into())
    }

    /// The token's text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    fn generate() -> SessionToken {
        SessionToken(format!("ms_{}", crate::random_hex(32)))
    }
}

impl fmt::Debug for SessionToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionToken(…)")
    }
}

/// The session's CSRF token, required by the server on state-changing requests. Derived
/// from the session token (SHA-256 with a domain prefix), so it is never stored and cannot
/// be turned back into the session token. Its `Debug` hides it.
#[derive(Clone, PartialEq, Eq)]
pub struct CsrfToken(String);

impl CsrfToken {
    fn derive(token: &str) -> CsrfToken {
        CsrfToken(hex::encode(crate::sha256(&format!("meridian-csrf\0{token}"))))
    }

    /// The token's text, to hand to the console.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for CsrfToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CsrfToken(…)")
    }
}

/// A session's public id (the first 8 bytes of its token's digest, in hex): safe to log
/// and to show in the console.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SessionId(String);

impl SessionId {
    fn of(digest: &[u8; 32]) -> SessionId {
        SessionId(hex::encode(&digest[..8]))
    }

    /// The id's text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A live session with its operator's current name and grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorSession {
    /// Public id.
    pub session_id: SessionId,
    /// The operator.
    pub login: OperatorId,
    /// The operator's display name.
    pub display_name: String,
    /// The operator's grants now (changes apply to open sessions at once).
    pub grants: Vec<Grant>,
    /// To be echoed by the console on state-changing requests.
    pub csrf_token: CsrfToken,
    /// Login time, ms since the epoch.
    pub created_ms: i64,
    /// Last recorded use (recorded at most once per refresh interval).
    pub last_seen_ms: i64,
    /// Absolute expiry: the session ends then however active.
    pub expires_ms: i64,
    /// Idle expiry: the session ends then unless used (and refreshed) before.
    pub idle_expires_ms: i64,
}

impl OperatorSession {
    /// Whether `presented` is this session's CSRF token (compares digests, so the time
    /// taken reveals nothing about the token).
    pub fn csrf_matches(&self, presented: &str) -> bool {
        crate::sha256(presented) == crate::sha256(self.csrf_token.as_str())
    }
}

/// A session as the console lists it (no secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionInfo {
    /// Public id.
    pub session_id: SessionId,
    /// The operator.
    pub login: OperatorId,
    /// The client address given at login.
    pub client: String,
    /// Login time.
    pub created_ms: i64,
    /// Last recorded use.
    pub last_seen_ms: i64,
    /// Absolute expiry.
    pub expires_ms: i64,
}

/// What is stored per session (under the token's digest).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct StoredSession {
    pub(crate) login: OperatorId,
    pub(crate) client: String,
    pub(crate) created_ms: i64,
    pub(crate) last_seen_ms: i64,
    pub(crate) expires_ms: i64,
}

fn bounded_client(client: &str) -> String {
    let mut end = client.len().min(MAX_CLIENT_BYTES);
    while !client.is_char_boundary(end) {
        end -= 1;
    }
    client[..end].chars().filter(|c| !c.is_control()).collect()
}

impl Tenancy {
    /// Logs an operator in: checks the rate limits, then the password (an unknown login
    /// costs the same argon2 verification and gives the same [`Error::InvalidCredentials`]
    /// as a wrong password), refuses disabled operators, and stores a new session (only
    /// its token's digest) with its audit entry. `client` identifies the caller for the
    /// per-client limit (its IP address as the server sees it). Runs argon2: call from a
    /// blocking thread.
    pub fn login(&self, login: &str, password: &str, client: &str, now_ms: i64) -> Result<(SessionToken, OperatorSession)> {
        self.limiter.begin_attempt(login, client, now_ms).map_err(|retry_after_secs| {
            tracing::warn!(client = %bounded_client(client), retry_after_secs, "login refused: rate limit");
            Error::RateLimited { retry_after_secs }
        })?;
        let candidate = OperatorId::new(login).ok().and_then(|id| self.operators.read().get(&id).cloned());
        let verified = match &candidate {
            Some(stored) => self.hasher.verify(password, &stored.password_hash),
            None => self.hasher.verify_dummy(password),
        };
        let Some(stored) = candidate.filter(|_| verified) else {
            self.limiter.record_failure(login, client, now_ms);
            tracing::warn!(client = %bounded_client(client), "login failed: wrong login or password");
            return Err(Error::InvalidCredentials);
        };
        if stored.operator.disabled {
            return Err(Error::OperatorDisabled);
        }
        let token = SessionToken::generate();
        let digest = crate::sha256(token.as_str());
        let record = StoredSession {
            login: stored.operator.login.clone(),
            client: bounded_client(client),
            created_ms: now_ms,
            last_seen_ms: now_ms,
            expires_ms: now_ms.saturating_add(self.config.absolute_ttl_ms()),
        };
        let _writes = self.writes.lock();
        // The operator may have been disabled or given a new password while argon2 ran.
        let current = self.operators.read().get(&stored.operator.login).cloned();
        let Some(current) = current.filter(|c| c.password_hash == stored.password_hash) else {
            return Err(Error::InvalidCredentials);
        };
        if current.operator.disabled {
            return Err(Error::OperatorDisabled);
        }
        let session_id = SessionId::of(&digest);
        let mut batch = WriteBatch::new();
        batch.put(SESSIONS_TABLE, digest.to_vec(), crate::to_json(&record));
        self.audit.record_in(
            batch,
            NewAuditEntry::new(Actor::Operator { login: record.login.clone() }, "session.login", session_id.as_str())
                .after(serde_json::json!({"client": record.client, "expires_ms": record.expires_ms})),
        )?;
        self.sessions.write().insert(digest, record.clone());
        let session = self.build_session(&token, &digest, &record, &current.operator);
        Ok((token, session))
    }

    /// The live session of a token, with its operator's current grants. Reads memory only,
    /// except that the last use is written at most once per refresh interval.
    pub fn session(&self, token: &str, now_ms: i64) -> Result<OperatorSession> {
        let digest = crate::sha256(token);
        let record = self.sessions.read().get(&digest).cloned().ok_or(Error::UnknownSession)?;
        if self.is_expired(&record, now_ms) {
            return Err(Error::SessionExpired);
        }
        let operator = self.operator(&record.login).filter(|operator| !operator.disabled).ok_or(Error::UnknownSession)?;
        let record = if now_ms - record.last_seen_ms >= self.config.refresh_interval_ms() { self.refresh(&digest, now_ms)? } else { record };
        Ok(self.build_session(&SessionToken::new(token), &digest, &record, &operator))
    }

    /// Ends the session of `token`; returns whether there was one.
    pub fn logout(&self, token: &str) -> Result<bool> {
        let digest = crate::sha256(token);
        let _writes = self.writes.lock();
        let Some(record) = self.sessions.read().get(&digest).cloned() else {
            return Ok(false);
        };
        let mut batch = WriteBatch::new();
        batch.delete(SESSIONS_TABLE, digest.to_vec());
        self.audit.record_in(batch, NewAuditEntry::new(Actor::Operator { login: record.login }, "session.logout", SessionId::of(&digest).as_str()))?;
        self.forget_sessions(&[digest]);
        Ok(true)
    }

    /// Ends every session of an operator (e.g. a lost laptop); returns how many.
    pub fn revoke_sessions(&self, actor: &Actor, login: &OperatorId) -> Result<usize> {
        let _writes = self.writes.lock();
        if !self.operators.read().contains_key(login) {
            return Err(Error::UnknownOperator(login.to_string()));
        }
        let digests = self.session_digests_of(login);
        let mut batch = WriteBatch::new();
        for digest in &digests {
            batch.delete(SESSIONS_TABLE, digest.to_vec());
        }
        self.audit.record_in(
            batch,
            NewAuditEntry::new(actor.clone(), "operator.sessions_revoke", login.as_str()).after(serde_json::json!({"sessions_revoked": digests.len()})),
        )?;
        self.forget_sessions(&digests);
        Ok(digests.len())
    }

    /// The sessions of an operator, oldest first (expired ones too, until purged).
    pub fn sessions_of(&self, login: &OperatorId) -> Vec<SessionInfo> {
        let mut sessions: Vec<SessionInfo> = self
            .sessions
            .read()
            .iter()
            .filter(|(_, record)| &record.login == login)
            .map(|(digest, record)| SessionInfo {
                session_id: SessionId::of(digest),
                login: record.login.clone(),
                client: record.client.clone(),
                created_ms: record.created_ms,
                last_seen_ms: record.last_seen_ms,
                expires_ms: record.expires_ms,
            })
            .collect();
        sessions.sort_by(|a, b| (a.created_ms, &a.session_id).cmp(&(b.created_ms, &b.session_id)));
        sessions
    }

    /// Deletes every session past its absolute or idle expiry at `now_ms` (one commit);
    /// returns how many. Call it periodically (e.g. hourly).
    pub fn purge_expired_sessions(&self, now_ms: i64) -> Result<usize> {
        let _writes = self.writes.lock();
        let expired: Vec<[u8; 32]> = self.sessions.read().iter().filter(|(_, record)| self.is_expired(record, now_ms)).map(|(digest, _)| *digest).collect();
        if expired.is_empty() {
            return Ok(0);
        }
        let mut batch = WriteBatch::new();
        for digest in &expired {
            batch.delete(SESSIONS_TABLE, digest.to_vec());
        }
        self.store.commit(batch)?;
        self.forget_sessions(&expired);
        Ok(expired.len())
    }

    fn is_expired(&self, record: &StoredSession, now_ms: i64) -> bool {
        now_ms >= record.expires_ms || now_ms >= record.last_seen_ms.saturating_add(self.config.idle_ttl_ms())
    }

    /// Records a use of the session at `now_ms`. A failed write is logged and the session
    /// goes on (its idle expiry then counts from the previous write).
    fn refresh(&self, digest: &[u8; 32], now_ms: i64) -> Result<StoredSession> {
        let _writes = self.writes.lock();
        // Logged out or revoked meanwhile: the write must not bring it back.
        let mut record = self.sessions.read().get(digest).cloned().ok_or(Error::UnknownSession)?;
        if now_ms <= record.last_seen_ms {
            return Ok(record);
        }
        record.last_seen_ms = now_ms;
        let mut batch = WriteBatch::new();
        batch.put(SESSIONS_TABLE, digest.to_vec(), crate::to_json(&record));
        match self.store.commit(batch) {
            Ok(()) => {
                self.sessions.write().insert(*digest, record.clone());
                Ok(record)
            }
            Err(e) => {
                tracing::warn!(error = %e, session_id = %SessionId::of(digest), "cannot record a session's last use; it may idle out early");
                self.sessions.read().get(digest).cloned().ok_or(Error::UnknownSession)
            }
        }
    }

    fn build_session(&self, token: &SessionToken, digest: &[u8; 32], record: &StoredSession, operator: &Operator) -> OperatorSession {
        OperatorSession {
            session_id: SessionId::of(digest),
            login: operator.login.clone(),
            display_name: operator.display_name.clone(),
            grants: operator.grants.clone(),
            csrf_token: CsrfToken::derive(token.as_str()),
            created_ms: record.created_ms,
            last_seen_ms: record.last_seen_ms,
            expires_ms: record.expires_ms,
            idle_expires_ms: record.last_seen_ms.saturating_add(self.config.idle_ttl_ms()).min(record.expires_ms),
        }
    }

    pub(crate) fn session_digests_of(&self, login: &OperatorId) -> Vec<[u8; 32]> {
        self.sessions.read().iter().filter(|(_, record)| &record.login == login).map(|(digest, _)| *digest).collect()
    }

    /// Drops sessions from memory after their deletion committed.
    pub(crate) fn forget_sessions(&self, digests: &[[u8; 32]]) {
        if digests.is_empty() {
            return;
        }
        let mut sessions = self.sessions.write();
        for digest in digests {
            sessions.remove(digest);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_do_not_show_in_debug_output() {
        let token = SessionToken::generate();
        let csrf = CsrfToken::derive(token.as_str());
        assert!(token.as_str().starts_with("ms_") && token.as_str().len() == 67);
        assert!(!format!("{token:?}").contains(&token.as_str()[3..]));
        assert!(!format!("{csrf:?}").contains(csrf.as_str()));
        assert_ne!(csrf.as_str(), token.as_str());
        assert_eq!(csrf, CsrfToken::derive(token.as_str()), "derived, so the same for the same session");
    }

    #[test]
    fn client_descriptions_are_bounded_and_printable() {
        assert_eq!(bounded_client("10.0.0.1"), "10.0.0.1");
        assert_eq!(bounded_client("a\nb"), "ab");
        assert!(bounded_client(&"é".repeat(200)).len() <= MAX_CLIENT_BYTES);
    }
}
