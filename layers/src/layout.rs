//! The store format file `<store>/layout.json`: format version and the chunking/compression parameters.
//!
//! The parameters are read back from this file at every open and used for all later ingests into that store, so
//! a future chasi with other defaults never re-chunks or misreads old data: chunk boundaries, chunk IDs and frame
//! bytes stay comparable within one store. A store with a newer `version` or unknown algorithms is refused.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Current on-disk format version. Version 1 (chasi before the solid packs) stored one zstd frame per chunk and
/// named chunks by SHA-256; its stores are refused with a message saying so, never misread.
pub const FORMAT_VERSION: u32 = 2;
/// Magic string in `layout.json`.
pub const FORMAT_NAME: &str = "chasi-store";

/// Content-defined chunking parameters (FastCDC 2020, `fastcdc` crate `v2020` cut points).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkParams {
    /// Always `"fastcdc-v2020"`.
    pub algorithm: ChunkAlgorithm,
    /// Minimum chunk size in bytes (no cut point is looked for below it).
    pub min_size: u32,
    /// Target average chunk size in bytes.
    pub avg_size: u32,
    /// Maximum chunk size in bytes (forced cut).
    pub max_size: u32,
    /// Normalized-chunking level (0–3).
    pub normalization: u8,
    /// Gear table seed (0 = the published table; kept so the value is explicit).
    pub seed: u64,
}

/// The chunking algorithm identifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChunkAlgorithm {
    /// FastCDC as in the 2020 TPDS paper (`fastcdc::v2020`).
    #[serde(rename = "fastcdc-v2020")]
    FastCdc2020,
}

impl Default for ChunkParams {
    /// 16 KiB / 64 KiB / 256 KiB, normalization 1, seed 0 — see "The layer store" in `ARCHITECTURE.md` for the measurements
    /// behind the choice (dedup vs per-chunk compression ratio vs index size).
    fn default() -> Self {
        ChunkParams {
            algorithm: ChunkAlgorithm::FastCdc2020,
            min_size: 16 * 1024,
            avg_size: 64 * 1024,
            max_size: 256 * 1024,
            normalization: 1,
            seed: 0,
        }
    }
}

impl ChunkParams {
    /// Checks the values against the limits of the `fastcdc` crate.
    pub fn validate(&self) -> std::result::Result<(), String> {
        let ok = (64..=1_048_576).contains(&self.min_size)
            && (256..=4_194_304).contains(&self.avg_size)
            && (1024..=16_777_216).contains(&self.max_size)
            && self.min_size <= self.avg_size
            && self.avg_size <= self.max_size
            && self.normalization <= 3
            && self.avg_size.is_power_of_two()
            && self.min_size & 1 == 0
            && self.max_size & 1 == 0;
        if ok {
            Ok(())
        } else {
            Err(format!("chunking parameters out of range: {self:?}"))
        }
    }
}

/// Compression parameters, pinned so that everything derived from chunks is reproducible byte for byte.
///
/// Two framings exist. At rest, the new chunks of one ingest are compressed together in frames of about
/// `pack_frame_bytes` (large frames give zstd context: ~2 % above one solid stream instead of ~25 % with one frame
/// per 64 KiB chunk). The OCI `tar+zstd` blob of a layer is a function of its chunk list alone: consecutive chunks
/// grouped until a group holds at least `blob_frame_bytes`, one frame per group; `tar+gzip` uses the same groups,
/// one gzip member each. Both are produced from the chunks when served and checked against the recorded digest.
/// With the two sizes equal (the default), a layer whose chunks were all new when ingested has pack frames that
/// *are* its blob frames, so its blob digest is known at ingest for the cost of hashing the compressed bytes, and
/// serving copies them; a layer mixing known and new chunks gets its frames compressed once, on first need, and
/// kept in a pack of their own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompressionParams {
    /// Always `"zstd"`.
    pub algorithm: String,
    /// zstd level of pack frames and blob frames.
    pub level: i32,
    /// Frame headers carry the content size.
    pub content_size: bool,
    /// Frames carry a checksum (off: chunks are verified by their BLAKE3 names).
    pub checksum: bool,
    /// A pack frame is closed once it holds at least this many uncompressed bytes.
    pub pack_frame_bytes: u32,
    /// A layer blob frame (or gzip member) is closed once it holds at least this many uncompressed bytes.
    pub blob_frame_bytes: u32,
    /// libzstd version in use when the store was created (blob digests are rechecked on every read, so a
    /// library that compresses differently is detected, never silently served).
    pub zstd_version: String,
    /// gzip level used when a `tar+gzip` blob is produced.
    pub gzip_level: u32,
}

impl Default for CompressionParams {
    fn default() -> Self {
        let v = zstd::zstd_safe::version_number();
        CompressionParams {
            algorithm: "zstd".into(),
            level: 3,
            content_size: true,
            checksum: false,
            pack_frame_bytes: 4 << 20,
            blob_frame_bytes: 4 << 20,
            zstd_version: format!("{}.{}.{}", v / 10000, (v / 100) % 100, v % 100),
            gzip_level: 6,
        }
    }
}

/// Contents of `layout.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Layout {
    /// Always [`FORMAT_NAME`].
    pub format: String,
    /// Format version ([`FORMAT_VERSION`]).
    pub version: u32,
    /// Hash naming blobs and layers (`"sha256"`, as OCI requires).
    pub hash: String,
    /// Hash naming chunks (`"blake3"`).
    pub chunk_hash: String,
    /// Chunking parameters.
    pub chunking: ChunkParams,
    /// Compression parameters.
    pub compression: CompressionParams,
}

impl Layout {
    /// The layout for a new store with the given chunking parameters.
    pub fn new(chunking: ChunkParams) -> Self {
        Layout {
            format: FORMAT_NAME.into(),
            version: FORMAT_VERSION,
            hash: "sha256".into(),
            chunk_hash: "blake3".into(),
            chunking,
            compression: CompressionParams::default(),
        }
    }

    /// Checks hashes, algorithms and parameter ranges.
    pub fn validate(&self) -> std::result::Result<(), String> {
        if self.format != FORMAT_NAME || self.version != FORMAT_VERSION {
            return Err(format!("format {} version {}", self.format, self.version));
        }
        if self.hash != "sha256"
            || self.chunk_hash != "blake3"
            || self.compression.algorithm != "zstd"
        {
            return Err("unsupported hash or compression".into());
        }
        let c = &self.compression;
        if !(1..=19).contains(&c.level)
            || !(1..=9).contains(&c.gzip_level)
            || !(64 << 10..=64 << 20).contains(&c.pack_frame_bytes)
            || !(64 << 10..=64 << 20).contains(&c.blob_frame_bytes)
        {
            return Err(format!("compression parameters out of range: {c:?}"));
        }
        self.chunking.validate()
    }

    /// Parses and validates a `layout.json`.
    pub fn parse(data: &[u8], path: &Path) -> Result<Layout> {
        let bad = |detail: String| Error::Layout {
            path: path.to_path_buf(),
            detail,
        };
        #[derive(Deserialize)]
        struct Head {
            format: String,
            version: u32,
        }
        crate::json::check(data, crate::json::MAX_DOC).map_err(bad)?;
        let head: Head =
            serde_json::from_slice(data).map_err(|e| bad(format!("unreadable: {e}")))?;
        if head.format != FORMAT_NAME {
            return Err(bad(format!(
                "format {:?} is not {FORMAT_NAME:?}",
                head.format
            )));
        }
        if head.version > FORMAT_VERSION {
            return Err(bad(format!(
                "version {} is newer than supported {FORMAT_VERSION}",
                head.version
            )));
        }
        if head.version < FORMAT_VERSION {
            return Err(bad(format!(
                "version {} was written by an older chasi (one zstd frame per chunk, SHA-256 chunk names); \
                 this chasi reads version {FORMAT_VERSION} only: save the images you need with the old chasi, \
                 then point --store at a new directory",
                head.version
            )));
        }
        let l: Layout =
            serde_json::from_slice(data).map_err(|e| bad(format!("unreadable: {e}")))?;
        l.validate().map_err(bad)?;
        l.chunking.validate().map_err(bad)?;
        Ok(l)
    }
}
