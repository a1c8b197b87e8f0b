//! `COPY`, `ADD` and `APP`/`CNI`/`CSI`: files from the context (or another stage) into a layer.
//!
//! The layer is written straight from the source files into the store — there is no staging
//! copy. [`Mapping`]s say which source path becomes which image path (Docker's rules are
//! applied by [`map_sources`]); [`write_layer`] then emits them as one reproducible tar in
//! path order (directories before their contents, siblings by name), with `--chown` and
//! `--chmod` applied and parent directories the image lacks created as `0755`. Each mapping
//! says whose owners it gets ([`Owners`]): `0:0` for context files (Docker's `COPY`), the
//! file's own with `--chown=preserve`, or what an unpacked archive's entry recorded.
//!
//! Destinations and symlinks. The image a COPY writes onto may hold symlinks (an earlier `ADD`
//! of a tar can make `etc -> /host/etc` or `x -> ../../..`). [`ImageView`] answers Docker's
//! questions ("is the destination a directory?") and checks every destination the way the
//! layer applier will later resolve it: through symlinks *inside the image*, an absolute target
//! starting again at the image root — so `COPY f /etc/` with `etc -> /host/etc` writes
//! `/host/etc/f` in the image, as Docker does — and never through the build host's file system.
//! Where Docker would clamp a `..` that climbs above the root, chasi refuses the step: such a
//! layer could not be applied or exported (the applier refuses it too), so the error names the
//! COPY's line, the destination and the symlink instead of failing at a later step or export. A
//! destination whose parent is a file is refused the same way. The new layer's own entries
//! count (two sources can make `a -> ../..` and `a/f`), in the order the applier meets them.

use crate::error::{io, ChownError, DestinationError, Result};
use chasi_layers::tarwriter::entry_from_fs;
use chasi_layers::{EntryKind, LayerInfo, OwnerPolicy, Store, TarEntry, TarOptions, TarWriter};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fs;
use std::io::Read;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

/// One path of the new layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// Copied from this path on disk (metadata and, for files, content).
    Host(PathBuf),
    /// A directory the layer creates (`0755`) because the image does not have it.
    NewDir,
}

/// An image path (relative, `/`-separated, no `.`/`..`) and where it comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapping {
    /// The path in the image.
    pub dest: String,
    /// Its origin.
    pub origin: Origin,
    /// Whose owner, mode and extended attributes it gets.
    pub owners: Owners,
}

/// Whose owner, mode and extended attributes a copied path gets (Docker's rules, plus
/// `--chown=preserve`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Owners {
    /// `0:0` and no extended attributes, the file's own mode: `COPY`/`ADD` of context files,
    /// stage paths and remote files (`--chown=user:group` then sets the ids).
    #[default]
    Reset,
    /// The file's own numeric uid/gid and extended attributes, except `security.selinux` (a
    /// label of the build host): `--chown=preserve`.
    Kept,
    /// What a local archive's entry recorded (`ADD` unpacks it, as Docker does).
    Recorded(Recorded),
}

/// One archive entry's owner, mode and extended attributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    /// Numeric user id.
    pub uid: u64,
    /// Numeric group id.
    pub gid: u64,
    /// Permission bits with setuid, setgid and sticky.
    pub mode: u32,
    /// Extended attributes (`security.capability`, ACLs as `system.posix_acl_*`, …).
    pub xattrs: BTreeMap<String, Vec<u8>>,
}

/// Where the owners of a source tree's paths come from.
#[derive(Debug, Clone, Default)]
pub enum TreeOwners {
    /// [`Owners::Reset`] for every path.
    #[default]
    Reset,
    /// [`Owners::Kept`] for every path.
    Kept,
    /// [`Owners::Recorded`] by relative path (an unpacked archive); a path it lacks is reset.
    Recorded(std::sync::Arc<BTreeMap<String, Recorded>>),
}

impl TreeOwners {
    fn of(&self, rel: &str) -> Owners {
        match self {
            TreeOwners::Reset => Owners::Reset,
            TreeOwners::Kept => Owners::Kept,
            TreeOwners::Recorded(map) => map
                .get(rel)
                .cloned()
                .map_or(Owners::Reset, Owners::Recorded),
        }
    }
}

/// Ownership and permission overrides of a copy.
#[derive(Debug, Clone, Copy, Default)]
pub struct CopyOptions {
    /// `--chown` as numeric ids.
    pub chown: Option<(u64, u64)>,
    /// `--chmod` permission bits.
    pub chmod: Option<u32>,
    /// mtimes are clamped to this (`SOURCE_DATE_EPOCH`); new directories get it.
    pub epoch: i64,
}

/// Normalises a destination the Docker way: relative to `/`, `.` removed, `..` never above
/// the root. Returns the components and whether the text ends in `/` (or names the root).
pub fn normalize_dest(dest: &str) -> (Vec<String>, bool) {
    let mut parts: Vec<String> = Vec::new();
    for part in dest.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p.to_string()),
        }
    }
    let dir_like = dest.ends_with('/') || dest.ends_with("/.") || dest == "." || parts.is_empty();
    (parts, dir_like)
}

/// One source to copy: its path on disk and, for a directory, everything below it
/// (relative paths, already filtered by `.kubefileignore` for context sources).
#[derive(Debug, Clone)]
pub struct SourceTree {
    /// The source itself.
    pub root: PathBuf,
    /// Whether it is a directory (its *contents* are copied).
    pub is_dir: bool,
    /// For a directory: relative paths below it, in any order.
    pub below: Vec<String>,
    /// The file name a file source gets inside a directory destination.
    pub file_name: String,
    /// Whose owners its paths get.
    pub owners: TreeOwners,
    /// The bytes its tar entries will take, when the walk that listed it knew the file sizes
    /// (context sources): the step's total for a percentage and an ETA.
    pub tar_bytes: Option<u64>,
}

/// Applies Docker's COPY rules. `dest_exists_as_dir` answers whether an image path is an
/// existing directory; `dest_exists` whether it exists at all (used for parent creation).
pub fn map_sources(
    sources: &[SourceTree],
    dest: &str,
    dest_exists_as_dir: &dyn Fn(&str) -> bool,
    dest_exists: &dyn Fn(&str) -> bool,
) -> Result<Vec<Mapping>, DestinationError> {
    let (parts, dir_like) = normalize_dest(dest);
    let dest_path = parts.join("/");
    let into_dir = dir_like
        || sources.len() > 1
        || sources.iter().any(|s| s.is_dir)
        || (!dest_path.is_empty() && dest_exists_as_dir(&dest_path));
    if sources.len() > 1 && !dir_like && !(dest_exists_as_dir(&dest_path)) {
        return Err(DestinationError::SeveralSources {
            dest: dest.to_string(),
        });
    }
    let mut out: BTreeMap<String, (Origin, Owners)> = BTreeMap::new();
    let join = |a: &str, b: &str| {
        if a.is_empty() {
            b.to_string()
        } else if b.is_empty() {
            a.to_string()
        } else {
            format!("{a}/{b}")
        }
    };
    // Parent directories the image lacks (and, for a directory destination, the destination).
    let mut ancestors = Vec::new();
    let dir_parts = if into_dir {
        parts.len()
    } else {
        parts.len().saturating_sub(1)
    };
    for i in 1..=dir_parts {
        ancestors.push(parts[..i].join("/"));
    }
    for a in ancestors {
        if !dest_exists(&a) {
            out.insert(a, (Origin::NewDir, Owners::Reset));
        }
    }
    for s in sources {
        if s.is_dir {
            for rel in &s.below {
                out.insert(
                    join(&dest_path, rel),
                    (Origin::Host(s.root.join(rel)), s.owners.of(rel)),
                );
            }
        } else {
            let target = if into_dir {
                join(&dest_path, &s.file_name)
            } else {
                dest_path.clone()
            };
            if target.is_empty() {
                return Err(DestinationError::FileAsRoot {
                    file: s.file_name.clone(),
                });
            }
            out.insert(target, (Origin::Host(s.root.clone()), s.owners.of("")));
        }
    }
    Ok(out
        .into_iter()
        .map(|(dest, (origin, owners))| Mapping {
            dest,
            origin,
            owners,
        })
        .collect())
}

/// What one image path is, as far as resolving a destination needs.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Node {
    Dir,
    Link(Vec<u8>),
    Other,
    Missing,
}

fn node_of(path: &Path) -> Node {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => Node::Dir,
        Ok(m) if m.file_type().is_symlink() => fs::read_link(path)
            .map(|t| Node::Link(t.into_os_string().into_vec()))
            .unwrap_or(Node::Other),
        Ok(_) => Node::Other,
        Err(_) => Node::Missing,
    }
}

/// Why a destination cannot be written as the applier will resolve it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Refusal {
    /// A symlink (shown as `/path -> target`) climbs above the image root.
    Escapes(String),
    /// A component that must be a directory is a file.
    NotDir(String),
    /// More than 40 symlinks.
    Loop,
}

/// `/a/b` for messages.
fn shown(key: &[Vec<u8>]) -> String {
    if key.is_empty() {
        return "/".into();
    }
    key.iter()
        .map(|c| format!("/{}", String::from_utf8_lossy(c)))
        .collect()
}

fn components(path: &[u8]) -> Vec<Vec<u8>> {
    path.split(|&b| b == b'/')
        .filter(|c| !c.is_empty() && *c != b".")
        .map(<[u8]>::to_vec)
        .collect()
}

/// The image a COPY writes onto — the stage's materialised root file system (if it has layers)
/// under the new layer's own entries — resolved as the layer applier resolves entry parents.
/// The root file system is only ever examined below directories that are real directories in
/// it, so no lookup follows a symlink on the build host.
pub struct ImageView<'a> {
    rootfs: Option<&'a Path>,
    layer: HashMap<&'a [u8], &'a Origin>,
}

impl<'a> ImageView<'a> {
    /// The image as it is before the COPY.
    pub fn new(rootfs: Option<&'a Path>) -> Self {
        ImageView {
            rootfs,
            layer: HashMap::new(),
        }
    }

    /// The image with the COPY's entries on top.
    pub fn with_layer(rootfs: Option<&'a Path>, mappings: &'a [Mapping]) -> Self {
        ImageView {
            rootfs,
            layer: mappings
                .iter()
                .map(|m| (m.dest.as_bytes(), &m.origin))
                .collect(),
        }
    }

    /// The node at a physical path; `real` says whether its parent is a real directory of the
    /// root file system (else the root file system is not looked at). Returns the merged node
    /// and the root file system's own.
    fn node(&self, key: &[Vec<u8>], real: bool) -> (Node, Node) {
        let below = match (real, self.rootfs) {
            (true, Some(root)) => {
                let mut p = root.to_path_buf();
                p.extend(key.iter().map(|c| std::ffi::OsStr::from_bytes(c)));
                node_of(&p)
            }
            _ => Node::Missing,
        };
        let merged = match self.layer.get(&key.join(&b'/')[..]) {
            Some(Origin::NewDir) => Node::Dir,
            Some(Origin::Host(p)) => node_of(p),
            None => below.clone(),
        };
        (merged, below)
    }

    /// Resolves `path` through the image's symlinks (the last component too when `follow_last`).
    /// A missing directory is taken as one the applier will create.
    fn resolve(&self, path: &[u8], follow_last: bool) -> Result<(Vec<Vec<u8>>, Node), Refusal> {
        let mut key: Vec<Vec<u8>> = Vec::new();
        // real[i]: key[..=i] is a real directory of the root file system.
        let mut real: Vec<bool> = Vec::new();
        let mut queue: VecDeque<Vec<u8>> = components(path).into();
        let mut hops = 0;
        let mut via = String::new();
        while let Some(c) = queue.pop_front() {
            if c == b".." {
                if key.pop().is_none() {
                    return Err(Refusal::Escapes(via));
                }
                real.pop();
                continue;
            }
            let here = [&key[..], &[c]].concat();
            let (node, below) = self.node(&here, real.last().copied().unwrap_or(true));
            let last = queue.is_empty();
            match node {
                Node::Link(t) if !last || follow_last => {
                    hops += 1;
                    if hops > 40 {
                        return Err(Refusal::Loop);
                    }
                    via = format!("{} -> {}", shown(&here), String::from_utf8_lossy(&t));
                    if t.first() == Some(&b'/') {
                        key.clear();
                        real.clear();
                    }
                    let mut rest: VecDeque<Vec<u8>> = t
                        .split(|&b| b == b'/')
                        .filter(|c| !c.is_empty() && *c != b".")
                        .map(<[u8]>::to_vec)
                        .collect();
                    rest.extend(queue.drain(..));
                    queue = rest;
                }
                node if last => return Ok((here, node)),
                Node::Dir | Node::Missing => {
                    real.push(real.last().copied().unwrap_or(true) && below == Node::Dir);
                    key = here;
                }
                Node::Link(_) | Node::Other => return Err(Refusal::NotDir(shown(&here))),
            }
        }
        Ok((key, Node::Dir))
    }

    /// Whether an image path is a directory (following symlinks inside the image).
    pub fn is_dir(&self, path: &str) -> bool {
        matches!(self.resolve(path.as_bytes(), true), Ok((_, Node::Dir)))
    }

    /// Whether something is at an image path (a symlink there counts, unfollowed).
    pub fn exists(&self, path: &str) -> bool {
        matches!(self.resolve(path.as_bytes(), false), Ok((_, n)) if n != Node::Missing)
    }

    /// The host path of a regular file of the root file system named by an image path, reached
    /// through real directories only (for reading `/etc/passwd`, even when `etc` is a symlink).
    pub fn host_file(&self, path: &str) -> Option<PathBuf> {
        let root = self.rootfs?;
        let (key, node) = self.resolve(path.as_bytes(), true).ok()?;
        let mut p = root.to_path_buf();
        p.extend(key.iter().map(|c| std::ffi::OsStr::from_bytes(c)));
        // `node_of` on the full path is an lstat: it follows nothing when every parent is real.
        (node == Node::Other && node_of(&p) == Node::Other && self.all_real(&key)).then_some(p)
    }

    fn all_real(&self, key: &[Vec<u8>]) -> bool {
        (1..key.len()).all(|i| self.node(&key[..i], true).1 == Node::Dir)
    }

    /// Checks that every mapping's parent resolves inside the image to a directory (or to one
    /// the applier will create); the message names the destination and the symlink.
    pub fn check(&self, mappings: &[Mapping]) -> Result<(), DestinationError> {
        let mut seen: HashMap<&str, ()> = HashMap::new();
        for m in mappings {
            let parent = m.dest.rsplit_once('/').map_or("", |(p, _)| p);
            if parent.is_empty() || seen.insert(parent, ()).is_some() {
                continue;
            }
            let refusal = match self.resolve(parent.as_bytes(), true) {
                Ok((_, Node::Dir | Node::Missing)) => continue,
                Ok((key, _)) => Refusal::NotDir(shown(&key)),
                Err(r) => r,
            };
            let dest = format!("/{}", m.dest);
            return Err(match refusal {
                Refusal::Escapes(via) => DestinationError::Escapes { dest, via },
                Refusal::NotDir(parent) => DestinationError::NotADirectory { dest, parent },
                Refusal::Loop => DestinationError::SymlinkLoop { dest },
            });
        }
        Ok(())
    }
}

/// Docker's destination rules against the image (its root file system when it has layers),
/// then [`ImageView::check`] of the result.
pub fn map_into_image(
    sources: &[SourceTree],
    dest: &str,
    rootfs: Option<&Path>,
) -> Result<Vec<Mapping>, DestinationError> {
    let view = ImageView::new(rootfs);
    let mappings = map_sources(sources, dest, &|p| view.is_dir(p), &|p| view.exists(p))?;
    ImageView::with_layer(rootfs, &mappings).check(&mappings)?;
    Ok(mappings)
}

/// Sort key: by components, so a directory comes right before its contents.
fn key(path: &str) -> Vec<&[u8]> {
    path.split('/').map(str::as_bytes).collect()
}

/// Writes the mappings as one layer into the store.
pub fn write_layer(
    store: &Store,
    mappings: &[Mapping],
    opts: &CopyOptions,
    progress: Option<crate::rootfs::Progress<'_>>,
) -> Result<LayerInfo> {
    let mut sorted: Vec<&Mapping> = mappings.iter().collect();
    sorted.sort_by(|a, b| key(&a.dest).cmp(&key(&b.dest)));
    crate::rootfs::ingest_stream(store, progress, |out| {
        let mut tar = TarWriter::new(out);
        for m in &sorted {
            let mut entry = match &m.origin {
                Origin::NewDir => TarEntry {
                    path: m.dest.as_bytes().to_vec(),
                    kind: EntryKind::Dir,
                    mode: 0o755,
                    uid: 0,
                    gid: 0,
                    mtime: opts.epoch,
                    size: 0,
                    xattrs: BTreeMap::new(),
                },
                Origin::Host(path) => match entry_of(path, m, opts.epoch)? {
                    Some(e) => e,
                    None => continue, // sockets cannot be archived
                },
            };
            if let Some((uid, gid)) = opts.chown {
                entry.uid = uid;
                entry.gid = gid;
            }
            if let (Some(mode), Origin::Host(_)) = (opts.chmod, &m.origin) {
                if !matches!(entry.kind, EntryKind::Symlink(_)) {
                    entry.mode = mode;
                }
            }
            match (&entry.kind, &m.origin) {
                (EntryKind::File, Origin::Host(path)) => {
                    let file = fs::File::open(path).map_err(io("read", path))?;
                    let mut exact = ExactSize {
                        inner: file,
                        left: entry.size,
                        path: path.clone(),
                    };
                    tar.append(&entry, Some(&mut exact))
                        .map_err(io("read", path))?;
                }
                _ => tar
                    .append(&entry, None)
                    .map_err(io("write the layer entry for", PathBuf::from(&m.dest)))?,
            }
        }
        tar.finish()
            .map_err(io("finish the layer of", store.root()))?;
        Ok(())
    })
}

/// The layer entry of a file on disk, with the owner, mode and extended attributes its
/// mapping says; `None` for what a tar cannot hold (a socket).
fn entry_of(path: &Path, m: &Mapping, epoch: i64) -> Result<Option<TarEntry>> {
    let kept = m.owners == Owners::Kept;
    let tar_opts = TarOptions {
        source_date_epoch: Some(epoch),
        owner: if kept {
            OwnerPolicy::Keep
        } else {
            OwnerPolicy::Root
        },
        xattrs: kept,
    };
    let Some(mut entry) = entry_from_fs(path, m.dest.as_bytes(), &tar_opts)? else {
        return Ok(None);
    };
    match &m.owners {
        Owners::Reset => {}
        Owners::Kept => {
            entry.xattrs.remove("security.selinux");
        }
        Owners::Recorded(r) => {
            entry.uid = r.uid;
            entry.gid = r.gid;
            entry.mode = r.mode;
            entry.xattrs = r.xattrs.clone();
        }
    }
    Ok(Some(entry))
}

/// Reads exactly `left` bytes; a file that shrank or grew since it was examined is an error,
/// never a silently wrong tar.
struct ExactSize {
    inner: fs::File,
    left: u64,
    path: PathBuf,
}

impl Read for ExactSize {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.left == 0 {
            let mut probe = [0u8; 1];
            return match self.inner.read(&mut probe)? {
                0 => Ok(0),
                _ => Err(std::io::Error::other(format!(
                    "{} grew while it was being copied",
                    self.path.display()
                ))),
            };
        }
        let want = buf.len().min(self.left as usize);
        let n = self.inner.read(&mut buf[..want])?;
        if n == 0 {
            return Err(std::io::Error::other(format!(
                "{} shrank while it was being copied",
                self.path.display()
            )));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// Lists a directory tree on disk (no `.kubefileignore`: for `COPY --from` and extracted
/// archives), relative paths sorted.
pub fn list_tree(root: &Path) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let dir = root.join(&rel);
        for item in fs::read_dir(&dir).map_err(io("list", &dir))? {
            let item = item.map_err(io("list", &dir))?;
            let child = rel.join(item.file_name());
            let text = String::from_utf8_lossy(child.as_os_str().as_bytes()).into_owned();
            let ft = item.file_type().map_err(io("stat", item.path()))?;
            if ft.is_dir() {
                stack.push(child);
            }
            out.push(text);
        }
    }
    out.sort();
    Ok(out)
}

/// Resolves `--chown=user[:group]` to numeric ids, names looked up in the image's
/// `/etc/passwd` and `/etc/group` (`rootfs` materialised only when a name is used). A name's
/// primary group is the passwd entry's gid.
pub fn resolve_chown<E: From<ChownError>>(
    user: &str,
    group: Option<&str>,
    rootfs: &mut dyn FnMut() -> Result<PathBuf, E>,
) -> Result<(u64, u64), E> {
    let (uid, primary_gid) = match user.parse::<u64>() {
        Ok(uid) => (uid, uid),
        Err(_) => {
            let entry = lookup(&rootfs()?, PASSWD, user)?;
            let entry = entry.ok_or_else(|| ChownError::UnknownUser {
                user: user.to_string(),
                file: PASSWD,
            })?;
            (entry.id(2, "uid")?, entry.id(3, "gid")?)
        }
    };
    let gid = match group {
        None => primary_gid,
        Some(g) => match g.parse::<u64>() {
            Ok(gid) => gid,
            Err(_) => {
                let entry = lookup(&rootfs()?, GROUP, g)?;
                let entry = entry.ok_or_else(|| ChownError::UnknownGroup {
                    group: g.to_string(),
                    file: GROUP,
                })?;
                entry.id(2, "gid")?
            }
        },
    };
    Ok((uid, gid))
}

const PASSWD: &str = "/etc/passwd";
const GROUP: &str = "/etc/group";

/// The line of a passwd or group file that names an entry.
struct Entry {
    file: &'static str,
    /// 1-based.
    line: usize,
    fields: Vec<String>,
}

impl Entry {
    /// Field `index` (0-based) as an id.
    fn id(&self, index: usize, field: &'static str) -> Result<u64, ChownError> {
        let value = self.fields.get(index).map_or("", String::as_str);
        value.parse().map_err(|_| ChownError::Malformed {
            file: self.file,
            line: self.line,
            name: self.fields[0].clone(),
            field,
            value: chasi_oci::error::excerpt(value),
        })
    }
}

/// The entry named `name` in `file` (an image path), found through the image's own
/// directories and symlinks, never the build host's; `None` when no line names it.
fn lookup(root: &Path, file: &'static str, name: &str) -> Result<Option<Entry>, ChownError> {
    let path = ImageView::new(Some(root))
        .host_file(file.trim_start_matches('/'))
        .ok_or_else(|| ChownError::NoFile {
            file,
            name: name.to_string(),
        })?;
    let text =
        fs::read_to_string(path).map_err(|source| ChownError::Unreadable { file, source })?;
    Ok(text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.starts_with('#'))
        .find(|(_, l)| l.split(':').next() == Some(name))
        .map(|(i, l)| Entry {
            file,
            line: i + 1,
            fields: l.split(':').map(str::to_string).collect(),
        }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(name: &str) -> SourceTree {
        SourceTree {
            root: PathBuf::from("/ctx").join(name),
            is_dir: false,
            below: vec![],
            file_name: name.rsplit('/').next().unwrap().to_string(),
            owners: TreeOwners::Reset,
            tar_bytes: None,
        }
    }

    #[test]
    fn docker_destination_rules() {
        let none = |_: &str| false;
        // A single file to a path without a slash: that path is the file.
        let m = map_sources(&[file("a.txt")], "etc/conf", &none, &none).unwrap();
        assert_eq!(
            m.iter().map(|m| m.dest.as_str()).collect::<Vec<_>>(),
            ["etc", "etc/conf"]
        );
        // With a slash: into the directory.
        let m = map_sources(&[file("a.txt")], "/etc/conf/", &none, &none).unwrap();
        assert_eq!(m.last().unwrap().dest, "etc/conf/a.txt");
        // Into an existing directory even without a slash.
        let is_dir = |p: &str| p == "manifests";
        let m = map_sources(&[file("imageList")], "manifests", &is_dir, &is_dir).unwrap();
        assert_eq!(
            m.iter().map(|m| m.dest.as_str()).collect::<Vec<_>>(),
            ["manifests/imageList"]
        );
        // Several sources need a directory destination.
        assert!(map_sources(&[file("a"), file("b")], "x", &none, &none).is_err());
        // `..` never leaves the root.
        assert_eq!(
            normalize_dest("../../x/./y/"),
            (vec!["x".into(), "y".into()], true)
        );
        assert_eq!(normalize_dest("."), (vec![], true));
    }

    fn mapping(dest: &str, origin: Origin) -> Mapping {
        Mapping {
            dest: dest.into(),
            origin,
            owners: Owners::Reset,
        }
    }

    #[test]
    fn destinations_resolve_inside_the_image_never_on_the_host() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("root");
        fs::create_dir_all(root.join("host/etc")).unwrap();
        fs::create_dir_all(root.join("usr/lib")).unwrap();
        fs::write(root.join("file"), b"x").unwrap();
        let link = |target: &str, name: &str| {
            std::os::unix::fs::symlink(target, root.join(name)).unwrap();
        };
        link("/host/etc", "etc");
        link("../../../../../../..", "up");
        link("/", "slash");
        link("usr/lib", "lib");
        let view = ImageView::new(Some(&root));
        // Absolute links start again at the image root: `/etc` is the image's `/host/etc`.
        assert!(view.is_dir("etc") && view.is_dir("slash/usr") && view.is_dir("lib"));
        // The host's `/` is a directory, but the image's `up` points nowhere inside it.
        assert!(!view.is_dir("up") && view.exists("up"));
        assert!(
            !view.is_dir("slash/tmp"),
            "the host's /tmp is not looked at"
        );
        let refuse = |dest: &str| {
            let m = [mapping(dest, Origin::NewDir)];
            ImageView::with_layer(Some(&root), &m)
                .check(&m)
                .unwrap_err()
                .to_string()
        };
        let e = refuse("up/victim/f");
        assert!(
            e.contains("/up/victim/f") && e.contains("/up -> ../../../../../../.."),
            "{e}"
        );
        let e = refuse("file/f");
        assert!(e.contains("/file is not a directory"), "{e}");
        let ok = [
            mapping("etc/f", Origin::NewDir),
            mapping("lib/x/y", Origin::NewDir),
        ];
        ImageView::with_layer(Some(&root), &ok).check(&ok).unwrap();
    }

    #[test]
    fn the_layers_own_symlinks_count() {
        // Two sources: one makes `a -> ../..`, the other `a/f`: the applier would refuse the layer.
        let t = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("../..", t.path().join("a")).unwrap();
        fs::write(t.path().join("f"), b"x").unwrap();
        let m = [
            mapping("a", Origin::Host(t.path().join("a"))),
            mapping("a/f", Origin::Host(t.path().join("f"))),
        ];
        let e = ImageView::with_layer(None, &m).check(&m).unwrap_err();
        assert!(
            matches!(&e, DestinationError::Escapes { dest, via } if dest == "/a/f" && via.contains("/a -> ../..")),
            "{e}"
        );
        // A directory of the layer over a root file system's symlink hides what the link points at.
        let root = t.path().join("root");
        fs::create_dir_all(root.join("real")).unwrap();
        fs::write(root.join("real/file"), b"x").unwrap();
        std::os::unix::fs::symlink("real", root.join("d")).unwrap();
        let m = [
            mapping("d", Origin::NewDir),
            mapping("d/file/x", Origin::NewDir),
        ];
        ImageView::with_layer(Some(&root), &m).check(&m).unwrap();
    }

    #[test]
    fn chown_names_are_read_from_the_image_through_its_own_links() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("root");
        fs::create_dir_all(root.join("host/etc")).unwrap();
        fs::write(root.join("host/etc/passwd"), "app:x:1234:4321::/:/bin/sh\n").unwrap();
        std::os::unix::fs::symlink("/host/etc", root.join("etc")).unwrap();
        let mut rootfs = || Ok::<_, ChownError>(root.clone());
        assert_eq!(
            resolve_chown("app", None, &mut rootfs).unwrap(),
            (1234, 4321)
        );
        // `etc -> /etc` must not read the build host's /etc/passwd (which has `root`).
        let root2 = t.path().join("root2");
        fs::create_dir_all(&root2).unwrap();
        std::os::unix::fs::symlink("/etc", root2.join("etc")).unwrap();
        let mut rootfs = || Ok::<_, ChownError>(root2.clone());
        let e = resolve_chown("root", None, &mut rootfs).unwrap_err();
        assert!(
            matches!(
                e,
                ChownError::NoFile {
                    file: "/etc/passwd",
                    ..
                }
            ),
            "{e}"
        );
        assert_eq!(
            e.to_string(),
            "the image has no /etc/passwd to look `root` up in"
        );
    }

    #[test]
    fn chown_failures_name_the_file_the_line_and_the_name() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().to_path_buf();
        fs::create_dir_all(root.join("etc")).unwrap();
        fs::write(
            root.join("etc/passwd"),
            "# users\nroot:x:0:0::/:/bin/sh\nodd:x:12x:0::/:/bin/sh\nshort:x:7\n",
        )
        .unwrap();
        fs::write(root.join("etc/group"), "wheel:x:10:root\n").unwrap();
        let mut rootfs = || Ok::<_, ChownError>(root.clone());
        let mut chown = |u, g| resolve_chown(u, g, &mut rootfs).map_err(|e| e.to_string());
        assert_eq!(chown("root", Some("wheel")), Ok((0, 10)));
        assert_eq!(chown("5", Some("6")), Ok((5, 6)));
        assert_eq!(
            chown("odd", None),
            Err(
                "line 3 of the image's /etc/passwd: the uid of `odd` is `12x`, not a number".into()
            )
        );
        assert_eq!(
            chown("short", None),
            Err("line 4 of the image's /etc/passwd: the gid of `short` is ``, not a number".into())
        );
        assert_eq!(
            chown("nobody", None),
            Err("user `nobody` is not in the image's /etc/passwd".into())
        );
        assert_eq!(
            chown("root", Some("staff")),
            Err("group `staff` is not in the image's /etc/group".into())
        );
        fs::write(root.join("etc/group"), b"\xff\n").unwrap();
        let e = resolve_chown("0", Some("wheel"), &mut rootfs).unwrap_err();
        assert!(
            matches!(&e, ChownError::Unreadable { file: "/etc/group", source } if source.kind() == std::io::ErrorKind::InvalidData),
            "{e}"
        );
    }
}
