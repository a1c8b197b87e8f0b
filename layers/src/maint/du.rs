//! Store-level disk usage, for `chasi store du`: the bytes the store directory occupies, its
//! object counts, and the objects no image references (layers at their known blob size, raw
//! blobs). What an image counts is `chasi-images`' (`images/src/du.rs`): the store knows
//! layers and blobs, not images, so the caller names the blobs its images reference.

use crate::digest::Digest;
use crate::error::Result;
use crate::fsutil;
use crate::store::{list_hex, Store};
use std::collections::HashSet;
use std::fs;

/// Result of [`Store::usage`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreUsage {
    /// Store directory.
    pub store: String,
    /// Bytes of the objects none of the referenced digests names: layers at their known blob
    /// size (nothing when no blob of the layer is known yet), raw blobs at their size.
    pub unreferenced_bytes: u64,
    /// Bytes allocated on disk by the whole store directory.
    pub physical_bytes: u64,
    /// Sum of the uncompressed tar sizes of all layers.
    pub uncompressed_layer_bytes: u64,
    /// Number of layers.
    pub layers: u64,
    /// Number of distinct chunks.
    pub chunks: u64,
    /// Number of raw blobs.
    pub blobs: u64,
}

impl Store {
    /// Physical usage and object counts, and the bytes of what `referenced` (the blob
    /// digests the images reach) does not name. A layer is referenced when any of its blob
    /// digests is.
    pub fn usage(&self, referenced: &HashSet<Digest>) -> Result<StoreUsage> {
        let mut counted = referenced.clone();
        let mut unreferenced = 0u64;
        let layer_ids = self.list_layers()?;
        let mut uncompressed = 0;
        for l in &layer_ids {
            let Ok(idx) = self.layer(l) else { continue };
            uncompressed += idx.size;
            let known = [idx.external.first(), idx.zstd.as_ref(), idx.gzip.as_ref()];
            if !known.iter().flatten().any(|b| counted.contains(&b.digest)) {
                if let Some(b) = idx.known_blob() {
                    unreferenced += b.size;
                    counted.insert(b.digest);
                }
            }
            // A layer stored as an external blob is counted once, as a layer.
            counted.extend(idx.external.iter().map(|e| e.digest));
        }
        let blobs = list_hex(&self.root.join("blobs"), "")?;
        for b in blobs.iter().filter(|b| !counted.contains(b)) {
            unreferenced += fs::metadata(self.blob_path(b)).map_or(0, |m| m.len());
        }
        let chunks = self
            .chunks
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .map
            .len() as u64;
        Ok(StoreUsage {
            store: self.root.display().to_string(),
            unreferenced_bytes: unreferenced,
            physical_bytes: fsutil::dir_size(&self.root),
            uncompressed_layer_bytes: uncompressed,
            layers: layer_ids.len() as u64,
            chunks,
            blobs: blobs.len() as u64,
        })
    }
}
