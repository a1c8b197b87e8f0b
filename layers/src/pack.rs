//! Pack files: where compressed chunks live at rest.
//!
//! A chunk is stored as its own zstd frame (the exact bytes that appear in the layer's OCI `tar+zstd` blob). New
//! chunks of one ingest are appended to one pack file instead of one file per chunk: one fsync per pack instead of
//! one per chunk (about 1.4 ms each on the reference VM, i.e. seconds per layer), and no per-file block slack
//! (half a 4 KiB block per ~20 KiB frame would cost ~10 % of the physical size).
//!
//! ```text
//! packs/<pack digest>.pack           concatenated zstd frames
//! packs/<same>.idx                    "CHASIPK1" | pack digest (32) | pack size u64 | count u64
//!                                      | count × (chunk digest (32) | offset u64 | frame_len u32 | raw_len u32)
//!                                      | sha256 of everything before (32)            (integers little endian)
//! ```
//! The pack digest is the SHA-256 of its size and entry table ([`pack_digest`]); the content is verified frame by
//! frame through the chunk digests. The `.idx` is renamed into place after the `.pack`; a pack without an index is a crash leftover, ignored by
//! readers and removed by `gc`. Both files are immutable once named.

use crate::digest::Digest;
use crate::error::{Error, IoCtx, Result};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 8] = b"CHASIPK1";
const RECORD: usize = 32 + 8 + 4 + 4;

/// Where one chunk's frame lives inside a pack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PackEntry {
    /// SHA-256 of the uncompressed chunk.
    pub chunk: Digest,
    /// Byte offset of the frame in the pack.
    pub offset: u64,
    /// Length of the zstd frame.
    pub frame_len: u32,
    /// Length of the uncompressed chunk.
    pub raw_len: u32,
}

/// A parsed pack index.
#[derive(Debug, Clone)]
pub struct PackIndex {
    /// Digest of the pack file (its name).
    pub pack: Digest,
    /// Size of the pack file.
    pub pack_size: u64,
    /// Frames in pack order.
    pub entries: Vec<PackEntry>,
}

impl PackIndex {
    /// Serializes the index with its trailing checksum.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(8 + 48 + self.entries.len() * RECORD + 32);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&self.pack.0);
        out.extend_from_slice(&self.pack_size.to_le_bytes());
        out.extend_from_slice(&(self.entries.len() as u64).to_le_bytes());
        for e in &self.entries {
            out.extend_from_slice(&e.chunk.0);
            out.extend_from_slice(&e.offset.to_le_bytes());
            out.extend_from_slice(&e.frame_len.to_le_bytes());
            out.extend_from_slice(&e.raw_len.to_le_bytes());
        }
        let sum = Digest::of(&out);
        out.extend_from_slice(&sum.0);
        out
    }

    /// Parses and checks an index file's bytes; never panics on bad input.
    pub fn decode(data: &[u8], path: &Path) -> Result<PackIndex> {
        let bad = |detail: &str| Error::Malformed {
            what: "pack index",
            path: path.to_path_buf(),
            detail: detail.into(),
        };
        if data.len() < 8 + 48 + 32 || &data[..8] != MAGIC {
            return Err(bad("bad magic or too short"));
        }
        let (body, sum) = data.split_at(data.len() - 32);
        if Digest::of(body).0[..] != sum[..] {
            return Err(bad("checksum mismatch"));
        }
        let u64_at = |o: usize| u64::from_le_bytes(body[o..o + 8].try_into().unwrap_or([0; 8]));
        let u32_at = |o: usize| u32::from_le_bytes(body[o..o + 4].try_into().unwrap_or([0; 4]));
        let mut pack = [0u8; 32];
        pack.copy_from_slice(&body[8..40]);
        let pack_size = u64_at(40);
        let count = u64_at(48);
        if count.checked_mul(RECORD as u64) != Some((body.len() - 56) as u64) {
            return Err(bad("record count does not match length"));
        }
        let mut entries = Vec::with_capacity(count as usize);
        for i in 0..count as usize {
            let o = 56 + i * RECORD;
            let mut chunk = [0u8; 32];
            chunk.copy_from_slice(&body[o..o + 32]);
            let e = PackEntry {
                chunk: Digest(chunk),
                offset: u64_at(o + 32),
                frame_len: u32_at(o + 40),
                raw_len: u32_at(o + 44),
            };
            if e.offset
                .checked_add(e.frame_len as u64)
                .is_none_or(|end| end > pack_size)
            {
                return Err(bad("frame extends past the end of the pack"));
            }
            entries.push(e);
        }
        Ok(PackIndex {
            pack: Digest(pack),
            pack_size,
            entries,
        })
    }
}

/// Pinned per-chunk zstd encoder: level 3, content size in the header, no checksum, no dictionary ID, one frame per
/// chunk, single-threaded (multithreaded zstd may lay frames out differently).
pub struct FrameEncoder {
    inner: zstd::bulk::Compressor<'static>,
}

impl FrameEncoder {
    /// An encoder with the pinned parameters at `level`.
    pub fn new(level: i32) -> std::io::Result<Self> {
        use zstd::zstd_safe::CParameter;
        let mut inner = zstd::bulk::Compressor::new(level)?;
        inner.set_parameter(CParameter::ChecksumFlag(false))?;
        inner.set_parameter(CParameter::ContentSizeFlag(true))?;
        inner.set_parameter(CParameter::DictIdFlag(false))?;
        Ok(Self { inner })
    }
    /// Compresses one chunk into one frame.
    pub fn frame(&mut self, chunk: &[u8]) -> std::io::Result<Vec<u8>> {
        self.inner.compress(chunk)
    }
}

thread_local! {
    static ENCODER: std::cell::RefCell<Option<(i32, FrameEncoder)>> = const { std::cell::RefCell::new(None) };
    static DECODER: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> = const { std::cell::RefCell::new(None) };
}

/// Compresses a chunk with a per-thread pinned encoder.
pub(crate) fn encode_frame(level: i32, chunk: &[u8]) -> std::io::Result<Vec<u8>> {
    ENCODER.with(|c| {
        let mut slot = c.borrow_mut();
        if slot.as_ref().is_none_or(|(l, _)| *l != level) {
            *slot = Some((level, FrameEncoder::new(level)?));
        }
        match slot.as_mut() {
            Some((_, enc)) => enc.frame(chunk),
            None => Err(std::io::Error::other("zstd encoder unavailable")),
        }
    })
}

/// Decompresses one frame and checks it against the chunk digest and size.
pub(crate) fn decode_frame(
    frame: &[u8],
    entry_chunk: &Digest,
    raw_len: u32,
    path: &Path,
) -> Result<Vec<u8>> {
    let corrupt = |detail: String| Error::Corrupt {
        digest: *entry_chunk,
        path: path.to_path_buf(),
        detail,
    };
    let out = DECODER.with(|c| {
        let mut slot = c.borrow_mut();
        if slot.is_none() {
            *slot = Some(
                zstd::bulk::Decompressor::new().map_err(|e| corrupt(format!("zstd init: {e}")))?,
            );
        }
        match slot.as_mut() {
            Some(d) => d
                .decompress(frame, raw_len as usize)
                .map_err(|e| corrupt(format!("undecodable zstd frame: {e}"))),
            None => Err(corrupt("zstd decoder unavailable".into())),
        }
    })?;
    if out.len() != raw_len as usize {
        return Err(corrupt(format!("size {} instead of {raw_len}", out.len())));
    }
    let got = Digest::of(&out);
    if got != *entry_chunk {
        return Err(corrupt(format!("content hashes to {got}")));
    }
    Ok(out)
}

/// Reads a frame's raw bytes from a pack file.
pub(crate) fn read_frame(file: &File, path: &Path, offset: u64, len: u32) -> Result<Vec<u8>> {
    let mut buf = vec![0u8; len as usize];
    file.read_exact_at(&mut buf, offset).map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            Error::Malformed {
                what: "pack",
                path: path.to_path_buf(),
                detail: format!("truncated: frame at {offset}+{len} missing"),
            }
        } else {
            Error::io("read", path, e)
        }
    })?;
    Ok(buf)
}

/// A pack being written in a session temp directory.
pub(crate) struct PackWriter {
    pub(crate) path: PathBuf,
    file: File,
    len: u64,
    pub(crate) entries: Vec<PackEntry>,
    /// Bytes appended since the last background flush was started.
    unsynced: u64,
    /// A background `fdatasync` overlapping disk writeback with compression; joined before the final fsync.
    syncing: Option<std::thread::JoinHandle<std::io::Result<()>>>,
}

/// Start a background flush every this many bytes, so that the final fsync has little left to write.
const SYNC_EVERY: u64 = 8 << 20;

impl PackWriter {
    pub(crate) fn create(path: PathBuf) -> Result<Self> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .ctx("create", &path)?;
        Ok(Self {
            path,
            file,
            len: 0,
            entries: Vec::new(),
            unsynced: 0,
            syncing: None,
        })
    }

    /// Appends a frame; returns its offset.
    pub(crate) fn append(&mut self, chunk: Digest, frame: &[u8], raw_len: u32) -> Result<u64> {
        let offset = self.len;
        self.file
            .write_all_at(frame, offset)
            .ctx("write", &self.path)?;
        self.len += frame.len() as u64;
        self.unsynced += frame.len() as u64;
        self.entries.push(PackEntry {
            chunk,
            offset,
            frame_len: frame.len() as u32,
            raw_len,
        });
        if self.unsynced >= SYNC_EVERY && self.syncing.as_ref().is_none_or(|h| h.is_finished()) {
            self.join_sync()?;
            let f = self.file.try_clone().ctx("open", &self.path)?;
            self.syncing = Some(std::thread::spawn(move || f.sync_data()));
            self.unsynced = 0;
        }
        Ok(offset)
    }

    fn join_sync(&mut self) -> Result<()> {
        if let Some(h) = self.syncing.take() {
            let res = h
                .join()
                .unwrap_or_else(|_| Err(std::io::Error::other("fsync thread panicked")));
            res.ctx("fsync", &self.path)?;
        }
        Ok(())
    }

    /// The open temp file (to read back frames written in this session).
    pub(crate) fn file(&self) -> &File {
        &self.file
    }

    /// Fsyncs and returns the index (not yet renamed). The pack is named by the SHA-256 of its entry table
    /// ([`pack_digest`]): every frame is verified by its chunk digest when read, so hashing the compressed bytes
    /// once more would only cost time.
    pub(crate) fn finish(mut self) -> Result<(PathBuf, PackIndex)> {
        self.join_sync()?;
        self.file.sync_all().ctx("fsync", &self.path)?;
        let pack = pack_digest(&self.entries, self.len);
        Ok((
            self.path,
            PackIndex {
                pack,
                pack_size: self.len,
                entries: self.entries,
            },
        ))
    }
}

/// The name of a pack: SHA-256 over its size and entry table (chunk digest, offset, frame and raw lengths).
pub fn pack_digest(entries: &[PackEntry], pack_size: u64) -> Digest {
    let mut h = crate::digest::Hasher::new();
    h.update(&pack_size.to_le_bytes());
    for e in entries {
        h.update(&e.chunk.0);
        h.update(&e.offset.to_le_bytes());
        h.update(&e.frame_len.to_le_bytes());
        h.update(&e.raw_len.to_le_bytes());
    }
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_roundtrip_and_corruption() {
        let idx = PackIndex {
            pack: Digest::of(b"p"),
            pack_size: 100,
            entries: vec![PackEntry {
                chunk: Digest::of(b"c"),
                offset: 10,
                frame_len: 20,
                raw_len: 30,
            }],
        };
        let enc = idx.encode();
        let dec = PackIndex::decode(&enc, Path::new("x")).unwrap();
        assert_eq!(dec.entries, idx.entries);
        for i in [0, 9, 60, enc.len() - 1] {
            let mut bad = enc.clone();
            bad[i] ^= 1;
            assert!(
                PackIndex::decode(&bad, Path::new("x")).is_err(),
                "flip at {i}"
            );
        }
        assert!(PackIndex::decode(&enc[..enc.len() - 5], Path::new("x")).is_err());
    }

    #[test]
    fn frames_are_deterministic_and_verified() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let a = encode_frame(3, &data).unwrap();
        let b = FrameEncoder::new(3).unwrap().frame(&data).unwrap();
        assert_eq!(a, b);
        let d = Digest::of(&data);
        assert_eq!(
            decode_frame(&a, &d, data.len() as u32, Path::new("p")).unwrap(),
            data
        );
        assert!(decode_frame(&a, &Digest::of(b"x"), data.len() as u32, Path::new("p")).is_err());
        assert!(decode_frame(&a[..a.len() - 3], &d, data.len() as u32, Path::new("p")).is_err());
        // Two concatenated frames form a valid zstd stream.
        let mut both = a.clone();
        both.extend_from_slice(&b);
        let out = zstd::stream::decode_all(&both[..]).unwrap();
        assert_eq!(out.len(), 2 * data.len());
    }
}
