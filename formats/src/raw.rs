//! Raw disk export: the virtual disk byte for byte, written as a sparse file (holes where
//! the source has no data or a cluster is all zeros), atomically renamed into place.
//! This is also the reference every other writer is compared against in the tests
//! (`qemu-img compare -f raw`, formats.md §1.1 "Validation with qemu-img").

use std::io::{Seek, SeekFrom, Write};
use std::path::Path;

use crate::disk::{allocated_cluster_runs, for_each_batch, DiskSource};
use crate::error::{FormatError, Result};
use crate::output::AtomicOutput;

const BITS: u32 = 16;

/// Writes `src` to `out` as a sparse raw image, durably; returns the bytes of data written.
pub fn write_raw(src: &dyn DiskSource, out: &Path) -> Result<u64> {
    write_raw_with(src, out, true)
}

/// [`write_raw`], with the final `fsync` optional.
pub fn write_raw_with(src: &dyn DiskSource, out: &Path, sync: bool) -> Result<u64> {
    let mut o = AtomicOutput::create(out)?;
    o.set_sync(sync);
    let tmp = o.temp_path().to_path_buf();
    let size = src.size();
    let runs = allocated_cluster_runs(src, BITS)?;
    let mut written = 0u64;
    {
        o.file()
            .set_len(size)
            .map_err(FormatError::io("resize", &tmp))?;
        let mut sa = o.writer();
        let mut w = std::io::BufWriter::with_capacity(1 << 20, &mut sa);
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
                w.seek(SeekFrom::Start(off))
                    .map_err(FormatError::io("seek in", &tmp))?;
                w.write_all(&buf[a..a + (end - off) as usize])
                    .map_err(FormatError::io("write", &tmp))?;
                written += end - off;
                i = j;
            }
            Ok(())
        })?;
        w.flush().map_err(FormatError::io("write", &tmp))?;
        drop(w);
        sa.finish().map_err(FormatError::io("sync", &tmp))?;
    }
    o.commit()?;
    Ok(written)
}
