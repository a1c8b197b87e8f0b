//! Layers made from outside a tar stream: a directory (archived by the reproducible tar writer on a helper thread
//! and ingested as it is written) and a layer blob from elsewhere (spooled, verified, decompressed, chunked, and
//! kept raw too when the chunks do not reproduce it). Both end in [`Store::ingest_tar`].

use crate::channel::channel;
use crate::digest::Digest;
use crate::error::{Error, IoCtx, Result};
use crate::fsutil;
use crate::ingest::Framing;
use crate::store::{BlobDesc, LayerInfo, Store};
use crate::tarwriter::{self, TarOptions};
use std::fs::{self, File};
use std::io::{self, Read};
use std::path::Path;

impl Store {
    /// Archives a directory with the reproducible tar writer and ingests it as a layer.
    ///
    /// The tar is produced on a helper thread and chunked/compressed while it is written, so it never exists in
    /// full in memory or on disk.
    pub fn ingest_dir(&self, dir: &Path, opts: &TarOptions) -> Result<LayerInfo> {
        let md = fs::metadata(dir).ctx("stat", dir)?;
        if !md.is_dir() {
            return Err(Error::io(
                "archive",
                dir,
                io::Error::new(io::ErrorKind::NotADirectory, "not a directory"),
            ));
        }
        self.ingest_written(Framing::NewChunks, |w| {
            tarwriter::write_tree(dir, opts, w).map(|_| ())
        })?
    }

    /// Ingests the tar stream `write` produces, as it is written: the producer runs on a helper thread and hands
    /// 1 MiB pieces over a bounded in-process channel (no pipe, no temporary file; the stream is never whole in
    /// memory). The producer's error comes first (`Err`): it explains a short stream better than the ingest's
    /// view of it, and the ingest is failed too, so a truncated stream never becomes a layer; otherwise the
    /// ingest's result. A panic in the producer is resumed on the calling thread.
    pub fn ingest_written<E, F>(
        &self,
        framing: Framing,
        write: F,
    ) -> std::result::Result<Result<LayerInfo>, E>
    where
        F: FnOnce(&mut dyn io::Write) -> std::result::Result<(), E> + Send,
        E: Send,
    {
        let (writer, mut reader) = channel(8);
        std::thread::scope(|s| {
            let producer = s.spawn(move || {
                let mut w = io::BufWriter::with_capacity(1 << 20, writer);
                let res = write(&mut w);
                if res.is_err() {
                    // The ingest must fail, not commit the stream's truncated start as a layer; what is still
                    // buffered is dropped unsent.
                    let (writer, _) = w.into_parts();
                    let _ = writer
                        .tx
                        .send(Err(io::Error::other("the layer's producer failed")));
                    return (res, Ok(()));
                }
                (res, io::Write::flush(&mut w))
            });
            let res = self.ingest_tar_framed(&mut reader, framing);
            drop(reader);
            let (prod, flushed) = producer
                .join()
                .unwrap_or_else(|p| std::panic::resume_unwind(p));
            prod?;
            Ok(flushed
                .map_err(|e| Error::io("write layer stream", "<input>", e))
                .and(res))
        })
    }

    /// Imports a layer blob that came from outside (`tar`, `tar+gzip` or `tar+zstd` by `media_type`).
    ///
    /// The content is chunked like any layer (so it is deduplicated and can be unpacked from chunks). If the blob
    /// is byte-identical to what the store would produce itself, only the chunks are kept; otherwise the raw blob
    /// is also kept under `blobs/` and listed in `external`, so its original digest stays servable.
    pub fn import_layer_blob(
        &self,
        r: impl Read,
        media_type: &str,
        expected: Option<Digest>,
    ) -> Result<LayerInfo> {
        let (tmp, d, size) = self.spool(r)?;
        let res = self.import_spooled(&tmp, d, size, media_type, expected);
        let _ = fs::remove_file(&tmp);
        res
    }

    fn import_spooled(
        &self,
        tmp: &Path,
        d: Digest,
        size: u64,
        media_type: &str,
        expected: Option<Digest>,
    ) -> Result<LayerInfo> {
        if let Some(e) = expected {
            if e != d {
                return Err(Error::Corrupt {
                    digest: e,
                    path: tmp.into(),
                    detail: format!("received content hashes to {d}"),
                });
            }
        }
        let f = io::BufReader::new(File::open(tmp).ctx("open", tmp)?);
        let bad = |e: Error| match e {
            Error::Io { source, .. }
                if source.kind() == io::ErrorKind::InvalidData
                    || source.kind() == io::ErrorKind::InvalidInput =>
            {
                Error::BadTar {
                    what: d.to_string(),
                    detail: source.to_string(),
                }
            }
            e => e,
        };
        let mut info = if media_type.ends_with("gzip") {
            self.ingest_tar(flate2::read::MultiGzDecoder::new(f))
                .map_err(bad)?
        } else if media_type.ends_with("zstd") {
            let dec = zstd::stream::read::Decoder::with_buffer(f).ctx("decode", tmp)?;
            self.ingest_tar(dec).map_err(bad)?
        } else {
            self.ingest_tar(f)?
        };
        // A zstd blob is often one chasi wrote itself (a base image saved by chasi): then the chunks reproduce it
        // and the raw copy is not kept. gzip is only compared when already known (recompressing gzip is slow).
        let ours = if media_type.ends_with("zstd") {
            Some(self.ensure_zstd(&info.diff_id)?)
        } else {
            None
        };
        info = self.layer(&info.diff_id)?;
        let encoding = if ours.is_some_and(|z| z.digest == d) {
            "zstd"
        } else if d == info.diff_id {
            "tar"
        } else if info.gzip.as_ref().is_some_and(|g| g.digest == d) {
            "gzip"
        } else {
            let dest = self.blob_path(&d);
            if !dest.exists() {
                fs::hard_link(tmp, &dest)
                    .or_else(|_| fs::copy(tmp, &dest).map(|_| ()))
                    .ctx("store blob", &dest)?;
                fsutil::fsync_dir(&self.root.join("blobs"))?;
            }
            if !info.external.iter().any(|b| b.digest == d) {
                info.external.push(BlobDesc {
                    digest: d,
                    size,
                    media_type: media_type.to_string(),
                });
                self.record_blob(&info, &d, "external")?;
            }
            "external"
        };
        self.write_link(&d, &info.diff_id, encoding)?;
        Ok(info)
    }
}
