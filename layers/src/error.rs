//! Typed errors for every store operation.
//!
//! Each variant names the path or digest involved so that a message printed by the CLI is enough to find the
//! faulty object. Messages are lowercase and never end with a period, so callers can wrap them.
//!
//! One rule for every error type of the workspace: a variant's message never repeats its
//! source; the cause chain is printed once, by whoever shows the error ([`chain`] here and
//! in the other crates, the binary for what reaches the user). Repeating the source in the
//! message too is what printed `File exists (os error 17): File exists (os error 17)`.

use crate::digest::{ChunkId, Digest};
use std::path::PathBuf;

/// The text rules of every message (`chasi-oci` is the crate below all others, so they live
/// there); re-exported because every message here is built with them.
pub use chasi_oci::error::{causes, chain, excerpt, quoted};

/// Result alias used across the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the layer store.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An I/O error on a named path.
    #[error("{op} {path}")]
    Io {
        /// What was being done ("read", "write", "rename", ...).
        op: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The file system is full; the store was left consistent (the partial write was discarded).
    #[error("no space left on device while writing {path}; nothing was committed")]
    DiskFull {
        /// The path being written.
        path: PathBuf,
    },
    /// Stored content does not hash to its name, or has the wrong size.
    #[error("corrupt object {digest} at {path}: {}", excerpt(detail))]
    Corrupt {
        /// The digest the object should have.
        digest: Digest,
        /// Where it is stored.
        path: PathBuf,
        /// What is wrong (digest or size mismatch, undecodable frame, ...).
        detail: String,
    },
    /// A stored chunk does not hash to its name, has the wrong size, or its frame cannot be decoded.
    #[error("corrupt chunk {chunk} in {path}: {}", excerpt(detail))]
    CorruptChunk {
        /// The chunk's name.
        chunk: ChunkId,
        /// The pack holding it.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// A chunk a layer needs is in no pack.
    #[error("chunk {chunk} not found in store {store}")]
    ChunkNotFound {
        /// The chunk's name.
        chunk: ChunkId,
        /// The store root.
        store: PathBuf,
    },
    /// An object that should be in the store is missing.
    #[error("object {digest} not found in store {store}")]
    NotFound {
        /// The digest looked up.
        digest: Digest,
        /// The store root.
        store: PathBuf,
    },
    /// A reference (name:tag) is not set.
    #[error("reference {name} not found in store {store}")]
    RefNotFound {
        /// The reference name.
        name: String,
        /// The store root.
        store: PathBuf,
    },
    /// A string is not a valid `sha256:<64 hex>` digest.
    #[error(transparent)]
    BadDigest(#[from] chasi_oci::DigestParseError),
    /// A reference name is not acceptable.
    #[error("invalid reference name {}", quoted(.0))]
    BadRefName(String),
    /// The store was written by an incompatible version or with other chunking parameters.
    #[error("store {path} has an incompatible layout: {detail}")]
    Layout {
        /// Path of the layout file.
        path: PathBuf,
        /// What does not match.
        detail: String,
    },
    /// A metadata file (layer index, ref, cache record, pack index) cannot be parsed.
    #[error("malformed {what} {path}: {}", excerpt(detail))]
    Malformed {
        /// What kind of file.
        what: &'static str,
        /// Its path.
        path: PathBuf,
        /// Parser message.
        detail: String,
    },
    /// A tar archive entry is unsafe or invalid (path escape, link trick, bad header).
    #[error("unsafe or invalid tar entry {}: {}", quoted(entry), excerpt(reason))]
    UnsafeEntry {
        /// The entry name as found in the archive.
        entry: String,
        /// Why it was rejected.
        reason: String,
    },
    /// A tar archive is malformed.
    #[error("malformed tar archive {}: {}", excerpt(what), excerpt(detail))]
    BadTar {
        /// Which archive (layer diff ID or path).
        what: String,
        /// Parser message.
        detail: String,
    },
    /// A source tree contains something the tar writer cannot represent.
    #[error("cannot archive {path}: {}", excerpt(reason))]
    Unsupported {
        /// The offending path.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A command that only reads found no store at the path (absent, or an empty directory).
    #[error("no store at {path} (nothing has been built or loaded there yet)")]
    NoStore {
        /// The store directory.
        path: PathBuf,
    },
    /// The path is a non-empty directory without `layout.json`, or not a directory: never used as a store.
    #[error(
        "{path} is not a chasi store: {reason} (use an empty or new directory for a new store)"
    )]
    NotAStore {
        /// The path given as the store.
        path: PathBuf,
        /// Why ("the directory is not empty and has no layout.json", ...).
        reason: String,
    },
    /// `gc` found a document it must follow but cannot read; it stopped before deleting anything.
    #[error("gc stopped before deleting anything: {origin} reaches {digest}, which cannot be read: {cause}")]
    GcUnreadable {
        /// The root the document is reachable from (`ref NAME` or `cache record FILE`).
        origin: String,
        /// The document (manifest, config, layer, link).
        digest: Digest,
        /// Why it cannot be read.
        cause: Box<Error>,
    },
    /// The store location could not be determined.
    #[error("cannot determine the store location: {0}")]
    NoLocation(String),
    /// Another process holds a lock needed for this operation.
    #[error("store {path} is busy: {detail}")]
    Busy {
        /// Lock file path.
        path: PathBuf,
        /// What holds it.
        detail: String,
    },
}

impl Error {
    /// Wraps an I/O error with the operation and path, turning `ENOSPC`/`EDQUOT` into [`Error::DiskFull`].
    pub fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        let path = path.into();
        match source.raw_os_error() {
            Some(28) | Some(122) => Error::DiskFull { path },
            _ => Error::Io { op, path, source },
        }
    }

    /// True when the error means "object absent" (used by callers to fall back).
    pub fn is_not_found(&self) -> bool {
        matches!(
            self,
            Error::NotFound { .. } | Error::RefNotFound { .. } | Error::ChunkNotFound { .. }
        ) || matches!(self, Error::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
    }
}

/// Extension to attach a path to `std::io::Result`.
pub(crate) trait IoCtx<T> {
    fn ctx(self, op: &'static str, path: &std::path::Path) -> Result<T>;
}

impl<T> IoCtx<T> for std::io::Result<T> {
    fn ctx(self, op: &'static str, path: &std::path::Path) -> Result<T> {
        self.map_err(|e| Error::io(op, path, e))
    }
}
