//! Fuzz target: `meridian_collector::split::split_events` on arbitrary bodies. Never
//! panics; the slices are trimmed, in order, non-overlapping pieces of the body, and
//! nothing but blanks and the array's `[`, `,`, `]` is left out (no event is dropped
//! silently); a valid JSON array splits into exactly its elements, NDJSON into its
//! non-blank lines.
#![no_main]

use libfuzzer_sys::fuzz_target;
use meridian_collector::split::{split_events, Framing};
use serde_json::value::RawValue;

fn is_blank(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

/// Checks the documented shape of a split and returns the byte ranges of the parts.
fn check_cover(body: &[u8], parts: &[&[u8]], structural: &[u8], framing: Framing) {
    let base = body.as_ptr() as usize;
    let mut covered = vec![false; body.len()];
    let mut previous_end = 0;
    for part in parts {
        let start = part.as_ptr() as usize - base;
        let end = start + part.len();
        assert!(part.as_ptr() as usize >= base && end <= body.len(), "{framing:?}: a part is not a slice of the body");
        assert!(start >= previous_end, "{framing:?}: parts overlap or are out of order");
        assert!(part.first().is_none_or(|b| !is_blank(*b)) && part.last().is_none_or(|b| !is_blank(*b)), "{framing:?}: a part is not trimmed");
        covered[start..end].iter_mut().for_each(|c| *c = true);
        previous_end = end;
    }
    for (i, b) in body.iter().enumerate() {
        if !covered[i] {
            assert!(is_blank(*b) || structural.contains(b), "{framing:?}: byte {i} ({:?}) is in no part", *b as char);
        }
    }
}

fuzz_target!(|body: &[u8]| {
    let auto = split_events(body, Framing::Auto);
    let is_array = body.iter().find(|b| !is_blank(**b)) == Some(&b'[');
    check_cover(body, &auto, if is_array { b"[,]" } else { b"" }, Framing::Auto);
    if is_array {
        if let Ok(elements) = serde_json::from_slice::<Vec<&RawValue>>(body) {
            let texts: Vec<&[u8]> = elements.iter().map(|e| e.get().as_bytes()).collect();
            assert_eq!(auto, texts, "a valid JSON array must split into its elements");
        }
    } else if !auto.is_empty() && serde_json::from_slice::<serde::de::IgnoredAny>(body).is_ok() {
        assert_eq!(auto.len(), 1, "one JSON value is one event");
    }
    let ndjson = split_events(body, Framing::Ndjson);
    check_cover(body, &ndjson, b"", Framing::Ndjson);
    let lines: Vec<&[u8]> = body.split(|b| *b == b'\n').map(|l| l.trim_ascii()).filter(|l| !l.is_empty()).collect();
    // trim_ascii also strips form feeds, which are not JSON blanks; compare only when none.
    if !body.contains(&0x0c) {
        assert_eq!(ndjson, lines, "NDJSON splits into its non-blank lines");
    }
});
