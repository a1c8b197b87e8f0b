//! Reachability, for gc: the roots (refs, and cache records unless pruned) and the mark phase, which follows
//! every `sha256:…` string of every reachable JSON document and keeps each reachable layer's chunks. A reachable
//! document that cannot be read stops the mark with an error naming its root, so nothing is taken for garbage.

use crate::digest::{ChunkId, Digest};
use crate::error::{Error, IoCtx, Result};
use crate::json;
use crate::store::{blob_frame_keys, FrameKey, Store};
use serde_json::Value;
use std::collections::HashSet;
use std::fs;
use std::io::Read;
use std::rc::Rc;

/// What gc keeps: every reachable digest, the chunks of every reachable layer, and the keys of those layers'
/// zstd blob frames (a pack frame that is one is kept whole, so serving the layer stays a copy).
pub(super) struct Marks {
    pub(super) digests: HashSet<Digest>,
    pub(super) chunks: HashSet<ChunkId>,
    pub(super) frames: HashSet<FrameKey>,
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
    pub(super) fn mark(&self, roots: Vec<Reached>) -> Result<Marks> {
        let mut marks = Marks {
            digests: HashSet::new(),
            chunks: HashSet::new(),
            frames: HashSet::new(),
        };
        let mut todo = roots;
        while let Some((d, origin)) = todo.pop() {
            if !marks.digests.insert(d) {
                continue;
            }
            let next = self
                .references_of(&d, &mut marks)
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
    fn references_of(&self, d: &Digest, marks: &mut Marks) -> Result<Vec<Digest>> {
        let mut out = Vec::new();
        let link = self.read_link(d)?;
        if let Some(l) = &link {
            out.push(l.diff_id);
        }
        match self.layer(d) {
            Ok(idx) => {
                marks.chunks.extend(idx.chunks.iter().map(|c| c.id));
                let target = self.layout.compression.blob_frame_bytes;
                marks.frames.extend(blob_frame_keys(&idx.chunks, target));
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
    pub(super) fn roots(&self, with_cache: bool) -> Result<Vec<Reached>> {
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
    /// digest checked, parsed; errors name the digest's path and `what`. Used by `verify` and by `chasi-images`.
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
