//! Why making, reading or applying a delta fails. Every variant names what it is about: the image, the
//! layer (by DiffID), the operation (by index), the blob (by digest) or the limit; store, image and OCI
//! failures keep their own error as the source.

use chasi_layers::Digest;

/// The result of a delta operation.
pub type Result<T, E = DeltaError> = std::result::Result<T, E>;

/// A failure to make, read or apply a delta.
#[derive(Debug, thiserror::Error)]
pub enum DeltaError {
    /// The store failed.
    #[error("store")]
    Store(#[from] chasi_layers::Error),
    /// Reading an image in the store failed.
    #[error("image")]
    Images(#[from] chasi_images::ImagesError),
    /// Reading or writing the artifact's OCI layout or archive failed.
    #[error("oci")]
    Oci(#[from] chasi_oci::OciError),
    /// The file is an OCI layout or archive but not a chasi delta.
    #[error("{location} is not a chasi delta: {reason}")]
    NotADelta {
        /// The artifact.
        location: String,
        /// What it is instead.
        reason: String,
    },
    /// The delta's documents are malformed, inconsistent or of an unknown version.
    #[error("delta {location}: {detail}")]
    Malformed {
        /// Where (`delta config sha256:…`, `payload sha256:… of layer sha256:…`).
        location: String,
        /// What is wrong.
        detail: String,
    },
    /// The base the delta was made against is not (completely) in the store.
    #[error(
        "the delta's base image {base} is not in the store: {missing} is missing ({platform})"
    )]
    BaseMissing {
        /// The base image's root digest.
        base: Digest,
        /// The missing manifest or layer.
        missing: String,
        /// The platform that needs it.
        platform: String,
    },
    /// An operation's source or output does not hash to what the delta records.
    #[error("layer {layer}: operation {op} ({kind}): {detail}")]
    Op {
        /// The target layer's DiffID.
        layer: Digest,
        /// The operation's index in the layer's list (or the part's, for `part` kinds).
        op: usize,
        /// `reuse`, `stream` or `part`.
        kind: &'static str,
        /// What failed.
        detail: String,
    },
    /// A reconstructed layer or document is not the one the target image names.
    #[error("{what} {expected}: reconstructed content hashes to {actual}")]
    Mismatch {
        /// `layer`, `layer blob`, `document`.
        what: &'static str,
        /// The digest the target names.
        expected: Digest,
        /// The digest of what was reconstructed.
        actual: Digest,
    },
    /// Applying would need more memory than allowed.
    #[error("layer {layer} needs {needed} bytes of memory to apply (reference and window of part {part}), over the limit of {limit} bytes (--max-memory)")]
    TooMuchMemory {
        /// The target layer.
        layer: Digest,
        /// The part.
        part: usize,
        /// What it needs.
        needed: u64,
        /// The limit.
        limit: u64,
    },
    /// A platform asked for (or the target's) that the image does not have.
    #[error("image `{image}` has no platform {platform} (it has {available})")]
    NoPlatform {
        /// The image as named.
        image: String,
        /// The platform.
        platform: String,
        /// The image's platforms.
        available: String,
    },
    /// Some but not all platforms of a multi-platform target: the node could tag neither the index
    /// (its other manifests would be missing) nor one manifest.
    #[error("--platform chose {asked} of the {available} platforms of `{image}`: choose one, or all (no --platform)")]
    PlatformSubset {
        /// The target as named.
        image: String,
        /// How many were chosen.
        asked: usize,
        /// How many it has.
        available: usize,
    },
    /// The store stopped reading a rebuilt layer (its own error says why and is the one reported).
    #[error("the store stopped reading the rebuilt layer")]
    StoreStopped,
    /// Reading the base or target, or compressing, failed.
    #[error("{action} {what}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// On what.
        what: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

impl DeltaError {
    pub(crate) fn malformed(location: impl Into<String>, detail: impl Into<String>) -> Self {
        DeltaError::Malformed {
            location: location.into(),
            detail: detail.into(),
        }
    }

    pub(crate) fn io(
        action: &'static str,
        what: impl Into<String>,
    ) -> impl FnOnce(std::io::Error) -> Self {
        let what = what.into();
        move |source| DeltaError::Io {
            action,
            what,
            source,
        }
    }
}
