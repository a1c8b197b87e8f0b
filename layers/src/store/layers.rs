//! Layers by DiffID: reading and writing layer indexes, listing layers, opening a layer's tar stream, recording
//! a new blob of a layer (link before index), and the cheap completeness proof the build cache trusts
//! ([`Store::check_layer`]).

use super::handle::{list_hex, Store};
use super::reader::LayerReader;
use super::records::LayerIndex;
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::fsutil;
use crate::json;
use std::collections::HashSet;
use std::fs;
use std::io;

impl Store {
    /// The index of a layer by DiffID.
    pub fn layer(&self, diff_id: &Digest) -> Result<LayerIndex> {
        let p = self.layer_path(diff_id);
        let data = json::read_bounded(&p, json::MAX_LAYER_INDEX, "layer index")?
            .ok_or_else(|| self.not_found(*diff_id))?;
        let idx = LayerIndex::decode(&data, &p)?;
        if idx.diff_id != *diff_id {
            return Err(Error::Corrupt {
                digest: *diff_id,
                path: p,
                detail: format!("index names {}", idx.diff_id),
            });
        }
        Ok(idx)
    }

    /// True if the layer is in the store.
    pub fn has_layer(&self, diff_id: &Digest) -> bool {
        self.layer_path(diff_id).exists()
    }

    /// The layer whose compressed (or uncompressed) blob has this digest.
    pub fn layer_for_blob(&self, blob: &Digest) -> Result<LayerIndex> {
        if self.has_layer(blob) {
            return self.layer(blob);
        }
        Ok(self.blob_layer(blob)?.1)
    }

    /// All layers in the store.
    pub fn list_layers(&self) -> Result<Vec<Digest>> {
        list_hex(&self.root.join("layers"), ".json")
    }

    /// Streams a layer's uncompressed tar, verifying every chunk and, at the end, the DiffID.
    pub fn open_layer(&self, diff_id: &Digest) -> Result<LayerReader<'_>> {
        let idx = self.layer(diff_id)?;
        Ok(LayerReader::new(self, idx))
    }

    /// Proves cheaply, without reading any chunk, that a layer can be served as `blob`: its layer index is there and
    /// parses, every chunk it lists is in a known pack whose `.pack` and `.idx` are present with the sizes the index
    /// records, and `blob` is one of its blobs with a link (and, if external, the raw blob) in place. What only
    /// reading can show (a damaged byte) is left to `verify` and to the digest checks of every read.
    ///
    /// The build cache calls this on every hit: an error means "re-execute the step".
    pub fn check_layer(&self, diff_id: &Digest, blob: &Digest) -> Result<()> {
        let idx = self.layer(diff_id)?;
        let missing = |detail: String| Error::Corrupt {
            digest: *diff_id,
            path: self.layer_path(diff_id),
            detail,
        };
        let mut packs = HashSet::new();
        {
            let map = self.chunks.read().unwrap_or_else(|e| e.into_inner());
            for c in &idx.chunks {
                match map.map.get(&c.id) {
                    Some(l) if l.raw_len == c.len => {
                        packs.insert(l.pack);
                    }
                    _ => return Err(missing(format!("chunk {} is in no pack", c.id))),
                }
            }
            for p in packs {
                let (d, (size, idx_len)) = (map.packs[p as usize], map.sizes[p as usize]);
                let idx_ok =
                    fs::metadata(self.pack_path(&d, "idx")).is_ok_and(|m| m.len() == idx_len);
                if !idx_ok || !self.pack_file_intact(&d, size) {
                    return Err(missing(format!(
                        "pack {d} is missing or has the wrong size"
                    )));
                }
            }
        }
        // The uncompressed tar itself (served from the chunks just checked).
        if *blob == *diff_id {
            return Ok(());
        }
        let listed = [idx.zstd.as_ref(), idx.gzip.as_ref()]
            .into_iter()
            .flatten()
            .chain(&idx.external)
            .any(|b| b.digest == *blob);
        if !listed {
            return Err(missing(format!("blob {blob} is not one of its blobs")));
        }
        let link = self.read_link(blob)?.ok_or_else(|| self.not_found(*blob))?;
        if link.diff_id != *diff_id {
            return Err(missing(format!(
                "link of blob {blob} names layer {}",
                link.diff_id
            )));
        }
        if link.encoding == "external" && !self.blob_path(blob).is_file() {
            return Err(self.not_found(*blob));
        }
        Ok(())
    }

    /// Records a new blob of a layer: its link first, then the index listing it. A crash in between leaves a link
    /// whose layer does not list the blob (a partial write: not served, removed by gc), never a listed blob that
    /// cannot be found by digest.
    pub(crate) fn record_blob(
        &self,
        idx: &LayerIndex,
        blob: &Digest,
        encoding: &str,
    ) -> Result<()> {
        self.write_link(blob, &idx.diff_id, encoding)?;
        self.write_layer_index(idx)
    }

    pub(crate) fn write_layer_index(&self, idx: &LayerIndex) -> Result<()> {
        let p = self.layer_path(&idx.diff_id);
        let data =
            serde_json::to_vec(idx).map_err(|e| Error::io("encode", &p, io::Error::other(e)))?;
        fsutil::atomic_write(self.tmp_dir(), &p, &data)
    }
}
