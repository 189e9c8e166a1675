//! De-duplication of client retries by `(app, event id)` within a time window.
//!
//! Two generations of 64-bit hashes, each spanning one whole window: ids go into the
//! current one; once it is a window old the previous generation is dropped and the current
//! one becomes previous. An id is therefore remembered for at least the whole window and
//! at most two. Memory is bounded by `max_entries` per generation: when the current
//! generation is full it rotates early (the effective window shrinks, counted in
//! `meridian_dedup_early_rotations_total`).
//!
//! Durability first: an id is *claimed* before its event is appended and *settled* when
//! the append's outcome is known. While a claim is open, a retry with the same id is not
//! answered at all: [`Deduplicator::reserve`] hands back the open claims to wait for, and
//! the retry checks again once they settle. A failed append forgets its ids, so the retry
//! is stored; a successful one keeps them, so the retry is a duplicate. A retry is thus
//! never told "duplicate" for an event that is not durable.

use parking_lot::Mutex;
use rustc_hash::{FxHashMap, FxHashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// The de-duplication hash of an event.
pub fn event_hash(app: &str, event_id: &str) -> u64 {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    h.update(app.as_bytes());
    h.update(&[0xff]);
    h.update(event_id.as_bytes());
    h.digest()
}

// The keys are xxh3 hashes already: the sets hash them with Fx (one multiply), not SipHash.
#[derive(Debug, Default)]
struct Generations {
    current: FxHashSet<u64>,
    previous: FxHashSet<u64>,
    current_started_ms: i64,
    /// Rotations so far: a claim settled in the generation it was made in is already
    /// remembered and needs no second look-up.
    rotations: u64,
    /// Ids whose append is in flight → the claim holding them.
    in_flight: FxHashMap<u64, u64>,
    /// Open claims (with ids in flight) → a receiver that completes when the claim settles.
    claims: FxHashMap<u64, watch::Receiver<()>>,
    next_claim: u64,
}

/// Remembers recently accepted events.
#[derive(Debug)]
pub struct Deduplicator {
    window_ms: i64,
    max_entries: usize,
    state: Mutex<Generations>,
}

/// What [`Deduplicator::reserve`] found.
#[derive(Debug)]
pub enum Reservation {
    /// Nothing was in flight: per hash, true if new (now claimed), false if a duplicate
    /// of a durable event (or of an earlier hash of the same slice). Settle the claim
    /// with the outcome of the append.
    Claimed(Vec<bool>, Claim),
    /// Some hashes belong to appends still in flight; nothing was claimed. Wait for these
    /// (each completes when its claim settles, however it ends) and reserve again.
    InFlight(Vec<InFlight>),
}

/// An append in flight that a retry waits for.
#[derive(Debug)]
pub struct InFlight(watch::Receiver<()>);

impl InFlight {
    /// Completes once the claim settled (stored, failed or dropped).
    pub async fn settled(mut self) {
        // The sender is never used to send: it is dropped when the claim settles, which
        // ends `changed` with an error.
        while self.0.changed().await.is_ok() {}
    }
}

/// Ids claimed for one append. [`Claim::settle`] records its outcome; dropping a claim
/// without settling counts as a failed append (the ids are forgotten, so a retry is
/// stored rather than lost).
#[derive(Debug)]
pub struct Claim {
    dedup: Arc<Deduplicator>,
    id: u64,
    hashes: Vec<u64>,
    rotations: u64,
    /// `None` once settled, or when nothing was claimed.
    done: Option<watch::Sender<()>>,
}

impl Claim {
    /// Records whether the append of the claimed ids became durable, and releases the
    /// retries waiting for it.
    pub fn settle(mut self, durable: bool) {
        self.finish(durable);
    }

    fn finish(&mut self, durable: bool) {
        let Some(done) = self.done.take() else { return };
        {
            let mut guard = self.dedup.state.lock();
            let g = &mut *guard;
            g.claims.remove(&self.id);
            let rotated = g.rotations != self.rotations;
            for h in &self.hashes {
                g.in_flight.remove(h);
                if !durable {
                    g.current.remove(h);
                    g.previous.remove(h);
                } else if rotated && !g.previous.contains(h) {
                    // Generations turned while in flight and dropped it: it counts from now.
                    g.current.insert(*h);
                }
            }
        }
        drop(done);
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        self.finish(false);
    }
}

impl Deduplicator {
    /// Remembers ids for at least `window` (at most twice that), at most `max_entries`
    /// ids per generation.
    pub fn new(window: Duration, max_entries: usize, now_ms: i64) -> Deduplicator {
        Deduplicator {
            window_ms: (window.as_millis() as i64).max(1),
            max_entries: max_entries.max(1),
            state: Mutex::new(Generations { current_started_ms: now_ms, ..Generations::default() }),
        }
    }

    /// The window in milliseconds: an id is remembered at least this long.
    pub fn window_ms(&self) -> i64 {
        self.window_ms
    }

    fn rotate_if_due(&self, g: &mut Generations, now_ms: i64) {
        if now_ms - g.current_started_ms >= 2 * self.window_ms {
            g.previous.clear();
            g.current.clear();
            g.current_started_ms = now_ms;
            g.rotations += 1;
        } else if now_ms - g.current_started_ms >= self.window_ms || g.current.len() >= self.max_entries {
            if g.current.len() >= self.max_entries {
                metrics::counter!("meridian_dedup_early_rotations_total").increment(1);
            }
            g.previous = std::mem::take(&mut g.current);
            g.current_started_ms = now_ms;
            g.rotations += 1;
        }
    }

    /// Checks `hashes` (the events of one request) and, unless one of them is in flight
    /// elsewhere, claims the new ones for this request's append. See [`Reservation`].
    pub fn reserve(self: &Arc<Self>, hashes: &[u64], now_ms: i64) -> Reservation {
        let mut guard = self.state.lock();
        let g = &mut *guard;
        if !g.in_flight.is_empty() {
            let mut waits: Vec<u64> = hashes.iter().filter_map(|h| g.in_flight.get(h).copied()).collect();
            if !waits.is_empty() {
                waits.sort_unstable();
                waits.dedup();
                return Reservation::InFlight(waits.iter().filter_map(|c| g.claims.get(c)).map(|rx| InFlight(rx.clone())).collect());
            }
        }
        self.rotate_if_due(g, now_ms);
        let id = g.next_claim;
        g.next_claim += 1;
        let mut claimed = Vec::new();
        let fresh = hashes
            .iter()
            .map(|h| {
                let new = !g.previous.contains(h) && g.current.insert(*h);
                if new {
                    g.in_flight.insert(*h, id);
                    claimed.push(*h);
                }
                new
            })
            .collect();
        let done = (!claimed.is_empty()).then(|| {
            let (done, rx) = watch::channel(());
            g.claims.insert(id, rx);
            done
        });
        let rotations = g.rotations;
        drop(guard);
        Reservation::Claimed(fresh, Claim { dedup: self.clone(), id, hashes: claimed, rotations, done })
    }

    /// Remembers an event found in the log during recovery.
    pub fn remember(&self, hash: u64) {
        self.state.lock().current.insert(hash);
    }

    /// Number of remembered ids (in flight included).
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

    fn dedup(window_secs: u64, max_entries: usize) -> Arc<Deduplicator> {
        Arc::new(Deduplicator::new(Duration::from_secs(window_secs), max_entries, 0))
    }

    /// Reserves and settles at once, as a request whose append succeeds.
    fn stored(d: &Arc<Deduplicator>, hashes: &[u64], now_ms: i64) -> Vec<bool> {
        match d.reserve(hashes, now_ms) {
            Reservation::Claimed(fresh, claim) => {
                claim.settle(true);
                fresh
            }
            Reservation::InFlight(_) => panic!("nothing is in flight"),
        }
    }

    #[test]
    fn duplicates_within_window_and_batch() {
        let d = dedup(60, 1000);
        assert_eq!(stored(&d, &[1, 2, 1], 0), vec![true, true, false]);
        assert_eq!(stored(&d, &[2, 3], 10_000), vec![false, true]);
        // After a window the ids move to the previous generation and still count.
        assert_eq!(stored(&d, &[1], 61_000), vec![false]);
        // After two windows without use they are forgotten.
        assert_eq!(stored(&d, &[1], 200_000), vec![true]);
    }

    #[test]
    fn an_id_is_remembered_for_the_whole_window_wherever_it_falls_in_a_generation() {
        let window_ms = 60_000;
        for inserted_at in [0, 1, 29_999, 30_000, 45_000, 59_999] {
            let d = dedup(60, 1000);
            // Something at 0 starts the first generation.
            stored(&d, &[999], 0);
            assert_eq!(stored(&d, &[7], inserted_at), vec![true]);
            // Other traffic keeps the generations turning.
            for t in (inserted_at..inserted_at + window_ms).step_by(5_000) {
                stored(&d, &[t as u64 + 10_000_000], t);
            }
            assert_eq!(stored(&d, &[7], inserted_at + window_ms - 1), vec![false], "id inserted at {inserted_at} ms forgotten before a whole window passed");
        }
    }

    #[test]
    fn a_failed_or_dropped_claim_forgets_its_ids() {
        let d = dedup(60, 1000);
        let Reservation::Claimed(fresh, claim) = d.reserve(&[7, 8], 0) else { panic!() };
        assert_eq!(fresh, vec![true, true]);
        claim.settle(false);
        assert_eq!(stored(&d, &[7], 1), vec![true], "a failed append is not a duplicate");
        let Reservation::Claimed(_, claim) = d.reserve(&[9], 2) else { panic!() };
        drop(claim);
        assert_eq!(stored(&d, &[9], 3), vec![true], "a claim dropped unsettled counts as failed");
    }

    #[test]
    fn a_retry_waits_while_the_first_append_is_in_flight() {
        let d = dedup(60, 1000);
        let Reservation::Claimed(_, claim) = d.reserve(&[7], 0) else { panic!() };
        let Reservation::InFlight(waits) = d.reserve(&[5, 7], 1) else { panic!("the retry must wait, not be answered") };
        assert_eq!(waits.len(), 1);
        assert_eq!(stored(&d, &[5], 1), vec![true], "nothing of the waiting request was claimed");
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let waiter = rt.spawn(async move {
            for w in waits {
                w.settled().await;
            }
        });
        claim.settle(true);
        rt.block_on(waiter).unwrap();
        assert_eq!(stored(&d, &[7], 2), vec![false], "settled as stored: now a duplicate");
    }

    #[test]
    fn an_append_durable_after_the_generations_turned_is_still_remembered() {
        let d = dedup(60, 1000);
        let Reservation::Claimed(_, slow) = d.reserve(&[7], 0) else { panic!() };
        let Reservation::Claimed(_, other) = d.reserve(&[8], 61_000) else { panic!() };
        other.settle(true);
        let Reservation::Claimed(_, late) = d.reserve(&[9], 200_000) else { panic!() };
        late.settle(true);
        // Both rotations dropped 7 while its append was in flight.
        slow.settle(true);
        assert_eq!(stored(&d, &[7], 200_001), vec![false], "durable after the rotations: a duplicate");
        assert_eq!(stored(&d, &[8], 200_001), vec![true], "8 is two windows old: forgotten");
    }

    #[test]
    fn memory_is_bounded() {
        let d = dedup(3600, 10);
        for i in 0..100u64 {
            stored(&d, &[i], 1);
        }
        assert!(d.len() <= 20, "{}", d.len());
    }

    #[test]
    fn hash_separates_apps() {
        assert_ne!(event_hash("a", "b1"), event_hash("ab", "1"));
    }
}
