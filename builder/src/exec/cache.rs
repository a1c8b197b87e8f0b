//! The build cache: step keys and the typed records that map a key to a layer.
//!
//! A step's key is SHA-256 over its plan identity ([`Node::id`], which already covers the
//! instruction, the used build args, the content of its local sources and every ancestor),
//! the key of its parent, the keys of the stages it reads, the time epoch file times are
//! clamped to, and what the plan cannot know: the manifest digest a base image reference
//! resolved to, and the digests of remote sources. A layer step whose key has a
//! [`CacheRecord`] (and whose layer is still in the store, its packs present with the right
//! sizes) is not executed; `--no-cache` skips the lookup (and still records the result).
//!
//! On disk a record is the `value` of the store's cache entry (`{"key": …, "value": …}`):
//! `{"blob": <BlobDesc>, "diff_id": "sha256:…", "size": N}` for a layer and
//! `{"empty": true}` for a step that changed nothing.
//!
//! [`Node::id`]: chasi_compiler::plan::Node::id

use crate::error::Result;
use crate::state::LayerRef;
use chasi_layers::{BlobDesc, Digest, LayerInfo, Store};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// What a cached layer step produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheRecord {
    /// A layer: its DiffID, its compressed blob and its uncompressed size.
    Layer(LayerRecord),
    /// The step changed nothing (a `RUN` without changes): no layer.
    Unchanged,
}

/// The layer of a [`CacheRecord::Layer`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerRecord {
    /// The uncompressed tar's digest.
    pub diff_id: Digest,
    /// The compressed blob the manifest references.
    pub blob: BlobDesc,
    /// The uncompressed tar's size in bytes.
    #[serde(default)]
    pub size: u64,
}

impl CacheRecord {
    /// The record of a layer just written.
    pub fn layer(info: &LayerInfo, blob: &BlobDesc) -> Self {
        CacheRecord::Layer(LayerRecord {
            diff_id: info.diff_id,
            blob: blob.clone(),
            size: info.size,
        })
    }

    /// The record as the JSON value stored under its key.
    pub fn to_json(&self) -> Value {
        match self {
            CacheRecord::Layer(layer) => serde_json::to_value(layer).unwrap_or(Value::Null),
            CacheRecord::Unchanged => serde_json::json!({"empty": true}),
        }
    }

    /// Reads a stored value; `None` when it is neither form (a miss, then overwritten).
    pub fn from_json(value: Value) -> Option<Self> {
        if value.get("empty").and_then(Value::as_bool) == Some(true) {
            return Some(CacheRecord::Unchanged);
        }
        serde_json::from_value(value).ok().map(CacheRecord::Layer)
    }
}

/// The key over `parts` (joined by NUL).
pub fn key_of(parts: &[&str]) -> Digest {
    Digest::of(parts.join("\0").as_bytes())
}

/// Stores `record` under `key`.
pub fn record(store: &Store, key: &Digest, record: &CacheRecord) -> Result<()> {
    Ok(store.put_cache(key, &record.to_json())?)
}

/// `Some(Some(layer))` for a cached layer, `Some(None)` for a cached no-change step, `None` on a miss:
/// also when the record was written for another key (the store checks the binding) or its layer
/// cannot be proven present cheaply ([`Store::check_layer`]: index, packs and their sizes, links),
/// so the step is executed again and its record overwritten.
pub fn lookup(store: &Store, key: &Digest) -> Result<Option<Option<LayerRef>>> {
    let Some(value) = store.get_cache(key)? else {
        return Ok(None);
    };
    match CacheRecord::from_json(value) {
        Some(CacheRecord::Unchanged) => Ok(Some(None)),
        Some(CacheRecord::Layer(layer))
            if store
                .check_layer(&layer.diff_id, &layer.blob.digest)
                .is_ok() =>
        {
            Ok(Some(Some(LayerRef {
                diff_id: layer.diff_id,
                blob: layer.blob,
            })))
        }
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> CacheRecord {
        CacheRecord::Layer(LayerRecord {
            diff_id: Digest::of(b"tar"),
            blob: BlobDesc {
                digest: Digest::of(b"blob"),
                size: 42,
                media_type: "application/vnd.oci.image.layer.v1.tar+zstd".into(),
            },
            size: 1024,
        })
    }

    /// The typed record writes exactly the JSON the untyped one did, so existing caches hit.
    #[test]
    fn records_keep_their_on_disk_json() {
        let layer = sample();
        let CacheRecord::Layer(l) = &layer else {
            unreachable!()
        };
        let old =
            serde_json::json!({"diff_id": l.diff_id.to_string(), "blob": l.blob, "size": 1024});
        assert_eq!(
            serde_json::to_string(&layer.to_json()).unwrap(),
            serde_json::to_string(&old).unwrap()
        );
        assert_eq!(
            serde_json::to_string(&CacheRecord::Unchanged.to_json()).unwrap(),
            r#"{"empty":true}"#
        );
    }

    #[test]
    fn records_read_back_and_junk_is_a_miss() {
        for record in [sample(), CacheRecord::Unchanged] {
            assert_eq!(CacheRecord::from_json(record.to_json()), Some(record));
        }
        for junk in [
            serde_json::json!({"empty": false}),
            serde_json::json!({"diff_id": "sha256:zz", "blob": {}}),
            serde_json::json!([1, 2]),
        ] {
            assert_eq!(CacheRecord::from_json(junk), None);
        }
    }
}
