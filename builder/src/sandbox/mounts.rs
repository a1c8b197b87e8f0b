//! What a step sees besides the image: mount points the image lacks, and the host's tools in
//! host-tools mode.
//!
//! Why a module: every path the sandbox mounts something on must exist in the step's rootfs,
//! and whatever the sandbox creates there would otherwise become part of the layer. So the
//! plan is made up front: each missing mount point is created in the overlay *upper*
//! directory before the step (a [`Placeholder`]) and removed after it, when it is still exactly
//! what was created (an empty directory, an empty file, the same symlink). What the command
//! itself wrote stays.
//!
//! Host-tools mode (an image without `/bin/sh`, sealer's `FROM scratch` cluster images) needs the
//! host's programs. The host's tool directories (`/usr`, `/bin`, `/sbin`, `/lib*`) are bound
//! **read-only** into the gaps of the image: at the highest level where the image lacks an
//! entry (an image with its own `/bin/kubectl` keeps its `/bin` and gets the host's `/usr`; one
//! with `/usr/local/bin/helm` keeps `/usr/local` and gets `/usr/bin`, `/usr/lib`, …). A host
//! symlink such as merged-usr's `/bin -> usr/bin` is recreated as the same symlink. A few
//! read-only files from the host's `/etc` that those tools need (`ld.so.cache`, `alternatives`,
//! `passwd` and `group` for names, `ssl` for certificates; never `shadow`) are bound the same way.
//! The image's own files always win; a write into a bound host directory fails (`EROFS`), so
//! nothing outside the layer changes. An image without `/tmp` gets a private tmpfs there, so
//! scratch files of such steps work as they did on the host and are discarded.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::{io, SandboxError};

/// The host directories host-tools mode fills the image's gaps with.
const HOST_TOOL_DIRS: &[&str] = &["usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32"];
/// How deep below a tool directory gaps are looked for (`usr/local/bin` is depth 2).
const MAX_GAP_DEPTH: usize = 2;
/// Files and directories of the host's `/etc` the host's tools read.
const HOST_ETC: &[&str] = &[
    "etc/ld.so.cache",
    "etc/alternatives",
    "etc/passwd",
    "etc/group",
    "etc/nsswitch.conf",
    "etc/ssl",
];

/// A mount of a host path onto a path inside the step's root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Bind {
    /// The host path (a file or a directory).
    pub source: PathBuf,
    /// The absolute path inside the step's root.
    pub dest: String,
    /// Whether the step may write to it (only the private copies of `resolv.conf`/`hosts`).
    pub writable: bool,
}

/// What the sandbox must create in the upper directory for a mount point.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Kind {
    /// An empty directory.
    Dir,
    /// An empty regular file.
    File,
    /// A symlink with this target.
    Symlink(PathBuf),
}

/// Whether a mount point is there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Need {
    /// The image lacks it: a placeholder will be created.
    Created,
    /// The image has it, of the right kind.
    Exists,
    /// Something else is in the way.
    Blocked,
}

/// A path created in the upper directory before the step, removed after it if unchanged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Placeholder {
    /// Relative to the root.
    pub rel: PathBuf,
    /// What it is.
    pub kind: Kind,
}

/// The extra mounts of one step and the placeholders they need.
#[derive(Debug, Default)]
pub(crate) struct MountPlan {
    /// Host paths bound into the root, in mount order (parents first).
    pub binds: Vec<Bind>,
    /// Paths that get a private, empty tmpfs (discarded after the step).
    pub tmpfs: Vec<String>,
    /// Paths to create in the upper directory (parents first).
    pub placeholders: Vec<Placeholder>,
    /// Directories of the image made in the upper directory to hold placeholders, with the
    /// image's mode and owner (as overlayfs' own copy-up would make them).
    scaffolds: Vec<PathBuf>,
}

impl MountPlan {
    /// Records that `rel` must exist as `kind` for a mount, creating placeholders for it and
    /// for any missing parent directory. `Blocked` when the image has something else in the
    /// way (a file where a directory is needed, any symlink: image symlinks are never
    /// followed); that mount is then skipped.
    pub fn need(&mut self, lower: &Path, rel: &Path, kind: Kind) -> Need {
        let mut parents = Vec::new();
        let mut cur = rel.parent();
        while let Some(p) = cur.filter(|p| !p.as_os_str().is_empty()) {
            parents.push(p.to_path_buf());
            cur = p.parent();
        }
        for parent in parents.into_iter().rev() {
            match fs::symlink_metadata(lower.join(&parent)) {
                Ok(m) if m.is_dir() => {}
                Ok(_) => return Need::Blocked,
                Err(_) => self.placeholder(parent, Kind::Dir),
            }
        }
        match fs::symlink_metadata(lower.join(rel)) {
            Ok(m) => match kind {
                Kind::Dir if m.is_dir() => Need::Exists,
                Kind::File if m.is_file() => Need::Exists,
                _ => Need::Blocked,
            },
            Err(_) => {
                self.placeholder(rel.to_path_buf(), kind);
                Need::Created
            }
        }
    }

    fn placeholder(&mut self, rel: PathBuf, kind: Kind) {
        if !self.placeholders.iter().any(|p| p.rel == rel) {
            self.placeholders.push(Placeholder { rel, kind });
        }
    }

    /// Binds `source` at `/rel`: where the image lacks the path, or also over the image's own
    /// file or directory of the same kind when `over_image` is set.
    pub fn bind(
        &mut self,
        lower: &Path,
        source: &Path,
        rel: &str,
        writable: bool,
        over_image: bool,
    ) {
        let kind = if source.is_dir() {
            Kind::Dir
        } else {
            Kind::File
        };
        let room = match self.need(lower, Path::new(rel), kind) {
            Need::Created => true,
            Need::Exists => over_image,
            Need::Blocked => false,
        };
        if room {
            self.binds.push(Bind {
                source: source.to_path_buf(),
                dest: format!("/{rel}"),
                writable,
            });
        }
    }

    /// Fills the image's gaps with the host's tool directories and `/etc` files (host-tools
    /// mode), and gives the step a private `/tmp` when the image has none (sealer's steps
    /// used the host's `/tmp` as scratch space; now it is the step's own and discarded).
    pub fn host_tools(&mut self, lower: &Path, host_root: &Path) {
        if self.need(lower, Path::new("tmp"), Kind::Dir) == Need::Created {
            self.tmpfs.push("/tmp".into());
        }
        for name in HOST_TOOL_DIRS {
            self.fill_gap(lower, host_root, Path::new(name), 0);
        }
        for rel in HOST_ETC {
            let source = host_root.join(rel);
            if fs::symlink_metadata(&source).is_ok() && source.exists() {
                self.bind(lower, &source, rel, false, false);
            }
        }
    }

    fn fill_gap(&mut self, lower: &Path, host_root: &Path, rel: &Path, depth: usize) {
        let host = host_root.join(rel);
        let Ok(host_meta) = fs::symlink_metadata(&host) else {
            return;
        };
        match fs::symlink_metadata(lower.join(rel)) {
            Err(_) if host_meta.file_type().is_symlink() => {
                if let Ok(target) = fs::read_link(&host) {
                    self.need(lower, rel, Kind::Symlink(target));
                }
            }
            Err(_) if host_meta.is_dir() => {
                if let Some(rel) = rel.to_str() {
                    self.bind(lower, &host, rel, false, false);
                }
            }
            Ok(image) if image.is_dir() && host_meta.is_dir() && depth < MAX_GAP_DEPTH => {
                let Ok(entries) = fs::read_dir(&host) else {
                    return;
                };
                let mut names: Vec<_> = entries
                    .filter_map(|e| e.ok())
                    .map(|e| e.file_name())
                    .collect();
                names.sort();
                for name in names {
                    let child = rel.join(&name);
                    // Only directories and symlinks are filled in below the top level: binding
                    // single files one by one would mean thousands of mounts.
                    match fs::symlink_metadata(host.join(&name)) {
                        Ok(m) if m.is_dir() || m.file_type().is_symlink() => {
                            self.fill_gap(lower, host_root, &child, depth + 1)
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }

    /// Creates the placeholders in `upper` (before the overlay is mounted).
    pub fn create(&mut self, lower: &Path, upper: &Path) -> Result<(), SandboxError> {
        for p in &self.placeholders {
            let mut ancestors: Vec<&Path> = p.rel.ancestors().skip(1).collect();
            ancestors.pop(); // the empty path
            for dir in ancestors.into_iter().rev() {
                let path = upper.join(dir);
                if fs::symlink_metadata(&path).is_ok() {
                    continue;
                }
                let image =
                    fs::symlink_metadata(lower.join(dir)).map_err(io("stat", &lower.join(dir)))?;
                fs::create_dir(&path).map_err(io("create", &path))?;
                fs::set_permissions(&path, image.permissions())
                    .map_err(io("set the mode of", &path))?;
                rustix::fs::chown(
                    &path,
                    Some(rustix::fs::Uid::from_raw(image.uid())),
                    Some(rustix::fs::Gid::from_raw(image.gid())),
                )
                .map_err(|e| SandboxError::Io {
                    action: "set the owner of",
                    path: path.clone(),
                    source: e.into(),
                })?;
                self.scaffolds.push(dir.to_path_buf());
            }
            let path = upper.join(&p.rel);
            match &p.kind {
                Kind::Dir => fs::create_dir(&path).map_err(io("create", &path))?,
                Kind::File => {
                    fs::File::create(&path).map_err(io("create", &path))?;
                }
                Kind::Symlink(target) => {
                    std::os::unix::fs::symlink(target, &path).map_err(io("create", &path))?
                }
            }
        }
        Ok(())
    }

    /// Removes the placeholders that are still exactly what [`MountPlan::create`] made, and
    /// the scaffold directories left empty, deepest first; anything the command put in or in
    /// place of them stays.
    pub fn remove(&self, upper: &Path) {
        let mut made: Vec<(&Path, Option<&Kind>)> = self
            .placeholders
            .iter()
            .map(|p| (p.rel.as_path(), Some(&p.kind)))
            .chain(self.scaffolds.iter().map(|d| (d.as_path(), None)))
            .collect();
        made.sort_by_key(|(rel, _)| std::cmp::Reverse(rel.components().count()));
        for (rel, kind) in made {
            let path = upper.join(rel);
            let Ok(meta) = fs::symlink_metadata(&path) else {
                continue;
            };
            let unchanged = match kind {
                None | Some(Kind::Dir) => meta.is_dir() && is_empty_dir(&path),
                Some(Kind::File) => meta.is_file() && meta.size() == 0,
                Some(Kind::Symlink(target)) => {
                    meta.file_type().is_symlink()
                        && fs::read_link(&path).is_ok_and(|t| &t == target)
                }
            };
            if unchanged {
                let _ = if meta.is_dir() {
                    fs::remove_dir(&path)
                } else {
                    fs::remove_file(&path)
                };
            }
        }
    }
}

fn is_empty_dir(path: &Path) -> bool {
    fs::read_dir(path).is_ok_and(|mut d| d.next().is_none())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(root: &Path, dirs: &[&str], files: &[&str]) {
        for d in dirs {
            fs::create_dir_all(root.join(d)).unwrap();
        }
        for f in files {
            fs::write(root.join(f), "x").unwrap();
        }
    }

    #[test]
    fn host_tools_fill_only_the_gaps_of_the_image() {
        let tmp = tempfile::tempdir().unwrap();
        let host = tmp.path().join("host");
        let image = tmp.path().join("image");
        tree(
            &host,
            &[
                "usr/bin",
                "usr/lib",
                "usr/local/bin",
                "usr/local/lib",
                "etc/ssl",
            ],
            &["usr/bin/tar", "etc/passwd", "etc/shadow", "etc/ld.so.cache"],
        );
        std::os::unix::fs::symlink("usr/bin", host.join("bin")).unwrap();
        tree(
            &image,
            &["usr/local/bin", "etc"],
            &["usr/local/bin/helm", "etc/passwd"],
        );

        let mut plan = MountPlan::default();
        plan.host_tools(&image, &host);
        let dests: Vec<&str> = plan.binds.iter().map(|b| b.dest.as_str()).collect();
        assert_eq!(
            dests,
            [
                "/usr/bin",
                "/usr/lib",
                "/usr/local/lib",
                "/etc/ld.so.cache",
                "/etc/ssl"
            ],
            "the image's /usr/local/bin and /etc/passwd win; /etc/shadow is never bound"
        );
        assert!(plan.binds.iter().all(|b| !b.writable));
        assert!(plan.placeholders.contains(&Placeholder {
            rel: "bin".into(),
            kind: Kind::Symlink("usr/bin".into())
        }));

        let upper = tmp.path().join("upper");
        fs::create_dir(&upper).unwrap();
        plan.create(&image, &upper).unwrap();
        assert!(upper.join("usr/bin").is_dir() && upper.join("etc/ld.so.cache").is_file());
        // The command wrote next to a placeholder: that stays, the placeholders go.
        fs::write(upper.join("usr/new-file"), "mine").unwrap();
        plan.remove(&upper);
        let mut left: Vec<_> = walkdir(&upper);
        left.sort();
        assert_eq!(left, ["usr", "usr/new-file"]);
    }

    #[test]
    fn a_file_in_the_way_skips_the_mount() {
        let tmp = tempfile::tempdir().unwrap();
        let image = tmp.path().join("image");
        fs::create_dir_all(&image).unwrap();
        tree(&image, &[], &["etc"]);
        let mut plan = MountPlan::default();
        assert_eq!(
            plan.need(&image, Path::new("etc/resolv.conf"), Kind::File),
            Need::Blocked
        );
        assert!(plan.placeholders.is_empty());
    }

    fn walkdir(root: &Path) -> Vec<String> {
        let mut out = Vec::new();
        let mut stack = vec![root.to_path_buf()];
        while let Some(dir) = stack.pop() {
            for e in fs::read_dir(&dir).unwrap() {
                let p = e.unwrap().path();
                out.push(p.strip_prefix(root).unwrap().to_string_lossy().into_owned());
                if p.is_dir() && !p.is_symlink() {
                    stack.push(p);
                }
            }
        }
        out
    }
}
