//! What one tar entry describes, independent of any file on disk, and the few rules about
//! entries that every writer shares (OCI whiteout names, the `SOURCE_DATE_EPOCH` clamp).

use std::collections::BTreeMap;

/// What kind of file a tar entry describes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    /// A regular file whose data follows the header.
    File,
    /// A directory.
    Dir,
    /// A symbolic link to the given target (raw bytes, may be absolute or relative).
    Symlink(Vec<u8>),
    /// A hard link to another entry of the same archive (a relative name).
    Hardlink(Vec<u8>),
    /// A character device (major, minor).
    Char(u32, u32),
    /// A block device (major, minor).
    Block(u32, u32),
    /// A named pipe.
    Fifo,
}

/// Metadata of one tar entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TarEntry {
    /// Relative path, `/`-separated, without trailing slash or `./` prefix.
    pub path: Vec<u8>,
    /// Kind of entry.
    pub kind: EntryKind,
    /// Permission bits (`0o7777` mask).
    pub mode: u32,
    /// Owner user ID.
    pub uid: u64,
    /// Owner group ID.
    pub gid: u64,
    /// Modification time, seconds since the epoch.
    pub mtime: i64,
    /// Data size (regular files only; 0 otherwise).
    pub size: u64,
    /// Extended attributes, sorted by name.
    pub xattrs: BTreeMap<String, Vec<u8>>,
}

impl TarEntry {
    /// A regular file owned by 0:0 with no extended attributes.
    pub fn file(path: &[u8], mode: u32, mtime: i64, size: u64) -> TarEntry {
        TarEntry {
            path: path.to_vec(),
            kind: EntryKind::File,
            mode,
            uid: 0,
            gid: 0,
            mtime,
            size,
            xattrs: BTreeMap::new(),
        }
    }

    /// A whiteout entry deleting `name` inside `dir` (OCI: `dir/.wh.name`).
    pub fn whiteout(dir: &[u8], name: &[u8], mtime: i64) -> TarEntry {
        TarEntry::file(&join(dir, &[b".wh.", name].concat()), 0o644, mtime, 0)
    }

    /// An opaque-directory marker for `dir` (OCI: `dir/.wh..wh..opq`).
    pub fn opaque(dir: &[u8], mtime: i64) -> TarEntry {
        TarEntry::file(&join(dir, b".wh..wh..opq"), 0o644, mtime, 0)
    }
}

/// Joins a relative directory path and a name with `/` (the empty directory is the root).
pub fn join(dir: &[u8], name: &[u8]) -> Vec<u8> {
    if dir.is_empty() {
        name.to_vec()
    } else {
        [dir, b"/", name].concat()
    }
}

/// The `SOURCE_DATE_EPOCH` rule: an mtime later than `epoch` becomes `epoch`; earlier ones
/// are kept.
pub fn clamp_mtime(mtime: i64, epoch: Option<i64>) -> i64 {
    match epoch {
        Some(e) if mtime > e => e,
        _ => mtime,
    }
}
