//! Chunked ingest of an uncompressed tar stream.
//!
//! Three stages run at once, each on its own thread, over batches of ~16 MiB:
//! - the DiffID (SHA-256 over the whole stream, which OCI requires): sequential by nature and, without SHA-NI, as
//!   costly as compression, so it must never wait for anything else;
//! - on the calling thread: reading, FastCDC cut points (~1.5 GB/s) and BLAKE3 chunk names (parallel); new chunks
//!   are gathered in order into pack frames of `pack_frame_bytes`;
//! - the packer: frames compressed in parallel (rayon), appended in order to this ingest's pack.
//!
//! Known chunks (already in a pack, or stored earlier in this ingest) cost only their name: nothing is compressed,
//! read back or written. That is what makes ingesting a new version of mostly known content cheap. The compressed
//! OCI blob is a pure function of the chunk list. When every chunk was new, the pack frames just written are that
//! blob's frames (same grouping rule, same encoder), so its digest is recorded here by hashing them; otherwise it
//! is computed when a manifest first needs it ([`Store::layer_blob`]). Batch buffers circulate between the stages and are reused, so a large
//! layer costs neither fresh page faults nor zero-filling per batch.
//!
//! Commit order: pack fsync → pack rename → pack index (temp, fsync, rename) → fsync(packs/) → layer index.
//! Until the pack index is named, nothing refers to the new chunks and a crash leaves only temp files.

use crate::digest::{ChunkId, Digest, Hasher};
use crate::error::{Error, Result};
use crate::fsutil;
use crate::pack::{self, PackWriter};
use crate::store::{
    BlobDesc, ChunkRef, FrameCheck, LayerIndex, LayerInfo, Store, MEDIA_TYPE_LAYER_ZSTD,
};
use fastcdc::v2020::{self, Normalization};
use rayon::prelude::*;
use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::io::{self, Read};
use std::sync::{mpsc, Arc};

/// Bytes of stream read per batch.
const BATCH: usize = 16 << 20;

/// How an ingest groups chunks into the pack frames it writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// Only new chunks are stored, grouped in arrival order (`pack_frame_bytes`): the least work and the
    /// smallest store. The layer's blob digest is known at ingest only when every chunk was new; otherwise
    /// it is computed on first need, and the blob frames that compresses are kept then.
    NewChunks,
    /// The layer's blob frames are made here: every blob group (the grouping rule of the `tar+zstd` blob) that
    /// no pack holds as one frame is compressed whole, known chunks included, and stored as a pack frame; a
    /// group a pack holds is read from it. The blob digest is recorded at ingest, serving copies every frame,
    /// and the new chunks are compressed once instead of twice (as a pack frame, then again inside their
    /// blob frames on first need). For layers whose blob is needed at once: what a build makes.
    BlobFrames,
}

/// Chunks waiting to be compressed together into one pack frame.
#[derive(Default)]
struct OpenFrame {
    data: Vec<u8>,
    /// (name, offset in `data`, length)
    chunks: Vec<(ChunkId, u32, u32)>,
    /// A blob group that a pack already holds as one frame ([`Framing::BlobFrames`]): read, not compressed.
    stored: bool,
}

impl OpenFrame {
    fn refs(&self) -> Vec<ChunkRef> {
        self.chunks
            .iter()
            .map(|&(id, _, len)| ChunkRef { id, len })
            .collect()
    }
}

/// Decides which chunks are new and groups them into frames for the packer.
struct Framer<'a> {
    store: &'a Store,
    framing: Framing,
    target: usize,
    open: OpenFrame,
    /// Chunks stored by this ingest (not yet visible in the store's chunk map).
    stored: HashSet<ChunkId>,
    /// No chunk was skipped so far: the pack frames are the blob frames.
    all_new: bool,
}

impl Framer<'_> {
    /// Queues a chunk for storage unless the store (or this ingest) has it already; returns a frame once full.
    ///
    /// While no chunk was known before this ingest, a chunk repeated within the layer is stored again: that keeps
    /// the pack frames identical to the blob frames, whose digest then comes for free and which serving copies
    /// (a layer's own repeats are few; gc keeps such frames whole while the layer is reachable).
    fn add(&mut self, id: ChunkId, data: &[u8]) -> Option<OpenFrame> {
        if self.framing == Framing::BlobFrames {
            self.push(id, data);
            return (self.open.data.len() >= self.target).then(|| self.take());
        }
        if self
            .store
            .chunk_loc(&id)
            .is_some_and(|(_, l)| l.raw_len as usize == data.len())
        {
            self.all_new = false;
            return None;
        }
        if !self.stored.insert(id) && !self.all_new {
            return None;
        }
        self.push(id, data);
        (self.open.data.len() >= self.target).then(|| self.take())
    }

    fn push(&mut self, id: ChunkId, data: &[u8]) {
        if self.open.data.capacity() == 0 {
            self.open.data.reserve_exact(self.target + data.len());
        }
        let off = self.open.data.len() as u32;
        self.open.data.extend_from_slice(data);
        self.open.chunks.push((id, off, data.len() as u32));
    }

    /// The open frame, closed; a blob group learns whether a pack holds it already.
    fn take(&mut self) -> OpenFrame {
        let mut f = std::mem::take(&mut self.open);
        f.stored =
            self.framing == Framing::BlobFrames && self.store.find_frame(&f.refs()).is_some();
        f
    }
}

/// Frames being compressed at once by the packer: enough to keep every core busy while the frames of one batch
/// trickle in (a layer of mostly known chunks yields about one new frame per batch), few enough to bound memory.
const FRAMES_IN_FLIGHT: usize = 6;

/// The packer stage: compresses frames in parallel as they arrive (each on the rayon pool, up to
/// [`FRAMES_IN_FLIGHT`] at once, never waiting for a batch to fill) and appends them in order to one pack; also
/// hashes the frames in order (they are the layer's blob if every chunk turns out to be new).
fn packer(
    store: &Store,
    rx: mpsc::Receiver<Vec<OpenFrame>>,
) -> Result<(Option<PackWriter>, Hasher)> {
    let mut blob = Hasher::new();
    let tmp = store.tmp_dir();
    let level = store.layout.compression.level;
    let mut pack: Option<PackWriter> = None;
    let (done_tx, done_rx) = mpsc::channel::<(usize, io::Result<Vec<u8>>, OpenFrame)>();
    // Frames done, by sequence number: compressed (to append), or a stored blob frame (`f.stored`: hashed only).
    let mut ready: BTreeMap<usize, (io::Result<Vec<u8>>, OpenFrame)> = BTreeMap::new();
    let (mut sent, mut written) = (0usize, 0usize);
    // Appends every frame that is next in order; the first compression failure is the error.
    let mut drain = |ready: &mut BTreeMap<usize, (io::Result<Vec<u8>>, OpenFrame)>,
                     written: &mut usize|
     -> Result<()> {
        while let Some((z, f)) = ready.remove(written) {
            let z = z.map_err(|e| Error::io("compress", tmp, e))?;
            if !f.stored {
                let pw = match pack.as_mut() {
                    Some(pw) => pw,
                    None => pack.insert(PackWriter::create(
                        tmp.join(format!("{}.pack", fsutil::unique_name())),
                    )?),
                };
                pw.append(&z, f.data.len() as u32, f.chunks.iter().copied())?;
            }
            blob.update(&z);
            *written += 1;
        }
        Ok(())
    };
    let res = (|| -> Result<()> {
        for frames in rx {
            for mut f in frames {
                if f.stored {
                    // Checked chunk by chunk: the blob digest is computed from these bytes. A frame that does
                    // not hold them after all is made again from the chunks at hand.
                    match store.stored_frame(&f.refs(), FrameCheck::Decode)? {
                        Some(z) => {
                            ready.insert(sent, (Ok(z), f));
                            sent += 1;
                            drain(&mut ready, &mut written)?;
                            continue;
                        }
                        None => f.stored = false,
                    }
                }
                let tx = done_tx.clone();
                let seq = sent;
                rayon::spawn(move || {
                    let z = pack::encode_frame(level, &f.data);
                    let _ = tx.send((seq, z, f));
                });
                sent += 1;
                // Take what is done without waiting; wait only while too many frames are in flight.
                loop {
                    while let Ok((seq, z, f)) = done_rx.try_recv() {
                        ready.insert(seq, (z, f));
                    }
                    drain(&mut ready, &mut written)?;
                    if sent - written < FRAMES_IN_FLIGHT {
                        break;
                    }
                    let (seq, z, f) = done_rx.recv().map_err(|_| lost(tmp))?;
                    ready.insert(seq, (z, f));
                }
            }
        }
        while written < sent {
            let (seq, z, f) = done_rx.recv().map_err(|_| lost(tmp))?;
            ready.insert(seq, (z, f));
            drain(&mut ready, &mut written)?;
        }
        Ok(())
    })();
    // Frames still compressing after a failure hold their own clones of the sender and finish on their own.
    match res {
        Ok(()) => Ok((pack, blob)),
        Err(e) => {
            if let Some(pw) = pack {
                let _ = fs::remove_file(&pw.path);
            }
            Err(e)
        }
    }
}

/// The packer's results channel closed early. It cannot while the packer holds its own sender (and a rayon task
/// that panics aborts the process); an error rather than a panic all the same.
fn lost(tmp: &std::path::Path) -> Error {
    Error::io(
        "compress",
        tmp,
        io::Error::other("a compression task stopped without a result"),
    )
}

impl Store {
    /// Ingests an uncompressed tar stream as a layer: FastCDC chunks named by BLAKE3, unknown ones compressed
    /// into pack frames (in parallel), the DiffID computed on the way. Returns the layer's index; its compressed
    /// blob digest is computed on first need ([`Store::layer_blob`]).
    pub fn ingest_tar(&self, r: impl Read) -> Result<LayerInfo> {
        ingest(self, r, None, Framing::NewChunks)
    }

    /// [`Store::ingest_tar`] with the chosen [`Framing`].
    pub fn ingest_tar_framed(&self, r: impl Read, framing: Framing) -> Result<LayerInfo> {
        ingest(self, r, None, framing)
    }

    /// Like [`Store::ingest_tar`], for a stream that must be the layer `expected`: a stream with another DiffID
    /// is refused before anything is committed (its pack is removed, no index is written), so a rebuilt layer
    /// that came out wrong leaves the store as it was.
    pub fn ingest_tar_expecting(&self, r: impl Read, expected: &Digest) -> Result<LayerInfo> {
        ingest(self, r, Some(expected), Framing::NewChunks)
    }
}

fn ingest(
    store: &Store,
    mut r: impl Read,
    expected: Option<&Digest>,
    framing: Framing,
) -> Result<LayerInfo> {
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

    let c = &store.layout.compression;
    let mut framer = Framer {
        store,
        framing,
        target: match framing {
            Framing::NewChunks => c.pack_frame_bytes as usize,
            Framing::BlobFrames => c.blob_frame_bytes as usize,
        },
        open: OpenFrame::default(),
        stored: HashSet::new(),
        all_new: true,
    };
    let mut chunks: Vec<ChunkRef> = Vec::new();

    // Bounded queues: when a later stage lags, reading waits for it, so memory stays at a few batches.
    let (hash_tx, hash_rx) = mpsc::sync_channel::<(Arc<Vec<u8>>, usize)>(2);
    let (back_tx, back_rx) = mpsc::channel::<Arc<Vec<u8>>>();
    let (pack_tx, pack_rx) = mpsc::sync_channel::<Vec<OpenFrame>>(1);
    let (result, diff, pack) = std::thread::scope(|s| {
        let hasher = s.spawn(move || {
            let mut h = Hasher::new();
            for (batch, n) in hash_rx {
                h.update(&batch[..n]);
                let _ = back_tx.send(batch);
            }
            h
        });
        let packer = s.spawn(move || packer(store, pack_rx));
        let result = (|| -> Result<()> {
            let mut carry: Vec<u8> = Vec::new();
            let mut eof = false;
            loop {
                // Reuse a buffer the hashing thread is done with (the framer copies what it keeps).
                let mut buf = back_rx
                    .try_iter()
                    .find_map(|b| Arc::try_unwrap(b).ok())
                    .unwrap_or_default();
                buf.clear();
                buf.reserve(BATCH + max);
                buf.extend_from_slice(&carry);
                while buf.len() < BATCH && !eof {
                    let want = (BATCH - buf.len()) as u64;
                    match (&mut r).take(want).read_to_end(&mut buf) {
                        Ok(0) => eof = true,
                        Ok(_) => {}
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(Error::io("read layer stream", "<input>", e)),
                    }
                }
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
                carry.clear();
                carry.extend_from_slice(&buf[start..]);
                let batch = Arc::new(buf);
                // A closed queue means that stage died; its own result, joined below, says why.
                if hash_tx.send((batch.clone(), start)).is_err() {
                    return Ok(());
                }
                let ids: Vec<ChunkId> = cuts
                    .par_iter()
                    .map(|range| ChunkId::of(&batch[range.clone()]))
                    .collect();
                let mut full = Vec::new();
                for (id, range) in ids.into_iter().zip(cuts) {
                    chunks.push(ChunkRef {
                        id,
                        len: range.len() as u32,
                    });
                    full.extend(framer.add(id, &batch[range]));
                }
                drop(batch);
                let done = eof && carry.is_empty();
                if done && !framer.open.chunks.is_empty() {
                    full.push(framer.take());
                }
                if !full.is_empty() && pack_tx.send(full).is_err() {
                    return Ok(());
                }
                if done {
                    return Ok(());
                }
            }
        })();
        drop(hash_tx);
        drop(pack_tx);
        let diff = hasher.join();
        let pack = packer.join();
        (result, diff, pack)
    });
    let panicked = |what: &str| Error::Io {
        op: "ingest",
        path: "<input>".into(),
        source: io::Error::other(format!("{what} thread panicked")),
    };
    let pack = pack.unwrap_or_else(|_| Err(panicked("packing")));
    let diff = diff.map_err(|_| panicked("hashing"));
    let (diff, (pack, blob)) = match (result, diff, pack) {
        (Ok(()), Ok(d), Ok(p)) => (d, p),
        // A dead stage closes its queue, which stops the others: its own error is the one to report.
        (_, _, Err(e)) => return Err(e),
        (r, d, Ok((p, _))) => {
            if let Some(pw) = p {
                let _ = fs::remove_file(&pw.path);
            }
            return Err(match r {
                Err(e) => e,
                Ok(()) => d.err().unwrap_or_else(|| panicked("hashing")),
            });
        }
    };

    let size = diff.len();
    let diff_id = diff.finish();
    if let Some(e) = expected.filter(|e| **e != diff_id) {
        if let Some(pw) = pack {
            let _ = fs::remove_file(&pw.path);
        }
        return Err(Error::Corrupt {
            digest: *e,
            path: "<input>".into(),
            detail: format!("the stream hashes to {diff_id} ({size} bytes)"),
        });
    }
    if let Some(pw) = pack {
        store.commit_pack(pw)?;
    }
    let blob_frames = framing == Framing::BlobFrames
        || (framer.all_new && c.pack_frame_bytes == c.blob_frame_bytes);
    let zstd = (blob_frames && !chunks.is_empty()).then(|| BlobDesc {
        size: blob.len(),
        digest: blob.finish(),
        media_type: MEDIA_TYPE_LAYER_ZSTD.into(),
    });
    let idx = LayerIndex {
        version: 2,
        diff_id,
        size,
        chunking: p,
        chunks,
        zstd,
        gzip: None,
        external: Vec::new(),
    };
    match store.layer(&diff_id) {
        // Known already: what this ingest adds is the blob digest, when the old index lacked it.
        Ok(old) if old.chunks == idx.chunks && old.zstd.is_none() && idx.zstd.is_some() => {
            let idx = LayerIndex {
                zstd: idx.zstd,
                ..old
            };
            write_index(store, &idx)?;
            Ok(idx)
        }
        Ok(old) if old.chunks == idx.chunks => Ok(old),
        Ok(old) => {
            // Same content chunked differently (cannot happen within one layout): keep the external blobs known
            // before; derived blob digests are recomputed from the new chunk list on demand.
            let idx = LayerIndex {
                external: old.external,
                ..idx
            };
            write_index(store, &idx)?;
            Ok(idx)
        }
        Err(_) => {
            write_index(store, &idx)?;
            Ok(idx)
        }
    }
}

fn write_index(store: &Store, idx: &LayerIndex) -> Result<()> {
    match &idx.zstd {
        Some(z) => store.record_blob(idx, &z.digest, "zstd"),
        None => store.write_layer_index(idx),
    }
}
