//! The unpacked rootfs as a chroot: every path is resolved component by component beneath
//! the root, symlinks included (an absolute target means the root's own path, as in a
//! chroot), and a path that climbs out with `..` is refused. Only regular files are read,
//! never devices or FIFOs (opened non-blocking and checked again after opening), and never
//! more than a caller's size bound.
//!
//! The tree is the builder's own unpacked copy, not changed while detection runs; the
//! checks are made on paths, with only the last component opened `O_NOFOLLOW`.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Component, Path, PathBuf};

/// Symlinks followed while resolving one path, as Linux's `MAXSYMLINKS`.
const MAX_HOPS: u32 = 40;

/// Why a file beneath the root was not read.
#[derive(Debug)]
pub(crate) enum Refusal {
    /// A symlink (or `..`) leads out of the root.
    Escapes,
    /// More than [`MAX_HOPS`] symlinks.
    Loop,
    /// Not a regular file: what it is.
    NotRegular(&'static str),
    /// Larger than the bound: its size.
    TooLarge(u64),
    /// Missing.
    Missing,
    /// Another I/O error.
    Io(io::Error),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Escapes => f.write_str("it leads out of the image root (symlink or `..`)"),
            Refusal::Loop => f.write_str("too many levels of symbolic links"),
            Refusal::NotRegular(kind) => write!(f, "it is a {kind}, not a regular file"),
            Refusal::TooLarge(size) => write!(f, "it is {size} bytes, larger than the bound"),
            Refusal::Missing => f.write_str("it does not exist"),
            Refusal::Io(e) => write!(f, "{e}"),
        }
    }
}

/// What a directory entry is (not followed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A directory.
    Dir,
    /// A regular file.
    File,
    /// A symbolic link.
    Symlink,
    /// A device, FIFO or socket.
    Other(&'static str),
}

fn kind_of(ft: fs::FileType) -> Kind {
    use std::os::unix::fs::FileTypeExt;
    if ft.is_dir() {
        Kind::Dir
    } else if ft.is_file() {
        Kind::File
    } else if ft.is_symlink() {
        Kind::Symlink
    } else if ft.is_fifo() {
        Kind::Other("fifo")
    } else if ft.is_socket() {
        Kind::Other("socket")
    } else if ft.is_block_device() {
        Kind::Other("block device")
    } else if ft.is_char_device() {
        Kind::Other("character device")
    } else {
        Kind::Other("special file")
    }
}

/// The image root.
#[derive(Debug)]
pub(crate) struct Root {
    base: PathBuf,
}

impl Root {
    /// Opens `base`, which must be a readable directory.
    pub(crate) fn open(base: &Path) -> io::Result<Root> {
        let meta = fs::metadata(base)?;
        if !meta.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::NotADirectory,
                "not a directory",
            ));
        }
        fs::read_dir(base)?;
        Ok(Root {
            base: base.to_path_buf(),
        })
    }

    /// `rel` with every symlink resolved beneath the root; `Missing` when a part is absent.
    pub(crate) fn resolve(&self, rel: &Path) -> Result<PathBuf, Refusal> {
        let mut pending: VecDeque<OsString> = components(rel)?;
        let mut cur = PathBuf::new();
        let mut hops = 0;
        while let Some(c) = pending.pop_front() {
            if c == ".." {
                if !cur.pop() {
                    return Err(Refusal::Escapes);
                }
                continue;
            }
            let next = cur.join(&c);
            let meta = match fs::symlink_metadata(self.base.join(&next)) {
                Ok(m) => m,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(Refusal::Missing),
                Err(e) if e.raw_os_error() == Some(20) => return Err(Refusal::Missing),
                Err(e) => return Err(Refusal::Io(e)),
            };
            if !meta.file_type().is_symlink() {
                cur = next;
                continue;
            }
            hops += 1;
            if hops > MAX_HOPS {
                return Err(Refusal::Loop);
            }
            let target = fs::read_link(self.base.join(&next)).map_err(Refusal::Io)?;
            if target.is_absolute() {
                cur = PathBuf::new();
            }
            let mut front = components(&target)?;
            front.extend(pending);
            pending = front;
        }
        Ok(cur)
    }

    /// What `rel` is once resolved.
    pub(crate) fn kind(&self, rel: &Path) -> Result<(PathBuf, Kind), Refusal> {
        let real = self.resolve(rel)?;
        let meta = fs::symlink_metadata(self.base.join(&real)).map_err(Refusal::Io)?;
        Ok((real, kind_of(meta.file_type())))
    }

    /// Whether `rel` resolves to a directory.
    pub(crate) fn is_dir(&self, rel: &Path) -> bool {
        matches!(self.kind(rel), Ok((_, Kind::Dir)))
    }

    /// Whether `rel` resolves to a regular file.
    pub(crate) fn is_file(&self, rel: &Path) -> bool {
        matches!(self.kind(rel), Ok((_, Kind::File)))
    }

    /// The entries of directory `rel` (resolved), sorted by name, not followed.
    pub(crate) fn list(&self, rel: &Path) -> Result<Vec<(String, Kind)>, Refusal> {
        let real = self.resolve(rel)?;
        let mut out = Vec::new();
        let dir = fs::read_dir(self.base.join(&real)).map_err(Refusal::Io)?;
        for entry in dir {
            let entry = entry.map_err(Refusal::Io)?;
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            let ft = entry.file_type().map_err(Refusal::Io)?;
            out.push((name, kind_of(ft)));
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    /// The bytes of the regular file `rel`, at most `limit` of them.
    pub(crate) fn read(&self, rel: &Path, limit: u64) -> Result<Vec<u8>, Refusal> {
        let (real, kind) = self.kind(rel)?;
        match kind {
            Kind::File => {}
            Kind::Dir => return Err(Refusal::NotRegular("directory")),
            Kind::Symlink => return Err(Refusal::Loop),
            Kind::Other(k) => return Err(Refusal::NotRegular(k)),
        }
        let file = fs::OpenOptions::new()
            .read(true)
            .custom_flags(
                (rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::NONBLOCK).bits() as i32,
            )
            .open(self.base.join(&real))
            .map_err(Refusal::Io)?;
        let meta = file.metadata().map_err(Refusal::Io)?;
        if !meta.is_file() {
            return Err(Refusal::NotRegular("special file"));
        }
        if meta.len() > limit {
            return Err(Refusal::TooLarge(meta.len()));
        }
        let mut data = Vec::with_capacity(meta.len() as usize);
        file.take(limit + 1)
            .read_to_end(&mut data)
            .map_err(Refusal::Io)?;
        if data.len() as u64 > limit {
            return Err(Refusal::TooLarge(data.len() as u64));
        }
        Ok(data)
    }
}

fn components(p: &Path) -> Result<VecDeque<OsString>, Refusal> {
    let mut out = VecDeque::new();
    for c in p.components() {
        match c {
            Component::Normal(n) => out.push_back(n.to_os_string()),
            Component::ParentDir => out.push_back(OsString::from("..")),
            Component::CurDir | Component::RootDir => {}
            Component::Prefix(_) => return Err(Refusal::Escapes),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn symlinks_resolve_beneath_the_root() {
        let outer = tempfile::tempdir().unwrap();
        let base = outer.path().join("root");
        fs::create_dir_all(base.join("a/b")).unwrap();
        fs::write(base.join("a/b/f.yaml"), "x: 1").unwrap();
        fs::write(outer.path().join("secret.yaml"), "s: 1").unwrap();
        symlink("b/f.yaml", base.join("a/rel")).unwrap();
        symlink("/a/b/f.yaml", base.join("abs")).unwrap();
        symlink("../../secret.yaml", base.join("a/out")).unwrap();
        symlink("loop", base.join("loop")).unwrap();
        let root = Root::open(&base).unwrap();
        assert_eq!(root.read(Path::new("a/rel"), 100).unwrap(), b"x: 1");
        assert_eq!(root.read(Path::new("abs"), 100).unwrap(), b"x: 1");
        assert!(matches!(
            root.read(Path::new("a/out"), 100),
            Err(Refusal::Escapes)
        ));
        assert!(matches!(
            root.read(Path::new("loop"), 100),
            Err(Refusal::Loop)
        ));
        assert!(matches!(
            root.read(Path::new("a/b/f.yaml"), 2),
            Err(Refusal::TooLarge(4))
        ));
        assert!(matches!(
            root.read(Path::new("a"), 100),
            Err(Refusal::NotRegular("directory"))
        ));
        assert!(matches!(
            root.read(Path::new("nope"), 100),
            Err(Refusal::Missing)
        ));
    }

    #[test]
    fn fifos_are_not_read() {
        let dir = tempfile::tempdir().unwrap();
        rustix::fs::mkfifoat(
            rustix::fs::CWD,
            dir.path().join("p.yaml"),
            rustix::fs::Mode::RWXU,
        )
        .unwrap();
        let root = Root::open(dir.path()).unwrap();
        assert!(matches!(
            root.read(Path::new("p.yaml"), 100),
            Err(Refusal::NotRegular("fifo"))
        ));
    }
}
