//! The layer store seen as an OCI blob source and sink.
//!
//! `chasi-oci` reads and writes OCI layouts and archives through two small traits so it
//! stays independent of the store; this adapter is the one place where the two meet. Layer
//! blobs that come in are ingested as layers (chunked, deduplicated, DiffID-indexed), every
//! other blob is stored as is; every blob that goes out is verified by the store as it streams.

use crate::docs::{read_raw, typed, Kind};
use crate::error::Result;
use chasi_layers::{Digest, Store};
use chasi_oci::{BlobSink, BlobSource, Descriptor, MediaType, OciError, OciResult};
use std::io::Read;

/// The descriptor of a manifest or index stored under `digest`: its media type as the
/// document states it (else as its shape says), its size, its digest.
pub fn descriptor_of(store: &Store, digest: &Digest) -> Result<Descriptor> {
    let (raw, size) = read_raw(store, digest, "image manifest or index")?;
    let kind: Kind = typed(&raw, "image manifest or index", digest)?;
    let media = match (kind.media_type, kind.manifests) {
        (Some(m), _) => MediaType::from(m.as_str()),
        (None, Some(_)) => MediaType::ImageIndex,
        (None, None) => MediaType::ImageManifest,
    };
    Ok(Descriptor::new(media, size, digest.to_oci()))
}

fn sink_err(digest: impl ToString, e: chasi_layers::Error) -> OciError {
    OciError::Sink {
        digest: digest.to_string(),
        message: chasi_layers::error::chain(&e),
    }
}

/// A [`Store`] as a [`BlobSource`] and [`BlobSink`].
pub struct StoreBlobs<'s> {
    store: &'s Store,
}

impl<'s> StoreBlobs<'s> {
    /// Wraps a store.
    pub fn new(store: &'s Store) -> Self {
        StoreBlobs { store }
    }
}

impl BlobSource for StoreBlobs<'_> {
    fn blob_size(&self, digest: &chasi_oci::OciDigest) -> OciResult<u64> {
        let d = Digest::from_oci(digest)?;
        self.store.blob_size(&d).map_err(|e| sink_err(digest, e))
    }

    fn open_blob(&self, digest: &chasi_oci::OciDigest) -> OciResult<Box<dyn Read + '_>> {
        let d = Digest::from_oci(digest)?;
        let reader = self.store.open_blob(&d).map_err(|e| sink_err(digest, e))?;
        Ok(reader)
    }

    fn location(&self) -> String {
        format!("store {}", self.store.root().display())
    }
}

fn is_layer(media_type: &MediaType) -> bool {
    let m = media_type.to_string();
    m.contains(".layer.") || m.contains("rootfs.diff.tar")
}

impl BlobSink for StoreBlobs<'_> {
    fn has_blob(&self, digest: &chasi_oci::OciDigest) -> OciResult<bool> {
        Ok(Digest::from_oci(digest)
            .map(|d| self.store.has_blob(&d))
            .unwrap_or(false))
    }

    fn put_blob(
        &mut self,
        expected: Option<&chasi_oci::OciDigest>,
        media_type: &MediaType,
        reader: &mut dyn Read,
    ) -> OciResult<Descriptor> {
        let expected_digest = expected.map(Digest::from_oci).transpose()?;
        let shown = expected
            .map(ToString::to_string)
            .unwrap_or_else(|| "(new blob)".into());
        let (digest, size) = if is_layer(media_type) {
            let info = self
                .store
                .import_layer_blob(reader, media_type.as_ref(), expected_digest)
                .map_err(|e| sink_err(&shown, e))?;
            // The store can serve the layer under every encoding it has: the blob that came
            // in (external), its own zstd and gzip blobs, and the uncompressed tar (DiffID).
            let tar = chasi_layers::BlobDesc {
                digest: info.diff_id,
                size: info.size,
                media_type: chasi_layers::store::MEDIA_TYPE_LAYER_TAR.to_string(),
            };
            let candidates: Vec<&chasi_layers::BlobDesc> = info
                .external
                .iter()
                .chain(info.zstd.iter())
                .chain(info.gzip.iter())
                .chain(std::iter::once(&tar))
                .collect();
            let blob = candidates
                .iter()
                .find(|b| Some(b.digest) == expected_digest)
                .or_else(|| candidates.first())
                .map(|b| (*b).clone())
                .unwrap_or_else(|| tar.clone());
            (blob.digest, blob.size)
        } else if let Some(d) = expected_digest.filter(|d| self.store.has_blob(d)) {
            // Present already (the config and manifest of an unchanged rebuild): named by its
            // content, so nothing is written and nothing fsynced again.
            let size = self.store.blob_size(&d).map_err(|e| sink_err(&shown, e))?;
            (d, size)
        } else {
            // Streamed: configs are small but other artifacts need not be. A blob whose content
            // does not match is left unreferenced in the store (gc removes it) and refused here.
            let desc = self
                .store
                .put_blob_from(reader, None)
                .map_err(|e| sink_err(&shown, e))?;
            if let Some(d) = expected_digest {
                if desc.digest != d {
                    return Err(OciError::DigestMismatch {
                        expected: d.to_string(),
                        actual: desc.digest.to_string(),
                    });
                }
            }
            (desc.digest, desc.size)
        };
        Ok(Descriptor::new(media_type.clone(), size, digest.to_oci()))
    }

    /// Every layer blob is ingested as a layer, indexed by the DiffID computed on the way.
    fn records_diff_ids(&self) -> bool {
        true
    }

    fn layer_diff_id(
        &self,
        digest: &chasi_oci::OciDigest,
    ) -> OciResult<Option<chasi_oci::OciDigest>> {
        let d = Digest::from_oci(digest)?;
        match self.store.layer_for_blob(&d) {
            Ok(layer) => Ok(Some(layer.diff_id.to_oci())),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(sink_err(digest, e)),
        }
    }
}
