//! The source of an apply: finding it (a file, an OCI layout, or a directory such as a mounted USB stick
//! holding exactly one of those), knowing what it is (a delta, or an image), reading what it would install
//! without writing anything, and importing it into the node's store.
//!
//! Reading ([`Source::plan`]) checks the documents it reads (digests and sizes), picks the manifest of
//! the node's platform ([`chasi_oci::Platform::host`] and [`chasi_oci::Platform::matches`], the rule the
//! rest of chasi uses), refuses a sealer application image (`app-installer`: applications for a
//! running cluster, no system; a delta's target likewise, from the documents it carries) and names
//! every layer with whether the node's store has it. Importing
//! ([`Source::import`]) goes through the checked readers: `chasi_oci::import_image` for an image (every
//! blob verified, the layers' DiffIDs checked before the store keeps them) and `chasi_delta::apply` for a
//! delta (every payload, layer and document verified before it tags the target).

use crate::content::LayerInput;
use crate::error::{NodeError, Result};
use crate::state::ImageRecord;
use chasi_delta::{DeltaArtifact, Method};
use chasi_images::StoreBlobs;
use chasi_layers::{Digest, Store};
use chasi_oci::media::{classify, decoder, BlobKind};
use chasi_oci::{Descriptor, MediaType, OpenedImages, Platform};
use sha2::{Digest as _, Sha256};
use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

/// The largest manifest a delta's target may have (OCI documents are small; this bounds the read).
const MAX_MANIFEST: u64 = 4 << 20;

/// Whether a manifest's `sealer.image.extension` names an `app-installer` image (sealer's
/// `cmd/sealer/cmd/cluster/upgrade.go` refuses any type but `kube-installer`; the node refuses
/// only the application type, since OS images built without sealer have no extension).
fn is_app_image(extension: Option<&str>) -> bool {
    extension
        .and_then(|text| serde_json::from_str::<serde_json::Value>(text).ok())
        .and_then(|ext| ext.get("type").and_then(|t| t.as_str()).map(str::to_string))
        .is_some_and(|t| t == "app-installer")
}

/// What a source is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceKind {
    /// A chasi delta artifact.
    Delta,
    /// An image: an oci-archive, an OCI layout or a docker-archive.
    Image,
}

impl SourceKind {
    /// `delta` or `image`.
    pub fn name(self) -> &'static str {
        match self {
            SourceKind::Delta => "delta",
            SourceKind::Image => "image",
        }
    }
}

/// A source found and classified.
#[derive(Debug, Clone)]
pub struct Source {
    /// The file or layout directory.
    pub path: PathBuf,
    /// What it is.
    pub kind: SourceKind,
}

/// One layer of the image a source installs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedLayer {
    /// Its DiffID.
    pub diff_id: Digest,
    /// The node's store has it already.
    pub in_store: bool,
    /// Bytes the store gains when it is imported (its compressed blob).
    pub import_bytes: u64,
}

/// What a source would install on this node.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The image.
    pub image: ImageRecord,
    /// For a delta: the image it applies to (root digest).
    pub base: Option<Digest>,
    /// Its layers, bottom first.
    pub layers: Vec<PlannedLayer>,
}

impl Plan {
    /// Bytes the store gains by the import (layers it lacks).
    pub fn import_bytes(&self) -> u64 {
        self.layers.iter().map(|l| l.import_bytes).sum()
    }
    /// Layers the store has already.
    pub fn reused(&self) -> usize {
        self.layers.iter().filter(|l| l.in_store).count()
    }
}

impl Source {
    /// Finds the source at `given`: a delta or image file or layout, or a directory holding exactly one.
    pub fn find(given: &Path) -> Result<Source> {
        let meta = fs::metadata(given).map_err(|e| NodeError::BadSource {
            path: given.to_path_buf(),
            reason: format!("cannot read it: {e}"),
        })?;
        if meta.is_file() || given.join("oci-layout").is_file() {
            return Source::classify(given).ok_or_else(|| NodeError::BadSource {
                path: given.to_path_buf(),
                reason:
                    "it is neither a chasi delta nor an OCI layout, oci-archive or docker-archive"
                        .into(),
            });
        }
        if !meta.is_dir() {
            return Err(NodeError::BadSource {
                path: given.to_path_buf(),
                reason: "not a file or a directory".into(),
            });
        }
        let mut found = Vec::new();
        let mut names: Vec<PathBuf> = fs::read_dir(given)
            .map_err(|e| NodeError::io("read directory", given, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name()
                    .is_some_and(|n| !n.to_string_lossy().starts_with('.'))
            })
            .collect();
        names.sort();
        for p in names {
            let candidate = p.is_file() || p.join("oci-layout").is_file();
            if let Some(s) = candidate.then(|| Source::classify(&p)).flatten() {
                found.push(s);
            }
        }
        match found.len() {
            1 => Ok(found.remove(0)),
            0 => Err(NodeError::BadSource {
                path: given.to_path_buf(),
                reason:
                    "the directory holds no chasi delta, OCI layout, oci-archive or docker-archive"
                        .into(),
            }),
            n => Err(NodeError::BadSource {
                path: given.to_path_buf(),
                reason: format!(
                    "the directory holds {n} images or deltas ({}); name the one to apply",
                    found
                        .iter()
                        .map(|s| s.path.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            }),
        }
    }

    fn classify(path: &Path) -> Option<Source> {
        let kind = if chasi_delta::is_delta(path) {
            SourceKind::Delta
        } else if OpenedImages::open(path, None).is_ok() {
            SourceKind::Image
        } else {
            return None;
        };
        Some(Source {
            path: path.to_path_buf(),
            kind,
        })
    }

    /// What the source would install on a node of `platform` whose store is `store`, read without writing.
    pub fn plan(&self, store: &Store, platform: &Platform) -> Result<Plan> {
        match self.kind {
            SourceKind::Image => self.plan_image(store, platform),
            SourceKind::Delta => self.plan_delta(store, platform),
        }
    }

    fn plan_image(&self, store: &Store, platform: &Platform) -> Result<Plan> {
        let opened = OpenedImages::open(&self.path, None)?;
        let entry = opened.resolve(None)?.clone();
        let manifest_desc = self.select(&opened, &entry.root, platform)?;
        let (manifest, _) = chasi_oci::read_manifest(&opened, &manifest_desc)?;
        let extension = manifest
            .annotations()
            .as_ref()
            .and_then(|a| a.get(chasi_oci::ANNOTATION_SEALER_EXTENSION));
        if is_app_image(extension.map(String::as_str)) {
            return Err(NodeError::AppImage {
                image: self.path.display().to_string(),
            });
        }
        let (config, _) = chasi_oci::read_config(&opened, manifest.config())?;
        let config_digest = Digest::from_oci(manifest.config().digest())?;
        let diff_ids = chasi_oci::image::diff_ids(&config, manifest.config().digest())?
            .iter()
            .map(Digest::from_oci)
            .collect::<chasi_oci::OciResult<Vec<Digest>>>()?;
        let image_platform = chasi_oci::image::config_platform(&config).ok_or_else(|| {
            self.bad(format!(
                "its config {config_digest} names no os and architecture"
            ))
        })?;
        if !platform.matches(&image_platform) {
            return Err(NodeError::WrongPlatform {
                image: self.path.display().to_string(),
                image_platform: image_platform.to_string(),
                node: platform.to_string(),
            });
        }
        if diff_ids.len() != manifest.layers().len() {
            return Err(self.bad(format!(
                "manifest {} has {} layers, its config {} DiffIDs",
                manifest_desc.digest(),
                manifest.layers().len(),
                diff_ids.len()
            )));
        }
        let layers = diff_ids
            .iter()
            .zip(manifest.layers())
            .map(|(d, l)| PlannedLayer {
                diff_id: *d,
                in_store: store.has_layer(d),
                import_bytes: if store.has_layer(d) { 0 } else { l.size() },
            })
            .collect();
        Ok(Plan {
            image: ImageRecord {
                name: entry.names.iter().find(|n| n.contains(':')).cloned(),
                root: Digest::from_oci(entry.root.digest())?,
                manifest: Digest::from_oci(manifest_desc.digest())?,
                platform: image_platform.to_string(),
                diff_ids,
            },
            base: None,
            layers,
        })
    }

    fn select(
        &self,
        opened: &OpenedImages,
        root: &Descriptor,
        platform: &Platform,
    ) -> Result<Descriptor> {
        chasi_oci::select_manifest(opened, root, Some(platform)).map_err(|e| match e {
            chasi_oci::OciError::NoSuchPlatform { available, .. } => NodeError::WrongPlatform {
                image: self.path.display().to_string(),
                image_platform: available,
                node: platform.to_string(),
            },
            e => e.into(),
        })
    }

    fn plan_delta(&self, store: &Store, platform: &Platform) -> Result<Plan> {
        let art = DeltaArtifact::open(&self.path)?;
        let config = art.config();
        let pd = config
            .platforms
            .iter()
            .find(|p| {
                p.platform
                    .parse::<Platform>()
                    .is_ok_and(|pp| platform.matches(&pp))
            })
            .ok_or_else(|| NodeError::WrongPlatform {
                image: self.path.display().to_string(),
                image_platform: config
                    .platforms
                    .iter()
                    .map(|p| p.platform.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                node: platform.to_string(),
            })?;
        if self.delta_target_is_app_image(&art, &pd.target_manifest)? {
            return Err(NodeError::AppImage {
                image: format!(
                    "{} (the target of delta {})",
                    config.target.name.as_deref().unwrap_or("without a name"),
                    self.path.display()
                ),
            });
        }
        let layers = pd
            .target_layers
            .iter()
            .map(|d| {
                let l = config.layers.iter().find(|l| l.diff_id == *d);
                let in_store = store.has_layer(d);
                PlannedLayer {
                    diff_id: *d,
                    in_store,
                    import_bytes: match l {
                        Some(l) if !in_store => l.blob.size,
                        _ => 0,
                    },
                }
            })
            .collect();
        Ok(Plan {
            image: ImageRecord {
                name: config.target.name.clone(),
                root: config.target.digest,
                manifest: pd.target_manifest,
                platform: pd.platform.clone(),
                diff_ids: pd.target_layers.clone(),
            },
            base: Some(config.base),
            layers,
        })
    }

    /// Whether the manifest a delta rebuilds (one of the documents it carries, read verified and
    /// bounded) is an app-installer image's.
    fn delta_target_is_app_image(&self, art: &DeltaArtifact, manifest: &Digest) -> Result<bool> {
        let mut bytes = Vec::new();
        art.blob(manifest)?
            .take(MAX_MANIFEST + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| NodeError::io("read the delta's target manifest", &self.path, e))?;
        if bytes.len() as u64 > MAX_MANIFEST {
            return Err(self.bad(format!(
                "the target manifest {manifest} is larger than {MAX_MANIFEST} bytes"
            )));
        }
        let value: serde_json::Value = serde_json::from_slice(&bytes)
            .map_err(|e| self.bad(format!("the target manifest {manifest} is not JSON: {e}")))?;
        let extension = value
            .pointer("/annotations")
            .and_then(|a| a.get(chasi_oci::ANNOTATION_SEALER_EXTENSION))
            .and_then(serde_json::Value::as_str);
        Ok(is_app_image(extension))
    }

    /// Checks every blob of the source against its digest, reading it once (no write).
    pub fn verify(&self) -> Result<()> {
        match self.kind {
            SourceKind::Delta => Ok(DeltaArtifact::open(&self.path)?.verify_blobs()?),
            SourceKind::Image => Ok(()),
        }
    }

    /// Imports the source into `store` and tags what it brought `chasi-node/incoming:image`, so a `gc`
    /// keeps it until a slot holds it.
    pub fn import(&self, store: &Store, plan: &Plan) -> Result<()> {
        match self.kind {
            SourceKind::Image => {
                let (opened, desc) = self.open_image(plan)?;
                if Digest::from_oci(desc.digest())? != plan.image.manifest {
                    return Err(self.bad("it changed while being applied".into()));
                }
                chasi_oci::import_image(&opened, &desc, &mut StoreBlobs::new(store))?;
                store.set_ref(crate::slots::INCOMING_REF, &plan.image.manifest)?;
            }
            SourceKind::Delta => {
                let opts = chasi_delta::ApplyOptions {
                    tag: Some(crate::slots::INCOMING_REF.to_string()),
                    ..Default::default()
                };
                chasi_delta::apply(store, &self.path, &opts)?;
            }
        }
        Ok(())
    }

    /// The layers of the planned image as a dry run can read them: from the store when it has them, from
    /// the source's blobs (decompressed, digest and DiffID checked) otherwise; a layer a delta rebuilds
    /// cannot be read.
    pub fn layer_inputs<'a>(
        &self,
        store: &'a Store,
        plan: &Plan,
        opened: &'a SourceReader,
    ) -> Result<Vec<LayerInput<'a>>> {
        let mut out = Vec::new();
        for (i, l) in plan.layers.iter().enumerate() {
            if l.in_store {
                out.push(LayerInput {
                    diff_id: l.diff_id,
                    reader: Some(Box::new(store.open_layer(&l.diff_id)?)),
                    tar_size: 0,
                });
                continue;
            }
            out.push(opened.layer(i, l)?);
        }
        Ok(out)
    }

    /// The opened image source and the manifest `plan` chose.
    fn open_image(&self, plan: &Plan) -> Result<(OpenedImages, Descriptor)> {
        let opened = OpenedImages::open(&self.path, None)?;
        let entry = opened.resolve(None)?.clone();
        let platform: Platform =
            plan.image.platform.parse().map_err(|_| {
                self.bad(format!("platform {} does not parse", plan.image.platform))
            })?;
        let desc = self.select(&opened, &entry.root, &platform)?;
        Ok((opened, desc))
    }

    fn bad(&self, reason: String) -> NodeError {
        NodeError::BadSource {
            path: self.path.clone(),
            reason,
        }
    }
}

/// A source opened to read layer blobs from (dry run).
pub enum SourceReader {
    /// An image's layout or archive, and the planned manifest's layer descriptors.
    Image(OpenedImages, Vec<Descriptor>),
    /// A delta artifact.
    Delta(DeltaArtifact),
}

impl SourceReader {
    /// Opens `source` to read the blobs of `plan`.
    pub fn open(source: &Source, plan: &Plan) -> Result<SourceReader> {
        Ok(match source.kind {
            SourceKind::Image => {
                let (opened, desc) = source.open_image(plan)?;
                let (manifest, _) = chasi_oci::read_manifest(&opened, &desc)?;
                let layers = manifest.layers().clone();
                SourceReader::Image(opened, layers)
            }
            SourceKind::Delta => SourceReader::Delta(DeltaArtifact::open(&source.path)?),
        })
    }

    fn layer(&self, i: usize, l: &PlannedLayer) -> Result<LayerInput<'_>> {
        let (reader, what): (Option<Box<dyn Read + '_>>, _) = match self {
            SourceReader::Image(opened, descs) => {
                let d = descs.get(i).ok_or_else(|| NodeError::BadSource {
                    path: opened.path().to_path_buf(),
                    reason: format!("layer {i} is not in the manifest"),
                })?;
                (
                    Some(decoded(opened, d)?),
                    opened.path().display().to_string(),
                )
            }
            SourceReader::Delta(art) => {
                let ld = art.config().layers.iter().find(|x| x.diff_id == l.diff_id);
                match ld {
                    Some(ld) if ld.method == Method::Full => {
                        let src = ld.source.as_ref().unwrap_or(&ld.blob);
                        let codec = codec_of(&MediaType::from(src.media_type.as_str()));
                        let r = decoder(codec, art.blob(&src.digest)?)
                            .map_err(|e| NodeError::io("decode", art.location(), e))?;
                        (Some(r), art.location().to_string())
                    }
                    Some(ld) => {
                        return Ok(LayerInput {
                            diff_id: l.diff_id,
                            reader: None,
                            tar_size: ld.size,
                        })
                    }
                    None => (None, art.location().to_string()),
                }
            }
        };
        Ok(LayerInput {
            diff_id: l.diff_id,
            reader: reader.map(|r| Box::new(DiffIdCheck::new(r, l.diff_id, what)) as Box<dyn Read>),
            tar_size: 0,
        })
    }
}

fn codec_of(mt: &MediaType) -> chasi_oci::LayerCodec {
    match classify(mt) {
        BlobKind::Layer(c) => c,
        _ => chasi_oci::LayerCodec::Uncompressed,
    }
}

fn decoded<'a>(opened: &'a OpenedImages, d: &Descriptor) -> Result<Box<dyn Read + 'a>> {
    let r = chasi_oci::blobs::open_verified(opened, d)?;
    decoder(codec_of(d.media_type()), r).map_err(|e| NodeError::io("decode", opened.path(), e))
}

/// A layer tar whose SHA-256 is checked against its DiffID when it ends.
struct DiffIdCheck<'a> {
    inner: Box<dyn Read + 'a>,
    hash: Sha256,
    expected: Digest,
    what: String,
}

impl<'a> DiffIdCheck<'a> {
    fn new(inner: Box<dyn Read + 'a>, expected: Digest, what: String) -> Self {
        DiffIdCheck {
            inner,
            hash: Sha256::new(),
            expected,
            what,
        }
    }
}

impl Read for DiffIdCheck<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && !buf.is_empty() {
            let got = Digest(self.hash.clone().finalize().into());
            if got != self.expected {
                return Err(io::Error::other(format!(
                    "layer of {} has DiffID {got}, its config says {}",
                    self.what, self.expected
                )));
            }
        }
        self.hash.update(&buf[..n]);
        Ok(n)
    }
}
