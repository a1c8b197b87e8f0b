//! Atomic output files: an export is written to a temporary name in the destination folder
//! and renamed over the final path only when complete, so an interrupted export never leaves
//! a partial file under the final name.

use std::fs::File;
use std::path::{Path, PathBuf};

use tempfile::NamedTempFile;

use crate::error::{FormatError, Result};

/// A file being written next to its final path; dropped without [`AtomicOutput::commit`],
/// the temporary file is removed.
#[derive(Debug)]
pub struct AtomicOutput {
    tmp: NamedTempFile,
    final_path: PathBuf,
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
        })
    }

    /// The open temporary file.
    pub fn file(&mut self) -> &mut File {
        self.tmp.as_file_mut()
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
        self.tmp
            .as_file()
            .sync_all()
            .map_err(FormatError::io("sync", &tmp_path))?;
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
