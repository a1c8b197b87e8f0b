//! Garbage collection (`chasi store gc`): under the exclusive gc lock, removes what the mark phase did not reach
//! (blobs, links, layer indexes, dead chunks), every cache record when asked to prune, and dead temp sessions;
//! packs whose chunks are partly dead are rewritten with the live ones.

use super::marks::Marks;
use crate::digest::ChunkId;
use crate::error::{Error, IoCtx, Result};
use crate::fsutil::{self, TempSession};
use crate::pack::{self, PackEntry, PackIndex, PackWriter};
use crate::store::{list_hex, FrameKey, Store};
use serde::Serialize;
use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

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

impl Store {
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
        self.sweep_packs(opts, &marks, &mut rep, &remove)?;
        if !opts.dry_run {
            for d in ["blobs", "links", "layers", "packs", "cache"] {
                fsutil::fsync_dir(&self.root.join(d))?;
            }
        }
        Ok(rep)
    }

    /// Packs: drops dead chunks; each chunk is kept once even if it was stored twice, except in the frames that
    /// are blob frames of a reachable layer (`Marks::frames`): the first pack frame holding such a group is kept
    /// whole, duplicates and all, because serving the layer copies it. Packs are visited in name order; a pack this
    /// sweep wrote (a rewrite can produce the very bytes of a pack not visited yet) is never visited.
    fn sweep_packs(
        &self,
        opts: &GcOptions,
        marks: &Marks,
        rep: &mut GcReport,
        remove: &dyn Fn(&mut GcReport, &Path),
    ) -> Result<()> {
        let pdir = self.root.join("packs");
        let mut packs: BTreeMap<String, bool> = BTreeMap::new();
        for ent in fs::read_dir(&pdir).ctx("read directory", &pdir)?.flatten() {
            let name = ent.file_name().to_string_lossy().into_owned();
            if let Some(h) = name.strip_suffix(".idx") {
                packs.insert(h.to_string(), true);
            } else if let Some(h) = name.strip_suffix(".pack") {
                packs.entry(h.to_string()).or_insert(false);
            }
        }
        let mut indexes: Vec<(String, PackIndex)> = Vec::new();
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
                Ok(m) if m.len() == idx.pack_size => indexes.push((hex, idx)),
                _ => continue,
            }
        }
        // The frames kept whole: (pack, frame offset) of the first frame per reachable blob-frame key.
        let mut kept: HashSet<ChunkId> = HashSet::new();
        let mut whole: HashSet<(usize, u64)> = HashSet::new();
        let mut claimed: HashSet<FrameKey> = HashSet::new();
        for (n, (_, idx)) in indexes.iter().enumerate() {
            for frame in idx
                .entries
                .chunk_by(|a, b| a.frame_offset == b.frame_offset)
            {
                let key = FrameKey::of(frame.iter().map(|e| (e.chunk, e.raw_len)));
                if marks.frames.contains(&key) && claimed.insert(key) {
                    whole.insert((n, frame[0].frame_offset));
                    kept.extend(frame.iter().map(|e| e.chunk));
                }
            }
        }
        let mut written: HashSet<String> = HashSet::new();
        for (n, (hex, idx)) in indexes.iter().enumerate() {
            if written.contains(hex) {
                continue;
            }
            let pack_path = pdir.join(format!("{hex}.pack"));
            let idx_path = pdir.join(format!("{hex}.idx"));
            // Kept whole, or live and not kept yet (in an earlier pack, or earlier in this one: a layer's own
            // repeats).
            let live: Vec<(PackEntry, bool)> = idx
                .entries
                .iter()
                .filter_map(|e| {
                    let w = whole.contains(&(n, e.frame_offset));
                    (w || (marks.chunks.contains(&e.chunk) && kept.insert(e.chunk)))
                        .then_some((*e, w))
                })
                .collect();
            if live.len() == idx.entries.len() {
                continue;
            }
            rep.chunks_removed += (idx.entries.len() - live.len()) as u64;
            rep.packs_rewritten += 1;
            if !live.is_empty() && !opts.dry_run {
                let (name, size) = self.repack(&pack_path, &live)?;
                rep.bytes_freed = rep.bytes_freed.saturating_sub(size);
                written.insert(name);
            }
            // Index first: a pack without index is an ignored leftover, never a dangling reference.
            remove(rep, &idx_path);
            remove(rep, &pack_path);
        }
        Ok(())
    }

    /// Writes the live chunks of a pack into a new pack, then names it: the frames kept whole (flag `true`) are
    /// copied verbatim once their chunks are checked, the other chunks regrouped to the store's frame size. Chunk
    /// names do not change, so layer indexes and blob digests stay valid.
    /// Returns the new pack's name and the bytes it and its index occupy.
    fn repack(
        &self,
        pack_path: &std::path::Path,
        live: &[(PackEntry, bool)],
    ) -> Result<(String, u64)> {
        let src = fs::File::open(pack_path).ctx("open", pack_path)?;
        let c = &self.layout.compression;
        let mut pw = PackWriter::create(
            self.tmp_dir()
                .join(format!("{}.pack", fsutil::unique_name())),
        )?;
        let mut open = (Vec::new(), Vec::new());
        let res = (|| -> Result<()> {
            let flush = |pw: &mut PackWriter, open: &mut (Vec<u8>, Vec<_>)| -> Result<()> {
                let z = pack::encode_frame(c.level, &open.0)
                    .map_err(|err| Error::io("compress", pack_path, err))?;
                pw.append(&z, open.0.len() as u32, open.1.drain(..))?;
                open.0.clear();
                Ok(())
            };
            for frame in live.chunk_by(|a, b| a.0.frame_offset == b.0.frame_offset) {
                let e0 = &frame[0].0;
                let z = pack::read_frame(&src, pack_path, e0.frame_offset, e0.frame_len)?;
                let raw = pack::decode_frame(&z, e0.frame_raw_len, pack_path, e0.frame_offset)?;
                for (e, _) in frame {
                    pack::chunk_in_frame(&raw, &e.chunk, e.offset, e.raw_len, pack_path)?;
                }
                if frame[0].1 {
                    pw.append(
                        &z,
                        e0.frame_raw_len,
                        frame.iter().map(|(e, _)| (e.chunk, e.offset, e.raw_len)),
                    )?;
                    continue;
                }
                for (e, _) in frame {
                    let data = &raw[e.offset as usize..(e.offset + e.raw_len) as usize];
                    open.1.push((e.chunk, open.0.len() as u32, e.raw_len));
                    open.0.extend_from_slice(data);
                    if open.0.len() >= c.pack_frame_bytes as usize {
                        flush(&mut pw, &mut open)?;
                    }
                }
            }
            if !open.0.is_empty() {
                flush(&mut pw, &mut open)?;
            }
            Ok(())
        })();
        if let Err(e) = res {
            let _ = fs::remove_file(&pw.path);
            return Err(e);
        }
        let name = self.commit_pack(pw)?;
        let size = fsutil::dir_size(&self.pack_path(&name, "pack"))
            + fsutil::dir_size(&self.pack_path(&name, "idx"));
        Ok((name.hex(), size))
    }
}
