//! `--cache-to registry:REF` and `--cache-from registry:REF`: the build cache shared through a
//! registry (BuildKit's idea), so a CI runner with an empty store gets hits for the steps another
//! runner built.
//!
//! Why it works: a step's cache key is a digest of its plan identity, its parent's key and the
//! digests of what it read (see `exec/cache.rs`), none of which depends on the machine, so keys
//! made on one runner are the keys another computes for the same Kubefile and context.
//!
//! The cache travels as one OCI image, `artifactType` [`ARTIFACT_TYPE`], that any registry
//! stores: its layers are the layer blobs of the build (every step's, all platforms, each once),
//! its config a normal image config (so `chasi pull`'s import checks every DiffID) plus the
//! entries under [`ENTRIES_FIELD`]: `[{"key": "sha256:…", "value": <the store's cache record>}]`.
//! Importing pulls it into the store (verified like any image, tagged under no name) and writes
//! each entry into the store's cache, where cache records are `gc` roots. An entry naming a layer
//! the artifact does not carry is refused (a cache cannot point a step at some other local
//! layer). A cache that cannot be read is a warning, never a failed build: without it the
//! build is only slower.

use crate::error::{BuildError, Result};
use chasi_images::StoreBlobs;
use chasi_layers::{Digest, Store};
use chasi_oci::{Descriptor, MediaType};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};

/// The artifact type of a build cache image.
pub const ARTIFACT_TYPE: &str = "application/vnd.chasi.build-cache.v1";

/// The config field holding the cache entries.
pub const ENTRIES_FIELD: &str = "chasi.build-cache.entries";

/// The registry reference of a `--cache-to`/`--cache-from` value (`registry:REF`).
pub fn registry_reference(value: &str) -> std::result::Result<&str, String> {
    match value.strip_prefix("registry:") {
        Some(r) if !r.is_empty() => Ok(r),
        _ => Err(format!(
            "`{value}` is not a cache location: write registry:HOST/NAME:TAG (the only kind of cache chasi shares)"
        )),
    }
}

/// What [`export`] pushed.
#[derive(Debug, Clone)]
pub struct ExportReport {
    /// Entries in the cache image.
    pub entries: usize,
    /// Layers in it.
    pub layers: usize,
    /// Blobs uploaded (the rest the registry had).
    pub blobs_uploaded: usize,
}

/// Pushes `entries` (key → store cache value) and the layers they name as the cache image `reference`.
pub fn export(
    store: &Store,
    entries: &[(Digest, Value)],
    reference: &str,
    registry: &chasi_registry::Options,
) -> Result<ExportReport> {
    let failed = |source| BuildError::CacheTo {
        reference: reference.to_string(),
        source: Box::new(source),
    };
    let mut unique: BTreeMap<Digest, &Value> = BTreeMap::new();
    for (k, v) in entries {
        unique.insert(*k, v);
    }
    let mut layers: Vec<Descriptor> = Vec::new();
    let mut diff_ids: Vec<String> = Vec::new();
    let mut seen = BTreeSet::new();
    for value in unique.values() {
        let Some((diff_id, blob)) = layer_of(value) else {
            continue;
        };
        if seen.insert(diff_id) {
            diff_ids.push(diff_id.to_string());
            layers.push(blob);
        }
    }
    let listed: Vec<Value> = unique
        .iter()
        .map(|(k, v)| json!({"key": k.to_string(), "value": v}))
        .collect();
    let config = json!({
        "architecture": "amd64",
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        ENTRIES_FIELD: listed,
    });
    let mut annotations = BTreeMap::new();
    annotations.insert(
        "org.opencontainers.image.description".to_string(),
        "chasi build cache".to_string(),
    );
    let mut sink = StoreBlobs::new(store);
    let manifest = chasi_oci::image::build_manifest(&mut sink, &config, &layers, &annotations)?;
    let digest = Digest::from_oci(manifest.digest())?;
    let report = chasi_registry::push(store, &digest.to_string(), Some(reference), registry)
        .map_err(failed)?;
    Ok(ExportReport {
        entries: unique.len(),
        layers: layers.len(),
        blobs_uploaded: report.blobs_uploaded,
    })
}

/// The layer a cache value names: its DiffID and the blob the manifest references.
fn layer_of(value: &Value) -> Option<(Digest, Descriptor)> {
    let diff_id: Digest = value.get("diff_id")?.as_str()?.parse().ok()?;
    let blob = value.get("blob")?;
    let digest = blob
        .get("digest")?
        .as_str()?
        .parse::<chasi_oci::OciDigest>()
        .ok()?;
    let size = blob.get("size")?.as_u64()?;
    let media = blob.get("media_type")?.as_str()?;
    Some((
        diff_id,
        Descriptor::new(MediaType::from(media), size, digest),
    ))
}

/// What [`import`] brought in.
#[derive(Debug, Clone, Default)]
pub struct ImportReport {
    /// Entries written into the store's cache.
    pub entries: usize,
    /// Entries refused (malformed, or naming a layer the cache image does not carry).
    pub refused: usize,
}

/// Pulls the cache image `reference` into the store and writes its entries into the store's cache.
pub fn import(
    store: &Store,
    reference: &str,
    registry: &chasi_registry::Options,
) -> std::result::Result<ImportReport, String> {
    let shown = |e: &dyn std::error::Error| chasi_layers::error::chain(e);
    // What the store called by the cache's name before (a user's `chasi pull` of it), put back.
    let before = chasi_images::normalize_name(reference)
        .ok()
        .map(|name| (store.get_ref(&name).ok(), name));
    let pulled = chasi_registry::pull(store, reference, None, registry).map_err(|e| shown(&e))?;
    // The cache image is not an image anyone runs: it stays in the store only through the
    // entries, which `gc` keeps.
    if let Some(tag) = &pulled.tag {
        match before.as_ref().filter(|(_, name)| name == tag) {
            Some((Some(previous), _)) => store.set_ref(tag, previous).map_err(|e| shown(&e))?,
            _ => {
                let _ = store.delete_ref(tag);
            }
        }
    }
    let root = chasi_oci::Descriptor::new(
        MediaType::ImageManifest,
        store.blob_size(&pulled.digest).map_err(|e| shown(&e))?,
        pulled.digest.to_oci(),
    );
    let blobs = StoreBlobs::new(store);
    let manifest = chasi_oci::select_manifest(&blobs, &root, None).map_err(|e| shown(&e))?;
    let (manifest, _) = chasi_oci::read_manifest(&blobs, &manifest).map_err(|e| shown(&e))?;
    let (config, _) =
        chasi_oci::image::read_config(&blobs, manifest.config()).map_err(|e| shown(&e))?;
    let (entries, refused) = accepted_entries(&config).ok_or_else(|| {
        format!("{reference} is not a chasi build cache (its config has no `{ENTRIES_FIELD}`)")
    })?;
    for (key, value) in &entries {
        store.put_cache(key, value).map_err(|e| shown(&e))?;
    }
    Ok(ImportReport {
        entries: entries.len(),
        refused,
    })
}

/// The entries of a cache image's config that may go into the store, and how many were
/// refused: malformed ones, and those naming a layer the image does not carry (its
/// `rootfs.diff_ids`, each checked on import), so a cache cannot point a step at some other
/// layer of the store. `None` when the config is not a build cache's.
fn accepted_entries(config: &Value) -> Option<(Vec<(Digest, Value)>, usize)> {
    let carried: BTreeSet<Digest> = config["rootfs"]["diff_ids"]
        .as_array()
        .map(|ids| {
            ids.iter()
                .filter_map(|d| d.as_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    let listed = config.get(ENTRIES_FIELD)?.as_array()?;
    let mut accepted = Vec::new();
    let mut refused = 0;
    for entry in listed {
        let key = entry
            .get("key")
            .and_then(Value::as_str)
            .and_then(|k| k.parse::<Digest>().ok());
        let value = entry.get("value").filter(|v| v.is_object());
        let (Some(key), Some(value)) = (key, value) else {
            refused += 1;
            continue;
        };
        if let Some(diff_id) = value.get("diff_id") {
            let named = diff_id.as_str().and_then(|d| d.parse::<Digest>().ok());
            if !named.is_some_and(|d| carried.contains(&d)) {
                refused += 1;
                continue;
            }
        }
        accepted.push((key, value.clone()));
    }
    Some((accepted, refused))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forged_and_malformed_entries_are_refused() {
        let carried = Digest::of(b"carried layer");
        let elsewhere = Digest::of(b"a layer of the store the cache does not carry");
        let key = |n: &[u8]| Digest::of(n).to_string();
        let config = json!({
            "rootfs": {"type": "layers", "diff_ids": [carried.to_string()]},
            ENTRIES_FIELD: [
                {"key": key(b"1"), "value": {"diff_id": carried.to_string(), "blob": {}}},
                {"key": key(b"2"), "value": {"empty": true}},
                {"key": key(b"3"), "value": {"digest": "sha256:pin", "size": 1}},
                {"key": key(b"4"), "value": {"diff_id": elsewhere.to_string(), "blob": {}}},
                {"key": key(b"5"), "value": {"diff_id": "sha256:not-hex"}},
                {"key": "not a digest", "value": {"empty": true}},
                {"key": key(b"7"), "value": "not an object"},
                {"value": {"empty": true}},
            ],
        });
        let (accepted, refused) = accepted_entries(&config).unwrap();
        let keys: Vec<String> = accepted.iter().map(|(k, _)| k.to_string()).collect();
        assert_eq!(keys, [key(b"1"), key(b"2"), key(b"3")]);
        assert_eq!(refused, 5);
        assert!(
            accepted_entries(&json!({"rootfs": {}})).is_none(),
            "not a cache"
        );
        assert!(accepted_entries(&json!({ENTRIES_FIELD: {}})).is_none());
    }

    #[test]
    fn only_registry_locations_are_caches() {
        assert_eq!(
            registry_reference("registry:reg.example/ci/cache:main"),
            Ok("reg.example/ci/cache:main")
        );
        for bad in [
            "type=local,dest=x",
            "registry:",
            "reg.example/ci/cache:main",
        ] {
            assert!(registry_reference(bad).is_err(), "{bad}");
        }
    }
}
