//! Full re-verification (`chasi store verify`): re-hashes every object (blobs, packs and their chunks, layers,
//! links, cache records, `layout.json`) and collects problems instead of stopping at the first; the walk of each
//! ref to completeness is in [`super::verify_refs`].

use crate::digest::{ChunkId, Digest, Hasher};
use crate::error::{Error, IoCtx, Result};
use crate::json;
use crate::pack::{self, PackIndex};
use crate::store::{list_hex, BlobEncoding, CacheRecord, LayerIndex, Store};
use serde::Serialize;
use std::collections::HashSet;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

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

/// Collects the problems of one `verify` run.
pub(super) struct Checker<'a> {
    pub(super) store: &'a Store,
    pub(super) rep: VerifyReport,
}

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
    pub(super) fn bad(
        &mut self,
        object: impl Into<String>,
        path: &Path,
        detail: impl Into<String>,
    ) {
        self.rep.problems.push(Problem {
            object: object.into(),
            path: path.display().to_string(),
            detail: detail.into(),
        })
    }

    /// Entries of a store subdirectory, sorted by name.
    pub(super) fn entries(&self, sub: &str) -> Result<Vec<(String, PathBuf)>> {
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
    fn layer(&mut self, idx: &LayerIndex, path: &Path, chunk_ok: &HashSet<ChunkId>) {
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
    fn layer_blobs(&mut self, idx: &LayerIndex, path: &Path) {
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
