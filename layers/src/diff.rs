//! Tree diff: the layer that turns an old directory tree into a new one (for deltas; RUN steps take the overlay's upper directory instead).
//!
//! Added and changed entries are written in full with the reproducible writer; deleted entries become OCI
//! whiteouts (`.wh.<name>`). A directory whose old children are all gone or replaced by another kind of file is
//! emitted as an opaque directory (`.wh..wh..opq`) followed by its complete new content, which is smaller and
//! states the intent. Unchanged entries are not written; a directory header is written only when its own metadata
//! changed (or it is new). Comparison uses the same [`TarOptions`] as the writer (so an mtime change hidden by
//! `SOURCE_DATE_EPOCH` clamping is no change), and file contents are compared byte by byte.
//!
//! Within a directory, whiteouts come first (sorted by the deleted name), then the changed entries in writer order.

use crate::error::{IoCtx, Result};
use crate::store::{LayerInfo, Store};
use crate::tarwriter::{
    self, entry_from_fs, join, sorted_children, EntryKind, TarEntry, TarOptions, TarWriter,
    TreeStats,
};
use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// What a diff contains.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DiffStats {
    /// Entries new in the new tree (counting every entry under a new directory).
    pub added: u64,
    /// Entries present in both trees but different.
    pub changed: u64,
    /// Whiteouts written.
    pub deleted: u64,
    /// Opaque directory markers written.
    pub opaque: u64,
    /// Size of the tar stream.
    pub tar_bytes: u64,
}

struct Ctx<'a, W: Write> {
    opts: &'a TarOptions,
    tw: TarWriter<W>,
    links: HashMap<(u64, u64), Vec<u8>>,
    stats: DiffStats,
    tree: TreeStats,
}

/// Writes the layer turning `old` into `new` as a tar stream to `out`.
pub fn diff_trees<W: Write>(
    old: &Path,
    new: &Path,
    opts: &TarOptions,
    out: W,
) -> Result<(W, DiffStats)> {
    let mut cx = Ctx {
        opts,
        tw: TarWriter::new(out),
        links: HashMap::new(),
        stats: DiffStats::default(),
        tree: TreeStats::default(),
    };
    diff_dir(&mut cx, Some(old), new, b"")?;
    cx.stats.tar_bytes = cx.tw.written() + 1024;
    let out = cx.tw.finish().ctx("write tar", new)?;
    Ok((out, cx.stats))
}

fn same_meta(a: &TarEntry, b: &TarEntry) -> bool {
    a.kind == b.kind
        && a.mode == b.mode
        && a.uid == b.uid
        && a.gid == b.gid
        && a.mtime == b.mtime
        && a.size == b.size
        && a.xattrs == b.xattrs
}

fn same_content(a: &Path, b: &Path) -> Result<bool> {
    let (ma, mb) = (
        fs::symlink_metadata(a).ctx("stat", a)?,
        fs::symlink_metadata(b).ctx("stat", b)?,
    );
    if ma.dev() == mb.dev() && ma.ino() == mb.ino() {
        return Ok(true);
    }
    let mut fa = io::BufReader::with_capacity(1 << 16, fs::File::open(a).ctx("open", a)?);
    let mut fb = io::BufReader::with_capacity(1 << 16, fs::File::open(b).ctx("open", b)?);
    let (mut ba, mut bb) = (vec![0u8; 1 << 16], vec![0u8; 1 << 16]);
    loop {
        let na = read_full(&mut fa, &mut ba).ctx("read", a)?;
        let nb = read_full(&mut fb, &mut bb).ctx("read", b)?;
        if na != nb || ba[..na] != bb[..nb] {
            return Ok(false);
        }
        if na == 0 {
            return Ok(true);
        }
    }
}

fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

fn kind_tag(k: &EntryKind) -> u8 {
    match k {
        EntryKind::File | EntryKind::Hardlink(_) => 0,
        EntryKind::Dir => 1,
        EntryKind::Symlink(_) => 2,
        EntryKind::Char(..) => 3,
        EntryKind::Block(..) => 4,
        EntryKind::Fifo => 5,
    }
}

fn add_tree<W: Write>(cx: &mut Ctx<'_, W>, path: &Path, rel: &[u8]) -> Result<()> {
    tarwriter::write_path(path, rel, cx.opts, &mut cx.tw, &mut cx.links, &mut cx.tree)?;
    cx.stats.added += 1;
    if fs::symlink_metadata(path).ctx("stat", path)?.is_dir() {
        for (name, p) in sorted_children(path)? {
            add_tree(cx, &p, &join(rel, &name))?;
        }
    }
    Ok(())
}

fn diff_dir<W: Write>(
    cx: &mut Ctx<'_, W>,
    old: Option<&Path>,
    new: &Path,
    rel: &[u8],
) -> Result<()> {
    let new_children = sorted_children(new)?;
    let old_children = match old {
        Some(o) => sorted_children(o)?,
        None => Vec::new(),
    };
    let new_names: BTreeSet<&[u8]> = new_children.iter().map(|(n, _)| &n[..]).collect();
    let removed: Vec<&Vec<u8>> = old_children
        .iter()
        .map(|(n, _)| n)
        .filter(|n| !new_names.contains(&n[..]))
        .collect();
    let old_map: HashMap<&[u8], &Path> = old_children
        .iter()
        .map(|(n, p)| (&n[..], p.as_path()))
        .collect();
    let mtime = cx
        .opts
        .clamp(fs::symlink_metadata(new).ctx("stat", new)?.mtime());

    // Opaque when something was removed and no old child survives with the same kind.
    let survivors = new_children.iter().filter(|(n, p)| {
        old_map.get(&n[..]).is_some_and(|op| {
            let a = fs::symlink_metadata(op).map(|m| m.file_type());
            let b = fs::symlink_metadata(p).map(|m| m.file_type());
            matches!((a, b), (Ok(a), Ok(b)) if a == b)
        })
    });
    if !removed.is_empty() && survivors.count() == 0 && !rel.is_empty() {
        cx.tw
            .append(&TarEntry::opaque(rel, mtime), None)
            .ctx("write tar", new)?;
        cx.stats.opaque += 1;
        for (name, p) in &new_children {
            add_tree(cx, p, &join(rel, name))?;
        }
        return Ok(());
    }
    for name in removed {
        cx.tw
            .append(&TarEntry::whiteout(rel, name, mtime), None)
            .ctx("write tar", new)?;
        cx.stats.deleted += 1;
    }
    for (name, p) in &new_children {
        let crel = join(rel, name);
        let Some(op) = old_map.get(&name[..]) else {
            add_tree(cx, p, &crel)?;
            continue;
        };
        let (Some(ne), Some(oe)) = (
            entry_from_fs(p, &crel, cx.opts)?,
            entry_from_fs(op, &crel, cx.opts)?,
        ) else {
            continue;
        };
        if kind_tag(&ne.kind) != kind_tag(&oe.kind) {
            cx.stats.changed += 1;
            add_tree(cx, p, &crel)?;
            continue;
        }
        if ne.kind == EntryKind::Dir {
            if !same_meta(&ne, &oe) {
                cx.tw.append(&ne, None).ctx("write tar", p)?;
                cx.stats.changed += 1;
            }
            diff_dir(cx, Some(op), p, &crel)?;
            continue;
        }
        let changed = !same_meta(&ne, &oe) || (ne.kind == EntryKind::File && !same_content(op, p)?);
        if changed {
            cx.stats.changed += 1;
            tarwriter::write_path(p, &crel, cx.opts, &mut cx.tw, &mut cx.links, &mut cx.tree)?;
        }
    }
    Ok(())
}

impl Store {
    /// Computes the diff layer from `old` to `new` and ingests it (streamed, never fully in memory).
    pub fn ingest_diff(
        &self,
        old: &Path,
        new: &Path,
        opts: &TarOptions,
    ) -> Result<(LayerInfo, DiffStats)> {
        let (writer, mut reader) = crate::channel::channel(8);
        std::thread::scope(|s| {
            let producer = s.spawn(move || {
                let w = io::BufWriter::with_capacity(1 << 20, writer);
                diff_trees(old, new, opts, w).map(|(_, st)| st)
            });
            let res = self.ingest_tar(&mut reader);
            drop(reader);
            let stats = producer.join().unwrap_or_else(|_| {
                Err(crate::error::Error::Unsupported {
                    path: new.into(),
                    reason: "diff writer panicked".into(),
                })
            })?;
            Ok((res?, stats))
        })
    }
}
