//! JSON both ways: bounded parsing of every document read from outside, and canonical
//! serialization of the documents this module writes.
//!
//! Reading: manifests, indexes, configs, `index.json`, `oci-layout` and a docker-archive's
//! `manifest.json` come from untrusted layouts and archives. Each goes through
//! [`parse_document`], which refuses a document over [`MAX_JSON_BYTES`] or nested deeper
//! than [`MAX_JSON_DEPTH`] *before* serde sees it. The depth bound matters because serde
//! skips unknown fields without any recursion limit, so a manifest nested 200,000 deep in
//! an unknown field would parse here and then break every later reader that builds a
//! `serde_json::Value` (the store's gc, `images`); it is refused at load instead.
//!
//! Writing: digests name bytes, so reproducible images need one serialization per value:
//! object keys sorted by their UTF-8 bytes, no insignificant whitespace, serde_json's string
//! escaping and number formatting. `oci-spec` keeps annotations in `HashMap`s whose
//! iteration order is random, so its own `to_string` cannot be used for anything that gets
//! a digest; every document goes through [`to_canonical_json`] instead. Documents read from
//! elsewhere are never re-serialized unless they must change (layer re-compression), so
//! foreign bytes and digests are preserved.

use std::fmt::Display;

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use super::error::{OciError, OciResult};

/// Largest JSON document read from a layout or archive (manifest, index, config,
/// `index.json`, `manifest.json`). Registries cap manifests at 4 MiB; configs of real
/// images are far smaller.
pub const MAX_JSON_BYTES: u64 = 8 << 20;

/// Deepest nesting of arrays and objects accepted in a document read from outside. Real
/// manifests and configs nest about 5 deep; serde_json's own limit for typed values is 128,
/// so everything accepted here can be re-read as a `serde_json::Value` anywhere.
pub const MAX_JSON_DEPTH: usize = 64;

/// Parses a document read from outside, after checking its size and nesting depth.
/// `what` ("image manifest", "index.json") and `location` (a digest or file) name it in
/// errors.
pub fn parse_document<T: DeserializeOwned>(
    raw: &[u8],
    what: &'static str,
    location: impl Display,
) -> OciResult<T> {
    check_bounds(raw, what, &location)?;
    serde_json::from_slice(raw).map_err(|e| OciError::bad_json(what, location, e))
}

/// Refuses a document over [`MAX_JSON_BYTES`] or nested deeper than [`MAX_JSON_DEPTH`].
pub fn check_bounds(raw: &[u8], what: &'static str, location: &impl Display) -> OciResult<()> {
    if raw.len() as u64 > MAX_JSON_BYTES {
        return Err(OciError::TooLarge {
            what,
            location: location.to_string(),
            size: raw.len() as u64,
            limit: MAX_JSON_BYTES,
        });
    }
    match nesting_beyond(raw, MAX_JSON_DEPTH) {
        Some(offset) => Err(OciError::bad_json(
            what,
            location,
            format!("arrays and objects nested more than {MAX_JSON_DEPTH} deep (at byte {offset})"),
        )),
        None => Ok(()),
    }
}

/// The offset of the first `[` or `{` that opens level `limit + 1`, if any. Brackets
/// inside strings do not count; the syntax itself is left to the parser.
fn nesting_beyond(raw: &[u8], limit: usize) -> Option<usize> {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for (i, &b) in raw.iter().enumerate() {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > limit {
                    return Some(i);
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    None
}

/// Serializes `value` canonically (sorted keys, compact).
pub fn to_canonical_json<T: Serialize + ?Sized>(value: &T) -> OciResult<Vec<u8>> {
    let value = serde_json::to_value(value)
        .map_err(|e| OciError::bad_json("document", "serialization", e))?;
    let mut out = Vec::new();
    write_value(&value, &mut out)?;
    Ok(out)
}

fn write_value(value: &Value, out: &mut Vec<u8>) -> OciResult<()> {
    match value {
        Value::Null | Value::Bool(_) | Value::Number(_) | Value::String(_) => {
            serde_json::to_writer(&mut *out, value)
                .map_err(|e| OciError::bad_json("document", "serialization", e))?;
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(item, out)?;
            }
            out.push(b']');
        }
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push(b'{');
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                serde_json::to_writer(&mut *out, key)
                    .map_err(|e| OciError::bad_json("document", "serialization", e))?;
                out.push(b':');
                write_value(item, out)?;
            }
            out.push(b'}');
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn documents_nested_too_deep_or_too_large_are_refused() {
        let deep = format!(
            "{{\"schemaVersion\":2,\"x\":{}{}}}",
            "[".repeat(200_000),
            "]".repeat(200_000)
        );
        match parse_document::<Value>(deep.as_bytes(), "image manifest", "sha256:ab") {
            Err(e @ OciError::BadJson { .. }) => {
                let m = e.to_string();
                assert!(m.contains("nested more than 64 deep"), "{m}");
                assert!(m.contains("sha256:ab"), "{m}");
            }
            other => panic!("expected BadJson, got {other:?}"),
        }
        // Exactly at the limit is fine; brackets inside strings do not count.
        let ok = format!(
            "{}{}",
            "[".repeat(MAX_JSON_DEPTH),
            "]".repeat(MAX_JSON_DEPTH)
        );
        assert!(parse_document::<Value>(ok.as_bytes(), "doc", "x").is_ok());
        let over = format!("[{ok}]");
        assert!(parse_document::<Value>(over.as_bytes(), "doc", "x").is_err());
        let strings = format!("[\"{}\\\"{}\"]", "[".repeat(500), "{".repeat(500));
        assert!(parse_document::<Value>(strings.as_bytes(), "doc", "x").is_ok());
        let big = vec![b' '; MAX_JSON_BYTES as usize + 1];
        assert!(matches!(
            parse_document::<Value>(&big, "doc", "x"),
            Err(OciError::TooLarge { .. })
        ));
    }

    #[test]
    fn keys_are_sorted_and_output_is_compact() {
        let mut m = HashMap::new();
        for k in ["zeta", "alpha", "Beta", "mid"] {
            m.insert(k.to_string(), vec![1, 2]);
        }
        let bytes = to_canonical_json(&m).expect("serializable");
        assert_eq!(
            String::from_utf8(bytes).expect("utf-8"),
            r#"{"Beta":[1,2],"alpha":[1,2],"mid":[1,2],"zeta":[1,2]}"#
        );
        let nested = serde_json::json!({"b": {"y": "\"q\"", "x": null}, "a": true});
        assert_eq!(
            to_canonical_json(&nested).expect("serializable"),
            br#"{"a":true,"b":{"x":null,"y":"\"q\""}}"#.to_vec()
        );
    }
}
