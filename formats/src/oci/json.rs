//! Canonical JSON for the documents this module writes (manifests, indexes, configs,
//! `index.json`, `manifest.json`).
//!
//! Digests name bytes, so reproducible images need one serialization per value: object keys
//! sorted by their UTF-8 bytes, no insignificant whitespace, serde_json's string escaping and
//! number formatting. `oci-spec` keeps annotations in `HashMap`s whose iteration order is
//! random, so its own `to_string` cannot be used for anything that gets a digest; every
//! document goes through [`to_canonical_json`] instead. Documents read from elsewhere are
//! never re-serialized unless they must change (layer re-compression), so foreign bytes and
//! digests are preserved.

use serde::Serialize;
use serde_json::Value;

use super::error::{OciError, OciResult};

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
