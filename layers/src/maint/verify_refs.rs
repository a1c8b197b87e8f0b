//! The ref walk of `verify`: every ref is followed to completeness (ref → manifest or nested index → config blob
//! and every layer: its link, its layer index, the config's DiffIDs), each missing or unreadable piece reported
//! as a problem naming the ref it was reached through.

use super::verify::Checker;
use crate::digest::Digest;
use crate::error::Result;
use crate::json;
use crate::store::{RefRecord, Store};
use serde_json::Value;

/// Deepest nesting of indexes followed (an index of indexes of manifests is depth 2).
const MAX_INDEX_DEPTH: u32 = 4;

/// `(digest, size)` of an OCI descriptor, if it has both.
fn descriptor(x: &Value) -> Option<(Digest, u64)> {
    Some((
        x.get("digest")?.as_str()?.parse().ok()?,
        x.get("size")?.as_u64()?,
    ))
}

/// Known media types of what a ref may point at.
const ROOT_MEDIA_TYPES: [&str; 4] = [
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
];

impl Checker<'_> {
    /// Every ref, walked to completeness.
    pub(super) fn refs(&mut self) -> Result<()> {
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
