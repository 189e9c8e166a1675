//! Splits a request body into one byte slice per event *before* JSON parsing, so that a
//! malformed event (bad JSON, invalid UTF-8) gets its own error while the other events of
//! the batch are still accepted.
//!
//! A JSON array is scanned at the byte level: strings (with escapes) are skipped, and
//! commas at nesting depth one separate elements. UTF-8 continuation bytes are never
//! ASCII, so invalid UTF-8 stays inside the element it belongs to. NDJSON is split on
//! newlines. Nothing in the body is dropped silently: bytes after the closing bracket or
//! an unterminated last element become malformed elements of their own.

/// How the body is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// Decide from the first non-blank byte: `[` is an array, otherwise one object or NDJSON.
    Auto,
    /// One JSON value per line.
    Ndjson,
}

fn is_blank(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

fn trim(mut s: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = s {
        if is_blank(*first) {
            s = rest;
        } else {
            break;
        }
    }
    while let [rest @ .., last] = s {
        if is_blank(*last) {
            s = rest;
        } else {
            break;
        }
    }
    s
}

/// Splits `body` into event slices (trimmed; possibly empty or malformed).
pub fn split_events(body: &[u8], framing: Framing) -> Vec<&[u8]> {
    let trimmed = trim(body);
    if trimmed.is_empty() {
        return Vec::new();
    }
    match framing {
        Framing::Ndjson => split_lines(trimmed),
        Framing::Auto if trimmed[0] == b'[' => split_array(trimmed),
        Framing::Auto => {
            // One (possibly pretty-printed) object, or NDJSON.
            if serde_json::from_slice::<serde::de::IgnoredAny>(trimmed).is_ok() {
                vec![trimmed]
            } else {
                split_lines(trimmed)
            }
        }
    }
}

fn split_lines(body: &[u8]) -> Vec<&[u8]> {
    body.split(|b| *b == b'\n').map(trim).filter(|line| !line.is_empty()).collect()
}

fn split_array(body: &[u8]) -> Vec<&[u8]> {
    debug_assert_eq!(body.first(), Some(&b'['));
    let mut out = Vec::new();
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    let mut start = 1;
    let mut i = 1;
    while i < body.len() {
        let b = body[i];
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
        } else {
            match b {
                b'"' => in_string = true,
                b'{' | b'[' => depth += 1,
                b'}' | b']' if depth > 0 => depth -= 1,
                b']' => {
                    let last = trim(&body[start..i]);
                    if !last.is_empty() || !out.is_empty() {
                        out.push(last);
                    }
                    let rest = trim(&body[i + 1..]);
                    if !rest.is_empty() {
                        out.push(rest);
                    }
                    return out;
                }
                b',' if depth == 0 => {
                    out.push(trim(&body[start..i]));
                    start = i + 1;
                }
                _ => {}
            }
        }
        i += 1;
    }
    // No closing bracket: the last element is unterminated; keep it so it is reported.
    let last = trim(&body[start..]);
    out.push(if last.is_empty() { &body[body.len()..] } else { last });
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn strs(parts: Vec<&[u8]>) -> Vec<String> {
        parts.into_iter().map(|p| String::from_utf8_lossy(p).into_owned()).collect()
    }

    #[test]
    fn array_elements_with_nesting_and_strings() {
        let body = br#" [ {"a":[1,2],"s":"x,]}\"y"} , {"b":{}} ] "#;
        assert_eq!(strs(split_events(body, Framing::Auto)), vec![r#"{"a":[1,2],"s":"x,]}\"y"}"#, r#"{"b":{}}"#]);
    }

    #[test]
    fn malformed_element_is_isolated() {
        let body = br#"[{"a":1},{"b":,},{"c":3}]"#;
        let parts = split_events(body, Framing::Auto);
        assert_eq!(parts.len(), 3);
        assert!(serde_json::from_slice::<serde_json::Value>(parts[0]).is_ok());
        assert!(serde_json::from_slice::<serde_json::Value>(parts[1]).is_err());
        assert!(serde_json::from_slice::<serde_json::Value>(parts[2]).is_ok());
    }

    #[test]
    fn invalid_utf8_stays_in_its_element() {
        let mut body = br#"[{"a":"ok"},{"b":""#.to_vec();
        body.extend_from_slice(&[0xff, 0xfe]);
        body.extend_from_slice(br#""},{"c":1}]"#);
        let parts = split_events(&body, Framing::Auto);
        assert_eq!(parts.len(), 3);
        assert!(std::str::from_utf8(parts[1]).is_err());
        assert!(std::str::from_utf8(parts[2]).is_ok());
    }

    #[test]
    fn empty_and_trailing_garbage() {
        assert!(split_events(b"[]", Framing::Auto).is_empty());
        assert!(split_events(b"  ", Framing::Auto).is_empty());
        assert_eq!(strs(split_events(b"[1,,2]", Framing::Auto)), vec!["1", "", "2"]);
        assert_eq!(strs(split_events(b"[1] junk", Framing::Auto)), vec!["1", "junk"]);
        assert_eq!(strs(split_events(br#"[{"a":1},{"b":"#, Framing::Auto)), vec![r#"{"a":1}"#, r#"{"b":"#]);
    }

    #[test]
    fn ndjson_and_single_object() {
        let body = b"{\"a\":1}\n\n{\"b\":2}\r\nnot json\n";
        assert_eq!(strs(split_events(body, Framing::Auto)), vec!["{\"a\":1}", "{\"b\":2}", "not json"]);
        let pretty = b"{\n  \"a\": 1\n}\n";
        assert_eq!(split_events(pretty, Framing::Auto).len(), 1);
        assert_eq!(split_events(b"[1]\n[2]", Framing::Ndjson).len(), 2);
    }

    proptest! {
        #[test]
        fn never_panics_and_never_loses_valid_arrays(values in proptest::collection::vec(any::<(u32, String)>(), 1..20)) {
            let items: Vec<serde_json::Value> = values.iter().map(|(n, s)| serde_json::json!({"n": n, "s": s, "nested": [s, {"k": n}]})).collect();
            let body = serde_json::to_vec(&items).unwrap();
            let parts = split_events(&body, Framing::Auto);
            prop_assert_eq!(parts.len(), items.len());
            for (part, item) in parts.iter().zip(&items) {
                let parsed: serde_json::Value = serde_json::from_slice(part).unwrap();
                prop_assert_eq!(&parsed, item);
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = split_events(&body, Framing::Auto);
            let _ = split_events(&body, Framing::Ndjson);
        }
    }
}
