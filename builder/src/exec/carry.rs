//! `chasi build --build-mode all`: the container images a cluster image carries, so that a
//! cluster installed from it offline finds every image its manifests and charts run.
//!
//! sealer does this after the Kubefile's layers (`../shared/notes/sealer.md` §4.4), and so does
//! this module, once per target platform, on the finished stage:
//!
//! 1. the image's `manifests/`, `charts/` and `application/apps/` subtrees (base layers
//!    included, whiteouts honoured) are unpacked into the work directory, nothing else (the
//!    base's `registry/` too, but only when images must be fetched);
//! 2. `chasi_detect::detect` lists the images they reference (YAML parsed, charts rendered,
//!    `manifests/imageList`, `--image-list`, `--ignored-image-list`); an error it reports (an
//!    invalid reference, a chart construct it cannot render) fails the build with file and line;
//! 3. each image's manifest for the platform (never the whole index) is copied from its registry
//!    into a registry directory layered over the base's `registry/`
//!    ([`chasi_oci::distribution::RegistryDir::over`]): a blob the base carries is not fetched or
//!    written again;
//! 4. that directory becomes one layer (`registry/docker/registry/v2/…`, owned by root, times
//!    clamped), and the platform's manifest gets sealer's `sealer.image.container.images`
//!    annotation: `[{"image", "appName", "platform"}]`.
//!
//! A repository in the directory is the image's full name without its tag
//! (`docker.io/library/nginx`), so the node can give containerd the names the manifests use;
//! a registry port is written `_PORT` ([`chasi_oci::distribution::repository_of`]). Each image
//! is also linked under its path without the host (`library/nginx`), the name sealer's nodes
//! ask their registry mirror for ([`write_aliases`]).
//!
//! Caching: a tag is pinned on first pull (a store cache record from reference and platform to
//! the manifest digest), as `FROM HOST/NAME:TAG` pins a base, and the layer is cached under its
//! parent step's key and the pinned digests. So an unchanged build reaches no registry at all,
//! `--no-cache` resolves every tag again, and `--offline` builds from the cache or says which
//! image it would have to fetch. The images are stored once, as the layer's chunks: a second
//! cluster image carrying the same image costs no new chunks.

use super::cache::{self, CacheRecord};
use crate::error::{io, BuildError, Result};
use crate::events::{BuildEvent, BuildObserver};
use crate::state::{ImageState, LayerRef};
use chasi_detect::{ContainerImage, Severity};
use chasi_layers::{ApplyOptions, Digest, OwnerPolicy, Store, TarOptions};
use chasi_oci::distribution::{repository_of, RegistryDir};
use chasi_oci::{Descriptor, MediaType, Platform};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The manifest annotation sealer lists carried images in.
pub const ANNOTATION_CONTAINER_IMAGES: &str = "sealer.image.container.images";

/// The subtrees detection reads.
const SUBTREES: [&str; 3] = ["manifests", "charts", "application/apps"];

/// The base's registry directory, unpacked only when images are fetched (it can be large,
/// and a cached layer needs none of it).
const REGISTRY: &str = "registry";

/// Unpacks only `subtrees` of the image's layers into `dir`.
fn unpack_only(
    input: &CarryInput<'_>,
    diff_ids: &[Digest],
    dir: &Path,
    subtrees: &[&str],
) -> Result<chasi_layers::apply::ApplyStats> {
    let only = ApplyOptions {
        chown: false,
        devices: false,
        xattrs: false,
        only: subtrees.iter().map(|s| s.to_string()).collect(),
    };
    Ok(input.store.unpack(diff_ids, dir, &only)?)
}

/// sealer's `--build-mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BuildMode {
    /// Carry nothing (chasi's default: a build reaches a registry only when asked to).
    #[default]
    Lite,
    /// Carry every container image the cluster needs (sealer's default).
    All,
}

/// What `--build-mode all` carries.
#[derive(Debug, Clone, Default)]
pub struct CarryOptions {
    /// `all` or `lite`.
    pub mode: BuildMode,
    /// `--image-list FILE`: more images, one per line.
    pub image_list: Option<PathBuf>,
    /// `--ignored-image-list FILE`: images not to carry.
    pub ignored_image_list: Option<PathBuf>,
}

/// Everything [`carry`] needs from the build.
pub(crate) struct CarryInput<'a> {
    pub store: &'a Store,
    pub options: &'a CarryOptions,
    pub registry: &'a chasi_registry::Options,
    pub observer: &'a dyn BuildObserver,
    pub platform: &'a Platform,
    /// A directory of its own in the build's work directory.
    pub work: PathBuf,
    /// The finished stage's cache key.
    pub parent_key: &'a Digest,
    pub no_cache: bool,
    pub offline: bool,
    pub epoch: i64,
    pub created: String,
    /// Hears every cache entry the step used or wrote (for `--cache-to`).
    pub remember: &'a (dyn Fn(Digest, Value) + Sync),
}

/// Adds the registry layer to `state` and returns the annotation value, or `None` when the
/// mode is lite or the image needs no container image.
pub(crate) fn carry(input: &CarryInput<'_>, state: &mut ImageState) -> Result<Option<String>> {
    if input.options.mode == BuildMode::Lite {
        return Ok(None);
    }
    let lower = input.work.join("image");
    let diff_ids: Vec<Digest> = state.layers.iter().map(|l| l.diff_id).collect();
    let applied = unpack_only(input, &diff_ids, &lower, &SUBTREES)?;
    let platform = input.platform.to_string();
    let warn = |message: String| {
        input.observer.event(BuildEvent::Warning {
            platform: platform.clone(),
            message,
        })
    };
    if applied.outside_links > 0 {
        warn(format!(
            "{} hard links under manifests/, charts/ or application/apps/ point outside them and were not read for images",
            applied.outside_links
        ));
    }
    let detection = chasi_detect::detect(
        &lower,
        &chasi_detect::Options {
            image_list: input.options.image_list.clone(),
            ignored_image_list: input.options.ignored_image_list.clone(),
        },
    )
    .map_err(|e| BuildError::CarryDetect {
        platform: platform.clone(),
        problems: chasi_layers::error::chain(&e),
        count: 1,
    })?;
    let mut errors = Vec::new();
    for p in &detection.problems {
        match p.severity {
            Severity::Error => errors.push(p.to_string()),
            Severity::Warning => warn(p.to_string()),
        }
    }
    if !errors.is_empty() {
        return Err(BuildError::CarryDetect {
            platform,
            count: errors.len(),
            problems: errors.join("\n"),
        });
    }
    if detection.images.is_empty() {
        return Ok(None);
    }
    let references: Vec<&str> = unique_references(&detection.images);
    let label = format!(
        "registry: {} container image{} (--build-mode all)",
        references.len(),
        if references.len() == 1 { "" } else { "s" }
    );
    let pins = references
        .iter()
        .map(|r| Ok((*r, pinned(input, r)?)))
        .collect::<Result<BTreeMap<&str, Option<Descriptor>>>>()?;
    let all_pinned = pins.values().all(Option::is_some);
    let key = all_pinned.then(|| layer_key(input, &pins));
    if let Some(key) = &key {
        if let Some(Some(layer)) = cache::lookup(input.store, key)? {
            remember_entries(input, key, &pins)?;
            input.observer.event(BuildEvent::StepCached {
                id: *key,
                platform: platform.clone(),
                label: label.clone(),
            });
            push_layer(state, layer, input, &label);
            return Ok(Some(annotation(&detection.images, input.platform)));
        }
    }
    if input.offline {
        let missing = references.first().copied().unwrap_or_default();
        return Err(BuildError::CarryOffline {
            reference: missing.to_string(),
            platform,
        });
    }
    let started = Instant::now();
    let step_id = key.unwrap_or_else(|| Digest::of(label.as_bytes()));
    input.observer.event(BuildEvent::StepStarted {
        id: step_id,
        platform: platform.clone(),
        label: label.clone(),
    });
    let base = input.work.join("base");
    unpack_only(input, &diff_ids, &base, &[REGISTRY])?;
    let upper = input.work.join("layer");
    let dir = RegistryDir::over(
        upper.join("registry"),
        RegistryDir::new(base.join(REGISTRY)),
    );
    let fetched = fetch_all(input, &dir, &pins)?;
    for message in write_aliases(&dir, &fetched)? {
        warn(message);
    }
    let resolved: BTreeMap<&str, Option<Descriptor>> = fetched
        .iter()
        .map(|(r, (root, _))| (*r, Some(root.clone())))
        .collect();
    let key = layer_key(input, &resolved);
    std::fs::create_dir_all(upper.join("registry")).map_err(io("create", &upper))?;
    let info = ingest_tree(input, &upper)?;
    let blob = input.store.layer_blob(&info.diff_id)?;
    cache::record(input.store, &key, &CacheRecord::layer(&info, &blob))?;
    remember_entries(input, &key, &resolved)?;
    push_layer(
        state,
        LayerRef {
            diff_id: info.diff_id,
            blob,
        },
        input,
        &label,
    );
    input.observer.event(BuildEvent::StepDone {
        id: step_id,
        platform,
        label,
        layer_bytes: info.size,
        seconds: started.elapsed().as_secs_f64(),
    });
    Ok(Some(annotation(&detection.images, input.platform)))
}

/// Tells `--cache-to` about the layer's entry and every pin behind it.
fn remember_entries(
    input: &CarryInput<'_>,
    key: &Digest,
    pins: &BTreeMap<&str, Option<Descriptor>>,
) -> Result<()> {
    for reference in pins.keys() {
        let pin = pin_key(reference, input.platform);
        if let Some(value) = input.store.get_cache(&pin)? {
            (input.remember)(pin, value);
        }
    }
    if let Some(value) = input.store.get_cache(key)? {
        (input.remember)(*key, value);
    }
    Ok(())
}

fn unique_references(images: &[ContainerImage]) -> Vec<&str> {
    let mut refs: Vec<&str> = images.iter().map(|i| i.reference.as_str()).collect();
    refs.sort_unstable();
    refs.dedup();
    refs
}

fn push_layer(state: &mut ImageState, layer: LayerRef, input: &CarryInput<'_>, label: &str) {
    state.layers.push(layer);
    state.push_history(&input.created, label, false);
}

/// The store cache key of a reference's pin for a platform.
fn pin_key(reference: &str, platform: &Platform) -> Digest {
    cache::key_of(&["chasi-carry-pin", reference, &platform.to_string()])
}

/// The manifest a reference was pinned to for this platform, unless `--no-cache`.
fn pinned(input: &CarryInput<'_>, reference: &str) -> Result<Option<Descriptor>> {
    if input.no_cache {
        return Ok(None);
    }
    let Some(value) = input.store.get_cache(&pin_key(reference, input.platform))? else {
        return Ok(None);
    };
    Ok(descriptor_from(&value))
}

fn descriptor_from(value: &Value) -> Option<Descriptor> {
    let digest = value
        .get("digest")?
        .as_str()?
        .parse::<chasi_oci::OciDigest>()
        .ok()?;
    let size = value.get("size")?.as_u64()?;
    let media = value.get("mediaType")?.as_str()?;
    Some(Descriptor::new(MediaType::from(media), size, digest))
}

/// The registry layer's key: the finished stage, the platform, and every image's manifest.
fn layer_key(input: &CarryInput<'_>, pins: &BTreeMap<&str, Option<Descriptor>>) -> Digest {
    let mut parts = vec![
        "chasi-carry-layer".to_string(),
        input.parent_key.to_string(),
        input.platform.to_string(),
        input.epoch.to_string(),
    ];
    for (reference, manifest) in pins {
        parts.push(reference.to_string());
        parts.push(
            manifest
                .as_ref()
                .map(|m| m.digest().to_string())
                .unwrap_or_default(),
        );
    }
    cache::key_of(&parts.iter().map(String::as_str).collect::<Vec<_>>())
}

/// What a reference resolved to (an index, or the manifest) and the platform's manifest.
type Fetched = (Descriptor, Descriptor);

/// Images fetched at once: registries serve blobs in parallel, and one image's small
/// documents then overlap another's layers (sealer pulls two repositories at a time).
const PARALLEL_FETCHES: usize = 4;

/// [`fetch`] for every reference, [`PARALLEL_FETCHES`] at a time; the first failure in
/// reference order is the one reported. Two images sharing a blob may both write it: a blob
/// is renamed into place whole, so the directory stays consistent.
fn fetch_all<'r>(
    input: &CarryInput<'_>,
    dir: &RegistryDir,
    pins: &BTreeMap<&'r str, Option<Descriptor>>,
) -> Result<BTreeMap<&'r str, Fetched>> {
    let work: Vec<(&'r str, Option<&Descriptor>)> =
        pins.iter().map(|(r, p)| (*r, p.as_ref())).collect();
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results: Vec<std::sync::Mutex<Option<Result<Fetched>>>> =
        work.iter().map(|_| std::sync::Mutex::new(None)).collect();
    std::thread::scope(|scope| {
        for _ in 0..PARALLEL_FETCHES.min(work.len()) {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some((reference, pin)) = work.get(i) else {
                    break;
                };
                let got = fetch(input, dir, reference, *pin);
                let failed = got.is_err();
                *results[i].lock().unwrap_or_else(|e| e.into_inner()) = Some(got);
                if failed {
                    // Stop handing out work: the build fails anyway.
                    next.fetch_add(work.len(), std::sync::atomic::Ordering::Relaxed);
                }
            });
        }
    });
    let mut resolved = BTreeMap::new();
    for ((reference, _), result) in work.iter().zip(results) {
        match result.into_inner().unwrap_or_else(|e| e.into_inner()) {
            Some(r) => {
                resolved.insert(*reference, r?);
            }
            None => continue,
        }
    }
    if resolved.len() != work.len() {
        return Err(BuildError::ThreadPanicked(
            crate::error::BuildThread::Target,
        ));
    }
    Ok(resolved)
}

/// Copies one image's platform manifest into the registry directory and pins the reference
/// to what it resolved to.
fn fetch(
    input: &CarryInput<'_>,
    dir: &RegistryDir,
    reference: &str,
    pin: Option<&Descriptor>,
) -> Result<Fetched> {
    let failed = |source| BuildError::Carry {
        reference: reference.to_string(),
        platform: input.platform.to_string(),
        source: Box::new(source),
    };
    let parsed = chasi_registry::parse_reference(reference).map_err(failed)?;
    let repository = repository_of(parsed.registry(), parsed.repository());
    let from = match pin {
        Some(m) => format!(
            "{}/{}@{}",
            parsed.registry(),
            parsed.repository(),
            m.digest()
        ),
        None => reference.to_string(),
    };
    let report = chasi_registry::pull_to_dir(
        &from,
        input.platform,
        dir,
        &repository,
        parsed.tag(),
        input.registry,
    )
    .map_err(failed)?;
    // The pin is what the reference resolved to (an index, or the manifest): fetching it by
    // digest selects the platform again, and a `name@sha256:` keeps naming what it named.
    let m = &report.root;
    let value = json!({
        "digest": m.digest().to_string(),
        "size": m.size(),
        "mediaType": m.media_type().to_string(),
    });
    input
        .store
        .put_cache(&pin_key(reference, input.platform), &value)?;
    Ok((m.clone(), report.manifest))
}

/// sealer's registry is a mirror: its nodes pull `docker.io/library/nginx:1.25` from it as
/// `library/nginx:1.25`, the path without the registry host. So every image is also linked
/// under that name (links only: the blobs are stored once). Two images of different registries
/// with the same path and tag cannot both have it: the first in reference order keeps it, and
/// the returned warning names both.
fn write_aliases(dir: &RegistryDir, fetched: &BTreeMap<&str, Fetched>) -> Result<Vec<String>> {
    let mut warnings = Vec::new();
    let mut taken: BTreeMap<(String, String), (&str, String)> = BTreeMap::new();
    for (reference, (root, manifest)) in fetched {
        let Ok(parsed) = chasi_registry::parse_reference(reference) else {
            continue;
        };
        let alias = parsed.repository().to_string();
        let name = parsed
            .tag()
            .map(str::to_string)
            .unwrap_or_else(|| root.digest().to_string());
        match taken.get(&(alias.clone(), name.clone())) {
            Some((first, digest)) if *digest != root.digest().to_string() => {
                warnings.push(format!(
                    "{reference} and {first} are both `{alias}:{name}` to a registry mirror (sealer's): only {first} is served under that name"
                ));
                continue;
            }
            Some(_) => continue,
            None => {}
        }
        taken.insert(
            (alias.clone(), name),
            (reference, root.digest().to_string()),
        );
        dir.put_untagged(dir, manifest, &alias)?;
        if root.digest() != manifest.digest() {
            let raw = chasi_oci::blobs::read_blob(dir, root, "image index")?;
            dir.put_document(root, &raw, &alias)?;
        }
        if let Some(tag) = parsed.tag() {
            dir.set_tag(&alias, tag, root.digest())?;
        }
    }
    Ok(warnings)
}

/// The registry directory under `upper` as one layer in the store.
fn ingest_tree(input: &CarryInput<'_>, upper: &Path) -> Result<chasi_layers::LayerInfo> {
    let opts = TarOptions {
        source_date_epoch: Some(input.epoch),
        owner: OwnerPolicy::Root,
        xattrs: false,
    };
    crate::rootfs::ingest_stream(input.store, None, |out| {
        chasi_layers::tarwriter::write_tree(upper, &opts, out)?;
        Ok(())
    })
}

/// sealer's annotation: each image with its app and platform, in detection order.
fn annotation(images: &[ContainerImage], platform: &Platform) -> String {
    let mut p = json!({"architecture": platform.architecture, "os": platform.os});
    if let Some(v) = &platform.variant {
        p["variant"] = json!(v);
    }
    let list: Vec<Value> = images
        .iter()
        .map(|i| {
            let mut entry = json!({"image": i.reference, "platform": p});
            if let Some(app) = &i.app_name {
                entry["appName"] = json!(app);
            }
            entry
        })
        .collect();
    chasi_oci::json::to_canonical_json(&list)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chasi_oci::MemoryBlobs;

    fn image(blobs: &mut MemoryBlobs, content: &[u8]) -> Descriptor {
        let layer = blobs.insert(MediaType::ImageLayerGzip, content.to_vec());
        let config = json!({"architecture": "amd64", "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{}", "b".repeat(64))]}});
        chasi_oci::build_manifest(blobs, &config, &[layer], &Default::default()).unwrap()
    }

    #[test]
    fn mirror_names_are_linked_once_and_a_collision_is_named() {
        let mut blobs = MemoryBlobs::new();
        let hub = image(&mut blobs, b"from docker hub");
        let quay = image(&mut blobs, b"from quay");
        let dir = tempfile::tempdir().unwrap();
        let reg = RegistryDir::new(dir.path());
        reg.put_image(&blobs, &hub, "docker.io/team/app", "1")
            .unwrap();
        reg.put_image(&blobs, &quay, "quay.io/team/app", "1")
            .unwrap();
        let mut fetched = BTreeMap::new();
        fetched.insert("docker.io/team/app:1", (hub.clone(), hub.clone()));
        fetched.insert("quay.io/team/app:1", (quay.clone(), quay.clone()));
        let warnings = write_aliases(&reg, &fetched).unwrap();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            warnings[0].contains("quay.io/team/app:1")
                && warnings[0].contains("docker.io/team/app:1"),
            "{warnings:?}"
        );
        let all = reg.images().unwrap();
        let alias = all.iter().find(|i| i.repository == "team/app").unwrap();
        assert_eq!(
            alias.root.digest(),
            hub.digest(),
            "the first keeps the name"
        );
        let carried: Vec<String> = reg
            .carried_images()
            .unwrap()
            .into_iter()
            .map(|i| i.repository)
            .collect();
        assert_eq!(carried, ["docker.io/team/app", "quay.io/team/app"]);
    }
}
