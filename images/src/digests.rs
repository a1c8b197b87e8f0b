//! Between the store's digests and OCI's: the one place the two digest types meet.
//!
//! Its own module so that reading documents ([`crate::docs`]) and the blob source and sink
//! ([`crate::blobs`]) both use it without importing each other.

use chasi_layers::Digest;
use chasi_oci::{OciError, OciResult};

/// Converts an OCI digest into a store digest (only SHA-256 is supported).
pub fn to_store_digest(d: &chasi_oci::Digest) -> OciResult<Digest> {
    d.to_string().parse().map_err(|_| OciError::Sink {
        digest: d.to_string(),
        message: "only sha256 digests are supported".into(),
    })
}

/// Converts a store digest into an OCI digest.
pub fn to_oci_digest(d: &Digest) -> chasi_oci::Digest {
    // A store digest is always `sha256:` + 64 lower-case hex digits, which oci-spec accepts.
    d.to_string()
        .parse()
        .expect("a sha256 store digest is a valid OCI digest")
}
