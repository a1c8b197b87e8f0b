//! Chunks by name: the in-memory map from chunk to pack frame (loaded from pack indexes, refreshed when other
//! processes add packs), the open pack files, the small cache of decoded frames, and verified chunk reads. Also
//! finds a stored pack frame that *is* a blob frame, so serving a layer blob need not recompress it.

use super::handle::{ChunkLoc, ChunkMap, FrameKey, Store};
use super::records::ChunkRef;
use crate::digest::{ChunkId, Digest};
use crate::error::{Error, IoCtx, Result};
use crate::fsutil;
use crate::pack::{self, PackIndex, PackWriter};
use std::fs::{self, File};
use std::io;
use std::sync::Arc;

/// How far the bytes of a stored frame found for a blob group are trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FrameCheck {
    /// Decoded, and every chunk compared by its BLAKE3 name: for bytes a blob digest is about to be computed
    /// from, which must never come from a damaged frame.
    Decode,
    /// Taken as the pack index lists it: for a blob whose recorded digest checks the whole stream as it is
    /// served (a damaged frame fails that check, and [`Store::check_stored_frame`] then names it).
    Digest,
}

/// Why a decoded frame does not hold `chunks` in order (`None` when it does); undecodable bytes are an error.
fn frame_mismatch(
    compressed: &[u8],
    loc: &ChunkLoc,
    chunks: &[ChunkRef],
    path: &std::path::Path,
) -> Result<Option<String>> {
    let raw = pack::decode_frame(compressed, loc.frame_raw_len, path, loc.frame_offset)?;
    let mut off = 0usize;
    for c in chunks {
        let end = off + c.len as usize;
        match raw.get(off..end) {
            Some(bytes) if ChunkId::of(bytes) == c.id => off = end,
            _ => return Ok(Some(format!("does not hold chunk {} at {off}", c.id))),
        }
    }
    Ok(None)
}

/// Decoded pack frames kept in memory (4 MiB each by default): enough for a sequential reader and a few parallel
/// blob-frame encoders to decode each frame once.
const FRAME_CACHE: usize = 8;

impl Store {
    /// True when the pack file is there with the size its index records.
    pub(crate) fn pack_file_intact(&self, pack: &Digest, size: u64) -> bool {
        fs::metadata(self.pack_path(pack, "pack")).is_ok_and(|m| m.is_file() && m.len() == size)
    }

    /// Loads pack indexes written since the last look (by this or another process).
    pub(crate) fn refresh_chunks(&self) -> Result<()> {
        let dir = self.root.join("packs");
        let mut names = Vec::new();
        for ent in fs::read_dir(&dir).ctx("read directory", &dir)? {
            let ent = ent.ctx("read directory", &dir)?;
            let name = ent.file_name().to_string_lossy().into_owned();
            if let Some(hex) = name.strip_suffix(".idx") {
                if let Ok(d) = Digest::from_hex(hex) {
                    names.push(d);
                }
            }
        }
        names.sort();
        let missing: Vec<Digest> = {
            let map = self.chunks.read().unwrap_or_else(|e| e.into_inner());
            names
                .into_iter()
                .filter(|d| !map.loaded.contains(d))
                .collect()
        };
        for d in missing {
            let path = self.pack_path(&d, "idx");
            let data = match fs::read(&path) {
                Ok(x) => x,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::io("read", &path, e)),
            };
            // A corrupt pack index, or one whose pack is gone or has the wrong size, makes its chunks unknown: the
            // next ingest that needs them stores them again; verify reports the damage.
            let Ok(idx) = PackIndex::decode(&data, &path) else {
                continue;
            };
            if idx.pack != d || !self.pack_file_intact(&idx.pack, idx.pack_size) {
                continue;
            }
            self.chunks
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .add(&idx, data.len() as u64);
        }
        Ok(())
    }

    /// Names a written pack: pack fsync → pack rename → pack index (temp, fsync, rename), then loads it; returns
    /// its name. Until the index is named, nothing refers to the new chunks and a crash leaves only temp files; a
    /// failure removes the pack's temp file.
    pub(crate) fn commit_pack(&self, pw: PackWriter) -> Result<Digest> {
        let (tmp, idx) = pw.finish()?;
        let dest = self.pack_path(&idx.pack, "pack");
        let res = (|| {
            fs::rename(&tmp, &dest).map_err(|e| Error::io("rename into", &dest, e))?;
            fsutil::atomic_write(
                self.tmp_dir(),
                &self.pack_path(&idx.pack, "idx"),
                &idx.encode(),
            )
        })();
        if res.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        res?;
        self.refresh_chunks()?;
        Ok(idx.pack)
    }

    /// Drops all cached pack state (after gc rewrote packs).
    pub(crate) fn reload_chunks(&self) -> Result<()> {
        *self.chunks.write().unwrap_or_else(|e| e.into_inner()) = ChunkMap::default();
        self.pack_files
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        self.frames
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        self.refresh_chunks()
    }

    pub(crate) fn chunk_loc(&self, id: &ChunkId) -> Option<(Digest, ChunkLoc)> {
        let m = self.chunks.read().unwrap_or_else(|e| e.into_inner());
        m.map.get(id).map(|l| (m.packs[l.pack as usize], *l))
    }

    pub(crate) fn pack_file(&self, pack: &Digest) -> Result<Arc<File>> {
        let mut files = self.pack_files.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(f) = files.get(pack) {
            return Ok(f.clone());
        }
        let path = self.pack_path(pack, "pack");
        let f = Arc::new(File::open(&path).ctx("open", &path)?);
        files.insert(*pack, f.clone());
        Ok(f)
    }

    /// A pack frame, decoded (from the cache of recent frames when possible).
    fn frame(&self, pack: &Digest, loc: &ChunkLoc) -> Result<Arc<Vec<u8>>> {
        let key = (*pack, loc.frame_offset);
        {
            let mut cache = self.frames.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(hit) = cache
                .iter()
                .position(|(k, _)| *k == key)
                .and_then(|i| cache.remove(i))
            {
                let data = hit.1.clone();
                cache.push_front(hit);
                return Ok(data);
            }
        }
        let path = self.pack_path(pack, "pack");
        let f = self.pack_file(pack)?;
        let data = Arc::new(pack::load_frame(
            &f,
            &path,
            loc.frame_offset,
            loc.frame_len,
            loc.frame_raw_len,
        )?);
        let mut cache = self.frames.lock().unwrap_or_else(|e| e.into_inner());
        if !cache.iter().any(|(k, _)| *k == key) {
            cache.push_front((key, data.clone()));
            cache.truncate(FRAME_CACHE);
        }
        Ok(data)
    }

    /// The compressed bytes of a pack frame that holds exactly `chunks`, in order, if there is one. Pack frames and
    /// blob frames share the encoder and the grouping rule, so such a frame is the blob frame of that group
    /// byte for byte and is served without recompressing.
    ///
    /// The frame is found by the sequence of chunks it holds (`ChunkMap::frames`, a [`FrameKey`] per frame of
    /// every pack index), not through the chunks' own places: a chunk the layer repeats is recorded at one of its
    /// places only, so asking every chunk for the same frame (as this did once) missed every frame holding a
    /// repeat, which on a real root file system is nearly all of them. How far the frame's bytes are then trusted
    /// is the caller's [`FrameCheck`]; with `Decode`, a frame that does not hold its chunks gives `None`, and the
    /// caller recompresses from the chunks, whose reads report damage precisely.
    pub(crate) fn stored_frame(
        &self,
        chunks: &[ChunkRef],
        check: FrameCheck,
    ) -> Result<Option<Vec<u8>>> {
        Ok(self
            .read_stored(chunks, check)?
            .and_then(|(z, damage)| damage.is_none().then_some(z)))
    }

    /// After a served blob failed its digest: whether the stored frame that stood for `chunks` is damaged, as an
    /// error naming its pack and offset (`Ok` when there is no such frame or it is intact).
    pub(crate) fn check_stored_frame(&self, chunks: &[ChunkRef]) -> Result<()> {
        match self.read_stored(chunks, FrameCheck::Decode)? {
            Some((_, Some(damage))) => Err(damage),
            _ => Ok(()),
        }
    }

    /// The compressed bytes of the pack frame that holds exactly `chunks`, if one does, and (with
    /// [`FrameCheck::Decode`]) why they do not hold those chunks after all, naming the pack and offset.
    fn read_stored(
        &self,
        chunks: &[ChunkRef],
        check: FrameCheck,
    ) -> Result<Option<(Vec<u8>, Option<Error>)>> {
        let Some((pack, loc)) = self.find_frame(chunks) else {
            return Ok(None);
        };
        let f = self.pack_file(&pack)?;
        let path = self.pack_path(&pack, "pack");
        let compressed = pack::read_frame(&f, &path, loc.frame_offset, loc.frame_len)?;
        let damage = match check {
            FrameCheck::Digest => None,
            FrameCheck::Decode => {
                frame_mismatch(&compressed, &loc, chunks, &path)?.map(|detail| Error::Malformed {
                    what: "pack frame",
                    path,
                    detail: format!("frame at offset {}: {detail}", loc.frame_offset),
                })
            }
        };
        Ok(Some((compressed, damage)))
    }

    pub(crate) fn find_frame(&self, chunks: &[ChunkRef]) -> Option<(Digest, ChunkLoc)> {
        let key = FrameKey::of(chunks.iter().map(|c| (c.id, c.len)));
        let m = self.chunks.read().unwrap_or_else(|e| e.into_inner());
        m.frames.get(&key).map(|l| (m.packs[l.pack as usize], *l))
    }

    /// Reads and verifies (BLAKE3 name and size) one uncompressed chunk.
    pub fn read_chunk(&self, c: &ChunkRef) -> Result<Vec<u8>> {
        let (pack, loc) = self.chunk_loc(&c.id).ok_or_else(|| Error::ChunkNotFound {
            chunk: c.id,
            store: self.root.clone(),
        })?;
        let path = self.pack_path(&pack, "pack");
        if loc.raw_len != c.len {
            return Err(Error::CorruptChunk {
                chunk: c.id,
                path,
                detail: format!("pack records {} bytes, layer index {}", loc.raw_len, c.len),
            });
        }
        let frame = self.frame(&pack, &loc)?;
        pack::chunk_in_frame(&frame, &c.id, loc.offset, c.len, &path).map(<[u8]>::to_vec)
    }
}
