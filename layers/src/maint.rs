//! Store maintenance: disk usage (`du`), full re-verification (`verify`) and mark-and-sweep garbage collection
//! (`gc`).
//!
//! GC roots are the refs and the build-cache records. Marking follows every `sha256:…` string found in a reachable
//! JSON blob (manifests, indexes, configs, cache records), so it needs no knowledge of OCI media types and keeps
//! configs, layers (by blob digest or DiffID), subjects and referrers alike. A reachable document that cannot be
//! read or parsed (a JSON-looking blob, a layer index, a link, a ref, a cache record) stops gc before anything is
//! deleted, naming the root and the digest: its references are unknown, so nothing may be taken for garbage. The
//! sweep runs under the exclusive `locks/gc.lock`, which no open [`Store`] shares, so nothing a concurrent build is
//! writing can be deleted.
//!
//! `verify` walks every ref to completeness (manifest or nested index, config, every layer's link and index) and
//! re-hashes every object; see [`Store::verify`].

use crate::digest::{ChunkId, Digest, Hasher};
use crate::error::{Error, IoCtx, Result};
use crate::fsutil::{self, TempSession};
use crate::json;
use crate::pack::{self, PackEntry, PackIndex, PackWriter};
use crate::store::{list_hex, BlobEncoding, CacheRecord, RefRecord, Store};
use serde::Serialize;
use serde_json::Value;
use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::rc::Rc;
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
    /// Why the image's size could not be counted (an unreadable manifest, index or config), naming the digest.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
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

/// What gc keeps: every reachable digest and the chunks of every reachable layer.
struct Marks {
    digests: HashSet<Digest>,
    chunks: HashSet<ChunkId>,
}

/// A digest to mark and the root it was reached from (`ref NAME`, `cache record FILE`), for error messages.
type Reached = (Digest, Rc<str>);

fn collect_digests(v: &Value, out: &mut Vec<Digest>) {
    match v {
        Value::String(s) => {
            if let Ok(d) = s.parse::<Digest>() {
                out.push(d);
            }
        }
        Value::Array(a) => a.iter().for_each(|x| collect_digests(x, out)),
        Value::Object(o) => o.values().for_each(|x| collect_digests(x, out)),
        _ => {}
    }
}

impl Store {
    /// Marks everything reachable from `roots`; fails (nothing is deleted yet) on the first reachable document
    /// that cannot be read.
    fn mark(&self, roots: Vec<Reached>) -> Result<Marks> {
        let mut marks = Marks {
            digests: HashSet::new(),
            chunks: HashSet::new(),
        };
        let mut todo = roots;
        while let Some((d, origin)) = todo.pop() {
            if !marks.digests.insert(d) {
                continue;
            }
            let next =
                self.references_of(&d, &mut marks.chunks)
                    .map_err(|cause| Error::GcUnreadable {
                        origin: origin.to_string(),
                        digest: d,
                        cause: Box::new(cause),
                    })?;
            todo.extend(next.into_iter().map(|n| (n, origin.clone())));
        }
        Ok(marks)
    }

    /// The digests one object keeps alive: a link's layer, a layer's blobs (and its chunks, into `chunks`), the
    /// digests inside a JSON document blob.
    fn references_of(&self, d: &Digest, chunks: &mut HashSet<ChunkId>) -> Result<Vec<Digest>> {
        let mut out = Vec::new();
        let link = self.read_link(d)?;
        if let Some(l) = &link {
            out.push(l.diff_id);
        }
        match self.layer(d) {
            Ok(idx) => {
                chunks.extend(idx.chunks.iter().map(|c| c.id));
                out.extend(
                    idx.zstd
                        .iter()
                        .chain(&idx.gzip)
                        .chain(&idx.external)
                        .map(|b| b.digest),
                );
            }
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e),
        }
        // A blob with a link is a layer blob (tar, gzip, zstd), never a document.
        if link.is_none() {
            if let Some(v) = self.blob_document(d)? {
                collect_digests(&v, &mut out);
            }
        }
        Ok(out)
    }

    /// A raw blob that is meant as JSON (it starts like JSON), parsed with the store's bounds; `None` when the blob
    /// is absent or is some other kind of blob.
    fn blob_document(&self, d: &Digest) -> Result<Option<Value>> {
        let p = self.blob_path(d);
        let mut head = [0u8; 256];
        let n = match fs::File::open(&p) {
            Ok(mut f) => f.read(&mut head).ctx("read", &p)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io("open", &p, e)),
        };
        if !json::looks_like_json(&head[..n]) {
            return Ok(None);
        }
        let data = json::read_bounded(&p, json::MAX_DOC, "json blob")?.unwrap_or_default();
        json::parse(&data, json::MAX_DOC, "json blob", &p).map(Some)
    }

    /// The roots: every ref and, unless the cache is being pruned, every build-cache record.
    fn roots(&self, with_cache: bool) -> Result<Vec<Reached>> {
        let mut roots: Vec<Reached> = self
            .list_refs()?
            .into_iter()
            .map(|r| (r.digest, Rc::from(format!("ref {}", r.name))))
            .collect();
        if !with_cache {
            return Ok(roots);
        }
        let cache = self.root.join("cache");
        for ent in fs::read_dir(&cache).ctx("read directory", &cache)? {
            let p = ent.ctx("read directory", &cache)?.path();
            let v: Value = json::read(
                &p,
                json::MAX_DOC,
                "cache record (gc --prune-cache drops it)",
            )?
            .unwrap_or_default();
            let mut found = Vec::new();
            collect_digests(&v, &mut found);
            let origin: Rc<str> = Rc::from(format!("cache record {}", p.display()));
            roots.extend(found.into_iter().map(|d| (d, origin.clone())));
        }
        Ok(roots)
    }

    /// A manifest, index or config blob as JSON: a raw blob, read with the store's bounds (see [`crate::json`]), its
    /// digest checked, parsed; errors name the digest's path and `what`. Used by `du` and `verify`.
    pub fn get_json(&self, d: &Digest, what: &'static str) -> Result<Value> {
        let p = self.blob_path(d);
        let size = fs::metadata(&p).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => self.not_found(*d),
            _ => Error::io("stat", &p, e),
        })?;
        if size.len() > json::MAX_DOC {
            return Err(Error::Malformed {
                what,
                path: p,
                detail: format!(
                    "{} bytes, more than the {} allowed",
                    size.len(),
                    json::MAX_DOC
                ),
            });
        }
        let data = self.get_blob(d)?;
        json::parse(&data, json::MAX_DOC, what, &p)
    }
}

/// `(digest, size)` of an OCI descriptor, if it has both.
fn descriptor(x: &Value) -> Option<(Digest, u64)> {
    Some((
        x.get("digest")?.as_str()?.parse().ok()?,
        x.get("size")?.as_u64()?,
    ))
}

impl Store {
    /// Logical vs physical usage, per image. An image whose documents cannot be read is listed with a `problem`.
    pub fn du(&self) -> Result<DuReport> {
        let refs = self.list_refs()?;
        let mut images = Vec::new();
        let mut counted: HashSet<Digest> = HashSet::new();
        let mut logical = 0u64;
        for r in &refs {
            let mut layers = 0;
            let mut seen = Vec::new();
            let (bytes, problem) = match self.oci_size(&r.digest, &mut layers, &mut seen, 0) {
                Ok(b) => (b, None),
                Err(e) => (0, Some(crate::error::chain(&e))),
            };
            counted.extend(seen);
            logical += bytes;
            images.push(ImageUsage {
                name: r.name.clone(),
                digest: r.digest.to_string(),
                logical_bytes: bytes,
                layers,
                problem,
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
    fn oci_size(
        &self,
        d: &Digest,
        layers: &mut u64,
        seen: &mut Vec<Digest>,
        depth: u32,
    ) -> Result<u64> {
        seen.push(*d);
        let v = self.get_json(d, "manifest")?;
        let mut total = self.blob_size(d)?;
        if let Some(c) = v.get("config").and_then(descriptor) {
            total += c.1;
            seen.push(c.0);
        }
        for l in v
            .get("layers")
            .and_then(|l| l.as_array())
            .into_iter()
            .flatten()
            .filter_map(descriptor)
        {
            total += l.1;
            *layers += 1;
            seen.push(l.0);
        }
        if depth < MAX_INDEX_DEPTH {
            for m in v
                .get("manifests")
                .and_then(|l| l.as_array())
                .into_iter()
                .flatten()
                .filter_map(descriptor)
            {
                total += self.oci_size(&m.0, layers, seen, depth + 1)?;
            }
        }
        Ok(total)
    }

    /// Mark and sweep from refs (and cache records unless pruned). Waits for, or refuses to run beside, any other
    /// open store handle (see [`GcOptions::wait`]). Also removes dead temp sessions and pack leftovers, and
    /// rewrites packs whose chunks are partly dead (frames are copied verbatim, so blob digests never change).
    /// Fails with [`Error::GcUnreadable`], having deleted nothing, when a reachable document cannot be read.
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
        // Everything that must be read is read first: an unreadable document stops gc here, before any deletion.
        let marks = self.mark(self.roots(!opts.prune_cache)?)?;
        let mut rep = GcReport::default();
        let remove = |rep: &mut GcReport, p: &Path| {
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
        for l in self.list_layers()? {
            if !marks.digests.contains(&l) {
                rep.layers_removed += 1;
                remove(&mut rep, &self.layer_path(&l));
            }
        }
        self.sweep_packs(opts, &marks.chunks, &mut rep, &remove)?;
        if !opts.dry_run {
            for d in ["blobs", "links", "layers", "packs", "cache"] {
                fsutil::fsync_dir(&self.root.join(d))?;
            }
        }
        Ok(rep)
    }

    /// Packs: drops dead chunks; each chunk is kept once even if it was stored twice.
    fn sweep_packs(
        &self,
        opts: &GcOptions,
        live_chunks: &HashSet<ChunkId>,
        rep: &mut GcReport,
        remove: &dyn Fn(&mut GcReport, &Path),
    ) -> Result<()> {
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
                remove(rep, &pack_path);
                continue;
            }
            let Ok(idx) = fs::read(&idx_path)
                .ctx("read", &idx_path)
                .and_then(|d| PackIndex::decode(&d, &idx_path))
            else {
                // A corrupt index is left for `verify` to report; its chunks are not readable anyway.
                continue;
            };
            // A pack that is gone or has the wrong size serves nothing: its chunks must not count as kept (the
            // layers that need them have them in another pack, or verify reports them). An index without its pack
            // is removed; a pack of the wrong size is left for verify.
            match fs::metadata(&pack_path) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    remove(rep, &idx_path);
                    continue;
                }
                Ok(m) if m.len() == idx.pack_size => {}
                _ => continue,
            }
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
            remove(rep, &idx_path);
            remove(rep, &pack_path);
        }
        Ok(())
    }
}

/// Deepest nesting of indexes followed (an index of indexes of manifests is depth 2).
const MAX_INDEX_DEPTH: u32 = 4;

/// Collects the problems of one `verify` run.
struct Checker<'a> {
    store: &'a Store,
    rep: VerifyReport,
}

/// Known media types of what a ref may point at.
const ROOT_MEDIA_TYPES: [&str; 4] = [
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
];

impl Store {
    /// Re-hashes every object: blobs, packs (whole pack digest and every chunk), layers (chunk list, zstd blob
    /// digest, DiffID), links, refs, cache records and `layout.json`; and walks every ref to completeness: ref →
    /// manifest or (nested) index → config blob and every layer (its link, its layer index, the config's DiffIDs).
    /// Problems are collected, not fatal.
    pub fn verify(&self) -> Result<VerifyReport> {
        let mut c = Checker {
            store: self,
            rep: VerifyReport::default(),
        };
        c.blobs()?;
        let chunk_ok = c.packs()?;
        c.layers(&chunk_ok)?;
        c.links()?;
        c.refs()?;
        c.cache()?;
        c.layout();
        Ok(c.rep)
    }
}

impl Checker<'_> {
    fn bad(&mut self, object: impl Into<String>, path: &Path, detail: impl Into<String>) {
        self.rep.problems.push(Problem {
            object: object.into(),
            path: path.display().to_string(),
            detail: detail.into(),
        })
    }

    /// Entries of a store subdirectory, sorted by name.
    fn entries(&self, sub: &str) -> Result<Vec<(String, PathBuf)>> {
        let dir = self.store.root.join(sub);
        let mut out: Vec<(String, PathBuf)> = fs::read_dir(&dir)
            .ctx("read directory", &dir)?
            .flatten()
            .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
            .collect();
        out.sort();
        Ok(out)
    }

    fn blobs(&mut self) -> Result<()> {
        for (name, path) in self.entries("blobs")? {
            let Ok(d) = Digest::from_hex(&name) else {
                self.bad(name, &path, "unexpected file in blobs/");
                continue;
            };
            self.rep.checked += 1;
            match hash_file(&path) {
                Ok((got, n)) => {
                    self.rep.bytes += n;
                    if got != d {
                        self.bad(d.to_string(), &path, format!("content hashes to {got}"));
                    }
                }
                Err(e) => self.bad(d.to_string(), &path, crate::error::chain(&e)),
            }
        }
        Ok(())
    }

    /// Every pack and its index; returns the chunks found sound.
    fn packs(&mut self) -> Result<HashSet<ChunkId>> {
        let mut chunk_ok = HashSet::new();
        let entries = self.entries("packs")?;
        let names: HashSet<&str> = entries.iter().map(|(n, _)| n.as_str()).collect();
        for (name, path) in &entries {
            if let Some(hex) = name.strip_suffix(".pack") {
                if !names.contains(format!("{hex}.idx").as_str()) {
                    self.rep.ignored_partial.push(path.display().to_string());
                }
            } else if name.ends_with(".idx") {
                self.pack(name, path, &mut chunk_ok);
            } else {
                self.bad(name.clone(), path, "unexpected file in packs/");
            }
        }
        Ok(chunk_ok)
    }

    /// One pack: its index, its size and entry table, then every chunk.
    fn pack(&mut self, name: &str, path: &Path, chunk_ok: &mut HashSet<ChunkId>) {
        self.rep.checked += 1;
        let idx = match fs::read(path)
            .ctx("read", path)
            .and_then(|d| PackIndex::decode(&d, path))
        {
            Ok(i) => i,
            Err(e) => return self.bad(name, path, crate::error::chain(&e)),
        };
        let pack_path = self.store.pack_path(&idx.pack, "pack");
        if name.strip_suffix(".idx") != Some(idx.pack.hex().as_str()) {
            self.bad(name, path, format!("index describes pack {}", idx.pack));
        }
        // Frames are read one by one (memory: one frame). The pack's name covers its size and entry table;
        // its bytes are covered by the per-frame chunk digests, and must be exactly the frames.
        let file = match fs::File::open(&pack_path).and_then(|f| Ok((f.metadata()?.len(), f))) {
            Ok(x) => x,
            Err(e) => {
                return self.bad(
                    idx.pack.to_string(),
                    &pack_path,
                    format!("pack unreadable: {e}"),
                )
            }
        };
        let (len, file) = file;
        self.rep.bytes += len;
        let table = pack::pack_digest(&idx.entries, idx.pack_size);
        let covered: u64 = idx.frames().iter().map(|f| f.1 as u64).sum();
        if table != idx.pack || len != idx.pack_size || covered != len {
            self.bad(
                idx.pack.to_string(),
                &pack_path,
                format!(
                    "pack is {len} bytes (index says {}, frames cover {covered}); entry table hashes to {table}",
                    idx.pack_size
                ),
            );
        }
        self.pack_chunks(&idx, &file, &pack_path, chunk_ok);
    }

    /// Every chunk of a pack checked against its name, one decoded frame in memory at a time.
    fn pack_chunks(
        &mut self,
        idx: &PackIndex,
        file: &fs::File,
        pack_path: &Path,
        chunk_ok: &mut HashSet<ChunkId>,
    ) {
        let mut decoded: Option<(u64, std::result::Result<Vec<u8>, String>)> = None;
        for e in &idx.entries {
            self.rep.checked += 1;
            if decoded.as_ref().is_none_or(|d| d.0 != e.frame_offset) {
                let data = pack::load_frame(
                    file,
                    pack_path,
                    e.frame_offset,
                    e.frame_len,
                    e.frame_raw_len,
                )
                .map_err(|err| crate::error::chain(&err));
                decoded = Some((e.frame_offset, data));
            }
            let res = match decoded.as_ref().map(|d| &d.1) {
                Some(Ok(data)) => {
                    pack::chunk_in_frame(data, &e.chunk, e.offset, e.raw_len, pack_path)
                        .map(|_| ())
                        .map_err(|err| crate::error::chain(&err))
                }
                Some(Err(err)) => Err(err.clone()),
                None => continue,
            };
            match res {
                Ok(()) => {
                    chunk_ok.insert(e.chunk);
                }
                Err(err) => self.bad(format!("chunk {}", e.chunk), pack_path, err),
            }
        }
    }

    fn layers(&mut self, chunk_ok: &HashSet<ChunkId>) -> Result<()> {
        for l in self.store.list_layers()? {
            self.rep.checked += 1;
            let path = self.store.layer_path(&l);
            match self.store.layer(&l) {
                Ok(idx) => self.layer(&idx, &path, chunk_ok),
                Err(e) => self.bad(l.to_string(), &path, crate::error::chain(&e)),
            }
        }
        Ok(())
    }

    /// One layer: its chunks present and reassembling to the DiffID, its recorded blobs reproducible and linked.
    fn layer(&mut self, idx: &crate::store::LayerIndex, path: &Path, chunk_ok: &HashSet<ChunkId>) {
        let l = idx.diff_id;
        let missing: Vec<_> = idx
            .chunks
            .iter()
            .filter(|c| !chunk_ok.contains(&c.id))
            .collect();
        if let Some(c) = missing.first() {
            let detail = format!(
                "{} chunk(s) missing or corrupt, first {}",
                missing.len(),
                c.id
            );
            return self.bad(l.to_string(), path, detail);
        }
        let mut diff = Hasher::new();
        for c in &idx.chunks {
            match self.store.read_chunk(c) {
                Ok(raw) => diff.update(&raw),
                Err(e) => return self.bad(l.to_string(), path, crate::error::chain(&e)),
            }
        }
        self.rep.bytes += diff.len();
        let (dl, dd) = (diff.len(), diff.finish());
        if dd != l || dl != idx.size {
            self.bad(
                l.to_string(),
                path,
                format!("chunks reassemble to {dd} ({dl} bytes)"),
            );
        }
        self.layer_blobs(idx, path);
    }

    /// Recorded blob digests must still be what the chunks reproduce (a different libzstd or zlib would show up
    /// here, not as a wrong blob served to a registry); external blobs must be there.
    fn layer_blobs(&mut self, idx: &crate::store::LayerIndex, path: &Path) {
        let l = idx.diff_id;
        let recorded = [
            (idx.zstd.as_ref(), BlobEncoding::Zstd),
            (idx.gzip.as_ref(), BlobEncoding::Gzip),
        ];
        for (b, enc) in recorded.into_iter().filter_map(|(b, e)| Some((b?, e))) {
            let problem = match self.store.reproduce(idx, enc) {
                Ok(got) if got.digest == b.digest && got.size == b.size => {
                    if self.store.has_blob(&b.digest) {
                        continue;
                    }
                    "has no link, so it cannot be served by digest".to_string()
                }
                Ok(got) => format!("reproduces as {} ({} bytes)", got.digest, got.size),
                Err(e) => crate::error::chain(&e),
            };
            self.bad(
                b.digest.to_string(),
                path,
                format!("blob of layer {l} {problem}"),
            );
        }
        for e in &idx.external {
            let p = self.store.blob_path(&e.digest);
            if !p.exists() {
                self.bad(
                    e.digest.to_string(),
                    &p,
                    format!("external blob of layer {l} missing"),
                );
            }
        }
    }

    fn links(&mut self) -> Result<()> {
        for d in list_hex(&self.store.root.join("links"), ".json")? {
            self.rep.checked += 1;
            let p = self.store.link_path(&d);
            match self.store.read_link(&d) {
                // Written just before the layer index that lists the blob: a kill in between leaves this.
                Ok(_) if !self.store.has_blob(&d) => {
                    self.rep.ignored_partial.push(p.display().to_string())
                }
                Ok(_) => {}
                Err(e) => self.bad(d.to_string(), &p, crate::error::chain(&e)),
            }
        }
        Ok(())
    }

    /// Every ref, walked to completeness.
    fn refs(&mut self) -> Result<()> {
        for (name, p) in self.entries("refs")? {
            self.rep.checked += 1;
            match json::read::<RefRecord>(&p, json::MAX_DOC, "ref") {
                Ok(Some(r)) => {
                    let mut problems = Vec::new();
                    self.walk_root(&r.digest, "", 0, &mut problems);
                    for detail in problems {
                        self.bad(r.name.clone(), &p, detail);
                    }
                }
                Ok(None) => {}
                Err(e) => self.bad(name, &p, crate::error::chain(&e)),
            }
        }
        Ok(())
    }

    /// A manifest or index reached from a ref (`via` says how, for nested indexes); problems go to `out`.
    fn walk_root(&mut self, d: &Digest, via: &str, depth: u32, out: &mut Vec<String>) {
        self.rep.checked += 1;
        let store = self.store;
        let v = match store.root_document(d) {
            Ok(v) => v,
            Err(detail) => return out.push(format!("{via}{d} {detail}")),
        };
        let media = v.get("mediaType").and_then(Value::as_str);
        if let Some(m) = media.filter(|m| !ROOT_MEDIA_TYPES.contains(m)) {
            return out.push(format!(
                "{via}{d} has media type {m}, not a manifest or index"
            ));
        }
        if let Some(children) = v.get("manifests").and_then(Value::as_array) {
            if depth >= MAX_INDEX_DEPTH {
                return out.push(format!(
                    "{via}{d}: indexes nested deeper than {MAX_INDEX_DEPTH}"
                ));
            }
            let via = format!("{via}index {d} → ");
            for m in children {
                match descriptor(m) {
                    Some((c, _)) => self.walk_root(&c, &via, depth + 1, out),
                    None => out.push(format!("{via}entry without digest and size: {m}")),
                }
            }
        } else if v.get("config").is_some_and(Value::is_object)
            && v.get("layers").is_some_and(Value::is_array)
        {
            self.manifest(&v, &format!("{via}manifest {d}: "), out);
        } else if v.get("rootfs").is_some() {
            out.push(format!(
                "{via}{d} is an image config, not a manifest or index"
            ));
        } else {
            out.push(format!("{via}{d} is not a manifest or index"));
        }
    }

    /// A manifest's config and layers, and the config's DiffIDs against the layers.
    fn manifest(&mut self, v: &Value, via: &str, out: &mut Vec<String>) {
        let store = self.store;
        let config = v.get("config").and_then(descriptor);
        let diff_ids = match config {
            None => {
                out.push(format!("{via}config has no digest and size"));
                None
            }
            Some((c, size)) => match store.config_diff_ids(&c, size, config_media_type(v)) {
                Ok(ids) => ids,
                Err(detail) => {
                    out.push(format!("{via}config {c} {detail}"));
                    None
                }
            },
        };
        let mut layers = Vec::new();
        for l in v
            .get("layers")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            self.rep.checked += 1;
            let Some((d, _)) = descriptor(l) else {
                out.push(format!("{via}layer without digest and size: {l}"));
                continue;
            };
            let media = l.get("mediaType").and_then(Value::as_str).unwrap_or("");
            if media.contains("nondistributable") || media.contains("foreign") {
                continue;
            }
            match store.layer_for_blob(&d) {
                Ok(idx) if store.has_blob(&d) => layers.push(idx.diff_id),
                Ok(idx) => out.push(format!(
                    "{via}layer {d} (DiffID {}) cannot be served: its layer index does not list it",
                    idx.diff_id
                )),
                Err(e) => out.push(format!("{via}layer {d}: {e}")),
            }
        }
        let n = v
            .get("layers")
            .and_then(Value::as_array)
            .map_or(0, Vec::len);
        if let Some(ids) = diff_ids.filter(|_| layers.len() == n) {
            if ids != layers {
                out.push(format!(
                    "{via}config DiffIDs [{}] do not match the layers' [{}]",
                    join(&ids),
                    join(&layers)
                ));
            }
        }
    }

    fn cache(&mut self) -> Result<()> {
        for (name, p) in self.entries("cache")? {
            self.rep.checked += 1;
            let key = name
                .strip_suffix(".json")
                .and_then(|h| Digest::from_hex(h).ok());
            match (
                key,
                json::read::<CacheRecord>(&p, json::MAX_DOC, "cache record"),
            ) {
                (None, _) => self.bad(name, &p, "unexpected file in cache/"),
                (_, Err(e)) => self.bad(name, &p, crate::error::chain(&e)),
                (Some(k), Ok(Some(r))) if r.key != k => self.bad(
                    name,
                    &p,
                    format!(
                        "written for key {}, not {k} (builds ignore it; gc --prune-cache drops it)",
                        r.key
                    ),
                ),
                _ => {}
            }
        }
        Ok(())
    }

    fn layout(&mut self) {
        let lp = self.store.root.join("layout.json");
        let res = json::read_bounded(&lp, json::MAX_DOC, "layout").and_then(|d| match d {
            Some(d) => crate::layout::Layout::parse(&d, &lp).map(|_| ()),
            None => Err(Error::io(
                "read",
                &lp,
                std::io::Error::from(std::io::ErrorKind::NotFound),
            )),
        });
        if let Err(e) = res {
            self.bad("layout.json", &lp, crate::error::chain(&e));
        }
    }
}

fn config_media_type(manifest: &Value) -> &str {
    manifest
        .pointer("/config/mediaType")
        .and_then(Value::as_str)
        .unwrap_or("")
}

fn join(ds: &[Digest]) -> String {
    ds.iter()
        .map(Digest::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

impl Store {
    /// What a ref points at, as a JSON document; the error says why it is not a manifest or index.
    fn root_document(&self, d: &Digest) -> std::result::Result<Value, String> {
        let raw = self.blob_path(d).is_file();
        match self.read_link(d) {
            Ok(Some(l)) => {
                return Err(format!(
                    "is a layer blob (of layer {}), not a manifest or index",
                    l.diff_id
                ))
            }
            Ok(None) if !raw && self.has_layer(d) => {
                return Err("is a layer (DiffID), not a manifest or index".into())
            }
            Ok(None) if !raw => return Err("is missing".into()),
            Ok(None) => {}
            Err(e) => return Err(crate::error::chain(&e)),
        }
        self.get_json(d, "manifest")
            .map_err(|e| format!("cannot be read: {e}"))
    }

    /// A config blob: present, of the size the manifest says, JSON (unless its media type says otherwise, as an
    /// artifact's may); returns its `rootfs.diff_ids` if it has them.
    fn config_diff_ids(
        &self,
        d: &Digest,
        size: u64,
        media_type: &str,
    ) -> std::result::Result<Option<Vec<Digest>>, String> {
        if !self.blob_path(d).is_file() {
            return Err("is missing".into());
        }
        match self.blob_size(d) {
            Ok(n) if n == size => {}
            Ok(n) => return Err(format!("is {n} bytes, the manifest says {size}")),
            Err(e) => return Err(crate::error::chain(&e)),
        }
        if !(media_type.is_empty() || media_type.ends_with("json")) {
            return Ok(None);
        }
        let v = self
            .get_json(d, "config")
            .map_err(|e| format!("cannot be read: {e}"))?;
        let Some(ids) = v.pointer("/rootfs/diff_ids").and_then(Value::as_array) else {
            return Ok(None);
        };
        ids.iter()
            .map(|x| x.as_str().and_then(|s| s.parse().ok()))
            .collect::<Option<Vec<Digest>>>()
            .map(Some)
            .ok_or_else(|| "has an invalid rootfs.diff_ids entry".to_string())
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
