//! Fuzz target: `meridian_collector::body::decompress` on arbitrary bytes and limits.
//! Never panics, never returns more than the limit, agrees with an unlimited decoder, and
//! gzip of the input round-trips exactly when it fits the limit.
#![no_main]

use flate2::write::GzEncoder;
use flate2::Compression;
use libfuzzer_sys::fuzz_target;
use meridian_collector::body::{decompress, BodyError};
use std::io::{Read, Write};

/// Decompressed bytes the reference decoder reads at most (keeps a gzip bomb cheap).
const REFERENCE_CAP: u64 = 1 << 20;

fuzz_target!(|data: &[u8]| {
    let Some((limit_bytes, body)) = data.split_first_chunk::<2>() else { return };
    let limit = usize::from(u16::from_le_bytes(*limit_bytes));
    let mut reference = Vec::new();
    let reference_result = flate2::read::MultiGzDecoder::new(body).take(REFERENCE_CAP).read_to_end(&mut reference);
    match decompress(body, limit) {
        Ok(out) => {
            assert!(out.len() <= limit, "{} bytes over a limit of {limit}", out.len());
            assert!(reference_result.is_ok(), "decompress accepted what flate2 refuses");
            assert_eq!(&out[..], &reference[..], "decompress and flate2 disagree");
        }
        Err(BodyError::TooLarge { limit: reported }) => {
            assert_eq!(reported, limit);
            assert!(reference.len() > limit, "refused as too large but only {} bytes", reference.len());
        }
        Err(BodyError::InvalidGzip(e)) => {
            // decompress stops after limit + 1 bytes, the reference (cap above any u16
            // limit) reads at least as far, so it meets the same error.
            assert!(reference_result.is_err(), "decompress refused ({e}) what flate2 reads");
        }
    }
    let mut encoder = GzEncoder::new(Vec::new(), Compression::fast());
    encoder.write_all(body).unwrap();
    let compressed = encoder.finish().unwrap();
    match decompress(&compressed, limit) {
        Ok(out) => assert_eq!(&out[..], body, "gzip round trip"),
        Err(BodyError::TooLarge { .. }) => assert!(body.len() > limit, "{} bytes refused under a limit of {limit}", body.len()),
        Err(e) => panic!("our own gzip is refused: {e}"),
    }
});
