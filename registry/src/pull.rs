//! `chasi pull REF`: an image from a registry into the store, through the import `chasi load`
//! uses (`chasi_oci::import_image` into `chasi_images::StoreBlobs`), so the same checks apply:
//! every document checked before anything is written, every blob verified as it streams, a
//! layer's DiffID compared as the store ingests it, nothing tagged unless all of it is stored.
//!
//! The registry is a [`BlobSource`]: manifests and indexes come from the manifest endpoint and
//! are fetched first (walking the index, by digest); configs and layers are `GET` when the
//! import reads them, and a blob the store has is never asked for.

use crate::client::{parse_reference, Options, Session};
use crate::error::{RegistryError, Result};
use crate::transfer::BlobReader;
use chasi_images::StoreBlobs;
use chasi_layers::{Digest, Store};
use chasi_oci::media::{classify, BlobKind};
use chasi_oci::{BlobSource, Descriptor, MediaType, MemoryBlobs, OciDigest, OciError, OciResult};
use oci_client::{Reference, RegistryOperation};
use serde::{Deserialize, Serialize};
use std::cell::RefCell;
use std::collections::HashMap;
use std::io::Read;

/// Deepest nesting of indexes followed (the bound of `chasi_oci::import_image`).
const MAX_INDEX_DEPTH: usize = 4;

/// Blobs up to this size are kept in memory once downloaded: the import reads a config twice
/// (to check it, then to store it).
const SMALL_BLOB: u64 = 1 << 20;

/// What [`pull`] did.
#[derive(Debug, Clone, Serialize)]
pub struct PullReport {
    /// The reference pulled.
    pub reference: String,
    /// The root digest (the index's, or the manifest's).
    pub digest: Digest,
    /// The store name it was tagged with (none for a digest reference without `--tag`).
    pub tag: Option<String>,
    /// Blobs written to the store (documents included).
    pub blobs_stored: usize,
    /// Their bytes.
    pub bytes_stored: u64,
    /// Blobs the store had already (with everything below them), not downloaded.
    pub blobs_present: usize,
}

/// Pulls `reference` into `store` and tags it `tag` (default: the reference itself).
pub fn pull(
    store: &Store,
    reference: &str,
    tag: Option<&str>,
    opts: &Options,
) -> Result<PullReport> {
    let parsed = parse_reference(reference)?;
    let name = store_name(&parsed, tag, reference)?;
    let session = Session::open(reference, opts, RegistryOperation::Pull)?;
    let source = RegistrySource::fetch(&session, &parsed)?;
    let mut sink = StoreBlobs::new(store);
    let imported = chasi_oci::import_image(&source, &source.root, &mut sink);
    let report = imported.map_err(|e| source.explain(e))?;
    let digest = Digest::from_oci(report.root.digest()).map_err(|e| source.explain(e))?;
    if let Some(n) = &name {
        store.set_ref(n, &digest)?;
    }
    Ok(PullReport {
        reference: reference.to_string(),
        digest,
        tag: name,
        blobs_stored: report.blobs_imported,
        bytes_stored: report.bytes_imported,
        blobs_present: report.blobs_present,
    })
}

/// What [`pull_to_dir`] did.
#[derive(Debug, Clone)]
pub struct DirPullReport {
    /// What the reference resolved to: an index, or the manifest itself.
    pub root: Descriptor,
    /// The platform's image manifest.
    pub manifest: Descriptor,
    /// Blobs written into the directory (blobs it held are not downloaded).
    pub blobs_written: u64,
    /// Their bytes.
    pub bytes_written: u64,
}

/// Copies the `platform` image of `reference` from the registry into a registry directory as
/// `repository` (and `tag`, when given), as a pull-through registry would keep it after serving
/// that platform: the root document (an index is kept whole, so the reference's digest still
/// resolves), the platform's manifest, its config and layers — never the other platforms.
/// Only what the directory does not hold is downloaded, every blob verified as it is written.
/// It is how a cluster image carries its container images (sealer's `registry/` layer).
pub fn pull_to_dir(
    reference: &str,
    platform: &chasi_oci::Platform,
    dir: &chasi_oci::distribution::RegistryDir,
    repository: &str,
    tag: Option<&str>,
    opts: &Options,
) -> Result<DirPullReport> {
    let parsed = parse_reference(reference)?;
    let session = Session::open(reference, opts, RegistryOperation::Pull)?;
    let (source, root) = RegistrySource::fetch_platform(&session, &parsed, platform)?;
    let copied = (|| {
        let mut report = dir.put_untagged(&source, &source.root, repository)?;
        // The indexes on the way (the root, nested ones), kept as documents only.
        for digest in source.documents.digests() {
            if digest == source.root.digest() {
                continue;
            }
            let raw = source.documents.get(digest).unwrap_or_default();
            let d = Descriptor::new(MediaType::ImageIndex, raw.len() as u64, digest.clone());
            let written = dir.put_document(&d, raw, repository)?;
            if written > 0 {
                report.blobs_written += 1;
                report.bytes_written += written;
            }
        }
        if let Some(t) = tag {
            dir.set_tag(repository, t, root.digest())?;
        }
        Ok(report)
    })();
    let report = copied.map_err(|e| source.explain(e))?;
    Ok(DirPullReport {
        root,
        manifest: source.root.clone(),
        blobs_written: report.blobs_written,
        bytes_written: report.bytes_written,
    })
}

/// The store name of a pulled image: `--tag`, else `REGISTRY/REPO:TAG` of a tagged reference.
fn store_name(parsed: &Reference, tag: Option<&str>, shown: &str) -> Result<Option<String>> {
    let wanted = match (tag, parsed.tag()) {
        (Some(t), _) => t.to_string(),
        (None, Some(t)) => format!("{}/{}:{t}", parsed.registry(), parsed.repository()),
        (None, None) if parsed.digest().is_some() => return Ok(None),
        (None, None) => format!("{}/{}:latest", parsed.registry(), parsed.repository()),
    };
    chasi_images::normalize_name(&wanted)
        .map(Some)
        .map_err(|e| RegistryError::BadReference {
            reference: shown.to_string(),
            reason: e.to_string(),
        })
}

/// The `mediaType` of a document, or what its shape says when it has none (OCI allows that).
#[derive(Deserialize)]
struct Kind {
    #[serde(rename = "mediaType")]
    media_type: Option<String>,
    manifests: Option<serde::de::IgnoredAny>,
}

/// A registry repository as a blob source for one pull.
struct RegistrySource<'s> {
    session: &'s Session,
    root: Descriptor,
    /// Manifests and indexes, fetched before the import starts.
    documents: MemoryBlobs,
    /// The sizes manifests give their configs and layers.
    sizes: HashMap<String, u64>,
    /// Small blobs already downloaded.
    small: RefCell<HashMap<String, Vec<u8>>>,
    /// The registry failure behind an I/O error the import saw.
    last_error: RefCell<Option<RegistryError>>,
}

impl<'s> RegistrySource<'s> {
    /// Fetches the root document and, for an index, every manifest below it.
    fn fetch(session: &'s Session, reference: &Reference) -> Result<Self> {
        let mut source = Self::fetch_root(session, reference)?;
        let root = source.root.clone();
        source.walk(&root, 0)?;
        Ok(source)
    }

    /// A source holding only the document `reference` names, checked against the digest the
    /// registry gave.
    fn fetch_root(session: &'s Session, reference: &Reference) -> Result<Self> {
        let (body, digest) = session.pull_manifest(reference)?;
        let media = media_of(&body).map_err(|reason| bad(session, reason))?;
        let mut documents = MemoryBlobs::new();
        let root = documents.insert(media, body.to_vec());
        if root.digest().to_string() != digest {
            return Err(bad(
                session,
                format!(
                    "the registry named the manifest {digest} but it hashes to {}",
                    root.digest()
                ),
            ));
        }
        Ok(RegistrySource {
            session,
            root,
            documents,
            sizes: HashMap::new(),
            small: RefCell::new(HashMap::new()),
            last_error: RefCell::new(None),
        })
    }

    /// Fetches the root document and, for an index, only the documents on the way to the
    /// manifest of `platform`, which becomes the source's root; returns the reference's root too.
    fn fetch_platform(
        session: &'s Session,
        reference: &Reference,
        platform: &chasi_oci::Platform,
    ) -> Result<(Self, Descriptor)> {
        let mut source = Self::fetch_root(session, reference)?;
        let root = source.root.clone();
        for _ in 0..=MAX_INDEX_DEPTH {
            match chasi_oci::select_manifest(&source.documents, &root, Some(platform)) {
                Ok(chosen) => {
                    source.fetch_document(&chosen)?;
                    source.root = chosen.clone();
                    source.walk(&chosen, 0)?;
                    // A manifest named directly carries no platform but its config's: an image
                    // of another platform is refused, never carried into the wrong image.
                    chasi_oci::select_platform_manifest(&source, &chosen, platform)
                        .map_err(|e| source.explain(e))?;
                    return Ok((source, root));
                }
                // A nested index the selection needs to read: fetch it and select again.
                Err(OciError::MissingBlob { digest, .. }) => {
                    let nested = index_child(&source.documents, &root, &digest)
                        .ok_or_else(|| bad(session, format!("index entry {digest} vanished")))?;
                    source.fetch_document(&nested)?;
                }
                Err(e) => return Err(source.explain(e)),
            }
        }
        Err(bad(session, "image indexes nest too deep".to_string()))
    }

    /// Fetches a manifest or index by digest into `documents` (once), checking its digest.
    fn fetch_document(&mut self, d: &Descriptor) -> Result<()> {
        if self.documents.get(d.digest()).is_some() {
            return Ok(());
        }
        let target = self
            .session
            .reference
            .clone_with_digest(d.digest().to_string());
        let (body, _) = self.session.pull_manifest(&target)?;
        let got = self.documents.insert(d.media_type().clone(), body.to_vec());
        if got.digest() != d.digest() {
            return Err(RegistryError::DigestMismatch {
                reference: self.session.shown.clone(),
                expected: d.digest().to_string(),
                actual: got.digest().to_string(),
            });
        }
        Ok(())
    }

    fn walk(&mut self, d: &Descriptor, depth: usize) -> Result<()> {
        match classify(d.media_type()) {
            BlobKind::Index if depth < MAX_INDEX_DEPTH => {
                let (index, _) =
                    chasi_oci::read_index(&self.documents, d).map_err(|e| self.explain(e))?;
                for child in index.manifests() {
                    if !matches!(
                        classify(child.media_type()),
                        BlobKind::Manifest | BlobKind::Index
                    ) || self.documents.get(child.digest()).is_some()
                    {
                        continue; // the import refuses what is not an image, with its reason
                    }
                    let target = self
                        .session
                        .reference
                        .clone_with_digest(child.digest().to_string());
                    let (body, _) = self.session.pull_manifest(&target)?;
                    let got = self
                        .documents
                        .insert(child.media_type().clone(), body.to_vec());
                    if got.digest() != child.digest() {
                        return Err(RegistryError::DigestMismatch {
                            reference: self.session.shown.clone(),
                            expected: child.digest().to_string(),
                            actual: got.digest().to_string(),
                        });
                    }
                    self.walk(child, depth + 1)?;
                }
                Ok(())
            }
            BlobKind::Manifest => {
                let (manifest, _) =
                    chasi_oci::read_manifest(&self.documents, d).map_err(|e| self.explain(e))?;
                for b in std::iter::once(manifest.config()).chain(manifest.layers()) {
                    self.sizes.insert(b.digest().to_string(), b.size());
                }
                Ok(())
            }
            // Too deep, or not an image: the import says which.
            _ => Ok(()),
        }
    }

    /// The error to report for an import failure: the registry's when it caused it.
    fn explain(&self, e: OciError) -> RegistryError {
        if let Some(reg) = self.last_error.borrow_mut().take() {
            return reg;
        }
        let reference = self.session.shown.clone();
        match e {
            OciError::DigestMismatch { expected, actual } => RegistryError::DigestMismatch {
                reference,
                expected,
                actual,
            },
            source => RegistryError::Import { reference, source },
        }
    }

    fn keep(&self, e: RegistryError, digest: &OciDigest) -> OciError {
        let message = e.to_string();
        *self.last_error.borrow_mut() = Some(e);
        OciError::Sink {
            digest: digest.to_string(),
            message,
        }
    }
}

/// The descriptor of `digest` in any index held in `documents` below `root`.
fn index_child(documents: &MemoryBlobs, root: &Descriptor, digest: &str) -> Option<Descriptor> {
    let mut pending = vec![root.clone()];
    while let Some(d) = pending.pop() {
        let Ok((index, _)) = chasi_oci::read_index(documents, &d) else {
            continue;
        };
        for child in index.manifests() {
            if child.digest().to_string() == digest {
                return Some(child.clone());
            }
            if matches!(classify(child.media_type()), BlobKind::Index) {
                pending.push(child.clone());
            }
        }
    }
    None
}

fn bad(session: &Session, reason: String) -> RegistryError {
    RegistryError::BadImage {
        reference: session.shown.clone(),
        reason,
    }
}

fn media_of(body: &[u8]) -> std::result::Result<MediaType, String> {
    let kind: Kind =
        serde_json::from_slice(body).map_err(|e| format!("the manifest is not JSON: {e}"))?;
    Ok(match (kind.media_type, kind.manifests) {
        (Some(m), _) => MediaType::from(m.as_str()),
        (None, Some(_)) => MediaType::ImageIndex,
        (None, None) => MediaType::ImageManifest,
    })
}

impl BlobSource for RegistrySource<'_> {
    /// A document's size; for another blob, the size its manifest gives once `HEAD` found it
    /// (the download then checks it byte for byte).
    fn blob_size(&self, digest: &OciDigest) -> OciResult<u64> {
        if let Some(b) = self.documents.get(digest) {
            return Ok(b.len() as u64);
        }
        let key = digest.to_string();
        match self.session.blob_exists(&key) {
            Ok(true) => {}
            Ok(false) => {
                return Err(OciError::MissingBlob {
                    digest: key,
                    location: self.location(),
                })
            }
            Err(e) => return Err(self.keep(e, digest)),
        }
        self.sizes
            .get(&key)
            .copied()
            .ok_or_else(|| OciError::MissingBlob {
                digest: key,
                location: self.location(),
            })
    }

    fn open_blob(&self, digest: &OciDigest) -> OciResult<Box<dyn Read + '_>> {
        if let Some(b) = self.documents.get(digest) {
            return Ok(Box::new(b));
        }
        let key = digest.to_string();
        if let Some(b) = self.small.borrow().get(&key) {
            return Ok(Box::new(std::io::Cursor::new(b.clone())));
        }
        let reader: BlobReader<'_> = self.session.open_blob(&key, &self.last_error);
        if self.sizes.get(&key).is_some_and(|s| *s <= SMALL_BLOB) {
            let mut bytes = Vec::new();
            // At most one byte past the declared size: the verifying reader sees the excess.
            let limit = self.sizes.get(&key).copied().unwrap_or(0) + 1;
            reader
                .take(limit)
                .read_to_end(&mut bytes)
                .map_err(OciError::blob_io("download", &key))?;
            self.small.borrow_mut().insert(key, bytes.clone());
            return Ok(Box::new(std::io::Cursor::new(bytes)));
        }
        Ok(Box::new(reader))
    }

    fn location(&self) -> String {
        format!("registry {}", self.session.shown)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(reference: &str, tag: Option<&str>) -> Option<String> {
        let parsed = parse_reference(reference).unwrap();
        store_name(&parsed, tag, reference).unwrap()
    }

    #[test]
    fn pulled_images_are_named_by_their_reference_or_the_tag_given() {
        assert_eq!(
            name("127.0.0.1:5000/ns/app:1", None).as_deref(),
            Some("127.0.0.1:5000/ns/app:1")
        );
        assert_eq!(
            name("127.0.0.1:5000/ns/app", None).as_deref(),
            Some("127.0.0.1:5000/ns/app:latest")
        );
        assert_eq!(
            name("nginx", None).as_deref(),
            Some("docker.io/library/nginx:latest")
        );
        let digest = format!("reg.example/app@sha256:{}", "a".repeat(64));
        assert_eq!(name(&digest, None), None);
        assert_eq!(name(&digest, Some("mine")).as_deref(), Some("mine:latest"));
        let parsed = parse_reference("reg.example/app:1").unwrap();
        assert!(store_name(&parsed, Some("Bad Name"), "reg.example/app:1").is_err());
    }

    #[test]
    fn a_document_without_a_media_type_is_known_by_its_shape() {
        let m = |t: &str| media_of(t.as_bytes()).map(|m| m.to_string());
        assert_eq!(
            m(r#"{"mediaType":"application/vnd.docker.distribution.manifest.v2+json"}"#).unwrap(),
            "application/vnd.docker.distribution.manifest.v2+json"
        );
        assert_eq!(
            m(r#"{"manifests":[]}"#).unwrap(),
            "application/vnd.oci.image.index.v1+json"
        );
        assert_eq!(
            m(r#"{"config":{}}"#).unwrap(),
            "application/vnd.oci.image.manifest.v1+json"
        );
        assert!(m("not json").unwrap_err().contains("not JSON"));
    }
}
