//! The plan's file-digest cache, kept in the store between builds.
//!
//! An unchanged rebuild must not read the whole build context again just to find that
//! nothing changed. The compiler asks a [`FileDigests`] cache first; this implementation
//! keeps one record per build context in the store's cache (`put_cache`, written atomically),
//! holding `path → stamp + BLAKE3` for every file hashed. Entries whose stamps are too recent
//! to be trusted are never recorded; a record from another chasi version is ignored.

use chasi_compiler::plan::files::{FileDigests, FileStamp};
use chasi_layers::{Digest, Store};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Mutex;

const VERSION: &str = "chasi.filedigests/v1";

#[derive(Debug, Default, Serialize, Deserialize)]
struct Record {
    version: String,
    /// `(stamp, hex BLAKE3)` per file.
    files: Vec<(FileStamp, String)>,
}

/// A [`FileDigests`] cache for one build context, loaded from and saved to a store.
///
/// Maps are keyed by the path's bytes: hashing and comparing a `Path` goes component by
/// component, which an unchanged rebuild of a large context would pay twice per file.
#[derive(Debug)]
pub struct StoreFileDigests {
    key: Digest,
    known: Digests,
    fresh: Mutex<Digests>,
    used: Mutex<HashSet<Box<[u8]>>>,
}

/// File digests by the bytes of the file's path, with the stamp they were taken at.
type Digests = HashMap<Box<[u8]>, (FileStamp, [u8; 32])>;

fn path_key(path: &Path) -> Box<[u8]> {
    path.as_os_str().as_bytes().into()
}

/// The same stamp, the paths compared as bytes.
fn same(a: &FileStamp, b: &FileStamp) -> bool {
    a.ino == b.ino
        && a.size == b.size
        && a.mtime_ns == b.mtime_ns
        && a.ctime_ns == b.ctime_ns
        && a.dev == b.dev
        && a.path.as_os_str().as_bytes() == b.path.as_os_str().as_bytes()
}

fn now_ns() -> i128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i128)
        .unwrap_or(0)
}

impl StoreFileDigests {
    /// Loads the cache of `context` (an unreadable or foreign record counts as empty).
    pub fn load(store: &Store, context: &Path) -> Self {
        let canonical = context
            .canonicalize()
            .unwrap_or_else(|_| context.to_path_buf());
        let key = Digest::of(format!("{VERSION}\0{}", canonical.display()).as_bytes());
        let mut known = HashMap::new();
        if let Ok(Some(record)) = store.get_cache_as::<Record>(&key) {
            if record.version == VERSION {
                known.reserve(record.files.len());
                for (stamp, hex) in record.files {
                    let mut digest = [0u8; 32];
                    if hex::decode_to_slice(&hex, &mut digest).is_ok() {
                        known.insert(path_key(&stamp.path), (stamp, digest));
                    }
                }
            }
        }
        StoreFileDigests {
            key,
            known,
            fresh: Mutex::new(HashMap::new()),
            used: Mutex::new(HashSet::new()),
        }
    }

    /// Writes the cache back when this run learned something (files no longer used are dropped).
    pub fn save(&self, store: &Store) -> crate::Result<()> {
        let fresh = self.fresh.lock().unwrap_or_else(|e| e.into_inner());
        let used = self.used.lock().unwrap_or_else(|e| e.into_inner());
        if fresh.is_empty() && used.len() == self.known.len() {
            return Ok(());
        }
        let mut files: Vec<(FileStamp, String)> = used
            .iter()
            .filter_map(|p| self.known.get(p))
            .map(|(s, d)| (s.clone(), hex::encode(d)))
            .collect();
        files.extend(fresh.values().map(|(s, d)| (s.clone(), hex::encode(d))));
        files.sort_by(|a, b| a.0.path.cmp(&b.0.path));
        files.dedup_by(|a, b| a.0.path == b.0.path);
        let record = Record {
            version: VERSION.to_string(),
            files,
        };
        let value = serde_json::to_value(&record).map_err(crate::BuildError::EncodeCache)?;
        store.put_cache(&self.key, &value)?;
        Ok(())
    }
}

impl FileDigests for StoreFileDigests {
    fn get(&self, stamp: &FileStamp) -> Option<[u8; 32]> {
        let key = path_key(&stamp.path);
        let (known, digest) = self.known.get(&key)?;
        if same(known, stamp) && !stamp.is_racy(now_ns()) {
            self.used
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(key);
            Some(*digest)
        } else {
            None
        }
    }

    fn put(&self, stamp: FileStamp, digest: [u8; 32]) {
        if stamp.is_racy(now_ns()) {
            return;
        }
        self.fresh
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(path_key(&stamp.path), (stamp, digest));
    }
}
