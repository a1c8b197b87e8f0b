//! The store itself: one `Store` handle whose parts live in the submodules below, one concern each (opening,
//! chunks, blobs, layers, reproducible blobs, layer reading, refs, cache records). This module only names them.
//!
//! On-disk layout (all names are lowercase hex SHA-256 digests unless stated):
//! ```text
//! <store>/layout.json              format version + chunking/compression parameters (see layout.rs)
//! <store>/locks/gc.lock            flock: shared by every open Store, exclusive during gc's sweep
//! <store>/tmp/<session>/           temp files of one live Store; <session>.lock held while alive
//! <store>/blobs/<hex>              raw OCI blobs: manifests, configs, indexes, layer blobs kept as-is
//! <store>/packs/<hex>.pack|.idx    chunks, compressed several to a zstd frame, and their index (pack.rs)
//! <store>/layers/<diffid>.json     layer index: DiffID, tar size, chunk list, blob digests once known (LayerIndex)
//! <store>/links/<blob>.json        compressed-blob digest → DiffID + encoding, to serve layer blobs by digest
//! <store>/refs/<escaped name>.json name:tag → manifest digest
//! <store>/cache/<key>.json         build-cache records: {key, value}, read back only under their own key
//! ```
//! Write order guarantees that whatever a reader can reach is complete: chunks (pack, then its index) before the
//! layer index, a blob's link before the layer index that lists the blob (a link alone is a partial write, never
//! served), blobs before the refs pointing at them. Every file is written temp → hash → fsync → rename →
//! fsync(dir), so a crash leaves either nothing or a complete object.

mod blobs;
mod cache;
mod chunks;
mod encode;
mod handle;
mod layers;
mod open;
mod reader;
mod records;
mod refs;

pub(crate) use cache::CacheRecord;
pub(crate) use chunks::FrameCheck;
pub(crate) use encode::{blob_frame_keys, BlobEncoding};
pub use handle::Store;
pub(crate) use handle::{list_hex, FrameKey};
pub use reader::LayerReader;
pub use records::{
    BlobDesc, BlobLink, ChunkRef, LayerIndex, LayerInfo, RefRecord, MEDIA_TYPE_LAYER_GZIP,
    MEDIA_TYPE_LAYER_TAR, MEDIA_TYPE_LAYER_ZSTD,
};
