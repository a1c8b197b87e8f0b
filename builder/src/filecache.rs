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
use std::path::{Path, PathBuf};
use std::sync::Mutex;

const VERSION: &str = "chasi.filedigests/v1";

#[derive(Debug, Default, Serialize, Deserialize)]
struct Record {
    version: String,
    /// `(stamp, hex BLAKE3)` per file.
    files: Vec<(FileStamp, String)>,
}

/// A [`FileDigests`] cache for one build context, loaded from and saved to a store.
#[derive(Debug)]
pub struct StoreFileDigests {
    key: Digest,
    known: HashMap<PathBuf, (FileStamp, [u8; 32])>,
    fresh: Mutex<HashMap<PathBuf, (FileStamp, [u8; 32])>>,
    used: Mutex<HashSet<PathBuf>>,
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
        if let Ok(Some(value)) = store.get_cache(&key) {
            if let Ok(record) = serde_json::from_value::<Record>(value) {
                if record.version == VERSION {
                    for (stamp, hex) in record.files {
                        let mut digest = [0u8; 32];
                        if hex::decode_to_slice(&hex, &mut digest).is_ok() {
                            known.insert(stamp.path.clone(), (stamp, digest));
                        }
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
        let (known, digest) = self.known.get(&stamp.path)?;
        if known == stamp && !stamp.is_racy(now_ns()) {
            self.used
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(stamp.path.clone());
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
            .insert(stamp.path.clone(), (stamp, digest));
    }
}
