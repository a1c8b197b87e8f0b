//! Opening a store: what a path given as a store is (a store, absent or empty, or something else), creating
//! `layout.json` first so a crash leaves an empty directory or a store, taking the shared gc lock and starting
//! this handle's temp session (after removing the sessions of dead processes).

use super::handle::{ChunkMap, Store};
use crate::error::{Error, IoCtx, Result};
use crate::fsutil::{self, FileLock, TempSession};
use crate::json;
use crate::layout::{ChunkParams, Layout};
use std::collections::{HashMap, VecDeque};
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::Path;
use std::sync::{Mutex, RwLock};

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
}
