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
use walkdir::WalkDir;

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
    pub meta: std::fs::Metadata,
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

#[cfg(unix)]
fn mode_of(meta: &std::fs::Metadata) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    meta.permissions().mode() & 0o7777
}

#[cfg(not(unix))]
fn mode_of(meta: &std::fs::Metadata) -> u32 {
    if meta.permissions().readonly() {
        0o444
    } else {
        0o644
    }
}

fn kind_of(ft: std::fs::FileType) -> EntryKind {
    if ft.is_symlink() {
        EntryKind::Symlink
    } else if ft.is_dir() {
        EntryKind::Dir
    } else if ft.is_file() {
        EntryKind::File
    } else {
        EntryKind::Other
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
    pub fn walk(&self, source: &str) -> Result<Vec<Entry>, ContextError> {
        let top = self.root.join(source);
        let prefix = if source == "." {
            String::new()
        } else {
            format!("{source}/")
        };
        let mut out = Vec::new();
        let walker = WalkDir::new(&top)
            .follow_links(false)
            .follow_root_links(true)
            .sort_by_file_name()
            .into_iter()
            .filter_entry(|e| {
                if e.depth() == 0 || !self.ignore.can_prune() {
                    return true;
                }
                let rel = e.path().strip_prefix(&top).unwrap_or(e.path());
                !self.ignore.is_excluded(&format!("{prefix}{}", slash(rel)))
            });
        for item in walker {
            let item = item.map_err(|e| {
                let path = e.path().unwrap_or(&top).to_path_buf();
                ContextError::Read {
                    path,
                    source: e.into_io_error().unwrap_or_else(|| {
                        io::Error::other("a symbolic link loop in the build context")
                    }),
                }
            })?;
            let rel = slash(item.path().strip_prefix(&top).unwrap_or(item.path()));
            if item.depth() > 0 && self.ignore.is_excluded(&format!("{prefix}{rel}")) {
                continue;
            }
            let meta = if item.depth() == 0 {
                std::fs::metadata(item.path())
            } else {
                std::fs::symlink_metadata(item.path())
            }
            .map_err(read_err(item.path()))?;
            out.push(Entry {
                rel,
                path: item.path().to_path_buf(),
                kind: kind_of(meta.file_type()),
                mode: mode_of(&meta),
                size: meta.len(),
                meta,
            });
        }
        Ok(out)
    }
}

fn slash(path: &Path) -> String {
    path.components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
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
