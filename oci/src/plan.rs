//! Export planning: which blobs an image needs, and which must change on the way out.
//!
//! Saving an image is copying its blobs, except when the requested layer compression
//! differs from what the source holds. Then each affected layer is transcoded once into a
//! staging directory next to the output (deterministic codecs, see [`super::media`]), its
//! DiffID checked against the config, and every manifest and index above it is rewritten
//! (canonical JSON, unknown fields kept) with the new descriptor. Writers then only stream
//! the planned blobs, which lets archive writers know every member's size up front.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{self, BufReader, BufWriter};
use std::path::{Path, PathBuf};

use oci_spec::image::{Descriptor, Digest, MediaType};
use serde_json::Value;

use super::blobs::{open_verified, BlobSource};
use super::digest::HashingWriter;
use super::error::{OciError, OciResult};
use super::image::{diff_ids, read_config, read_index, read_manifest};
use super::json::{parse_document, to_canonical_json};
use super::media::{
    classify, is_docker, oci_layer_type, transcode, BlobKind, LayerCodec, LayerCompression,
    DOCKER_LAYER_GZIP,
};

/// Where a planned blob's bytes come from.
#[derive(Debug)]
pub(crate) enum BlobData {
    /// Unchanged, from the source (verified while copied).
    Source,
    /// A rewritten document held in memory.
    Memory(Vec<u8>),
    /// A transcoded layer in the staging directory.
    Staged(PathBuf),
}

/// One blob of the export.
#[derive(Debug)]
pub(crate) struct PlannedBlob {
    pub(crate) digest: Digest,
    pub(crate) size: u64,
    pub(crate) data: BlobData,
}

/// Everything an export writes, keyed by digest string (sorted).
pub(crate) struct ExportPlan {
    pub(crate) root: Descriptor,
    pub(crate) blobs: BTreeMap<String, PlannedBlob>,
    _staging: Option<tempfile::TempDir>,
}

impl ExportPlan {
    /// Opens a planned blob for reading, verifying source blobs.
    pub(crate) fn open<'a>(
        &'a self,
        source: &'a (impl BlobSource + ?Sized),
        blob: &'a PlannedBlob,
    ) -> OciResult<Box<dyn io::Read + 'a>> {
        Ok(match &blob.data {
            BlobData::Source => {
                let d = Descriptor::new(
                    MediaType::Other(String::new()),
                    blob.size,
                    blob.digest.clone(),
                );
                Box::new(open_verified(source, &d)?)
            }
            BlobData::Memory(bytes) => Box::new(&bytes[..]),
            BlobData::Staged(path) => Box::new(BufReader::new(
                File::open(path).map_err(OciError::io("open", path))?,
            )),
        })
    }
}

pub(crate) struct Planner<'a, S: BlobSource + ?Sized> {
    source: &'a S,
    compression: LayerCompression,
    staging_parent: PathBuf,
    staging: Option<tempfile::TempDir>,
    blobs: BTreeMap<String, PlannedBlob>,
    layer_cache: HashMap<String, Descriptor>,
    docker_archive: bool,
}

impl<'a, S: BlobSource + ?Sized> Planner<'a, S> {
    /// A planner reading from `source`; staging files go in `staging_parent`.
    pub(crate) fn new(source: &'a S, compression: LayerCompression, staging_parent: &Path) -> Self {
        Planner {
            source,
            compression,
            staging_parent: staging_parent.to_path_buf(),
            staging: None,
            blobs: BTreeMap::new(),
            layer_cache: HashMap::new(),
            docker_archive: false,
        }
    }

    /// Plans for a docker-archive: `Keep` turns zstd into plain tar, and zstd is refused.
    pub(crate) fn for_docker_archive(mut self) -> OciResult<Self> {
        if self.compression == LayerCompression::Zstd {
            return Err(OciError::BadOption {
                format: "docker-archive",
                message: "layers must be uncompressed or gzip; docker and containerd do not read zstd layers in a docker-archive".to_string(),
            });
        }
        self.docker_archive = true;
        Ok(self)
    }

    /// Plans the image rooted at `root` and returns the plan with the (possibly new) root.
    pub(crate) fn plan(mut self, root: &Descriptor) -> OciResult<ExportPlan> {
        let root = self.node(root, 0)?;
        Ok(ExportPlan {
            root,
            blobs: self.blobs,
            _staging: self.staging,
        })
    }

    /// Plans one manifest (used by the docker-archive writer) and returns its new
    /// descriptor.
    pub(crate) fn plan_manifest(mut self, manifest: &Descriptor) -> OciResult<ExportPlan> {
        let root = self.manifest(manifest)?;
        Ok(ExportPlan {
            root,
            blobs: self.blobs,
            _staging: self.staging,
        })
    }

    fn add(&mut self, digest: &Digest, size: u64, data: BlobData) {
        self.blobs.insert(
            digest.to_string(),
            PlannedBlob {
                digest: digest.clone(),
                size,
                data,
            },
        );
    }

    fn add_source(&mut self, d: &Descriptor) {
        if !self.blobs.contains_key(&d.digest().to_string()) {
            self.add(d.digest(), d.size(), BlobData::Source);
        }
    }

    fn add_memory(
        &mut self,
        media_type: MediaType,
        bytes: Vec<u8>,
        like: &Descriptor,
    ) -> Descriptor {
        let digest = super::digest::sha256_digest(&bytes);
        let size = bytes.len() as u64;
        self.add(&digest, size, BlobData::Memory(bytes));
        let mut d = like.clone();
        d.set_media_type(media_type);
        d.set_digest(digest);
        d.set_size(size);
        d
    }

    fn node(&mut self, d: &Descriptor, depth: usize) -> OciResult<Descriptor> {
        match classify(d.media_type()) {
            BlobKind::Index if depth < 4 => self.index(d, depth),
            BlobKind::Index => Err(OciError::inconsistent(
                d.digest(),
                "image indexes nested more than 4 deep",
            )),
            BlobKind::Manifest => self.manifest(d),
            _ => {
                self.add_source(d);
                Ok(d.clone())
            }
        }
    }

    fn index(&mut self, d: &Descriptor, depth: usize) -> OciResult<Descriptor> {
        let (index, raw) = read_index(self.source, d)?;
        let mut changed = Vec::new();
        for (i, child) in index.manifests().iter().enumerate() {
            let new = self.node(child, depth + 1)?;
            if new.digest() != child.digest() || new.media_type() != child.media_type() {
                changed.push((i, new));
            }
        }
        if changed.is_empty() {
            self.add(d.digest(), d.size(), BlobData::Memory(raw));
            return Ok(d.clone());
        }
        let mut value: Value = parse_document(&raw, "image index", d.digest())?;
        for (i, new) in changed {
            let entry = value
                .get_mut("manifests")
                .and_then(|m| m.get_mut(i))
                .ok_or_else(|| {
                    OciError::bad_json("image index", d.digest(), "manifests changed")
                })?;
            entry["mediaType"] = Value::String(new.media_type().to_string());
            entry["digest"] = Value::String(new.digest().to_string());
            entry["size"] = Value::from(new.size());
        }
        if is_docker(d.media_type()) && !all_docker_children(&value) {
            value["mediaType"] = Value::String(MediaType::ImageIndex.to_string());
        }
        let media_type = match value.get("mediaType").and_then(Value::as_str) {
            Some(m) => MediaType::from(m),
            None => d.media_type().clone(),
        };
        let bytes = to_canonical_json(&value)?;
        Ok(self.add_memory(media_type, bytes, d))
    }

    fn target(&self, codec: LayerCodec) -> LayerCodec {
        match (self.docker_archive, self.compression, codec) {
            (true, LayerCompression::Keep, LayerCodec::Zstd) => LayerCodec::Uncompressed,
            (_, c, from) => c.target(from),
        }
    }

    fn manifest(&mut self, d: &Descriptor) -> OciResult<Descriptor> {
        let (manifest, raw) = read_manifest(self.source, d)?;
        self.add_source(manifest.config());
        let mut changes = Vec::new();
        let mut config_ids: Option<Vec<Digest>> = None;
        for (i, layer) in manifest.layers().iter().enumerate() {
            let codec = match classify(layer.media_type()) {
                BlobKind::Layer(c) => c,
                _ => {
                    // Artifact payloads and unknown layers travel as they are.
                    self.add_source(layer);
                    continue;
                }
            };
            let to = self.target(codec);
            if to == codec {
                self.add_source(layer);
                continue;
            }
            if config_ids.is_none() {
                let (config, _) = read_config(self.source, manifest.config())?;
                let ids = diff_ids(&config, manifest.config().digest())?;
                if ids.len() != manifest.layers().len() {
                    return Err(OciError::inconsistent(
                        d.digest(),
                        format!(
                            "{} layers but {} diff_ids in config {}",
                            manifest.layers().len(),
                            ids.len(),
                            manifest.config().digest()
                        ),
                    ));
                }
                config_ids = Some(ids);
            }
            let expected_id = config_ids.as_ref().and_then(|ids| ids.get(i)).cloned();
            let new =
                self.transcode_layer(layer, codec, to, expected_id.as_ref(), d.media_type())?;
            changes.push((i, new));
        }
        if changes.is_empty() {
            self.add(d.digest(), d.size(), BlobData::Memory(raw));
            return Ok(d.clone());
        }
        let mut value: Value = parse_document(&raw, "image manifest", d.digest())?;
        let mut leaves_docker = false;
        for (i, new) in changes {
            let entry = value
                .get_mut("layers")
                .and_then(|m| m.get_mut(i))
                .ok_or_else(|| {
                    OciError::bad_json("image manifest", d.digest(), "layers changed")
                })?;
            leaves_docker |= !is_docker(new.media_type());
            entry["mediaType"] = Value::String(new.media_type().to_string());
            entry["digest"] = Value::String(new.digest().to_string());
            entry["size"] = Value::from(new.size());
        }
        let mut media_type = d.media_type().clone();
        if is_docker(d.media_type()) && leaves_docker {
            // Docker schema 2 has no zstd / plain layer types: the manifest becomes OCI.
            media_type = MediaType::ImageManifest;
            value["mediaType"] = Value::String(media_type.to_string());
            value["config"]["mediaType"] = Value::String(MediaType::ImageConfig.to_string());
            if let Some(layers) = value.get_mut("layers").and_then(Value::as_array_mut) {
                for l in layers {
                    let lt = l
                        .get("mediaType")
                        .and_then(Value::as_str)
                        .map(MediaType::from);
                    if let Some(BlobKind::Layer(c)) = lt.as_ref().map(classify) {
                        l["mediaType"] = Value::String(oci_layer_type(c).to_string());
                    }
                }
            }
        }
        let bytes = to_canonical_json(&value)?;
        Ok(self.add_memory(media_type, bytes, d))
    }

    fn staging_dir(&mut self) -> OciResult<PathBuf> {
        if self.staging.is_none() {
            let dir = tempfile::Builder::new()
                .prefix(".chasi-oci-staging-")
                .tempdir_in(&self.staging_parent)
                .map_err(OciError::io(
                    "create a staging directory in",
                    &self.staging_parent,
                ))?;
            self.staging = Some(dir);
        }
        match &self.staging {
            Some(d) => Ok(d.path().to_path_buf()),
            None => Err(OciError::io(
                "create a staging directory in",
                &self.staging_parent,
            )(io::Error::other(
                "staging directory vanished",
            ))),
        }
    }

    fn transcode_layer(
        &mut self,
        layer: &Descriptor,
        from: LayerCodec,
        to: LayerCodec,
        expected_id: Option<&Digest>,
        manifest_type: &MediaType,
    ) -> OciResult<Descriptor> {
        let key = format!("{}>{:?}", layer.digest(), to);
        if let Some(d) = self.layer_cache.get(&key) {
            let mut d2 = layer.clone();
            d2.set_media_type(d.media_type().clone());
            d2.set_digest(d.digest().clone());
            d2.set_size(d.size());
            return Ok(d2);
        }
        let dir = self.staging_dir()?;
        let path = dir.join(format!("{}-{:?}", layer.digest().digest(), to));
        let file = File::create(&path).map_err(OciError::io("create", &path))?;
        let mut reader = open_verified(self.source, layer)?;
        let out = HashingWriter::new(BufWriter::new(file));
        let (diff_id, _, out) =
            transcode(&mut reader, from, to, out).map_err(|e| match reader.error() {
                Some(v) => v,
                None => OciError::Codec {
                    action: "transcode",
                    digest: layer.digest().to_string(),
                    source: e,
                },
            })?;
        reader.finish()?;
        let (buf, digest, size) = out.finish();
        buf.into_inner()
            .map_err(|e| OciError::io("write", &path)(e.into_error()))?;
        if let Some(expected) = expected_id {
            if *expected != diff_id {
                return Err(OciError::inconsistent(
                    layer.digest(),
                    format!("the layer's uncompressed content is {diff_id} but the config says {expected}"),
                ));
            }
        }
        let media_type = if is_docker(manifest_type) && to == LayerCodec::Gzip {
            MediaType::Other(DOCKER_LAYER_GZIP.to_string())
        } else {
            oci_layer_type(to)
        };
        self.add(&digest, size, BlobData::Staged(path));
        let mut d = layer.clone();
        d.set_media_type(media_type);
        d.set_digest(digest);
        d.set_size(size);
        self.layer_cache.insert(key, d.clone());
        Ok(d)
    }
}

fn all_docker_children(index: &Value) -> bool {
    index
        .get("manifests")
        .and_then(Value::as_array)
        .is_some_and(|m| {
            m.iter().all(|e| {
                e.get("mediaType")
                    .and_then(Value::as_str)
                    .is_some_and(|t| t.starts_with("application/vnd.docker."))
            })
        })
}
