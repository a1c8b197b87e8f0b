//! Disk usage per image, for `chasi store du`: each image's size as OCI counts it
//! ([`Image::oci_size`], the same number `chasi images` shows), and the store's own
//! accounting ([`Store::usage`]: physical bytes, object counts, what no image references),
//! told which blobs the images reach.

use crate::docs::Image;
use crate::error::Result;
use chasi_layers::{Digest, Store};
use serde::Serialize;
use std::collections::HashSet;

/// Usage of one image (a ref).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ImageUsage {
    /// Ref name.
    pub name: String,
    /// Manifest or index digest.
    pub digest: String,
    /// Bytes as OCI counts them ([`Image::oci_size`]).
    pub logical_bytes: u64,
    /// Number of layer descriptors.
    pub layers: u64,
    /// Why the image's size could not be counted (an unreadable manifest, index or config),
    /// naming the digest.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

/// Result of [`du`] (fields in the order `chasi store du --format json` prints them).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DuReport {
    /// Store directory.
    pub store: String,
    /// Sum over images of their OCI size, plus objects no image references (layers at their
    /// blob size, blobs).
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
    /// Per image, in ref order.
    pub images: Vec<ImageUsage>,
}

/// Logical vs physical usage, per image. An image whose documents cannot be read is listed
/// with a `problem` and counts nothing (its root document is still taken as referenced).
pub fn du(store: &Store) -> Result<DuReport> {
    let mut images = Vec::new();
    let mut referenced = HashSet::new();
    for r in store.list_refs()? {
        let (usage, reached) = image_usage(store, &r.name, &r.digest);
        images.push(usage);
        referenced.extend(reached);
    }
    let usage = store.usage(&referenced)?;
    let logical = images.iter().map(|i| i.logical_bytes).sum::<u64>() + usage.unreferenced_bytes;
    Ok(DuReport {
        store: usage.store,
        logical_bytes: logical,
        physical_bytes: usage.physical_bytes,
        dedup_ratio: match usage.physical_bytes {
            0 => 0.0,
            physical => logical as f64 / physical as f64,
        },
        uncompressed_layer_bytes: usage.uncompressed_layer_bytes,
        layers: usage.layers,
        chunks: usage.chunks,
        blobs: usage.blobs,
        images,
    })
}

/// One image's usage and the store digests it reaches.
fn image_usage(store: &Store, name: &str, root: &Digest) -> (ImageUsage, Vec<Digest>) {
    let usage = |logical_bytes, layers, problem| ImageUsage {
        name: name.to_string(),
        digest: root.to_string(),
        logical_bytes,
        layers,
        problem,
    };
    match Image::read(store, root) {
        Ok(image) => {
            let layers = image.manifests.iter().map(|m| m.manifest.layers().len());
            let layers = layers.sum::<usize>() as u64;
            (usage(image.oci_size(), layers, None), reached(&image))
        }
        Err(e) => (usage(0, 0, Some(chasi_oci::error::chain(&e))), vec![*root]),
    }
}

/// The digests of an image's documents and blobs (those the store can hold).
fn reached(image: &Image) -> Vec<Digest> {
    let mut out: Vec<Digest> = image.indexes.iter().map(|(d, _)| *d).collect();
    for m in &image.manifests {
        out.push(m.digest);
        let blobs = std::iter::once(m.manifest.config()).chain(m.manifest.layers());
        out.extend(blobs.filter_map(|b| Digest::from_oci(b.digest()).ok()));
    }
    out
}
