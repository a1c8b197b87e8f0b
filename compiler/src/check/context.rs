//! The build context: the directory whose files `COPY`, `ADD` and `APP local://` read.
//!
//! This module is the only place of the checker that touches the file system. It resolves a
//! source path (after variable expansion) to the context paths it names — rejecting paths
//! that leave the context lexically (`..`, absolute) or through a symbolic link, applying
//! `.kubefileignore` and expanding globs — and lists the files under a source for app type
//! detection and for the content digest of a build step. Problems with the user's input are
//! returned as [`Problem`]s (the caller turns them into diagnostics); only real I/O failures
//! are errors.

use super::ignore::{self, Ignore, IgnoreError, Pattern};
use std::cell::OnceCell;
use std::io;
use std::path::{Path, PathBuf};

/// An I/O failure while reading the build context (not a problem of the Kubefile).
#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    /// The context directory itself cannot be used.
    #[error("cannot use the build context {}", path.display())]
    Root {
        /// The directory given.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A file or directory inside the context cannot be read.
    #[error("cannot read {} in the build context", path.display())]
    Read {
        /// The path.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
}

/// Why a source cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// Nothing at that path.
    NotFound,
    /// The path is absolute or climbs out with `..`.
    Escapes,
    /// The path (or a directory on the way) is a symbolic link that leads outside.
    SymlinkEscapes,
    /// `.kubefileignore` excludes it.
    Ignored,
    /// A glob that matches nothing.
    NoMatch,
}

/// What a listed path is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EntryKind {
    /// A directory.
    Dir,
    /// A regular file.
    File,
    /// A symbolic link (never followed inside a source).
    Symlink,
    /// Anything else (fifo, socket, device).
    Other,
}

/// One path under a source.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Relative to the source (`""` for the source itself), slash-separated.
    pub rel: String,
    /// The path on disk.
    pub path: PathBuf,
    /// What it is.
    pub kind: EntryKind,
    /// Unix permission bits (`0o7777` mask).
    pub mode: u32,
    /// Size in bytes (files).
    pub size: u64,
    /// What `lstat` said when the context was walked (`stat` for the source itself), so a
    /// content digest needs no second `stat` per file.
    pub stat: Stat,
}

/// The parts of a `stat` the checker and the content digest use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
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

impl Stat {
    fn of(st: &rustix::fs::Stat) -> Stat {
        Stat {
            dev: st.st_dev,
            ino: st.st_ino,
            size: st.st_size as u64,
            mtime_ns: st.st_mtime as i128 * 1_000_000_000 + st.st_mtime_nsec as i128,
            ctime_ns: st.st_ctime as i128 * 1_000_000_000 + st.st_ctime_nsec as i128,
        }
    }
}

/// An opened build context.
#[derive(Debug)]
pub struct Context {
    root: PathBuf,
    ignore: Ignore,
    all: OnceCell<Vec<String>>,
}

fn read_err(path: &Path) -> impl FnOnce(io::Error) -> ContextError + '_ {
    move |source| ContextError::Read {
        path: path.to_path_buf(),
        source,
    }
}

fn kind_of(st: &rustix::fs::Stat) -> EntryKind {
    match rustix::fs::FileType::from_raw_mode(st.st_mode) {
        rustix::fs::FileType::Symlink => EntryKind::Symlink,
        rustix::fs::FileType::Directory => EntryKind::Dir,
        rustix::fs::FileType::RegularFile => EntryKind::File,
        _ => EntryKind::Other,
    }
}

impl Context {
    /// Opens `root` and reads its `.kubefileignore` (invalid lines are returned).
    pub fn open(root: &Path) -> Result<(Context, Vec<IgnoreError>), ContextError> {
        let canonical = root.canonicalize().map_err(|source| ContextError::Root {
            path: root.to_path_buf(),
            source,
        })?;
        if !canonical.is_dir() {
            return Err(ContextError::Root {
                path: root.to_path_buf(),
                source: io::Error::new(io::ErrorKind::NotADirectory, "not a directory"),
            });
        }
        let ignore_path = canonical.join(".kubefileignore");
        let (ignore, errors) = match std::fs::read_to_string(&ignore_path) {
            Ok(text) => Ignore::parse(&text),
            Err(e) if e.kind() == io::ErrorKind::NotFound => (Ignore::default(), Vec::new()),
            Err(source) => {
                return Err(ContextError::Read {
                    path: ignore_path,
                    source,
                })
            }
        };
        Ok((
            Context {
                root: canonical,
                ignore,
                all: OnceCell::new(),
            },
            errors,
        ))
    }

    /// The canonical context directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Resolves a source path to the context paths it names (one, or several for a glob),
    /// relative and cleaned (`.` for the context itself).
    pub fn resolve(&self, path: &str) -> Result<Result<Vec<String>, Problem>, ContextError> {
        if path.starts_with('/') {
            return Ok(Err(Problem::Escapes));
        }
        let cleaned = ignore::clean(path);
        if cleaned == ".." || cleaned.starts_with("../") {
            return Ok(Err(Problem::Escapes));
        }
        if ignore::has_glob(&cleaned) {
            let Ok(pattern) = Pattern::new(&cleaned) else {
                return Ok(Err(Problem::NoMatch));
            };
            let mut matches = Vec::new();
            for candidate in self.all_paths()? {
                if pattern.matches(candidate) {
                    match self.check_inside(candidate)? {
                        Ok(()) => matches.push(candidate.clone()),
                        Err(p) => return Ok(Err(p)),
                    }
                }
            }
            return Ok(if matches.is_empty() {
                Err(Problem::NoMatch)
            } else {
                Ok(matches)
            });
        }
        if let Err(p) = self.check_inside(&cleaned)? {
            return Ok(Err(p));
        }
        if cleaned != "." && self.ignore.is_excluded(&cleaned) {
            return Ok(Err(Problem::Ignored));
        }
        Ok(Ok(vec![cleaned]))
    }

    /// Checks that a cleaned relative path exists and resolves inside the context.
    fn check_inside(&self, rel: &str) -> Result<Result<(), Problem>, ContextError> {
        let full = self.root.join(rel);
        match full.canonicalize() {
            Ok(real) if real.starts_with(&self.root) => Ok(Ok(())),
            Ok(_) => Ok(Err(Problem::SymlinkEscapes)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                // A dangling link that points outside is still an escape.
                match std::fs::read_link(&full) {
                    Ok(target) if target.is_absolute() || target.starts_with("..") => {
                        Ok(Err(Problem::SymlinkEscapes))
                    }
                    _ => Ok(Err(Problem::NotFound)),
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotADirectory => Ok(Err(Problem::NotFound)),
            Err(source) => Err(ContextError::Read { path: full, source }),
        }
    }

    /// Every path of the context that `.kubefileignore` keeps, sorted.
    fn all_paths(&self) -> Result<&Vec<String>, ContextError> {
        if let Some(all) = self.all.get() {
            return Ok(all);
        }
        let entries = self.walk(".")?;
        let all = entries
            .into_iter()
            .filter(|e| !e.rel.is_empty())
            .map(|e| e.rel)
            .collect();
        Ok(self.all.get_or_init(|| all))
    }

    /// Lists a resolved source (from [`Self::resolve`]): the source itself (`rel == ""`)
    /// and, for a directory, everything below it that `.kubefileignore` keeps, sorted by
    /// path. Symbolic links below the source are listed, not followed.
    ///
    /// Each directory is read through its own descriptor and each entry `lstat`ed relative
    /// to it (`fstatat`), so the kernel resolves one name per entry instead of its whole path:
    /// the walk is most of an unchanged rebuild.
    pub fn walk(&self, source: &str) -> Result<Vec<Entry>, ContextError> {
        use rustix::fs::{Mode, OFlags};
        let top = self.root.join(source);
        let prefix = if source == "." {
            String::new()
        } else {
            format!("{source}/")
        };
        let st = rustix::fs::stat(&top).map_err(|e| read_err(&top)(e.into()))?;
        let mut out = vec![Entry {
            rel: String::new(),
            path: top.clone(),
            kind: kind_of(&st),
            mode: st.st_mode & 0o7777,
            size: st.st_size as u64,
            stat: Stat::of(&st),
        }];
        if out[0].kind == EntryKind::Dir {
            let fd = rustix::fs::open(
                &top,
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| read_err(&top)(e.into()))?;
            self.walk_dir(fd, &top, "", &prefix, &mut out)?;
        }
        Ok(out)
    }

    /// Appends the entries below the open directory `fd` (at `path`, `rel` below the source)
    /// in sorted pre-order. The directory stream owns the descriptor, and the same descriptor
    /// serves `fstatat` and `openat` (which do not move its position).
    fn walk_dir(
        &self,
        fd: rustix::fd::OwnedFd,
        path: &Path,
        rel: &str,
        prefix: &str,
        out: &mut Vec<Entry>,
    ) -> Result<(), ContextError> {
        use rustix::fs::{AtFlags, Mode, OFlags};
        use std::os::unix::ffi::OsStrExt;
        let mut names: Vec<Vec<u8>> = Vec::new();
        let mut dir = rustix::fs::Dir::new(fd).map_err(|e| read_err(path)(e.into()))?;
        for item in dir.by_ref() {
            let item = item.map_err(|e| read_err(path)(e.into()))?;
            let name = item.file_name().to_bytes();
            if name != b"." && name != b".." {
                names.push(name.to_vec());
            }
        }
        names.sort_unstable();
        let fd = dir.fd().map_err(|e| read_err(path)(e.into()))?;
        for name in names {
            let os = std::ffi::OsStr::from_bytes(&name);
            let child_path = path.join(os);
            let child_rel = if rel.is_empty() {
                os.to_string_lossy().into_owned()
            } else {
                format!("{rel}/{}", os.to_string_lossy())
            };
            let excluded = self.ignore.is_excluded(&format!("{prefix}{child_rel}"));
            if excluded && self.ignore.can_prune() {
                continue;
            }
            let st = rustix::fs::statat(fd, os, AtFlags::SYMLINK_NOFOLLOW)
                .map_err(|e| read_err(&child_path)(e.into()))?;
            let kind = kind_of(&st);
            let is_dir = kind == EntryKind::Dir;
            if !excluded {
                out.push(Entry {
                    rel: child_rel.clone(),
                    path: child_path.clone(),
                    kind,
                    mode: st.st_mode & 0o7777,
                    size: st.st_size as u64,
                    stat: Stat::of(&st),
                });
            }
            if is_dir {
                let child = rustix::fs::openat(
                    fd,
                    os,
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(|e| read_err(&child_path)(e.into()))?;
                self.walk_dir(child, &child_path, &child_rel, prefix, out)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_and_rejects() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("a/b")).unwrap();
        std::fs::write(root.join("a/b/x.yaml"), "x").unwrap();
        std::fs::write(root.join("a/y.swp"), "y").unwrap();
        std::fs::write(root.join(".kubefileignore"), "**/*.swp\n").unwrap();
        #[cfg(unix)]
        std::os::unix::fs::symlink("/etc", root.join("out")).unwrap();
        let (ctx, errs) = Context::open(root).unwrap();
        assert!(errs.is_empty());
        assert_eq!(ctx.resolve("./a/b/").unwrap(), Ok(vec!["a/b".to_string()]));
        assert_eq!(ctx.resolve("../x").unwrap(), Err(Problem::Escapes));
        assert_eq!(ctx.resolve("/etc").unwrap(), Err(Problem::Escapes));
        assert_eq!(ctx.resolve("nope").unwrap(), Err(Problem::NotFound));
        assert_eq!(ctx.resolve("a/y.swp").unwrap(), Err(Problem::Ignored));
        assert_eq!(ctx.resolve("a/*").unwrap(), Ok(vec!["a/b".to_string()]));
        assert_eq!(ctx.resolve("*.none").unwrap(), Err(Problem::NoMatch));
        #[cfg(unix)]
        assert_eq!(
            ctx.resolve("out/passwd").unwrap(),
            Err(Problem::SymlinkEscapes)
        );
        let rels: Vec<String> = ctx.walk("a").unwrap().into_iter().map(|e| e.rel).collect();
        assert_eq!(rels, vec!["", "b", "b/x.yaml"]);
    }
}
