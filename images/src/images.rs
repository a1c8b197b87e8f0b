//! Images in the store: list, inspect, tag, remove, save to and load from OCI layouts and archives,
//! and one platform of an image for `chasi export`.
//!
//! An image is a ref (`name:tag`) to a manifest or an index; its blobs live in the store and
//! are shared. Removing an image removes the ref only: `chasi store gc` reclaims what no ref
//! reaches any more. Save and load go through `chasi-oci` with the store as blob source
//! and sink, so every blob is verified on the way out and deduplicated on the way in.

use crate::blobs::{descriptor_of, StoreBlobs};
use crate::docs::{Image, PlatformManifest};
use crate::error::{ImagesError, Result};
use chasi_layers::{Digest, Store};
use chasi_oci::{self as oci, write::SaveFormat, write::WriteOptions, LayerCompression, Platform};
use serde::Serialize;
use serde_json::Value;
use std::path::Path;

/// One line of `chasi images`.
#[derive(Debug, Clone, Serialize)]
pub struct ImageSummary {
    /// `name:tag`.
    pub name: String,
    /// Manifest or index digest.
    pub digest: Digest,
    /// Platforms (`os/arch[/variant]`).
    pub platforms: Vec<String>,
    /// Size as OCI counts it: indexes, manifests, configs and layer blobs.
    pub size: u64,
    /// Why the image cannot be read, when it cannot (the other images are still listed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

/// `name` → `name:latest`; validates the name.
pub fn normalize_name(name: &str) -> Result<String> {
    match name.parse::<oci::ImageRef>() {
        Ok(oci::ImageRef::Store { name, tag }) => Ok(format!("{name}:{tag}")),
        _ => Err(ImagesError::BadName {
            name: name.to_string(),
        }),
    }
}

/// Resolves a store name (`name[:tag]`) or a digest (`sha256:…`) to a root digest.
pub fn resolve(store: &Store, image: &str) -> Result<Digest> {
    if let Ok(d) = image.parse::<Digest>() {
        if store.has_blob(&d) {
            return Ok(d);
        }
    }
    let name = normalize_name(image)?;
    match store.get_ref(&name) {
        Ok(d) => Ok(d),
        Err(e) if e.is_not_found() => Err(ImagesError::NotInStore { name }),
        // A ref that exists but cannot be read is that problem, not a missing image.
        Err(e) => Err(e.into()),
    }
}

/// Every tagged image, sorted by name. An image whose documents cannot be read is listed
/// with its problem, so one damaged image never hides the others.
pub fn list(store: &Store) -> Result<Vec<ImageSummary>> {
    let mut out = Vec::new();
    for r in store.list_refs()? {
        let summary = match Image::read(store, &r.digest) {
            Ok(image) => ImageSummary {
                name: r.name.clone(),
                digest: r.digest,
                platforms: image.platforms(),
                size: image.oci_size(),
                problem: None,
            },
            Err(e) => ImageSummary {
                name: r.name.clone(),
                digest: r.digest,
                platforms: Vec::new(),
                size: 0,
                problem: Some(oci::error::chain(&e)),
            },
        };
        out.push(summary);
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// What `chasi inspect` prints (fields in the order JSON objects print them: sorted).
#[derive(Debug, Clone, Serialize)]
pub struct Inspection {
    /// The root digest.
    pub digest: Digest,
    /// One entry per platform.
    pub images: Vec<PlatformInspection>,
    /// The image as named.
    pub name: String,
}

/// One platform of an inspected image.
#[derive(Debug, Clone, Serialize)]
pub struct PlatformInspection {
    /// The config, as stored.
    pub config: Value,
    /// The manifest digest.
    pub digest: Digest,
    /// The sealer extension annotation, parsed, when it is JSON.
    pub extension: Option<Value>,
    /// The layers, bottom first.
    pub layers: Vec<LayerInspection>,
    /// The manifest, as stored.
    pub manifest: Value,
    /// `os/arch[/variant]`.
    pub platform: String,
}

/// One layer of an inspected image.
#[derive(Debug, Clone, Serialize)]
pub struct LayerInspection {
    /// Its DiffID.
    pub diff_id: String,
    /// The blob's digest.
    pub digest: String,
    /// The blob's media type.
    #[serde(rename = "mediaType")]
    pub media_type: String,
    /// The blob's size.
    pub size: u64,
    /// The uncompressed tar's size, when the store has the layer.
    pub uncompressed_size: Option<u64>,
}

/// Everything about an image: per platform, the manifest, the config, the sealer extension
/// and the layers with their compressed and uncompressed sizes.
pub fn inspect(store: &Store, image: &str) -> Result<Inspection> {
    let root = resolve(store, image)?;
    let mut platforms = Vec::new();
    for m in Image::read(store, &root)?.manifests {
        platforms.push(inspect_platform(store, m)?);
    }
    Ok(Inspection {
        digest: root,
        images: platforms,
        name: image.to_string(),
    })
}

fn inspect_platform(store: &Store, m: PlatformManifest) -> Result<PlatformInspection> {
    let config = m.config(store)?;
    let layers = m
        .manifest
        .layers()
        .iter()
        .zip(&config.doc.rootfs.diff_ids)
        .map(|(l, diff_id)| LayerInspection {
            diff_id: diff_id.clone(),
            digest: l.digest().to_string(),
            media_type: l.media_type().to_string(),
            size: l.size(),
            uncompressed_size: diff_id
                .parse::<Digest>()
                .ok()
                .and_then(|d| store.layer(&d).ok())
                .map(|i| i.size),
        })
        .collect();
    let extension = m
        .manifest
        .annotations()
        .as_ref()
        .and_then(|a| a.get(oci::ANNOTATION_SEALER_EXTENSION))
        .and_then(|t| serde_json::from_str::<Value>(t).ok());
    Ok(PlatformInspection {
        config: config.raw,
        digest: m.digest,
        extension,
        layers,
        manifest: m.raw,
        platform: m.platform,
    })
}

/// Points `target` at the image `source` names.
pub fn tag(store: &Store, source: &str, target: &str) -> Result<String> {
    let root = resolve(store, source)?;
    let name = normalize_name(target)?;
    store.set_ref(&name, &root)?;
    Ok(name)
}

/// Removes a tag (the blobs stay until `chasi store gc`).
pub fn remove(store: &Store, image: &str) -> Result<()> {
    let name = normalize_name(image)?;
    if store.delete_ref(&name)? {
        Ok(())
    } else {
        Err(ImagesError::NotInStore { name })
    }
}

/// Writes an image to `path` as an OCI layout, an oci-archive or a docker-archive.
pub fn save(
    store: &Store,
    image: &str,
    path: &Path,
    format: SaveFormat,
    compression: LayerCompression,
    platform: Option<Platform>,
) -> Result<oci::write::WriteReport> {
    let root = resolve(store, image)?;
    let desc = descriptor_of(store, &root)?;
    let name = normalize_name(image).ok();
    let tag = name
        .as_ref()
        .and_then(|n| n.rsplit_once(':').map(|(_, t)| t.to_string()));
    let opts = WriteOptions {
        tag,
        image_name: name,
        compression,
        platform,
        work_dir: Some(store.tmp_dir().to_path_buf()),
    };
    Ok(oci::write::save(
        &StoreBlobs::new(store),
        &desc,
        format,
        path,
        &opts,
    )?)
}

/// Reads every image of a layout or archive into the store, tagging those that carry a name.
/// Returns `(name or digest, digest)` per image.
pub fn load(store: &Store, path: &Path) -> Result<Vec<(String, Digest)>> {
    let mut sink = StoreBlobs::new(store);
    let mut out = Vec::new();
    for (entry, report) in oci::load(path, &mut sink)? {
        let digest = Digest::from_oci(report.root.digest())?;
        let mut tagged = false;
        for name in load_names(&entry.names, path) {
            store.set_ref(&name, &digest)?;
            out.push((name, digest));
            tagged = true;
        }
        if !tagged {
            out.push((digest.to_string(), digest));
        }
    }
    Ok(out)
}

/// The store names of a loaded image: its full references (`name:tag`, `registry/name:tag`);
/// when it only has a bare `org.opencontainers.image.ref.name` (a tag, as `skopeo copy
/// oci:DIR:TAG` writes it), that tag under the repository named after the file or directory.
fn load_names(names: &[String], path: &Path) -> Vec<String> {
    let full: Vec<String> = names
        .iter()
        .filter(|n| n.contains(':') || n.contains('/'))
        .filter_map(|n| normalize_name(n).ok())
        .collect();
    if !full.is_empty() {
        return full;
    }
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    let repo: String = stem
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect();
    names
        .iter()
        .filter_map(|tag| normalize_name(&format!("{repo}:{tag}")).ok())
        .collect()
}

/// One platform of an image, as `chasi export` needs it.
#[derive(Debug, Clone)]
pub struct PlatformImage {
    /// The platform's manifest digest (the seed of an export's identifiers).
    pub manifest: Digest,
    /// Its descriptor (for writing it as an OCI layout).
    pub descriptor: oci::Descriptor,
    /// `os/arch[/variant]`.
    pub platform: String,
    /// Layer DiffIDs, bottom first.
    pub diff_ids: Vec<Digest>,
    /// The store name, when the image was named by one.
    pub name: Option<String>,
}

/// Resolves `image` and picks one platform: the first that `platform` matches when given,
/// by [`Platform::matches`] (the rule of `FROM --platform`: `linux/arm64` and
/// `linux/arm64/v8` are the same platform), else the only one, else the host's.
pub fn platform_image(
    store: &Store,
    image: &str,
    platform: Option<&Platform>,
) -> Result<PlatformImage> {
    let root = resolve(store, image)?;
    let all = Image::read(store, &root)?.manifests;
    let chosen = choose(&all, image, platform)?;
    let diff_ids = chosen.diff_ids(store)?;
    Ok(PlatformImage {
        manifest: chosen.digest,
        descriptor: descriptor_of(store, &chosen.digest)?,
        platform: chosen.platform.clone(),
        diff_ids,
        name: normalize_name(image)
            .ok()
            .filter(|_| image.parse::<Digest>().is_err()),
    })
}

/// The manifest `platform` selects among `all`, by the rule of [`platform_image`].
fn choose<'a>(
    all: &'a [PlatformManifest],
    image: &str,
    platform: Option<&Platform>,
) -> Result<&'a PlatformManifest> {
    let available = || {
        all.iter()
            .map(|m| m.platform.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let find = |want: &Platform| {
        all.iter()
            .find(|m| m.spec.as_ref().is_some_and(|p| want.matches(p)))
    };
    match platform {
        Some(want) => find(want).ok_or_else(|| ImagesError::NoSuchPlatform {
            image: image.to_string(),
            platform: want.to_string(),
            available: available(),
        }),
        None if all.len() == 1 => Ok(&all[0]),
        None => find(&Platform::host()).ok_or_else(|| ImagesError::MultiPlatform {
            image: image.to_string(),
            available: available(),
        }),
    }
}
