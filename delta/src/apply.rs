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
use crate::format::{
    DeltaConfig, LayerDelta, LayerIndex, Method, Op, Part, MAGIC, MAX_INDEX_BYTES, MAX_WINDOW_LOG,
};
use crate::read::DeltaArtifact;
use chasi_layers::{Digest, LayerReader, Store};
use std::io::{self, Read};
use std::path::Path;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};

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
        let produced = produce(store, base, l, &index, &mut payload, &mut sink);
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
    produced?;
    ingested?;
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

/// Where the operations are.
struct Cursor<'a> {
    ops: &'a [Op],
    i: usize,
    left: u64,
    hasher: blake3::Hasher,
}

/// Runs the operations in order, decoding the parts as the stream operations need them.
fn produce(
    store: &Store,
    base: &[Digest],
    l: &LayerDelta,
    index: &LayerIndex,
    payload: &mut impl io::BufRead,
    sink: &mut Sink,
) -> Result<()> {
    let mut readers: Vec<Option<LayerReader<'_>>> = (0..base.len()).map(|_| None).collect();
    let mut cur = Cursor {
        ops: &index.ops,
        i: 0,
        left: index.ops.first().map_or(0, Op::len),
        hasher: blake3::Hasher::new(),
    };
    let mut buf = vec![0u8; 1 << 20];
    for (pi, part) in index.parts.iter().enumerate() {
        let prefix = load_prefix(store, base, &mut readers, l, pi, part)?;
        let part_err = |detail: String| DeltaError::Op {
            layer: l.diff_id,
            op: pi,
            kind: "part",
            detail,
        };
        let frame = (&mut *payload).take(part.compressed_len);
        let mut dec = zstd::stream::read::Decoder::with_ref_prefix(frame, &prefix)
            .map_err(|e| part_err(format!("cannot start decoding: {e}")))?;
        dec.window_log_max(part.window_log.min(MAX_WINDOW_LOG) as u32)
            .map_err(|e| part_err(format!("cannot set the window: {e}")))?;
        let mut part_left = part.out_len;
        while part_left > 0 {
            match cur.ops.get(cur.i) {
                None => return Err(part_err("the operations end before the part".into())),
                Some(Op::Reuse { .. }) => {
                    reuse(store, base, &mut readers, l, &mut cur, sink, &mut buf)?
                }
                Some(Op::Stream { .. }) => {
                    let n = cur.left.min(part_left).min(buf.len() as u64) as usize;
                    dec.read_exact(&mut buf[..n])
                        .map_err(|e| part_err(format!("decoding failed: {e}")))?;
                    cur.hasher.update(&buf[..n]);
                    sink.write(&buf[..n]);
                    cur.left -= n as u64;
                    part_left -= n as u64;
                    if cur.left == 0 {
                        finish_op(l, &mut cur)?;
                    }
                }
                Some(&Op::Bspatch { patch_len, .. }) => {
                    if patch_len > part_left {
                        return Err(DeltaError::Op {
                            layer: l.diff_id,
                            op: cur.i,
                            kind: "bspatch",
                            detail: format!(
                                "its {patch_len}-byte patch runs past the end of part {pi}"
                            ),
                        });
                    }
                    let mut patch = vec![0u8; patch_len as usize];
                    dec.read_exact(&mut patch)
                        .map_err(|e| part_err(format!("decoding failed: {e}")))?;
                    part_left -= patch_len;
                    bspatch(store, base, &mut readers, l, &mut cur, sink, &patch)?;
                }
            }
        }
        // The frame must end exactly here (its checksum is checked on the way).
        let mut one = [0u8; 1];
        match dec.read(&mut one) {
            Ok(0) => {}
            Ok(_) => {
                return Err(part_err(
                    "the part decodes to more bytes than recorded".into(),
                ))
            }
            Err(e) => return Err(part_err(format!("decoding failed: {e}"))),
        }
        let mut rest = dec.finish();
        if rest
            .read(&mut one)
            .map_err(|e| part_err(format!("reading the payload: {e}")))?
            != 0
        {
            return Err(part_err(
                "the compressed part is longer than its frame".into(),
            ));
        }
    }
    while let Some(op) = cur.ops.get(cur.i) {
        match op {
            Op::Reuse { .. } => reuse(store, base, &mut readers, l, &mut cur, sink, &mut buf)?,
            Op::Stream { .. } if cur.left == 0 => finish_op(l, &mut cur)?,
            Op::Stream { .. } | Op::Bspatch { .. } => {
                return Err(DeltaError::Op {
                    layer: l.diff_id,
                    op: cur.i,
                    kind: op_kind(op),
                    detail: "the parts end before this operation".into(),
                })
            }
        }
    }
    // Nothing may follow the last part; reading to the end also checks the payload's digest.
    let mut one = [0u8; 1];
    match payload.read(&mut one) {
        Ok(0) => Ok(()),
        Ok(_) => Err(DeltaError::malformed(
            format!("payload of layer {}", l.diff_id),
            "bytes after the last part",
        )),
        Err(e) => Err(DeltaError::malformed(
            format!("payload of layer {}", l.diff_id),
            e.to_string(),
        )),
    }
}

fn finish_op(l: &LayerDelta, cur: &mut Cursor<'_>) -> Result<()> {
    let op = &cur.ops[cur.i];
    let want = match op {
        Op::Reuse { digest, .. } | Op::Stream { digest, .. } | Op::Bspatch { digest, .. } => digest,
    };
    let kind = op_kind(op);
    let got = crate::format::op_digest(&cur.hasher);
    if &got != want {
        return Err(DeltaError::Op {
            layer: l.diff_id,
            op: cur.i,
            kind,
            detail: format!(
                "its {} bytes hash to {}, the delta records {}",
                op.len(),
                hex(&got),
                hex(want)
            ),
        });
    }
    cur.i += 1;
    cur.left = cur.ops.get(cur.i).map_or(0, Op::len);
    cur.hasher = blake3::Hasher::new();
    Ok(())
}

fn op_kind(op: &Op) -> &'static str {
    match op {
        Op::Reuse { .. } => "reuse",
        Op::Stream { .. } => "stream",
        Op::Bspatch { .. } => "bspatch",
    }
}

/// Applies a bsdiff patch to its old file (checked against its digest first) and writes the result.
#[allow(clippy::too_many_arguments)]
fn bspatch<'s>(
    store: &'s Store,
    base: &[Digest],
    readers: &mut [Option<LayerReader<'s>>],
    l: &LayerDelta,
    cur: &mut Cursor<'_>,
    sink: &mut Sink,
    patch: &[u8],
) -> Result<()> {
    let Op::Bspatch {
        src,
        src_digest,
        len,
        ..
    } = cur.ops[cur.i]
    else {
        return Ok(());
    };
    let err = |detail: String| DeltaError::Op {
        layer: l.diff_id,
        op: cur.i,
        kind: "bspatch",
        detail,
    };
    let mut old = vec![0u8; src.len as usize];
    reader(store, base, readers, src.layer)?
        .read_at(src.offset, &mut old)
        .map_err(|e| {
            err(format!(
                "reading base layer {}: {}",
                base[src.layer as usize],
                crate::chain(&e)
            ))
        })?;
    let got = crate::encode::digest_of(&old);
    if got != src_digest {
        return Err(err(format!(
            "its source (base layer {}, {} bytes at {}) hashes to {}, the delta records {}",
            base[src.layer as usize],
            src.len,
            src.offset,
            hex(&got),
            hex(&src_digest)
        )));
    }
    let mut new = Vec::with_capacity(len as usize);
    bsdiff::patch(&old, &mut &patch[..], &mut new)
        .map_err(|e| err(format!("the patch does not apply: {e}")))?;
    if new.len() as u64 != len {
        return Err(err(format!(
            "the patch makes {} bytes, the delta records {len}",
            new.len()
        )));
    }
    cur.hasher.update(&new);
    sink.write(&new);
    finish_op(l, cur)
}

fn hex(d: &[u8]) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

#[allow(clippy::too_many_arguments)]
fn reuse<'s>(
    store: &'s Store,
    base: &[Digest],
    readers: &mut [Option<LayerReader<'s>>],
    l: &LayerDelta,
    cur: &mut Cursor<'_>,
    sink: &mut Sink,
    buf: &mut [u8],
) -> Result<()> {
    let Op::Reuse { src, .. } = cur.ops[cur.i] else {
        return Ok(());
    };
    let reader = reader(store, base, readers, src.layer)?;
    let mut done = 0u64;
    while done < src.len {
        let n = (src.len - done).min(buf.len() as u64) as usize;
        reader
            .read_at(src.offset + done, &mut buf[..n])
            .map_err(|e| DeltaError::Op {
                layer: l.diff_id,
                op: cur.i,
                kind: "reuse",
                detail: format!(
                    "reading base layer {}: {}",
                    base[src.layer as usize],
                    crate::chain(&e)
                ),
            })?;
        cur.hasher.update(&buf[..n]);
        sink.write(&buf[..n]);
        done += n as u64;
    }
    finish_op(l, cur)
}

fn reader<'a, 's>(
    store: &'s Store,
    base: &[Digest],
    readers: &'a mut [Option<LayerReader<'s>>],
    layer: u32,
) -> Result<&'a mut LayerReader<'s>> {
    let slot = &mut readers[layer as usize];
    if slot.is_none() {
        *slot = Some(store.open_layer(&base[layer as usize])?);
    }
    Ok(slot.as_mut().expect("set above"))
}

/// A part's reference, each range checked against its digest before it is used.
fn load_prefix<'s>(
    store: &'s Store,
    base: &[Digest],
    readers: &mut [Option<LayerReader<'s>>],
    l: &LayerDelta,
    pi: usize,
    part: &Part,
) -> Result<Vec<u8>> {
    let mut prefix = vec![0u8; part.ref_len() as usize];
    let mut at = 0usize;
    for (ri, r) in part.refs.iter().enumerate() {
        let dst = &mut prefix[at..at + r.src.len as usize];
        reader(store, base, readers, r.src.layer)?.read_at(r.src.offset, dst)?;
        let got = crate::encode::digest_of(dst);
        if got != r.digest {
            return Err(DeltaError::Op {
                layer: l.diff_id,
                op: pi,
                kind: "part",
                detail: format!(
                    "reference {ri} (base layer {}, {} bytes at {}) hashes to {}, the delta records {}",
                    base[r.src.layer as usize],
                    r.src.len,
                    r.src.offset,
                    hex(&got),
                    hex(&r.digest)
                ),
            });
        }
        at += r.src.len as usize;
    }
    Ok(prefix)
}

/// The producer's end of the pipe to the store: it always holds the latest buffer back, so that the
/// store sees the end of the tar only once every check passed, and an error instead otherwise.
struct Sink {
    tx: Option<SyncSender<std::result::Result<Vec<u8>, String>>>,
    held: Vec<u8>,
}

const SINK_BUF: usize = 1 << 20;

impl Sink {
    fn new(tx: SyncSender<std::result::Result<Vec<u8>, String>>) -> Self {
        Sink {
            tx: Some(tx),
            held: Vec::with_capacity(SINK_BUF),
        }
    }

    fn write(&mut self, data: &[u8]) {
        if self.held.len() + data.len() > SINK_BUF && !self.held.is_empty() {
            let full = std::mem::replace(&mut self.held, Vec::with_capacity(SINK_BUF));
            if let Some(tx) = &self.tx {
                // A closed pipe means the store stopped; its own error is reported.
                if tx.send(Ok(full)).is_err() {
                    self.tx = None;
                }
            }
        }
        self.held.extend_from_slice(data);
    }

    /// Sends what is held, then the end of the stream (an empty buffer, which `write` never sends).
    fn finish(&mut self) {
        if let Some(tx) = self.tx.take() {
            let held = std::mem::take(&mut self.held);
            if !held.is_empty() && tx.send(Ok(held)).is_err() {
                return;
            }
            let _ = tx.send(Ok(Vec::new()));
        }
    }

    fn fail(&mut self, why: String) {
        if let Some(tx) = self.tx.take() {
            let _ = tx.send(Err(why));
        }
    }
}

/// The store's end of the pipe.
struct ChannelReader {
    rx: Receiver<std::result::Result<Vec<u8>, String>>,
    cur: Vec<u8>,
    pos: usize,
    ended: bool,
}

impl ChannelReader {
    fn new(rx: Receiver<std::result::Result<Vec<u8>, String>>) -> Self {
        ChannelReader {
            rx,
            cur: Vec::new(),
            pos: 0,
            ended: false,
        }
    }
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.cur.len() {
            if self.ended {
                return Ok(0);
            }
            match self.rx.recv() {
                Ok(Ok(next)) if next.is_empty() => self.ended = true,
                Ok(Ok(next)) => {
                    self.cur = next;
                    self.pos = 0;
                }
                Ok(Err(why)) => return Err(io::Error::new(io::ErrorKind::InvalidData, why)),
                // The producer ended without finishing: never a complete tar.
                Err(_) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the delta's rebuild stopped",
                    ))
                }
            }
        }
        let n = buf.len().min(self.cur.len() - self.pos);
        buf[..n].copy_from_slice(&self.cur[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}
