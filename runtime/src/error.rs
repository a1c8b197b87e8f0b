//! The runtime's one error type: every failure names the file, digest, slot or hook it is about.

use crate::slot::SlotId;
use chasi_layers::Digest;
use std::io;
use std::path::PathBuf;

/// A result of the node runtime.
pub type Result<T, E = NodeError> = std::result::Result<T, E>;

/// What went wrong on the node.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// An I/O call failed on a path of the node.
    #[error("cannot {op} {path}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The path it was done to.
        path: PathBuf,
        /// The system error.
        #[source]
        source: io::Error,
    },
    /// The file system is full (or over quota); nothing was switched.
    #[error("no space left while writing {path}")]
    DiskFull {
        /// The path being written.
        path: PathBuf,
    },
    /// A file of the node state does not parse or contradicts itself.
    #[error("node state {path} is corrupt: {detail}")]
    BadState {
        /// The state file.
        path: PathBuf,
        /// What is wrong with it.
        detail: String,
    },
    /// The source of an apply is not something the runtime can apply.
    #[error("cannot apply {path}: {reason}")]
    BadSource {
        /// The source given.
        path: PathBuf,
        /// Why it is refused.
        reason: String,
    },
    /// The node's store refused or failed.
    #[error("node store")]
    Store(#[from] chasi_layers::Error),
    /// Reading an image of the store failed.
    #[error("node image")]
    Images(#[from] chasi_images::ImagesError),
    /// Applying or reading a delta failed.
    #[error("delta")]
    Delta(#[from] chasi_delta::DeltaError),
    /// Writing a node state file failed.
    #[error("node state")]
    Output(#[from] chasi_oci::output::OutputError),
    /// Reading an OCI layout or archive failed.
    #[error("image source")]
    Oci(#[from] chasi_oci::OciError),
    /// A delta whose base is not what the node runs.
    #[error("delta {delta} applies to image {base}, but the active slot {slot} holds {active}")]
    WrongBase {
        /// The delta's source path.
        delta: PathBuf,
        /// The base the delta needs.
        base: Digest,
        /// The active slot.
        slot: String,
        /// What the active slot holds (`nothing` when empty).
        active: String,
    },
    /// The image is for another platform than the node's.
    #[error("image {image} is for {image_platform}, this node is {node}")]
    WrongPlatform {
        /// The image.
        image: String,
        /// Its platform(s).
        image_platform: String,
        /// The node's platform.
        node: String,
    },
    /// Not enough free space for what apply writes.
    #[error(
        "not enough free space in {path}: {what} needs {needed} bytes, {available} bytes are available"
    )]
    NoSpace {
        /// The file system checked (a directory on it).
        path: PathBuf,
        /// What needs the space.
        what: String,
        /// Bytes needed.
        needed: u64,
        /// Bytes available (free space plus what emptying the inactive slot frees).
        available: u64,
    },
    /// A hook failed, timed out or could not run.
    #[error("{phase} hook {name} {outcome}")]
    Hook {
        /// `pre-check` or `post-verify`.
        phase: String,
        /// The hook's file name.
        name: String,
        /// What happened (`exited with status 3: …`, `timed out after 5 s`).
        outcome: String,
    },
    /// An image's hook directory holds something that is not a runnable file.
    #[error("image hook /{path}: {reason}")]
    BadHook {
        /// The path inside the image.
        path: String,
        /// Why it cannot be run.
        reason: String,
    },
    /// Another `chasi-node` command holds the node lock.
    #[error("another chasi-node command is running on this node (lock {path} is held)")]
    Busy {
        /// The lock file.
        path: PathBuf,
    },
    /// A slot holds no image.
    #[error("slot {slot} holds no complete image")]
    EmptySlot {
        /// The slot.
        slot: SlotId,
    },
    /// Rollback has nothing to go back to.
    #[error("cannot roll back: {reason}")]
    NoRollback {
        /// Why.
        reason: String,
    },
    /// The slot backend failed.
    #[error("slot {slot}: {detail}")]
    Slot {
        /// The slot.
        slot: SlotId,
        /// What failed.
        detail: String,
    },
    /// The A/B boot disk is not what `chasi export --slots ab` lays out, or cannot be used.
    #[error("boot disk: {detail}")]
    BootDisk {
        /// What is wrong.
        detail: String,
    },
    /// The image is a sealer application image (`app-installer`), which holds applications for a
    /// running cluster, not a system (`sealer upgrade` refuses it likewise).
    #[error(
        "image {image} is an app-installer image (the type in its sealer.image.extension): it holds \
         applications for a running cluster, not a system a slot can run; apply a kube-installer \
         or OS image"
    )]
    AppImage {
        /// The image (the source, or the delta's target).
        image: String,
    },
    /// The image cannot be booted from a slot.
    #[error("the image cannot be booted from a slot: {reason}")]
    NotBootable {
        /// Why.
        reason: String,
    },
    /// containerd does not answer at its socket.
    #[error("cannot reach containerd at {address}: {reason}")]
    ContainerdUnreachable {
        /// The socket.
        address: PathBuf,
        /// Why (`no such socket`, `connection refused`, ...).
        reason: String,
    },
    /// containerd answered a call with an error.
    #[error("containerd at {address} refused to {call}: {status}")]
    Containerd {
        /// The socket.
        address: PathBuf,
        /// What was asked (`write blob sha256:…`, `create image NAME`).
        call: String,
        /// Its gRPC status, code and message.
        status: String,
    },
    /// A containerd namespace name that containerd would refuse.
    #[error("invalid containerd namespace {namespace:?}: {reason}")]
    BadNamespace {
        /// The name given.
        namespace: String,
        /// Why.
        reason: String,
    },
    /// A blob of a carried container image does not match its digest or size.
    #[error("container image blob {digest} in {path} is corrupt")]
    CorruptImageBlob {
        /// The blob.
        digest: String,
        /// Its file in the registry directory.
        path: PathBuf,
        /// The mismatch.
        #[source]
        source: Box<chasi_oci::OciError>,
    },
    /// A registry directory (an image's `registry/`) that cannot be read as the distribution layout.
    #[error("registry directory {dir} is malformed")]
    BadRegistry {
        /// The directory.
        dir: PathBuf,
        /// What is wrong.
        #[source]
        source: Box<chasi_oci::OciError>,
    },
    /// The image carries container images and containerd cannot take them (apply without
    /// `--skip-images`).
    #[error(
        "the image carries {count} container image(s) in registry/, but containerd is not reachable at {address}; start containerd, give --containerd ADDR, or --skip-images"
    )]
    ImagesUnimportable {
        /// Tagged images in the image's `registry/`.
        count: u64,
        /// The socket tried.
        address: PathBuf,
        /// Why it is not reachable.
        #[source]
        cause: Box<NodeError>,
    },
    /// Post-verify failed and the node went back to the previous slot.
    #[error("post-verify of slot {slot} failed; rolled back to {back}")]
    RolledBack {
        /// The slot that failed.
        slot: SlotId,
        /// Where the node is now (`slot a`, or `no slot` on a node that had none).
        back: String,
        /// Why post-verify failed.
        #[source]
        cause: Box<NodeError>,
    },
}

impl NodeError {
    /// An I/O error on `path`, made [`NodeError::DiskFull`] when the disk is full.
    pub fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> NodeError {
        let path = path.into();
        if is_disk_full(&source) {
            return NodeError::DiskFull { path };
        }
        NodeError::Io { op, path, source }
    }

    /// A corrupt state file.
    pub fn bad_state(path: impl Into<PathBuf>, detail: impl Into<String>) -> NodeError {
        NodeError::BadState {
            path: path.into(),
            detail: detail.into(),
        }
    }

    /// A stable class for tools: `busy`, `disk_full`, `no_space`, `precheck`, `rolled_back`, `corrupt`,
    /// `invalid_input`, `unavailable` (containerd), `io` or `error`.
    pub fn kind(&self) -> &'static str {
        match self {
            NodeError::Busy { .. } => "busy",
            NodeError::DiskFull { .. } => "disk_full",
            NodeError::NoSpace { .. } => "no_space",
            NodeError::WrongBase { .. }
            | NodeError::WrongPlatform { .. }
            | NodeError::Hook { .. }
            | NodeError::BadHook { .. }
            | NodeError::NotBootable { .. }
            | NodeError::AppImage { .. }
            | NodeError::ImagesUnimportable { .. } => "precheck",
            NodeError::ContainerdUnreachable { .. } => "unavailable",
            NodeError::CorruptImageBlob { .. } => "corrupt",
            NodeError::RolledBack { .. } => "rolled_back",
            NodeError::BadState { .. } => "corrupt",
            NodeError::BadSource { .. }
            | NodeError::EmptySlot { .. }
            | NodeError::NoRollback { .. }
            | NodeError::BadNamespace { .. }
            | NodeError::BadRegistry { .. } => "invalid_input",
            NodeError::Io { .. }
            | NodeError::Slot { .. }
            | NodeError::BootDisk { .. }
            | NodeError::Containerd { .. } => "io",
            NodeError::Store(chasi_layers::Error::DiskFull { .. }) => "disk_full",
            _ => "error",
        }
    }
}

fn is_disk_full(e: &io::Error) -> bool {
    // ENOSPC, EDQUOT
    matches!(e.raw_os_error(), Some(28) | Some(122))
}

/// Adds the path to an I/O result.
pub(crate) trait IoCtx<T> {
    fn ctx(self, op: &'static str, path: &std::path::Path) -> Result<T>;
}

impl<T> IoCtx<T> for io::Result<T> {
    fn ctx(self, op: &'static str, path: &std::path::Path) -> Result<T> {
        self.map_err(|e| NodeError::io(op, path, e))
    }
}
