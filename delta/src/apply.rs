//! Applying a delta to a store that holds its base: `chasi load DELTA`, and what the node runtime calls.
//!
//! Order of checks, all before anything is tagged:
//! 1. the artifact: its manifest is a chasi delta of a known version, its config is consistent, and every
//!    blob it holds hashes to its descriptor (read once, completely, before any use);
//! 2. the base: every base layer the delta reads is in the store (else [`DeltaError::BaseMissing`], naming
//!    the base image), and no part needs more memory than allowed;
//! 3. per layer: each reference range and each operation's bytes hash to what the delta records, the
//!    rebuilt tar has the target's DiffID (checked by the store *before* it commits the layer, so a wrong
//!    layer never lands), and the store's blob of it has the digest the target manifest names;
//! 4. the target's documents go in by digest, the whole image is read back, and only then is it tagged.
//!
//! Memory is bounded by one part at a time (its reference and the decoder's buffer, recorded in the
//! delta and refused above `max_memory`) plus a few MiB of buffers between the decoder and the store,
//! never by the size of the image.

use crate::error::{DeltaError, Result};
use crate::format::{DeltaConfig, LayerDelta, LayerIndex, Method, Op, MAGIC, MAX_INDEX_BYTES};
use crate::pipe::{ChannelReader, Sink};
use crate::read::DeltaArtifact;
use chasi_layers::{Digest, Store};
use std::io::{self, Read};
use std::path::Path;
use std::sync::mpsc::sync_channel;

/// How to apply a delta.
#[derive(Debug, Clone)]
pub struct ApplyOptions {
    /// The most memory one part may need (its reference plus its decoder buffer).
    pub max_memory: u64,
    /// The name to tag the target with (default: the name it had where the delta was made).
    pub tag: Option<String>,
}

impl Default for ApplyOptions {
    fn default() -> Self {
        ApplyOptions {
            max_memory: DEFAULT_APPLY_MEMORY,
            tag: None,
        }
    }
}

/// Default `--max-memory` of apply: 256 MiB.
pub const DEFAULT_APPLY_MEMORY: u64 = 256 << 20;

/// What applying did.
#[derive(Debug, Clone)]
pub struct ApplyReport {
    /// The target image's root digest.
    pub target: Digest,
    /// The name it was tagged with.
    pub name: Option<String>,
    /// Layers rebuilt from payloads, loaded whole, found in the store already.
    pub rebuilt: usize,
    /// Layers that travelled whole.
    pub whole: usize,
    /// Layers the store had.
    pub present: usize,
}

/// Applies the delta at `path` (an oci-archive or an OCI layout) to `store`.
pub fn apply(store: &Store, path: &Path, opts: &ApplyOptions) -> Result<ApplyReport> {
    let art = DeltaArtifact::open(path)?;
    let config = art.config().clone();
    check_base(store, &config)?;
    for l in &config.layers {
        if l.memory > opts.max_memory {
            return Err(DeltaError::TooMuchMemory {
                layer: l.diff_id,
                part: 0,
                needed: l.memory,
                limit: opts.max_memory,
            });
        }
    }
    art.verify_blobs()?;
    let mut report = ApplyReport {
        target: config.target.digest,
        name: None,
        rebuilt: 0,
        whole: 0,
        present: 0,
    };
    for l in &config.layers {
        if store.has_layer(&l.diff_id) {
            report.present += 1;
        } else {
            match l.method {
                Method::Base => {
                    return Err(missing(&config, l.diff_id, l.platform.unwrap_or(0)));
                }
                Method::Full => {
                    load_whole(store, &art, l)?;
                    report.whole += 1;
                }
                Method::Delta => {
                    rebuild(store, &art, &config, l, opts.max_memory)?;
                    report.rebuilt += 1;
                }
            }
        }
        check_blob(store, l)?;
    }
    for d in &config.target.documents {
        let r = art.blob(&d.digest)?;
        store.put_blob_from(r, Some((d.digest, d.size)))?;
    }
    // Read the whole target back: every document parses and every layer it names is there.
    let image = chasi_images::Image::read(store, &config.target.digest)?;
    for pm in &image.manifests {
        for layer in pm.manifest.layers() {
            let d = Digest::from_oci(layer.digest())?;
            store.layer_for_blob(&d)?;
        }
    }
    let name = opts.tag.clone().or(config.target.name.clone());
    if let Some(n) = &name {
        let n = chasi_images::normalize_name(n)?;
        store.set_ref(&n, &config.target.digest)?;
        report.name = Some(n);
    }
    Ok(report)
}

fn missing(config: &DeltaConfig, layer: Digest, platform: usize) -> DeltaError {
    DeltaError::BaseMissing {
        base: config.base,
        missing: format!("layer {layer}"),
        platform: config
            .platforms
            .get(platform)
            .map_or_else(String::new, |p| {
                format!("{}, manifest {}", p.platform, p.base_manifest)
            }),
    }
}

/// Every base layer a delta layer reads, and every layer it says the base has, must be in the store.
fn check_base(store: &Store, config: &DeltaConfig) -> Result<()> {
    for l in &config.layers {
        match l.method {
            Method::Delta => {
                let p = l.platform.unwrap_or(0);
                for b in &config.platforms[p].base_layers {
                    if !store.has_layer(b) {
                        return Err(missing(config, *b, p));
                    }
                }
            }
            Method::Base if !store.has_layer(&l.diff_id) => {
                let p = config
                    .platforms
                    .iter()
                    .position(|p| p.base_layers.contains(&l.diff_id))
                    .unwrap_or(0);
                return Err(missing(config, l.diff_id, p));
            }
            _ => {}
        }
    }
    Ok(())
}

fn load_whole(store: &Store, art: &DeltaArtifact, l: &LayerDelta) -> Result<()> {
    let r = art.blob(&l.blob.digest)?;
    let info = store.import_layer_blob(r, &l.blob.media_type, Some(l.blob.digest))?;
    if info.diff_id != l.diff_id {
        return Err(DeltaError::Mismatch {
            what: "layer",
            expected: l.diff_id,
            actual: info.diff_id,
        });
    }
    Ok(())
}

/// The store must serve the layer under the digest the target manifest names.
fn check_blob(store: &Store, l: &LayerDelta) -> Result<()> {
    let got = if l.blob.media_type.ends_with("gzip") {
        store.ensure_gzip(&l.diff_id)?
    } else if l.method == Method::Full {
        store.layer_blob(&l.diff_id)?
    } else {
        store.ensure_zstd(&l.diff_id)?
    };
    if got.digest != l.blob.digest {
        // A whole blob may sit beside the store's own encodings.
        if store.check_layer(&l.diff_id, &l.blob.digest).is_ok() {
            return Ok(());
        }
        return Err(DeltaError::Mismatch {
            what: "layer blob of",
            expected: l.blob.digest,
            actual: got.digest,
        });
    }
    Ok(())
}

/// Rebuilds one layer's tar from its payload and the base, straight into the store.
fn rebuild(
    store: &Store,
    art: &DeltaArtifact,
    config: &DeltaConfig,
    l: &LayerDelta,
    max_memory: u64,
) -> Result<()> {
    let source = l.source.as_ref().ok_or_else(|| {
        DeltaError::malformed(
            "delta config",
            format!("layer {} has no payload", l.diff_id),
        )
    })?;
    let base = &config.platforms[l.platform.unwrap_or(0)].base_layers;
    let mut payload = io::BufReader::with_capacity(1 << 20, art.blob(&source.digest)?);
    let location = format!("payload {} of layer {}", source.digest, l.diff_id);
    let index = read_index(&mut payload, &location)?;
    check_index(store, &index, base, l, max_memory, &location)?;

    let (tx, rx) = sync_channel::<std::result::Result<Vec<u8>, String>>(4);
    // The store ingests on its own thread; the payload reader (which may not be `Send`) stays here.
    let (produced, ingested) = std::thread::scope(|s| {
        let ingest =
            s.spawn(move || store.ingest_tar_expecting(ChannelReader::new(rx), &l.diff_id));
        let mut sink = Sink::new(tx);
        let produced = crate::rebuild::produce(store, base, l, &index, &mut payload, &mut sink);
        match &produced {
            Ok(()) => sink.finish(),
            Err(e) => sink.fail(crate::chain(e)),
        }
        drop(sink);
        let ingested = ingest.join().unwrap_or_else(|_| {
            Err(chasi_layers::Error::Io {
                op: "ingest",
                path: "<delta>".into(),
                source: io::Error::other("the ingesting thread panicked"),
            })
        });
        (produced, ingested)
    });
    match (produced, ingested) {
        // The store stopped first: its error is the cause.
        (Err(DeltaError::StoreStopped), Err(e)) => Err(e.into()),
        (Err(e), _) => Err(e),
        (Ok(()), Err(e)) => Err(e.into()),
        (Ok(()), Ok(_)) => Ok(()),
    }?;
    Ok(())
}

fn read_index(payload: &mut impl Read, location: &str) -> Result<LayerIndex> {
    let mut head = [0u8; 16];
    payload
        .read_exact(&mut head)
        .map_err(|e| DeltaError::malformed(location, format!("cannot read its header: {e}")))?;
    if &head[..8] != MAGIC {
        return Err(DeltaError::malformed(
            location,
            "it does not start with CHASIDL1",
        ));
    }
    let len = u64::from_le_bytes(head[8..16].try_into().unwrap_or_default());
    if len > MAX_INDEX_BYTES {
        return Err(DeltaError::malformed(
            location,
            format!("its index claims {len} bytes"),
        ));
    }
    let mut compressed = vec![0u8; len as usize];
    payload
        .read_exact(&mut compressed)
        .map_err(|e| DeltaError::malformed(location, format!("its index is cut short: {e}")))?;
    let mut raw = Vec::new();
    zstd::stream::read::Decoder::new(&compressed[..])
        .and_then(|d| d.take(MAX_INDEX_BYTES + 1).read_to_end(&mut raw))
        .map_err(|e| {
            DeltaError::malformed(location, format!("its index does not decompress: {e}"))
        })?;
    if raw.len() as u64 > MAX_INDEX_BYTES {
        return Err(DeltaError::malformed(
            location,
            "its index is larger than 64 MiB",
        ));
    }
    LayerIndex::decode(&raw, location)
}

/// The index must describe exactly the target layer, read only inside the base, and fit in memory.
fn check_index(
    store: &Store,
    index: &LayerIndex,
    base: &[Digest],
    l: &LayerDelta,
    max_memory: u64,
    location: &str,
) -> Result<()> {
    let bad = |d: String| DeltaError::malformed(location, d);
    let total = index
        .ops
        .iter()
        .try_fold(0u64, |a, o| a.checked_add(o.len()))
        .ok_or_else(|| bad("operation lengths overflow".into()))?;
    if total != l.size {
        return Err(bad(format!(
            "operations make {total} bytes, the layer has {}",
            l.size
        )));
    }
    let streamed = index
        .ops
        .iter()
        .try_fold(0u64, |a, o| a.checked_add(o.stream_len()))
        .ok_or_else(|| bad("stream lengths overflow".into()))?;
    let decoded = index
        .parts
        .iter()
        .try_fold(0u64, |a, p| a.checked_add(p.out_len))
        .ok_or_else(|| bad("part lengths overflow".into()))?;
    if streamed != decoded {
        return Err(bad(format!(
            "operations stream {streamed} bytes, the parts decode to {decoded}"
        )));
    }
    let sizes: Vec<u64> = base
        .iter()
        .map(|d| store.layer(d).map(|i| i.size))
        .collect::<std::result::Result<_, _>>()?;
    let in_base = |r: &crate::format::Range| {
        sizes
            .get(r.layer as usize)
            .is_some_and(|&s| r.offset.checked_add(r.len).is_some_and(|e| e <= s))
    };
    for (i, o) in index.ops.iter().enumerate() {
        if let Op::Reuse { src, .. } | Op::Bspatch { src, .. } = o {
            if !in_base(src) {
                return Err(bad(format!(
                    "operation {i} reads outside base layer {}",
                    src.layer
                )));
            }
        }
    }
    let bspatch = index.ops.iter().map(Op::memory).max().unwrap_or(0);
    for (i, p) in index.parts.iter().enumerate() {
        if let Some(r) = p.refs.iter().find(|r| !in_base(&r.src)) {
            return Err(bad(format!(
                "part {i} references outside base layer {}",
                r.src.layer
            )));
        }
        let needed = p.memory().saturating_add(bspatch);
        if needed > max_memory {
            return Err(DeltaError::TooMuchMemory {
                layer: l.diff_id,
                part: i,
                needed,
                limit: max_memory,
            });
        }
    }
    Ok(())
}
