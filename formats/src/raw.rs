//! Raw disk export: the virtual disk byte for byte, written as a sparse file (holes where
//! the source has no data or a cluster is all zeros), atomically renamed into place.
//! This is also the reference every other writer is compared against in the tests
//! (`qemu-img compare -f raw`, formats.md §1.1 "Validation with qemu-img").

use std::io::{Seek, SeekFrom, Write};
use std::path::Path;

use crate::disk::{allocated_cluster_runs, batches, is_zero, read_clusters, DiskSource};
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
    let mut buf = Vec::new();
    let mut written = 0u64;
    {
        o.file()
            .set_len(size)
            .map_err(FormatError::io("resize", &tmp))?;
        let mut sa = o.writer();
        let mut w = std::io::BufWriter::with_capacity(1 << 20, &mut sa);
        for batch in batches(&runs, 64) {
            read_clusters(src, BITS, &batch, &mut buf)?;
            for (i, c) in buf.chunks(1 << BITS).enumerate() {
                let off = (batch.start + i as u64) << BITS;
                if off >= size || is_zero(c) {
                    continue;
                }
                let n = ((size - off) as usize).min(c.len());
                w.seek(SeekFrom::Start(off))
                    .map_err(FormatError::io("seek in", &tmp))?;
                w.write_all(&c[..n])
                    .map_err(FormatError::io("write", &tmp))?;
                written += n as u64;
            }
        }
        w.flush().map_err(FormatError::io("write", &tmp))?;
        drop(w);
        sa.finish().map_err(FormatError::io("sync", &tmp))?;
    }
    o.commit()?;
    Ok(written)
}
