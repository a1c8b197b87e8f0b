//! Blobs by digest: storing raw blobs (manifests, configs, anything OCI), and serving any blob the store can
//! produce, raw or a layer blob regenerated from its chunks, always through a reader that checks digest and size.
//! Also the blob links (`links/<blob>.json`) that map a layer blob's digest to its layer.

use super::encode::{BlobEncoding, BlobReader};
use super::handle::Store;
use super::records::{BlobDesc, BlobLink, LayerIndex};
use crate::digest::{Digest, VerifyingReader};
use crate::error::{Error, IoCtx, Result};
use crate::fsutil;
use crate::json;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::PathBuf;

impl Store {
    /// Stores a blob (manifest, config, index, or any OCI blob) and returns its digest.
    pub fn put_blob(&self, data: &[u8]) -> Result<Digest> {
        let d = Digest::of(data);
        let path = self.blob_path(&d);
        if !path.exists() {
            fsutil::atomic_write(self.tmp_dir(), &path, data)?;
        }
        Ok(d)
    }

    /// Streams a blob into the store; when `expected` is given, a digest or size mismatch stores nothing.
    pub fn put_blob_from(&self, r: impl Read, expected: Option<(Digest, u64)>) -> Result<BlobDesc> {
        let (tmp, d, size) = self.spool(r)?;
        let res = (|| {
            if let Some((ed, es)) = expected {
                if ed != d || es != size {
                    return Err(Error::Corrupt {
                        digest: ed,
                        path: tmp.clone(),
                        detail: format!("received {d} ({size} bytes), expected {es} bytes"),
                    });
                }
            }
            let dest = self.blob_path(&d);
            fs::rename(&tmp, &dest).ctx("rename into", &dest)?;
            fsutil::fsync_dir(&self.root.join("blobs"))
        })();
        let _ = fs::remove_file(&tmp);
        res?;
        Ok(BlobDesc {
            digest: d,
            size,
            media_type: String::new(),
        })
    }

    /// Copies a stream to a fsynced temp file, returning its path, digest and size.
    pub(crate) fn spool(&self, mut r: impl Read) -> Result<(PathBuf, Digest, u64)> {
        let tmp = self.tmp_dir().join(fsutil::unique_name());
        let f = File::create_new(&tmp).ctx("create", &tmp)?;
        let mut w = crate::digest::HashingWriter::new(io::BufWriter::with_capacity(1 << 20, f));
        let res = io::copy(&mut r, &mut w);
        let (bw, d, size) = w.finish();
        let done = res.ctx("write", &tmp).and_then(|_| {
            let f = bw
                .into_inner()
                .map_err(|e| Error::io("write", &tmp, e.into_error()))?;
            f.sync_all().ctx("fsync", &tmp)
        });
        if let Err(e) = done {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
        Ok((tmp, d, size))
    }

    /// True if a blob with this digest can be served (raw blob, or a layer blob its layer index lists).
    pub fn has_blob(&self, d: &Digest) -> bool {
        if self.blob_path(d).exists() {
            return true;
        }
        let Ok((link, layer)) = self.blob_layer(d) else {
            return false;
        };
        match link.encoding.as_str() {
            "zstd" => layer.zstd.is_some_and(|b| b.digest == *d),
            "gzip" => layer.gzip.is_some_and(|b| b.digest == *d),
            "tar" => layer.diff_id == *d,
            _ => false,
        }
    }

    /// Reads a whole blob into memory, verified. Meant for small blobs (manifests, configs).
    pub fn get_blob(&self, d: &Digest) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        self.open_blob(d)?
            .read_to_end(&mut out)
            .map_err(|e| self.read_err(d, e))?;
        Ok(out)
    }

    fn read_err(&self, d: &Digest, e: io::Error) -> Error {
        if e.kind() == io::ErrorKind::InvalidData {
            Error::Corrupt {
                digest: *d,
                path: self.blob_path(d),
                detail: e.to_string(),
            }
        } else {
            Error::io("read blob", self.blob_path(d), e)
        }
    }

    /// Size of a blob without reading it.
    pub fn blob_size(&self, d: &Digest) -> Result<u64> {
        let p = self.blob_path(d);
        if let Ok(md) = fs::metadata(&p) {
            return Ok(md.len());
        }
        let (link, layer) = self.blob_layer(d)?;
        let known = match link.encoding.as_str() {
            "zstd" => layer.zstd.as_ref().map(|b| b.size),
            "gzip" => layer.gzip.as_ref().map(|g| g.size),
            "tar" => Some(layer.size),
            _ => None,
        };
        known.ok_or_else(|| self.not_found(*d))
    }

    /// Opens a blob for streaming. The reader checks digest and size as it goes and fails at the end on mismatch;
    /// layer blobs are produced from their stored frames or chunks with the pinned framing (see
    /// [`crate::layout::CompressionParams`]).
    pub fn open_blob(&self, d: &Digest) -> Result<Box<dyn Read + Send + '_>> {
        let p = self.blob_path(d);
        match File::open(&p) {
            Ok(f) => {
                let size = f.metadata().ctx("stat", &p)?.len();
                return Ok(Box::new(VerifyingReader::new(
                    io::BufReader::with_capacity(1 << 20, f),
                    *d,
                    size,
                )));
            }
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(Error::io("open", &p, e)),
            Err(_) => {}
        }
        let (link, layer) = self.blob_layer(d)?;
        match link.encoding.as_str() {
            "zstd" | "gzip" => {
                let (desc, enc) = match link.encoding.as_str() {
                    "zstd" => (layer.zstd.clone(), BlobEncoding::Zstd),
                    _ => (layer.gzip.clone(), BlobEncoding::Gzip),
                };
                let b = desc.ok_or_else(|| self.not_found(*d))?;
                Ok(Box::new(
                    BlobReader::new(self, layer.chunks.clone(), enc).serving(b.digest, b.size),
                ))
            }
            "tar" => Ok(Box::new(self.open_layer(&layer.diff_id)?)),
            _ => Err(self.not_found(*d)),
        }
    }

    /// Copies a blob to a writer (e.g. into an OCI layout's `blobs/sha256/`), verified; returns its size.
    pub fn copy_blob(&self, d: &Digest, mut w: impl Write) -> Result<u64> {
        let mut r = self.open_blob(d)?;
        io::copy(&mut r, &mut w).map_err(|e| self.read_err(d, e))
    }

    /// The link of a blob digest, `None` when there is none.
    pub(crate) fn read_link(&self, d: &Digest) -> Result<Option<BlobLink>> {
        json::read(&self.link_path(d), json::MAX_DOC, "blob link")
    }

    pub(crate) fn blob_layer(&self, d: &Digest) -> Result<(BlobLink, LayerIndex)> {
        let link = self.read_link(d)?.ok_or_else(|| self.not_found(*d))?;
        let layer = self.layer(&link.diff_id)?;
        Ok((link, layer))
    }

    pub(crate) fn write_link(&self, blob: &Digest, diff_id: &Digest, encoding: &str) -> Result<()> {
        let p = self.link_path(blob);
        let link = BlobLink {
            diff_id: *diff_id,
            encoding: encoding.into(),
        };
        if self.read_link(blob).ok().flatten().as_ref() == Some(&link) {
            return Ok(());
        }
        let data =
            serde_json::to_vec(&link).map_err(|e| Error::io("encode", &p, io::Error::other(e)))?;
        fsutil::atomic_write(self.tmp_dir(), &p, &data)
    }
}
