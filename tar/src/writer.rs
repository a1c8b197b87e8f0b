//! The streaming writer: header blocks, data, padding, the end of the archive.

use std::io::{self, Read, Write};

use crate::entry::{EntryKind, TarEntry};
use crate::error::TarError;
use crate::format::Format;
use crate::header::{encode_headers, padding};

/// Streaming writer of tar entries with deterministic headers, in one [`Format`].
pub struct TarWriter<W: Write> {
    out: W,
    written: u64,
    format: Format,
    /// File data passes through here: reads of this size, not `io::copy`'s 8 KiB (a layer of 90 MB would
    /// otherwise take over ten thousand reads).
    buf: Vec<u8>,
}

/// Bytes read from an entry's data at a time.
const COPY_BUF: usize = 256 * 1024;

impl<W: Write> TarWriter<W> {
    /// A writer of layer tars ([`Format::LAYER`]).
    pub fn new(out: W) -> Self {
        Self::with_format(out, Format::LAYER)
    }

    /// A writer of archives in `format`.
    pub fn with_format(out: W, format: Format) -> Self {
        Self {
            out,
            written: 0,
            format,
            buf: Vec::new(),
        }
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    fn put(&mut self, data: &[u8]) -> io::Result<()> {
        self.out.write_all(data)?;
        self.written += data.len() as u64;
        Ok(())
    }

    /// Writes one entry; for a regular file `data` must yield at least `entry.size` bytes
    /// (exactly that many are read; a shorter reader is a [`TarError::Short`]).
    pub fn append(&mut self, entry: &TarEntry, data: Option<&mut dyn Read>) -> io::Result<()> {
        let headers = encode_headers(entry, &self.format)?;
        self.put(&headers)?;
        let size = entry.size;
        if entry.kind != EntryKind::File || size == 0 {
            return Ok(());
        }
        let r = data.ok_or(TarError::NoData)?;
        let mut buf = std::mem::take(&mut self.buf);
        buf.resize(COPY_BUF, 0);
        let copied = self.copy_data(r, size, &mut buf);
        self.buf = buf;
        let n = copied?;
        if n != size {
            return Err(TarError::Short {
                path: String::from_utf8_lossy(&entry.path).into_owned(),
                got: n,
                size,
            }
            .into());
        }
        self.put(&[0u8; 512][..padding(size)])
    }

    /// Writes the end of the archive (two zero blocks, then zeros to the format's record
    /// size) and returns the output.
    pub fn finish(self) -> io::Result<W> {
        self.finish_sized().map(|(out, _)| out)
    }

    /// [`TarWriter::finish`], also returning the archive's length in bytes.
    pub fn finish_sized(mut self) -> io::Result<(W, u64)> {
        self.put(&[0u8; 1024])?;
        let record = self.format.record_size.max(512);
        let pad = (record - self.written % record) % record;
        self.put(&vec![0u8; pad as usize])?;
        self.out.flush()?;
        Ok((self.out, self.written))
    }
}

impl<W: Write> TarWriter<W> {
    /// Copies at most `size` bytes of `r` into the archive; returns how many there were.
    fn copy_data(&mut self, r: &mut dyn Read, size: u64, buf: &mut [u8]) -> io::Result<u64> {
        let mut n = 0u64;
        while n < size {
            let want = buf.len().min((size - n) as usize);
            match r.read(&mut buf[..want]) {
                Ok(0) => break,
                Ok(k) => {
                    self.put(&buf[..k])?;
                    n += k as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(n)
    }
}
