//! Reproducible layer blobs: a layer's `tar+zstd` and `tar+gzip` blobs are pure functions of its chunk list
//! (grouping rule and pinned encoders here), produced when served (zstd: from the stored frames that are its
//! blob frames); their digests are computed once and recorded in the layer index.

use super::chunks::FrameCheck;
use super::handle::{FrameKey, Store};
use super::reader::to_io;
use super::records::{
    BlobDesc, ChunkRef, LayerIndex, MEDIA_TYPE_LAYER_GZIP, MEDIA_TYPE_LAYER_ZSTD,
};
use crate::digest::{ChunkId, Digest, Hasher};
use crate::error::{Error, Result};
use crate::fsutil;
use crate::pack::{self, PackWriter};
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
///
/// A zstd group that a pack frame holds exactly is that frame's bytes, copied. One that no pack holds (a layer
/// mixing known chunks with new ones has many) is compressed, and the frame is kept in a new pack when the
/// whole blob has been read, so the next serve of the layer copies it too: serving costs about a read once
/// every frame is stored. Keeping is a cache: when it cannot be written (a full disk), the blob is still
/// served and the frame is compressed again next time.
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
    /// The recorded digest and size when serving: the stream is checked against them as it goes, so stored
    /// frames are copied as their pack index lists them, not decoded first ([`FrameCheck::Digest`]).
    expect: Option<(Digest, u64)>,
    hasher: Hasher,
    /// Groups copied from stored frames unchecked: checked one by one only if the digest fails, to name the
    /// damaged frame.
    trusted: Vec<usize>,
    /// The pack the frames compressed here go to (see the type's doc); `None` once keeping failed.
    keep: Option<PackWriter>,
    keeping: bool,
    done: bool,
}

/// The grouping rule of blob frames: consecutive chunks until a group holds `target` bytes (the last group may
/// hold less), as chunk index ranges.
pub(crate) fn blob_groups(chunks: &[ChunkRef], target: u32) -> Vec<std::ops::Range<usize>> {
    let mut groups = Vec::new();
    let (mut start, mut acc) = (0usize, 0u64);
    for (i, c) in chunks.iter().enumerate() {
        acc += u64::from(c.len);
        if acc >= u64::from(target) {
            groups.push(start..i + 1);
            (start, acc) = (i + 1, 0);
        }
    }
    if start < chunks.len() {
        groups.push(start..chunks.len());
    }
    groups
}

/// The [`FrameKey`] of every zstd blob frame of a layer: what gc keeps whole.
pub(crate) fn blob_frame_keys(
    chunks: &[ChunkRef],
    target: u32,
) -> impl Iterator<Item = FrameKey> + '_ {
    blob_groups(chunks, target)
        .into_iter()
        .map(|g| FrameKey::of(chunks[g].iter().map(|c| (c.id, c.len))))
}

/// Where a blob frame's bytes came from.
enum Origin {
    /// A stored frame, copied without decoding it (serving, checked by the blob's digest).
    Trusted,
    /// A stored frame, decoded and checked chunk by chunk.
    Checked,
    /// Compressed from verified chunks just now.
    Fresh,
}

impl<'a> BlobReader<'a> {
    pub(crate) fn new(store: &'a Store, chunks: Vec<ChunkRef>, enc: BlobEncoding) -> Self {
        Self {
            store,
            enc,
            groups: blob_groups(&chunks, store.layout.compression.blob_frame_bytes),
            chunks,
            next: 0,
            cur: Vec::new(),
            pos: 0,
            error: None,
            expect: None,
            hasher: Hasher::new(),
            trusted: Vec::new(),
            keep: None,
            keeping: enc == BlobEncoding::Zstd,
            done: false,
        }
    }

    /// Serves the blob recorded as `digest` (`size` bytes): the stream is checked against them and a mismatch is
    /// an error at the end, naming the damaged frame when one is found.
    pub(crate) fn serving(mut self, digest: Digest, size: u64) -> Self {
        self.expect = Some((digest, size));
        self
    }

    fn encode(&self, group: &std::ops::Range<usize>) -> Result<(Vec<u8>, Origin)> {
        let chunks = &self.chunks[group.clone()];
        if self.enc == BlobEncoding::Zstd {
            let (check, origin) = match self.expect {
                Some(_) => (FrameCheck::Digest, Origin::Trusted),
                None => (FrameCheck::Decode, Origin::Checked),
            };
            if let Some(frame) = self.store.stored_frame(chunks, check)? {
                return Ok((frame, origin));
            }
        }
        let mut raw = Vec::new();
        for c in chunks {
            raw.extend_from_slice(&self.store.read_chunk(c)?);
        }
        let c = &self.store.layout.compression;
        let ctx = |e: io::Error| Error::io("compress layer", self.store.tmp_dir(), e);
        let frame = match self.enc {
            BlobEncoding::Zstd => pack::encode_frame(c.level, &raw).map_err(ctx)?,
            BlobEncoding::Gzip => {
                let mut enc = flate2::GzBuilder::new()
                    .mtime(0)
                    .operating_system(255)
                    .write(
                        Vec::with_capacity(raw.len() / 2),
                        flate2::Compression::new(c.gzip_level),
                    );
                enc.write_all(&raw).map_err(ctx)?;
                enc.finish().map_err(ctx)?
            }
        };
        Ok((frame, Origin::Fresh))
    }

    /// Appends a frame compressed here to the keeping pack; the first failure stops keeping (see the type's doc).
    fn keep_frame(&mut self, group: usize, frame: &[u8]) {
        if !self.keeping {
            return;
        }
        let chunks = &self.chunks[self.groups[group].clone()];
        let res = (|| -> Result<()> {
            let pw = match self.keep.as_mut() {
                Some(pw) => pw,
                None => self.keep.insert(PackWriter::create(
                    self.store
                        .tmp_dir()
                        .join(format!("{}.pack", fsutil::unique_name())),
                )?),
            };
            let mut off = 0u32;
            let entries: Vec<(ChunkId, u32, u32)> = chunks
                .iter()
                .map(|c| {
                    let e = (c.id, off, c.len);
                    off += c.len;
                    e
                })
                .collect();
            pw.append(frame, off, entries)
        })();
        if res.is_err() {
            self.stop_keeping();
        }
    }

    fn stop_keeping(&mut self) {
        self.keeping = false;
        if let Some(pw) = self.keep.take() {
            let _ = std::fs::remove_file(&pw.path);
        }
    }

    /// The end of the stream: the digest checked when serving, the kept frames committed.
    fn finish(&mut self) -> Result<()> {
        self.done = true;
        if let Some((digest, size)) = self.expect {
            let got = std::mem::take(&mut self.hasher);
            let (len, d) = (got.len(), got.finish());
            if len != size || d != digest {
                // Every frame compressed here came from verified chunks: a stored frame copied unchecked is
                // damaged. Name it.
                for &g in &self.trusted {
                    self.store
                        .check_stored_frame(&self.chunks[self.groups[g].clone()])?;
                }
                return Err(Error::Corrupt {
                    digest,
                    path: self.store.root.join("packs"),
                    detail: format!("the layer blob served from its chunks hashes to {d} ({len} bytes, {size} recorded)"),
                });
            }
        }
        if let Some(pw) = self.keep.take() {
            if self.store.commit_pack(pw).is_err() {
                self.keeping = false;
            }
        }
        Ok(())
    }
}

impl Drop for BlobReader<'_> {
    fn drop(&mut self) {
        // A stream not read to its end keeps nothing.
        self.stop_keeping();
    }
}

impl Read for BlobReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.cur.len() {
            if self.done {
                return Ok(0);
            }
            if self.next >= self.groups.len() {
                if let Err(e) = self.finish() {
                    let io = to_io(&e);
                    self.error = Some(e);
                    return Err(io);
                }
                return Ok(0);
            }
            let end = (self.next + 8).min(self.groups.len());
            let out: Result<Vec<(Vec<u8>, Origin)>> = self.groups[self.next..end]
                .par_iter()
                .map(|g| self.encode(g))
                .collect();
            let parts = match out {
                Ok(parts) => parts,
                Err(e) => {
                    let io = to_io(&e);
                    self.error = Some(e);
                    return Err(io);
                }
            };
            self.cur.clear();
            for (i, (frame, origin)) in parts.into_iter().enumerate() {
                let g = self.next + i;
                match origin {
                    Origin::Trusted => self.trusted.push(g),
                    Origin::Checked => {}
                    Origin::Fresh => self.keep_frame(g, &frame),
                }
                if self.expect.is_some() {
                    self.hasher.update(&frame);
                }
                self.cur.extend_from_slice(&frame);
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
    /// chunks with the pinned framing, in parallel, and keeping the frames no pack held) and returns its
    /// descriptor.
    pub fn ensure_zstd(&self, diff_id: &Digest) -> Result<BlobDesc> {
        self.ensure_encoded(diff_id, BlobEncoding::Zstd)
    }

    /// Makes sure the layer's reproducible `tar+gzip` blob digest is known (one gzip member per blob frame at the
    /// pinned level) and returns its descriptor. The blob is compressed again whenever served.
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

    fn small_store(dir: &std::path::Path) -> Store {
        let mut layout = Layout::new(ChunkParams {
            min_size: 1024,
            avg_size: 4096,
            max_size: 16384,
            ..ChunkParams::default()
        });
        layout.compression.pack_frame_bytes = 64 << 10;
        layout.compression.blob_frame_bytes = 64 << 10;
        Store::open_with_layout(dir.join("s"), layout).unwrap()
    }

    fn opts() -> TarOptions {
        TarOptions {
            source_date_epoch: Some(1_700_000_000),
            ..Default::default()
        }
    }

    /// v1, then v2 with every fourth file changed: v2's blob groups mix v1's chunks with new ones.
    fn two_versions(t: &std::path::Path, s: &Store) -> (LayerIndex, LayerIndex) {
        let src = t.join("src");
        std::fs::create_dir_all(&src).unwrap();
        for i in 0..24u64 {
            std::fs::write(src.join(format!("f{i:02}")), noise(i, 40_000)).unwrap();
        }
        let v1 = s.ingest_dir(&src, &opts()).unwrap();
        for i in (0..24u64).step_by(4) {
            std::fs::write(src.join(format!("f{i:02}")), noise(100 + i, 40_000)).unwrap();
        }
        let v2 = s.ingest_dir(&src, &opts()).unwrap();
        (s.layer(&v1.diff_id).unwrap(), s.layer(&v2.diff_id).unwrap())
    }

    fn serve(s: &Store, blob: &Digest) -> Vec<u8> {
        let mut out = Vec::new();
        s.copy_blob(blob, &mut out).unwrap();
        out
    }

    fn stored_groups(s: &Store, idx: &LayerIndex) -> (usize, usize) {
        let r = BlobReader::new(s, idx.chunks.clone(), BlobEncoding::Zstd);
        let stored = r
            .groups
            .iter()
            .filter(|g| {
                s.stored_frame(&r.chunks[(*g).clone()], FrameCheck::Decode)
                    .unwrap()
                    .is_some()
            })
            .count();
        (stored, r.groups.len())
    }

    #[test]
    fn the_frames_a_mixed_layer_had_compressed_are_kept_and_copied_next_time() {
        let t = tempfile::tempdir().unwrap();
        let s = small_store(t.path());
        let (_, v2) = two_versions(t.path(), &s);
        let (stored, groups) = stored_groups(&s, &v2);
        assert!(
            groups > 10 && stored < groups,
            "{stored} of {groups} stored"
        );
        let packs = |s: &Store| std::fs::read_dir(s.root.join("packs")).unwrap().count();
        let before = packs(&s);
        // The first need computes the digest and keeps the frames no pack held.
        let b = s.ensure_zstd(&v2.diff_id).unwrap();
        assert_eq!(packs(&s), before + 2, "one pack and its index kept");
        assert_eq!(stored_groups(&s, &v2), (groups, groups));
        // Served from stored frames alone, byte for byte the blob whose digest was recorded.
        let blob = serve(&s, &b.digest);
        assert_eq!(Digest::of(&blob), b.digest);
        assert_eq!(blob.len() as u64, b.size);
        assert_eq!(packs(&s), before + 2, "nothing more to keep");
        // The same bytes as a store that never kept a frame produces.
        let t2 = tempfile::tempdir().unwrap();
        let s2 = small_store(t2.path());
        let (_, v2b) = two_versions(t2.path(), &s2);
        let fresh = BlobReader::new(&s2, v2b.chunks.clone(), BlobEncoding::Zstd);
        let mut again = Vec::new();
        io::copy(&mut { fresh }, &mut again).unwrap();
        assert_eq!(again, blob);
    }

    /// Tags an image of one layer, so gc keeps the layer.
    fn tag(s: &Store, name: &str, layer: &Digest, b: &BlobDesc) {
        let cfg = format!(
            r#"{{"architecture":"amd64","os":"linux","rootfs":{{"type":"layers","diff_ids":["{layer}"]}}}}"#
        );
        let cd = s.put_blob(cfg.as_bytes()).unwrap();
        let m = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{cd}","size":{}}},"layers":[{{"mediaType":"{MEDIA_TYPE_LAYER_ZSTD}","digest":"{}","size":{}}}]}}"#,
            cfg.len(),
            b.digest,
            b.size
        );
        let md = s.put_blob(m.as_bytes()).unwrap();
        s.set_ref(name, &md).unwrap();
    }

    #[test]
    fn gc_keeps_every_chunk_and_every_blob_frame_of_the_layers_it_keeps() {
        let t = tempfile::tempdir().unwrap();
        let mut s = small_store(t.path());
        let (v1, v2) = two_versions(t.path(), &s);
        let (b1, b2) = (
            s.ensure_zstd(&v1.diff_id).unwrap(),
            s.ensure_zstd(&v2.diff_id).unwrap(),
        );
        tag(&s, "v:1", &v1.diff_id, &b1);
        tag(&s, "v:2", &v2.diff_id, &b2);
        // Kept frames duplicate chunks of v1 and v2's own pack: in whatever order gc meets the packs, a rewrite
        // must neither lose a chunk nor break a blob frame up.
        let rep = s.gc(&Default::default()).unwrap();
        assert!(rep.chunks_removed > 0, "{rep:?}");
        let v = s.verify().unwrap();
        assert!(v.ok(), "{:?}", v.problems);
        for l in [&v1, &v2] {
            let (stored, groups) = stored_groups(&s, l);
            assert_eq!(stored, groups, "every blob frame survives gc");
        }
        assert_eq!(Digest::of(&serve(&s, &b1.digest)), b1.digest);
        assert_eq!(Digest::of(&serve(&s, &b2.digest)), b2.digest);
        // A second gc finds nothing to rewrite.
        let again = s.gc(&Default::default()).unwrap();
        assert_eq!(
            (again.chunks_removed, again.packs_rewritten),
            (0, 0),
            "{again:?}"
        );
        // Once v2 is gone, its frames are garbage: v1's chunks stay, each once.
        s.delete_ref("v:2").unwrap();
        s.gc(&Default::default()).unwrap();
        let v = s.verify().unwrap();
        assert!(v.ok(), "{:?}", v.problems);
        assert_eq!(stored_groups(&s, &v1).0, stored_groups(&s, &v1).1);
        assert_eq!(Digest::of(&serve(&s, &b1.digest)), b1.digest);
    }

    #[test]
    fn blob_frames_made_at_ingest_are_the_blob_computed_later_and_are_all_stored() {
        let versions = |t: &std::path::Path, s: &Store, framing: crate::Framing| {
            let src = t.join("src");
            std::fs::create_dir_all(&src).unwrap();
            for i in 0..24u64 {
                std::fs::write(src.join(format!("f{i:02}")), noise(i, 40_000)).unwrap();
            }
            s.ingest_dir(&src, &opts()).unwrap();
            for i in (0..24u64).step_by(4) {
                std::fs::write(src.join(format!("f{i:02}")), noise(100 + i, 40_000)).unwrap();
            }
            s.ingest_written(framing, |w| {
                crate::tarwriter::write_tree(&src, &opts(), w).map(|_| ())
            })
            .unwrap()
            .unwrap()
        };
        let t = tempfile::tempdir().unwrap();
        let s = small_store(t.path());
        let packs = |s: &Store| std::fs::read_dir(s.root.join("packs")).unwrap().count();
        let v2 = versions(t.path(), &s, crate::Framing::BlobFrames);
        let b = v2
            .zstd
            .clone()
            .expect("the blob digest is recorded at ingest");
        assert_eq!(packs(&s), 4, "v1's pack and one pack of v2's blob frames");
        let idx = s.layer(&v2.diff_id).unwrap();
        let (stored, groups) = stored_groups(&s, &idx);
        assert_eq!(stored, groups);
        let blob = serve(&s, &b.digest);
        assert_eq!(Digest::of(&blob), b.digest);
        // The same layer ingested the cheap way, its blob computed on first need: the same bytes.
        let t2 = tempfile::tempdir().unwrap();
        let s2 = small_store(t2.path());
        let v2b = versions(t2.path(), &s2, crate::Framing::NewChunks);
        assert!(v2b.zstd.is_none(), "mixed layer: no blob digest at ingest");
        assert_eq!(s2.ensure_zstd(&v2b.diff_id).unwrap(), b);
        // Ingesting it again as blob frames adds no pack: every group is stored now.
        let before = packs(&s2);
        let again = versions(t2.path(), &s2, crate::Framing::BlobFrames);
        assert_eq!(again.zstd, Some(b));
        assert_eq!(packs(&s2), before);
        let v = s.verify().unwrap();
        assert!(v.ok(), "{:?}", v.problems);
    }

    #[test]
    fn a_blob_served_from_a_damaged_stored_frame_fails_naming_the_pack_frame() {
        let t = tempfile::tempdir().unwrap();
        let s = small_store(t.path());
        let (v1, _) = two_versions(t.path(), &s);
        let b = s.ensure_zstd(&v1.diff_id).unwrap();
        // Damage the middle of one stored frame of v1 (its pack holds v1's frames).
        let r = BlobReader::new(&s, v1.chunks.clone(), BlobEncoding::Zstd);
        let (pack, loc) = s.find_frame(&r.chunks[r.groups[3].clone()]).unwrap();
        let path = s.pack_path(&pack, "pack");
        let mut bytes = std::fs::read(&path).unwrap();
        let at = (loc.frame_offset + u64::from(loc.frame_len) / 2) as usize;
        bytes[at] ^= 0x55;
        std::fs::write(&path, &bytes).unwrap();
        let mut sink = Vec::new();
        let err = s.copy_blob(&b.digest, &mut sink).unwrap_err();
        let msg = crate::error::chain(&err);
        assert!(msg.contains(&path.display().to_string()), "{msg}");
        assert!(
            msg.contains(&format!("frame at offset {}", loc.frame_offset)),
            "{msg}"
        );
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
        let s = small_store(t.path());
        let l = s.ingest_dir(&src, &opts()).unwrap();
        let idx = s.layer(&l.diff_id).unwrap();
        let r = BlobReader::new(&s, idx.chunks.clone(), BlobEncoding::Zstd);
        assert!(r.groups.len() > 20, "{} groups", r.groups.len());
        let mut seen = std::collections::HashSet::new();
        let mut repeats = 0;
        for g in &r.groups {
            let group = &r.chunks[g.clone()];
            repeats += group.iter().filter(|c| !seen.insert(c.id)).count();
            let frame = s.stored_frame(group, FrameCheck::Decode).unwrap();
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
        assert!(s
            .stored_frame(&shifted, FrameCheck::Digest)
            .unwrap()
            .is_none());
    }
}
