//! Chunks by name: the in-memory map from chunk to pack frame (loaded from pack indexes, refreshed when other
//! processes add packs), the open pack files, the small cache of decoded frames, and verified chunk reads. Also
//! finds a stored pack frame that *is* a blob frame, so serving a layer blob need not recompress it.

use super::handle::{ChunkLoc, ChunkMap, Store};
use super::records::ChunkRef;
use crate::digest::{ChunkId, Digest};
use crate::error::{Error, IoCtx, Result};
use crate::pack::{self, PackIndex};
use std::fs::{self, File};
use std::io;
use std::sync::Arc;

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
    /// The frame is found by the group's first chunk and raw length (`ChunkMap::frames`), not through the
    /// chunks' own places: a chunk the layer repeats is recorded at one of its places only, so asking every chunk
    /// for the same frame (as this did once) missed every frame holding a repeat, which on a real root file system
    /// is nearly all of them. The frame is then checked by content: it is decoded (once, cached) and every chunk
    /// of the group is compared by its BLAKE3 name at its offset, so a digest computed from these bytes never
    /// comes from a damaged or different frame. Any mismatch falls back to recompressing from the chunks, whose
    /// reads report damage precisely.
    pub(crate) fn stored_frame(&self, chunks: &[ChunkRef]) -> Result<Option<Vec<u8>>> {
        let total: u64 = chunks.iter().map(|c| u64::from(c.len)).sum();
        let (Some(first), Ok(total)) = (chunks.first(), u32::try_from(total)) else {
            return Ok(None);
        };
        let found = {
            let m = self.chunks.read().unwrap_or_else(|e| e.into_inner());
            m.frames
                .get(&(first.id, total))
                .map(|l| (m.packs[l.pack as usize], *l))
        };
        let Some((pack, loc)) = found else {
            return Ok(None);
        };
        // One read: the compressed bytes are decoded to check them, then returned as they are.
        let f = self.pack_file(&pack)?;
        let path = self.pack_path(&pack, "pack");
        let compressed = pack::read_frame(&f, &path, loc.frame_offset, loc.frame_len)?;
        let raw = pack::decode_frame(&compressed, loc.frame_raw_len, &path, loc.frame_offset)?;
        let mut off = 0usize;
        for c in chunks {
            let end = off + c.len as usize;
            match raw.get(off..end) {
                Some(bytes) if ChunkId::of(bytes) == c.id => off = end,
                _ => return Ok(None),
            }
        }
        Ok(Some(compressed))
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
