//! The delta format: media types, the config document, and the binary index of a layer payload.
//! `docs/delta-format.md` describes the same for other implementations; keep the two equal.
//!
//! A layer payload blob is `MAGIC`, a little-endian `u64` length, that many bytes of one zstd frame holding
//! the [`LayerIndex`] (operations and parts, varint-encoded), then the parts' zstd frames one after the
//! other. Decoding is bounded: every count is checked against the bytes that could hold it, so a forged
//! index cannot make the reader allocate or loop beyond its input.

use crate::error::{DeltaError, Result};
use chasi_layers::Digest;
use serde::{Deserialize, Serialize};

/// `artifactType` of a delta's manifest.
pub const ARTIFACT_TYPE: &str = "application/vnd.chasi.delta.v1";
/// Media type of the delta's config: the [`DeltaConfig`] JSON.
pub const CONFIG_MEDIA_TYPE: &str = "application/vnd.chasi.delta.config.v1+json";
/// Media type of a layer payload (index and parts).
pub const PAYLOAD_MEDIA_TYPE: &str = "application/vnd.chasi.delta.layer.v1";
/// Annotation on each blob of the artifact saying what it is for (`document`, `payload`, `layer`).
pub const ROLE_ANNOTATION: &str = "io.chasi.delta.role";
/// The format version this code reads and writes; a delta of another major version is refused.
pub const FORMAT_VERSION: u32 = 1;
/// First bytes of a layer payload.
pub const MAGIC: &[u8; 8] = b"CHASIDL1";
/// Length of the truncated BLAKE3 digests operations carry.
pub const OP_DIGEST_LEN: usize = 16;
/// Largest decompressed layer index accepted.
pub const MAX_INDEX_BYTES: u64 = 64 << 20;
/// Largest zstd window a part may declare (2 GiB), whatever the memory limit.
pub const MAX_WINDOW_LOG: u8 = 31;

/// A truncated BLAKE3 digest of an operation's bytes.
pub type OpDigest = [u8; OP_DIGEST_LEN];

/// The truncated BLAKE3 of `data`.
pub fn op_digest(h: &blake3::Hasher) -> OpDigest {
    let mut d = [0u8; OP_DIGEST_LEN];
    d.copy_from_slice(&h.finalize().as_bytes()[..OP_DIGEST_LEN]);
    d
}

/// How much work a delta's creator did: `fast` (zstd level 3) or `release` (level 19, and bsdiff for
/// executables).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// For CI previews: about the speed of `zstd -3 --patch-from`.
    Fast,
    /// For shipping: as small as the format gets.
    Release,
}

impl Level {
    /// The zstd level of its parts.
    pub fn zstd_level(self) -> i32 {
        match self {
            Level::Fast => 3,
            Level::Release => 19,
        }
    }
}

impl std::str::FromStr for Level {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "fast" => Ok(Level::Fast),
            "release" => Ok(Level::Release),
            other => Err(format!("unknown level `{other}` (fast, release)")),
        }
    }
}

/// The delta's config: what it goes from and to, and per layer how it is rebuilt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeltaConfig {
    /// [`FORMAT_VERSION`].
    pub format_version: u32,
    /// How it was made.
    pub level: Level,
    /// The base image: its root digest.
    pub base: Digest,
    /// The target image.
    pub target: Target,
    /// One entry per platform the delta covers.
    pub platforms: Vec<PlatformDelta>,
    /// Every target layer the delta rebuilds, once even when several platforms share it.
    pub layers: Vec<LayerDelta>,
}

/// The image a delta produces.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Target {
    /// Its root (index or manifest) digest: the artifact's `subject`, tagged once everything verified.
    pub digest: Digest,
    /// Its root's media type.
    pub media_type: String,
    /// Its root's size.
    pub size: u64,
    /// The name it is tagged with (`name:tag`), if it had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Every document of the target (indexes, manifests, configs), carried in the artifact.
    pub documents: Vec<Blob>,
}

/// A blob as a descriptor names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Blob {
    /// Digest.
    pub digest: Digest,
    /// Size.
    pub size: u64,
    /// Media type.
    pub media_type: String,
}

/// One platform: which base manifest its layers come from, which target manifest they go to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PlatformDelta {
    /// `os/arch[/variant]`.
    pub platform: String,
    /// The base manifest.
    pub base_manifest: Digest,
    /// The base's layers (DiffIDs, bottom first): what operations read from, by index.
    pub base_layers: Vec<Digest>,
    /// The target manifest.
    pub target_manifest: Digest,
    /// The target's layers (DiffIDs, bottom first).
    pub target_layers: Vec<Digest>,
}

/// How one target layer is rebuilt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LayerDelta {
    /// The layer's DiffID.
    pub diff_id: Digest,
    /// The length of its tar.
    pub size: u64,
    /// The blob the target manifest names for it.
    pub blob: Blob,
    /// How it is rebuilt.
    pub method: Method,
    /// The artifact blob it is rebuilt from: the payload (`delta`) or the layer blob itself (`full`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<Blob>,
    /// For `delta`: the platform whose base layers the operations index.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<usize>,
    /// For `delta`: the memory apply needs at most (a part's reference plus its window).
    #[serde(default)]
    pub memory: u64,
    /// What the delta costs and saves for this layer.
    pub stats: Stats,
}

/// How a layer is rebuilt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// The base has it: nothing to carry.
    Base,
    /// The payload's operations rebuild its tar, which the store compresses into the named blob.
    Delta,
    /// Its blob travels whole (a delta would not be smaller, or the blob cannot be reproduced).
    Full,
}

/// Byte counts of one layer's delta.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Stats {
    /// Tar bytes copied from the base.
    pub reused: u64,
    /// Tar bytes rebuilt by patching against base bytes…
    pub patched: u64,
    /// …and the base bytes they were patched from.
    pub patched_from: u64,
    /// Tar bytes with nothing in the base to patch from.
    pub literal: u64,
    /// What the layer costs in the artifact.
    pub payload: u64,
}

/// One operation: the next `len` bytes of the target tar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Copied from a base layer.
    Reuse {
        /// The range in the base.
        src: Range,
        /// Truncated BLAKE3 of the bytes.
        digest: OpDigest,
    },
    /// Taken from the decoded parts, in order.
    Stream {
        /// How many bytes.
        len: u64,
        /// Truncated BLAKE3 of the bytes.
        digest: OpDigest,
    },
    /// A bsdiff patch (the uncompressed control/diff/extra stream of the `bsdiff` crate) of `patch_len`
    /// bytes taken from the decoded parts, applied to a base range: for executables, whose rebuilt code
    /// shifts every address, which a zstd reference prefix cannot encode as matches.
    Bspatch {
        /// The old file in the base.
        src: Range,
        /// Truncated BLAKE3 of the old file, checked before it is used.
        src_digest: OpDigest,
        /// The bytes it produces.
        len: u64,
        /// The patch's length in the stream.
        patch_len: u64,
        /// Truncated BLAKE3 of the bytes produced.
        digest: OpDigest,
    },
}

impl Op {
    /// The bytes it produces.
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> u64 {
        match self {
            Op::Reuse { src, .. } => src.len,
            Op::Stream { len, .. } | Op::Bspatch { len, .. } => *len,
        }
    }

    /// The bytes it takes from the stream.
    pub fn stream_len(&self) -> u64 {
        match self {
            Op::Reuse { .. } => 0,
            Op::Stream { len, .. } => *len,
            Op::Bspatch { patch_len, .. } => *patch_len,
        }
    }

    /// Memory applying it needs beside its part: a bsdiff patch, its old file and its output.
    pub fn memory(&self) -> u64 {
        match self {
            Op::Bspatch {
                src,
                len,
                patch_len,
                ..
            } => src.len.saturating_add(*len).saturating_add(*patch_len),
            _ => 0,
        }
    }
}

/// A byte range of one of the platform's base layers (by index in [`PlatformDelta::base_layers`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Range {
    /// Index of the base layer.
    pub layer: u32,
    /// Offset in its tar.
    pub offset: u64,
    /// Length.
    pub len: u64,
}

/// A reference range of a part, with the digest it is checked against before use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefRange {
    /// The base range.
    pub src: Range,
    /// Truncated BLAKE3 of its bytes.
    pub digest: OpDigest,
}

/// One zstd frame of the stream, compressed with the concatenation of its reference ranges as prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    /// The reference, in order.
    pub refs: Vec<RefRange>,
    /// Decoded length.
    pub out_len: u64,
    /// Compressed length.
    pub compressed_len: u64,
    /// The frame's window log (the decoder's `WindowLogMax`).
    pub window_log: u8,
}

impl Part {
    /// Bytes of reference.
    pub fn ref_len(&self) -> u64 {
        self.refs.iter().map(|r| r.src.len).sum()
    }

    /// Memory apply needs for it: the reference, plus the decoder's buffer (at most the window, at most
    /// the output).
    pub fn memory(&self) -> u64 {
        self.ref_len()
            + self
                .out_len
                .min(1u64 << self.window_log.min(MAX_WINDOW_LOG))
    }
}

/// The index at the head of a layer payload.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LayerIndex {
    /// The operations, in target order.
    pub ops: Vec<Op>,
    /// The parts, in stream order.
    pub parts: Vec<Part>,
}

impl LayerIndex {
    /// Encodes the index (uncompressed).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        varint(&mut out, self.ops.len() as u64);
        for op in &self.ops {
            match op {
                Op::Reuse { src, digest } => {
                    out.push(0);
                    range(&mut out, src);
                    out.extend_from_slice(digest);
                }
                Op::Stream { len, digest } => {
                    out.push(1);
                    varint(&mut out, *len);
                    out.extend_from_slice(digest);
                }
                Op::Bspatch {
                    src,
                    src_digest,
                    len,
                    patch_len,
                    digest,
                } => {
                    out.push(2);
                    range(&mut out, src);
                    out.extend_from_slice(src_digest);
                    varint(&mut out, *len);
                    varint(&mut out, *patch_len);
                    out.extend_from_slice(digest);
                }
            }
        }
        varint(&mut out, self.parts.len() as u64);
        for p in &self.parts {
            varint(&mut out, p.refs.len() as u64);
            for r in &p.refs {
                range(&mut out, &r.src);
                out.extend_from_slice(&r.digest);
            }
            varint(&mut out, p.out_len);
            varint(&mut out, p.compressed_len);
            out.push(p.window_log);
        }
        out
    }

    /// Decodes an index; `location` names it in errors.
    pub fn decode(data: &[u8], location: &str) -> Result<LayerIndex> {
        let mut r = Cursor {
            data,
            pos: 0,
            location,
        };
        // Each op takes at least 1 + 1 + OP_DIGEST_LEN bytes, each part at least 4 bytes.
        let n_ops = r.count(2 + OP_DIGEST_LEN)?;
        let mut ops = Vec::with_capacity(n_ops);
        for _ in 0..n_ops {
            let op = match r.byte()? {
                0 => Op::Reuse {
                    src: r.range()?,
                    digest: r.digest()?,
                },
                1 => Op::Stream {
                    len: r.varint()?,
                    digest: r.digest()?,
                },
                2 => Op::Bspatch {
                    src: r.range()?,
                    src_digest: r.digest()?,
                    len: r.varint()?,
                    patch_len: r.varint()?,
                    digest: r.digest()?,
                },
                k => return Err(r.bad(format!("unknown operation kind {k}"))),
            };
            ops.push(op);
        }
        let n_parts = r.count(4)?;
        let mut parts = Vec::with_capacity(n_parts);
        for _ in 0..n_parts {
            let n_refs = r.count(3 + OP_DIGEST_LEN)?;
            let mut refs = Vec::with_capacity(n_refs);
            for _ in 0..n_refs {
                refs.push(RefRange {
                    src: r.range()?,
                    digest: r.digest()?,
                });
            }
            let out_len = r.varint()?;
            let compressed_len = r.varint()?;
            let window_log = r.byte()?;
            if !(10..=MAX_WINDOW_LOG).contains(&window_log) {
                return Err(r.bad(format!("window log {window_log} is outside 10..=31")));
            }
            parts.push(Part {
                refs,
                out_len,
                compressed_len,
                window_log,
            });
        }
        if r.pos != data.len() {
            return Err(r.bad(format!("{} bytes after the index", data.len() - r.pos)));
        }
        Ok(LayerIndex { ops, parts })
    }
}

fn varint(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

fn range(out: &mut Vec<u8>, r: &Range) {
    varint(out, r.layer as u64);
    varint(out, r.offset);
    varint(out, r.len);
}

struct Cursor<'a> {
    data: &'a [u8],
    pos: usize,
    location: &'a str,
}

impl Cursor<'_> {
    fn bad(&self, detail: String) -> DeltaError {
        DeltaError::malformed(
            self.location,
            format!("at byte {} of the index: {detail}", self.pos),
        )
    }

    fn byte(&mut self) -> Result<u8> {
        let b = *self
            .data
            .get(self.pos)
            .ok_or_else(|| self.bad("the index ends early".into()))?;
        self.pos += 1;
        Ok(b)
    }

    fn varint(&mut self) -> Result<u64> {
        let mut v: u64 = 0;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            let bits = (b & 0x7f) as u64;
            if shift == 63 && bits > 1 {
                return Err(self.bad("a number overflows 64 bits".into()));
            }
            v |= bits << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(self.bad("a number overflows 64 bits".into()))
    }

    /// A count of items that each take at least `min` bytes, checked against what is left.
    fn count(&mut self, min: usize) -> Result<usize> {
        let n = self.varint()?;
        let left = (self.data.len() - self.pos) as u64;
        if n > left / min as u64 {
            return Err(self.bad(format!("{n} entries cannot fit in the {left} bytes left")));
        }
        Ok(n as usize)
    }

    fn range(&mut self) -> Result<Range> {
        let layer = self.varint()?;
        let layer = u32::try_from(layer).map_err(|_| self.bad(format!("base layer {layer}")))?;
        let offset = self.varint()?;
        let len = self.varint()?;
        if offset.checked_add(len).is_none() {
            return Err(self.bad("a range overflows".into()));
        }
        Ok(Range { layer, offset, len })
    }

    fn digest(&mut self) -> Result<OpDigest> {
        let end = self.pos + OP_DIGEST_LEN;
        let d = self
            .data
            .get(self.pos..end)
            .ok_or_else(|| self.bad("the index ends early".into()))?;
        self.pos = end;
        let mut out = [0u8; OP_DIGEST_LEN];
        out.copy_from_slice(d);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> LayerIndex {
        LayerIndex {
            ops: vec![
                Op::Reuse {
                    src: Range {
                        layer: 1,
                        offset: 1 << 40,
                        len: 300,
                    },
                    digest: [3; 16],
                },
                Op::Stream {
                    len: u64::MAX,
                    digest: [9; 16],
                },
                Op::Bspatch {
                    src: Range {
                        layer: 0,
                        offset: 5,
                        len: 70_000,
                    },
                    src_digest: [4; 16],
                    len: 71_000,
                    patch_len: 900,
                    digest: [5; 16],
                },
            ],
            parts: vec![Part {
                refs: vec![RefRange {
                    src: Range {
                        layer: 0,
                        offset: 0,
                        len: 512,
                    },
                    digest: [1; 16],
                }],
                out_len: 1000,
                compressed_len: 77,
                window_log: 20,
            }],
        }
    }

    #[test]
    fn index_round_trips() {
        let i = sample();
        assert_eq!(LayerIndex::decode(&i.encode(), "t").unwrap(), i);
    }

    #[test]
    fn every_truncation_and_mutation_is_an_error_or_a_valid_index() {
        let bytes = sample().encode();
        for cut in 0..bytes.len() {
            assert!(LayerIndex::decode(&bytes[..cut], "t").is_err(), "cut {cut}");
        }
        for i in 0..bytes.len() {
            for bit in 0..8 {
                let mut b = bytes.clone();
                b[i] ^= 1 << bit;
                let _ = LayerIndex::decode(&b, "t");
            }
        }
        // A huge count is refused before anything is allocated.
        let mut huge = Vec::new();
        varint(&mut huge, u64::MAX >> 1);
        let e = LayerIndex::decode(&huge, "t").unwrap_err().to_string();
        assert!(e.contains("cannot fit"), "{e}");
    }
}
