//! Remembering file digests between builds, keyed by what `stat` says.
//!
//! The plan's content digests need every source file's bytes hashed. For an unchanged
//! rebuild that is the whole cost of the build, so the caller may supply a [`FileDigests`]
//! cache: a file whose [`FileStamp`] (device, inode, size, modification and change times in
//! nanoseconds) is known is not read again — the rule git and BuildKit use. The change time
//! cannot be set by users, so rewriting a file and restoring its mtime still misses. The
//! compiler only defines the interface; the builder keeps the cache in the store.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// What `stat` says about a file, as far as its content is concerned.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FileStamp {
    /// The file's path as the context opened it.
    pub path: PathBuf,
    /// Device number.
    pub dev: u64,
    /// Inode number.
    pub ino: u64,
    /// Size in bytes.
    pub size: u64,
    /// Modification time, nanoseconds since the epoch.
    pub mtime_ns: i128,
    /// Status change time, nanoseconds since the epoch.
    pub ctime_ns: i128,
}

impl FileStamp {
    /// The stamp of `path` from what the context walk's `lstat` said.
    pub fn of(path: &Path, stat: &crate::check::context::Stat) -> FileStamp {
        FileStamp {
            path: path.to_path_buf(),
            dev: stat.dev,
            ino: stat.ino,
            size: stat.size,
            mtime_ns: stat.mtime_ns,
            ctime_ns: stat.ctime_ns,
        }
    }

    /// Whether the file changed so recently that a later write could keep the same times
    /// (within the file system's time granularity): such stamps must not be trusted.
    pub fn is_racy(&self, now_ns: i128) -> bool {
        now_ns - self.mtime_ns.max(self.ctime_ns) < 2_000_000_000
    }
}

/// A cache of content digests (BLAKE3 of the file's bytes) by stamp.
pub trait FileDigests: Send + Sync + std::fmt::Debug {
    /// The digest recorded for exactly this stamp.
    fn get(&self, stamp: &FileStamp) -> Option<[u8; 32]>;
    /// Records a digest (implementations skip racy stamps).
    fn put(&self, stamp: FileStamp, digest: [u8; 32]);
}
