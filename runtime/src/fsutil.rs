//! The few file operations node state needs to survive a crash beyond the workspace's atomic output writer
//! (`chasi_oci::output::Output`, which state files use): sweeping what a killed run left, syncing a
//! directory, appending a durable line, and the node lock.

use crate::error::{IoCtx, NodeError, Result};
use rustix::fs::FlockOperation;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Removes the temporary files a killed run left in `dir`: the slot switch's links (`.NAME.tmp-PID`) and
/// state files the output writer had not committed (`chasi_oci::output::sweep_partials`). Only the lock
/// holder calls it, so no live writer owns them.
pub fn remove_stale_temps(dir: &Path) -> Result<()> {
    chasi_oci::output::sweep_partials(dir);
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(NodeError::io("read directory", dir, e)),
    };
    for e in entries {
        let e = e.ctx("read directory", dir)?;
        let name = e.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') && name.contains(".tmp-") {
            let p = e.path();
            match fs::remove_file(&p) {
                Err(err) if err.kind() != std::io::ErrorKind::NotFound => {
                    return Err(NodeError::io("remove", &p, err));
                }
                _ => {}
            }
        }
    }
    Ok(())
}

/// Makes the entries of `dir` (a rename, a new link) durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .ctx("sync directory", dir)
}

/// Appends one line (a JSON record) to `path` and syncs it.
pub fn append_line(path: &Path, line: &str) -> Result<()> {
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .ctx("open", path)?;
    let mut buf = line.as_bytes().to_vec();
    buf.push(b'\n');
    f.write_all(&buf).ctx("append to", path)?;
    f.sync_data().ctx("sync", path)
}

/// Removes `path` if it exists and syncs its directory.
pub fn remove_durably(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Ok(()) => sync_dir(parent(path)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(NodeError::io("remove", path, e)),
    }
}

fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// The node lock: one `chasi-node` command that changes the node at a time (an exclusive `flock`, released
/// by the kernel when the process dies, so a killed apply never leaves it held).
#[derive(Debug)]
pub struct NodeLock {
    _file: File,
    path: PathBuf,
}

impl NodeLock {
    /// Takes the lock at `path` without waiting; [`NodeError::Busy`] when another process holds it.
    pub fn acquire(path: &Path) -> Result<NodeLock> {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .ctx("open lock", path)?;
        match rustix::fs::flock(&file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => Ok(NodeLock {
                _file: file,
                path: path.to_path_buf(),
            }),
            Err(rustix::io::Errno::WOULDBLOCK) => Err(NodeError::Busy {
                path: path.to_path_buf(),
            }),
            Err(e) => Err(NodeError::io("lock", path, e.into())),
        }
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}
