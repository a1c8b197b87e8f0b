//! Safe layer application: unpack a stack of layers into a directory, honouring OCI whiteouts, and never writing
//! outside the target.
//!
//! How escape is prevented (resolve-beneath, done by hand because `openat2(RESOLVE_IN_ROOT)` is Linux ≥ 5.6 only
//! and we also need precise error messages):
//! - entry names are normalized (`./` and empty components dropped); absolute names and any `..` component are
//!   rejected;
//! - the *parent* of every entry is resolved component by component with `lstat`; a symlink met on the way is
//!   followed **as the image sees it**: an absolute target restarts from the target root, `..` pops one level, and a
//!   resolution that would climb above the root is rejected (so `lib -> /usr/lib` works, `evil -> ../../etc` does
//!   not), at most 40 symlinks per name;
//! - the final component is never followed: an existing file, symlink or directory in the way is removed first, and
//!   files are created with `O_CREAT|O_EXCL` (which refuses to open through a symlink);
//! - hard-link targets go through the same resolution, must already exist in the tree and must not be directories;
//!   the link is made to the target itself (`linkat` without `AT_SYMLINK_FOLLOW`).
//!
//! The tree being written is private to the caller while applying, so the checks and the writes are not raced by
//! another writer; the attacker model is the tar content.

use crate::digest::Digest;
use crate::error::{Error, IoCtx, Result};
use crate::store::Store;
use crate::tarwriter::{EntryKind, TarEntry};
use std::collections::{BTreeMap, HashSet, VecDeque};
use std::ffi::OsStr;
use std::fs;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// What the applier may do beyond creating files and directories.
#[derive(Debug, Clone)]
pub struct ApplyOptions {
    /// Set owners from the tar (needs root). Default: true when running as root.
    pub chown: bool,
    /// Create device nodes (needs `CAP_MKNOD`); when false they are skipped and counted. Default: as `chown`.
    pub devices: bool,
    /// Set extended attributes from `SCHILY.xattr.*` records; failures (no permission, unsupported) are counted,
    /// not fatal.
    pub xattrs: bool,
}

impl Default for ApplyOptions {
    fn default() -> Self {
        let root = rustix::process::geteuid().is_root();
        ApplyOptions {
            chown: root,
            devices: root,
            xattrs: true,
        }
    }
}

/// Counters of one apply.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApplyStats {
    /// Entries written.
    pub entries: u64,
    /// Whiteouts and opaque markers honoured.
    pub whiteouts: u64,
    /// Device nodes skipped (no permission / disabled).
    pub skipped_devices: u64,
    /// Extended attributes that could not be set.
    pub xattr_failures: u64,
}

/// Normalizes an entry name: returns its components, or an error for absolute names and `..`.
pub(crate) fn normalize(raw: &[u8]) -> Result<Vec<Vec<u8>>> {
    let show = || String::from_utf8_lossy(raw).into_owned();
    if raw.first() == Some(&b'/') {
        return Err(Error::UnsafeEntry {
            entry: show(),
            reason: "absolute path".into(),
        });
    }
    if raw.contains(&0) {
        return Err(Error::UnsafeEntry {
            entry: show(),
            reason: "NUL byte in name".into(),
        });
    }
    let mut out = Vec::new();
    for c in raw.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => {
                return Err(Error::UnsafeEntry {
                    entry: show(),
                    reason: "path contains '..'".into(),
                })
            }
            c => out.push(c.to_vec()),
        }
    }
    Ok(out)
}

/// Reads the metadata of a tar entry into a [`TarEntry`] (name normalized later by the caller).
pub(crate) fn read_meta<R: Read>(
    e: &mut tar::Entry<'_, R>,
    what: &str,
) -> Result<Option<TarEntry>> {
    let bad = |d: String| Error::BadTar {
        what: what.to_string(),
        detail: d,
    };
    let path = e.path_bytes().into_owned();
    let h = e.header();
    let show = String::from_utf8_lossy(&path).into_owned();
    let link = || -> Result<Vec<u8>> {
        e.link_name_bytes()
            .map(|l| l.into_owned())
            .ok_or_else(|| Error::UnsafeEntry {
                entry: show.clone(),
                reason: "link without target".into(),
            })
    };
    use tar::EntryType as T;
    let kind = match h.entry_type() {
        T::Regular | T::Continuous => EntryKind::File,
        T::Directory => EntryKind::Dir,
        T::Symlink => EntryKind::Symlink(link()?),
        T::Link => EntryKind::Hardlink(link()?),
        T::Char => EntryKind::Char(
            h.device_major().ok().flatten().unwrap_or(0),
            h.device_minor().ok().flatten().unwrap_or(0),
        ),
        T::Block => EntryKind::Block(
            h.device_major().ok().flatten().unwrap_or(0),
            h.device_minor().ok().flatten().unwrap_or(0),
        ),
        T::Fifo => EntryKind::Fifo,
        T::XGlobalHeader => return Ok(None),
        other => {
            return Err(Error::UnsafeEntry {
                entry: show,
                reason: format!("unsupported entry type {:?}", other.as_byte() as char),
            })
        }
    };
    let mut xattrs = BTreeMap::new();
    if let Ok(Some(exts)) = e.pax_extensions() {
        for ext in exts {
            let ext = ext.map_err(|x| bad(format!("bad PAX record in {show}: {x}")))?;
            if let Ok(k) = ext.key() {
                if let Some(name) = k.strip_prefix("SCHILY.xattr.") {
                    xattrs.insert(name.to_string(), ext.value_bytes().to_vec());
                }
            }
        }
    }
    let h = e.header();
    Ok(Some(TarEntry {
        path,
        size: if kind == EntryKind::File { e.size() } else { 0 },
        kind,
        mode: h.mode().unwrap_or(0o644) & 0o7777,
        uid: h.uid().unwrap_or(0),
        gid: h.gid().unwrap_or(0),
        mtime: h.mtime().unwrap_or(0) as i64,
        xattrs,
    }))
}

/// Resolves the directory `comps` (relative to `root`) as the image sees it, creating missing directories when
/// `create` is set. Returns the host path, guaranteed to be `root` or below it.
pub(crate) fn resolve_dir(
    root: &Path,
    comps: &[Vec<u8>],
    create: bool,
    entry: &str,
) -> Result<PathBuf> {
    let unsafe_entry = |reason: String| Error::UnsafeEntry {
        entry: entry.to_string(),
        reason,
    };
    let mut stack: Vec<Vec<u8>> = Vec::new();
    let mut queue: VecDeque<Vec<u8>> = comps.iter().cloned().collect();
    let mut hops = 0;
    while let Some(c) = queue.pop_front() {
        match &c[..] {
            b"" | b"." => continue,
            b".." => {
                if stack.pop().is_none() {
                    return Err(unsafe_entry(
                        "a symlink in its path points outside the target".into(),
                    ));
                }
                continue;
            }
            _ => {}
        }
        let host = host_path(root, &stack).join(OsStr::from_bytes(&c));
        match fs::symlink_metadata(&host) {
            Ok(md) if md.is_dir() => stack.push(c),
            Ok(md) if md.file_type().is_symlink() => {
                hops += 1;
                if hops > 40 {
                    return Err(unsafe_entry("too many levels of symbolic links".into()));
                }
                let target = fs::read_link(&host).ctx("readlink", &host)?;
                let t = target.as_os_str().as_bytes();
                if t.first() == Some(&b'/') {
                    stack.clear();
                }
                let mut rest: VecDeque<Vec<u8>> =
                    t.split(|&b| b == b'/').map(|s| s.to_vec()).collect();
                rest.extend(queue.drain(..));
                queue = rest;
            }
            Ok(_) => {
                return Err(unsafe_entry(format!(
                    "parent {} is not a directory",
                    host.display()
                )));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound && create => {
                fs::create_dir(&host).ctx("create directory", &host)?;
                stack.push(c);
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(unsafe_entry(format!("{} does not exist", host.display())));
            }
            Err(e) => return Err(Error::io("stat", &host, e)),
        }
    }
    Ok(host_path(root, &stack))
}

fn host_path(root: &Path, stack: &[Vec<u8>]) -> PathBuf {
    let mut p = root.to_path_buf();
    for c in stack {
        p.push(OsStr::from_bytes(c));
    }
    p
}

fn remove_any(p: &Path) -> Result<()> {
    match fs::symlink_metadata(p) {
        Ok(md) if md.is_dir() => fs::remove_dir_all(p).ctx("remove", p),
        Ok(_) => fs::remove_file(p).ctx("remove", p),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io("stat", p, e)),
    }
}

/// Applies one uncompressed layer tar onto `root` (which must exist).
pub fn apply_layer(
    tar: impl Read,
    root: &Path,
    opts: &ApplyOptions,
    what: &str,
) -> Result<ApplyStats> {
    let mut stats = ApplyStats::default();
    let mut archive = tar::Archive::new(tar);
    let mut created: HashSet<PathBuf> = HashSet::new();
    let mut dir_times: Vec<(PathBuf, i64)> = Vec::new();
    let entries = archive.entries().map_err(|e| Error::BadTar {
        what: what.into(),
        detail: crate::error::chain(&e),
    })?;
    for e in entries {
        let mut e = e.map_err(|e| Error::BadTar {
            what: what.into(),
            detail: crate::error::chain(&e),
        })?;
        let Some(meta) = read_meta(&mut e, what)? else {
            continue;
        };
        let show = String::from_utf8_lossy(&meta.path).into_owned();
        let comps = normalize(&meta.path)?;
        let Some((name, parent)) = comps.split_last() else {
            continue;
        };
        let dir = resolve_dir(root, parent, true, &show)?;
        if let Some(target) = name.strip_prefix(b".wh.") {
            stats.whiteouts += 1;
            if target == b".wh..opq" {
                for ent in fs::read_dir(&dir).ctx("read directory", &dir)? {
                    let p = ent.ctx("read directory", &dir)?.path();
                    if !created.contains(&p) {
                        remove_any(&p)?;
                    }
                }
            } else {
                if target.is_empty() || target == b"." || target == b".." {
                    return Err(Error::UnsafeEntry {
                        entry: show,
                        reason: "invalid whiteout name".into(),
                    });
                }
                remove_any(&dir.join(OsStr::from_bytes(target)))?;
            }
            continue;
        }
        let dest = dir.join(OsStr::from_bytes(name));
        let existing = fs::symlink_metadata(&dest).ok();
        if !(meta.kind == EntryKind::Dir && existing.as_ref().is_some_and(|m| m.is_dir()))
            && existing.is_some()
        {
            remove_any(&dest)?;
        }
        match &meta.kind {
            EntryKind::Dir => {
                if existing.as_ref().is_none_or(|m| !m.is_dir()) {
                    fs::create_dir(&dest).ctx("create directory", &dest)?;
                }
            }
            EntryKind::File => {
                let mut f = fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&dest)
                    .ctx("create", &dest)?;
                io::copy(&mut e, &mut f).map_err(|err| Error::BadTar {
                    what: what.into(),
                    detail: format!("{show}: {}", crate::error::chain(&err)),
                })?;
            }
            EntryKind::Symlink(t) => {
                std::os::unix::fs::symlink(OsStr::from_bytes(t), &dest)
                    .ctx("create symlink", &dest)?;
            }
            EntryKind::Hardlink(t) => {
                let tc = normalize(t)?;
                let Some((tname, tparent)) = tc.split_last() else {
                    return Err(Error::UnsafeEntry {
                        entry: show,
                        reason: "hard link to the root".into(),
                    });
                };
                let tdir = resolve_dir(root, tparent, false, &show)?;
                let src = tdir.join(OsStr::from_bytes(tname));
                match fs::symlink_metadata(&src) {
                    Ok(m) if m.is_dir() => {
                        return Err(Error::UnsafeEntry {
                            entry: show,
                            reason: "hard link to a directory".into(),
                        })
                    }
                    Ok(_) => {}
                    Err(_) => {
                        return Err(Error::UnsafeEntry {
                            entry: show,
                            reason: format!(
                                "hard link target {} does not exist",
                                String::from_utf8_lossy(t)
                            ),
                        })
                    }
                }
                fs::hard_link(&src, &dest).ctx("create hard link", &dest)?;
                created.insert(dest);
                stats.entries += 1;
                continue;
            }
            EntryKind::Char(..) | EntryKind::Block(..) | EntryKind::Fifo => {
                if !make_special(&dest, &meta, opts)? {
                    stats.skipped_devices += 1;
                    continue;
                }
            }
        }
        set_meta(&dest, &meta, opts, &mut stats)?;
        if meta.kind == EntryKind::Dir {
            dir_times.push((dest.clone(), meta.mtime));
        }
        created.insert(dest);
        stats.entries += 1;
    }
    // Directory times last, deepest first, since writing children changes them.
    dir_times.sort_by(|a, b| b.0.cmp(&a.0));
    for (p, t) in dir_times {
        set_mtime(&p, t)?;
    }
    Ok(stats)
}

fn make_special(dest: &Path, meta: &TarEntry, opts: &ApplyOptions) -> Result<bool> {
    use rustix::fs::{FileType, Mode};
    let (ft, dev) = match meta.kind {
        EntryKind::Char(a, b) => (FileType::CharacterDevice, rustix::fs::makedev(a, b)),
        EntryKind::Block(a, b) => (FileType::BlockDevice, rustix::fs::makedev(a, b)),
        _ => (FileType::Fifo, 0),
    };
    if ft != FileType::Fifo && !opts.devices {
        return Ok(false);
    }
    match rustix::fs::mknodat(
        rustix::fs::CWD,
        dest,
        ft,
        Mode::from_raw_mode(meta.mode & 0o777),
        dev,
    ) {
        Ok(()) => Ok(true),
        Err(e) if e == rustix::io::Errno::PERM && ft != FileType::Fifo => Ok(false),
        Err(e) => Err(Error::io("create device node", dest, e.into())),
    }
}

fn set_mtime(p: &Path, t: i64) -> Result<()> {
    use rustix::fs::{AtFlags, Timespec, Timestamps};
    let ts = Timespec {
        tv_sec: t,
        tv_nsec: 0,
    };
    rustix::fs::utimensat(
        rustix::fs::CWD,
        p,
        &Timestamps {
            last_access: ts,
            last_modification: ts,
        },
        AtFlags::SYMLINK_NOFOLLOW,
    )
    .map_err(|e| Error::io("set times", p, e.into()))
}

fn set_meta(p: &Path, meta: &TarEntry, opts: &ApplyOptions, stats: &mut ApplyStats) -> Result<()> {
    let is_link = matches!(meta.kind, EntryKind::Symlink(_));
    if opts.chown {
        std::os::unix::fs::lchown(p, Some(meta.uid as u32), Some(meta.gid as u32))
            .ctx("chown", p)?;
    }
    if !is_link {
        use std::os::unix::fs::PermissionsExt;
        // After chown, which clears set-id bits.
        fs::set_permissions(p, fs::Permissions::from_mode(meta.mode & 0o7777)).ctx("chmod", p)?;
    }
    if opts.xattrs {
        for (k, v) in &meta.xattrs {
            if rustix::fs::lsetxattr(p, k.as_str(), v, rustix::fs::XattrFlags::empty()).is_err() {
                stats.xattr_failures += 1;
            }
        }
    }
    if meta.kind != EntryKind::Dir {
        set_mtime(p, meta.mtime)?;
    }
    Ok(())
}

impl Store {
    /// Unpacks a stack of layers (bottom first, by DiffID) into `dir`, creating it if needed. Every chunk read is
    /// verified; whiteouts are honoured; unsafe entries abort with [`Error::UnsafeEntry`].
    pub fn unpack(&self, layers: &[Digest], dir: &Path, opts: &ApplyOptions) -> Result<ApplyStats> {
        fs::create_dir_all(dir).ctx("create directory", dir)?;
        let mut total = ApplyStats::default();
        for l in layers {
            let r = self.open_layer(l)?;
            let s = apply_layer(
                io::BufReader::with_capacity(1 << 20, r),
                dir,
                opts,
                &l.to_string(),
            )
            .map_err(|e| match e {
                Error::BadTar { what, detail }
                    if detail.contains("reassembles") || detail.contains("corrupt") =>
                {
                    Error::Corrupt {
                        digest: *l,
                        path: self.layer_path(l),
                        detail: format!("{what}: {detail}"),
                    }
                }
                e => e,
            })?;
            total.entries += s.entries;
            total.whiteouts += s.whiteouts;
            total.skipped_devices += s.skipped_devices;
            total.xattr_failures += s.xattr_failures;
        }
        Ok(total)
    }
}
