//! The documents the store keeps about its objects, as they are serialized: blob descriptors, layer indexes
//! (`layers/<diffid>.json`) and their chunk lists, blob links (`links/<blob>.json`), ref records, and the media
//! types of the layer blobs the store serves. Plain data below every part of the store, so each part reads and
//! writes them without depending on another.

use crate::digest::{ChunkId, Digest};
use crate::error::Result;
use crate::json;
use crate::layout::ChunkParams;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// OCI media type of a zstd-compressed layer.
pub const MEDIA_TYPE_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
/// OCI media type of a gzip-compressed layer.
pub const MEDIA_TYPE_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// OCI media type of an uncompressed layer.
pub const MEDIA_TYPE_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";

/// Digest, size and media type of a blob, as an OCI descriptor needs them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobDesc {
    /// Blob digest.
    pub digest: Digest,
    /// Blob size in bytes.
    pub size: u64,
    /// OCI media type.
    pub media_type: String,
}

/// One chunk of a layer's uncompressed tar. Serialized as `["blake3:…", len]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "(ChunkId, u32)", from = "(ChunkId, u32)")]
pub struct ChunkRef {
    /// BLAKE3 name of the uncompressed chunk.
    pub id: ChunkId,
    /// Uncompressed length.
    pub len: u32,
}

impl From<ChunkRef> for (ChunkId, u32) {
    fn from(c: ChunkRef) -> Self {
        (c.id, c.len)
    }
}
impl From<(ChunkId, u32)> for ChunkRef {
    fn from(t: (ChunkId, u32)) -> Self {
        ChunkRef { id: t.0, len: t.1 }
    }
}

/// The index of one layer, stored as `layers/<diffid>.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerIndex {
    /// Index format version (2).
    pub version: u32,
    /// SHA-256 of the uncompressed tar (OCI DiffID).
    pub diff_id: Digest,
    /// Size of the uncompressed tar.
    pub size: u64,
    /// Chunking parameters the chunks were cut with.
    pub chunking: ChunkParams,
    /// Chunks in tar order.
    pub chunks: Vec<ChunkRef>,
    /// The reproducible `tar+zstd` blob, once computed ([`Store::ensure_zstd`](crate::Store::ensure_zstd));
    /// served from the stored frames that are its blob frames (see [`crate::layout::CompressionParams`]).
    #[serde(default)]
    pub zstd: Option<BlobDesc>,
    /// The reproducible `tar+gzip` blob, once computed ([`Store::ensure_gzip`](crate::Store::ensure_gzip)).
    #[serde(default)]
    pub gzip: Option<BlobDesc>,
    /// Blobs that came from outside and cannot be reproduced, kept as-is under `blobs/`.
    #[serde(default)]
    pub external: Vec<BlobDesc>,
}

/// What callers get back about a layer.
pub type LayerInfo = LayerIndex;

impl LayerIndex {
    /// Parses a layer index file's bytes (bounded in size and depth, see [`crate::json`]); never panics.
    pub fn decode(data: &[u8], path: &Path) -> Result<LayerIndex> {
        json::parse(data, json::MAX_LAYER_INDEX, "layer index", path)
    }

    /// The blob a manifest should reference, if its digest is known: the first external blob if the layer came
    /// from outside (so the original digest is preserved), else the reproducible zstd blob.
    /// [`Store::layer_blob`](crate::Store::layer_blob) computes it when unknown.
    pub fn known_blob(&self) -> Option<&BlobDesc> {
        self.external.first().or(self.zstd.as_ref())
    }
}

/// How a blob digest maps to a layer (`links/<digest>.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobLink {
    /// The layer.
    pub diff_id: Digest,
    /// `zstd`, `gzip`, `tar` (the blob is the uncompressed tar) or `external` (stored raw under `blobs/`).
    pub encoding: String,
}

/// A reference record (`refs/<escaped name>.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefRecord {
    /// `name:tag` as given.
    pub name: String,
    /// The manifest (or index) digest.
    pub digest: Digest,
}
