//! The one error type of the disk-image writers.
//!
//! Messages are lowercase and name the path, offset or option involved, so a failed
//! export says *where* it failed without a backtrace.

use std::io;
use std::path::PathBuf;

/// Result alias used throughout `chasi-formats`.
pub type Result<T, E = FormatError> = std::result::Result<T, E>;

/// Everything that can go wrong while laying out or writing a disk image.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    /// An I/O call on a named file failed.
    #[error("cannot {action} {path}")]
    Io {
        /// What was being done ("read", "write", "create", ...).
        action: &'static str,
        /// The file involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A read asked for bytes outside the virtual disk.
    #[error("read of {len} bytes at offset {offset} is outside the {size}-byte disk")]
    OutOfRange {
        /// Start of the read.
        offset: u64,
        /// Length of the read.
        len: u64,
        /// Size of the disk.
        size: u64,
    },
    /// A backing file is shorter than the region that was declared for it.
    #[error("{path} ends before offset {offset}: the file is shorter than its declared region")]
    ShortBacking {
        /// The backing file.
        path: PathBuf,
        /// The file offset that could not be read.
        offset: u64,
    },
    /// Two extents of a disk overlap, or an extent sticks out of the disk.
    #[error("extent at offset {offset} (length {len}) overlaps another extent or ends past the {size}-byte disk")]
    BadExtent {
        /// Disk offset of the rejected extent.
        offset: u64,
        /// Its length.
        len: u64,
        /// The disk size.
        size: u64,
    },
    /// An option is out of range or inconsistent.
    #[error("invalid option for {format}: {message}")]
    InvalidOption {
        /// The format whose options were checked ("qcow2", "gpt", "export", "iso", ...).
        format: &'static str,
        /// What is wrong.
        message: String,
    },
    /// The disk does not fit a limit of the output format.
    #[error("{format}: {message}")]
    Limit {
        /// The output format.
        format: &'static str,
        /// Which limit and by how much.
        message: String,
    },
    /// The compressor failed (not "did not shrink", which is handled by storing raw).
    #[error("{codec} compression of the cluster at guest offset {offset} failed: {message}")]
    Compress {
        /// "zlib", "deflate" or "zstd".
        codec: &'static str,
        /// Guest offset of the cluster.
        offset: u64,
        /// Compressor message.
        message: String,
    },
    /// The output path cannot be written by the output rules ([`chasi_oci::output`]).
    #[error(transparent)]
    Output(#[from] chasi_oci::output::OutputError),
    /// An external program is not installed.
    #[error("`{tool}` not found in PATH: install the Debian package `{package}`")]
    ToolMissing {
        /// The program name.
        tool: &'static str,
        /// The Debian package that ships it.
        package: &'static str,
    },
    /// An external program ran and failed.
    #[error("`{command}` failed ({status}): {stderr}")]
    ToolFailed {
        /// The command line, for the message.
        command: String,
        /// Its exit status.
        status: String,
        /// The end of its standard error.
        stderr: String,
    },
}

impl FormatError {
    /// Builds a closure that wraps an `io::Error` with an action and a path.
    pub fn io(action: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Self {
        let path = path.into();
        move |source| FormatError::Io {
            action,
            path,
            source,
        }
    }

    pub(crate) fn option(format: &'static str, message: impl Into<String>) -> Self {
        FormatError::InvalidOption {
            format,
            message: message.into(),
        }
    }

    pub(crate) fn limit(format: &'static str, message: impl Into<String>) -> Self {
        FormatError::Limit {
            format,
            message: message.into(),
        }
    }
}
