//! Crash-safe file primitives: temp file → hash → fsync → rename → fsync(dir), advisory locks, and the
//! per-process temp directory whose liveness is proven by a lock.
//!
//! Why locks instead of PIDs: a `flock` is released by the kernel when its owner dies (even by `SIGKILL`), so "can I
//! take this lock?" is an exact, race-free liveness test, while PIDs get reused.

use crate::error::{Error, IoCtx, Result};
use rustix::fs::FlockOperation;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A process-unique name component: `<pid>-<nanos>-<counter>`.
pub(crate) fn unique_name() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "{}-{nanos:x}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Fsyncs a directory so that renames inside it are durable.
pub(crate) fn fsync_dir(dir: &Path) -> Result<()> {
    let f = File::open(dir).ctx("open directory", dir)?;
    f.sync_all().ctx("fsync directory", dir)
}

/// Creates a directory and its parents.
pub(crate) fn mkdirs(dir: &Path) -> Result<()> {
    fs::create_dir_all(dir).ctx("create directory", dir)
}

/// Writes `data` to `dest` atomically: a unique temp file in `tmp_dir`, fsync, rename, fsync of the parent.
///
/// A crash at any instant leaves either the old content of `dest` or the new one; the temp file, if left over, lives
/// in the session temp directory that is cleaned once its owner is dead.
pub(crate) fn atomic_write(tmp_dir: &Path, dest: &Path, data: &[u8]) -> Result<()> {
    let tmp = tmp_dir.join(unique_name());
    let res = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .ctx("create", &tmp)?;
        f.write_all(data).ctx("write", &tmp)?;
        f.sync_all().ctx("fsync", &tmp)?;
        drop(f);
        let parent = dest.parent().unwrap_or(Path::new("."));
        if !parent.is_dir() {
            mkdirs(parent)?;
        }
        fs::rename(&tmp, dest).ctx("rename into", dest)?;
        fsync_dir(parent)
    })();
    if res.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    res
}

/// An advisory `flock` held on an open file; released on drop or when the process dies.
#[derive(Debug)]
pub(crate) struct FileLock {
    file: File,
    path: PathBuf,
}

impl FileLock {
    /// Opens (creating) `path` and takes the lock; blocks when `wait` is true, else returns `Ok(None)` if busy.
    pub(crate) fn acquire(path: &Path, exclusive: bool, wait: bool) -> Result<Option<FileLock>> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .ctx("open lock file", path)?;
        let mut lock = FileLock {
            file,
            path: path.to_path_buf(),
        };
        if lock.set(exclusive, wait)? {
            Ok(Some(lock))
        } else {
            Ok(None)
        }
    }

    /// Changes the lock mode (shared ↔ exclusive) on the same file description.
    pub(crate) fn set(&mut self, exclusive: bool, wait: bool) -> Result<bool> {
        let op = match (exclusive, wait) {
            (true, true) => FlockOperation::LockExclusive,
            (true, false) => FlockOperation::NonBlockingLockExclusive,
            (false, true) => FlockOperation::LockShared,
            (false, false) => FlockOperation::NonBlockingLockShared,
        };
        match rustix::fs::flock(&self.file, op) {
            Ok(()) => Ok(true),
            Err(e) if e == rustix::io::Errno::WOULDBLOCK => Ok(false),
            Err(e) => Err(Error::io("lock", &self.path, e.into())),
        }
    }

    /// True when the open file is still the one at `path` (it was not unlinked and replaced).
    pub(crate) fn still_linked(&self) -> bool {
        match (self.file.metadata(), fs::metadata(&self.path)) {
            (Ok(a), Ok(b)) => a.ino() == b.ino() && a.dev() == b.dev(),
            _ => false,
        }
    }
}

/// The temp directory of one live store session: `<store>/tmp/<unique>/`, owned while `<unique>.lock` is locked.
#[derive(Debug)]
pub(crate) struct TempSession {
    pub(crate) dir: PathBuf,
    lock_path: PathBuf,
    _lock: FileLock,
}

impl TempSession {
    /// Creates a fresh session directory under `tmp_root`.
    pub(crate) fn create(tmp_root: &Path) -> Result<TempSession> {
        mkdirs(tmp_root)?;
        let mut attempts = 0;
        loop {
            attempts += 1;
            let name = unique_name();
            let lock_path = tmp_root.join(format!("{name}.lock"));
            // Another store opening at the same moment may be cleaning dead sessions: it can take
            // the lock of a file created an instant ago (and then unlink it), or have unlinked it
            // between create and flock. Either way the name is lost: take another.
            let Some(lock) = FileLock::acquire(&lock_path, true, false)? else {
                if attempts >= 64 {
                    return Err(Error::Busy {
                        path: lock_path,
                        detail: "every fresh temp lock was taken by a cleaner".into(),
                    });
                }
                continue;
            };
            if !lock.still_linked() {
                continue;
            }
            let dir = tmp_root.join(&name);
            fs::create_dir(&dir).ctx("create temp directory", &dir)?;
            return Ok(TempSession {
                dir,
                lock_path,
                _lock: lock,
            });
        }
    }

    /// Removes temp directories (and stray temp files) whose owner is dead.
    ///
    /// Returns the number of bytes freed. A directory is removed only after its lock was taken here, so a live
    /// writer's files are never touched.
    pub(crate) fn clean_dead(tmp_root: &Path) -> u64 {
        let Ok(rd) = fs::read_dir(tmp_root) else {
            return 0;
        };
        let mut freed = 0;
        for ent in rd.flatten() {
            let path = ent.path();
            let name = ent.file_name().to_string_lossy().into_owned();
            if let Some(base) = name.strip_suffix(".lock") {
                let Ok(Some(lock)) = FileLock::acquire(&path, true, false) else {
                    continue;
                };
                let dir = tmp_root.join(base);
                freed += dir_size(&dir);
                let _ = fs::remove_dir_all(&dir);
                let _ = fs::remove_file(&path);
                drop(lock);
            } else if ent.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                // A directory without a lock file: its owner died between unlink of the lock and removal.
                if !tmp_root.join(format!("{name}.lock")).exists() {
                    freed += dir_size(&path);
                    let _ = fs::remove_dir_all(&path);
                }
            }
        }
        freed
    }
}

impl Drop for TempSession {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
        let _ = fs::remove_file(&self.lock_path);
    }
}

/// Bytes allocated on disk by a file (st_blocks × 512).
pub(crate) fn allocated(meta: &fs::Metadata) -> u64 {
    meta.blocks() * 512
}

/// Sum of allocated bytes under a directory (0 if absent).
pub(crate) fn dir_size(dir: &Path) -> u64 {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.metadata().ok())
        .map(|m| allocated(&m))
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces() {
        let t = tempfile::tempdir().unwrap();
        let tmp = t.path().join("tmp");
        mkdirs(&tmp).unwrap();
        let dest = t.path().join("a/b/file");
        atomic_write(&tmp, &dest, b"one").unwrap();
        atomic_write(&tmp, &dest, b"two").unwrap();
        assert_eq!(fs::read(&dest).unwrap(), b"two");
        assert_eq!(fs::read_dir(&tmp).unwrap().count(), 0);
    }

    #[test]
    fn dead_sessions_are_cleaned_live_ones_kept() {
        let t = tempfile::tempdir().unwrap();
        let live = TempSession::create(t.path()).unwrap();
        fs::write(live.dir.join("x"), b"partial").unwrap();
        // Simulate a dead owner: a directory and an unlocked lock file.
        fs::create_dir(t.path().join("dead")).unwrap();
        fs::write(t.path().join("dead/y"), b"junk").unwrap();
        fs::write(t.path().join("dead.lock"), b"").unwrap();
        TempSession::clean_dead(t.path());
        assert!(live.dir.join("x").exists());
        assert!(!t.path().join("dead").exists());
        assert!(!t.path().join("dead.lock").exists());
        let dir = live.dir.clone();
        drop(live);
        assert!(!dir.exists());
    }
}
