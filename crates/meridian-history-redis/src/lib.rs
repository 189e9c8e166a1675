//! The Redis hot tier of the browsing history: one sorted set per owner (member = SKU
//! id in decimal, score = view time in ms), updated by one atomic Lua script per owner
//! (ZADD GT, trim to N newest with ZREMRANGEBYRANK, PEXPIREAT), loaded once and invoked
//! with EVALSHA (falling back to loading it on NOSCRIPT). A batch of owners is one
//! pipeline: one round trip for a whole processor round.
//!
//! Expiry uses `PEXPIREAT now_ms + ttl` with the caller's clock, so the tier honours the
//! same injected time as the embedded one (and the conformance suite's TTL checks).
//!
//! The complete mark ([`meridian_history::hot::HotList::complete_in`]) is one more member
//! of the same sorted set: [`MARK_MEMBER`] with score `-(generation + 1)`, below every
//! view time, so it is rank 0 and trimming keeps it (ranks 1.. are trimmed to N). It
//! expires and is deleted with the list, at the cost of one member per marked owner.

use meridian_history::hot::{HotConfig, HotList, HotTier, OwnerUpdate};
use meridian_history::model::{sort_newest_first, Entry, OwnerKey};
use meridian_history::{Error, Result};
use parking_lot::Mutex;
use redis::{Client, Connection, ErrorKind, RedisError};
use std::fmt;

/// The update script: KEYS[1] = owner key; ARGV = N, expire-at ms, the mark's score or
/// an empty string, then score/member pairs. Adds with GT (a view never lowers a SKU's
/// time), sets or keeps the complete mark, keeps the N highest-scored views, sets the
/// expiry.
pub const UPDATE_SCRIPT: &str = r#"
if #ARGV < 5 then return 0 end
local n = tonumber(ARGV[1])
redis.call('ZADD', KEYS[1], 'GT', unpack(ARGV, 4))
local first = 0
if ARGV[3] ~= '' then
  redis.call('ZADD', KEYS[1], ARGV[3], 'c')
  first = 1
elseif redis.call('ZSCORE', KEYS[1], 'c') then
  first = 1
end
redis.call('ZREMRANGEBYRANK', KEYS[1], first, -(n + 1))
redis.call('PEXPIREAT', KEYS[1], ARGV[2])
return 1
"#;

/// The sorted-set member holding the complete mark (SKU members are decimal digits).
pub const MARK_MEMBER: &[u8] = b"c";

fn mark_score(generation: u32) -> i64 {
    -(i64::from(generation) + 1)
}

fn generation_of(score: f64) -> Option<u32> {
    u32::try_from(-(score as i64) - 1).ok()
}

/// Score/member pairs per script call (Lua's `unpack` limit is about 8000 values).
const MAX_PAIRS_PER_CALL: usize = 2000;
/// Connections kept idle in the pool.
pub const POOL_IDLE: usize = 8;

fn backend(e: RedisError) -> Error {
    Error::Backend(format!("redis: {e}"))
}

/// The Redis hot tier (see the crate docs).
pub struct RedisHotTier {
    client: Client,
    prefix: Vec<u8>,
    config: HotConfig,
    script_sha: String,
    pool: Mutex<Vec<Connection>>,
}

impl fmt::Debug for RedisHotTier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisHotTier")
            .field("prefix", &String::from_utf8_lossy(&self.prefix))
            .field("config", &self.config)
            .field("script_sha", &self.script_sha)
            .finish()
    }
}

impl RedisHotTier {
    /// Connects to `url` (e.g. `redis://127.0.0.1:6379`), keeping keys under `prefix`,
    /// and loads the update script.
    pub fn connect(url: &str, prefix: &str, config: HotConfig) -> Result<RedisHotTier> {
        let client = Client::open(url).map_err(backend)?;
        let mut con = client.get_connection_with_timeout(std::time::Duration::from_secs(2)).map_err(backend)?;
        let script_sha: String = redis::cmd("SCRIPT").arg("LOAD").arg(UPDATE_SCRIPT).query(&mut con).map_err(backend)?;
        Ok(RedisHotTier { client, prefix: prefix.as_bytes().to_vec(), config, script_sha, pool: Mutex::new(vec![con]) })
    }

    /// The key of an owner: prefix + 16 raw hash bytes.
    pub fn key(&self, owner: OwnerKey) -> Vec<u8> {
        let mut k = Vec::with_capacity(self.prefix.len() + 16);
        k.extend_from_slice(&self.prefix);
        k.extend_from_slice(&owner.to_bytes());
        k
    }

    fn with_con<T>(&self, f: impl FnOnce(&mut Connection) -> redis::RedisResult<T>) -> Result<T> {
        let pooled = self.pool.lock().pop();
        let mut con = match pooled {
            Some(c) => c,
            None => self.client.get_connection().map_err(backend)?,
        };
        let out = f(&mut con);
        if out.is_ok() || out.as_ref().is_err_and(|e| !e.is_io_error() && !e.is_connection_dropped()) {
            let mut pool = self.pool.lock();
            if pool.len() < POOL_IDLE {
                pool.push(con);
            }
        }
        out.map_err(backend)
    }

    fn pipeline(&self, updates: &[OwnerUpdate], now_ms: i64, by_sha: bool) -> redis::Pipeline {
        let mut pipe = redis::pipe();
        let expire_at = now_ms + self.config.ttl_ms;
        for u in updates {
            if u.entries.is_empty() {
                continue;
            }
            let key = self.key(u.owner);
            for chunk in u.entries.chunks(MAX_PAIRS_PER_CALL) {
                let cmd = if by_sha { pipe.cmd("EVALSHA").arg(&self.script_sha) } else { pipe.cmd("EVAL").arg(UPDATE_SCRIPT) };
                cmd.arg(1).arg(&key).arg(self.config.max_items).arg(expire_at);
                match u.complete_in {
                    Some(g) => cmd.arg(mark_score(g)),
                    None => cmd.arg(""),
                };
                for e in chunk {
                    cmd.arg(e.time_ms).arg(e.sku);
                }
                cmd.ignore();
            }
        }
        pipe
    }

    /// The naive update (for the benchmark only): per owner ZADD GT, ZCARD, ZREMRANGEBYRANK
    /// when over N, PEXPIREAT, each its own round trip. Not atomic: a reader can see a
    /// list longer than N or without expiry in between.
    pub fn record_naive(&self, updates: &[OwnerUpdate], now_ms: i64) -> Result<()> {
        let n = self.config.max_items as i64;
        let expire_at = now_ms + self.config.ttl_ms;
        self.with_con(|con| {
            for u in updates {
                if u.entries.is_empty() {
                    continue;
                }
                let key = self.key(u.owner);
                let mut zadd = redis::cmd("ZADD");
                zadd.arg(&key).arg("GT");
                for e in &u.entries {
                    zadd.arg(e.time_ms).arg(e.sku);
                }
                zadd.query::<()>(con)?;
                let card: i64 = redis::cmd("ZCARD").arg(&key).query(con)?;
                if card > n {
                    redis::cmd("ZREMRANGEBYRANK").arg(&key).arg(0).arg(-(n + 1)).query::<()>(con)?;
                }
                redis::cmd("PEXPIREAT").arg(&key).arg(expire_at).query::<()>(con)?;
            }
            Ok(())
        })
    }

    /// Deletes every key under this tier's prefix (SCAN + DEL); returns how many.
    pub fn delete_all(&self) -> Result<u64> {
        let mut pattern = self.prefix.clone();
        pattern.push(b'*');
        self.with_con(|con| {
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

    /// The server's `used_memory` (INFO memory), for measurements.
    pub fn used_memory(&self) -> Result<u64> {
        let info: String = self.with_con(|con| redis::cmd("INFO").arg("memory").query(con))?;
        info.lines()
            .find_map(|l| l.strip_prefix("used_memory:"))
            .and_then(|v| v.trim().parse().ok())
            .ok_or_else(|| Error::Backend("redis INFO memory has no used_memory".into()))
    }
}

impl HotTier for RedisHotTier {
    fn config(&self) -> HotConfig {
        self.config
    }

    fn record(&self, updates: &[OwnerUpdate], now_ms: i64) -> Result<()> {
        if updates.iter().all(|u| u.entries.is_empty()) {
            return Ok(());
        }
        self.with_con(|con| match self.pipeline(updates, now_ms, true).query::<()>(con) {
            Err(e) if is_noscript(&e) => {
                // The server lost its script cache (restart, SCRIPT FLUSH): EVAL carries
                // the script and caches it again. Owners already applied are re-applied
                // harmlessly (the update is idempotent).
                tracing::info!("redis lost the history script; re-sending it with EVAL");
                self.pipeline(updates, now_ms, false).query::<()>(con)
            }
            other => other,
        })
    }

    fn read(&self, owner: OwnerKey, _now_ms: i64) -> Result<Option<HotList>> {
        let key = self.key(owner);
        let rows: Vec<(Vec<u8>, f64)> = self.with_con(|con| redis::cmd("ZRANGE").arg(&key).arg(0).arg(-1).arg("REV").arg("WITHSCORES").query(con))?;
        if rows.is_empty() {
            return Ok(None);
        }
        let mut list = HotList { entries: Vec::with_capacity(rows.len()), complete_in: None };
        for (member, score) in rows {
            if member == MARK_MEMBER {
                list.complete_in = generation_of(score);
                continue;
            }
            let sku = std::str::from_utf8(&member).ok().and_then(|m| m.parse().ok()).ok_or_else(|| Error::Backend(format!("redis: key {} holds the non-SKU member {:?}", String::from_utf8_lossy(&key), String::from_utf8_lossy(&member))))?;
            list.entries.push(Entry { sku, time_ms: score as i64 });
        }
        sort_newest_first(&mut list.entries);
        Ok(Some(list))
    }

    fn remove_skus(&self, owner: OwnerKey, skus: &[u64]) -> Result<()> {
        if skus.is_empty() {
            return Ok(());
        }
        let key = self.key(owner);
        self.with_con(|con| redis::cmd("ZREM").arg(&key).arg(skus).query::<()>(con))
    }

    fn remove_owner(&self, owner: OwnerKey) -> Result<()> {
        let key = self.key(owner);
        self.with_con(|con| redis::cmd("DEL").arg(&key).query::<()>(con))
    }
}

/// Whether an error is Redis's "script not loaded" (exposed for tests).
pub fn is_noscript(e: &RedisError) -> bool {
    e.kind() == ErrorKind::NoScriptError
}

#[cfg(test)]
mod tests {
    use super::*;
    use redis::Arg;

    fn offline_tier() -> RedisHotTier {
        // Client::open does not connect, so the pipeline layout is testable offline.
        let client = Client::open("redis://127.0.0.1:1").unwrap();
        RedisHotTier { client, prefix: b"p:".to_vec(), config: HotConfig { max_items: 200, ttl_ms: 1000 }, script_sha: "abc".into(), pool: Mutex::new(Vec::new()) }
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
    fn one_evalsha_per_owner_chunk_with_n_expiry_and_pairs() {
        let tier = offline_tier();
        let owner = OwnerKey(0x0102_0304_0506_0708_090a_0b0c_0d0e_0f10);
        let key = tier.key(owner);
        assert_eq!(&key[..2], b"p:");
        assert_eq!(&key[2..], &owner.to_bytes());
        let big: Vec<Entry> = (0..4500u64).map(|i| Entry { sku: i, time_ms: 5000 + i as i64 }).collect();
        let updates = [
            OwnerUpdate::views(owner, vec![Entry { sku: 9, time_ms: 7000 }]),
            OwnerUpdate::views(OwnerKey(5), Vec::new()),
            OwnerUpdate { owner: OwnerKey(6), entries: big, complete_in: Some(4) },
        ];
        let pipe = tier.pipeline(&updates, 100, true);
        let cmds: Vec<Vec<Vec<u8>>> = pipe.cmd_iter().map(args).collect();
        assert_eq!(cmds.len(), 1 + 3, "one call per owner (chunked past 2000 pairs), none for empty updates");
        let first = &cmds[0];
        assert_eq!(first[0], b"EVALSHA");
        assert_eq!(first[1], b"abc");
        assert_eq!(first[2], b"1");
        assert_eq!(first[3], key);
        assert_eq!(first[4], b"200", "N");
        assert_eq!(first[5], b"1100", "expire at now + ttl");
        assert_eq!(first[6], b"", "no complete mark");
        assert_eq!(&first[7..], &[b"7000".to_vec(), b"9".to_vec()], "score, member");
        assert_eq!(cmds[1].len(), 7 + 2 * 2000);
        assert_eq!(cmds[1][6], b"-5", "the mark of generation 4 scores -5");
        assert_eq!(cmds[3].len(), 7 + 2 * 500);
        let eval = tier.pipeline(&updates[..1], 100, false);
        let first = args(eval.cmd_iter().next().unwrap());
        assert_eq!(first[0], b"EVAL");
        assert_eq!(first[1], UPDATE_SCRIPT.as_bytes());
    }

    #[test]
    fn mark_scores_sit_below_every_view_time_and_round_trip() {
        for g in [0, 1, 7, u32::MAX] {
            assert!(mark_score(g) < 0);
            assert_eq!(generation_of(mark_score(g) as f64), Some(g));
        }
    }
}
