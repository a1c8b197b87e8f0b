//! Reading a layer's uncompressed tar back from its chunks: as a stream whose DiffID and size are checked at the
//! end, or at random offsets (for flattening); every chunk touched is verified.

use super::handle::Store;
use super::records::LayerIndex;
use crate::digest::Hasher;
use crate::error::{Error, Result};
use std::io::{self, Read};
use std::sync::Arc;

pub(crate) fn to_io(e: &Error) -> io::Error {
    match e {
        Error::Corrupt { .. } | Error::CorruptChunk { .. } | Error::Malformed { .. } => {
            io::Error::new(io::ErrorKind::InvalidData, crate::error::chain(e))
        }
        other => io::Error::other(crate::error::chain(other)),
    }
}

/// Streams a layer's uncompressed tar from its chunks, each verified; the DiffID is checked at the end.
/// Also supports random access ([`LayerReader::read_at`]) for flattening.
pub struct LayerReader<'a> {
    store: &'a Store,
    index: LayerIndex,
    starts: Vec<u64>,
    next: usize,
    cur: Vec<u8>,
    pos: usize,
    hasher: Option<Hasher>,
    cache: Option<(usize, Arc<Vec<u8>>)>,
}

impl<'a> LayerReader<'a> {
    pub(crate) fn new(store: &'a Store, index: LayerIndex) -> Self {
        let mut starts = Vec::with_capacity(index.chunks.len());
        let mut o = 0u64;
        for c in &index.chunks {
            starts.push(o);
            o += c.len as u64;
        }
        Self {
            store,
            index,
            starts,
            next: 0,
            cur: Vec::new(),
            pos: 0,
            hasher: Some(Hasher::new()),
            cache: None,
        }
    }

    /// Streams without the SHA-256 of the whole tar at the end: for readers that need the bytes, not a proof of
    /// the DiffID, since every chunk read is still verified against its BLAKE3 name (and the DiffID names exactly
    /// the content those chunks make up). Saves a SHA-256 pass per read of a layer.
    pub fn chunk_verified_only(mut self) -> Self {
        self.hasher = None;
        self
    }

    /// The layer's index.
    pub fn index(&self) -> &LayerIndex {
        &self.index
    }

    fn chunk(&mut self, i: usize) -> Result<Arc<Vec<u8>>> {
        if let Some((ci, data)) = &self.cache {
            if *ci == i {
                return Ok(data.clone());
            }
        }
        let data = Arc::new(self.store.read_chunk(&self.index.chunks[i])?);
        self.cache = Some((i, data.clone()));
        Ok(data)
    }

    /// Reads `buf.len()` bytes of the uncompressed tar at `offset` (each chunk touched is verified).
    pub fn read_at(&mut self, mut offset: u64, mut buf: &mut [u8]) -> Result<()> {
        while !buf.is_empty() {
            let i = match self.starts.binary_search(&offset) {
                Ok(i) => i,
                Err(0) => return Err(self.short(offset)),
                Err(i) => i - 1,
            };
            if i >= self.index.chunks.len() {
                return Err(self.short(offset));
            }
            let data = self.chunk(i)?;
            let within = (offset - self.starts[i]) as usize;
            if within >= data.len() {
                return Err(self.short(offset));
            }
            let n = buf.len().min(data.len() - within);
            buf[..n].copy_from_slice(&data[within..within + n]);
            buf = &mut buf[n..];
            offset += n as u64;
        }
        Ok(())
    }

    fn short(&self, offset: u64) -> Error {
        Error::Corrupt {
            digest: self.index.diff_id,
            path: self.store.layer_path(&self.index.diff_id),
            detail: format!("read past the end of the layer at offset {offset}"),
        }
    }
}

impl Read for LayerReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.cur.len() {
            if self.next >= self.index.chunks.len() {
                if let Some(h) = self.hasher.take() {
                    let (len, d) = (h.len(), h.finish());
                    if d != self.index.diff_id || len != self.index.size {
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            format!(
                                "layer {} reassembles to {d} ({len} bytes)",
                                self.index.diff_id
                            ),
                        ));
                    }
                }
                return Ok(0);
            }
            self.cur = self
                .store
                .read_chunk(&self.index.chunks[self.next])
                .map_err(|e| to_io(&e))?;
            if let Some(h) = self.hasher.as_mut() {
                h.update(&self.cur);
            }
            self.pos = 0;
            self.next += 1;
        }
        let n = buf.len().min(self.cur.len() - self.pos);
        buf[..n].copy_from_slice(&self.cur[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}
