//! De-duplication of client retries by `(app, event id)` within a time window.
//!
//! Two generations of 64-bit hashes: ids go into the current one; every half window the
//! previous generation is dropped and the current one becomes previous, so an id is
//! remembered for at least half a window and at most a whole one. Memory is bounded by
//! `max_entries`: when the current generation is full it rotates early (the effective
//! window shrinks, counted in `meridian_dedup_early_rotations_total`).

use parking_lot::Mutex;
use std::collections::HashSet;
use std::time::Duration;

/// The de-duplication hash of an event.
pub fn event_hash(app: &str, event_id: &str) -> u64 {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    h.update(app.as_bytes());
    h.update(&[0xff]);
    h.update(event_id.as_bytes());
    h.digest()
}

#[derive(Debug)]
struct Generations {
    current: HashSet<u64>,
    previous: HashSet<u64>,
    current_started_ms: i64,
}

/// Remembers recently accepted events.
#[derive(Debug)]
pub struct Deduplicator {
    half_window_ms: i64,
    max_entries: usize,
    state: Mutex<Generations>,
}

impl Deduplicator {
    /// Remembers ids for `window` (at least half of it), at most `max_entries` ids per generation.
    pub fn new(window: Duration, max_entries: usize, now_ms: i64) -> Deduplicator {
        Deduplicator {
            half_window_ms: (window.as_millis() as i64 / 2).max(1),
            max_entries: max_entries.max(1),
            state: Mutex::new(Generations { current: HashSet::new(), previous: HashSet::new(), current_started_ms: now_ms }),
        }
    }

    /// The full window in milliseconds.
    pub fn window_ms(&self) -> i64 {
        self.half_window_ms * 2
    }

    fn rotate_if_due(&self, g: &mut Generations, now_ms: i64) {
        if now_ms - g.current_started_ms >= 2 * self.half_window_ms {
            g.previous.clear();
            g.current.clear();
            g.current_started_ms = now_ms;
        } else if now_ms - g.current_started_ms >= self.half_window_ms || g.current.len() >= self.max_entries {
            if g.current.len() >= self.max_entries {
                metrics::counter!("meridian_dedup_early_rotations_total").increment(1);
            }
            g.previous = std::mem::take(&mut g.current);
            g.current_started_ms = now_ms;
        }
    }

    /// For each hash, true if it is new (and now remembered), false if it is a duplicate
    /// (also of an earlier hash in the same slice).
    pub fn check_and_insert(&self, hashes: &[u64], now_ms: i64) -> Vec<bool> {
        let mut g = self.state.lock();
        self.rotate_if_due(&mut g, now_ms);
        hashes
            .iter()
            .map(|h| {
                if g.previous.contains(h) {
                    false
                } else {
                    g.current.insert(*h)
                }
            })
            .collect()
    }

    /// Forgets hashes that were inserted but whose events were not stored after all.
    pub fn forget(&self, hashes: &[u64]) {
        let mut g = self.state.lock();
        for h in hashes {
            g.current.remove(h);
            g.previous.remove(h);
        }
    }

    /// Remembers an event found in the log during recovery.
    pub fn remember(&self, hash: u64) {
        self.state.lock().current.insert(hash);
    }

    /// Number of remembered ids.
    pub fn len(&self) -> usize {
        let g = self.state.lock();
        g.current.len() + g.previous.len()
    }

    /// True when nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_within_window_and_batch() {
        let d = Deduplicator::new(Duration::from_secs(60), 1000, 0);
        assert_eq!(d.check_and_insert(&[1, 2, 1], 0), vec![true, true, false]);
        assert_eq!(d.check_and_insert(&[2, 3], 10_000), vec![false, true]);
        // After half a window the ids move to the previous generation and still count.
        assert_eq!(d.check_and_insert(&[1], 31_000), vec![false]);
        // After a whole window without use they are forgotten.
        assert_eq!(d.check_and_insert(&[1], 200_000), vec![true]);
    }

    #[test]
    fn forget_undoes_an_insert() {
        let d = Deduplicator::new(Duration::from_secs(60), 1000, 0);
        assert_eq!(d.check_and_insert(&[7], 0), vec![true]);
        d.forget(&[7]);
        assert_eq!(d.check_and_insert(&[7], 1), vec![true]);
    }

    #[test]
    fn memory_is_bounded() {
        let d = Deduplicator::new(Duration::from_secs(3600), 10, 0);
        for i in 0..100u64 {
            d.check_and_insert(&[i], 1);
        }
        assert!(d.len() <= 20, "{}", d.len());
    }

    #[test]
    fn hash_separates_apps() {
        assert_ne!(event_hash("a", "b1"), event_hash("ab", "1"));
    }
}
