//! Images in the store: list, inspect, tag, remove, save to and load from OCI layouts and archives.
//!
//! An image is a ref (`name:tag`) to a manifest or an index; its blobs live in the store and
//! are shared. Removing an image removes the ref only: `chasi store gc` reclaims what no ref
//! reaches any more. Save and load go through `chasi-oci` with the store as blob source
//! and sink, so every blob is verified on the way out and deduplicated on the way in.

use crate::blobs::{to_oci_digest, to_store_digest, StoreBlobs};
use crate::error::{BuildError, Result};
use crate::exec::normalize_tag;
use crate::state::descriptor_of;
use chasi_layers::{Digest, Store};
use chasi_oci::{
    self as oci, write::SaveFormat, write::WriteOptions, LayerCompression, PlatformSpec,
};
use serde::Serialize;
use serde_json::{json, Value};
use std::path::Path;

/// One line of `chasi images`.
#[derive(Debug, Clone, Serialize)]
pub struct ImageSummary {
    /// `name:tag`.
    pub name: String,
    /// Manifest or index digest.
    pub digest: String,
    /// Platforms (`os/arch[/variant]`).
    pub platforms: Vec<String>,
    /// Size as OCI counts it: manifests, configs and layer blobs.
    pub size: u64,
    /// Why the image cannot be read, when it cannot (the other images are still listed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

/// Resolves a store name (`name[:tag]`) or a digest (`sha256:…`) to a root digest.
pub fn resolve(store: &Store, image: &str) -> Result<Digest> {
    if let Ok(d) = image.parse::<Digest>() {
        if store.has_blob(&d) {
            return Ok(d);
        }
    }
    let name = normalize_tag(image)?;
    store
        .get_ref(&name)
        .map_err(|_| BuildError::Request(format!("image `{name}` is not in the store")))
}

/// The per-platform manifests of a root (itself, for a single manifest).
fn manifests(store: &Store, root: &Digest) -> Result<Vec<(String, Digest, Value)>> {
    // Bounded in size and depth: a hostile document is an error, never a stack overflow.
    let value: Value = store.get_json(root, "image manifest or index")?;
    if let Some(list) = value.get("manifests").and_then(Value::as_array) {
        let mut out = Vec::new();
        for m in list {
            let Some(d) = m
                .get("digest")
                .and_then(Value::as_str)
                .and_then(|d| d.parse().ok())
            else {
                continue;
            };
            let p = m.get("platform").map(platform_text).unwrap_or_default();
            let manifest: Value = store.get_json(&d, "image manifest")?;
            out.push((p, d, manifest));
        }
        Ok(out)
    } else {
        let config = config_of(store, &value)?;
        Ok(vec![(platform_text(&config), *root, value)])
    }
}

fn platform_text(v: &Value) -> String {
    let get = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("");
    let mut text = format!("{}/{}", get("os"), get("architecture"));
    if !get("variant").is_empty() {
        text.push('/');
        text.push_str(get("variant"));
    }
    text
}

fn config_of(store: &Store, manifest: &Value) -> Result<Value> {
    let d: Digest = manifest
        .pointer("/config/digest")
        .and_then(Value::as_str)
        .and_then(|d| d.parse().ok())
        .ok_or_else(|| BuildError::Request("the manifest has no config".into()))?;
    Ok(store.get_json(&d, "image config")?)
}

fn oci_size(root_size: u64, manifests: &[(String, Digest, Value)], store: &Store) -> u64 {
    let mut total = if manifests.len() > 1 { root_size } else { 0 };
    for (_, d, m) in manifests {
        total += store.blob_size(d).unwrap_or(0);
        total += m
            .pointer("/config/size")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        total += m
            .get("layers")
            .and_then(Value::as_array)
            .map(|ls| {
                ls.iter()
                    .filter_map(|l| l.get("size").and_then(Value::as_u64))
                    .sum()
            })
            .unwrap_or(0);
    }
    total
}

/// Every tagged image, sorted by name. An image whose documents cannot be read is listed
/// with its problem, so one damaged image never hides the others.
pub fn list(store: &Store) -> Result<Vec<ImageSummary>> {
    let mut out = Vec::new();
    for r in store.list_refs()? {
        let summary = match manifests(store, &r.digest) {
            Ok(ms) => ImageSummary {
                name: r.name.clone(),
                digest: r.digest.to_string(),
                platforms: ms.iter().map(|(p, _, _)| p.clone()).collect(),
                size: oci_size(store.blob_size(&r.digest).unwrap_or(0), &ms, store),
                problem: None,
            },
            Err(e) => ImageSummary {
                name: r.name.clone(),
                digest: r.digest.to_string(),
                platforms: Vec::new(),
                size: 0,
                problem: Some(chasi_layers::error::chain(&e)),
            },
        };
        out.push(summary);
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Everything about an image: per platform, the manifest, the config, the sealer extension
/// and the layers with their compressed and uncompressed sizes.
pub fn inspect(store: &Store, image: &str) -> Result<Value> {
    let root = resolve(store, image)?;
    let mut platforms = Vec::new();
    for (platform, digest, manifest) in manifests(store, &root)? {
        let config = config_of(store, &manifest)?;
        let diff_ids: Vec<String> = config
            .pointer("/rootfs/diff_ids")
            .and_then(Value::as_array)
            .map(|v| {
                v.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        let layers: Vec<Value> = manifest
            .get("layers")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
            .iter()
            .zip(diff_ids.iter())
            .map(|(l, diff_id)| {
                let size = diff_id
                    .parse::<Digest>()
                    .ok()
                    .and_then(|d| store.layer(&d).ok())
                    .map(|i| i.size);
                json!({
                    "digest": l.get("digest"),
                    "mediaType": l.get("mediaType"),
                    "size": l.get("size"),
                    "diff_id": diff_id,
                    "uncompressed_size": size,
                })
            })
            .collect();
        let extension = manifest
            .pointer("/annotations/sealer.image.extension")
            .and_then(Value::as_str)
            .and_then(|t| serde_json::from_str::<Value>(t).ok());
        platforms.push(json!({
            "platform": platform,
            "digest": digest.to_string(),
            "manifest": manifest,
            "config": config,
            "extension": extension,
            "layers": layers,
        }));
    }
    Ok(json!({"name": image, "digest": root.to_string(), "images": platforms}))
}

/// Points `target` at the image `source` names.
pub fn tag(store: &Store, source: &str, target: &str) -> Result<String> {
    let root = resolve(store, source)?;
    let name = normalize_tag(target)?;
    store.set_ref(&name, &root)?;
    Ok(name)
}

/// Removes a tag (the blobs stay until `chasi store gc`).
pub fn remove(store: &Store, image: &str) -> Result<()> {
    let name = normalize_tag(image)?;
    if store.delete_ref(&name)? {
        Ok(())
    } else {
        Err(BuildError::Request(format!(
            "image `{name}` is not in the store"
        )))
    }
}

/// Writes an image to `path` as an OCI layout, an oci-archive or a docker-archive.
pub fn save(
    store: &Store,
    image: &str,
    path: &Path,
    format: SaveFormat,
    compression: LayerCompression,
    platform: Option<PlatformSpec>,
) -> Result<oci::write::WriteReport> {
    let root = resolve(store, image)?;
    let desc = descriptor_of(store, &root)?;
    let name = normalize_tag(image).ok();
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
        let digest = to_store_digest(report.root.digest())?;
        let mut tagged = false;
        for name in load_names(&entry.names, path) {
            store.set_ref(&name, &digest)?;
            out.push((name, digest));
            tagged = true;
        }
        if !tagged {
            out.push((to_oci_digest(&digest).to_string(), digest));
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
        .filter_map(|n| normalize_tag(n).ok())
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
        .filter_map(|tag| normalize_tag(&format!("{repo}:{tag}")).ok())
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

/// Resolves `image` and picks one platform: `platform` when given (`os/arch[/variant]`),
/// else the only one, else the host's.
pub fn platform_image(store: &Store, image: &str, platform: Option<&str>) -> Result<PlatformImage> {
    let root = resolve(store, image)?;
    let all = manifests(store, &root)?;
    let available = || {
        all.iter()
            .map(|(p, _, _)| p.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let matches = |want: &str, have: &str| have == want || have.starts_with(&format!("{want}/"));
    let chosen = match platform {
        Some(want) => all
            .iter()
            .find(|(p, _, _)| matches(want, p))
            .ok_or_else(|| {
                BuildError::Request(format!(
                    "image `{image}` has no platform {want} (it has {})",
                    available()
                ))
            })?,
        None if all.len() == 1 => &all[0],
        None => {
            let host = PlatformSpec::host().to_string();
            all.iter()
                .find(|(p, _, _)| matches(&host, p))
                .ok_or_else(|| {
                    BuildError::Request(format!(
                        "image `{image}` has several platforms ({}): choose one with --platform",
                        available()
                    ))
                })?
        }
    };
    let (platform, manifest, value) = chosen;
    let config = config_of(store, value)?;
    let diff_ids = config
        .pointer("/rootfs/diff_ids")
        .and_then(Value::as_array)
        .map(|v| {
            v.iter()
                .map(|d| {
                    d.as_str()
                        .and_then(|s| s.parse::<Digest>().ok())
                        .ok_or_else(|| {
                            BuildError::Request(format!("bad diff_id {d} in {manifest}"))
                        })
                })
                .collect::<Result<Vec<_>>>()
        })
        .transpose()?
        .unwrap_or_default();
    Ok(PlatformImage {
        manifest: *manifest,
        descriptor: descriptor_of(store, manifest)?,
        platform: platform.clone(),
        diff_ids,
        name: normalize_tag(image)
            .ok()
            .filter(|_| image.parse::<Digest>().is_err()),
    })
}
