//! Property tests: every filter, sort, facet, total and paging path of the engine against
//! the brute-force reference over random catalogs, with changes, merges and settings
//! interleaved with queries; cursor paging against page-number paging.

use crate::reference::{random_catalog, random_change, random_query, random_settings, test_config, Reference, CATEGORIES};
use meridian_listing::{ListingEngine, ListingError, ListingPage, Paging, Query};
use proptest::prelude::*;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64Mcg;

fn code<T>(r: &Result<T, ListingError>) -> Option<&'static str> {
    r.as_ref().err().map(ListingError::code)
}

/// Checks one query against the reference; with page 1, also pages through by cursor.
fn check_query(engine: &ListingEngine, reference: &Reference, q: &Query) -> Result<(), TestCaseError> {
    let got = engine.query(q);
    let want = reference.query(q);
    prop_assert_eq!(code(&got), want.as_ref().err().copied(), "query {:?}", q);
    let (Ok(got), Ok(want)) = (got, want) else { return Ok(()) };
    let items: Vec<(u64, bool, u64, u32)> = got.items.iter().map(|i| (i.sku, i.pinned, i.price, i.stock)).collect();
    prop_assert_eq!(&items, &want.items, "items of {:?}", q);
    prop_assert_eq!(got.total, want.total, "total of {:?}", q);
    prop_assert_eq!(got.last_page, want.last_page);
    prop_assert_eq!(&got.facets, &want.facets, "facets of {:?}", q);
    let Paging::Page { page, size } = q.paging else { return Ok(()) };
    prop_assert_eq!(got.next_cursor.is_some(), u64::from(page) * u64::from(size) < want.total);
    if page == 1 {
        let mut all: Vec<(u64, bool)> = got.items.iter().map(|i| (i.sku, i.pinned)).collect();
        let mut cursor = got.next_cursor.clone();
        let mut guard = 0;
        while let Some(c) = cursor {
            let next: ListingPage = engine.query(&Query { paging: Paging::Cursor { cursor: c, size }, facets: false, ..q.clone() }).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(next.total, want.total);
            prop_assert_eq!(next.offset, all.len() as u64);
            all.extend(next.items.iter().map(|i| (i.sku, i.pinned)));
            cursor = next.next_cursor;
            guard += 1;
            prop_assert!(guard < 200, "cursor paging does not end");
        }
        prop_assert_eq!(&all, &want.sequence, "cursor paging of {:?}", q);
    }
    Ok(())
}

fn run_case(seed: u64, n_ops: usize) -> Result<(), TestCaseError> {
    let mut rng = Pcg64Mcg::seed_from_u64(seed);
    let config = test_config(&mut rng);
    let items = random_catalog(&mut rng);
    let engine = ListingEngine::new(config.clone()).unwrap();
    let report = engine.load(items.clone(), &mut |_| {}).unwrap();
    prop_assert_eq!(report.items, items.len() as u64);
    let mut reference = Reference::new(config, &items);
    let mut next_sku = 5000;
    for _ in 0..n_ops {
        match rng.gen_range(0..10) {
            0..=4 => check_query(&engine, &reference, &random_query(&mut rng))?,
            5..=7 => {
                let skus: Vec<u64> = reference.items.keys().copied().collect();
                let n = rng.gen_range(1..4);
                let changes: Vec<_> = (0..n).map(|_| random_change(&mut rng, &skus, &mut next_sku)).collect();
                let report = engine.apply_batch(&changes);
                let refused: Vec<&str> = changes.iter().filter_map(|c| reference.apply(c).err()).collect();
                prop_assert_eq!(report.n_errors as usize, refused.len(), "changes {:?}", changes);
                prop_assert_eq!(report.errors.iter().map(ListingError::code).collect::<Vec<_>>(), refused);
            }
            8 => {
                let category = *CATEGORIES.choose(&mut rng).unwrap();
                let skus: Vec<u64> = reference.items.keys().copied().collect();
                let settings = random_settings(&mut rng, &skus);
                let got = engine.set_settings(category, settings.clone());
                let want = reference.set_settings(category, settings);
                prop_assert_eq!(code(&got), want.err());
            }
            _ => engine.merge_now(if rng.gen_bool(0.5) { None } else { Some(*CATEGORIES.choose(&mut rng).unwrap()) }),
        }
    }
    // Finally every category, default query, every sort, facets on.
    for category in CATEGORIES {
        for sort in meridian_listing::SortKey::ALL {
            let q = Query { category, sort, paging: Paging::Page { page: 1, size: 3 }, facets: true, ..Query::default() };
            check_query(&engine, &reference, &q)?;
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 160, ..ProptestConfig::default() })]

    #[test]
    fn queries_match_the_reference_with_updates_interleaved(seed in any::<u64>()) {
        run_case(seed, 40)?;
    }

    #[test]
    fn fresh_catalogs_match_the_reference(seed in any::<u64>()) {
        let mut rng = Pcg64Mcg::seed_from_u64(seed);
        let config = test_config(&mut rng);
        let items = random_catalog(&mut rng);
        let engine = ListingEngine::new(config.clone()).unwrap();
        engine.load(items.clone(), &mut |_| {}).unwrap();
        let mut reference = Reference::new(config, &items);
        for category in CATEGORIES {
            let skus: Vec<u64> = reference.items.keys().copied().collect();
            let settings = random_settings(&mut rng, &skus);
            let got = engine.set_settings(category, settings.clone());
            prop_assert_eq!(code(&got), reference.set_settings(category, settings).err());
        }
        for _ in 0..30 {
            check_query(&engine, &reference, &random_query(&mut rng))?;
        }
    }
}
