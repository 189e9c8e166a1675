//! The page cache with an injected failing backend: fresh hits, refresh on expiry, stale
//! while refreshing, LRU eviction, and both fallback levels.

use meridian_listing::{ManualClock, PageCache, PageKey, ServedFrom};
use std::cell::Cell;
use std::sync::Arc;
use std::time::Duration;

const TTL: Duration = Duration::from_secs(60);

fn cache(capacity: usize) -> (PageCache<String>, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::default());
    (PageCache::new(TTL, capacity, 1, "static".to_owned(), clock.clone()), clock)
}

fn ok(v: &str) -> impl FnOnce() -> Result<String, String> + '_ {
    move || Ok(v.to_owned())
}

fn failing() -> Result<String, String> {
    Err("backend down".to_owned())
}

fn page(category: u32, page: u32) -> PageKey {
    PageKey { category, query: "sort=price_asc".into(), page }
}

#[test]
fn pages_are_cached_until_expiry_then_refreshed() {
    let (cache, clock) = cache(10);
    let key = page(1, 2);
    assert_eq!(cache.get(&key, ok("v1")).from, ServedFrom::Rendered);
    let hit = cache.get(&key, || -> Result<String, String> { panic!("a fresh page is not rendered again") });
    assert_eq!((hit.from, hit.value.as_str()), (ServedFrom::Cached, "v1"));
    clock.advance(TTL);
    let refreshed = cache.get(&key, ok("v2"));
    assert_eq!((refreshed.from, refreshed.value.as_str()), (ServedFrom::Rendered, "v2"));
    assert_eq!(cache.get(&key, ok("unused")).value.as_str(), "v2");
}

#[test]
fn an_expired_page_is_served_stale_when_the_backend_fails_and_kept() {
    let (cache, clock) = cache(10);
    let key = page(1, 3);
    cache.get(&key, ok("old"));
    clock.advance(TTL * 2);
    let served = cache.get(&key, failing);
    assert_eq!((served.from, served.value.as_str()), (ServedFrom::Stale, "old"));
    assert_eq!(served.error.as_deref(), Some("backend down"));
    // Still there for the next try, which succeeds.
    assert_eq!(cache.get(&key, ok("new")).from, ServedFrom::Rendered);
}

#[test]
fn only_one_caller_refreshes_an_expired_page() {
    let (cache, clock) = cache(10);
    let key = page(4, 2);
    cache.get(&key, ok("old"));
    clock.advance(TTL);
    let inner_rendered = Cell::new(false);
    let outer = cache.get(&key, || {
        // Another request arrives while this one refreshes: it gets the stale page.
        let other = cache.get(&key, || {
            inner_rendered.set(true);
            Ok::<_, String>("racing".to_owned())
        });
        assert_eq!((other.from, other.value.as_str()), (ServedFrom::Stale, "old"));
        Ok::<_, String>("new".to_owned())
    });
    assert_eq!(outer.from, ServedFrom::Rendered);
    assert!(!inner_rendered.get());
}

#[test]
fn a_failing_backend_falls_back_to_the_first_page_then_to_the_static_page() {
    let (cache, _) = cache(10);
    // No first page yet: level 2.
    let served = cache.get(&page(7, 5), failing);
    assert_eq!((served.from, served.value.as_str()), (ServedFrom::StaticFallback, "static"));
    let served = cache.get(&PageKey::first(7), failing);
    assert_eq!(served.from, ServedFrom::StaticFallback);
    // With a first page: level 1 for every other page of the category.
    assert_eq!(cache.get(&PageKey::first(7), ok("first of 7")).from, ServedFrom::Rendered);
    let served = cache.get(&page(7, 5), failing);
    assert_eq!((served.from, served.value.as_str()), (ServedFrom::FirstPageFallback, "first of 7"));
    // Another category has no first page.
    assert_eq!(cache.get(&page(8, 2), failing).from, ServedFrom::StaticFallback);
    let stats = cache.stats();
    assert_eq!((stats.static_fallback, stats.first_page_fallback, stats.rendered, stats.backend_errors), (3, 1, 1, 4));
}

#[test]
fn the_lru_evicts_other_pages_but_never_first_pages() {
    let (cache, _) = cache(2);
    for c in 1..=5 {
        cache.get(&PageKey::first(c), ok("first"));
    }
    cache.get(&page(1, 2), ok("p2"));
    cache.get(&page(1, 3), ok("p3"));
    cache.get(&page(1, 2), ok("unused")); // touch p2: p3 is now the least recent
    cache.get(&page(1, 4), ok("p4"));
    assert_eq!(cache.stats().pages, 2);
    assert_eq!(cache.stats().first_pages, 5);
    assert_eq!(cache.get(&page(1, 2), failing).from, ServedFrom::Cached);
    assert_eq!(cache.get(&page(1, 3), failing).from, ServedFrom::FirstPageFallback, "p3 was evicted");
}

#[test]
fn first_pages_are_warmed_and_expired_pages_stay_until_replaced() {
    let (cache, clock) = cache(10);
    let fails_for_3 = |c: u32| if c == 3 { Err("down") } else { Ok(format!("first {c}")) };
    assert_eq!(cache.refresh_first_pages(&[1, 2, 3], fails_for_3), 2);
    assert_eq!(cache.refresh_first_pages(&[1, 2, 3], fails_for_3), 0, "fresh pages are kept; 3 still fails");
    cache.expire_category(1);
    assert_eq!(cache.get(&PageKey::first(1), failing).from, ServedFrom::Stale);
    clock.advance(TTL);
    assert_eq!(cache.refresh_first_pages(&[1, 2], |c| Ok::<_, String>(format!("again {c}"))), 2);
    assert_eq!(cache.get(&PageKey::first(2), failing).value.as_str(), "again 2");
}
