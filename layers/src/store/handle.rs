//! The [`Store`] handle: the state an open store holds (its root, layout, gc lock, temp session, chunk map, open
//! pack files and recent frames) and the paths of its objects. Every other part of the store is an `impl Store`
//! block over this one definition, so none of them needs another to name the handle.

use crate::digest::{ChunkId, Digest};
use crate::error::{Error, IoCtx, Result};
use crate::fsutil::{FileLock, TempSession};
use crate::layout::Layout;
use crate::pack::{PackEntry, PackIndex};
use std::collections::{HashMap, HashSet, VecDeque};
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

#[derive(Debug, Clone, Copy)]
pub(crate) struct ChunkLoc {
    pub(crate) pack: u32,
    pub(crate) frame_offset: u64,
    pub(crate) frame_len: u32,
    pub(crate) frame_raw_len: u32,
    pub(crate) offset: u32,
    pub(crate) raw_len: u32,
}

#[derive(Default)]
pub(crate) struct ChunkMap {
    pub(crate) packs: Vec<Digest>,
    /// Per pack (same order as `packs`): the pack's size and its index file's size, as the index says.
    pub(crate) sizes: Vec<(u64, u64)>,
    pub(crate) loaded: HashSet<Digest>,
    pub(crate) map: HashMap<ChunkId, ChunkLoc>,
    /// Every frame by the sequence of chunks it holds ([`FrameKey`]), with the place of its first chunk: how a
    /// blob frame finds the pack frame that is it, even when its chunks are repeats recorded elsewhere in `map`.
    pub(crate) frames: HashMap<FrameKey, ChunkLoc>,
}

/// Names the exact sequence of chunks a frame holds: BLAKE3 over each chunk's name and length, in order. Two
/// frames with the same key hold the same bytes (the chunks are named by their content), so a pack frame whose
/// key is a blob group's key is that group's blob frame once the pack's bytes are intact.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct FrameKey([u8; 32]);

impl FrameKey {
    pub(crate) fn of(chunks: impl IntoIterator<Item = (ChunkId, u32)>) -> Self {
        let mut h = blake3::Hasher::new();
        for (id, len) in chunks {
            h.update(&id.0);
            h.update(&len.to_le_bytes());
        }
        FrameKey(*h.finalize().as_bytes())
    }
}

impl ChunkMap {
    pub(crate) fn add(&mut self, idx: &PackIndex, idx_len: u64) {
        if !self.loaded.insert(idx.pack) {
            return;
        }
        let p = self.packs.len() as u32;
        self.packs.push(idx.pack);
        self.sizes.push((idx.pack_size, idx_len));
        let loc = |e: &PackEntry| ChunkLoc {
            pack: p,
            frame_offset: e.frame_offset,
            frame_len: e.frame_len,
            frame_raw_len: e.frame_raw_len,
            offset: e.offset,
            raw_len: e.raw_len,
        };
        for e in &idx.entries {
            self.map.entry(e.chunk).or_insert(loc(e));
        }
        for frame in idx
            .entries
            .chunk_by(|a, b| a.frame_offset == b.frame_offset)
        {
            // Only a frame its chunks tile exactly, in order, can be a blob frame.
            let mut end = 0u32;
            let tiled = frame.iter().all(|e| {
                let ok = e.offset == end;
                end = end.saturating_add(e.raw_len);
                ok
            }) && end == frame[0].frame_raw_len;
            if tiled {
                let key = FrameKey::of(frame.iter().map(|e| (e.chunk, e.raw_len)));
                self.frames.entry(key).or_insert(loc(&frame[0]));
            }
        }
    }
}

/// An open store. Cheap to share between threads (`&Store` is `Sync`).
///
/// Holding a `Store` holds a shared lock on `locks/gc.lock`, so a concurrent `gc` never sweeps objects this
/// process is writing or about to reference. Drop it to let `gc` run.
pub struct Store {
    pub(crate) root: PathBuf,
    pub(crate) layout: Layout,
    pub(crate) lock: Mutex<FileLock>,
    pub(crate) tmp: TempSession,
    pub(crate) chunks: RwLock<ChunkMap>,
    pub(crate) pack_files: Mutex<HashMap<Digest, Arc<File>>>,
    /// The last few decoded pack frames, most recent first, keyed by (pack, frame offset).
    pub(crate) frames: Mutex<VecDeque<CachedFrame>>,
}

/// A decoded pack frame keyed by (pack, frame offset).
type CachedFrame = ((Digest, u64), Arc<Vec<u8>>);

impl Store {
    /// The store directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The format and parameters recorded in `layout.json`.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// This open store's private temp directory (`<store>/tmp/<session>/`): removed when the store is dropped,
    /// and by the next open or `gc` if the process was killed. For work files of callers (exports) too.
    pub fn tmp_dir(&self) -> &Path {
        &self.tmp.dir
    }

    pub(crate) fn blob_path(&self, d: &Digest) -> PathBuf {
        self.root.join("blobs").join(d.hex())
    }

    pub(crate) fn layer_path(&self, diff_id: &Digest) -> PathBuf {
        self.root
            .join("layers")
            .join(format!("{}.json", diff_id.hex()))
    }

    pub(crate) fn link_path(&self, d: &Digest) -> PathBuf {
        self.root.join("links").join(format!("{}.json", d.hex()))
    }

    pub(crate) fn pack_path(&self, d: &Digest, ext: &str) -> PathBuf {
        self.root.join("packs").join(format!("{}.{ext}", d.hex()))
    }

    pub(crate) fn not_found(&self, digest: Digest) -> Error {
        Error::NotFound {
            digest,
            store: self.root.clone(),
        }
    }
}

/// Lists `<hex><suffix>` names in a directory as digests (other names are ignored).
pub(crate) fn list_hex(dir: &Path, suffix: &str) -> Result<Vec<Digest>> {
    let mut out = Vec::new();
    for ent in fs::read_dir(dir).ctx("read directory", dir)? {
        let name = ent
            .ctx("read directory", dir)?
            .file_name()
            .to_string_lossy()
            .into_owned();
        if let Some(h) = name.strip_suffix(suffix) {
            if let Ok(d) = Digest::from_hex(h) {
                out.push(d);
            }
        }
    }
    out.sort();
    Ok(out)
}
