//! `chasi push IMAGE [REF]`: an image of the store to a registry, with the store's bytes, so
//! the registry's digests are the store's (layers stay zstd as stored).
//!
//! The image is read with `chasi_images::Image::read` (the walk `chasi save` and `inspect`
//! use), then sent children first: every config and layer (each `HEAD` first, then mounted
//! from another repository of the same registry that the store knows holds the image, else
//! uploaded), every platform's manifest by digest, nested indexes, and the root under the tag.
//! A registry therefore never holds a manifest whose blobs it lacks.

use crate::client::{parse_reference, Options, Session};
use crate::error::{RegistryError, Result};
use chasi_images::{blobs::descriptor_of, normalize_name, resolve, Image};
use chasi_layers::{Digest, Store};
use oci_client::{Reference, RegistryOperation};
use serde::Serialize;
use std::collections::HashSet;

/// What [`push`] did.
#[derive(Debug, Clone, Serialize)]
pub struct PushReport {
    /// The reference pushed to.
    pub reference: String,
    /// The root digest (the index's, or the manifest's).
    pub digest: Digest,
    /// Manifests and indexes put.
    pub manifests: usize,
    /// Blobs uploaded.
    pub blobs_uploaded: usize,
    /// Their bytes.
    pub bytes_uploaded: u64,
    /// Blobs the registry had already (`HEAD`).
    pub blobs_present: usize,
    /// Blobs mounted from another repository of the registry.
    pub blobs_mounted: usize,
}

/// Pushes `image` (a store name or digest) to `reference` (default: the image's store name).
pub fn push(
    store: &Store,
    image: &str,
    reference: Option<&str>,
    opts: &Options,
) -> Result<PushReport> {
    let root = resolve(store, image)?;
    let target = match reference {
        Some(r) => r.to_string(),
        None => normalize_name(image).map_err(|_| RegistryError::BadReference {
            reference: image.to_string(),
            reason: "an image named by digest needs a REF to push to".into(),
        })?,
    };
    let parsed = parse_reference(&target)?;
    if parsed.digest().is_some() {
        return Err(RegistryError::BadReference {
            reference: target,
            reason: "push to a tag (HOST/NAME:TAG), not a digest".into(),
        });
    }
    let session = Session::open(&target, opts, RegistryOperation::Push)?;
    let img = Image::read(store, &root)?;
    let mut report = PushReport {
        reference: target,
        digest: root,
        manifests: 0,
        blobs_uploaded: 0,
        bytes_uploaded: 0,
        blobs_present: 0,
        blobs_mounted: 0,
    };
    let mounts = mount_sources(store, &root, &parsed);
    let mut seen = HashSet::new();
    for m in &img.manifests {
        let blobs = std::iter::once(m.manifest.config()).chain(m.manifest.layers());
        for b in blobs {
            let digest = Digest::from_oci(b.digest()).map_err(|e| RegistryError::BadImage {
                reference: session.shown.clone(),
                reason: e.to_string(),
            })?;
            if seen.insert(digest) {
                push_blob(&session, store, &mounts, &digest, b.size(), &mut report)?;
            }
        }
    }
    for m in img.manifests.iter().filter(|m| m.digest != root) {
        put_document(&session, store, &m.digest, false)?;
        report.manifests += 1;
    }
    // Indexes are listed parents first: children go up before the index naming them.
    for (d, _) in img.indexes.iter().rev().filter(|(d, _)| *d != root) {
        put_document(&session, store, d, false)?;
        report.manifests += 1;
    }
    put_document(&session, store, &root, true)?;
    report.manifests += 1;
    Ok(report)
}

/// Other repositories of the same registry that the store knows hold this image (an image
/// pulled from `reg/a:1` is tagged so): blobs can be mounted from them instead of uploaded.
fn mount_sources(store: &Store, root: &Digest, target: &Reference) -> Vec<Reference> {
    let refs = store.list_refs().unwrap_or_default();
    refs.into_iter()
        .filter(|r| r.digest == *root)
        .filter_map(|r| r.name.parse::<Reference>().ok())
        .filter(|r| r.registry() == target.registry() && r.repository() != target.repository())
        .collect()
}

fn push_blob(
    session: &Session,
    store: &Store,
    mounts: &[Reference],
    digest: &Digest,
    size: u64,
    report: &mut PushReport,
) -> Result<()> {
    let shown = digest.to_string();
    if session.blob_exists(&shown)? {
        report.blobs_present += 1;
        return Ok(());
    }
    if mounts.iter().any(|from| session.mount_blob(from, &shown)) {
        report.blobs_mounted += 1;
        return Ok(());
    }
    session.push_blob(store, digest, size)?;
    report.blobs_uploaded += 1;
    report.bytes_uploaded += size;
    Ok(())
}

/// Puts a stored manifest or index, byte for byte, under its digest or (`tagged`) the tag.
fn put_document(session: &Session, store: &Store, digest: &Digest, tagged: bool) -> Result<()> {
    let desc = descriptor_of(store, digest)?;
    let body = store.get_blob(digest)?;
    let target = if tagged {
        session.reference.clone()
    } else {
        session.reference.clone_with_digest(digest.to_string())
    };
    session.push_manifest(&target, &body, desc.media_type().as_ref())
}
