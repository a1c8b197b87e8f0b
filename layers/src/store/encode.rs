//! Reproducible layer blobs: a layer's `tar+zstd` and `tar+gzip` blobs are pure functions of its chunk list
//! (grouping rule and pinned encoders here), regenerated whenever served; their digests are computed once and
//! recorded in the layer index.

use super::handle::Store;
use super::reader::to_io;
use super::records::{
    BlobDesc, ChunkRef, LayerIndex, MEDIA_TYPE_LAYER_GZIP, MEDIA_TYPE_LAYER_ZSTD,
};
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::pack;
use rayon::prelude::*;
use std::io::{self, Read, Write};

/// A compressed encoding of a layer blob that the store reproduces from chunks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BlobEncoding {
    Zstd,
    Gzip,
}

impl BlobEncoding {
    fn name(self) -> &'static str {
        match self {
            BlobEncoding::Zstd => "zstd",
            BlobEncoding::Gzip => "gzip",
        }
    }
    fn media_type(self) -> &'static str {
        match self {
            BlobEncoding::Zstd => MEDIA_TYPE_LAYER_ZSTD,
            BlobEncoding::Gzip => MEDIA_TYPE_LAYER_GZIP,
        }
    }
}

/// Produces a reproducible compressed layer blob from the chunk list: consecutive chunks grouped until a group
/// holds `blob_frame_bytes`, each group one zstd frame (pinned encoder) or one gzip member (mtime 0, no name,
/// OS 255), groups compressed in parallel batches. Concatenated frames (members) form one valid zstd (gzip)
/// stream (RFC 8878 §3.1, RFC 1952 §2.2). Every chunk read is verified.
pub(crate) struct BlobReader<'a> {
    store: &'a Store,
    enc: BlobEncoding,
    /// Chunk index ranges of the groups, in order.
    groups: Vec<std::ops::Range<usize>>,
    chunks: Vec<ChunkRef>,
    next: usize,
    cur: Vec<u8>,
    pos: usize,
    /// The store error behind a failed read, for callers that want it typed.
    error: Option<Error>,
}

impl<'a> BlobReader<'a> {
    pub(crate) fn new(store: &'a Store, chunks: Vec<ChunkRef>, enc: BlobEncoding) -> Self {
        let target = store.layout.compression.blob_frame_bytes as u64;
        let mut groups = Vec::new();
        let (mut start, mut acc) = (0usize, 0u64);
        for (i, c) in chunks.iter().enumerate() {
            acc += c.len as u64;
            if acc >= target {
                groups.push(start..i + 1);
                (start, acc) = (i + 1, 0);
            }
        }
        if start < chunks.len() {
            groups.push(start..chunks.len());
        }
        Self {
            store,
            enc,
            groups,
            chunks,
            next: 0,
            cur: Vec::new(),
            pos: 0,
            error: None,
        }
    }

    fn encode(&self, group: &std::ops::Range<usize>) -> Result<Vec<u8>> {
        if self.enc == BlobEncoding::Zstd {
            if let Some(frame) = self.store.stored_frame(&self.chunks[group.clone()])? {
                return Ok(frame);
            }
        }
        let mut raw = Vec::new();
        for c in &self.chunks[group.clone()] {
            raw.extend_from_slice(&self.store.read_chunk(c)?);
        }
        let c = &self.store.layout.compression;
        let ctx = |e: io::Error| Error::io("compress layer", self.store.tmp_dir(), e);
        match self.enc {
            BlobEncoding::Zstd => pack::encode_frame(c.level, &raw).map_err(ctx),
            BlobEncoding::Gzip => {
                let mut enc = flate2::GzBuilder::new()
                    .mtime(0)
                    .operating_system(255)
                    .write(
                        Vec::with_capacity(raw.len() / 2),
                        flate2::Compression::new(c.gzip_level),
                    );
                enc.write_all(&raw).map_err(ctx)?;
                enc.finish().map_err(ctx)
            }
        }
    }
}

impl Read for BlobReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.cur.len() {
            if self.next >= self.groups.len() {
                return Ok(0);
            }
            let end = (self.next + 8).min(self.groups.len());
            let out: Result<Vec<Vec<u8>>> = self.groups[self.next..end]
                .par_iter()
                .map(|g| self.encode(g))
                .collect();
            match out {
                Ok(parts) => self.cur = parts.concat(),
                Err(e) => {
                    let io = to_io(&e);
                    self.error = Some(e);
                    return Err(io);
                }
            }
            self.pos = 0;
            self.next = end;
        }
        let n = buf.len().min(self.cur.len() - self.pos);
        buf[..n].copy_from_slice(&self.cur[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

impl Store {
    /// The blob a manifest should reference for this layer: the external blob it came in, else the reproducible
    /// `tar+zstd` blob (computed once, see [`Store::ensure_zstd`]).
    pub fn layer_blob(&self, diff_id: &Digest) -> Result<BlobDesc> {
        let idx = self.layer(diff_id)?;
        match idx.external.first() {
            Some(b) => Ok(b.clone()),
            None => self.ensure_zstd(diff_id),
        }
    }

    /// Makes sure the layer's reproducible `tar+zstd` blob digest is known (computing it once by compressing the
    /// chunks with the pinned framing, in parallel) and returns its descriptor. The blob is regenerated when served.
    pub fn ensure_zstd(&self, diff_id: &Digest) -> Result<BlobDesc> {
        self.ensure_encoded(diff_id, BlobEncoding::Zstd)
    }

    /// Makes sure the layer's reproducible `tar+gzip` blob digest is known (one gzip member per blob frame at the
    /// pinned level) and returns its descriptor. The blob is regenerated when served.
    pub fn ensure_gzip(&self, diff_id: &Digest) -> Result<BlobDesc> {
        self.ensure_encoded(diff_id, BlobEncoding::Gzip)
    }

    fn ensure_encoded(&self, diff_id: &Digest, enc: BlobEncoding) -> Result<BlobDesc> {
        let idx = self.layer(diff_id)?;
        let slot = |i: &LayerIndex| match enc {
            BlobEncoding::Zstd => i.zstd.clone(),
            BlobEncoding::Gzip => i.gzip.clone(),
        };
        if let Some(b) = slot(&idx) {
            return Ok(b);
        }
        let b = self.reproduce(&idx, enc)?;
        // Re-read: another thread or process may have recorded this or another encoding meanwhile.
        let mut idx = self.layer(diff_id)?;
        if let Some(known) = slot(&idx) {
            return Ok(known);
        }
        match enc {
            BlobEncoding::Zstd => idx.zstd = Some(b.clone()),
            BlobEncoding::Gzip => idx.gzip = Some(b.clone()),
        }
        self.record_blob(&idx, &b.digest, enc.name())?;
        Ok(b)
    }

    /// Compresses a layer's chunks with the pinned framing and returns the blob's descriptor (nothing is written).
    pub(crate) fn reproduce(&self, idx: &LayerIndex, enc: BlobEncoding) -> Result<BlobDesc> {
        let mut r = BlobReader::new(self, idx.chunks.clone(), enc);
        let mut w = crate::digest::HashingWriter::new(io::sink());
        io::copy(&mut r, &mut w).map_err(|e| match r.error.take() {
            Some(err) => err,
            None => Error::io("compress layer", self.layer_path(&idx.diff_id), e),
        })?;
        let (_, digest, size) = w.finish();
        Ok(BlobDesc {
            digest,
            size,
            media_type: enc.media_type().into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ChunkParams, Layout, TarOptions};

    /// Pseudo-random bytes (xorshift), incompressible.
    fn noise(seed: u64, len: usize) -> Vec<u8> {
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    #[test]
    fn every_blob_frame_of_a_layer_repeating_its_chunks_is_a_stored_frame() {
        let t = tempfile::tempdir().unwrap();
        let src = t.path().join("src");
        std::fs::create_dir_all(&src).unwrap();
        // Files repeated across the layer, as identical files in a root file system are.
        for i in 0..12u64 {
            std::fs::write(src.join(format!("f{i:02}")), noise(i % 4, 150_000)).unwrap();
        }
        let mut layout = Layout::new(ChunkParams {
            min_size: 1024,
            avg_size: 4096,
            max_size: 16384,
            ..ChunkParams::default()
        });
        layout.compression.pack_frame_bytes = 64 << 10;
        layout.compression.blob_frame_bytes = 64 << 10;
        let s = Store::open_with_layout(t.path().join("s"), layout).unwrap();
        let opts = TarOptions {
            source_date_epoch: Some(1_700_000_000),
            ..Default::default()
        };
        let l = s.ingest_dir(&src, &opts).unwrap();
        let idx = s.layer(&l.diff_id).unwrap();
        let r = BlobReader::new(&s, idx.chunks.clone(), BlobEncoding::Zstd);
        assert!(r.groups.len() > 20, "{} groups", r.groups.len());
        let mut seen = std::collections::HashSet::new();
        let mut repeats = 0;
        for g in &r.groups {
            let group = &r.chunks[g.clone()];
            repeats += group.iter().filter(|c| !seen.insert(c.id)).count();
            let frame = s.stored_frame(group).unwrap();
            let frame = frame.unwrap_or_else(|| panic!("group {g:?} recompressed"));
            // The stored frame is what compressing the group gives.
            let raw: Vec<u8> = group
                .iter()
                .flat_map(|c| s.read_chunk(c).unwrap())
                .collect();
            assert_eq!(frame, pack::encode_frame(3, &raw).unwrap(), "group {g:?}");
        }
        assert!(repeats > 100, "the layer repeats its chunks: {repeats}");
        // A group whose content is not a frame is not passed off as one.
        let mut shifted = r.chunks[r.groups[1].clone()].to_vec();
        shifted.rotate_left(1);
        assert!(s.stored_frame(&shifted).unwrap().is_none());
    }
}
