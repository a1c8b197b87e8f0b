//! Disk usage (`chasi store du`): each image's size as OCI counts it (manifest, config and layer blobs, through
//! nested indexes), what no image references, and the bytes the store directory really occupies.

use crate::digest::Digest;
use crate::error::Result;
use crate::fsutil;
use crate::store::{list_hex, Store};
use serde::Serialize;
use serde_json::Value;
use std::collections::HashSet;
use std::fs;

/// Deepest nesting of indexes followed (an index of indexes of manifests is depth 2).
pub(super) const MAX_INDEX_DEPTH: u32 = 4;

/// Usage of one image (a ref).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ImageUsage {
    /// Ref name.
    pub name: String,
    /// Manifest digest.
    pub digest: String,
    /// Bytes as OCI counts them: manifest + config + layer blob sizes (recursing into indexes).
    pub logical_bytes: u64,
    /// Number of layer descriptors.
    pub layers: u64,
    /// Why the image's size could not be counted (an unreadable manifest, index or config), naming the digest.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

/// Result of [`Store::du`].
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DuReport {
    /// Store directory.
    pub store: String,
    /// Sum over images of their OCI size, plus objects no image references (layers at their blob size, blobs).
    pub logical_bytes: u64,
    /// Bytes allocated on disk by the whole store directory.
    pub physical_bytes: u64,
    /// `logical_bytes / physical_bytes` (0 when the store is empty).
    pub dedup_ratio: f64,
    /// Sum of the uncompressed tar sizes of all layers.
    pub uncompressed_layer_bytes: u64,
    /// Number of layers.
    pub layers: u64,
    /// Number of distinct chunks.
    pub chunks: u64,
    /// Number of raw blobs.
    pub blobs: u64,
    /// Per image.
    pub images: Vec<ImageUsage>,
}

/// `(digest, size)` of an OCI descriptor, if it has both.
pub(super) fn descriptor(x: &Value) -> Option<(Digest, u64)> {
    Some((
        x.get("digest")?.as_str()?.parse().ok()?,
        x.get("size")?.as_u64()?,
    ))
}

impl Store {
    /// Logical vs physical usage, per image. An image whose documents cannot be read is listed with a `problem`.
    pub fn du(&self) -> Result<DuReport> {
        let refs = self.list_refs()?;
        let mut images = Vec::new();
        let mut counted: HashSet<Digest> = HashSet::new();
        let mut logical = 0u64;
        for r in &refs {
            let mut layers = 0;
            let mut seen = Vec::new();
            let (bytes, problem) = match self.oci_size(&r.digest, &mut layers, &mut seen, 0) {
                Ok(b) => (b, None),
                Err(e) => (0, Some(crate::error::chain(&e))),
            };
            counted.extend(seen);
            logical += bytes;
            images.push(ImageUsage {
                name: r.name.clone(),
                digest: r.digest.to_string(),
                logical_bytes: bytes,
                layers,
                problem,
            });
        }
        let layer_ids = self.list_layers()?;
        let mut uncompressed = 0;
        for l in &layer_ids {
            if let Ok(idx) = self.layer(l) {
                uncompressed += idx.size;
                // A layer no manifest counted: its OCI size if known, else nothing (its compressed size is not
                // known until something needs it).
                let known = [idx.external.first(), idx.zstd.as_ref(), idx.gzip.as_ref()];
                if !known.iter().flatten().any(|b| counted.contains(&b.digest)) {
                    if let Some(b) = idx.known_blob() {
                        logical += b.size;
                        counted.insert(b.digest);
                    }
                }
                counted.extend(idx.external.iter().map(|e| e.digest));
            }
        }
        let blobs = list_hex(&self.root.join("blobs"), "")?;
        for b in &blobs {
            if !counted.contains(b) {
                logical += fs::metadata(self.blob_path(b))
                    .map(|m| m.len())
                    .unwrap_or(0);
            }
        }
        let physical = fsutil::dir_size(&self.root);
        let chunks = self
            .chunks
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .map
            .len() as u64;
        Ok(DuReport {
            store: self.root.display().to_string(),
            logical_bytes: logical,
            physical_bytes: physical,
            dedup_ratio: if physical == 0 {
                0.0
            } else {
                logical as f64 / physical as f64
            },
            uncompressed_layer_bytes: uncompressed,
            layers: layer_ids.len() as u64,
            chunks,
            blobs: blobs.len() as u64,
            images,
        })
    }

    /// OCI size of a manifest or index: itself plus every descriptor's `size` (recursing into child manifests).
    fn oci_size(
        &self,
        d: &Digest,
        layers: &mut u64,
        seen: &mut Vec<Digest>,
        depth: u32,
    ) -> Result<u64> {
        seen.push(*d);
        let v = self.get_json(d, "manifest")?;
        let mut total = self.blob_size(d)?;
        if let Some(c) = v.get("config").and_then(descriptor) {
            total += c.1;
            seen.push(c.0);
        }
        for l in v
            .get("layers")
            .and_then(|l| l.as_array())
            .into_iter()
            .flatten()
            .filter_map(descriptor)
        {
            total += l.1;
            *layers += 1;
            seen.push(l.0);
        }
        if depth < MAX_INDEX_DEPTH {
            for m in v
                .get("manifests")
                .and_then(|l| l.as_array())
                .into_iter()
                .flatten()
                .filter_map(descriptor)
            {
                total += self.oci_size(&m.0, layers, seen, depth + 1)?;
            }
        }
        Ok(total)
    }
}
