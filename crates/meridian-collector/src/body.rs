//! Request bodies before splitting: gzip decompression within a size limit.
//!
//! [`decompress`] reads every gzip member of a body (clients may concatenate members)
//! and stops reading one byte past `limit`, so a small compressed body cannot expand into
//! unbounded memory (a "gzip bomb" costs at most `limit + 1` bytes).

use bytes::Bytes;
use std::io::Read;

/// Why a body could not be decompressed.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// The bytes are not valid gzip (bad header, corrupt data, truncated, or trailing
    /// bytes that are not another gzip member).
    #[error("the body is not valid gzip: {0}; send it uncompressed or gzip it whole")]
    InvalidGzip(#[source] std::io::Error),
    /// The decompressed body is larger than allowed.
    #[error("decompressed body exceeds {limit} bytes; send smaller batches")]
    TooLarge {
        /// The limit, in decompressed bytes.
        limit: usize,
    },
}

/// Gunzips `compressed` (one or more concatenated gzip members), refusing a result of
/// more than `limit` bytes.
pub fn decompress(compressed: &[u8], limit: usize) -> Result<Bytes, BodyError> {
    let read_limit = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    // Room for typical JSON compression, but never more than the limit allows.
    let mut out = Vec::with_capacity(compressed.len().saturating_mul(4).min(limit.saturating_add(1)));
    flate2::read::MultiGzDecoder::new(compressed).take(read_limit).read_to_end(&mut out).map_err(BodyError::InvalidGzip)?;
    if out.len() > limit {
        return Err(BodyError::TooLarge { limit });
    }
    Ok(Bytes::from(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::write::GzEncoder;
    use flate2::Compression;
    use std::io::Write;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
        encoder.write_all(data).unwrap();
        encoder.finish().unwrap()
    }

    #[test]
    fn round_trips_within_the_limit_including_exactly_at_it() {
        let body = br#"[{"user":"u1","action":"view"}]"#;
        assert_eq!(decompress(&gzip(body), 1 << 20).unwrap(), Bytes::from_static(body));
        assert_eq!(decompress(&gzip(body), body.len()).unwrap(), Bytes::from_static(body), "exactly the limit is allowed");
        assert_eq!(decompress(&gzip(b""), 0).unwrap(), Bytes::new(), "an empty member");
    }

    #[test]
    fn concatenated_members_are_all_read() {
        let mut body = gzip(b"{\"a\":1}\n");
        body.extend(gzip(b"{\"b\":2}\n"));
        assert_eq!(decompress(&body, 100).unwrap(), Bytes::from_static(b"{\"a\":1}\n{\"b\":2}\n"));
    }

    #[test]
    fn over_the_limit_is_refused_without_inflating_everything() {
        let bomb = gzip(&vec![b'x'; 10 << 20]);
        assert!(bomb.len() < 20_000, "{} bytes", bomb.len());
        match decompress(&bomb, 1000) {
            Err(BodyError::TooLarge { limit }) => assert_eq!(limit, 1000),
            other => panic!("expected TooLarge, got {other:?}"),
        }
        assert!(matches!(decompress(&gzip(b"12345"), 4), Err(BodyError::TooLarge { limit: 4 })), "one byte over");
        assert!(decompress(&gzip(b"12345"), usize::MAX).is_ok(), "the largest limit does not overflow");
    }

    #[test]
    fn invalid_gzip_is_a_clear_error() {
        let whole = gzip(b"{\"user\":\"u1\",\"action\":\"view\"}");
        let mut corrupt = whole.clone();
        let middle = corrupt.len() / 2;
        corrupt[middle] ^= 0xff;
        let mut trailing = whole.clone();
        trailing.extend_from_slice(b"not gzip");
        for (what, bytes) in [
            ("empty (no gzip header)", Vec::new()),
            ("plain text", b"{\"user\":\"u1\"}".to_vec()),
            ("truncated", whole[..whole.len() - 4].to_vec()),
            ("corrupt", corrupt),
            ("trailing garbage", trailing),
        ] {
            match decompress(&bytes, 1 << 20) {
                Err(e @ BodyError::InvalidGzip(_)) => assert!(e.to_string().starts_with("the body is not valid gzip: "), "{what}: {e}"),
                other => panic!("{what}: expected InvalidGzip, got {other:?}"),
            }
        }
    }
}
