//! Layer tars from directory trees: the file-system half of the reproducible writer.
//!
//! The encoding (ustar headers, PAX records only when a value does not fit, padding, end blocks)
//! is `chasi-tar`'s [`TarWriter`] in its [`chasi_tar::Format::LAYER`] format; this module
//! decides what goes in: it walks a directory, reads each path's metadata (owners by
//! [`OwnerPolicy`], xattrs when asked, mtimes clamped to `SOURCE_DATE_EPOCH`) and tracks hard
//! links.
//!
//! Format decisions (part of the output's identity, do not change without a new layout version):
//! - entry names relative, no `./` prefix, directories end with `/`;
//! - order: depth-first walk, siblings sorted by the bytes of their names, a directory before its contents;
//! - mtime in whole seconds, clamped to `SOURCE_DATE_EPOCH` when given (sub-second precision is dropped);
//! - the first path of a hard-linked inode in walk order carries the data, later ones are hard links to it;
//! - sockets are skipped (tar cannot represent them); everything else is kept;
//! - the rest (headers, PAX, end of archive: two zero blocks, no padding to a 10 KiB record) is
//!   [`chasi_tar::Format::LAYER`].

use crate::error::{Error, IoCtx, Result};
pub(crate) use chasi_tar::join;
pub use chasi_tar::{EntryKind, TarEntry, TarWriter};
use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// How owners are recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OwnerPolicy {
    /// Every entry is owned by 0:0 (the default for images built by unprivileged users).
    #[default]
    Root,
    /// Numeric uid/gid from the file system are kept.
    Keep,
}

/// Options of the reproducible writer.
#[derive(Debug, Clone, Default)]
pub struct TarOptions {
    /// Clamp every mtime to at most this value (`SOURCE_DATE_EPOCH`).
    pub source_date_epoch: Option<i64>,
    /// Owner policy.
    pub owner: OwnerPolicy,
    /// Record extended attributes (`SCHILY.xattr.*` PAX records). Off by default: most build contexts carry
    /// host-specific xattrs (SELinux labels) that would make output machine-dependent.
    pub xattrs: bool,
}

impl TarOptions {
    /// Options from the environment: `SOURCE_DATE_EPOCH` if set and numeric, owners mapped to root.
    pub fn from_env() -> Self {
        let sde = std::env::var("SOURCE_DATE_EPOCH")
            .ok()
            .and_then(|v| v.trim().parse().ok());
        TarOptions {
            source_date_epoch: sde,
            ..Default::default()
        }
    }

    pub(crate) fn clamp(&self, mtime: i64) -> i64 {
        chasi_tar::clamp_mtime(mtime, self.source_date_epoch)
    }
}

/// Reads the metadata of one path (not following symlinks) into a [`TarEntry`] for archive name `rel`.
///
/// Returns `None` for sockets. Hard links are not resolved here (see [`write_tree`]).
pub fn entry_from_fs(path: &Path, rel: &[u8], opts: &TarOptions) -> Result<Option<TarEntry>> {
    let md = fs::symlink_metadata(path).ctx("stat", path)?;
    let ft = md.file_type();
    let kind = if ft.is_file() {
        EntryKind::File
    } else if ft.is_dir() {
        EntryKind::Dir
    } else if ft.is_symlink() {
        EntryKind::Symlink(
            fs::read_link(path)
                .ctx("readlink", path)?
                .as_os_str()
                .as_bytes()
                .to_vec(),
        )
    } else if ft.is_char_device() {
        EntryKind::Char(rustix::fs::major(md.rdev()), rustix::fs::minor(md.rdev()))
    } else if ft.is_block_device() {
        EntryKind::Block(rustix::fs::major(md.rdev()), rustix::fs::minor(md.rdev()))
    } else if ft.is_fifo() {
        EntryKind::Fifo
    } else {
        return Ok(None);
    };
    let (uid, gid) = match opts.owner {
        OwnerPolicy::Root => (0, 0),
        OwnerPolicy::Keep => (md.uid() as u64, md.gid() as u64),
    };
    let mut xattrs = BTreeMap::new();
    if opts.xattrs {
        xattrs = read_xattrs(path)?;
    }
    Ok(Some(TarEntry {
        path: rel.to_vec(),
        size: if kind == EntryKind::File { md.len() } else { 0 },
        kind,
        mode: md.mode() & 0o7777,
        uid,
        gid,
        mtime: opts.clamp(md.mtime()),
        xattrs,
    }))
}

/// Reads all extended attributes of a path (not following symlinks), sorted by name.
pub(crate) fn read_xattrs(path: &Path) -> Result<BTreeMap<String, Vec<u8>>> {
    let mut out = BTreeMap::new();
    let mut names = vec![0u8; 4096];
    let n = match rustix::fs::llistxattr(path, &mut names) {
        Ok(n) => n,
        Err(e) if e == rustix::io::Errno::NOTSUP || e == rustix::io::Errno::OPNOTSUPP => {
            return Ok(out)
        }
        Err(e) if e == rustix::io::Errno::RANGE => {
            names = vec![0u8; 65536];
            rustix::fs::llistxattr(path, &mut names)
                .map_err(|e| Error::io("list xattrs", path, e.into()))?
        }
        Err(e) => return Err(Error::io("list xattrs", path, e.into())),
    };
    for name in names[..n].split(|&b| b == 0).filter(|s| !s.is_empty()) {
        let Ok(key) = std::str::from_utf8(name) else {
            continue;
        };
        let mut val = vec![0u8; 65536];
        match rustix::fs::lgetxattr(path, name, &mut val) {
            Ok(len) => {
                val.truncate(len);
                out.insert(key.to_string(), val);
            }
            Err(e) => return Err(Error::io("read xattr", path, e.into())),
        }
    }
    Ok(out)
}

/// Summary of an archived tree.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TreeStats {
    /// Number of entries written.
    pub entries: u64,
    /// Bytes of the tar stream.
    pub tar_bytes: u64,
}

/// Lists a directory's children sorted by name bytes.
pub(crate) fn sorted_children(dir: &Path) -> Result<Vec<(Vec<u8>, PathBuf)>> {
    let mut v: Vec<(Vec<u8>, PathBuf)> = fs::read_dir(dir)
        .ctx("read directory", dir)?
        .map(|e| e.map(|e| (e.file_name().as_bytes().to_vec(), e.path())))
        .collect::<io::Result<_>>()
        .ctx("read directory", dir)?;
    v.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(v)
}

/// Archives the contents of `root` (not `root` itself) into a reproducible tar stream.
pub fn write_tree<W: Write>(root: &Path, opts: &TarOptions, out: W) -> Result<(W, TreeStats)> {
    let mut tw = TarWriter::new(out);
    let mut links: HashMap<(u64, u64), Vec<u8>> = HashMap::new();
    let mut stats = TreeStats::default();
    walk(root, b"", opts, &mut tw, &mut links, &mut stats)?;
    let (out, len) = tw.finish_sized().ctx("write tar", root)?;
    stats.tar_bytes = len;
    Ok((out, stats))
}

fn walk<W: Write>(
    dir: &Path,
    rel: &[u8],
    opts: &TarOptions,
    tw: &mut TarWriter<W>,
    links: &mut HashMap<(u64, u64), Vec<u8>>,
    stats: &mut TreeStats,
) -> Result<()> {
    for (name, path) in sorted_children(dir)? {
        let rel_child = join(rel, &name);
        write_path(&path, &rel_child, opts, tw, links, stats)?;
        if fs::symlink_metadata(&path).ctx("stat", &path)?.is_dir() {
            walk(&path, &rel_child, opts, tw, links, stats)?;
        }
    }
    Ok(())
}

/// Writes one file-system object as an entry (hard links resolved through `links`).
pub(crate) fn write_path<W: Write>(
    path: &Path,
    rel: &[u8],
    opts: &TarOptions,
    tw: &mut TarWriter<W>,
    links: &mut HashMap<(u64, u64), Vec<u8>>,
    stats: &mut TreeStats,
) -> Result<()> {
    let Some(mut entry) = entry_from_fs(path, rel, opts)? else {
        return Ok(());
    };
    stats.entries += 1;
    if entry.kind == EntryKind::File {
        let md = fs::symlink_metadata(path).ctx("stat", path)?;
        if md.nlink() > 1 {
            let key = (md.dev(), md.ino());
            if let Some(first) = links.get(&key) {
                entry.kind = EntryKind::Hardlink(first.clone());
                entry.size = 0;
                return tw.append(&entry, None).ctx("write tar entry for", path);
            }
            links.insert(key, rel.to_vec());
        }
        let mut f = fs::File::open(path).ctx("open", path)?;
        return tw.append(&entry, Some(&mut f)).ctx("archive", path);
    }
    tw.append(&entry, None).map_err(|e| Error::Unsupported {
        path: path.to_path_buf(),
        reason: crate::error::chain(&e),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn entries(tar: &[u8]) -> Vec<(String, u8, u64, Vec<u8>)> {
        let mut a = tar::Archive::new(tar);
        a.entries()
            .unwrap()
            .map(|e| {
                let mut e = e.unwrap();
                let p = String::from_utf8_lossy(&e.path_bytes()).into_owned();
                let t = e.header().entry_type().as_byte();
                let m = e.header().mtime().unwrap();
                let mut d = Vec::new();
                e.read_to_end(&mut d).unwrap();
                (p, t, m, d)
            })
            .collect()
    }

    #[test]
    fn tree_is_sorted_clamped_and_reproducible() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        fs::create_dir_all(r.join("b/sub")).unwrap();
        fs::write(r.join("b/sub/z"), b"zz").unwrap();
        fs::write(r.join("a"), b"aa").unwrap();
        fs::write(r.join("b-c"), b"x").unwrap();
        fs::hard_link(r.join("a"), r.join("c-link")).unwrap();
        std::os::unix::fs::symlink("../a", r.join("b/sym")).unwrap();
        let opts = TarOptions {
            source_date_epoch: Some(1000),
            ..Default::default()
        };
        let (one, stats) = write_tree(r, &opts, Vec::new()).unwrap();
        let (two, _) = write_tree(r, &opts, Vec::new()).unwrap();
        assert_eq!(one, two);
        assert_eq!(stats.tar_bytes, one.len() as u64);
        let got = entries(&one);
        let names: Vec<_> = got.iter().map(|e| e.0.as_str()).collect();
        assert_eq!(
            names,
            ["a", "b/", "b/sub/", "b/sub/z", "b/sym", "b-c", "c-link"]
        );
        assert!(got.iter().all(|e| e.2 == 1000));
        assert_eq!(got[6].1, b'1');
        assert_eq!(got[4].1, b'2');
    }
}
