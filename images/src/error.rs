//! Why an operation on an image in the store fails. Every variant names the image, the
//! digest or the name involved; a store or OCI failure keeps its own error as the source.

use chasi_layers::Digest;

/// The result of an operation on images.
pub type Result<T, E = ImagesError> = std::result::Result<T, E>;

/// A failure of an operation on images in the store.
#[derive(Debug, thiserror::Error)]
pub enum ImagesError {
    /// A name that is not `NAME[:TAG]`.
    #[error("`{name}` is not a valid image name (expected NAME[:TAG])")]
    BadName {
        /// The name as given.
        name: String,
    },
    /// No ref of that name (and, for a digest, no such blob).
    #[error("image `{name}` is not in the store")]
    NotInStore {
        /// The normalized name.
        name: String,
    },
    /// A manifest, index or config that does not have the shape OCI gives it.
    #[error("{what} {digest} is not a valid OCI document")]
    BadDocument {
        /// What the document was read as (`image manifest`, `image config`, …).
        what: &'static str,
        /// Its digest.
        digest: Digest,
        /// What does not fit.
        #[source]
        source: serde_json::Error,
    },
    /// A config whose `rootfs.diff_ids` holds something other than a digest.
    #[error("bad diff_id `{diff_id}` in the config of {manifest}")]
    BadDiffId {
        /// The entry, excerpted.
        diff_id: String,
        /// The manifest whose config it is.
        manifest: Digest,
    },
    /// Indexes nested deeper than chasi follows.
    #[error("image {digest} has indexes nested more than 4 deep")]
    TooDeep {
        /// The image's root digest.
        digest: Digest,
    },
    /// `--platform` names a platform the image does not have.
    #[error("image `{image}` has no platform {platform} (it has {available})")]
    NoSuchPlatform {
        /// The image as named.
        image: String,
        /// The platform asked for.
        platform: String,
        /// The image's platforms, comma-separated.
        available: String,
    },
    /// No platform asked for, several available, none the host's.
    #[error("image `{image}` has several platforms ({available}): choose one with --platform")]
    MultiPlatform {
        /// The image as named.
        image: String,
        /// The image's platforms, comma-separated.
        available: String,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] chasi_layers::Error),
    /// Reading or writing OCI documents failed.
    #[error(transparent)]
    Oci(#[from] chasi_oci::OciError),
}
