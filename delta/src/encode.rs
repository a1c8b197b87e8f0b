//! Turning a layer plan into a payload: reading the target tar once more to hash each operation and spool
//! the stream, then compressing the parts, in parallel, each as one zstd frame whose prefix is its
//! reference (zstd's `--patch-from`, with long-distance matching and a window covering prefix and output).
//!
//! Every setting that changes the bytes is pinned here (level, window, long-distance matching, checksum,
//! content size), so the same two images give the same delta.

use crate::error::{DeltaError, Result};
use crate::format::{
    op_digest, LayerIndex, Level, Op, OpDigest, Part, Range, RefRange, Stats, MAGIC,
};
use crate::plan::{cut_parts, LayerPlan, Planned};
use chasi_layers::{Digest, Store};
use rayon::prelude::*;
use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;

/// A layer's payload blob and what it costs. The parts' frames are in a temporary file, so a large layer is
/// never held in memory whole.
pub(crate) struct Encoded {
    /// Magic, index length and compressed index: the payload's first bytes.
    pub head: Vec<u8>,
    /// The parts' frames, one after the other, positioned at the start.
    pub frames: File,
    /// The payload's length.
    pub len: u64,
    /// The most memory applying needs: the largest part plus the largest bsdiff operation.
    pub memory: u64,
    pub stats: Stats,
}

/// How to encode a layer.
#[derive(Clone, Copy)]
pub(crate) struct Settings {
    pub level: Level,
    /// Memory budget of one part.
    pub budget: u64,
    /// Give up once the payload reaches this many bytes (the layer's blob size: it travels whole then).
    pub limit: u64,
}

/// Encodes a planned layer. `base` are the platform's base layers, in the order ranges index them. Returns
/// `None` as soon as the payload would reach `settings.limit`.
pub(crate) fn encode_layer(
    store: &Store,
    target: &Digest,
    base: &[Digest],
    mut plan: LayerPlan,
    settings: &Settings,
) -> Result<Option<Encoded>> {
    let Settings {
        level,
        budget,
        limit,
    } = *settings;
    let tmp = |what: &'static str| DeltaError::io(what, store.tmp_dir().display().to_string());
    let spool = tempfile::tempfile_in(store.tmp_dir()).map_err(tmp("create a spool file in"))?;
    let mut frames =
        tempfile::tempfile_in(store.tmp_dir()).map_err(tmp("create a spool file in"))?;
    let patches = make_patches(store, target, base, &mut plan)?;
    let plans = cut_parts(&plan.items, budget);
    let ops = hash_and_spool(store, target, &plan.ops, &patches, &spool)?;
    drop(patches);
    // Parts are compressed a batch at a time, in parallel, and appended in order.
    let batch = 2 * rayon::current_num_threads().max(1);
    let mut parts = Vec::with_capacity(plans.len());
    let mut written = 0u64;
    for group in plans.chunks(batch) {
        let encoded: Vec<(Part, Vec<u8>)> = group
            .par_iter()
            .map(|p| {
                let refs = read_refs(store, base, &p.refs)?;
                let mut out = vec![0u8; p.out_len as usize];
                spool
                    .read_exact_at(&mut out, p.out_start)
                    .map_err(DeltaError::io("read the spool of", target.to_string()))?;
                let (frame, window_log) = compress(&refs.1, &out, level, target)?;
                let part = Part {
                    refs: refs.0,
                    out_len: p.out_len,
                    compressed_len: frame.len() as u64,
                    window_log,
                };
                Ok((part, frame))
            })
            .collect::<Result<_>>()?;
        for (part, frame) in encoded {
            frames
                .write_all(&frame)
                .map_err(tmp("write the parts of a delta in"))?;
            written += frame.len() as u64;
            parts.push(part);
        }
        if written >= limit {
            return Ok(None);
        }
    }
    let memory = parts.iter().map(Part::memory).max().unwrap_or(0)
        + ops.iter().map(Op::memory).max().unwrap_or(0);
    let index = LayerIndex { ops, parts }.encode();
    let index = zstd::bulk::compress(&index, 19)
        .map_err(DeltaError::io("compress the index of", target.to_string()))?;
    let mut head = Vec::with_capacity(16 + index.len());
    head.extend_from_slice(MAGIC);
    head.extend_from_slice(&(index.len() as u64).to_le_bytes());
    head.extend_from_slice(&index);
    let len = head.len() as u64 + written;
    if len >= limit {
        return Ok(None);
    }
    frames
        .seek(SeekFrom::Start(0))
        .map_err(tmp("read the parts of a delta in"))?;
    let mut stats = plan.stats;
    stats.payload = len;
    Ok(Some(Encoded {
        head,
        frames,
        len,
        memory,
        stats,
    }))
}

/// A bsdiff patch made for one planned operation, with the digest of the old file it applies to.
struct Patch {
    bytes: Vec<u8>,
    src_digest: OpDigest,
    /// Smaller compressed than a zstd patch of the same pair.
    wins: bool,
}

/// Makes the bsdiff patches the plan asks for, in parallel. A bsdiff patch is about as long as the file
/// (its diff bytes are mostly zeros), so what counts is its compressed size: each is compared, at zstd level 3,
/// with the new file compressed against the old one as prefix, and where bsdiff does not win the operation
/// goes back to stream bytes patched by zstd against the same old file.
fn make_patches(
    store: &Store,
    target: &Digest,
    base: &[Digest],
    plan: &mut LayerPlan,
) -> Result<HashMap<usize, Patch>> {
    let mut offset = 0u64;
    let mut jobs = Vec::new();
    for (i, op) in plan.ops.iter().enumerate() {
        let len = match op {
            Planned::Reuse(r) => r.len,
            Planned::Stream(n) => *n,
            Planned::Bspatch { src, len } => {
                jobs.push((i, *src, offset, *len));
                *len
            }
        };
        offset += len;
    }
    let patches: Vec<(usize, Patch)> = jobs
        .par_iter()
        .map(|&(i, src, at, len)| {
            let (_, old) = read_refs(store, base, &[src])?;
            let mut new = vec![0u8; len as usize];
            store.open_layer(target)?.read_at(at, &mut new)?;
            let mut bytes = Vec::new();
            bsdiff::diff(&old, &new, &mut bytes).map_err(DeltaError::io(
                "make a bsdiff patch for",
                target.to_string(),
            ))?;
            let as_patch = compress(&[], &bytes, Level::Fast, target)?.0.len();
            let as_prefix = compress(&old, &new, Level::Fast, target)?.0.len();
            Ok((
                i,
                Patch {
                    wins: as_patch < as_prefix,
                    bytes,
                    src_digest: digest_of(&old),
                },
            ))
        })
        .collect::<Result<_>>()?;
    let mut out = HashMap::new();
    for (i, p) in patches {
        let Planned::Bspatch { src, len } = plan.ops[i] else {
            continue;
        };
        let item = plan.items.iter_mut().find(|it| it.bspatch == Some(i));
        let Some(item) = item else { continue };
        if !p.wins {
            plan.ops[i] = Planned::Stream(len);
            *item = crate::plan::Item {
                out_len: len,
                refs: vec![src],
                bspatch: None,
            };
            continue;
        }
        item.out_len = p.bytes.len() as u64;
        out.insert(i, p);
    }
    Ok(out)
}

/// Reads the target tar in order: hashes each operation's bytes and writes the stream's to `spool` (for a
/// bsdiff operation, its patch).
fn hash_and_spool(
    store: &Store,
    target: &Digest,
    planned: &[Planned],
    patches: &HashMap<usize, Patch>,
    spool: &File,
) -> Result<Vec<Op>> {
    let mut r = store.open_layer(target)?.chunk_verified_only();
    let mut w = std::io::BufWriter::with_capacity(1 << 20, spool);
    let mut buf = vec![0u8; 1 << 20];
    let mut ops = Vec::with_capacity(planned.len());
    let what = || target.to_string();
    for (i, p) in planned.iter().enumerate() {
        let (len, to_spool) = match p {
            Planned::Reuse(r) => (r.len, false),
            Planned::Stream(n) => (*n, true),
            Planned::Bspatch { len, .. } => (*len, false),
        };
        let mut h = blake3::Hasher::new();
        let mut left = len;
        while left > 0 {
            let n = left.min(buf.len() as u64) as usize;
            r.read_exact(&mut buf[..n])
                .map_err(DeltaError::io("read the target layer", what()))?;
            h.update(&buf[..n]);
            if to_spool {
                w.write_all(&buf[..n])
                    .map_err(DeltaError::io("spool the stream of", what()))?;
            }
            left -= n as u64;
        }
        let digest = op_digest(&h);
        ops.push(match p {
            Planned::Reuse(src) => Op::Reuse { src: *src, digest },
            Planned::Stream(len) => Op::Stream { len: *len, digest },
            Planned::Bspatch { src, len } => {
                let patch = patches.get(&i).ok_or_else(|| {
                    DeltaError::malformed(
                        format!("layer {target}"),
                        "a planned bsdiff patch is missing",
                    )
                })?;
                w.write_all(&patch.bytes)
                    .map_err(DeltaError::io("spool the stream of", what()))?;
                Op::Bspatch {
                    src: *src,
                    src_digest: patch.src_digest,
                    len: *len,
                    patch_len: patch.bytes.len() as u64,
                    digest,
                }
            }
        });
    }
    w.flush()
        .map_err(DeltaError::io("spool the stream of", what()))?;
    Ok(ops)
}

/// Reads a part's reference ranges from the base layers: the ranges with their digests, and the bytes.
pub(crate) fn read_refs(
    store: &Store,
    base: &[Digest],
    ranges: &[Range],
) -> Result<(Vec<RefRange>, Vec<u8>)> {
    let total: u64 = ranges.iter().map(|r| r.len).sum();
    let mut bytes = vec![0u8; total as usize];
    let mut refs = Vec::with_capacity(ranges.len());
    let mut readers: Vec<Option<chasi_layers::LayerReader<'_>>> =
        (0..base.len()).map(|_| None).collect();
    let mut at = 0usize;
    for r in ranges {
        let reader = match &mut readers[r.layer as usize] {
            Some(rd) => rd,
            slot => slot.insert(store.open_layer(&base[r.layer as usize])?),
        };
        let dst = &mut bytes[at..at + r.len as usize];
        reader.read_at(r.offset, dst)?;
        refs.push(RefRange {
            src: *r,
            digest: digest_of(dst),
        });
        at += r.len as usize;
    }
    Ok((refs, bytes))
}

/// Truncated BLAKE3 of a byte slice.
pub(crate) fn digest_of(data: &[u8]) -> OpDigest {
    let mut h = blake3::Hasher::new();
    h.update(data);
    op_digest(&h)
}

/// The window log a part needs: its prefix and output within reach.
pub(crate) fn window_log(ref_len: u64, out_len: u64) -> u8 {
    let need = (ref_len + out_len).max(1);
    let log = 64 - (need - 1).leading_zeros();
    log.clamp(10, crate::format::MAX_WINDOW_LOG as u32) as u8
}

/// One zstd frame of `out` with `prefix` as reference; returns it and its window log.
fn compress(prefix: &[u8], out: &[u8], level: Level, target: &Digest) -> Result<(Vec<u8>, u8)> {
    let wlog = window_log(prefix.len() as u64, out.len() as u64);
    let err = || DeltaError::io("compress a part of", target.to_string());
    let mut frame = Vec::new();
    {
        let mut enc =
            zstd::stream::write::Encoder::with_ref_prefix(&mut frame, level.zstd_level(), prefix)
                .map_err(err())?;
        enc.long_distance_matching(true).map_err(err())?;
        enc.window_log(wlog as u32).map_err(err())?;
        enc.include_checksum(true).map_err(err())?;
        enc.include_contentsize(true).map_err(err())?;
        enc.set_pledged_src_size(Some(out.len() as u64))
            .map_err(err())?;
        enc.write_all(out).map_err(err())?;
        enc.finish().map_err(err())?;
    }
    Ok((frame, wlog))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_covers_prefix_and_output() {
        assert_eq!(window_log(0, 0), 10);
        assert_eq!(window_log(1 << 20, 1 << 20), 21);
        assert_eq!(window_log((1 << 20) + 1, 1 << 20), 22);
    }
}
