//! The walk of an import: for each tagged image of a registry directory, its blobs children
//! first (layers and config, then the manifest, then the index), each written unless containerd
//! has it, parents labelled for containerd's GC; then the image record. One lease covers the
//! whole import and is dropped at its end, success or not.

use super::containerd::{Containerd, Written};
use super::{image_name, CRI_LABEL, DEFAULT_ADDRESS, DEFAULT_NAMESPACE};
use crate::error::{NodeError, Result};
use chasi_oci::blobs::{open_verified, BlobSource};
use chasi_oci::distribution::{RegistryDir, RegistryImage};
use chasi_oci::image::{read_index, read_manifest, select_platform_manifest};
use chasi_oci::media::{classify, BlobKind};
use chasi_oci::{Descriptor, OciError, Platform};
use containerd_client::types::Descriptor as CtrDescriptor;
use serde::Serialize;
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Where to import to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportOptions {
    /// containerd's socket.
    pub address: PathBuf,
    /// The namespace the images go to.
    pub namespace: String,
}

impl Default for ImportOptions {
    fn default() -> Self {
        ImportOptions {
            address: PathBuf::from(DEFAULT_ADDRESS),
            namespace: DEFAULT_NAMESPACE.to_string(),
        }
    }
}

/// One image imported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImportedImage {
    /// The containerd name (`docker.io/library/nginx:1.25`).
    pub name: String,
    /// The digest of its manifest or index.
    pub digest: String,
    /// The media type of that document.
    pub media_type: String,
    /// Blobs written.
    pub blobs_written: u64,
    /// Blobs containerd had already.
    pub blobs_present: u64,
    /// Bytes written.
    pub bytes_written: u64,
    /// What happened to the image record: `created`, `updated` (it named another target) or
    /// `unchanged`.
    pub record: &'static str,
    /// The image's id as the CRI plugin names it, the digest of the config for the node's
    /// platform (also recorded as an image of that name, as a CRI pull does); `null` when the
    /// image has no manifest for this platform.
    pub id: Option<String>,
}

/// What an import did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ImportReport {
    /// The registry directory.
    pub from: PathBuf,
    /// containerd's socket.
    pub address: PathBuf,
    /// The namespace.
    pub namespace: String,
    /// Each image, in the registry directory's order (repository, then tag).
    pub images: Vec<ImportedImage>,
    /// Blobs written in all.
    pub blobs_written: u64,
    /// Bytes written in all.
    pub bytes_written: u64,
    /// Wall-clock seconds.
    pub seconds: f64,
}

/// The tagged images of the registry directory `dir` by their full names (none when it does
/// not exist): the links for a registry mirror (`library/nginx` beside
/// `docker.io/library/nginx`) name the same images and are left out.
pub fn registry_images(dir: &Path) -> Result<Vec<RegistryImage>> {
    RegistryDir::new(dir)
        .carried_images()
        .map_err(|source| NodeError::BadRegistry {
            dir: dir.to_path_buf(),
            source: Box::new(source),
        })
}

/// Imports every tagged image of the registry directory `dir` into containerd; `each` is told
/// of every image once it is tagged. Every image's content is written before any is tagged,
/// so a failure while writing (a corrupt blob) tags none.
pub fn import(
    dir: &Path,
    opts: &ImportOptions,
    each: &mut dyn FnMut(&ImportedImage),
) -> Result<ImportReport> {
    let started = Instant::now();
    super::containerd::check_namespace(&opts.namespace)?;
    let images = registry_images(dir)?;
    let mut report = ImportReport {
        from: dir.to_path_buf(),
        address: opts.address.clone(),
        namespace: opts.namespace.clone(),
        images: Vec::new(),
        blobs_written: 0,
        bytes_written: 0,
        seconds: 0.0,
    };
    if images.is_empty() {
        return Ok(report);
    }
    let mut cd = Containerd::connect(&opts.address, &opts.namespace)?;
    cd.begin_lease()?;
    let reg = RegistryDir::new(dir);
    // All content first, then the records: an import tags every image or none, so a corrupt
    // blob in one image leaves containerd's images as they were (the lease keeps what was
    // written from being collected until it ends; a rerun finds it).
    let result = (|| -> Result<()> {
        let written = images
            .iter()
            .map(|image| write_content(&cd, &reg, image))
            .collect::<Result<Vec<_>>>()?;
        for (image, counts) in images.iter().zip(written) {
            let done = tag(&cd, &reg, image, counts)?;
            report.blobs_written += done.blobs_written;
            report.bytes_written += done.bytes_written;
            each(&done);
            report.images.push(done);
        }
        Ok(())
    })();
    let ended = cd.end_lease();
    result?;
    ended?;
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// What one image's walk wrote.
#[derive(Default)]
struct Counts {
    written: u64,
    present: u64,
    bytes: u64,
}

struct Walk<'a> {
    cd: &'a Containerd,
    reg: &'a RegistryDir,
    counts: Counts,
}

/// Writes what containerd lacks of one image; returns what was written.
fn write_content(cd: &Containerd, reg: &RegistryDir, image: &RegistryImage) -> Result<Counts> {
    let mut walk = Walk {
        cd,
        reg,
        counts: Counts::default(),
    };
    walk.tree(&image.root, 0)?;
    Ok(walk.counts)
}

/// Creates or updates the records of an image whose content is written.
fn tag(
    cd: &Containerd,
    reg: &RegistryDir,
    image: &RegistryImage,
    counts: Counts,
) -> Result<ImportedImage> {
    let walk = Walk { cd, reg, counts };
    let name = image_name(&image.repository, &image.tag);
    let record = walk.record(&name, &image.root)?;
    // The CRI plugin's own reference, `sha256:<config>`: it keeps the content while containers
    // use the image, even when its tag moves.
    let id = match select_platform_manifest(reg, &image.root, &Platform::host()) {
        Ok(m) => {
            let (manifest, _) = read_manifest(reg, &m).map_err(|e| walk.fail(&m, e))?;
            let id = manifest.config().digest().to_string();
            walk.record(&id, &image.root)?;
            Some(id)
        }
        // No image for this node's platform, or one the directory does not carry (a cluster
        // image built for another platform carries only its own).
        Err(OciError::NoSuchPlatform { .. } | OciError::MissingBlob { .. }) => None,
        Err(e) => return Err(walk.fail(&image.root, e)),
    };
    Ok(ImportedImage {
        name,
        digest: image.root.digest().to_string(),
        media_type: image.root.media_type().to_string(),
        blobs_written: walk.counts.written,
        blobs_present: walk.counts.present,
        bytes_written: walk.counts.bytes,
        record,
        id,
    })
}

impl Walk<'_> {
    /// Puts a manifest or index and everything below it.
    fn tree(&mut self, root: &Descriptor, depth: u32) -> Result<()> {
        match classify(root.media_type()) {
            BlobKind::Index if depth == 0 => {
                let (index, raw) = read_index(self.reg, root).map_err(|e| self.fail(root, e))?;
                let mut labels = BTreeMap::new();
                let mut present = 0;
                for child in index.manifests() {
                    match self.reg.blob_size(child.digest()) {
                        Ok(_) => {}
                        // Not carried (another platform): as a pull for one platform leaves it.
                        Err(OciError::MissingBlob { .. }) => continue,
                        Err(e) => return Err(self.fail(child, e)),
                    }
                    self.tree(child, depth + 1)?;
                    labels.insert(
                        format!("containerd.io/gc.ref.content.m.{present}"),
                        child.digest().to_string(),
                    );
                    present += 1;
                }
                if present == 0 {
                    return Err(self.fail(
                        root,
                        OciError::Inconsistent {
                            digest: root.digest().to_string(),
                            message: "the registry directory holds none of the index's manifests"
                                .into(),
                        },
                    ));
                }
                self.raw(root, &raw, &labels)
            }
            BlobKind::Manifest => {
                let (manifest, raw) =
                    read_manifest(self.reg, root).map_err(|e| self.fail(root, e))?;
                let mut labels = BTreeMap::new();
                self.file(manifest.config())?;
                labels.insert(
                    "containerd.io/gc.ref.content.config".to_string(),
                    manifest.config().digest().to_string(),
                );
                for (i, layer) in manifest.layers().iter().enumerate() {
                    self.file(layer)?;
                    labels.insert(
                        format!("containerd.io/gc.ref.content.l.{i}"),
                        layer.digest().to_string(),
                    );
                }
                self.raw(root, &raw, &labels)
            }
            BlobKind::Index => Err(self.fail(
                root,
                OciError::Inconsistent {
                    digest: root.digest().to_string(),
                    message: "an index nested in an index".into(),
                },
            )),
            _ => Err(self.fail(
                root,
                OciError::UnsupportedMediaType {
                    media_type: root.media_type().to_string(),
                    digest: root.digest().to_string(),
                },
            )),
        }
    }

    /// Whether containerd has the blob; when it does, the labels it lacks are set.
    fn present(&mut self, d: &Descriptor, labels: &BTreeMap<String, String>) -> Result<bool> {
        let digest = d.digest().to_string();
        let Some(existing) = self.cd.blob_labels(&digest)? else {
            return Ok(false);
        };
        let missing: BTreeMap<String, String> = labels
            .iter()
            .filter(|(k, v)| existing.get(*k) != Some(*v))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if !missing.is_empty() {
            self.cd.set_blob_labels(&digest, &missing)?;
        }
        self.counts.present += 1;
        Ok(true)
    }

    fn written(&mut self, w: Written) {
        match w {
            Written::Bytes(n) => {
                self.counts.written += 1;
                self.counts.bytes += n;
            }
            Written::Present => self.counts.present += 1,
        }
    }

    /// A config or layer, streamed from its file and verified as it goes.
    fn file(&mut self, d: &Descriptor) -> Result<()> {
        let none = BTreeMap::new();
        if self.present(d, &none)? {
            return Ok(());
        }
        let mut reader = open_verified(self.reg, d).map_err(|e| self.fail(d, e))?;
        let path = self.reg.blob_path(d.digest());
        let digest = d.digest().to_string();
        let dir = self.reg.root();
        let mut read = |buf: &mut [u8]| match reader.read(buf) {
            Ok(n) => Ok(n),
            Err(e) => Err(blob_error(dir, &digest, &path, reader.explain(e, "read"))),
        };
        let w = self.cd.write_blob(&digest, d.size(), &none, &mut read)?;
        self.written(w);
        Ok(())
    }

    /// A manifest or index, from the bytes already read and verified.
    fn raw(&mut self, d: &Descriptor, raw: &[u8], labels: &BTreeMap<String, String>) -> Result<()> {
        if self.present(d, labels)? {
            return Ok(());
        }
        let mut rest = raw;
        let mut read = |buf: &mut [u8]| Ok(rest.read(buf).unwrap_or(0));
        let w = self
            .cd
            .write_blob(d.digest().as_ref(), d.size(), labels, &mut read)?;
        self.written(w);
        Ok(())
    }

    /// Creates or updates the image record; `created`, `updated` or `unchanged`.
    fn record(&self, name: &str, root: &Descriptor) -> Result<&'static str> {
        let target = CtrDescriptor {
            media_type: root.media_type().to_string(),
            digest: root.digest().to_string(),
            size: i64::try_from(root.size()).unwrap_or(i64::MAX),
            annotations: Default::default(),
        };
        let labels = BTreeMap::from([(CRI_LABEL.0.to_string(), CRI_LABEL.1.to_string())]);
        let existing = self.cd.image(name)?;
        if let Some(img) = &existing {
            let same = img.target.as_ref().is_some_and(|t| {
                t.digest == target.digest
                    && t.media_type == target.media_type
                    && t.size == target.size
            });
            let labelled = img.labels.get(CRI_LABEL.0).map(String::as_str) == Some(CRI_LABEL.1);
            if same && labelled {
                return Ok("unchanged");
            }
        }
        self.cd
            .put_image(name, target, &labels, existing.is_some())?;
        Ok(if existing.is_some() {
            "updated"
        } else {
            "created"
        })
    }

    fn fail(&self, d: &Descriptor, e: OciError) -> NodeError {
        let path = self.reg.blob_path(d.digest());
        blob_error(self.reg.root(), d.digest().as_ref(), &path, e)
    }
}

/// A verification failure is a corrupt blob (named with its file); an I/O failure stays one;
/// anything else means the directory is not the layout.
fn blob_error(dir: &Path, digest: &str, path: &Path, e: OciError) -> NodeError {
    match e {
        OciError::DigestMismatch { .. } | OciError::SizeMismatch { .. } => {
            NodeError::CorruptImageBlob {
                digest: digest.to_string(),
                path: path.to_path_buf(),
                source: Box::new(e),
            }
        }
        OciError::BlobIo { .. } | OciError::Io { .. } => NodeError::Oci(e),
        e => NodeError::BadRegistry {
            dir: dir.to_path_buf(),
            source: Box::new(e),
        },
    }
}
