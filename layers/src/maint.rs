//! Store maintenance: disk usage (`du`), full re-verification (`verify`) and mark-and-sweep garbage collection
//! (`gc`).
//!
//! GC roots are the refs and the build-cache records. Marking follows every `sha256:…` string found in a reachable
//! JSON blob (manifests, indexes, configs, cache records), so it needs no knowledge of OCI media types and keeps
//! configs, layers (by blob digest or DiffID), subjects and referrers alike. The sweep runs under the exclusive
//! `locks/gc.lock`, which no open [`Store`] shares, so nothing a concurrent build is writing can be deleted.

use crate::digest::{ChunkId, Digest, Hasher};
use crate::error::{Error, IoCtx, Result};
use crate::fsutil::{self, TempSession};
use crate::pack::{self, PackEntry, PackIndex, PackWriter};
use crate::store::{list_hex, parse_json, BlobEncoding, BlobLink, LayerIndex, RefRecord, Store};
use serde::Serialize;
use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::io::Read;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Usage of one image (a ref).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ImageUsage {
    /// Ref name.
    pub name: String,
    /// Manifest digest.
    pub digest: String,
    /// Bytes as OCI counts them: manifest + config + layer blob sizes (recursing into indexes).
    pub logical_bytes: u64,
    /// Number of layer descriptors.
    pub layers: u64,
}

/// Result of [`Store::du`].
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DuReport {
    /// Store directory.
    pub store: String,
    /// Sum over images of their OCI size, plus objects no image references (layers at their blob size, blobs).
    pub logical_bytes: u64,
    /// Bytes allocated on disk by the whole store directory.
    pub physical_bytes: u64,
    /// `logical_bytes / physical_bytes` (0 when the store is empty).
    pub dedup_ratio: f64,
    /// Sum of the uncompressed tar sizes of all layers.
    pub uncompressed_layer_bytes: u64,
    /// Number of layers.
    pub layers: u64,
    /// Number of distinct chunks.
    pub chunks: u64,
    /// Number of raw blobs.
    pub blobs: u64,
    /// Per image.
    pub images: Vec<ImageUsage>,
}

/// One problem found by [`Store::verify`].
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Problem {
    /// The object (digest, ref name, or file name).
    pub object: String,
    /// Its path.
    pub path: String,
    /// What is wrong.
    pub detail: String,
}

/// Result of [`Store::verify`].
#[derive(Debug, Clone, Serialize, PartialEq, Eq, Default)]
pub struct VerifyReport {
    /// Objects checked.
    pub checked: u64,
    /// Bytes re-hashed.
    pub bytes: u64,
    /// Problems (empty = store is sound).
    pub problems: Vec<Problem>,
    /// Leftovers of interrupted writes that are ignored by readers (removed by `gc`).
    pub ignored_partial: Vec<String>,
}

impl VerifyReport {
    /// True when no problem was found.
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Options of [`Store::gc`].
#[derive(Debug, Clone, Default)]
pub struct GcOptions {
    /// Report what would be removed without removing it.
    pub dry_run: bool,
    /// How long to wait for other processes holding the store open (`None`: fail at once if busy).
    pub wait: Option<Duration>,
    /// Drop all build-cache records first (they are GC roots otherwise).
    pub prune_cache: bool,
}

/// Result of [`Store::gc`].
#[derive(Debug, Clone, Serialize, PartialEq, Eq, Default)]
pub struct GcReport {
    /// Raw blobs removed.
    pub blobs_removed: u64,
    /// Layer indexes removed.
    pub layers_removed: u64,
    /// Chunks dropped.
    pub chunks_removed: u64,
    /// Packs deleted or rewritten.
    pub packs_rewritten: u64,
    /// Bytes freed on disk.
    pub bytes_freed: u64,
}

struct Marks {
    digests: HashSet<Digest>,
}

fn collect_digests(v: &serde_json::Value, out: &mut Vec<Digest>) {
    match v {
        serde_json::Value::String(s) => {
            if let Ok(d) = s.parse::<Digest>() {
                out.push(d);
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|x| collect_digests(x, out)),
        serde_json::Value::Object(o) => o.values().for_each(|x| collect_digests(x, out)),
        _ => {}
    }
}

impl Store {
    fn mark(&self, roots: Vec<Digest>) -> Marks {
        let mut digests = HashSet::new();
        let mut todo = roots;
        while let Some(d) = todo.pop() {
            if !digests.insert(d) {
                continue;
            }
            // A raw blob that is JSON: follow its digests.
            let bp = self.blob_path(&d);
            if let Ok(md) = fs::metadata(&bp) {
                if md.len() <= 16 << 20 {
                    if let Ok(data) = fs::read(&bp) {
                        if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&data) {
                            collect_digests(&v, &mut todo);
                        }
                    }
                }
            }
            // A layer blob digest: keep the layer.
            if let Ok(data) = fs::read(self.link_path(&d)) {
                if let Ok(l) = serde_json::from_slice::<BlobLink>(&data) {
                    todo.push(l.diff_id);
                }
            }
            // A layer: keep all its blobs.
            if let Ok(idx) = self.layer(&d) {
                todo.extend(idx.zstd.iter().map(|z| z.digest));
                todo.extend(idx.gzip.iter().map(|g| g.digest));
                todo.extend(idx.external.iter().map(|g| g.digest));
            }
        }
        Marks { digests }
    }

    fn roots(&self) -> Result<Vec<Digest>> {
        let mut roots: Vec<Digest> = self.list_refs()?.into_iter().map(|r| r.digest).collect();
        let cache = self.root.join("cache");
        for ent in fs::read_dir(&cache)
            .ctx("read directory", &cache)?
            .flatten()
        {
            if let Ok(data) = fs::read(ent.path()) {
                if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&data) {
                    collect_digests(&v, &mut roots);
                }
            }
        }
        Ok(roots)
    }

    /// Logical vs physical usage, per image.
    pub fn du(&self) -> Result<DuReport> {
        let refs = self.list_refs()?;
        let mut images = Vec::new();
        let mut counted: HashSet<Digest> = HashSet::new();
        let mut logical = 0u64;
        for r in &refs {
            let mut layers = 0;
            let mut seen = Vec::new();
            let bytes = self.oci_size(&r.digest, &mut layers, &mut seen, 0);
            counted.extend(seen);
            logical += bytes;
            images.push(ImageUsage {
                name: r.name.clone(),
                digest: r.digest.to_string(),
                logical_bytes: bytes,
                layers,
            });
        }
        let layer_ids = self.list_layers()?;
        let mut uncompressed = 0;
        for l in &layer_ids {
            if let Ok(idx) = self.layer(l) {
                uncompressed += idx.size;
                // A layer no manifest counted: its OCI size if known, else nothing (its compressed size is not
                // known until something needs it).
                let known = [idx.external.first(), idx.zstd.as_ref(), idx.gzip.as_ref()];
                if !known.iter().flatten().any(|b| counted.contains(&b.digest)) {
                    if let Some(b) = idx.known_blob() {
                        logical += b.size;
                        counted.insert(b.digest);
                    }
                }
                counted.extend(idx.external.iter().map(|e| e.digest));
            }
        }
        let blobs = list_hex(&self.root.join("blobs"), "")?;
        for b in &blobs {
            if !counted.contains(b) {
                logical += fs::metadata(self.blob_path(b))
                    .map(|m| m.len())
                    .unwrap_or(0);
            }
        }
        let physical = fsutil::dir_size(&self.root);
        let chunks = self
            .chunks
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .map
            .len() as u64;
        Ok(DuReport {
            store: self.root.display().to_string(),
            logical_bytes: logical,
            physical_bytes: physical,
            dedup_ratio: if physical == 0 {
                0.0
            } else {
                logical as f64 / physical as f64
            },
            uncompressed_layer_bytes: uncompressed,
            layers: layer_ids.len() as u64,
            chunks,
            blobs: blobs.len() as u64,
            images,
        })
    }

    /// OCI size of a manifest or index: itself plus every descriptor's `size` (recursing into child manifests).
    fn oci_size(&self, d: &Digest, layers: &mut u64, seen: &mut Vec<Digest>, depth: u32) -> u64 {
        seen.push(*d);
        let Ok(data) = self.get_blob(d) else { return 0 };
        let mut total = data.len() as u64;
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(&data) else {
            return total;
        };
        let desc = |x: &serde_json::Value| -> Option<(Digest, u64)> {
            Some((
                x.get("digest")?.as_str()?.parse().ok()?,
                x.get("size")?.as_u64()?,
            ))
        };
        if let Some(c) = v.get("config").and_then(desc) {
            total += c.1;
            seen.push(c.0);
        }
        for l in v
            .get("layers")
            .and_then(|l| l.as_array())
            .into_iter()
            .flatten()
            .filter_map(desc)
        {
            total += l.1;
            *layers += 1;
            seen.push(l.0);
        }
        if depth < 4 {
            for m in v
                .get("manifests")
                .and_then(|l| l.as_array())
                .into_iter()
                .flatten()
                .filter_map(desc)
            {
                total += self.oci_size(&m.0, layers, seen, depth + 1);
            }
        }
        total
    }

    /// Re-hashes every object: blobs, packs (whole pack digest and every chunk), layers (chunk list, zstd blob
    /// digest, DiffID), links, refs and cache records. Problems are collected, not fatal.
    pub fn verify(&self) -> Result<VerifyReport> {
        let mut rep = VerifyReport::default();
        let bad = |rep: &mut VerifyReport, object: String, path: PathBuf, detail: String| {
            rep.problems.push(Problem {
                object,
                path: path.display().to_string(),
                detail,
            })
        };
        // Blobs.
        let bdir = self.root.join("blobs");
        for ent in fs::read_dir(&bdir).ctx("read directory", &bdir)?.flatten() {
            let name = ent.file_name().to_string_lossy().into_owned();
            let path = ent.path();
            let Ok(d) = Digest::from_hex(&name) else {
                bad(&mut rep, name, path, "unexpected file in blobs/".into());
                continue;
            };
            rep.checked += 1;
            match hash_file(&path) {
                Ok((got, n)) => {
                    rep.bytes += n;
                    if got != d {
                        bad(
                            &mut rep,
                            d.to_string(),
                            path,
                            format!("content hashes to {got}"),
                        );
                    }
                }
                Err(e) => bad(&mut rep, d.to_string(), path, crate::error::chain(&e)),
            }
        }
        // Packs.
        let pdir = self.root.join("packs");
        let mut chunk_ok: HashSet<ChunkId> = HashSet::new();
        let mut names: Vec<String> = fs::read_dir(&pdir)
            .ctx("read directory", &pdir)?
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        for name in &names {
            let path = pdir.join(name);
            if let Some(hex) = name.strip_suffix(".pack") {
                if !names.contains(&format!("{hex}.idx")) {
                    rep.ignored_partial.push(path.display().to_string());
                }
                continue;
            }
            let Some(hex) = name.strip_suffix(".idx") else {
                bad(
                    &mut rep,
                    name.clone(),
                    path,
                    "unexpected file in packs/".into(),
                );
                continue;
            };
            rep.checked += 1;
            let idx = match fs::read(&path)
                .ctx("read", &path)
                .and_then(|d| PackIndex::decode(&d, &path))
            {
                Ok(i) => i,
                Err(e) => {
                    bad(&mut rep, name.clone(), path, crate::error::chain(&e));
                    continue;
                }
            };
            let pack_path = pdir.join(format!("{hex}.pack"));
            if idx.pack.hex() != hex {
                bad(
                    &mut rep,
                    name.clone(),
                    path.clone(),
                    format!("index describes pack {}", idx.pack),
                );
            }
            // Frames are read one by one (memory: one frame). The pack's name covers its size and entry table;
            // its bytes are covered by the per-frame chunk digests below, and must be exactly the frames.
            let len = match fs::metadata(&pack_path) {
                Ok(m) => m.len(),
                Err(e) => {
                    bad(
                        &mut rep,
                        idx.pack.to_string(),
                        pack_path,
                        format!("pack unreadable: {}", crate::error::chain(&e)),
                    );
                    continue;
                }
            };
            rep.bytes += len;
            let table = pack::pack_digest(&idx.entries, idx.pack_size);
            let frames = idx.frames();
            let covered: u64 = frames.iter().map(|f| f.1 as u64).sum();
            if table != idx.pack || len != idx.pack_size || covered != len {
                bad(
                    &mut rep,
                    idx.pack.to_string(),
                    pack_path.clone(),
                    format!(
                        "pack is {len} bytes (index says {}, frames cover {covered}); entry table hashes to {table}",
                        idx.pack_size
                    ),
                );
            }
            let file = match fs::File::open(&pack_path) {
                Ok(f) => f,
                Err(e) => {
                    bad(
                        &mut rep,
                        idx.pack.to_string(),
                        pack_path,
                        format!("pack unreadable: {}", crate::error::chain(&e)),
                    );
                    continue;
                }
            };
            // One frame in memory at a time; every chunk in it checked against its name.
            let mut decoded: Option<(u64, std::result::Result<Vec<u8>, String>)> = None;
            for e in &idx.entries {
                rep.checked += 1;
                if decoded.as_ref().is_none_or(|d| d.0 != e.frame_offset) {
                    let data = pack::load_frame(
                        &file,
                        &pack_path,
                        e.frame_offset,
                        e.frame_len,
                        e.frame_raw_len,
                    )
                    .map_err(|err| crate::error::chain(&err));
                    decoded = Some((e.frame_offset, data));
                }
                let data = match decoded.as_ref().map(|d| &d.1) {
                    Some(Ok(d)) => d,
                    Some(Err(err)) => {
                        bad(
                            &mut rep,
                            format!("chunk {}", e.chunk),
                            pack_path.clone(),
                            err.clone(),
                        );
                        continue;
                    }
                    None => continue,
                };
                match pack::chunk_in_frame(data, &e.chunk, e.offset, e.raw_len, &pack_path) {
                    Ok(_) => {
                        chunk_ok.insert(e.chunk);
                    }
                    Err(err) => bad(
                        &mut rep,
                        format!("chunk {}", e.chunk),
                        pack_path.clone(),
                        crate::error::chain(&err),
                    ),
                }
            }
        }
        // Layers.
        for l in self.list_layers()? {
            rep.checked += 1;
            let path = self.layer_path(&l);
            let idx: LayerIndex = match self.layer(&l) {
                Ok(i) => i,
                Err(e) => {
                    bad(&mut rep, l.to_string(), path, crate::error::chain(&e));
                    continue;
                }
            };
            let missing: Vec<_> = idx
                .chunks
                .iter()
                .filter(|c| !chunk_ok.contains(&c.id))
                .collect();
            if let Some(c) = missing.first() {
                bad(
                    &mut rep,
                    l.to_string(),
                    path.clone(),
                    format!(
                        "{} chunk(s) missing or corrupt, first {}",
                        missing.len(),
                        c.id
                    ),
                );
                continue;
            }
            let mut diff = Hasher::new();
            let mut failed = None;
            for c in &idx.chunks {
                match self.read_chunk(c) {
                    Ok(raw) => diff.update(&raw),
                    Err(e) => {
                        failed = Some(crate::error::chain(&e));
                        break;
                    }
                }
            }
            if let Some(e) = failed {
                bad(&mut rep, l.to_string(), path, e);
                continue;
            }
            rep.bytes += diff.len();
            let (dl, dd) = (diff.len(), diff.finish());
            if dd != l || dl != idx.size {
                bad(
                    &mut rep,
                    l.to_string(),
                    path.clone(),
                    format!("chunks reassemble to {dd} ({dl} bytes)"),
                );
            }
            // Recorded blob digests must still be what the chunks reproduce (a different libzstd or zlib would
            // show up here, not as a wrong blob served to a registry).
            let recorded = [
                (idx.zstd.as_ref(), BlobEncoding::Zstd),
                (idx.gzip.as_ref(), BlobEncoding::Gzip),
            ];
            for (b, enc) in recorded.into_iter().filter_map(|(b, e)| Some((b?, e))) {
                let problem = match self.reproduce(&idx, enc) {
                    Ok(got) if got.digest == b.digest && got.size == b.size => {
                        if self.has_blob(&b.digest) {
                            continue;
                        }
                        "has no link, so it cannot be served by digest".to_string()
                    }
                    Ok(got) => format!("reproduces as {} ({} bytes)", got.digest, got.size),
                    Err(e) => crate::error::chain(&e),
                };
                bad(
                    &mut rep,
                    b.digest.to_string(),
                    path.clone(),
                    format!("blob of layer {l} {problem}"),
                );
            }
            for e in &idx.external {
                if !self.blob_path(&e.digest).exists() {
                    bad(
                        &mut rep,
                        e.digest.to_string(),
                        self.blob_path(&e.digest),
                        format!("external blob of layer {l} missing"),
                    );
                }
            }
        }
        // Links.
        for d in list_hex(&self.root.join("links"), ".json")? {
            rep.checked += 1;
            let p = self.link_path(&d);
            match fs::read(&p)
                .ctx("read", &p)
                .and_then(|x| parse_json::<BlobLink>(&x, "blob link", &p))
            {
                // Written just before the layer index that lists the blob: a kill in between leaves this.
                Ok(_) if !self.has_blob(&d) => rep.ignored_partial.push(p.display().to_string()),
                Ok(_) => {}
                Err(e) => bad(&mut rep, d.to_string(), p, crate::error::chain(&e)),
            }
        }
        // Refs.
        let rdir = self.root.join("refs");
        for ent in fs::read_dir(&rdir).ctx("read directory", &rdir)?.flatten() {
            rep.checked += 1;
            let p = ent.path();
            match fs::read(&p)
                .ctx("read", &p)
                .and_then(|x| parse_json::<RefRecord>(&x, "ref", &p))
            {
                Ok(r) if !self.has_blob(&r.digest) => bad(
                    &mut rep,
                    r.name.clone(),
                    p,
                    format!("points at missing manifest {}", r.digest),
                ),
                Ok(_) => {}
                Err(e) => bad(
                    &mut rep,
                    ent.file_name().to_string_lossy().into_owned(),
                    p,
                    crate::error::chain(&e),
                ),
            }
        }
        // Cache records.
        let cdir = self.root.join("cache");
        for ent in fs::read_dir(&cdir).ctx("read directory", &cdir)?.flatten() {
            rep.checked += 1;
            let p = ent.path();
            if let Err(e) = fs::read(&p)
                .ctx("read", &p)
                .and_then(|x| parse_json::<serde_json::Value>(&x, "cache record", &p))
            {
                bad(
                    &mut rep,
                    ent.file_name().to_string_lossy().into_owned(),
                    p,
                    crate::error::chain(&e),
                );
            }
        }
        // Layout.
        let lp = self.root.join("layout.json");
        if let Err(e) = fs::read(&lp)
            .ctx("read", &lp)
            .and_then(|d| crate::layout::Layout::parse(&d, &lp))
        {
            bad(&mut rep, "layout.json".into(), lp, crate::error::chain(&e));
        }
        Ok(rep)
    }

    /// Mark and sweep from refs (and cache records unless pruned). Waits for, or refuses to run beside, any other
    /// open store handle (see [`GcOptions::wait`]). Also removes dead temp sessions and pack leftovers, and
    /// rewrites packs whose chunks are partly dead (frames are copied verbatim, so blob digests never change).
    pub fn gc(&mut self, opts: &GcOptions) -> Result<GcReport> {
        let lock_path = self.root.join("locks/gc.lock");
        // `Some(None)`: wait forever (the requested duration overflows the clock).
        let deadline = opts.wait.map(|w| Instant::now().checked_add(w));
        {
            let mut lock = self.lock.lock().unwrap_or_else(|e| e.into_inner());
            loop {
                if lock.set(true, false)? {
                    break;
                }
                match deadline {
                    Some(None) => std::thread::sleep(Duration::from_millis(50)),
                    Some(Some(t)) if Instant::now() < t => {
                        std::thread::sleep(Duration::from_millis(50))
                    }
                    _ => {
                        lock.set(false, true)?;
                        return Err(Error::Busy {
                            path: lock_path,
                            detail: "another process has the store open; retry when it is done"
                                .into(),
                        });
                    }
                }
            }
        }
        let res = self.sweep(opts);
        let mut lock = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        lock.set(false, true)?;
        drop(lock);
        self.reload_chunks()?;
        res
    }

    fn sweep(&mut self, opts: &GcOptions) -> Result<GcReport> {
        let mut rep = GcReport::default();
        let remove = |rep: &mut GcReport, p: &std::path::Path| {
            if let Ok(md) = fs::symlink_metadata(p) {
                rep.bytes_freed += fsutil::allocated(&md);
            }
            if !opts.dry_run {
                let _ = fs::remove_file(p);
            }
        };
        if opts.prune_cache && !opts.dry_run {
            let cdir = self.root.join("cache");
            for ent in fs::read_dir(&cdir).ctx("read directory", &cdir)?.flatten() {
                remove(&mut rep, &ent.path());
            }
        }
        if !opts.dry_run {
            rep.bytes_freed += TempSession::clean_dead(&self.root.join("tmp"));
        }
        let marks = self.mark(self.roots()?);
        for b in list_hex(&self.root.join("blobs"), "")? {
            if !marks.digests.contains(&b) {
                rep.blobs_removed += 1;
                remove(&mut rep, &self.blob_path(&b));
            }
        }
        for d in list_hex(&self.root.join("links"), ".json")? {
            if !marks.digests.contains(&d) {
                remove(&mut rep, &self.link_path(&d));
            }
        }
        let mut live_chunks: HashSet<ChunkId> = HashSet::new();
        for l in self.list_layers()? {
            if marks.digests.contains(&l) {
                if let Ok(idx) = self.layer(&l) {
                    live_chunks.extend(idx.chunks.iter().map(|c| c.id));
                }
            } else {
                rep.layers_removed += 1;
                remove(&mut rep, &self.layer_path(&l));
            }
        }
        // Packs: drop dead chunks; each chunk is kept once even if it was stored twice.
        let pdir = self.root.join("packs");
        let mut kept: HashSet<ChunkId> = HashSet::new();
        let mut packs: BTreeMap<String, bool> = BTreeMap::new();
        for ent in fs::read_dir(&pdir).ctx("read directory", &pdir)?.flatten() {
            let name = ent.file_name().to_string_lossy().into_owned();
            if let Some(h) = name.strip_suffix(".idx") {
                packs.insert(h.to_string(), true);
            } else if let Some(h) = name.strip_suffix(".pack") {
                packs.entry(h.to_string()).or_insert(false);
            }
        }
        for (hex, has_idx) in packs {
            let pack_path = pdir.join(format!("{hex}.pack"));
            let idx_path = pdir.join(format!("{hex}.idx"));
            if !has_idx {
                remove(&mut rep, &pack_path);
                continue;
            }
            let Ok(idx) = fs::read(&idx_path)
                .ctx("read", &idx_path)
                .and_then(|d| PackIndex::decode(&d, &idx_path))
            else {
                // A corrupt index is left for `verify` to report; its chunks are not readable anyway.
                continue;
            };
            // Live and not kept yet (in an earlier pack, or earlier in this one: a layer's own repeats).
            let live: Vec<_> = idx
                .entries
                .iter()
                .filter(|e| live_chunks.contains(&e.chunk) && kept.insert(e.chunk))
                .copied()
                .collect();
            if live.len() == idx.entries.len() {
                continue;
            }
            rep.chunks_removed += (idx.entries.len() - live.len()) as u64;
            rep.packs_rewritten += 1;
            if !live.is_empty() && !opts.dry_run {
                let written = self.repack(&pack_path, &live)?;
                rep.bytes_freed = rep.bytes_freed.saturating_sub(written);
            }
            // Index first: a pack without index is an ignored leftover, never a dangling reference.
            remove(&mut rep, &idx_path);
            remove(&mut rep, &pack_path);
        }
        if !opts.dry_run {
            for d in ["blobs", "links", "layers", "packs", "cache"] {
                fsutil::fsync_dir(&self.root.join(d))?;
            }
        }
        Ok(rep)
    }
}

impl Store {
    /// Writes the live chunks of a pack into a new pack (frames regrouped to the store's frame size), then names
    /// it. Chunk names do not change, so layer indexes and blob digests stay valid.
    /// Returns the bytes the new pack and index occupy.
    fn repack(&self, pack_path: &std::path::Path, live: &[PackEntry]) -> Result<u64> {
        let src = fs::File::open(pack_path).ctx("open", pack_path)?;
        let c = &self.layout.compression;
        let mut pw = PackWriter::create(
            self.tmp_dir()
                .join(format!("{}.pack", fsutil::unique_name())),
        )?;
        let mut frame: Option<(u64, Vec<u8>)> = None;
        let mut open = (Vec::new(), Vec::new());
        let res = (|| -> Result<()> {
            for (i, e) in live.iter().enumerate() {
                if frame.as_ref().is_none_or(|f| f.0 != e.frame_offset) {
                    let raw = pack::load_frame(
                        &src,
                        pack_path,
                        e.frame_offset,
                        e.frame_len,
                        e.frame_raw_len,
                    )?;
                    frame = Some((e.frame_offset, raw));
                }
                let raw = frame.as_ref().map(|f| &f.1[..]).unwrap_or_default();
                let data = pack::chunk_in_frame(raw, &e.chunk, e.offset, e.raw_len, pack_path)?;
                open.1.push((e.chunk, open.0.len() as u32, e.raw_len));
                open.0.extend_from_slice(data);
                if open.0.len() >= c.pack_frame_bytes as usize || i + 1 == live.len() {
                    let z = pack::encode_frame(c.level, &open.0)
                        .map_err(|err| Error::io("compress", pack_path, err))?;
                    pw.append(&z, open.0.len() as u32, open.1.drain(..))?;
                    open.0.clear();
                }
            }
            Ok(())
        })();
        if let Err(e) = res {
            let _ = fs::remove_file(&pw.path);
            return Err(e);
        }
        let (tmp, nidx) = pw.finish()?;
        let dest = self.pack_path(&nidx.pack, "pack");
        fs::rename(&tmp, &dest).ctx("rename into", &dest)?;
        let idx_path = self.pack_path(&nidx.pack, "idx");
        fsutil::atomic_write(self.tmp_dir(), &idx_path, &nidx.encode())?;
        Ok(fsutil::dir_size(&dest) + fsutil::dir_size(&idx_path))
    }
}

fn hash_file(path: &std::path::Path) -> Result<(Digest, u64)> {
    let mut f = fs::File::open(path).ctx("open", path)?;
    let mut h = Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).ctx("read", path)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    let n = h.len();
    Ok((h.finish(), n))
}
