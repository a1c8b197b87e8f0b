//! Atomic output files: an export is written to a temporary name in the destination folder
//! and renamed over the final path only when complete, so an interrupted export never leaves
//! a partial file under the final name.
//!
//! The file is made durable (`fsync`) before the rename. So that this costs little, the
//! [`SyncAhead`] writer starts `fdatasync` in a background thread every 64 MiB written:
//! the disk writes back while we keep producing, and the final sync only has the tail left.

use std::fs::File;
use std::io::{self, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;

use tempfile::NamedTempFile;

use crate::error::{FormatError, Result};

/// A file being written next to its final path; dropped without [`AtomicOutput::commit`],
/// the temporary file is removed.
#[derive(Debug)]
pub struct AtomicOutput {
    tmp: NamedTempFile,
    final_path: PathBuf,
    sync: bool,
}

impl AtomicOutput {
    /// Creates `.<name>.<random>.partial` in the folder of `path`.
    pub fn create(path: &Path) -> Result<Self> {
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let name = path
            .file_name()
            .ok_or_else(|| FormatError::Io {
                action: "create",
                path: path.to_path_buf(),
                source: std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "the output path has no file name",
                ),
            })?
            .to_string_lossy()
            .into_owned();
        let tmp = tempfile::Builder::new()
            .prefix(&format!(".{name}."))
            .suffix(".partial")
            .tempfile_in(&dir)
            .map_err(FormatError::io("create a temporary file in", &dir))?;
        Ok(AtomicOutput {
            tmp,
            final_path: path.to_path_buf(),
            sync: true,
        })
    }

    /// The open temporary file.
    pub fn file(&mut self) -> &mut File {
        self.tmp.as_file_mut()
    }

    /// Whether to make the file durable (`fsync`) before the rename (default: yes).
    /// Without it an interrupted process still leaves nothing under the final name, but a
    /// crash of the machine may.
    pub fn set_sync(&mut self, sync: bool) {
        self.sync = sync;
    }

    /// A writer over the temporary file that syncs ahead in the background (when syncing).
    pub fn writer(&mut self) -> SyncAhead<'_> {
        SyncAhead {
            file: self.tmp.as_file_mut(),
            since: 0,
            pending: None,
            enabled: self.sync,
        }
    }

    /// The temporary file's path (for error messages).
    pub fn temp_path(&self) -> &Path {
        self.tmp.path()
    }

    /// The final path.
    pub fn final_path(&self) -> &Path {
        &self.final_path
    }

    /// Flushes to disk, sets mode 0644 and renames the file to its final path.
    pub fn commit(self) -> Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let tmp_path = self.tmp.path().to_path_buf();
        self.tmp
            .as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o644))
            .map_err(FormatError::io("set permissions of", &tmp_path))?;
        if self.sync {
            self.tmp
                .as_file()
                .sync_all()
                .map_err(FormatError::io("sync", &tmp_path))?;
        }
        self.tmp
            .persist(&self.final_path)
            .map_err(|e| FormatError::Io {
                action: "rename into place",
                path: self.final_path.clone(),
                source: e.error,
            })?;
        Ok(())
    }
}

const SYNC_EVERY: u64 = 64 << 20;

/// A `Write + Seek` over a file that starts a background `fdatasync` every 64 MiB written
/// (at most one in flight). Errors of a background sync surface on a later write or on
/// [`SyncAhead::finish`].
#[derive(Debug)]
pub struct SyncAhead<'a> {
    file: &'a mut File,
    since: u64,
    pending: Option<JoinHandle<io::Result<()>>>,
    enabled: bool,
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
        let n = self.file.write(buf)?;
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
        self.file.seek(pos)
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

    #[test]
    fn nothing_under_the_final_name_until_commit() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("out.img");
        {
            let mut o = AtomicOutput::create(&p).unwrap();
            o.writer().write_all(b"partial").unwrap();
            assert!(!p.exists());
        }
        assert!(
            std::fs::read_dir(dir.path()).unwrap().next().is_none(),
            "temp file left"
        );
        for sync in [true, false] {
            let mut o = AtomicOutput::create(&p).unwrap();
            o.set_sync(sync);
            let mut w = o.writer();
            w.write_all(&vec![7u8; (SYNC_EVERY + 10) as usize]).unwrap();
            w.finish().unwrap();
            o.commit().unwrap();
            use std::os::unix::fs::PermissionsExt;
            let m = std::fs::metadata(&p).unwrap();
            assert_eq!(m.len(), SYNC_EVERY + 10);
            assert_eq!(m.permissions().mode() & 0o777, 0o644);
        }
    }
}
