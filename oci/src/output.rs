//! User-named outputs: the one place that decides how `chasi export -o PATH` and
//! `chasi save -o PATH` write PATH, so every writer (tar, squashfs, ISO, the disk formats,
//! oci-archive, docker-archive, the files of an OCI layout) follows the same rules:
//!
//! | what is at the path | how it is written |
//! |---|---|
//! | nothing, or a regular file | atomically: a temporary file in the same directory, `fsync`, rename over the path, `fsync` of the directory |
//! | a FIFO, a character device (`/dev/null`, `/dev/full`), a block device (`/dev/sdb`, a loop device) | in place: opened for writing, never truncated, unlinked or renamed over |
//! | `-`, `/dev/stdout` | the process's standard output (refused when it is a terminal) |
//! | a symlink | followed; its target is treated by these rules (a dangling link creates its target) |
//! | a directory, a socket | refused (`save --format oci` writes a directory itself, and uses this type for the files in it) |
//!
//! Why in place: an output path that is not a regular file is something the user set up (a
//! pipe to another program, a disk, the bit bucket); replacing it with a file would destroy
//! it, and running as root that means deleting a device node. A block device is opened with
//! `O_EXCL`, which the kernel refuses while the device is mounted or claimed, so `-o /dev/sda`
//! with a mounted root fails instead of overwriting it.
//!
//! Seeking: most writers stream. Those that seek back (`chasi_formats::qcow2`) ask for
//! [`Output::create_seekable`], which accepts regular files and block devices and refuses a
//! pipe, a character device or standard output, naming it, before anything is written. The
//! raw writer writes sparse files by seeking over holes but writes the zeros of an in-place
//! output, so a pipe gets the whole image and a reused disk has no stale data left.
//!
//! Files are created with mode 0644 minus the process umask (the kernel applies it).
//!
//! Temporary files are named `.<name>.chasi-partial.<random>` and `flock`ed while they are
//! written. They live next to the output, not in the store: the final rename must stay on
//! the output's file system, or a large image would have to be copied again after it was
//! written. A process killed mid-way leaves its temporary file; the next output created in
//! that directory removes every such file whose lock it can take (its writer is dead).
//! Work *directories* (unpacked root file systems, partition images) are the exporters' and
//! live in the store's session `tmp/`, which the next store open and `gc` clean.
//!
//! Durability: a temporary file is made durable (`fsync`) before the rename, and the
//! directory after it. So that this costs little, the [`SyncAhead`] writer starts
//! `fdatasync` in a background thread every 64 MiB written: the disk writes back while we
//! keep producing, and the final sync only has the tail left. Block devices are synced at
//! the end; pipes and character devices cannot be and are not.

use std::fs::{self, File, OpenOptions};
use std::io::{self, IsTerminal, Seek, SeekFrom, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;

use rustix::fs::FlockOperation;

/// Result alias of the output rules.
pub type Result<T, E = OutputError> = std::result::Result<T, E>;

/// Why an output path cannot be written by these rules.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    /// An I/O call on a named file failed.
    #[error("cannot {action} {path}")]
    Io {
        /// What was being done ("create", "sync", "rename into place", ...).
        action: &'static str,
        /// The file involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The path is something these rules refuse (a directory, a socket, a terminal, ...).
    #[error("cannot write the output {path}: {reason}")]
    Refused {
        /// The output path as given.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A writer that seeks was given a pipe, a character device or standard output.
    #[error("{format} output needs a seekable file (a regular file or a block device); {path} is {what}")]
    NotSeekable {
        /// The output format.
        format: &'static str,
        /// The output path as given.
        path: PathBuf,
        /// What it is ("a pipe", ...).
        what: &'static str,
    },
}

impl OutputError {
    /// Builds a closure that wraps an `io::Error` with an action and a path.
    pub fn io(action: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Self {
        let path = path.into();
        move |source| OutputError::Io {
            action,
            path,
            source,
        }
    }
}

/// The marker in the names of temporary output files.
const PARTIAL: &str = ".chasi-partial.";

/// Symlinks followed at most while resolving a dangling output path (Linux's `MAXSYMLINKS`).
const MAX_LINKS: usize = 40;

/// What an output path is, which decides how it is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputKind {
    /// Nothing at the path, or a regular file: written atomically (temporary file + rename).
    File,
    /// A named pipe, written in place.
    Fifo,
    /// A character device (`/dev/null`, a tape), written in place.
    CharDevice,
    /// A block device (a disk, a loop device), written in place.
    BlockDevice,
    /// The process's standard output.
    Stdout,
}

impl OutputKind {
    /// Whether a writer can seek in it (a regular file or a block device).
    pub fn is_seekable(self) -> bool {
        matches!(self, OutputKind::File | OutputKind::BlockDevice)
    }

    /// Whether it is written in place rather than replaced.
    pub fn in_place(self) -> bool {
        self != OutputKind::File
    }

    /// For messages: "a pipe", "a character device", ...
    pub fn what(self) -> &'static str {
        match self {
            OutputKind::File => "a regular file",
            OutputKind::Fifo => "a pipe",
            OutputKind::CharDevice => "a character device",
            OutputKind::BlockDevice => "a block device",
            OutputKind::Stdout => "standard output",
        }
    }

    fn syncable(self) -> bool {
        self.is_seekable()
    }
}

/// An output path classified by the rules of this module (nothing is opened).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The path as given (for messages).
    pub path: PathBuf,
    /// What it is.
    pub kind: OutputKind,
    /// The path with symlinks followed: the file renamed into place, or the node opened.
    pub resolved: PathBuf,
}

/// Whether `path` names standard output (`-`, `/dev/stdout`, `/dev/fd/1`, `/proc/self/fd/1`).
pub fn is_stdout(path: &Path) -> bool {
    ["-", "/dev/stdout", "/dev/fd/1", "/proc/self/fd/1"]
        .iter()
        .any(|s| path.as_os_str() == *s)
}

fn refuse(path: &Path, reason: impl Into<String>) -> OutputError {
    OutputError::Refused {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// The directory holding `path` (`.` for a bare name).
pub fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Classifies `path` by the rules of this module: follows symlinks, refuses directories
/// and sockets, and checks that a file to create has an existing folder.
pub fn inspect(path: &Path) -> Result<Target> {
    if is_stdout(path) {
        return Ok(Target {
            path: path.to_path_buf(),
            kind: OutputKind::Stdout,
            resolved: path.to_path_buf(),
        });
    }
    match fs::metadata(path) {
        Ok(m) => classify(path, path, &m),
        Err(e) if e.kind() == io::ErrorKind::NotFound => missing(path),
        Err(e) => Err(OutputError::io("inspect the output", path)(e)),
    }
}

fn kind_of(path: &Path, m: &fs::Metadata) -> Result<OutputKind> {
    let ft = m.file_type();
    Ok(if ft.is_file() {
        OutputKind::File
    } else if ft.is_dir() {
        return Err(refuse(path, "it is a directory"));
    } else if ft.is_fifo() {
        OutputKind::Fifo
    } else if ft.is_char_device() {
        OutputKind::CharDevice
    } else if ft.is_block_device() {
        OutputKind::BlockDevice
    } else if ft.is_socket() {
        return Err(refuse(path, "it is a socket"));
    } else {
        return Err(refuse(path, "it is not a file, pipe or device"));
    })
}

/// `m` is the metadata of `at` (which `path` leads to, links followed).
fn classify(path: &Path, at: &Path, m: &fs::Metadata) -> Result<Target> {
    let kind = kind_of(path, m)?;
    let resolved = if kind == OutputKind::File {
        fs::canonicalize(at).map_err(OutputError::io("resolve", at))?
    } else {
        at.to_path_buf()
    };
    Ok(Target {
        path: path.to_path_buf(),
        kind,
        resolved,
    })
}

/// Nothing exists at `path`: it is missing or a dangling symlink, whose target is created.
fn missing(path: &Path) -> Result<Target> {
    let mut p = path.to_path_buf();
    for _ in 0..MAX_LINKS {
        match fs::symlink_metadata(&p) {
            Ok(m) if m.file_type().is_symlink() => {
                let link = fs::read_link(&p).map_err(OutputError::io("read the link", &p))?;
                p = parent_dir(&p).join(link);
            }
            // Appeared meanwhile.
            Ok(m) => return classify(path, &p, &m),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if p.file_name().is_none() {
                    return Err(refuse(path, "the path has no file name"));
                }
                let dir = parent_dir(&p);
                if !dir.is_dir() {
                    return Err(refuse(
                        path,
                        format!("the folder {} does not exist", dir.display()),
                    ));
                }
                return Ok(Target {
                    path: path.to_path_buf(),
                    kind: OutputKind::File,
                    resolved: p,
                });
            }
            Err(e) => return Err(OutputError::io("inspect the output", &p)(e)),
        }
    }
    Err(refuse(path, "too many levels of symbolic links"))
}

/// Inspects `path` for a writer that seeks (`format` names it in the error).
pub fn inspect_seekable(path: &Path, format: &'static str) -> Result<Target> {
    let t = inspect(path)?;
    if !t.kind.is_seekable() {
        return Err(OutputError::NotSeekable {
            format,
            path: path.to_path_buf(),
            what: match t.kind {
                OutputKind::Stdout => stdout_what(),
                k => k.what(),
            },
        });
    }
    Ok(t)
}

/// What standard output is, for messages: "standard output, a pipe", ...
fn stdout_what() -> &'static str {
    match rustix::fs::fstat(io::stdout().as_fd()) {
        Ok(st) => match rustix::fs::FileType::from_raw_mode(st.st_mode) {
            rustix::fs::FileType::Fifo => "standard output, a pipe",
            rustix::fs::FileType::RegularFile => "standard output (not seekable here)",
            rustix::fs::FileType::CharacterDevice => "standard output, a character device",
            rustix::fs::FileType::Socket => "standard output, a socket",
            _ => "standard output",
        },
        Err(_) => "standard output",
    }
}

/// Where and how far an output was written (in-place outputs have no file length to ask).
#[derive(Debug, Default, Clone, Copy)]
struct Extent {
    pos: u64,
    end: u64,
}

impl Extent {
    fn wrote(&mut self, n: usize) {
        self.pos += n as u64;
        self.end = self.end.max(self.pos);
    }
}

/// An open output: a temporary file to rename into place, or an in-place node. Dropped
/// without [`Output::commit`], a temporary file is removed.
#[derive(Debug)]
pub struct Output {
    file: File,
    target: Target,
    /// The temporary file (atomic outputs) until it is renamed.
    temp: Option<PathBuf>,
    sync: bool,
    /// The temporary file was handed to an external program, which writes it by path.
    external: bool,
    extent: Extent,
}

impl Output {
    /// Opens `path` by the rules of this module.
    pub fn create(path: &Path) -> Result<Self> {
        Self::open(inspect(path)?)
    }

    /// Opens `path` for a writer that seeks: a pipe, a character device or standard output
    /// is refused, naming `format`.
    pub fn create_seekable(path: &Path, format: &'static str) -> Result<Self> {
        Self::open(inspect_seekable(path, format)?)
    }

    /// Opens an inspected target. Opening a FIFO waits for its reader.
    pub fn open(target: Target) -> Result<Self> {
        let (file, temp) = match target.kind {
            OutputKind::File => {
                let (f, p) = create_partial(&target.resolved)?;
                (f, Some(p))
            }
            OutputKind::Stdout => (dup_stdout(&target.path)?, None),
            _ => (open_in_place(&target)?, None),
        };
        Ok(Output {
            file,
            target,
            temp,
            sync: true,
            external: false,
            extent: Extent::default(),
        })
    }

    /// What the output is.
    pub fn kind(&self) -> OutputKind {
        self.target.kind
    }

    /// The output path as given: what errors name (never the temporary file).
    pub fn path(&self) -> &Path {
        &self.target.path
    }

    /// The open file (the temporary file, or the in-place node).
    pub fn file(&mut self) -> &mut File {
        &mut self.file
    }

    /// The temporary file, when the output is written atomically.
    pub fn temp_path(&self) -> Option<&Path> {
        self.temp.as_deref()
    }

    /// Whether to make the output durable (`fsync`) before the rename (default: yes).
    /// Without it an interrupted process still leaves nothing under the final name, but a
    /// crash of the machine may.
    pub fn set_sync(&mut self, sync: bool) {
        self.sync = sync;
    }

    /// The size of a block device (`None` for other outputs).
    pub fn capacity(&mut self) -> Result<Option<u64>> {
        if self.kind() != OutputKind::BlockDevice {
            return Ok(None);
        }
        let path = self.target.path.clone();
        let size = self
            .file
            .seek(SeekFrom::End(0))
            .map_err(OutputError::io("measure", &path))?;
        self.file
            .seek(SeekFrom::Start(self.extent.pos))
            .map_err(OutputError::io("seek in", &path))?;
        Ok(Some(size))
    }

    /// A writer over the output that syncs ahead in the background (when syncing a file or
    /// a block device).
    pub fn writer(&mut self) -> SyncAhead<'_> {
        let enabled = self.sync && self.target.kind.syncable();
        SyncAhead {
            file: &mut self.file,
            extent: &mut self.extent,
            since: 0,
            pending: None,
            enabled,
            failed: None,
        }
    }

    /// The path an external program should write the output to, when it can be the
    /// temporary file itself (atomic outputs); `None` for in-place outputs, which the
    /// program's result is then copied into ([`Output::copy_from`]).
    pub fn path_for_tool(&mut self) -> Option<PathBuf> {
        self.external = self.temp.is_some();
        self.temp.clone()
    }

    /// Copies a finished file into the output; returns the bytes copied.
    pub fn copy_from(&mut self, src: &Path) -> Result<u64> {
        let mut f = File::open(src).map_err(OutputError::io("open", src))?;
        let n = io::copy(&mut f, &mut self.file)
            .map_err(OutputError::io("write", &self.target.path))?;
        self.extent.pos += n;
        self.extent.end = self.extent.end.max(self.extent.pos);
        Ok(n)
    }

    /// Finishes the output: an atomic one is synced and renamed over its path (then its
    /// directory synced); an in-place block device is synced. Returns the output's size.
    pub fn commit(mut self) -> Result<u64> {
        let path = self.target.path.clone();
        self.file.flush().map_err(OutputError::io("write", &path))?;
        let Some(temp) = self.temp.clone() else {
            if self.sync && self.kind() == OutputKind::BlockDevice {
                self.file
                    .sync_all()
                    .map_err(OutputError::io("sync", &path))?;
            }
            return Ok(self.extent.end);
        };
        let written = if self.external {
            File::open(&temp).map_err(OutputError::io("open", &temp))?
        } else {
            self.file
                .try_clone()
                .map_err(OutputError::io("open", &temp))?
        };
        if self.sync {
            written.sync_all().map_err(OutputError::io("sync", &temp))?;
        }
        let size = written
            .metadata()
            .map_err(OutputError::io("stat", &temp))?
            .len();
        let dest = &self.target.resolved;
        // The path was a file or nothing when opened; never rename over anything else.
        if let Ok(m) = fs::symlink_metadata(dest) {
            if !m.file_type().is_file() {
                return Err(refuse(
                    &path,
                    "it was replaced by something that is not a regular file while writing",
                ));
            }
        }
        fs::rename(&temp, dest).map_err(OutputError::io("rename into place", dest))?;
        self.temp = None;
        if self.sync {
            let dir = parent_dir(dest);
            File::open(&dir)
                .and_then(|d| d.sync_all())
                .map_err(OutputError::io("sync the folder", &dir))?;
        }
        Ok(size)
    }
}

impl Drop for Output {
    fn drop(&mut self) {
        if let Some(t) = self.temp.take() {
            let _ = fs::remove_file(t);
        }
    }
}

/// Whether the open `file` is still the one named `path` (a sweeper may have removed it).
fn still_linked(file: &File, path: &Path) -> bool {
    match (file.metadata(), fs::symlink_metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

/// Creates the flocked temporary file for `dest` in its directory (mode 0644 minus the
/// umask), after removing the temporary files dead writers left there.
fn create_partial(dest: &Path) -> Result<(File, PathBuf)> {
    let dir = parent_dir(dest);
    let name = dest
        .file_name()
        .ok_or_else(|| refuse(dest, "the path has no file name"))?
        .to_string_lossy()
        .into_owned();
    sweep_partials(&dir);
    for _ in 0..16 {
        let tmp = tempfile::Builder::new()
            .prefix(&format!(".{name}{PARTIAL}"))
            .permissions(fs::Permissions::from_mode(0o644))
            .tempfile_in(&dir)
            .map_err(OutputError::io("create a temporary file in", &dir))?;
        let (file, path) = tmp.keep().map_err(|e| OutputError::Io {
            action: "create a temporary file in",
            path: dir.clone(),
            source: e.error,
        })?;
        // A sweeper that opened the file before it was locked removes it: try another.
        if rustix::fs::flock(&file, FlockOperation::NonBlockingLockExclusive).is_ok()
            && still_linked(&file, &path)
        {
            return Ok((file, path));
        }
    }
    Err(refuse(
        dest,
        format!("cannot create a temporary file in {}", dir.display()),
    ))
}

/// Removes `.*.chasi-partial.*` files in `dir` whose writer is gone (their lock is free).
/// Best effort: whatever cannot be checked is left alone.
pub fn sweep_partials(dir: &Path) {
    let Ok(rd) = fs::read_dir(dir) else {
        return;
    };
    for ent in rd.flatten() {
        let name = ent.file_name();
        let name = name.to_string_lossy();
        if !name.starts_with('.') || !name.contains(PARTIAL) {
            continue;
        }
        if !ent.file_type().is_ok_and(|t| t.is_file()) {
            continue;
        }
        let path = ent.path();
        let Ok(f) = OpenOptions::new()
            .read(true)
            .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
            .open(&path)
        else {
            continue;
        };
        if rustix::fs::flock(&f, FlockOperation::NonBlockingLockExclusive).is_ok()
            && still_linked(&f, &path)
        {
            let _ = fs::remove_file(&path);
        }
    }
}

fn dup_stdout(path: &Path) -> Result<File> {
    let out = io::stdout();
    if out.is_terminal() {
        return Err(refuse(
            path,
            "standard output is a terminal; redirect it to a file or a pipe",
        ));
    }
    let fd = out
        .as_fd()
        .try_clone_to_owned()
        .map_err(OutputError::io("duplicate", path))?;
    Ok(File::from(fd))
}

fn open_in_place(target: &Target) -> Result<File> {
    let path = &target.path;
    let mut flags = rustix::fs::OFlags::NOCTTY;
    if target.kind == OutputKind::BlockDevice {
        // Refused by the kernel while the device is mounted or claimed.
        flags |= rustix::fs::OFlags::EXCL;
    }
    let file = OpenOptions::new()
        .write(true)
        .custom_flags(flags.bits() as i32)
        .open(&target.resolved)
        .map_err(|e| {
            if e.raw_os_error() == Some(rustix::io::Errno::BUSY.raw_os_error()) {
                refuse(
                    path,
                    "the block device is in use (mounted, or held by another program)",
                )
            } else {
                OutputError::io("open", path)(e)
            }
        })?;
    let m = file.metadata().map_err(OutputError::io("stat", path))?;
    if kind_of(path, &m)? != target.kind {
        return Err(refuse(path, "it changed while it was being opened"));
    }
    Ok(file)
}

const SYNC_EVERY: u64 = 64 << 20;

/// A `Write + Seek` over an output that starts a background `fdatasync` every 64 MiB
/// written (at most one in flight). Errors of a background sync surface on a later write
/// or on [`SyncAhead::finish`].
#[derive(Debug)]
pub struct SyncAhead<'a> {
    file: &'a mut File,
    extent: &'a mut Extent,
    since: u64,
    pending: Option<JoinHandle<io::Result<()>>>,
    enabled: bool,
    /// The first write error, for callers whose own error loses it (the store's tar writer).
    failed: Option<(io::ErrorKind, Option<i32>, String)>,
}

fn join(h: JoinHandle<io::Result<()>>) -> io::Result<()> {
    h.join()
        .unwrap_or_else(|_| Err(io::Error::other("background sync thread panicked")))
}

impl SyncAhead<'_> {
    fn kick(&mut self) -> io::Result<()> {
        if let Some(h) = self.pending.take() {
            if !h.is_finished() {
                self.pending = Some(h);
                return Ok(());
            }
            join(h)?;
        }
        let f = self.file.try_clone()?;
        self.pending = Some(std::thread::spawn(move || f.sync_data()));
        Ok(())
    }

    /// The first error a write to the output returned, if any: lets a caller tell "the
    /// output failed" (`/dev/full`: no space left) from an error of its data source.
    pub fn write_error(&self) -> Option<io::Error> {
        self.failed.as_ref().map(|(kind, code, msg)| match code {
            Some(c) => io::Error::from_raw_os_error(*c),
            None => io::Error::new(*kind, msg.clone()),
        })
    }

    /// Waits for a background sync still running.
    pub fn finish(mut self) -> io::Result<()> {
        match self.pending.take() {
            Some(h) => join(h),
            None => Ok(()),
        }
    }
}

impl Write for SyncAhead<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = match self.file.write(buf) {
            Ok(n) => n,
            Err(e) => {
                if self.failed.is_none() && e.kind() != io::ErrorKind::Interrupted {
                    self.failed = Some((e.kind(), e.raw_os_error(), e.to_string()));
                }
                return Err(e);
            }
        };
        self.extent.wrote(n);
        self.since += n as u64;
        if self.enabled && self.since >= SYNC_EVERY {
            self.since = 0;
            self.kick()?;
        }
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl Seek for SyncAhead<'_> {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        let p = self.file.seek(pos)?;
        self.extent.pos = p;
        Ok(p)
    }
}

impl Drop for SyncAhead<'_> {
    fn drop(&mut self) {
        if let Some(h) = self.pending.take() {
            let _ = join(h);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn nothing_under_the_final_name_until_commit() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("out.img");
        {
            let mut o = Output::create(&p).unwrap();
            o.writer().write_all(b"partial").unwrap();
            assert!(!p.exists());
        }
        assert!(names(dir.path()).is_empty(), "temp file left");
        for sync in [true, false] {
            let mut o = Output::create(&p).unwrap();
            o.set_sync(sync);
            let mut w = o.writer();
            w.write_all(&vec![7u8; (SYNC_EVERY + 10) as usize]).unwrap();
            w.finish().unwrap();
            assert_eq!(o.commit().unwrap(), SYNC_EVERY + 10);
            let m = fs::metadata(&p).unwrap();
            assert_eq!(m.len(), SYNC_EVERY + 10);
        }
        assert_eq!(names(dir.path()), ["out.img"]);
    }

    #[test]
    fn dead_writers_partials_are_swept_live_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        let dead = dir.path().join(".x.tar.chasi-partial.AAAA");
        fs::write(&dead, b"left by a killed export").unwrap();
        let live = Output::create(&dir.path().join("y.tar")).unwrap();
        let live_path = live.temp_path().unwrap().to_path_buf();
        assert!(!dead.exists(), "a dead writer's partial file was kept");
        let o = Output::create(&dir.path().join("z.tar")).unwrap();
        assert!(
            live_path.exists(),
            "a live writer's partial file was removed"
        );
        o.commit().unwrap();
        drop(live);
        assert_eq!(names(dir.path()), ["z.tar"]);
    }

    #[test]
    fn symlinks_are_followed_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("real.tar");
        let link = dir.path().join("link.tar");
        std::os::unix::fs::symlink("real.tar", &link).unwrap();
        // Dangling: the target is created, the link stays a link.
        let mut o = Output::create(&link).unwrap();
        o.writer().write_all(b"one").unwrap();
        o.commit().unwrap();
        assert!(fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(fs::read(&target).unwrap(), b"one");
        // Existing: the target is replaced.
        let mut o = Output::create(&link).unwrap();
        o.writer().write_all(b"two").unwrap();
        o.commit().unwrap();
        assert!(fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(fs::read(&target).unwrap(), b"two");
    }

    #[test]
    fn directories_sockets_and_missing_folders_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let e = Output::create(dir.path()).unwrap_err().to_string();
        assert!(e.contains("it is a directory"), "{e}");
        let sock = dir.path().join("s");
        let _l = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        let e = Output::create(&sock).unwrap_err().to_string();
        assert!(e.contains("it is a socket"), "{e}");
        let e = Output::create(&dir.path().join("no/such/x"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("does not exist"), "{e}");
    }

    #[test]
    fn devices_are_written_in_place_and_seekers_refuse_char_devices() {
        let mut o = Output::create(Path::new("/dev/null")).unwrap();
        assert_eq!(o.kind(), OutputKind::CharDevice);
        o.writer().write_all(b"gone").unwrap();
        assert_eq!(o.commit().unwrap(), 4);
        let m = fs::metadata("/dev/null").unwrap();
        assert!(m.file_type().is_char_device());
        let e = Output::create_seekable(Path::new("/dev/null"), "qcow2")
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "qcow2 output needs a seekable file (a regular file or a block device); /dev/null is a character device"
        );
        let mut o = Output::create(Path::new("/dev/full")).unwrap();
        let e = o.writer().write_all(&[0; 8192]).unwrap_err();
        assert_eq!(
            e.raw_os_error(),
            Some(rustix::io::Errno::NOSPC.raw_os_error())
        );
    }
}
