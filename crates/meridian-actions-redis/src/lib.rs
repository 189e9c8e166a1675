//! The Redis profile store of the user action system ([`RedisProfileStore`]): one hash
//! per user (field = the [`ProfileStore`] field name, value = its bytes) and one sorted set
//! per app listing the users that have at least one field (score 0, member = user id, so
//! `ZRANGEBYLEX` pages them in byte order, like the embedded store).
//!
//! Keys, under a configurable prefix (`app` escaped, see [`RedisProfileStore::user_key`]):
//!
//! ```text
//! {prefix}{app}:u:{user}   hash: the user's fields
//! {prefix}{app}:users      sorted set: the app's users with at least one field
//! ```
//!
//! Writes: the store is not in the processors' state store, so `stage` declines and the
//! processor calls `apply` after its round has committed (from a redo record, so `apply`
//! may run twice for the same writes). `apply` folds the writes of each user into one
//! change (clear, fields to remove, fields to set: the same end state as applying them in
//! order) and sends one Lua script call per user ([`PROFILE_SCRIPT`]: DEL when clearing,
//! HDEL, HSET, then ZADD or ZREM the user in the app's set depending on whether the hash
//! still exists), every user's call in one pipeline: one round trip for a whole round.
//! Values are always full values, never increments, so applying twice is harmless. The
//! script is loaded once and called by EVALSHA, falling back to EVAL when the server has
//! lost its script cache.
//!
//! A round is not atomic across users (each user's script is): a reader may see some users
//! of a round applied and others not yet, which the redo record repairs after a crash.
//!
//! Redis Cluster is not supported: a user's script touches the user's hash and the app's
//! set, which need not be in the same slot.

use meridian_actions::{Error, Fields, ProfileStore, Result, UserKey, UserWrite};
use meridian_event::AppId;
use meridian_state::WriteBatch;
use parking_lot::Mutex;
use redis::{Client, Connection, ErrorKind, RedisError};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::time::Duration;

/// The per-user write script. KEYS[1] = the user's hash, KEYS[2] = the app's users set;
/// ARGV[1] = the user id, ARGV[2] = `1` to delete the hash first, ARGV[3] = n, the number
/// of fields to remove, ARGV[4 .. 3+n] = those fields, then field/value pairs to set.
/// Leaves the user in the app's set exactly when the hash still has a field. Calls HDEL
/// and HSET in slices (Lua's `unpack` is limited to about 8000 values).
pub const PROFILE_SCRIPT: &str = r#"
local n = tonumber(ARGV[3])
if ARGV[2] == '1' then redis.call('DEL', KEYS[1]) end
local last = 3 + n
local i = 4
while i <= last do
  local j = math.min(i + 3999, last)
  redis.call('HDEL', KEYS[1], unpack(ARGV, i, j))
  i = j + 1
end
i = last + 1
while i < #ARGV do
  local j = math.min(i + 3999, #ARGV)
  redis.call('HSET', KEYS[1], unpack(ARGV, i, j))
  i = j + 1
end
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('ZADD', KEYS[2], 0, ARGV[1])
else
  redis.call('ZREM', KEYS[2], ARGV[1])
end
return 1
"#;

/// Connections kept idle in the pool.
pub const POOL_IDLE: usize = 8;
/// How long `connect` (and every new pooled connection) waits for the server.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a command or pipeline may wait for its answer before the call fails.
pub const IO_TIMEOUT: Duration = Duration::from_secs(30);

/// The Redis profile store (see the crate docs).
pub struct RedisProfileStore {
    client: Client,
    /// The URL without its password, for messages.
    shown_url: String,
    prefix: Vec<u8>,
    script_sha: String,
    pool: Mutex<Vec<Connection>>,
}

impl fmt::Debug for RedisProfileStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisProfileStore")
            .field("url", &self.shown_url)
            .field("prefix", &String::from_utf8_lossy(&self.prefix))
            .field("script_sha", &self.script_sha)
            .finish()
    }
}

/// `url` with any user info replaced by `***`, so messages never show a password.
fn redact(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else { return url.to_owned() };
    let rest = &url[scheme_end..];
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{}***@{}", &url[..scheme_end], &rest[at + 1..]),
        None => url.to_owned(),
    }
}

/// The app's part of a key: `%` and `:` percent-escaped, so it never contains `:` and
/// distinct apps stay distinct even if app ids ever allow those characters (today's
/// `[a-z0-9_.-]` ids are unchanged by it).
fn escape_app(app: &str, out: &mut Vec<u8>) {
    for b in app.bytes() {
        match b {
            b'%' => out.extend_from_slice(b"%25"),
            b':' => out.extend_from_slice(b"%3A"),
            _ => out.push(b),
        }
    }
}

/// `*`, `?`, `[`, `]` and `\` escaped for a SCAN MATCH pattern.
fn glob_escape(literal: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(literal.len() + 1);
    for &b in literal {
        if matches!(b, b'*' | b'?' | b'[' | b']' | b'\\') {
            out.push(b'\\');
        }
        out.push(b);
    }
    out
}

/// One user's writes of an `apply`, folded: delete the hash when `clear`, then remove
/// `remove`, then set `set` — the same end state as applying the writes in order.
#[derive(Debug, Default, PartialEq, Eq)]
struct Change {
    clear: bool,
    remove: BTreeSet<String>,
    set: BTreeMap<String, Vec<u8>>,
}

impl Change {
    fn fold(&mut self, w: &UserWrite) {
        if w.clear {
            *self = Change { clear: true, ..Change::default() };
        }
        for f in &w.remove {
            self.set.remove(f);
            // After a clear the field is gone anyway.
            if !self.clear {
                self.remove.insert(f.clone());
            }
        }
        for (f, v) in &w.set {
            self.set.insert(f.clone(), v.clone());
        }
    }

    fn is_noop(&self) -> bool {
        !self.clear && self.remove.is_empty() && self.set.is_empty()
    }
}

/// `writes` folded per user, users in order of first appearance; writes without a user
/// and users whose writes change nothing are left out.
fn fold_writes(writes: &[UserWrite]) -> Vec<(&UserKey, Change)> {
    let mut order: Vec<(&UserKey, Change)> = Vec::new();
    let mut index: HashMap<&UserKey, usize> = HashMap::new();
    for w in writes {
        let Some(user) = &w.user else { continue };
        let i = *index.entry(user).or_insert_with(|| {
            order.push((user, Change::default()));
            order.len() - 1
        });
        order[i].1.fold(w);
    }
    order.retain(|(_, c)| !c.is_noop());
    order
}

impl RedisProfileStore {
    /// Connects to `url` (e.g. `redis://127.0.0.1:6379`), keeping keys under `prefix`, and
    /// loads the write script. Fails within [`CONNECT_TIMEOUT`] when the server is
    /// unreachable. Stores sharing a server need prefixes that are not prefixes of each
    /// other.
    pub fn connect(url: &str, prefix: &str) -> Result<RedisProfileStore> {
        let shown_url = redact(url);
        let client = Client::open(url).map_err(|e| Error::Backend(format!("redis: invalid URL {shown_url}: {e}")))?;
        let mut con = client
            .get_connection_with_timeout(CONNECT_TIMEOUT)
            .map_err(|e| Error::Backend(format!("redis at {shown_url} is unreachable: {e}")))?;
        set_timeouts(&con).map_err(|e| Error::Backend(format!("redis at {shown_url}: {e}")))?;
        let script_sha: String = redis::cmd("SCRIPT")
            .arg("LOAD")
            .arg(PROFILE_SCRIPT)
            .query(&mut con)
            .map_err(|e| Error::Backend(format!("redis at {shown_url}: cannot load the profile script: {e}")))?;
        Ok(RedisProfileStore { client, shown_url, prefix: prefix.as_bytes().to_vec(), script_sha, pool: Mutex::new(vec![con]) })
    }

    /// The key of a user's hash: prefix, escaped app, `:u:`, user id. The escaped app has
    /// no `:`, so the app ends at the first `:` after the prefix and user ids (which may
    /// contain `:`) cannot reach into another app's keys or the app's users set.
    pub fn user_key(&self, user: &UserKey) -> Vec<u8> {
        let mut k = Vec::with_capacity(self.prefix.len() + user.app.as_str().len() + 3 + user.user.len());
        k.extend_from_slice(&self.prefix);
        escape_app(user.app.as_str(), &mut k);
        k.extend_from_slice(b":u:");
        k.extend_from_slice(user.user.as_bytes());
        k
    }

    /// The key of an app's users set: prefix, escaped app, `:users`.
    pub fn users_key(&self, app: &AppId) -> Vec<u8> {
        let mut k = Vec::with_capacity(self.prefix.len() + app.as_str().len() + 6);
        k.extend_from_slice(&self.prefix);
        escape_app(app.as_str(), &mut k);
        k.extend_from_slice(b":users");
        k
    }

    fn error(&self, what: &str, e: RedisError) -> Error {
        Error::Backend(format!("redis at {}: {what}: {e}", self.shown_url))
    }

    fn with_con<T>(&self, what: &str, f: impl FnOnce(&mut Connection) -> redis::RedisResult<T>) -> Result<T> {
        let pooled = self.pool.lock().pop();
        let mut con = match pooled {
            Some(c) => c,
            None => {
                let con = self
                    .client
                    .get_connection_with_timeout(CONNECT_TIMEOUT)
                    .map_err(|e| Error::Backend(format!("redis at {} is unreachable: {e}", self.shown_url)))?;
                set_timeouts(&con).map_err(|e| self.error(what, e))?;
                con
            }
        };
        let out = f(&mut con);
        // A connection that failed on I/O (or timed out mid-answer) may hold a stale reply.
        if out.is_ok() || out.as_ref().is_err_and(|e| !e.is_io_error() && !e.is_connection_dropped() && !e.is_timeout()) {
            let mut pool = self.pool.lock();
            if pool.len() < POOL_IDLE {
                pool.push(con);
            }
        }
        out.map_err(|e| self.error(what, e))
    }

    fn pipeline(&self, changes: &[(&UserKey, Change)], by_sha: bool) -> redis::Pipeline {
        let mut pipe = redis::pipe();
        for (user, change) in changes {
            let cmd = if by_sha { pipe.cmd("EVALSHA").arg(&self.script_sha) } else { pipe.cmd("EVAL").arg(PROFILE_SCRIPT) };
            cmd.arg(2)
                .arg(self.user_key(user))
                .arg(self.users_key(&user.app))
                .arg(user.user.as_bytes())
                .arg(if change.clear { "1" } else { "0" })
                .arg(change.remove.len());
            for f in &change.remove {
                cmd.arg(f.as_bytes());
            }
            for (f, v) in &change.set {
                cmd.arg(f.as_bytes()).arg(v.as_slice());
            }
            cmd.ignore();
        }
        pipe
    }

    /// Deletes every key under this store's prefix (SCAN + DEL); returns how many.
    pub fn delete_all(&self) -> Result<u64> {
        let mut pattern = glob_escape(&self.prefix);
        pattern.push(b'*');
        self.with_con("delete all keys", |con| {
            let mut cursor: u64 = 0;
            let mut deleted = 0u64;
            loop {
                let (next, keys): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN").arg(cursor).arg("MATCH").arg(&pattern).arg("COUNT").arg(1000).query(con)?;
                if !keys.is_empty() {
                    let n: u64 = redis::cmd("DEL").arg(&keys).query(con)?;
                    deleted += n;
                }
                if next == 0 {
                    return Ok(deleted);
                }
                cursor = next;
            }
        })
    }
}

fn set_timeouts(con: &Connection) -> redis::RedisResult<()> {
    con.set_read_timeout(Some(IO_TIMEOUT))?;
    con.set_write_timeout(Some(IO_TIMEOUT))
}

impl ProfileStore for RedisProfileStore {
    fn read_many(&self, users: &[UserKey]) -> Result<Vec<Fields>> {
        if users.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for u in users {
            pipe.cmd("HGETALL").arg(self.user_key(u));
        }
        let rows: Vec<Vec<(Vec<u8>, Vec<u8>)>> = self.with_con("read profiles", |con| pipe.query(con))?;
        Ok(rows
            .into_iter()
            .map(|fields| {
                let mut fields: Fields = fields.into_iter().map(|(f, v)| (String::from_utf8_lossy(&f).into_owned(), v)).collect();
                // Field order like the embedded store's (and stable for callers).
                fields.sort_unstable_by(|a, b| a.0.cmp(&b.0));
                fields
            })
            .collect())
    }

    fn read_field(&self, user: &UserKey, field: &str) -> Result<Option<Vec<u8>>> {
        let key = self.user_key(user);
        self.with_con("read a profile field", |con| redis::cmd("HGET").arg(&key).arg(field.as_bytes()).query(con))
    }

    fn stage(&self, _batch: &mut WriteBatch, _writes: &mut [UserWrite]) -> bool {
        false
    }

    fn apply(&self, writes: &[UserWrite]) -> Result<()> {
        let changes = fold_writes(writes);
        if changes.is_empty() {
            return Ok(());
        }
        self.with_con("apply profile writes", |con| match self.pipeline(&changes, true).query::<()>(con) {
            Err(e) if e.kind() == ErrorKind::NoScriptError => {
                // The server lost its script cache (restart, SCRIPT FLUSH): EVAL carries the
                // script and caches it again. Users already written are written again
                // harmlessly (full values only).
                tracing::info!("redis lost the profile script; re-sending it with EVAL");
                self.pipeline(&changes, false).query::<()>(con)
            }
            other => other,
        })
    }

    fn users(&self, app: &AppId, after: Option<&str>, limit: usize) -> Result<Vec<String>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let key = self.users_key(app);
        let min: Vec<u8> = match after {
            Some(after) => [b"(".as_slice(), after.as_bytes()].concat(),
            None => b"-".to_vec(),
        };
        let count = i64::try_from(limit).unwrap_or(i64::MAX);
        let members: Vec<Vec<u8>> =
            self.with_con("list users", |con| redis::cmd("ZRANGEBYLEX").arg(&key).arg(&min).arg("+").arg("LIMIT").arg(0).arg(count).query(con))?;
        Ok(members.into_iter().map(|m| String::from_utf8_lossy(&m).into_owned()).collect())
    }

    fn backend(&self) -> &'static str {
        "redis"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use redis::Arg;
    use std::collections::BTreeMap as Map;

    fn offline_store() -> RedisProfileStore {
        // Client::open does not connect, so keys and the pipeline are testable offline.
        let client = Client::open("redis://127.0.0.1:1").unwrap();
        RedisProfileStore { client, shown_url: "redis://127.0.0.1:1".into(), prefix: b"p:".to_vec(), script_sha: "abc".into(), pool: Mutex::new(Vec::new()) }
    }

    fn user(app: &str, id: &str) -> UserKey {
        UserKey::new(AppId::new(app).unwrap(), id)
    }

    fn args(cmd: &redis::Cmd) -> Vec<Vec<u8>> {
        cmd.args_iter()
            .map(|a| match a {
                Arg::Simple(b) => b.to_vec(),
                Arg::Cursor => b"<cursor>".to_vec(),
            })
            .collect()
    }

    #[test]
    fn keys_keep_apps_users_and_the_users_set_apart() {
        let s = offline_store();
        assert_eq!(s.user_key(&user("shop", "u:1")), b"p:shop:u:u:1");
        assert_eq!(s.users_key(&AppId::new("shop").unwrap()), b"p:shop:users");
        // Ids shaped like other keys' tails stay distinct.
        let keys = [
            s.user_key(&user("shop", "sers")),
            s.user_key(&user("shop", "u")),
            s.user_key(&user("shop", "u:u")),
            s.user_key(&user("shop.u", "u")),
            s.user_key(&user("shop", ":users")),
            s.users_key(&AppId::new("shop").unwrap()),
            s.users_key(&AppId::new("shop.u").unwrap()),
        ];
        let distinct: BTreeSet<&Vec<u8>> = keys.iter().collect();
        assert_eq!(distinct.len(), keys.len());
        let mut escaped = Vec::new();
        escape_app("a:b%c", &mut escaped);
        assert_eq!(escaped, b"a%3Ab%25c", "':' and '%' escaped, should app ids ever allow them");
    }

    #[test]
    fn scan_patterns_and_messages_escape_what_they_must() {
        assert_eq!(glob_escape(b"a*b?[c]\\:"), b"a\\*b\\?\\[c\\]\\\\:");
        assert_eq!(redact("redis://:secret@host:6379/0"), "redis://***@host:6379/0");
        assert_eq!(redact("redis://user:pw@host"), "redis://***@host");
        assert_eq!(redact("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
    }

    /// Applies writes in order to a model of hashes (app/user -> field -> value).
    fn model_apply(model: &mut Map<UserKey, Map<String, Vec<u8>>>, writes: &[UserWrite]) {
        for w in writes {
            let Some(u) = &w.user else { continue };
            let h = model.entry(u.clone()).or_default();
            if w.clear {
                h.clear();
            }
            for f in &w.remove {
                h.remove(f);
            }
            for (f, v) in &w.set {
                h.insert(f.clone(), v.clone());
            }
        }
    }

    fn model_apply_folded(model: &mut Map<UserKey, Map<String, Vec<u8>>>, writes: &[UserWrite]) {
        for (u, c) in fold_writes(writes) {
            let h = model.entry(u.clone()).or_default();
            if c.clear {
                h.clear();
            }
            for f in &c.remove {
                h.remove(f);
            }
            for (f, v) in &c.set {
                h.insert(f.clone(), v.clone());
            }
        }
    }

    #[test]
    fn folding_a_users_writes_gives_the_same_end_state_as_applying_them_in_order() {
        let fields = ["m", "a:1", "a:2"];
        let users = [user("app", "x"), user("app", "y")];
        // Every sequence of three writes drawn from a small alphabet, on a seeded start.
        let mut alphabet = Vec::new();
        for (ui, u) in users.iter().enumerate() {
            for clear in [false, true] {
                for set_mask in 0..4u8 {
                    for rem_mask in 0..4u8 {
                        let pick = |mask: u8| fields.iter().enumerate().filter(move |(i, _)| mask & (1 << i) != 0).map(|(_, f)| f.to_string());
                        alphabet.push(UserWrite {
                            user: Some(u.clone()),
                            clear,
                            set: pick(set_mask).map(|f| (f.clone(), format!("{f}{ui}{set_mask}{rem_mask}").into_bytes())).collect(),
                            remove: pick(rem_mask).collect(),
                            scope: String::new(),
                            prepared: None,
                        });
                    }
                }
            }
        }
        let mut start: Map<UserKey, Map<String, Vec<u8>>> = Map::new();
        start.insert(users[0].clone(), fields.iter().map(|f| (f.to_string(), b"old".to_vec())).collect());
        let n = alphabet.len();
        for a in 0..n {
            for b in (0..n).step_by(3) {
                for c in (0..n).step_by(7) {
                    let writes = [alphabet[a].clone(), alphabet[b].clone(), UserWrite::default(), alphabet[c].clone()];
                    let mut expected = start.clone();
                    model_apply(&mut expected, &writes);
                    let mut got = start.clone();
                    model_apply_folded(&mut got, &writes);
                    expected.retain(|_, h| !h.is_empty());
                    got.retain(|_, h| !h.is_empty());
                    assert_eq!(got, expected, "{writes:?}");
                }
            }
        }
    }

    #[test]
    fn one_script_call_per_user_in_order_of_first_write() {
        let s = offline_store();
        let (a, b) = (user("shop", "a"), user("shop", "b:1"));
        let writes = [
            UserWrite { set: vec![("m".into(), b"1".to_vec())], ..UserWrite::new(b.clone()) },
            UserWrite { set: vec![("m".into(), b"2".to_vec())], remove: vec!["x".into()], ..UserWrite::new(a.clone()) },
            UserWrite { set: vec![("a:1".into(), b"3".to_vec())], remove: vec!["m".into()], ..UserWrite::new(b.clone()) },
            UserWrite::new(user("shop", "untouched")),
            UserWrite { user: None, clear: true, ..UserWrite::default() },
        ];
        let changes = fold_writes(&writes);
        let cmds: Vec<Vec<Vec<u8>>> = s.pipeline(&changes, true).cmd_iter().map(args).collect();
        let expect_b: Vec<&[u8]> = vec![b"EVALSHA", b"abc", b"2", b"p:shop:u:b:1", b"p:shop:users", b"b:1", b"0", b"1", b"m", b"a:1", b"3"];
        let expect_a: Vec<&[u8]> = vec![b"EVALSHA", b"abc", b"2", b"p:shop:u:a", b"p:shop:users", b"a", b"0", b"1", b"x", b"m", b"2"];
        assert_eq!(cmds, vec![expect_b.iter().map(|a| a.to_vec()).collect::<Vec<_>>(), expect_a.iter().map(|a| a.to_vec()).collect()]);
        let eval = s.pipeline(&changes[..1], false);
        let first = args(eval.cmd_iter().next().unwrap());
        assert_eq!(first[0], b"EVAL");
        assert_eq!(first[1], PROFILE_SCRIPT.as_bytes());
    }
}
