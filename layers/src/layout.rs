//! The store format file `<store>/layout.json`: format version and the chunking/compression parameters.
//!
//! The parameters are read back from this file at every open and used for all later ingests into that store, so
//! a future chasi with other defaults never re-chunks or misreads old data: chunk boundaries, chunk IDs and frame
//! bytes stay comparable within one store. A store with a newer `version` or unknown algorithms is refused.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Current on-disk format version.
pub const FORMAT_VERSION: u32 = 1;
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

/// Per-chunk compression parameters (pinned so that frames, hence layer blobs, are reproducible).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompressionParams {
    /// Always `"zstd"`.
    pub algorithm: String,
    /// zstd level.
    pub level: i32,
    /// Frame header carries the content size.
    pub content_size: bool,
    /// Frame carries a checksum (off: chunks are verified by SHA-256).
    pub checksum: bool,
    /// One frame per chunk, single-threaded encoder.
    pub frame_per_chunk: bool,
    /// libzstd version that wrote the frames (informational: stored frames are never recompressed).
    pub zstd_version: String,
    /// gzip level used when a `tar+gzip` blob is produced (one gzip member per chunk).
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
            frame_per_chunk: true,
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
    /// Hash naming blobs, chunks and layers (`"sha256"`).
    pub hash: String,
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
            chunking,
            compression: CompressionParams::default(),
        }
    }

    /// Parses and validates a `layout.json`.
    pub fn parse(data: &[u8], path: &Path) -> Result<Layout> {
        let bad = |detail: String| Error::Layout {
            path: path.to_path_buf(),
            detail,
        };
        let l: Layout =
            serde_json::from_slice(data).map_err(|e| bad(format!("unreadable: {e}")))?;
        if l.format != FORMAT_NAME {
            return Err(bad(format!("format {:?} is not {FORMAT_NAME:?}", l.format)));
        }
        if l.version > FORMAT_VERSION {
            return Err(bad(format!(
                "version {} is newer than supported {FORMAT_VERSION}",
                l.version
            )));
        }
        if l.hash != "sha256" || l.compression.algorithm != "zstd" || !l.compression.frame_per_chunk
        {
            return Err(bad("unsupported hash or compression".into()));
        }
        l.chunking.validate().map_err(bad)?;
        Ok(l)
    }
}
