//! Chunked ingest of an uncompressed tar stream.
//!
//! Three kinds of work run at once on every batch of ~16 MiB:
//! - the DiffID (SHA-256 over the whole stream, which OCI requires) on a thread of its own: it is sequential by
//!   nature and, without SHA-NI, as costly as compression, so it must never wait for anything else;
//! - FastCDC cut points (sequential, ~1.5 GB/s) and BLAKE3 chunk names (parallel) on the calling thread;
//! - the compression of new chunks, gathered in order into pack frames of `pack_frame_bytes`, frames compressed in
//!   parallel and appended to this ingest's pack.
//!
//! Known chunks (already in a pack, or stored earlier in this ingest) cost only their name: nothing is compressed,
//! read back or written. That is what makes ingesting a new version of mostly known content cheap. The compressed
//! OCI blob is not produced here: it is a pure function of the chunk list, computed when a manifest first needs
//! its digest ([`Store::layer_blob`]).
//!
//! Commit order: pack fsync → pack rename → pack index (temp, fsync, rename) → fsync(packs/) → layer index.
//! Until the pack index is named, nothing refers to the new chunks and a crash leaves only temp files.

use crate::digest::{ChunkId, Hasher};
use crate::error::{Error, Result};
use crate::fsutil;
use crate::pack::{self, PackWriter};
use crate::store::{ChunkRef, LayerIndex, LayerInfo, Store};
use fastcdc::v2020::{self, Normalization};
use rayon::prelude::*;
use std::collections::HashSet;
use std::fs;
use std::io::{self, Read};
use std::sync::{mpsc, Arc};

/// Bytes of stream read per batch.
const BATCH: usize = 16 << 20;

/// New chunks waiting to be compressed together into one pack frame.
#[derive(Default)]
struct OpenFrame {
    data: Vec<u8>,
    /// (name, offset in `data`, length)
    chunks: Vec<(ChunkId, u32, u32)>,
}

/// The pack being written and the frames it still lacks.
struct Packer<'a> {
    store: &'a Store,
    level: i32,
    target: usize,
    open: OpenFrame,
    ready: Vec<OpenFrame>,
    pack: Option<PackWriter>,
    /// Chunks stored by this ingest (not yet visible in the store's chunk map).
    stored: HashSet<ChunkId>,
}

impl Packer<'_> {
    /// Queues a chunk for storage unless the store (or this ingest) has it already.
    fn add(&mut self, id: ChunkId, data: &[u8]) {
        if self.stored.contains(&id)
            || self
                .store
                .chunk_loc(&id)
                .is_some_and(|(_, l)| l.raw_len as usize == data.len())
        {
            return;
        }
        self.stored.insert(id);
        let off = self.open.data.len() as u32;
        self.open.data.extend_from_slice(data);
        self.open.chunks.push((id, off, data.len() as u32));
        if self.open.data.len() >= self.target {
            self.ready.push(std::mem::take(&mut self.open));
        }
    }

    /// Compresses the completed frames in parallel and appends them in order.
    fn flush(&mut self, all: bool) -> Result<()> {
        if all && !self.open.chunks.is_empty() {
            self.ready.push(std::mem::take(&mut self.open));
        }
        if self.ready.is_empty() {
            return Ok(());
        }
        let frames = std::mem::take(&mut self.ready);
        let tmp = self.store.tmp_dir();
        let level = self.level;
        let compressed: Vec<Vec<u8>> = frames
            .par_iter()
            .map(|f| pack::encode_frame(level, &f.data).map_err(|e| Error::io("compress", tmp, e)))
            .collect::<Result<_>>()?;
        if self.pack.is_none() {
            self.pack = Some(PackWriter::create(
                tmp.join(format!("{}.pack", fsutil::unique_name())),
            )?);
        }
        if let Some(pw) = self.pack.as_mut() {
            for (f, z) in frames.iter().zip(&compressed) {
                pw.append(z, f.data.len() as u32, f.chunks.iter().copied())?;
            }
        }
        Ok(())
    }
}

pub(crate) fn ingest(store: &Store, mut r: impl Read) -> Result<LayerInfo> {
    store.refresh_chunks()?;
    let p = store.layout.chunking;
    let norm = match p.normalization {
        0 => Normalization::Level0,
        1 => Normalization::Level1,
        2 => Normalization::Level2,
        _ => Normalization::Level3,
    };
    let (min, avg, max) = (
        p.min_size as usize,
        p.avg_size as usize,
        p.max_size as usize,
    );
    let (mask_s, mask_l) = v2020::select_masks(avg, norm);
    let (gear, gear_ls) = v2020::get_gear_with_seed(p.seed);

    let mut packer = Packer {
        store,
        level: store.layout.compression.level,
        target: store.layout.compression.pack_frame_bytes as usize,
        open: OpenFrame::default(),
        ready: Vec::new(),
        pack: None,
        stored: HashSet::new(),
    };
    let mut chunks: Vec<ChunkRef> = Vec::new();

    // Bounded: when hashing lags (it is the slowest stage once most chunks are known), reading waits for it.
    let (tx, rx) = mpsc::sync_channel::<(Arc<Vec<u8>>, usize)>(2);
    let (result, diff) = std::thread::scope(|s| {
        let hasher = s.spawn(move || {
            let mut h = Hasher::new();
            for (batch, n) in rx {
                h.update(&batch[..n]);
            }
            h
        });
        let result = (|| -> Result<()> {
            let mut carry: Vec<u8> = Vec::new();
            let mut eof = false;
            loop {
                // A fresh buffer per batch: the hashing thread may still be reading the previous one.
                let mut buf = Vec::with_capacity(BATCH + max);
                buf.extend_from_slice(&carry);
                let mut filled = buf.len();
                buf.resize(BATCH.max(filled + max), 0);
                while filled < BATCH && !eof {
                    match r.read(&mut buf[filled..]) {
                        Ok(0) => eof = true,
                        Ok(n) => filled += n,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(Error::io("read layer stream", "<input>", e)),
                    }
                }
                buf.truncate(filled);
                let mut cuts = Vec::new();
                let mut start = 0usize;
                while start < buf.len() {
                    let rem = buf.len() - start;
                    if !eof && rem < max {
                        break;
                    }
                    let (_, n) = v2020::cut_gear(
                        &buf[start..],
                        min,
                        avg,
                        max,
                        mask_s,
                        mask_l,
                        mask_s << 1,
                        mask_l << 1,
                        &gear,
                        &gear_ls,
                    );
                    let n = n.max(1).min(rem);
                    cuts.push(start..start + n);
                    start += n;
                }
                carry = buf[start..].to_vec();
                let batch = Arc::new(buf);
                // The receiver only goes away if the hashing thread died; the join below reports that.
                let _ = tx.send((batch.clone(), start));
                let ids: Vec<ChunkId> = cuts
                    .par_iter()
                    .map(|range| ChunkId::of(&batch[range.clone()]))
                    .collect();
                for (id, range) in ids.into_iter().zip(cuts) {
                    chunks.push(ChunkRef {
                        id,
                        len: range.len() as u32,
                    });
                    packer.add(id, &batch[range]);
                }
                packer.flush(eof && carry.is_empty())?;
                if eof && carry.is_empty() {
                    return Ok(());
                }
            }
        })();
        drop(tx);
        let diff = hasher.join();
        (result, diff)
    });
    let diff = diff.map_err(|_| Error::Io {
        op: "hash",
        path: "<input>".into(),
        source: io::Error::other("hashing thread panicked"),
    });
    let diff = match (result, diff) {
        (Ok(()), Ok(d)) => d,
        (Err(e), _) | (_, Err(e)) => {
            if let Some(pw) = packer.pack {
                let _ = fs::remove_file(&pw.path);
            }
            return Err(e);
        }
    };

    if let Some(pw) = packer.pack {
        commit_pack(store, pw)?;
    }
    let size = diff.len();
    let diff_id = diff.finish();
    let idx = LayerIndex {
        version: 2,
        diff_id,
        size,
        chunking: p,
        chunks,
        zstd: None,
        gzip: None,
        external: Vec::new(),
    };
    match store.layer(&diff_id) {
        Ok(old) if old.chunks == idx.chunks => Ok(old),
        Ok(old) => {
            // Same content chunked differently (cannot happen within one layout): keep the external blobs known
            // before; derived blob digests are recomputed from the new chunk list on demand.
            let idx = LayerIndex {
                external: old.external,
                ..idx
            };
            store.write_layer_index(&idx)?;
            Ok(idx)
        }
        Err(_) => {
            store.write_layer_index(&idx)?;
            Ok(idx)
        }
    }
}

fn commit_pack(store: &Store, pw: PackWriter) -> Result<()> {
    let (tmp, idx) = pw.finish()?;
    let dest = store.pack_path(&idx.pack, "pack");
    let res = (|| {
        fs::rename(&tmp, &dest).map_err(|e| Error::io("rename into", &dest, e))?;
        fsutil::atomic_write(
            store.tmp_dir(),
            &store.pack_path(&idx.pack, "idx"),
            &idx.encode(),
        )
    })();
    if res.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    res?;
    store.refresh_chunks()
}
