//! `chasi delta FROM TO`: pairing the platforms of two images in the store, choosing per target layer how
//! it travels (already in the base, as a delta, or whole), and writing everything as one OCI artifact.
//!
//! The artifact is an image manifest with `artifactType` [`ARTIFACT_TYPE`], the delta config as its config,
//! the target as its `subject`, and as layers: the target's documents (indexes, manifests, configs, byte for
//! byte), one payload per delta layer, and the blob of each layer that travels whole. It is self-contained:
//! a node with the base and this one file rebuilds the target with the same digests.

use crate::encode::{encode_layer, Settings};
use crate::error::{DeltaError, Result};
use crate::format::{
    Blob, DeltaConfig, LayerDelta, Level, Method, PlatformDelta, Stats, Target, ARTIFACT_TYPE,
    CONFIG_MEDIA_TYPE, FORMAT_VERSION, PAYLOAD_MEDIA_TYPE, ROLE_ANNOTATION,
};
use crate::plan::{plan_layer, BaseIndex};
use crate::tarscan::{scan, Scan};
use chasi_images::blobs::{descriptor_of, StoreBlobs};
use chasi_images::{Image, PlatformManifest};
use chasi_layers::{Digest, Store};
use chasi_oci::{
    BlobSource, Descriptor, DirBlobs, MediaType, MemoryBlobs, OciError, OciResult, Platform,
    SaveFormat, WriteOptions,
};
use rayon::prelude::*;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::Path;

/// How to make a delta.
#[derive(Debug, Clone)]
pub struct DeltaOptions {
    /// How hard to compress.
    pub level: Level,
    /// Only these platforms of the target (empty: all). A subset must be one platform: the node then
    /// gets that platform's manifest.
    pub platforms: Vec<Platform>,
    /// The most memory applying one part may take (the reference plus the output of a part).
    pub max_memory: u64,
    /// `oci-archive` (one file) or `oci` (a layout directory).
    pub format: SaveFormat,
}

impl Default for DeltaOptions {
    fn default() -> Self {
        DeltaOptions {
            level: Level::Release,
            platforms: Vec::new(),
            max_memory: DEFAULT_MAX_MEMORY,
            format: SaveFormat::OciArchive,
        }
    }
}

/// Default memory budget of one part on apply: 128 MiB, so a node applies within 256 MiB.
pub const DEFAULT_MAX_MEMORY: u64 = 128 << 20;

/// What was written.
#[derive(Debug, Clone)]
pub struct DeltaReport {
    /// The artifact manifest's digest.
    pub artifact: Digest,
    /// Its config.
    pub config: DeltaConfig,
    /// The artifact's size: every blob it holds.
    pub size: u64,
}

/// Makes a delta from image `from` to image `to` (names or digests in `store`) and writes it to `out`.
pub fn create(
    store: &Store,
    from: &str,
    to: &str,
    out: &Path,
    opts: &DeltaOptions,
) -> Result<DeltaReport> {
    let base_root = chasi_images::resolve(store, from)?;
    let target_root = chasi_images::resolve(store, to)?;
    let base = Image::read(store, &base_root)?;
    let target = Image::read(store, &target_root)?;
    let chosen = choose_platforms(&target, to, &opts.platforms)?;
    let (root, documents) = target_documents(store, &target, &chosen)?;

    let mut platforms = Vec::new();
    let mut layers: Vec<LayerDelta> = Vec::new();
    let files = tempfile::tempdir_in(store.tmp_dir()).map_err(DeltaError::io(
        "create a work directory in",
        store.tmp_dir().display().to_string(),
    ))?;
    let payloads = DirBlobs::new(files.path());
    // Pair the platforms and read their layer lists first, so that every layer that must be scanned (each
    // base layer, each target layer that becomes a delta) is scanned once, all in parallel.
    let mut pairs = Vec::new();
    for pm in &chosen {
        let bm = base_for(&base, from, pm)?;
        pairs.push((pm, bm, diff_ids(store, bm)?, diff_ids(store, pm)?));
    }
    let mut wanted: Vec<Digest> = Vec::new();
    for (pm, _, base_layers, target_layers) in &pairs {
        wanted.extend(base_layers.iter().copied());
        for (i, d) in target_layers.iter().enumerate() {
            if !base_layers.contains(d) && reproducible(store, d, &layer_blob(pm, i)?)? {
                wanted.push(*d);
            }
        }
    }
    wanted.sort();
    wanted.dedup();
    let scans: HashMap<Digest, Scan> = wanted
        .par_iter()
        .map(|d| scan_layer(store, d).map(|s| (*d, s)))
        .collect::<Result<_>>()?;
    for (pm, bm, base_layers, target_layers) in pairs {
        let index = BaseIndex::new(base_layers.iter().map(|d| &scans[d]).collect());
        let p = platforms.len();
        for (i, d) in target_layers.iter().enumerate() {
            if layers.iter().any(|l| l.diff_id == *d) {
                continue;
            }
            let blob = layer_blob(pm, i)?;
            let cx = LayerCx {
                store,
                base: &index,
                base_layers: &base_layers,
                target: scans.get(d),
                platform: p,
                opts,
                payloads: &payloads,
            };
            layers.push(cx.layer_delta(*d, blob)?);
        }
        platforms.push(PlatformDelta {
            platform: pm.platform.clone(),
            base_manifest: bm.digest,
            base_layers,
            target_manifest: pm.digest,
            target_layers,
        });
    }
    let config = DeltaConfig {
        format_version: FORMAT_VERSION,
        level: opts.level,
        base: base_root,
        target: Target {
            digest: root.digest,
            media_type: root.media_type.clone(),
            size: root.size,
            name: chasi_images::normalize_name(to)
                .ok()
                .filter(|_| to.parse::<Digest>().is_err()),
            documents,
        },
        platforms,
        layers,
    };
    write_artifact(store, &config, &payloads, out, opts)
}

/// The target manifests the delta covers.
fn choose_platforms<'a>(
    target: &'a Image,
    name: &str,
    wanted: &[Platform],
) -> Result<Vec<&'a PlatformManifest>> {
    if wanted.is_empty() {
        return Ok(target.manifests.iter().collect());
    }
    let mut chosen = Vec::new();
    for w in wanted {
        let m = target
            .manifests
            .iter()
            .find(|m| m.spec.as_ref().is_some_and(|s| w.matches(s)))
            .ok_or_else(|| DeltaError::NoPlatform {
                image: name.to_string(),
                platform: w.to_string(),
                available: target.platforms().join(", "),
            })?;
        if !chosen
            .iter()
            .any(|c: &&PlatformManifest| c.digest == m.digest)
        {
            chosen.push(m);
        }
    }
    if chosen.len() != target.manifests.len() && chosen.len() != 1 {
        return Err(DeltaError::PlatformSubset {
            image: name.to_string(),
            asked: chosen.len(),
            available: target.manifests.len(),
        });
    }
    Ok(chosen)
}

/// The base manifest of the same platform.
fn base_for<'a>(
    base: &'a Image,
    name: &str,
    pm: &PlatformManifest,
) -> Result<&'a PlatformManifest> {
    if base.manifests.len() == 1 && pm.spec.is_none() {
        return Ok(&base.manifests[0]);
    }
    let spec = pm.spec.as_ref();
    base.manifests
        .iter()
        .find(|b| match (&spec, &b.spec) {
            (Some(s), Some(bs)) => s.matches(bs),
            _ => false,
        })
        .ok_or_else(|| DeltaError::NoPlatform {
            image: name.to_string(),
            platform: pm.platform.clone(),
            available: base.platforms().join(", "),
        })
}

/// The root the node will tag and every document the delta carries.
fn target_documents(
    store: &Store,
    target: &Image,
    chosen: &[&PlatformManifest],
) -> Result<(Blob, Vec<Blob>)> {
    let mut docs = Vec::new();
    let whole = chosen.len() == target.manifests.len();
    if whole {
        for (d, _) in &target.indexes {
            docs.push(blob_of(&descriptor_of(store, d)?)?);
        }
    }
    for pm in chosen {
        docs.push(blob_of(&descriptor_of(store, &pm.digest)?)?);
        docs.push(blob_of(pm.manifest.config())?);
    }
    let root = if whole {
        blob_of(&descriptor_of(store, &target.root)?)?
    } else {
        blob_of(&descriptor_of(store, &chosen[0].digest)?)?
    };
    let mut seen = std::collections::HashSet::new();
    docs.retain(|b| seen.insert(b.digest));
    Ok((root, docs))
}

fn blob_of(d: &Descriptor) -> Result<Blob> {
    Ok(Blob {
        digest: Digest::from_oci(d.digest())?,
        size: d.size(),
        media_type: d.media_type().to_string(),
    })
}

fn diff_ids(store: &Store, pm: &PlatformManifest) -> Result<Vec<Digest>> {
    let ids = pm.diff_ids(store)?;
    if ids.len() != pm.manifest.layers().len() {
        return Err(DeltaError::malformed(
            format!("image manifest {}", pm.digest),
            format!(
                "{} layers but {} diff_ids in its config",
                pm.manifest.layers().len(),
                ids.len()
            ),
        ));
    }
    Ok(ids)
}

fn layer_blob(pm: &PlatformManifest, i: usize) -> Result<Blob> {
    blob_of(&pm.manifest.layers()[i])
}

fn scan_layer(store: &Store, d: &Digest) -> Result<Scan> {
    scan(store.open_layer(d)?.chunk_verified_only())
        .map_err(DeltaError::io("read layer", d.to_string()))
}

/// Whether the store reproduces `blob` from the layer's chunks, so a node can rebuild it (a blob that came from
/// outside, such as another tool's gzip, cannot be: it travels whole).
fn reproducible(store: &Store, diff_id: &Digest, blob: &Blob) -> Result<bool> {
    let index = store.layer(diff_id)?;
    if index
        .external
        .first()
        .is_some_and(|b| b.digest == blob.digest)
    {
        return Ok(false);
    }
    let ours = [index.zstd.as_ref(), index.gzip.as_ref()]
        .into_iter()
        .flatten()
        .any(|b| b.digest == blob.digest && b.size == blob.size);
    Ok(ours)
}

/// What deciding one target layer needs.
struct LayerCx<'a> {
    store: &'a Store,
    base: &'a BaseIndex<'a>,
    base_layers: &'a [Digest],
    /// The layer's scan, when it can be a delta.
    target: Option<&'a Scan>,
    platform: usize,
    opts: &'a DeltaOptions,
    payloads: &'a DirBlobs,
}

impl LayerCx<'_> {
    /// Decides how one target layer travels and, for a delta, encodes its payload.
    fn layer_delta(&self, diff_id: Digest, blob: Blob) -> Result<LayerDelta> {
        let index = self.store.layer(&diff_id)?;
        let mut l = LayerDelta {
            diff_id,
            size: index.size,
            blob: blob.clone(),
            method: Method::Full,
            source: Some(blob.clone()),
            platform: None,
            memory: 0,
            stats: Stats {
                literal: index.size,
                payload: blob.size,
                ..Stats::default()
            },
        };
        if self.base_layers.contains(&diff_id) {
            l.method = Method::Base;
            l.source = None;
            l.stats = Stats {
                reused: index.size,
                ..Stats::default()
            };
            return Ok(l);
        }
        let Some(target) = self.target else {
            return Ok(l);
        };
        let bsdiff = self.opts.level == Level::Release;
        let plan = plan_layer(self.base, target, self.opts.max_memory, bsdiff);
        let settings = Settings {
            level: self.opts.level,
            budget: self.opts.max_memory,
            limit: blob.size,
        };
        let enc = encode_layer(self.store, &diff_id, self.base_layers, plan, &settings)?;
        let Some(enc) = enc else {
            return Ok(l);
        };
        let (digest, size) = self
            .payloads
            .write_blob(None, &mut (&enc.head[..]).chain(enc.frames))?;
        l.method = Method::Delta;
        l.source = Some(Blob {
            digest: Digest::from_oci(&digest)?,
            size,
            media_type: PAYLOAD_MEDIA_TYPE.to_string(),
        });
        l.platform = Some(self.platform);
        l.memory = enc.memory;
        l.stats = enc.stats;
        debug_assert_eq!(size, enc.len);
        Ok(l)
    }
}

/// Where the artifact's blobs come from: its own documents in memory, payloads in the work directory,
/// everything else (the target's documents and whole layers) from the store.
struct Sources<'a> {
    mem: MemoryBlobs,
    files: &'a DirBlobs,
    store: StoreBlobs<'a>,
}

impl BlobSource for Sources<'_> {
    fn blob_size(&self, digest: &chasi_oci::OciDigest) -> OciResult<u64> {
        if let Some(b) = self.mem.get(digest) {
            return Ok(b.len() as u64);
        }
        match self.files.blob_size(digest) {
            Err(OciError::MissingBlob { .. }) => self.store.blob_size(digest),
            other => other,
        }
    }

    fn open_blob(&self, digest: &chasi_oci::OciDigest) -> OciResult<Box<dyn Read + '_>> {
        if let Some(b) = self.mem.get(digest) {
            return Ok(Box::new(b));
        }
        match self.files.open_blob(digest) {
            Err(OciError::MissingBlob { .. }) => self.store.open_blob(digest),
            other => other,
        }
    }

    fn location(&self) -> String {
        "delta".to_string()
    }
}

fn descriptor(b: &Blob, role: &str) -> Value {
    json!({
        "mediaType": b.media_type,
        "digest": b.digest.to_string(),
        "size": b.size,
        "annotations": { ROLE_ANNOTATION: role },
    })
}

fn write_artifact(
    store: &Store,
    config: &DeltaConfig,
    payloads: &DirBlobs,
    out: &Path,
    opts: &DeltaOptions,
) -> Result<DeltaReport> {
    let mut mem = MemoryBlobs::new();
    let config_bytes = chasi_oci::json::to_canonical_json(config)?;
    let config_desc = mem.insert(MediaType::from(CONFIG_MEDIA_TYPE), config_bytes);
    let mut blobs: BTreeMap<String, Value> = BTreeMap::new();
    let mut order = Vec::new();
    let mut add = |b: &Blob, role: &str| {
        let k = b.digest.to_string();
        if let std::collections::btree_map::Entry::Vacant(e) = blobs.entry(k.clone()) {
            order.push(k);
            e.insert(descriptor(b, role));
        }
    };
    for d in &config.target.documents {
        add(d, "document");
    }
    for l in &config.layers {
        match (&l.method, &l.source) {
            (Method::Delta, Some(s)) => add(s, "payload"),
            (Method::Full, Some(s)) => add(s, "layer"),
            _ => {}
        }
    }
    let layers: Vec<Value> = order.iter().map(|k| blobs[k].clone()).collect();
    let size = layers
        .iter()
        .filter_map(|l| l["size"].as_u64())
        .sum::<u64>()
        + config_desc.size();
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": MediaType::ImageManifest.to_string(),
        "artifactType": ARTIFACT_TYPE,
        "config": {
            "mediaType": CONFIG_MEDIA_TYPE,
            "digest": config_desc.digest().to_string(),
            "size": config_desc.size(),
        },
        "layers": layers,
        "subject": {
            "mediaType": config.target.media_type,
            "digest": config.target.digest.to_string(),
            "size": config.target.size,
        },
        "annotations": { "io.chasi.delta.base": config.base.to_string() },
    });
    let manifest_bytes = chasi_oci::json::to_canonical_json(&manifest)?;
    let mut root = mem.insert(MediaType::ImageManifest, manifest_bytes.clone());
    root.set_artifact_type(Some(MediaType::from(ARTIFACT_TYPE)));
    let size = size + manifest_bytes.len() as u64;
    let sources = Sources {
        mem,
        files: payloads,
        store: StoreBlobs::new(store),
    };
    let wopts = WriteOptions {
        work_dir: Some(store.tmp_dir().to_path_buf()),
        ..WriteOptions::default()
    };
    let report = match opts.format {
        SaveFormat::OciLayout => chasi_oci::write_oci_layout(&sources, &root, out, &wopts)?,
        _ => chasi_oci::write_oci_archive(&sources, &root, out, &wopts)?,
    };
    Ok(DeltaReport {
        artifact: Digest::from_oci(report.root.digest())?,
        config: config.clone(),
        size,
    })
}
