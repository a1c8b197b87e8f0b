//! Reading and building the image documents: manifests, indexes and configs, and choosing
//! a platform's manifest from an index.
//!
//! This is the shared vocabulary of the writers, the readers and the build executor: the
//! executor calls [`build_manifest`] and [`build_index`] to turn layer descriptors and a
//! config into an image in the store; everything else walks images with [`read_manifest`],
//! [`read_index`] and [`select_manifest`]. Documents produced here are canonical JSON
//! (see [`super::json`]), so their digests are reproducible.

use std::collections::BTreeMap;

use oci_spec::image::{Descriptor, Digest, ImageIndex, ImageManifest, MediaType};
use serde::Serialize;
use serde_json::{json, Value};

use super::blobs::{read_blob, BlobSink, BlobSource};
use super::digest::parse_digest;
use super::error::{OciError, OciResult};
use super::json::{parse_document, to_canonical_json};
use super::media::{classify, BlobKind};
use super::platform::Platform;

/// Annotation naming an image in an OCI layout's `index.json`.
pub const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";
/// Annotation containerd writes with the full image name.
pub const ANNOTATION_CONTAINERD_NAME: &str = "io.containerd.image.name";
/// Manifest annotation holding sealer's image extension JSON.
pub const ANNOTATION_SEALER_EXTENSION: &str = "sealer.image.extension";

/// One image of a layout or archive.
#[derive(Debug, Clone)]
pub struct ImageEntry {
    /// Its names: `org.opencontainers.image.ref.name` then `io.containerd.image.name` for OCI
    /// layouts, `RepoTags` for docker-archives. May be empty.
    pub names: Vec<String>,
    /// Its root: an image manifest or index.
    pub root: Descriptor,
}

/// Reads and parses an image manifest (OCI or Docker schema 2), verified.
pub fn read_manifest(
    source: &(impl BlobSource + ?Sized),
    descriptor: &Descriptor,
) -> OciResult<(ImageManifest, Vec<u8>)> {
    let raw = read_blob(source, descriptor, "image manifest")?;
    let manifest: ImageManifest = parse_document(&raw, "image manifest", descriptor.digest())?;
    if manifest.schema_version() != 2 {
        return Err(OciError::bad_json(
            "image manifest",
            descriptor.digest(),
            format!(
                "schemaVersion {} (only 2 is supported)",
                manifest.schema_version()
            ),
        ));
    }
    Ok((manifest, raw))
}

/// Reads and parses an image index (OCI or Docker manifest list), verified.
pub fn read_index(
    source: &(impl BlobSource + ?Sized),
    descriptor: &Descriptor,
) -> OciResult<(ImageIndex, Vec<u8>)> {
    let raw = read_blob(source, descriptor, "image index")?;
    let index: ImageIndex = parse_document(&raw, "image index", descriptor.digest())?;
    Ok((index, raw))
}

/// Reads an image config as a JSON value (unknown fields kept), verified.
pub fn read_config(
    source: &(impl BlobSource + ?Sized),
    descriptor: &Descriptor,
) -> OciResult<(Value, Vec<u8>)> {
    let raw = read_blob(source, descriptor, "image config")?;
    let value: Value = parse_document(&raw, "image config", descriptor.digest())?;
    if !value.is_object() {
        return Err(OciError::bad_json(
            "image config",
            descriptor.digest(),
            "not a JSON object",
        ));
    }
    Ok((value, raw))
}

/// The `rootfs.diff_ids` of a config.
pub fn diff_ids(config: &Value, config_digest: &Digest) -> OciResult<Vec<Digest>> {
    let ids = config
        .get("rootfs")
        .and_then(|r| r.get("diff_ids"))
        .and_then(Value::as_array)
        .ok_or_else(|| {
            OciError::bad_json("image config", config_digest, "no rootfs.diff_ids array")
        })?;
    ids.iter()
        .map(|v| {
            v.as_str()
                .ok_or_else(|| {
                    OciError::bad_json("image config", config_digest, "a diff_id is not a string")
                })
                .and_then(parse_digest)
        })
        .collect()
}

/// The platform a config declares (`os`, `architecture`, `variant`).
pub fn config_platform(config: &Value) -> Option<Platform> {
    let os = config.get("os")?.as_str()?;
    let architecture = config.get("architecture")?.as_str()?;
    Some(Platform {
        os: os.to_string(),
        architecture: architecture.to_string(),
        variant: config
            .get("variant")
            .and_then(Value::as_str)
            .map(str::to_string),
    })
}

/// Serializes `value` canonically, stores it in `sink` and returns its descriptor.
pub fn put_json(
    sink: &mut (impl BlobSink + ?Sized),
    media_type: MediaType,
    value: &(impl Serialize + ?Sized),
) -> OciResult<Descriptor> {
    let bytes = to_canonical_json(value)?;
    let digest = super::digest::sha256_digest(&bytes);
    sink.put_blob(Some(&digest), &media_type, &mut &bytes[..])
}

/// Stores `config` and a manifest over `layers` (bottom first) in `sink`; returns the
/// manifest's descriptor with the config's platform set.
///
/// `config` is any serializable OCI image config (an `oci_spec` `ImageConfiguration` or a
/// JSON value); its `rootfs.diff_ids` must have one entry per layer.
pub fn build_manifest(
    sink: &mut (impl BlobSink + ?Sized),
    config: &(impl Serialize + ?Sized),
    layers: &[Descriptor],
    annotations: &BTreeMap<String, String>,
) -> OciResult<Descriptor> {
    let config_value = serde_json::to_value(config)
        .map_err(|e| OciError::bad_json("image config", "the build", e))?;
    let config_desc = put_json(sink, MediaType::ImageConfig, &config_value)?;
    let ids = diff_ids(&config_value, config_desc.digest())?;
    if config_value["rootfs"]["type"] != "layers" {
        return Err(OciError::inconsistent(
            config_desc.digest(),
            "the config's rootfs.type must be \"layers\"",
        ));
    }
    if ids.len() != layers.len() {
        return Err(OciError::inconsistent(
            config_desc.digest(),
            format!(
                "the config lists {} diff_ids but the manifest has {} layers",
                ids.len(),
                layers.len()
            ),
        ));
    }
    for layer in layers {
        if !matches!(classify(layer.media_type()), BlobKind::Layer(_)) {
            return Err(OciError::UnsupportedMediaType {
                media_type: layer.media_type().to_string(),
                digest: layer.digest().to_string(),
            });
        }
    }
    let mut manifest = json!({
        "schemaVersion": 2,
        "mediaType": MediaType::ImageManifest.to_string(),
        "config": plain_descriptor(&config_desc),
        "layers": layers.iter().map(plain_descriptor).collect::<Vec<_>>(),
    });
    if !annotations.is_empty() {
        manifest["annotations"] = json!(annotations);
    }
    let mut desc = put_json(sink, MediaType::ImageManifest, &manifest)?;
    if let Some(p) = config_platform(&config_value) {
        desc.set_platform(Some(p.to_oci()?));
    }
    Ok(desc)
}

/// Stores an index over per-platform manifests in `sink` and returns its descriptor. Each
/// manifest descriptor must carry its platform (as [`build_manifest`] returns it); two
/// manifests for the same platform are refused.
pub fn build_index(
    sink: &mut (impl BlobSink + ?Sized),
    manifests: &[Descriptor],
    annotations: &BTreeMap<String, String>,
) -> OciResult<Descriptor> {
    let mut seen = BTreeMap::new();
    let mut entries = Vec::new();
    for m in manifests {
        let platform = m.platform().as_ref().ok_or_else(|| {
            OciError::inconsistent(
                m.digest(),
                "a manifest in a multi-platform index needs a platform",
            )
        })?;
        let spec = Platform::from_oci(platform);
        if let Some(other) = seen.insert(spec.to_string(), m.digest().to_string()) {
            return Err(OciError::inconsistent(
                m.digest(),
                format!("platform {spec} is also provided by {other}"),
            ));
        }
        let mut entry = plain_descriptor(m);
        entry["platform"] = serde_json::to_value(platform)
            .map_err(|e| OciError::bad_json("platform", m.digest(), e))?;
        entries.push(entry);
    }
    let mut index = json!({
        "schemaVersion": 2,
        "mediaType": MediaType::ImageIndex.to_string(),
        "manifests": entries,
    });
    if !annotations.is_empty() {
        index["annotations"] = json!(annotations);
    }
    put_json(sink, MediaType::ImageIndex, &index)
}

/// `{mediaType, digest, size}` plus the descriptor's annotations (no platform).
pub(crate) fn plain_descriptor(d: &Descriptor) -> Value {
    let mut v = json!({
        "mediaType": d.media_type().to_string(),
        "digest": d.digest().to_string(),
        "size": d.size(),
    });
    if let Some(a) = d.annotations() {
        if !a.is_empty() {
            let sorted: BTreeMap<_, _> = a.iter().collect();
            v["annotations"] = json!(sorted);
        }
    }
    v
}

/// The platforms of an index's manifests (entries without a platform are skipped).
pub fn index_platforms(index: &ImageIndex) -> Vec<Platform> {
    index
        .manifests()
        .iter()
        .filter_map(|m| m.platform().as_ref().map(Platform::from_oci))
        .collect()
}

fn join_platforms(p: &[Platform]) -> String {
    if p.is_empty() {
        "none".to_string()
    } else {
        p.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Resolves `root` to one image manifest: a manifest is returned as is; from an index the
/// manifest matching `platform` (or the only image manifest when `platform` is `None`).
/// Nested indexes are followed.
pub fn select_manifest(
    source: &(impl BlobSource + ?Sized),
    root: &Descriptor,
    platform: Option<&Platform>,
) -> OciResult<Descriptor> {
    select_inner(source, root, platform, 0)
}

/// The image manifest of `platform` under `root`, also checked against its config (a manifest
/// given directly carries no platform in its descriptor): an image of another platform is
/// [`OciError::NoSuchPlatform`].
pub fn select_platform_manifest(
    source: &(impl BlobSource + ?Sized),
    root: &Descriptor,
    platform: &Platform,
) -> OciResult<Descriptor> {
    let desc = select_manifest(source, root, Some(platform))?;
    let (manifest, _) = read_manifest(source, &desc)?;
    let (config, _) = read_config(source, manifest.config())?;
    match config_platform(&config) {
        Some(have) if !platform.matches(&have) => Err(OciError::NoSuchPlatform {
            digest: desc.digest().to_string(),
            platform: platform.to_string(),
            available: have.to_string(),
        }),
        _ => Ok(desc),
    }
}

fn select_inner(
    source: &(impl BlobSource + ?Sized),
    root: &Descriptor,
    platform: Option<&Platform>,
    depth: usize,
) -> OciResult<Descriptor> {
    match classify(root.media_type()) {
        BlobKind::Manifest => Ok(root.clone()),
        BlobKind::Index if depth < 4 => {
            let (index, _) = read_index(source, root)?;
            let images: Vec<&Descriptor> = index
                .manifests()
                .iter()
                .filter(|m| {
                    matches!(
                        classify(m.media_type()),
                        BlobKind::Manifest | BlobKind::Index
                    )
                })
                .filter(|m| !is_attestation(m))
                .collect();
            let available = join_platforms(&index_platforms(&index));
            let chosen: Vec<&Descriptor> = match platform {
                Some(p) => images
                    .iter()
                    .copied()
                    .filter(|m| {
                        m.platform()
                            .as_ref()
                            .is_some_and(|mp| p.matches(&Platform::from_oci(mp)))
                    })
                    .collect(),
                None => images.clone(),
            };
            match (chosen.as_slice(), platform) {
                ([one], _) => select_inner(source, one, platform, depth + 1),
                ([first, ..], Some(_)) => select_inner(source, first, platform, depth + 1),
                ([], Some(p)) => Err(OciError::NoSuchPlatform {
                    digest: root.digest().to_string(),
                    platform: p.to_string(),
                    available,
                }),
                (_, None) => Err(OciError::MultiPlatform {
                    digest: root.digest().to_string(),
                    available,
                }),
            }
        }
        BlobKind::Index => Err(OciError::inconsistent(
            root.digest(),
            "image indexes nested more than 4 deep",
        )),
        _ => Err(OciError::UnsupportedMediaType {
            media_type: root.media_type().to_string(),
            digest: root.digest().to_string(),
        }),
    }
}

/// BuildKit attestation manifests sit in indexes with platform `unknown/unknown`.
pub(crate) fn is_attestation(d: &Descriptor) -> bool {
    d.annotations()
        .as_ref()
        .is_some_and(|a| a.contains_key("vnd.docker.reference.type"))
}
