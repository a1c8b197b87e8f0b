//! Safe layer application: unpack a stack of layers into a directory, honouring OCI whiteouts, and never writing
//! outside the target.
//!
//! How escape is prevented (resolve-beneath, done by hand because `openat2(RESOLVE_IN_ROOT)` is Linux ≥ 5.6 only
//! and we also need precise error messages):
//! - entry names are normalized (`./` and empty components dropped); absolute names, any `..` component and names
//!   longer than `PATH_MAX` are rejected;
//! - every operation goes through directory handles opened beneath a handle on the root: the *parent* of an entry
//!   is resolved component by component with `openat(O_DIRECTORY|O_NOFOLLOW)`; a symlink met on the way is read
//!   and followed **as the image sees it**: an absolute target restarts from the root handle, `..` steps back one
//!   level of the resolved path, and a resolution that would climb above the root is rejected (so
//!   `lib -> /usr/lib` works, `evil -> ../../etc` does not), at most 40 symlinks per name;
//! - the final component is never followed: an existing entry in the way is removed first (`unlinkat`, directory
//!   trees through handles), files are created with `O_CREAT|O_EXCL|O_NOFOLLOW`, and owner, mode, xattrs and times
//!   are set on the open handle or with `AT_SYMLINK_NOFOLLOW` relative to the parent's handle — never by a path;
//! - directory times are set last (children change them), each directory reopened along its *physical* path with
//!   `O_NOFOLLOW` at every step: one that a later entry replaced with a symlink (`x/`, `x/etc/`, then `x -> /`) is
//!   skipped, so the deferred pass cannot be redirected outside the root;
//! - hard-link targets go through the same resolution, must already exist in the tree and must not be directories;
//!   the link is made to the target itself (`linkat` without `AT_SYMLINK_FOLLOW`).
//!
//! Messages name paths inside the image (`/x/etc`); I/O errors name the host path of the physical entry, which is
//! always the root or below it. The tree being written is private to the caller while applying, so the checks and
//! the writes are not raced by another writer; the attacker model is the tar content.

use crate::digest::Digest;
use crate::entry::{self, EntryOp, LinkTarget};
use crate::error::{Error, IoCtx, Result};
use crate::store::Store;
use crate::tarframe::PaxRecords;
use crate::tarwriter::{EntryKind, TarEntry};
use rustix::fs::{
    chmodat, chownat, fchmod, fchown, fsetxattr, futimens, linkat, lsetxattr, mkdirat, mknodat,
    openat, readlinkat, statat, symlinkat, unlinkat, utimensat, AtFlags, Dir, FileType, Gid, Mode,
    OFlags, Timespec, Timestamps, Uid, XattrFlags, CWD,
};
use rustix::io::Errno;
use std::collections::{BTreeMap, HashSet, VecDeque};
use std::ffi::OsStr;
use std::fs;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;

pub use crate::entry::MAX_NAME;

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
    /// Apply only these subtrees (paths relative to the root, `/`-separated, such as
    /// `manifests` or `application/apps`) and the directories leading to them; empty: everything.
    /// A hard link below them whose target is outside is skipped and counted in
    /// [`ApplyStats::outside_links`] (its data was not applied).
    pub only: Vec<String>,
}

impl Default for ApplyOptions {
    fn default() -> Self {
        let root = rustix::process::geteuid().is_root();
        ApplyOptions {
            chown: root,
            devices: root,
            xattrs: true,
            only: Vec::new(),
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
    /// Hard links skipped because their target lies outside [`ApplyOptions::only`].
    pub outside_links: u64,
}

/// Reads the metadata of a tar entry into a [`TarEntry`] (name normalized later by the caller).
pub(crate) fn read_meta<R: Read>(
    e: &mut tar::Entry<'_, R>,
    pax: &PaxRecords,
    what: &str,
) -> Result<Option<TarEntry>> {
    let bad = |d: String| Error::BadTar {
        what: what.to_string(),
        detail: d,
    };
    // PAX records as POSIX frames them (values may hold newlines); they win over the header.
    let records = pax.take_for(e.raw_header_position());
    let record = |key: &[u8]| {
        records
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
    };
    let number = |key: &[u8], show: &str| -> Result<Option<u64>> {
        let Some(v) = record(key) else {
            return Ok(None);
        };
        // `mtime` may have a fraction; whole seconds are kept.
        let whole = v.split(|&b| b == b'.').next().unwrap_or_default();
        std::str::from_utf8(whole)
            .ok()
            .and_then(|s| s.parse().ok())
            .map(Some)
            .ok_or_else(|| {
                bad(format!(
                    "bad PAX {} {:?} in {show}",
                    String::from_utf8_lossy(key),
                    String::from_utf8_lossy(&v)
                ))
            })
    };
    let path = record(b"path").unwrap_or_else(|| e.path_bytes().into_owned());
    let h = e.header();
    let show = String::from_utf8_lossy(&path).into_owned();
    let link_record = record(b"linkpath");
    let link = || -> Result<Vec<u8>> {
        link_record
            .clone()
            .or_else(|| e.link_name_bytes().map(|l| l.into_owned()))
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
    for (k, v) in &records {
        if let Some(name) = k.strip_prefix(b"SCHILY.xattr.") {
            let name = String::from_utf8(name.to_vec()).map_err(|_| {
                bad(format!(
                    "the xattr name {:?} of {show} is not UTF-8",
                    String::from_utf8_lossy(name)
                ))
            })?;
            xattrs.insert(name, v.clone());
        }
    }
    let uid = number(b"uid", &show)?;
    let gid = number(b"gid", &show)?;
    let mtime = number(b"mtime", &show)?;
    let h = e.header();
    Ok(Some(TarEntry {
        path,
        size: if kind == EntryKind::File { e.size() } else { 0 },
        kind,
        mode: h.mode().unwrap_or(0o644) & 0o7777,
        uid: uid.unwrap_or(h.uid().unwrap_or(0)),
        gid: gid.unwrap_or(h.gid().unwrap_or(0)),
        mtime: mtime.map_or(h.mtime().unwrap_or(0) as i64, |m| {
            i64::try_from(m).unwrap_or(i64::MAX)
        }),
        xattrs,
    }))
}

/// A path inside the tree being written, as components below the root (no `.`, `..` or symlinks: a physical path).
type Key = Vec<Vec<u8>>;

/// How every directory of the tree is opened: never through a symlink, never inherited by children.
const DIR_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);

/// How a path inside the image is shown in messages: `/a/b` (never a host path).
pub(crate) fn shown(key: &[Vec<u8>]) -> String {
    if key.is_empty() {
        return "/".into();
    }
    key.iter()
        .map(|c| format!("/{}", String::from_utf8_lossy(c)))
        .collect()
}

fn child(key: &[Vec<u8>], name: &[u8]) -> Key {
    let mut k = key.to_vec();
    k.push(name.to_vec());
    k
}

/// True for the errors that mean "this path is no longer a directory at that place".
fn is_gone(e: Errno) -> bool {
    e == Errno::NOENT || e == Errno::NOTDIR || e == Errno::LOOP
}

fn is_dir(st: &rustix::fs::Stat) -> bool {
    FileType::from_raw_mode(st.st_mode) == FileType::Directory
}

/// A directory of the tree, opened beneath the root, and its physical path.
struct Located {
    fd: OwnedFd,
    key: Key,
}

/// The tree being written: a handle on its root and the last parent directory resolved.
struct Tree<'a> {
    root: OwnedFd,
    root_path: &'a Path,
    /// The entry names' parent components last resolved, and what they resolved to (entries come grouped by
    /// directory); dropped whenever anything is removed, since a removal can change any resolution.
    cache: Option<(Key, Rc<Located>)>,
}

impl<'a> Tree<'a> {
    fn open(root_path: &'a Path) -> Result<Self> {
        let root = openat(
            CWD,
            root_path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| Error::io("open directory", root_path, e.into()))?;
        Ok(Tree {
            root,
            root_path,
            cache: None,
        })
    }

    /// An I/O error on a physical path: the host path shown is always the root or below it.
    fn io(&self, op: &'static str, key: &[Vec<u8>], e: Errno) -> Error {
        let mut p = self.root_path.to_path_buf();
        for c in key {
            p.push(OsStr::from_bytes(c));
        }
        Error::io(op, p, e.into())
    }

    /// Opens the directory at a physical path, following no symlink at all.
    fn reopen(&self, key: &[Vec<u8>]) -> rustix::io::Result<OwnedFd> {
        let mut fd = openat(&self.root, c".", DIR_FLAGS, Mode::empty())?;
        for c in key {
            fd = openat(&fd, &c[..], DIR_FLAGS, Mode::empty())?;
        }
        Ok(fd)
    }

    /// The parent directory of an entry (cached while entries stay in one directory), created if missing.
    fn parent(&mut self, comps: &[Vec<u8>], entry: &str) -> Result<Rc<Located>> {
        if let Some((c, dir)) = &self.cache {
            if c[..] == comps[..] {
                return Ok(dir.clone());
            }
        }
        let dir = Rc::new(self.resolve(comps, true, entry)?);
        self.cache = Some((comps.to_vec(), dir.clone()));
        Ok(dir)
    }

    fn forget(&mut self) {
        self.cache = None;
    }

    /// Resolves the directory `comps` as the image sees it, one `openat(O_NOFOLLOW)` per component, creating
    /// missing directories when `create` is set. A symlink is read and its target walked from the directory holding
    /// it (or from the root when absolute); a walk that would climb above the root is refused.
    fn resolve(&self, comps: &[Vec<u8>], create: bool, entry: &str) -> Result<Located> {
        let unsafe_entry = |reason: String| Error::UnsafeEntry {
            entry: entry.to_string(),
            reason,
        };
        let mut key: Key = Vec::new();
        let mut fd = self.reopen(&key).map_err(|e| self.io("open", &key, e))?;
        let mut queue: VecDeque<Vec<u8>> = comps.iter().cloned().collect();
        let mut hops = 0;
        let mut via = String::new();
        while let Some(c) = queue.pop_front() {
            match &c[..] {
                b"" | b"." => continue,
                b".." => {
                    if key.pop().is_none() {
                        return Err(unsafe_entry(format!(
                            "the symbolic link {via} in its path points outside the target"
                        )));
                    }
                    fd = self.reopen(&key).map_err(|e| self.io("open", &key, e))?;
                    continue;
                }
                _ => {}
            }
            let here = child(&key, &c);
            match statat(&fd, &c[..], AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) if is_dir(&st) => {
                    fd = openat(&fd, &c[..], DIR_FLAGS, Mode::empty())
                        .map_err(|e| self.io("open directory", &here, e))?;
                    key = here;
                }
                Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Symlink => {
                    hops += 1;
                    if hops > 40 {
                        return Err(unsafe_entry("too many levels of symbolic links".into()));
                    }
                    let target = readlinkat(&fd, &c[..], Vec::new())
                        .map_err(|e| self.io("readlink", &here, e))?
                        .into_bytes();
                    via = format!("{} -> {}", shown(&here), String::from_utf8_lossy(&target));
                    if target.first() == Some(&b'/') {
                        key.clear();
                        fd = self.reopen(&key).map_err(|e| self.io("open", &key, e))?;
                    }
                    let mut rest: VecDeque<Vec<u8>> =
                        target.split(|&b| b == b'/').map(<[u8]>::to_vec).collect();
                    rest.extend(queue.drain(..));
                    queue = rest;
                }
                Ok(_) => {
                    return Err(unsafe_entry(format!(
                        "parent {} is not a directory",
                        shown(&here)
                    )))
                }
                Err(Errno::NOENT) if create => {
                    mkdirat(&fd, &c[..], Mode::from_raw_mode(0o755))
                        .map_err(|e| self.io("create directory", &here, e))?;
                    fd = openat(&fd, &c[..], DIR_FLAGS, Mode::empty())
                        .map_err(|e| self.io("open directory", &here, e))?;
                    key = here;
                }
                Err(Errno::NOENT) => {
                    return Err(unsafe_entry(format!("{} does not exist", shown(&here))))
                }
                Err(e) => return Err(self.io("stat", &here, e)),
            }
        }
        Ok(Located { fd, key })
    }
}

/// Removes whatever is at `name` in `dir` (a directory with everything below it); absent is fine.
fn remove_at(dir: BorrowedFd<'_>, name: &[u8]) -> rustix::io::Result<()> {
    match statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) if is_dir(&st) => remove_tree(dir, name),
        Ok(_) => unlinkat(dir, name, AtFlags::empty()),
        Err(Errno::NOENT) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Removes a directory tree through handles, following no symlink and without recursion (the depth is the
/// archive's choice): empty the deepest directory reached, step back up with `..`, repeat.
fn remove_tree(parent: BorrowedFd<'_>, name: &[u8]) -> rustix::io::Result<()> {
    let mut names = vec![name.to_vec()];
    let mut fd = openat(parent, name, DIR_FLAGS, Mode::empty())?;
    loop {
        if let Some(sub) = unlink_files(&fd)? {
            fd = openat(&fd, &sub[..], DIR_FLAGS, Mode::empty())?;
            names.push(sub);
            continue;
        }
        let Some(done) = names.pop() else {
            return Ok(());
        };
        if names.is_empty() {
            return unlinkat(parent, &done[..], AtFlags::REMOVEDIR);
        }
        fd = openat(&fd, c"..", DIR_FLAGS, Mode::empty())?;
        unlinkat(&fd, &done[..], AtFlags::REMOVEDIR)?;
    }
}

/// Unlinks every non-directory in a directory; returns the name of a subdirectory if one is left.
fn unlink_files(dir: &OwnedFd) -> rustix::io::Result<Option<Vec<u8>>> {
    for name in list_names(dir)? {
        let sub = match statat(dir, &name[..], AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => is_dir(&st),
            Err(Errno::NOENT) => continue,
            Err(e) => return Err(e),
        };
        if sub {
            return Ok(Some(name));
        }
        unlinkat(dir, &name[..], AtFlags::empty())?;
    }
    Ok(None)
}

/// The names in a directory, without `.` and `..`.
fn list_names(dir: &OwnedFd) -> rustix::io::Result<Vec<Vec<u8>>> {
    let mut out = Vec::new();
    for ent in Dir::read_from(dir)? {
        let name = ent?.file_name().to_bytes().to_vec();
        if name != b"." && name != b".." {
            out.push(name);
        }
    }
    Ok(out)
}

/// What metadata is set on: an open handle (files, directories) or a name in its directory (symlinks, special
/// files, which are not opened).
enum Made {
    Open(OwnedFd),
    Named,
}

/// One layer being applied.
struct Applier<'a> {
    tree: Tree<'a>,
    /// [`ApplyOptions::only`] as path components.
    only: Vec<Key>,
    opts: &'a ApplyOptions,
    what: &'a str,
    stats: ApplyStats,
    /// Physical paths written by this layer (an opaque marker later in the layer must not remove them).
    created: HashSet<Key>,
    /// Directory mtimes, set last since writing children changes them.
    dir_times: Vec<(Key, i64)>,
}

impl Applier<'_> {
    /// Whether `comps` (an entry's path) is inside one of [`ApplyOptions::only`]'s subtrees,
    /// or (`leading`) a directory on the way to one.
    fn wanted(&self, comps: &[Vec<u8>], leading: bool) -> bool {
        self.only.is_empty()
            || self.only.iter().any(|p| {
                comps.starts_with(p) || (leading && p.starts_with(comps) && comps.len() < p.len())
            })
    }

    fn entry(&mut self, meta: &TarEntry, data: &mut dyn Read) -> Result<()> {
        let show = String::from_utf8_lossy(&meta.path).into_owned();
        let op = entry::classify(&meta.path, &show)?;
        if !self.only.is_empty() {
            let keep = match &op {
                EntryOp::Root => true,
                // An opaque directory on the way down hides what lower layers left in it.
                EntryOp::Opaque { parent } => self.wanted(parent, true),
                EntryOp::Whiteout { parent, name } => self.wanted(&child(parent, name), true),
                EntryOp::Put { parent, name } => {
                    let full = child(parent, name);
                    self.wanted(&full, meta.kind == EntryKind::Dir)
                }
            };
            if !keep {
                return Ok(());
            }
            if let EntryKind::Hardlink(t) = &meta.kind {
                let (tp, tn) = entry::hard_link_target(t, &show)?;
                if !self.wanted(&child(&tp, &tn), false) {
                    self.stats.outside_links += 1;
                    return Ok(());
                }
            }
        }
        let (parent, name) = match op {
            EntryOp::Root => return Ok(()),
            EntryOp::Opaque { parent } => {
                let dir = self.tree.parent(&parent, &show)?;
                return self.opaque(&dir);
            }
            EntryOp::Whiteout { parent, name } => {
                let dir = self.tree.parent(&parent, &show)?;
                return self.whiteout(&dir, &name);
            }
            EntryOp::Put { parent, name } => (parent, name),
        };
        let name = &name[..];
        let dir = self.tree.parent(&parent, &show)?;
        let key = child(&dir.key, name);
        let keep_dir = self.clear_way(&dir, name, &key, meta.kind == EntryKind::Dir)?;
        let made = match &meta.kind {
            EntryKind::Dir => self.make_dir(&dir, name, &key, keep_dir)?,
            EntryKind::File => self.make_file(&dir, name, &key, data, &show)?,
            EntryKind::Symlink(t) => {
                symlinkat(&t[..], &dir.fd, name)
                    .map_err(|e| self.tree.io("create symlink", &key, e))?;
                Made::Named
            }
            EntryKind::Hardlink(t) => {
                self.hard_link(&dir, name, &key, t, &show)?;
                self.created.insert(key);
                self.stats.entries += 1;
                return Ok(());
            }
            EntryKind::Char(..) | EntryKind::Block(..) | EntryKind::Fifo => {
                if !self.make_special(&dir, name, &key, meta)? {
                    self.stats.skipped_devices += 1;
                    return Ok(());
                }
                Made::Named
            }
        };
        self.set_meta(&dir, name, &key, &made, meta, &show)?;
        if meta.kind == EntryKind::Dir {
            self.dir_times.push((key.clone(), meta.mtime));
        }
        self.created.insert(key);
        self.stats.entries += 1;
        Ok(())
    }

    /// Honours an opaque marker (`.wh..wh..opq`) in `dir`: what lower layers put there goes.
    fn opaque(&mut self, dir: &Located) -> Result<()> {
        self.stats.whiteouts += 1;
        self.tree.forget();
        let names = list_names(&dir.fd).map_err(|e| self.tree.io("read directory", &dir.key, e))?;
        for name in names {
            let key = child(&dir.key, &name);
            if !self.created.contains(&key) {
                remove_at(dir.fd.as_fd(), &name).map_err(|e| self.tree.io("remove", &key, e))?;
            }
        }
        Ok(())
    }

    /// Honours a whiteout (`.wh.<name>`, the name checked by [`entry::classify`]) in `dir`.
    fn whiteout(&mut self, dir: &Located, target: &[u8]) -> Result<()> {
        self.stats.whiteouts += 1;
        self.tree.forget();
        remove_at(dir.fd.as_fd(), target)
            .map_err(|e| self.tree.io("remove", &child(&dir.key, target), e))
    }

    /// Removes what is in the way of a new entry (but merges a directory into an existing one); returns whether an
    /// existing directory is kept.
    fn clear_way(
        &mut self,
        dir: &Located,
        name: &[u8],
        key: &Key,
        is_dir_entry: bool,
    ) -> Result<bool> {
        match statat(&dir.fd, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) if is_dir_entry && is_dir(&st) => Ok(true),
            Ok(_) => {
                self.tree.forget();
                remove_at(dir.fd.as_fd(), name).map_err(|e| self.tree.io("remove", key, e))?;
                Ok(false)
            }
            Err(Errno::NOENT) => Ok(false),
            Err(e) => Err(self.tree.io("stat", key, e)),
        }
    }

    fn make_dir(&self, dir: &Located, name: &[u8], key: &Key, exists: bool) -> Result<Made> {
        if !exists {
            mkdirat(&dir.fd, name, Mode::from_raw_mode(0o755))
                .map_err(|e| self.tree.io("create directory", key, e))?;
        }
        let fd = openat(&dir.fd, name, DIR_FLAGS, Mode::empty())
            .map_err(|e| self.tree.io("open directory", key, e))?;
        Ok(Made::Open(fd))
    }

    fn make_file(
        &self,
        dir: &Located,
        name: &[u8],
        key: &Key,
        data: &mut dyn Read,
        show: &str,
    ) -> Result<Made> {
        // O_EXCL|O_NOFOLLOW: the name was just cleared, and a symlink put back there is refused, not followed.
        let flags =
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd = openat(&dir.fd, name, flags, Mode::from_raw_mode(0o600))
            .map_err(|e| self.tree.io("create", key, e))?;
        let mut f = fs::File::from(fd);
        // A read error is the tar's (truncated, corrupt chunk); a write error is the disk's (`ENOSPC` becomes
        // `Error::DiskFull`), so the two are told apart here rather than by `io::copy`.
        let mut buf = [0u8; 64 << 10];
        loop {
            let n = match data.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => {
                    return Err(Error::BadTar {
                        what: self.what.into(),
                        detail: format!("{show}: {}", crate::error::chain(&err)),
                    })
                }
            };
            f.write_all(&buf[..n]).map_err(|err| {
                let errno = Errno::from_io_error(&err).unwrap_or(Errno::IO);
                self.tree.io("write", key, errno)
            })?;
        }
        Ok(Made::Open(f.into()))
    }

    /// Links `name` to an entry already in the tree (the entry itself: a symlink target is linked, not followed).
    fn hard_link(&self, dir: &Located, name: &[u8], key: &Key, t: &[u8], show: &str) -> Result<()> {
        let (tparent, tname) = entry::hard_link_target(t, show)?;
        let tdir = self.tree.resolve(&tparent, false, show)?;
        let found = match statat(&tdir.fd, &tname[..], AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) if is_dir(&st) => LinkTarget::Directory,
            Ok(_) => LinkTarget::Other,
            Err(_) => LinkTarget::Missing,
        };
        if let Some(refused) = entry::hard_link_refusal(found, t, show) {
            return Err(refused);
        }
        linkat(&tdir.fd, &tname[..], &dir.fd, name, AtFlags::empty())
            .map_err(|e| self.tree.io("create hard link", key, e))
    }

    /// Creates a FIFO or device node; false when devices are disabled or not permitted.
    fn make_special(&self, dir: &Located, name: &[u8], key: &Key, meta: &TarEntry) -> Result<bool> {
        let (ft, dev) = match meta.kind {
            EntryKind::Char(a, b) => (FileType::CharacterDevice, rustix::fs::makedev(a, b)),
            EntryKind::Block(a, b) => (FileType::BlockDevice, rustix::fs::makedev(a, b)),
            _ => (FileType::Fifo, 0),
        };
        if ft != FileType::Fifo && !self.opts.devices {
            return Ok(false);
        }
        match mknodat(
            &dir.fd,
            name,
            ft,
            Mode::from_raw_mode(meta.mode & 0o777),
            dev,
        ) {
            Ok(()) => Ok(true),
            Err(e) if e == Errno::PERM && ft != FileType::Fifo => Ok(false),
            Err(e) => Err(self.tree.io("create device node", key, e)),
        }
    }

    /// Owner, mode, extended attributes and (except for directories) times, all on the entry itself.
    fn set_meta(
        &mut self,
        dir: &Located,
        name: &[u8],
        key: &Key,
        made: &Made,
        meta: &TarEntry,
        show: &str,
    ) -> Result<()> {
        let io = |op, e| self.tree.io(op, key, e);
        if self.opts.chown {
            let (uid, gid) = ids(meta, show)?;
            match made {
                Made::Open(fd) => fchown(fd, Some(uid), Some(gid)),
                Made::Named => chownat(
                    &dir.fd,
                    name,
                    Some(uid),
                    Some(gid),
                    AtFlags::SYMLINK_NOFOLLOW,
                ),
            }
            .map_err(|e| io("chown", e))?;
        }
        if !matches!(meta.kind, EntryKind::Symlink(_)) {
            // After chown, which clears set-id bits. A named entry here is the FIFO or device node just created,
            // so changing the mode by name follows nothing.
            let mode = Mode::from_raw_mode(meta.mode & 0o7777);
            match made {
                Made::Open(fd) => fchmod(fd, mode),
                Made::Named => chmodat(&dir.fd, name, mode, AtFlags::empty()),
            }
            .map_err(|e| io("chmod", e))?;
        }
        if self.opts.xattrs {
            for (k, v) in &meta.xattrs {
                let set = match made {
                    Made::Open(fd) => fsetxattr(fd, k.as_str(), v, XattrFlags::empty()),
                    // No `setxattrat` before Linux 6.13: the directory handle's /proc link, then the name unfollowed.
                    Made::Named => {
                        lsetxattr(proc_path(dir, name), k.as_str(), v, XattrFlags::empty())
                    }
                };
                if set.is_err() {
                    self.stats.xattr_failures += 1;
                }
            }
        }
        if meta.kind != EntryKind::Dir {
            let ts = times(meta.mtime);
            match made {
                Made::Open(fd) => futimens(fd, &ts),
                Made::Named => utimensat(&dir.fd, name, &ts, AtFlags::SYMLINK_NOFOLLOW),
            }
            .map_err(|e| io("set times", e))?;
        }
        Ok(())
    }

    /// Sets the directory times recorded while applying. Each directory is reopened along its physical path without
    /// following any symlink; one that a later entry replaced (by a symlink, a file, a whiteout) is skipped.
    fn finish(self) -> Result<ApplyStats> {
        let mut dir_times = self.dir_times;
        dir_times.sort_by(|a, b| b.0.cmp(&a.0));
        let mut parent: Option<(Key, OwnedFd)> = None;
        for (key, t) in dir_times {
            let Some((name, up)) = key.split_last() else {
                continue;
            };
            if parent.as_ref().is_none_or(|(k, _)| k[..] != up[..]) {
                parent = match self.tree.reopen(up) {
                    Ok(fd) => Some((up.to_vec(), fd)),
                    Err(e) if is_gone(e) => continue,
                    Err(e) => return Err(self.tree.io("open directory", up, e)),
                };
            }
            let Some((_, fd)) = &parent else {
                continue;
            };
            match statat(fd, &name[..], AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) if is_dir(&st) => {}
                Ok(_) => continue,
                Err(e) if is_gone(e) => continue,
                Err(e) => return Err(self.tree.io("stat", &key, e)),
            }
            utimensat(fd, &name[..], &times(t), AtFlags::SYMLINK_NOFOLLOW)
                .map_err(|e| self.tree.io("set times", &key, e))?;
        }
        Ok(self.stats)
    }
}

/// The entry's owner as ids the kernel accepts (`-1` means "unchanged" to chown, so it is refused).
fn ids(meta: &TarEntry, show: &str) -> Result<(Uid, Gid)> {
    let id = |v: u64, what: &str| {
        u32::try_from(v)
            .ok()
            .filter(|&v| v != u32::MAX)
            .ok_or_else(|| Error::UnsafeEntry {
                entry: show.to_string(),
                reason: format!("{what} {v} is out of range"),
            })
    };
    Ok((
        Uid::from_raw(id(meta.uid, "uid")?),
        Gid::from_raw(id(meta.gid, "gid")?),
    ))
}

fn times(t: i64) -> Timestamps {
    let ts = Timespec {
        tv_sec: t,
        tv_nsec: 0,
    };
    Timestamps {
        last_access: ts,
        last_modification: ts,
    }
}

fn proc_path(dir: &Located, name: &[u8]) -> PathBuf {
    let mut p = PathBuf::from(format!("/proc/self/fd/{}", dir.fd.as_raw_fd()));
    p.push(OsStr::from_bytes(name));
    p
}

/// Applies one uncompressed layer tar onto `root` (which must exist).
pub fn apply_layer(
    tar: impl Read,
    root: &Path,
    opts: &ApplyOptions,
    what: &str,
) -> Result<ApplyStats> {
    apply_layer_seeing(tar, root, opts, what, &mut |_| {})
}

/// [`apply_layer`], showing `seen` each entry's metadata as the tar records it (PAX records
/// applied: path, owners, mode, xattrs) before it is applied. It is how `ADD` of a local
/// archive keeps owners and capabilities that the file system it unpacks to cannot hold (an
/// unprivileged build cannot `chown`; `security.capability` needs root).
pub fn apply_layer_seeing(
    tar: impl Read,
    root: &Path,
    opts: &ApplyOptions,
    what: &str,
    seen: &mut dyn FnMut(&TarEntry),
) -> Result<ApplyStats> {
    let mut applier = Applier {
        tree: Tree::open(root)?,
        only: opts
            .only
            .iter()
            .map(|p| {
                p.split('/')
                    .filter(|c| !c.is_empty() && *c != ".")
                    .map(|c| c.as_bytes().to_vec())
                    .collect()
            })
            .collect(),
        opts,
        what,
        stats: ApplyStats::default(),
        created: HashSet::new(),
        dir_times: Vec::new(),
    };
    let framed = crate::tarframe::Framed::new(tar);
    let pax = framed.records();
    let mut archive = tar::Archive::new(framed);
    let entries = archive.entries().map_err(|e| Error::BadTar {
        what: what.into(),
        detail: crate::error::chain(&e),
    })?;
    for e in entries {
        let mut e = e.map_err(|e| Error::BadTar {
            what: what.into(),
            detail: crate::error::chain(&e),
        })?;
        let Some(meta) = read_meta(&mut e, &pax, what)? else {
            continue;
        };
        seen(&meta);
        applier.entry(&meta, &mut e)?;
    }
    applier.finish()
}

impl Store {
    /// Unpacks a stack of layers (bottom first, by DiffID) into `dir`, creating it if needed. Every chunk read is
    /// verified; whiteouts are honoured; unsafe entries abort with [`Error::UnsafeEntry`].
    pub fn unpack(&self, layers: &[Digest], dir: &Path, opts: &ApplyOptions) -> Result<ApplyStats> {
        fs::create_dir_all(dir).ctx("create directory", dir)?;
        let mut total = ApplyStats::default();
        for l in layers {
            let r = self.open_layer(l)?;
            // Chunks are read, decompressed and verified on a second thread while this one creates the files.
            let s = std::thread::scope(|scope| {
                let ahead = crate::channel::read_ahead(scope, r, 1 << 20, 4);
                apply_layer(ahead, dir, opts, &l.to_string())
            })
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
            total.outside_links += s.outside_links;
            total.xattr_failures += s.xattr_failures;
        }
        Ok(total)
    }
}
