//! The [`Store`] handle: the state an open store holds (its root, layout, gc lock, temp session, chunk map, open
//! pack files and recent frames) and the paths of its objects. Every other part of the store is an `impl Store`
//! block over this one definition, so none of them needs another to name the handle.

use crate::digest::{ChunkId, Digest};
use crate::error::{Error, IoCtx, Result};
use crate::fsutil::{FileLock, TempSession};
use crate::layout::Layout;
use crate::pack::PackIndex;
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
    /// Every frame by its first chunk and its raw length (the place of that first chunk): how a blob frame
    /// finds the pack frame that holds it, even when all its chunks are repeats recorded elsewhere in `map`.
    pub(crate) frames: HashMap<(ChunkId, u32), ChunkLoc>,
}

impl ChunkMap {
    pub(crate) fn add(&mut self, idx: &PackIndex, idx_len: u64) {
        if !self.loaded.insert(idx.pack) {
            return;
        }
        let p = self.packs.len() as u32;
        self.packs.push(idx.pack);
        self.sizes.push((idx.pack_size, idx_len));
        for e in &idx.entries {
            let loc = ChunkLoc {
                pack: p,
                frame_offset: e.frame_offset,
                frame_len: e.frame_len,
                frame_raw_len: e.frame_raw_len,
                offset: e.offset,
                raw_len: e.raw_len,
            };
            self.map.entry(e.chunk).or_insert(loc);
            if e.offset == 0 {
                self.frames.entry((e.chunk, e.frame_raw_len)).or_insert(loc);
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
