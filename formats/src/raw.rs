//! Raw disk export: the virtual disk byte for byte. A regular file is written sparse (holes
//! where the source has no data or a cluster is all zeros) and renamed into place; an
//! in-place output ([`chasi_oci::output`]: a block device, a pipe, standard output) gets every
//! byte in order, zeros included, so a pipe receives the whole image and a reused disk keeps
//! no stale data. This is also the reference every other writer is compared against in the
//! tests (`qemu-img compare -f raw`, formats.md §1.1 "Validation with qemu-img").

use std::io::{Seek, SeekFrom, Write};
use std::path::Path;

use crate::disk::{allocated_cluster_runs, for_each_batch, DiskSource};
use crate::error::{FormatError, Result};
use chasi_oci::output::{Output, OutputError, OutputKind};

const BITS: u32 = 16;

/// Writes `src` to `out` as a raw image, durably; returns the bytes of data written.
pub fn write_raw(src: &dyn DiskSource, out: &Path) -> Result<u64> {
    write_raw_with(src, out, true)
}

/// [`write_raw`], with the final `fsync` optional.
pub fn write_raw_with(src: &dyn DiskSource, out: &Path, sync: bool) -> Result<u64> {
    let mut o = Output::create(out)?;
    o.set_sync(sync);
    let written = write_raw_to(src, &mut o)?;
    o.commit()?;
    Ok(written)
}

/// Writes `src` into an open output (sparse for a regular file, dense otherwise); returns
/// the bytes of data written. A block device smaller than the disk is refused first.
pub fn write_raw_to(src: &dyn DiskSource, o: &mut Output) -> Result<u64> {
    let path = o.path().to_path_buf();
    let size = src.size();
    if let Some(cap) = o.capacity()? {
        if cap < size {
            return Err(FormatError::Output(OutputError::Refused {
                path,
                reason: format!("the block device holds {cap} bytes, the disk needs {size}"),
            }));
        }
    }
    let sparse = o.kind() == OutputKind::File;
    if sparse {
        o.file()
            .set_len(size)
            .map_err(FormatError::io("resize", &path))?;
    }
    let runs = allocated_cluster_runs(src, BITS)?;
    let mut written = 0u64;
    let mut sa = o.writer();
    let mut w = Gaps {
        w: std::io::BufWriter::with_capacity(1 << 20, &mut sa),
        at: 0,
        sparse,
    };
    for_each_batch(src, BITS, &runs, 16, |batch, buf, nz| {
        // Consecutive non-zero clusters go out in one write.
        let mut i = 0;
        while i < nz.len() {
            let mut j = i + 1;
            while j < nz.len() && nz[j] == nz[j - 1] + 1 {
                j += 1;
            }
            let off = (batch.start + nz[i] as u64) << BITS;
            let end = ((batch.start + nz[j - 1] as u64 + 1) << BITS).min(size);
            let a = nz[i] << BITS;
            w.skip_to(off).map_err(FormatError::io("write", &path))?;
            w.put(&buf[a..a + (end - off) as usize])
                .map_err(FormatError::io("write", &path))?;
            written += end - off;
            i = j;
        }
        Ok(())
    })?;
    w.skip_to(size).map_err(FormatError::io("write", &path))?;
    w.w.flush().map_err(FormatError::io("write", &path))?;
    drop(w);
    sa.finish().map_err(FormatError::io("sync", &path))?;
    Ok(written)
}

/// Moves the write position forward: by seeking over a hole (sparse files) or by writing
/// its zeros (everything else).
struct Gaps<W: Write + Seek> {
    w: W,
    at: u64,
    sparse: bool,
}

impl<W: Write + Seek> Gaps<W> {
    fn skip_to(&mut self, off: u64) -> std::io::Result<()> {
        if off <= self.at {
            return Ok(());
        }
        if self.sparse {
            self.w.seek(SeekFrom::Start(off))?;
        } else {
            static ZEROS: [u8; 1 << 16] = [0; 1 << 16];
            let mut left = off - self.at;
            while left > 0 {
                let n = left.min(ZEROS.len() as u64) as usize;
                self.w.write_all(&ZEROS[..n])?;
                left -= n as u64;
            }
        }
        self.at = off;
        Ok(())
    }

    fn put(&mut self, data: &[u8]) -> std::io::Result<()> {
        self.w.write_all(data)?;
        self.at += data.len() as u64;
        Ok(())
    }
}
