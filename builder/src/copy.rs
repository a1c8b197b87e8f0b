//! `COPY`, `ADD` and `APP`/`CNI`/`CSI`: files from the context (or another stage) into a layer.
//!
//! The layer is written straight from the source files into the store — there is no staging
//! copy. [`Mapping`]s say which source path becomes which image path (Docker's rules are
//! applied by [`map_sources`]); [`write_layer`] then emits them as one reproducible tar in
//! path order (directories before their contents, siblings by name), with `--chown` and
//! `--chmod` applied and parent directories the image lacks created as `0755`.

use crate::error::{io, BuildError, Result};
use chasi_layers::tarwriter::entry_from_fs;
use chasi_layers::{EntryKind, LayerInfo, OwnerPolicy, Store, TarEntry, TarOptions, TarWriter};
use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
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
}

/// Applies Docker's COPY rules. `dest_exists_as_dir` answers whether an image path is an
/// existing directory; `dest_exists` whether it exists at all (used for parent creation).
pub fn map_sources(
    sources: &[SourceTree],
    dest: &str,
    dest_exists_as_dir: &dyn Fn(&str) -> bool,
    dest_exists: &dyn Fn(&str) -> bool,
) -> Result<Vec<Mapping>, String> {
    let (parts, dir_like) = normalize_dest(dest);
    let dest_path = parts.join("/");
    let into_dir = dir_like
        || sources.len() > 1
        || sources.iter().any(|s| s.is_dir)
        || (!dest_path.is_empty() && dest_exists_as_dir(&dest_path));
    if sources.len() > 1 && !dir_like && !(dest_exists_as_dir(&dest_path)) {
        return Err(format!(
            "with more than one source the destination must be a directory and end with `/` (got `{dest}`)"
        ));
    }
    let mut out: BTreeMap<String, Origin> = BTreeMap::new();
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
            out.insert(a, Origin::NewDir);
        }
    }
    for s in sources {
        if s.is_dir {
            for rel in &s.below {
                out.insert(join(&dest_path, rel), Origin::Host(s.root.join(rel)));
            }
        } else {
            let target = if into_dir {
                join(&dest_path, &s.file_name)
            } else {
                dest_path.clone()
            };
            if target.is_empty() {
                return Err("a file cannot replace the image root".into());
            }
            out.insert(target, Origin::Host(s.root.clone()));
        }
    }
    Ok(out
        .into_iter()
        .map(|(dest, origin)| Mapping { dest, origin })
        .collect())
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
    let tar_opts = TarOptions {
        source_date_epoch: Some(opts.epoch),
        owner: OwnerPolicy::Root,
        xattrs: false,
    };
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
                Origin::Host(path) => match entry_from_fs(path, m.dest.as_bytes(), &tar_opts)? {
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
/// `/etc/passwd` and `/etc/group` (`rootfs` materialised only when a name is used).
pub fn resolve_chown(
    user: &str,
    group: Option<&str>,
    rootfs: &mut dyn FnMut() -> Result<PathBuf>,
) -> Result<(u64, u64), BuildError> {
    fn lookup(file: &Path, name: &str, field: usize) -> Option<u64> {
        let text = fs::read_to_string(file).ok()?;
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| l.split(':').collect::<Vec<_>>())
            .find(|f| f.first() == Some(&name))
            .and_then(|f| f.get(field).and_then(|v| v.parse().ok()))
    }
    let step = |message: String| BuildError::Request(message);
    let (uid, primary_gid) = match user.parse::<u64>() {
        Ok(uid) => (uid, uid),
        Err(_) => {
            let root = rootfs()?;
            let passwd = root.join("etc/passwd");
            let uid = lookup(&passwd, user, 2)
                .ok_or_else(|| step(format!("user `{user}` is not in the image's /etc/passwd")))?;
            let gid = lookup(&passwd, user, 3).unwrap_or(uid);
            (uid, gid)
        }
    };
    let gid = match group {
        None => primary_gid,
        Some(g) => match g.parse::<u64>() {
            Ok(gid) => gid,
            Err(_) => {
                let root = rootfs()?;
                lookup(&root.join("etc/group"), g, 2)
                    .ok_or_else(|| step(format!("group `{g}` is not in the image's /etc/group")))?
            }
        },
    };
    Ok((uid, gid))
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
}
