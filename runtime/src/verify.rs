//! `verify`: a slot's tree re-hashed against the image it should hold, naming every changed, missing or
//! extra entry.
//!
//! The expected tree is the store's flattened view of the image's layers (every chunk verified as it is
//! read); each entry is compared by kind, permission bits, owner (when staging set owners), symlink target,
//! device numbers and, for regular files, size and SHA-256 of the content. A hard link must share the
//! inode of its target. Nothing is followed out of the slot: entries are examined with `lstat`, files are
//! opened with `O_NOFOLLOW`, and the entries below a directory that was replaced are not looked at (the
//! directory itself is reported changed). Times are not compared: staging sets them, nothing reads them.

use crate::error::{IoCtx, NodeError, Result};
use chasi_layers::flatten::FlatView;
use chasi_layers::{ApplyOptions, Digest, EntryKind, Store, TarEntry};
use serde::Serialize;
use sha2::{Digest as _, Sha256};
use std::collections::{BTreeSet, HashSet};
use std::ffi::OsStr;
use std::fs::{self, File, Metadata};
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// One entry that differs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    /// The path inside the slot (`/etc/app.conf`).
    pub path: String,
    /// What differs (`content`, `size 10, expected 12`, `a directory, expected a file`).
    pub what: String,
}

/// What `verify` found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    /// Entries of the image compared.
    pub checked: u64,
    /// Bytes of file content hashed.
    pub bytes: u64,
    /// Entries that differ.
    pub changed: Vec<Change>,
    /// Entries of the image absent from the slot.
    pub missing: Vec<String>,
    /// Entries of the slot the image does not have (a directory is named, not its contents).
    pub extra: Vec<String>,
}

impl VerifyReport {
    /// Whether the slot is exactly the image.
    pub fn is_clean(&self) -> bool {
        self.changed.is_empty() && self.missing.is_empty() && self.extra.is_empty()
    }
}

/// Compares the tree at `dir` with the image made of `layers`, as staged with `opts`.
pub fn compare(
    store: &Store,
    layers: &[Digest],
    dir: &Path,
    opts: &ApplyOptions,
) -> Result<VerifyReport> {
    let mut view = store.flat_view(layers)?;
    let mut report = VerifyReport::default();
    let mut expected: HashSet<Vec<u8>> = HashSet::new();
    let mut skipped: BTreeSet<Vec<u8>> = BTreeSet::new();
    for i in 0..view.entries().len() {
        let entry = view.entries()[i].entry.clone();
        expected.insert(entry.path.clone());
        if !opts.devices && matches!(entry.kind, EntryKind::Char(..) | EntryKind::Block(..)) {
            continue;
        }
        if under_skipped(&skipped, &entry.path) {
            skipped.insert(entry.path.clone());
            continue;
        }
        report.checked += 1;
        let path = host_path(dir, &entry.path);
        let meta = match fs::symlink_metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                report.missing.push(show(&entry.path));
                skipped.insert(entry.path.clone());
                continue;
            }
            Err(e) => return Err(NodeError::io("stat", &path, e)),
        };
        let diff = compare_entry(&mut view, i, &entry, &meta, dir, &path, opts, &mut report)?;
        if let Some(what) = diff {
            if entry.kind == EntryKind::Dir {
                skipped.insert(entry.path.clone());
            }
            report.changed.push(Change {
                path: show(&entry.path),
                what,
            });
        }
    }
    find_extra(dir, Vec::new(), &expected, &mut report.extra)?;
    report.extra.sort();
    Ok(report)
}

fn under_skipped(skipped: &BTreeSet<Vec<u8>>, path: &[u8]) -> bool {
    let mut p = path;
    while let Some(cut) = p.iter().rposition(|&b| b == b'/') {
        p = &p[..cut];
        if skipped.contains(p) {
            return true;
        }
    }
    false
}

#[allow(clippy::too_many_arguments)]
fn compare_entry(
    view: &mut FlatView<'_>,
    i: usize,
    entry: &TarEntry,
    meta: &Metadata,
    dir: &Path,
    path: &Path,
    opts: &ApplyOptions,
    report: &mut VerifyReport,
) -> Result<Option<String>> {
    let ft = meta.file_type();
    let kind_ok = match &entry.kind {
        EntryKind::File | EntryKind::Hardlink(_) => ft.is_file(),
        EntryKind::Dir => ft.is_dir(),
        EntryKind::Symlink(_) => ft.is_symlink(),
        EntryKind::Char(..) => ft.is_char_device(),
        EntryKind::Block(..) => ft.is_block_device(),
        EntryKind::Fifo => ft.is_fifo(),
    };
    if !kind_ok {
        return Ok(Some(format!(
            "{}, expected {}",
            describe_actual(meta),
            describe_kind(&entry.kind)
        )));
    }
    if !ft.is_symlink() && meta.mode() & 0o7777 != entry.mode & 0o7777 {
        return Ok(Some(format!(
            "mode {:o}, expected {:o}",
            meta.mode() & 0o7777,
            entry.mode & 0o7777
        )));
    }
    if opts.chown && (u64::from(meta.uid()) != entry.uid || u64::from(meta.gid()) != entry.gid) {
        return Ok(Some(format!(
            "owner {}:{}, expected {}:{}",
            meta.uid(),
            meta.gid(),
            entry.uid,
            entry.gid
        )));
    }
    match &entry.kind {
        EntryKind::File => {
            if meta.len() != entry.size {
                return Ok(Some(format!(
                    "size {}, expected {}",
                    meta.len(),
                    entry.size
                )));
            }
            let mut want = HashWriter(Sha256::new());
            view.read_file(i, &mut want)?;
            let got = hash_file(path)?;
            report.bytes += entry.size;
            if got[..] != want.0.finalize()[..] {
                return Ok(Some("content".into()));
            }
        }
        EntryKind::Hardlink(target) => {
            let t = host_path(dir, target);
            let same = fs::symlink_metadata(&t)
                .map(|m| m.dev() == meta.dev() && m.ino() == meta.ino())
                .unwrap_or(false);
            if !same {
                return Ok(Some(format!("not a hard link of {}", show(target))));
            }
        }
        EntryKind::Symlink(target) => {
            let got = fs::read_link(path).ctx("read link", path)?;
            if got.as_os_str().as_bytes() != &target[..] {
                return Ok(Some(format!(
                    "link to {}, expected {}",
                    got.display(),
                    String::from_utf8_lossy(target)
                )));
            }
        }
        EntryKind::Char(ma, mi) | EntryKind::Block(ma, mi) => {
            let (gma, gmi) = (
                rustix::fs::major(meta.rdev()),
                rustix::fs::minor(meta.rdev()),
            );
            if (gma, gmi) != (*ma, *mi) {
                return Ok(Some(format!("device {gma}:{gmi}, expected {ma}:{mi}")));
            }
        }
        EntryKind::Dir | EntryKind::Fifo => {}
    }
    Ok(None)
}

struct HashWriter(Sha256);

impl Write for HashWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn hash_file(path: &Path) -> Result<Vec<u8>> {
    let mut f = fs::OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(path)
        .ctx("open", path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = read_some(&mut f, &mut buf, path)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().to_vec())
}

fn read_some(f: &mut File, buf: &mut [u8], path: &Path) -> Result<usize> {
    loop {
        match f.read(buf) {
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(NodeError::io("read", path, e)),
        }
    }
}

/// Every entry under `dir` whose path the image does not have.
fn find_extra(
    root: &Path,
    rel: Vec<u8>,
    expected: &HashSet<Vec<u8>>,
    out: &mut Vec<String>,
) -> Result<()> {
    let here = host_path(root, &rel);
    for e in fs::read_dir(&here).ctx("read directory", &here)? {
        let e = e.ctx("read directory", &here)?;
        let mut child = rel.clone();
        if !child.is_empty() {
            child.push(b'/');
        }
        child.extend_from_slice(e.file_name().as_bytes());
        if !expected.contains(&child) {
            out.push(show(&child));
            continue;
        }
        let ft = e.file_type().ctx("stat", &e.path())?;
        if ft.is_dir() {
            find_extra(root, child, expected, out)?;
        }
    }
    Ok(())
}

fn host_path(dir: &Path, rel: &[u8]) -> PathBuf {
    if rel.is_empty() {
        dir.to_path_buf()
    } else {
        dir.join(OsStr::from_bytes(rel))
    }
}

fn show(rel: &[u8]) -> String {
    format!("/{}", String::from_utf8_lossy(rel))
}

fn describe_kind(k: &EntryKind) -> &'static str {
    match k {
        EntryKind::File | EntryKind::Hardlink(_) => "a file",
        EntryKind::Dir => "a directory",
        EntryKind::Symlink(_) => "a symlink",
        EntryKind::Char(..) => "a character device",
        EntryKind::Block(..) => "a block device",
        EntryKind::Fifo => "a fifo",
    }
}

fn describe_actual(m: &Metadata) -> &'static str {
    let ft = m.file_type();
    if ft.is_file() {
        "a file"
    } else if ft.is_dir() {
        "a directory"
    } else if ft.is_symlink() {
        "a symlink"
    } else if ft.is_char_device() {
        "a character device"
    } else if ft.is_block_device() {
        "a block device"
    } else if ft.is_fifo() {
        "a fifo"
    } else {
        "a socket"
    }
}
