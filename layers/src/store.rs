//! The store itself: opening, blobs, chunked layers, refs and cache records.
//!
//! On-disk layout (all names are lowercase hex SHA-256 digests unless stated):
//! ```text
//! <store>/layout.json              format version + chunking/compression parameters (see layout.rs)
//! <store>/locks/gc.lock            flock: shared by every open Store, exclusive during gc's sweep
//! <store>/tmp/<session>/           temp files of one live Store; <session>.lock held while alive
//! <store>/blobs/<hex>              raw OCI blobs: manifests, configs, indexes, layer blobs kept as-is
//! <store>/packs/<hex>.pack|.idx    chunks, compressed several to a zstd frame, and their index (pack.rs)
//! <store>/layers/<diffid>.json     layer index: DiffID, tar size, chunk list, blob digests once known (LayerIndex)
//! <store>/links/<blob>.json        compressed-blob digest → DiffID + encoding, to serve layer blobs by digest
//! <store>/refs/<escaped name>.json name:tag → manifest digest
//! <store>/cache/<key>.json         build-cache records: {key, value}, read back only under their own key
//! ```
//! Write order guarantees that whatever a reader can reach is complete: chunks (pack, then its index) before the
//! layer index, a blob's link before the layer index that lists the blob (a link alone is a partial write, never
//! served), blobs before the refs pointing at them. Every file is written temp → hash → fsync → rename →
//! fsync(dir), so a crash leaves either nothing or a complete object.

use crate::digest::{ChunkId, Digest, Hasher, VerifyingReader};
use crate::error::{Error, IoCtx, Result};
use crate::fsutil::{self, FileLock, TempSession};
use crate::json;
use crate::layout::{ChunkParams, Layout};
use crate::pack::{self, PackIndex};
use crate::tarwriter::{self, TarOptions};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet, VecDeque};
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

/// OCI media type of a zstd-compressed layer.
pub const MEDIA_TYPE_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
/// OCI media type of a gzip-compressed layer.
pub const MEDIA_TYPE_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// OCI media type of an uncompressed layer.
pub const MEDIA_TYPE_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";

/// Digest, size and media type of a blob, as an OCI descriptor needs them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobDesc {
    /// Blob digest.
    pub digest: Digest,
    /// Blob size in bytes.
    pub size: u64,
    /// OCI media type.
    pub media_type: String,
}

/// One chunk of a layer's uncompressed tar. Serialized as `["blake3:…", len]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "(ChunkId, u32)", from = "(ChunkId, u32)")]
pub struct ChunkRef {
    /// BLAKE3 name of the uncompressed chunk.
    pub id: ChunkId,
    /// Uncompressed length.
    pub len: u32,
}

impl From<ChunkRef> for (ChunkId, u32) {
    fn from(c: ChunkRef) -> Self {
        (c.id, c.len)
    }
}
impl From<(ChunkId, u32)> for ChunkRef {
    fn from(t: (ChunkId, u32)) -> Self {
        ChunkRef { id: t.0, len: t.1 }
    }
}

/// The index of one layer, stored as `layers/<diffid>.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerIndex {
    /// Index format version (2).
    pub version: u32,
    /// SHA-256 of the uncompressed tar (OCI DiffID).
    pub diff_id: Digest,
    /// Size of the uncompressed tar.
    pub size: u64,
    /// Chunking parameters the chunks were cut with.
    pub chunking: ChunkParams,
    /// Chunks in tar order.
    pub chunks: Vec<ChunkRef>,
    /// The reproducible `tar+zstd` blob, once computed ([`Store::ensure_zstd`]); regenerated from the chunks
    /// whenever served.
    #[serde(default)]
    pub zstd: Option<BlobDesc>,
    /// The reproducible `tar+gzip` blob, once computed ([`Store::ensure_gzip`]).
    #[serde(default)]
    pub gzip: Option<BlobDesc>,
    /// Blobs that came from outside and cannot be reproduced, kept as-is under `blobs/`.
    #[serde(default)]
    pub external: Vec<BlobDesc>,
}

/// What callers get back about a layer.
pub type LayerInfo = LayerIndex;

impl LayerIndex {
    /// Parses a layer index file's bytes (bounded in size and depth, see [`crate::json`]); never panics.
    pub fn decode(data: &[u8], path: &Path) -> Result<LayerIndex> {
        json::parse(data, json::MAX_LAYER_INDEX, "layer index", path)
    }

    /// The blob a manifest should reference, if its digest is known: the first external blob if the layer came
    /// from outside (so the original digest is preserved), else the reproducible zstd blob. [`Store::layer_blob`]
    /// computes it when unknown.
    pub fn known_blob(&self) -> Option<&BlobDesc> {
        self.external.first().or(self.zstd.as_ref())
    }
}

/// How a blob digest maps to a layer (`links/<digest>.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobLink {
    /// The layer.
    pub diff_id: Digest,
    /// `zstd`, `gzip`, `tar` (the blob is the uncompressed tar) or `external` (stored raw under `blobs/`).
    pub encoding: String,
}

/// A reference record (`refs/<escaped name>.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefRecord {
    /// `name:tag` as given.
    pub name: String,
    /// The manifest (or index) digest.
    pub digest: Digest,
}

/// A build-cache record (`cache/<key>.json`): the value bound to the key it was written for, so that a record
/// renamed or copied to another key's file reads as a miss instead of answering for a step it was not made by.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct CacheRecord {
    /// The key the record was written for; must equal the file name.
    pub(crate) key: Digest,
    /// What the caller stored.
    pub(crate) value: serde_json::Value,
}

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
}

impl ChunkMap {
    fn add(&mut self, idx: &PackIndex, idx_len: u64) {
        if !self.loaded.insert(idx.pack) {
            return;
        }
        let p = self.packs.len() as u32;
        self.packs.push(idx.pack);
        self.sizes.push((idx.pack_size, idx_len));
        for e in &idx.entries {
            self.map.entry(e.chunk).or_insert(ChunkLoc {
                pack: p,
                frame_offset: e.frame_offset,
                frame_len: e.frame_len,
                frame_raw_len: e.frame_raw_len,
                offset: e.offset,
                raw_len: e.raw_len,
            });
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
    pack_files: Mutex<HashMap<Digest, Arc<File>>>,
    /// The last few decoded pack frames, most recent first, keyed by (pack, frame offset).
    frames: Mutex<VecDeque<CachedFrame>>,
}

/// A decoded pack frame keyed by (pack, frame offset).
type CachedFrame = ((Digest, u64), Arc<Vec<u8>>);

/// Decoded pack frames kept in memory (4 MiB each by default): enough for a sequential reader and a few parallel
/// blob-frame encoders to decode each frame once.
const FRAME_CACHE: usize = 8;

const DIRS: [&str; 8] = [
    "locks", "tmp", "blobs", "packs", "layers", "links", "refs", "cache",
];

/// Prefix of the temp file a new store's `layout.json` is written to (in the store directory itself, since
/// `tmp/` does not exist yet). Such a leftover does not make a directory "not empty".
const NEW_LAYOUT_PREFIX: &str = ".chasi-new-layout.";

/// What a path given as a store is.
enum StoreDir {
    /// Has `layout.json`.
    Existing,
    /// Does not exist, or is an empty directory.
    Absent,
    /// Anything else, with the reason it is not a store.
    Foreign(String),
}

impl StoreDir {
    fn classify(root: &Path) -> Result<StoreDir> {
        match fs::symlink_metadata(root.join("layout.json")) {
            Ok(_) => return Ok(StoreDir::Existing),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) if e.raw_os_error() == Some(20) => {
                return Ok(StoreDir::Foreign("it is not a directory".into()))
            }
            Err(e) => return Err(Error::io("stat", root.join("layout.json"), e)),
        }
        let entries = match fs::read_dir(root) {
            Ok(x) => x,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(StoreDir::Absent),
            Err(e) if e.raw_os_error() == Some(20) => {
                return Ok(StoreDir::Foreign("it is not a directory".into()))
            }
            Err(e) => return Err(Error::io("read directory", root, e)),
        };
        for ent in entries {
            let name = ent.ctx("read directory", root)?.file_name();
            if !name.to_string_lossy().starts_with(NEW_LAYOUT_PREFIX) {
                return Ok(StoreDir::Foreign(
                    "the directory is not empty and has no layout.json".into(),
                ));
            }
        }
        Ok(StoreDir::Absent)
    }
}

/// Makes `root` a store by writing its `layout.json`, before anything else, so that a crash leaves either an
/// empty directory or a store. Of two processes creating the same store at once, the first to link its file in
/// wins and both use that layout.
fn create_layout(root: &Path, layout: &Layout) -> Result<()> {
    fsutil::mkdirs(root)?;
    let dest = root.join("layout.json");
    let tmp = root.join(format!("{NEW_LAYOUT_PREFIX}{}", fsutil::unique_name()));
    let data = serde_json::to_vec_pretty(layout)
        .map_err(|e| Error::io("encode", &dest, io::Error::other(e)))?;
    let res = (|| {
        let mut f = File::create_new(&tmp).ctx("create", &tmp)?;
        f.write_all(&data).ctx("write", &tmp)?;
        f.sync_all().ctx("fsync", &tmp)?;
        match fs::hard_link(&tmp, &dest) {
            Err(e) if e.kind() != io::ErrorKind::AlreadyExists => {
                return Err(Error::io("link", &dest, e))
            }
            _ => {}
        }
        fsutil::fsync_dir(root)
    })();
    let _ = fs::remove_file(&tmp);
    res
}

impl Store {
    /// Opens the store at `root`, creating it with default parameters if it does not exist.
    ///
    /// One rule for every command (see [`Store::open_existing`] for the commands that only read): an absent or empty
    /// directory becomes a new store; a directory with `layout.json` is opened; any other path (a non-empty
    /// directory without `layout.json`, a file) is refused with [`Error::NotAStore`], and nothing is written to it.
    pub fn open(root: impl AsRef<Path>) -> Result<Store> {
        Self::open_with(root, ChunkParams::default())
    }

    /// Opens the store at `root`; a new store is created with `chunking` (an existing one keeps its own).
    pub fn open_with(root: impl AsRef<Path>, chunking: ChunkParams) -> Result<Store> {
        Self::open_with_layout(root, Layout::new(chunking))
    }

    /// Opens an existing store without ever creating one: an absent or empty directory is [`Error::NoStore`], any
    /// other path without `layout.json` is [`Error::NotAStore`]. For commands that only read (`verify`, `du`,
    /// `images`, `gc`, ...).
    pub fn open_existing(root: impl AsRef<Path>) -> Result<Store> {
        let root = root.as_ref();
        match StoreDir::classify(root)? {
            StoreDir::Existing => Self::open_with_layout(root, Layout::new(ChunkParams::default())),
            StoreDir::Absent => Err(Error::NoStore { path: root.into() }),
            StoreDir::Foreign(reason) => Err(Error::NotAStore {
                path: root.into(),
                reason,
            }),
        }
    }

    /// Opens the store at `root`; a new store is created with `layout` (an existing one keeps its own).
    pub fn open_with_layout(root: impl AsRef<Path>, layout: Layout) -> Result<Store> {
        let root = root.as_ref().to_path_buf();
        let layout_path = root.join("layout.json");
        layout.validate().map_err(|d| Error::Layout {
            path: layout_path.clone(),
            detail: d,
        })?;
        match StoreDir::classify(&root)? {
            StoreDir::Existing => {}
            StoreDir::Absent => create_layout(&root, &layout)?,
            StoreDir::Foreign(reason) => return Err(Error::NotAStore { path: root, reason }),
        }
        let data = json::read_bounded(&layout_path, json::MAX_DOC, "layout")?
            .ok_or_else(|| Error::NoStore { path: root.clone() })?;
        let layout = Layout::parse(&data, &layout_path)?;
        for d in DIRS {
            fsutil::mkdirs(&root.join(d))?;
        }
        let lock =
            FileLock::acquire(&root.join("locks/gc.lock"), false, true)?.ok_or_else(|| {
                Error::Busy {
                    path: root.join("locks/gc.lock"),
                    detail: "cannot lock".into(),
                }
            })?;
        let tmp_root = root.join("tmp");
        TempSession::clean_dead(&tmp_root);
        let tmp = TempSession::create(&tmp_root)?;
        let store = Store {
            root,
            layout,
            lock: Mutex::new(lock),
            tmp,
            chunks: RwLock::new(ChunkMap::default()),
            pack_files: Mutex::new(HashMap::new()),
            frames: Mutex::new(VecDeque::new()),
        };
        store.refresh_chunks()?;
        Ok(store)
    }

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

    /// True when the pack file is there with the size its index records.
    fn pack_file_intact(&self, pack: &Digest, size: u64) -> bool {
        fs::metadata(self.pack_path(pack, "pack")).is_ok_and(|m| m.is_file() && m.len() == size)
    }

    /// Proves cheaply, without reading any chunk, that a layer can be served as `blob`: its layer index is there and
    /// parses, every chunk it lists is in a known pack whose `.pack` and `.idx` are present with the sizes the index
    /// records, and `blob` is one of its blobs with a link (and, if external, the raw blob) in place. What only
    /// reading can show (a damaged byte) is left to `verify` and to the digest checks of every read.
    ///
    /// The build cache calls this on every hit: an error means "re-execute the step".
    pub fn check_layer(&self, diff_id: &Digest, blob: &Digest) -> Result<()> {
        let idx = self.layer(diff_id)?;
        let missing = |detail: String| Error::Corrupt {
            digest: *diff_id,
            path: self.layer_path(diff_id),
            detail,
        };
        let mut packs = HashSet::new();
        {
            let map = self.chunks.read().unwrap_or_else(|e| e.into_inner());
            for c in &idx.chunks {
                match map.map.get(&c.id) {
                    Some(l) if l.raw_len == c.len => {
                        packs.insert(l.pack);
                    }
                    _ => return Err(missing(format!("chunk {} is in no pack", c.id))),
                }
            }
            for p in packs {
                let (d, (size, idx_len)) = (map.packs[p as usize], map.sizes[p as usize]);
                let idx_ok =
                    fs::metadata(self.pack_path(&d, "idx")).is_ok_and(|m| m.len() == idx_len);
                if !idx_ok || !self.pack_file_intact(&d, size) {
                    return Err(missing(format!(
                        "pack {d} is missing or has the wrong size"
                    )));
                }
            }
        }
        // The uncompressed tar itself (served from the chunks just checked).
        if *blob == *diff_id {
            return Ok(());
        }
        let listed = [idx.zstd.as_ref(), idx.gzip.as_ref()]
            .into_iter()
            .flatten()
            .chain(&idx.external)
            .any(|b| b.digest == *blob);
        if !listed {
            return Err(missing(format!("blob {blob} is not one of its blobs")));
        }
        let link = self.read_link(blob)?.ok_or_else(|| self.not_found(*blob))?;
        if link.diff_id != *diff_id {
            return Err(missing(format!(
                "link of blob {blob} names layer {}",
                link.diff_id
            )));
        }
        if link.encoding == "external" && !self.blob_path(blob).is_file() {
            return Err(self.not_found(*blob));
        }
        Ok(())
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
    fn stored_frame(&self, chunks: &[ChunkRef]) -> Result<Option<Vec<u8>>> {
        let Some((pack, first)) = chunks.first().and_then(|c| self.chunk_loc(&c.id)) else {
            return Ok(None);
        };
        let mut next = 0u32;
        for c in chunks {
            match self.chunk_loc(&c.id) {
                Some((p, l))
                    if p == pack
                        && l.frame_offset == first.frame_offset
                        && l.offset == next
                        && l.raw_len == c.len =>
                {
                    next += c.len
                }
                _ => return Ok(None),
            }
        }
        if next != first.frame_raw_len {
            return Ok(None);
        }
        // The chunks are verified all the same (one decode, cached): a digest computed from these bytes gets
        // recorded, and must never come from a damaged pack.
        for c in chunks {
            self.read_chunk(c)?;
        }
        let f = self.pack_file(&pack)?;
        let path = self.pack_path(&pack, "pack");
        pack::read_frame(&f, &path, first.frame_offset, first.frame_len).map(Some)
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

    pub(crate) fn not_found(&self, digest: Digest) -> Error {
        Error::NotFound {
            digest,
            store: self.root.clone(),
        }
    }

    // ---------------------------------------------------------------- blobs

    /// Stores a blob (manifest, config, index, or any OCI blob) and returns its digest.
    pub fn put_blob(&self, data: &[u8]) -> Result<Digest> {
        let d = Digest::of(data);
        let path = self.blob_path(&d);
        if !path.exists() {
            fsutil::atomic_write(self.tmp_dir(), &path, data)?;
        }
        Ok(d)
    }

    /// Streams a blob into the store; when `expected` is given, a digest or size mismatch stores nothing.
    pub fn put_blob_from(&self, r: impl Read, expected: Option<(Digest, u64)>) -> Result<BlobDesc> {
        let (tmp, d, size) = self.spool(r)?;
        let res = (|| {
            if let Some((ed, es)) = expected {
                if ed != d || es != size {
                    return Err(Error::Corrupt {
                        digest: ed,
                        path: tmp.clone(),
                        detail: format!("received {d} ({size} bytes), expected {es} bytes"),
                    });
                }
            }
            let dest = self.blob_path(&d);
            fs::rename(&tmp, &dest).ctx("rename into", &dest)?;
            fsutil::fsync_dir(&self.root.join("blobs"))
        })();
        let _ = fs::remove_file(&tmp);
        res?;
        Ok(BlobDesc {
            digest: d,
            size,
            media_type: String::new(),
        })
    }

    /// Copies a stream to a fsynced temp file, returning its path, digest and size.
    fn spool(&self, mut r: impl Read) -> Result<(PathBuf, Digest, u64)> {
        let tmp = self.tmp_dir().join(fsutil::unique_name());
        let f = File::create_new(&tmp).ctx("create", &tmp)?;
        let mut w = crate::digest::HashingWriter::new(io::BufWriter::with_capacity(1 << 20, f));
        let res = io::copy(&mut r, &mut w);
        let (bw, d, size) = w.finish();
        let done = res.ctx("write", &tmp).and_then(|_| {
            let f = bw
                .into_inner()
                .map_err(|e| Error::io("write", &tmp, e.into_error()))?;
            f.sync_all().ctx("fsync", &tmp)
        });
        if let Err(e) = done {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
        Ok((tmp, d, size))
    }

    /// True if a blob with this digest can be served (raw blob, or a layer blob its layer index lists).
    pub fn has_blob(&self, d: &Digest) -> bool {
        if self.blob_path(d).exists() {
            return true;
        }
        let Ok((link, layer)) = self.blob_layer(d) else {
            return false;
        };
        match link.encoding.as_str() {
            "zstd" => layer.zstd.is_some_and(|b| b.digest == *d),
            "gzip" => layer.gzip.is_some_and(|b| b.digest == *d),
            "tar" => layer.diff_id == *d,
            _ => false,
        }
    }

    /// Reads a whole blob into memory, verified. Meant for small blobs (manifests, configs).
    pub fn get_blob(&self, d: &Digest) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        self.open_blob(d)?
            .read_to_end(&mut out)
            .map_err(|e| self.read_err(d, e))?;
        Ok(out)
    }

    fn read_err(&self, d: &Digest, e: io::Error) -> Error {
        if e.kind() == io::ErrorKind::InvalidData {
            Error::Corrupt {
                digest: *d,
                path: self.blob_path(d),
                detail: e.to_string(),
            }
        } else {
            Error::io("read blob", self.blob_path(d), e)
        }
    }

    /// Size of a blob without reading it.
    pub fn blob_size(&self, d: &Digest) -> Result<u64> {
        let p = self.blob_path(d);
        if let Ok(md) = fs::metadata(&p) {
            return Ok(md.len());
        }
        let (link, layer) = self.blob_layer(d)?;
        let known = match link.encoding.as_str() {
            "zstd" => layer.zstd.as_ref().map(|b| b.size),
            "gzip" => layer.gzip.as_ref().map(|g| g.size),
            "tar" => Some(layer.size),
            _ => None,
        };
        known.ok_or_else(|| self.not_found(*d))
    }

    /// Opens a blob for streaming. The reader checks digest and size as it goes and fails at the end on mismatch;
    /// layer blobs are regenerated from chunks with the pinned framing (see [`crate::layout::CompressionParams`]).
    pub fn open_blob(&self, d: &Digest) -> Result<Box<dyn Read + Send + '_>> {
        let p = self.blob_path(d);
        match File::open(&p) {
            Ok(f) => {
                let size = f.metadata().ctx("stat", &p)?.len();
                return Ok(Box::new(VerifyingReader::new(
                    io::BufReader::with_capacity(1 << 20, f),
                    *d,
                    size,
                )));
            }
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(Error::io("open", &p, e)),
            Err(_) => {}
        }
        let (link, layer) = self.blob_layer(d)?;
        match link.encoding.as_str() {
            "zstd" | "gzip" => {
                let (desc, enc) = match link.encoding.as_str() {
                    "zstd" => (layer.zstd.clone(), BlobEncoding::Zstd),
                    _ => (layer.gzip.clone(), BlobEncoding::Gzip),
                };
                let b = desc.ok_or_else(|| self.not_found(*d))?;
                let r = BlobReader::new(self, layer.chunks.clone(), enc);
                Ok(Box::new(VerifyingReader::new(r, b.digest, b.size)))
            }
            "tar" => Ok(Box::new(self.open_layer(&layer.diff_id)?)),
            _ => Err(self.not_found(*d)),
        }
    }

    /// Copies a blob to a writer (e.g. into an OCI layout's `blobs/sha256/`), verified; returns its size.
    pub fn copy_blob(&self, d: &Digest, mut w: impl Write) -> Result<u64> {
        let mut r = self.open_blob(d)?;
        io::copy(&mut r, &mut w).map_err(|e| self.read_err(d, e))
    }

    /// The link of a blob digest, `None` when there is none.
    pub(crate) fn read_link(&self, d: &Digest) -> Result<Option<BlobLink>> {
        json::read(&self.link_path(d), json::MAX_DOC, "blob link")
    }

    fn blob_layer(&self, d: &Digest) -> Result<(BlobLink, LayerIndex)> {
        let link = self.read_link(d)?.ok_or_else(|| self.not_found(*d))?;
        let layer = self.layer(&link.diff_id)?;
        Ok((link, layer))
    }

    // ---------------------------------------------------------------- layers

    /// The index of a layer by DiffID.
    pub fn layer(&self, diff_id: &Digest) -> Result<LayerIndex> {
        let p = self.layer_path(diff_id);
        let data = json::read_bounded(&p, json::MAX_LAYER_INDEX, "layer index")?
            .ok_or_else(|| self.not_found(*diff_id))?;
        let idx = LayerIndex::decode(&data, &p)?;
        if idx.diff_id != *diff_id {
            return Err(Error::Corrupt {
                digest: *diff_id,
                path: p,
                detail: format!("index names {}", idx.diff_id),
            });
        }
        Ok(idx)
    }

    /// True if the layer is in the store.
    pub fn has_layer(&self, diff_id: &Digest) -> bool {
        self.layer_path(diff_id).exists()
    }

    /// The layer whose compressed (or uncompressed) blob has this digest.
    pub fn layer_for_blob(&self, blob: &Digest) -> Result<LayerIndex> {
        if self.has_layer(blob) {
            return self.layer(blob);
        }
        Ok(self.blob_layer(blob)?.1)
    }

    /// All layers in the store.
    pub fn list_layers(&self) -> Result<Vec<Digest>> {
        list_hex(&self.root.join("layers"), ".json")
    }

    /// Streams a layer's uncompressed tar, verifying every chunk and, at the end, the DiffID.
    pub fn open_layer(&self, diff_id: &Digest) -> Result<LayerReader<'_>> {
        let idx = self.layer(diff_id)?;
        Ok(LayerReader::new(self, idx))
    }

    /// Archives a directory with the reproducible tar writer and ingests it as a layer.
    ///
    /// The tar is produced on a helper thread and chunked/compressed while it is written, so it never exists in
    /// full in memory or on disk.
    pub fn ingest_dir(&self, dir: &Path, opts: &TarOptions) -> Result<LayerInfo> {
        let md = fs::metadata(dir).ctx("stat", dir)?;
        if !md.is_dir() {
            return Err(Error::io(
                "archive",
                dir,
                io::Error::new(io::ErrorKind::NotADirectory, "not a directory"),
            ));
        }
        let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(8);
        std::thread::scope(|s| {
            let producer = s.spawn(move || {
                let w = io::BufWriter::with_capacity(1 << 20, ChannelWriter { tx });
                tarwriter::write_tree(dir, opts, w).map(|_| ())
            });
            let mut reader = ChannelReader {
                rx,
                cur: Vec::new(),
                pos: 0,
            };
            let res = self.ingest_tar(&mut reader);
            drop(reader);
            let prod = producer.join().unwrap_or_else(|_| {
                Err(Error::Unsupported {
                    path: dir.into(),
                    reason: "tar writer panicked".into(),
                })
            });
            // A producer failure explains a short stream better than the consumer's view of it.
            prod?;
            res
        })
    }

    /// Ingests an uncompressed tar stream as a layer: FastCDC chunks named by BLAKE3, unknown ones compressed
    /// into pack frames (in parallel), the DiffID computed on the way. Returns the layer's index; its compressed
    /// blob digest is computed on first need ([`Store::layer_blob`]).
    pub fn ingest_tar(&self, r: impl Read) -> Result<LayerInfo> {
        crate::ingest::ingest(self, r)
    }

    /// Imports a layer blob that came from outside (`tar`, `tar+gzip` or `tar+zstd` by `media_type`).
    ///
    /// The content is chunked like any layer (so it is deduplicated and can be unpacked from chunks). If the blob
    /// is byte-identical to what the store would produce itself, only the chunks are kept; otherwise the raw blob
    /// is also kept under `blobs/` and listed in `external`, so its original digest stays servable.
    pub fn import_layer_blob(
        &self,
        r: impl Read,
        media_type: &str,
        expected: Option<Digest>,
    ) -> Result<LayerInfo> {
        let (tmp, d, size) = self.spool(r)?;
        let res = self.import_spooled(&tmp, d, size, media_type, expected);
        let _ = fs::remove_file(&tmp);
        res
    }

    fn import_spooled(
        &self,
        tmp: &Path,
        d: Digest,
        size: u64,
        media_type: &str,
        expected: Option<Digest>,
    ) -> Result<LayerInfo> {
        if let Some(e) = expected {
            if e != d {
                return Err(Error::Corrupt {
                    digest: e,
                    path: tmp.into(),
                    detail: format!("received content hashes to {d}"),
                });
            }
        }
        let f = io::BufReader::new(File::open(tmp).ctx("open", tmp)?);
        let bad = |e: Error| match e {
            Error::Io { source, .. }
                if source.kind() == io::ErrorKind::InvalidData
                    || source.kind() == io::ErrorKind::InvalidInput =>
            {
                Error::BadTar {
                    what: d.to_string(),
                    detail: source.to_string(),
                }
            }
            e => e,
        };
        let mut info = if media_type.ends_with("gzip") {
            self.ingest_tar(flate2::read::MultiGzDecoder::new(f))
                .map_err(bad)?
        } else if media_type.ends_with("zstd") {
            let dec = zstd::stream::read::Decoder::with_buffer(f).ctx("decode", tmp)?;
            self.ingest_tar(dec).map_err(bad)?
        } else {
            self.ingest_tar(f)?
        };
        // A zstd blob is often one chasi wrote itself (a base image saved by chasi): then the chunks reproduce it
        // and the raw copy is not kept. gzip is only compared when already known (recompressing gzip is slow).
        let ours = if media_type.ends_with("zstd") {
            Some(self.ensure_zstd(&info.diff_id)?)
        } else {
            None
        };
        info = self.layer(&info.diff_id)?;
        let encoding = if ours.is_some_and(|z| z.digest == d) {
            "zstd"
        } else if d == info.diff_id {
            "tar"
        } else if info.gzip.as_ref().is_some_and(|g| g.digest == d) {
            "gzip"
        } else {
            let dest = self.blob_path(&d);
            if !dest.exists() {
                fs::hard_link(tmp, &dest)
                    .or_else(|_| fs::copy(tmp, &dest).map(|_| ()))
                    .ctx("store blob", &dest)?;
                fsutil::fsync_dir(&self.root.join("blobs"))?;
            }
            if !info.external.iter().any(|b| b.digest == d) {
                info.external.push(BlobDesc {
                    digest: d,
                    size,
                    media_type: media_type.to_string(),
                });
                self.record_blob(&info, &d, "external")?;
            }
            "external"
        };
        self.write_link(&d, &info.diff_id, encoding)?;
        Ok(info)
    }

    /// Records a new blob of a layer: its link first, then the index listing it. A crash in between leaves a link
    /// whose layer does not list the blob (a partial write: not served, removed by gc), never a listed blob that
    /// cannot be found by digest.
    pub(crate) fn record_blob(
        &self,
        idx: &LayerIndex,
        blob: &Digest,
        encoding: &str,
    ) -> Result<()> {
        self.write_link(blob, &idx.diff_id, encoding)?;
        self.write_layer_index(idx)
    }

    pub(crate) fn write_layer_index(&self, idx: &LayerIndex) -> Result<()> {
        let p = self.layer_path(&idx.diff_id);
        let data =
            serde_json::to_vec(idx).map_err(|e| Error::io("encode", &p, io::Error::other(e)))?;
        fsutil::atomic_write(self.tmp_dir(), &p, &data)
    }

    pub(crate) fn write_link(&self, blob: &Digest, diff_id: &Digest, encoding: &str) -> Result<()> {
        let p = self.link_path(blob);
        let link = BlobLink {
            diff_id: *diff_id,
            encoding: encoding.into(),
        };
        if self.read_link(blob).ok().flatten().as_ref() == Some(&link) {
            return Ok(());
        }
        let data =
            serde_json::to_vec(&link).map_err(|e| Error::io("encode", &p, io::Error::other(e)))?;
        fsutil::atomic_write(self.tmp_dir(), &p, &data)
    }

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

    // ---------------------------------------------------------------- refs

    fn ref_path(&self, name: &str) -> Result<PathBuf> {
        if name.is_empty() || name.len() > 512 || name.chars().any(|c| c.is_control()) {
            return Err(Error::BadRefName(name.to_string()));
        }
        let mut esc = String::new();
        for b in name.bytes() {
            if b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-' {
                esc.push(b as char);
            } else {
                esc.push_str(&format!("%{b:02X}"));
            }
        }
        Ok(self.root.join("refs").join(format!("{esc}.json")))
    }

    /// Points `name` (e.g. `app:1.0`) at a manifest digest, atomically replacing any previous value.
    pub fn set_ref(&self, name: &str, digest: &Digest) -> Result<()> {
        let p = self.ref_path(name)?;
        let rec = RefRecord {
            name: name.to_string(),
            digest: *digest,
        };
        let data = serde_json::to_vec_pretty(&rec)
            .map_err(|e| Error::io("encode", &p, io::Error::other(e)))?;
        fsutil::atomic_write(self.tmp_dir(), &p, &data)
    }

    /// Resolves `name` to its manifest digest.
    pub fn get_ref(&self, name: &str) -> Result<Digest> {
        let p = self.ref_path(name)?;
        let rec: RefRecord =
            json::read(&p, json::MAX_DOC, "ref")?.ok_or_else(|| Error::RefNotFound {
                name: name.to_string(),
                store: self.root.clone(),
            })?;
        Ok(rec.digest)
    }

    /// Removes a reference; returns whether it existed.
    pub fn delete_ref(&self, name: &str) -> Result<bool> {
        let p = self.ref_path(name)?;
        match fs::remove_file(&p) {
            Ok(()) => {
                fsutil::fsync_dir(&self.root.join("refs"))?;
                Ok(true)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(Error::io("remove", &p, e)),
        }
    }

    /// All references, sorted by name.
    pub fn list_refs(&self) -> Result<Vec<RefRecord>> {
        let dir = self.root.join("refs");
        let mut out = Vec::new();
        for ent in fs::read_dir(&dir).ctx("read directory", &dir)? {
            let p = ent.ctx("read directory", &dir)?.path();
            if p.extension().is_some_and(|e| e == "json") {
                out.extend(json::read::<RefRecord>(&p, json::MAX_DOC, "ref")?);
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    // ---------------------------------------------------------------- cache

    fn cache_path(&self, key: &Digest) -> PathBuf {
        self.root.join("cache").join(format!("{}.json", key.hex()))
    }

    /// Records a build-cache entry, bound to its key (see [`Store::get_cache`]). Every `sha256:…` string inside
    /// `value` is kept alive by `gc`.
    pub fn put_cache(&self, key: &Digest, value: &serde_json::Value) -> Result<()> {
        let p = self.cache_path(key);
        let rec = CacheRecord {
            key: *key,
            value: value.clone(),
        };
        let data =
            serde_json::to_vec(&rec).map_err(|e| Error::io("encode", &p, io::Error::other(e)))?;
        fsutil::atomic_write(self.tmp_dir(), &p, &data)
    }

    /// Looks up a build-cache entry. A malformed record, or one written for another key (a file renamed or copied
    /// over this key's), reads as a miss; `verify` reports both.
    pub fn get_cache(&self, key: &Digest) -> Result<Option<serde_json::Value>> {
        let p = self.cache_path(key);
        let data = match json::read_bounded(&p, json::MAX_DOC, "cache record") {
            Ok(Some(data)) => data,
            Ok(None) => return Ok(None),
            Err(Error::Malformed { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        Ok(
            json::parse::<CacheRecord>(&data, json::MAX_DOC, "cache record", &p)
                .ok()
                .filter(|r| r.key == *key)
                .map(|r| r.value),
        )
    }

    /// Removes a cache entry; returns whether it existed.
    pub fn delete_cache(&self, key: &Digest) -> Result<bool> {
        let p = self.cache_path(key);
        match fs::remove_file(&p) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(Error::io("remove", &p, e)),
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

pub(crate) struct ChannelWriter {
    pub(crate) tx: std::sync::mpsc::SyncSender<Vec<u8>>,
}
impl Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.tx
            .send(buf.to_vec())
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "ingest stopped"))?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

pub(crate) struct ChannelReader {
    rx: std::sync::mpsc::Receiver<Vec<u8>>,
    cur: Vec<u8>,
    pos: usize,
}
impl ChannelReader {
    pub(crate) fn new(rx: std::sync::mpsc::Receiver<Vec<u8>>) -> Self {
        Self {
            rx,
            cur: Vec::new(),
            pos: 0,
        }
    }
}
impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.cur.len() {
            match self.rx.recv() {
                Ok(v) => {
                    self.cur = v;
                    self.pos = 0;
                }
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.cur.len() - self.pos);
        buf[..n].copy_from_slice(&self.cur[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

fn to_io(e: &Error) -> io::Error {
    match e {
        Error::Corrupt { .. } | Error::CorruptChunk { .. } | Error::Malformed { .. } => {
            io::Error::new(io::ErrorKind::InvalidData, crate::error::chain(e))
        }
        other => io::Error::other(crate::error::chain(other)),
    }
}

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
struct BlobReader<'a> {
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
    fn new(store: &'a Store, chunks: Vec<ChunkRef>, enc: BlobEncoding) -> Self {
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

/// Streams a layer's uncompressed tar from its chunks, each verified; the DiffID is checked at the end.
/// Also supports random access ([`LayerReader::read_at`]) for flattening.
pub struct LayerReader<'a> {
    store: &'a Store,
    index: LayerIndex,
    starts: Vec<u64>,
    next: usize,
    cur: Vec<u8>,
    pos: usize,
    hasher: Option<Hasher>,
    cache: Option<(usize, Arc<Vec<u8>>)>,
}

impl<'a> LayerReader<'a> {
    fn new(store: &'a Store, index: LayerIndex) -> Self {
        let mut starts = Vec::with_capacity(index.chunks.len());
        let mut o = 0u64;
        for c in &index.chunks {
            starts.push(o);
            o += c.len as u64;
        }
        Self {
            store,
            index,
            starts,
            next: 0,
            cur: Vec::new(),
            pos: 0,
            hasher: Some(Hasher::new()),
            cache: None,
        }
    }

    /// The layer's index.
    pub fn index(&self) -> &LayerIndex {
        &self.index
    }

    fn chunk(&mut self, i: usize) -> Result<Arc<Vec<u8>>> {
        if let Some((ci, data)) = &self.cache {
            if *ci == i {
                return Ok(data.clone());
            }
        }
        let data = Arc::new(self.store.read_chunk(&self.index.chunks[i])?);
        self.cache = Some((i, data.clone()));
        Ok(data)
    }

    /// Reads `buf.len()` bytes of the uncompressed tar at `offset` (each chunk touched is verified).
    pub fn read_at(&mut self, mut offset: u64, mut buf: &mut [u8]) -> Result<()> {
        while !buf.is_empty() {
            let i = match self.starts.binary_search(&offset) {
                Ok(i) => i,
                Err(0) => return Err(self.short(offset)),
                Err(i) => i - 1,
            };
            if i >= self.index.chunks.len() {
                return Err(self.short(offset));
            }
            let data = self.chunk(i)?;
            let within = (offset - self.starts[i]) as usize;
            if within >= data.len() {
                return Err(self.short(offset));
            }
            let n = buf.len().min(data.len() - within);
            buf[..n].copy_from_slice(&data[within..within + n]);
            buf = &mut buf[n..];
            offset += n as u64;
        }
        Ok(())
    }

    fn short(&self, offset: u64) -> Error {
        Error::Corrupt {
            digest: self.index.diff_id,
            path: self.store.layer_path(&self.index.diff_id),
            detail: format!("read past the end of the layer at offset {offset}"),
        }
    }
}

impl Read for LayerReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.cur.len() {
            if self.next >= self.index.chunks.len() {
                if let Some(h) = self.hasher.take() {
                    let (len, d) = (h.len(), h.finish());
                    if d != self.index.diff_id || len != self.index.size {
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            format!(
                                "layer {} reassembles to {d} ({len} bytes)",
                                self.index.diff_id
                            ),
                        ));
                    }
                }
                return Ok(0);
            }
            self.cur = self
                .store
                .read_chunk(&self.index.chunks[self.next])
                .map_err(|e| to_io(&e))?;
            if let Some(h) = self.hasher.as_mut() {
                h.update(&self.cur);
            }
            self.pos = 0;
            self.next += 1;
        }
        let n = buf.len().min(self.cur.len() - self.pos);
        buf[..n].copy_from_slice(&self.cur[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}
