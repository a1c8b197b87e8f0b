//! Virtual disks as the writers see them: a size, random reads, and a map of where data is.
//!
//! Every writer in this crate streams from a [`DiskSource`]. A disk is a sorted list of
//! extents (byte ranges backed by a file region or an in-memory buffer); everything outside
//! the extents reads as zeros. That is how an exported disk is put together without ever
//! materialising it: the GPT structures are small buffers, the ESP and root filesystem are
//! regions of image files built elsewhere.
//!
//! Why the allocation map matters (formats.md §1.1 "Writing a sparse qcow2 while streaming a
//! raw disk", §1.2 "Zero grains", §1.4 "all-zero clusters"): QCOW2 and VMDK leave zero
//! clusters unallocated and VMA marks zero blocks in its mask, so a writer that can skip a
//! hole without reading it is both faster and produces sparse output. File-backed extents
//! ask the kernel with `SEEK_DATA`/`SEEK_HOLE` (through `rustix`, no `unsafe`), and fall
//! back to "all data" on file systems that do not support it; writers still test every
//! cluster they read for zeros with [`is_zero`], so an over-approximate map costs only time.

use std::fs::File;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{FormatError, Result};

/// A read-only virtual disk.
///
/// Implementations must be usable from several threads (writers compress in parallel).
pub trait DiskSource: Send + Sync {
    /// Virtual size in bytes.
    fn size(&self) -> u64;

    /// Fills `buf` with the bytes at `offset`; unallocated bytes read as zeros.
    /// Fails with [`FormatError::OutOfRange`] if the range ends past [`DiskSource::size`].
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()>;

    /// Sorted, disjoint byte ranges outside which the disk reads as zeros.
    /// May over-approximate (a range may contain zeros), never under-approximate.
    fn allocated_ranges(&self) -> Result<Vec<Range<u64>>>;
}

impl<T: DiskSource + ?Sized> DiskSource for &T {
    fn size(&self) -> u64 {
        (**self).size()
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        (**self).read_at(offset, buf)
    }
    fn allocated_ranges(&self) -> Result<Vec<Range<u64>>> {
        (**self).allocated_ranges()
    }
}

impl<T: DiskSource + ?Sized> DiskSource for Arc<T> {
    fn size(&self) -> u64 {
        (**self).size()
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        (**self).read_at(offset, buf)
    }
    fn allocated_ranges(&self) -> Result<Vec<Range<u64>>> {
        (**self).allocated_ranges()
    }
}

/// What an extent's bytes come from.
#[derive(Debug, Clone)]
pub enum Backing {
    /// Bytes held in memory (GPT structures, small images in tests).
    Bytes(Arc<[u8]>),
    /// A region of a file, starting at `offset` within it.
    File {
        /// The open file (shared between extents and threads; reads use `pread`).
        file: Arc<File>,
        /// Its path, for error messages.
        path: PathBuf,
        /// Where the region starts in the file.
        offset: u64,
    },
}

/// A byte range of the virtual disk and its backing.
#[derive(Debug, Clone)]
pub struct Extent {
    /// Disk offset where the extent starts.
    pub offset: u64,
    /// Length in bytes.
    pub len: u64,
    /// Where the bytes come from.
    pub backing: Backing,
}

impl Extent {
    fn end(&self) -> u64 {
        self.offset + self.len
    }
}

/// A disk assembled from extents; the gaps read as zeros.
#[derive(Debug, Clone)]
pub struct ExtentDisk {
    size: u64,
    extents: Vec<Extent>,
}

impl ExtentDisk {
    /// An all-zero disk of `size` bytes.
    pub fn new(size: u64) -> Self {
        ExtentDisk {
            size,
            extents: Vec::new(),
        }
    }

    /// A disk whose content is a raw image file (its length is the disk size).
    pub fn from_raw_file(path: &Path) -> Result<Self> {
        let file = File::open(path).map_err(FormatError::io("open", path))?;
        let len = file
            .metadata()
            .map_err(FormatError::io("stat", path))?
            .len();
        let mut disk = ExtentDisk::new(len);
        disk.push(Extent {
            offset: 0,
            len,
            backing: Backing::File {
                file: Arc::new(file),
                path: path.to_path_buf(),
                offset: 0,
            },
        })?;
        Ok(disk)
    }

    /// The extents, sorted by offset.
    pub fn extents(&self) -> &[Extent] {
        &self.extents
    }

    /// Places an in-memory buffer at `offset`.
    pub fn add_bytes(&mut self, offset: u64, data: impl Into<Arc<[u8]>>) -> Result<()> {
        let data: Arc<[u8]> = data.into();
        let len = data.len() as u64;
        self.push(Extent {
            offset,
            len,
            backing: Backing::Bytes(data),
        })
    }

    /// Places `len` bytes of the file at `path`, starting at `file_offset`, at disk `offset`.
    pub fn add_file_region(
        &mut self,
        offset: u64,
        path: &Path,
        file_offset: u64,
        len: u64,
    ) -> Result<()> {
        let file = File::open(path).map_err(FormatError::io("open", path))?;
        let flen = file
            .metadata()
            .map_err(FormatError::io("stat", path))?
            .len();
        if file_offset.checked_add(len).is_none_or(|e| e > flen) {
            return Err(FormatError::ShortBacking {
                path: path.to_path_buf(),
                offset: flen,
            });
        }
        self.push(Extent {
            offset,
            len,
            backing: Backing::File {
                file: Arc::new(file),
                path: path.to_path_buf(),
                offset: file_offset,
            },
        })
    }

    /// Places the whole file at `path` at disk `offset`; returns its length.
    pub fn add_file(&mut self, offset: u64, path: &Path) -> Result<u64> {
        let len = std::fs::metadata(path)
            .map_err(FormatError::io("stat", path))?
            .len();
        self.add_file_region(offset, path, 0, len)?;
        Ok(len)
    }

    /// Adds an extent, keeping the list sorted; rejects overlaps and extents past the end.
    pub fn push(&mut self, extent: Extent) -> Result<()> {
        let bad = || FormatError::BadExtent {
            offset: extent.offset,
            len: extent.len,
            size: self.size,
        };
        let end = extent.offset.checked_add(extent.len).ok_or_else(bad)?;
        if end > self.size {
            return Err(bad());
        }
        if extent.len == 0 {
            return Ok(());
        }
        let idx = self.extents.partition_point(|e| e.offset < extent.offset);
        if idx > 0 && self.extents[idx - 1].end() > extent.offset {
            return Err(bad());
        }
        if idx < self.extents.len() && self.extents[idx].offset < end {
            return Err(bad());
        }
        self.extents.insert(idx, extent);
        Ok(())
    }
}

impl DiskSource for ExtentDisk {
    fn size(&self) -> u64 {
        self.size
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        let len = buf.len() as u64;
        if offset.checked_add(len).is_none_or(|e| e > self.size) {
            return Err(FormatError::OutOfRange {
                offset,
                len,
                size: self.size,
            });
        }
        let end = offset + len;
        // First extent that ends after `offset`.
        let first = self.extents.partition_point(|e| e.end() <= offset);
        // Bytes before this position that no extent covered are zero-filled as we go.
        let mut filled = offset;
        for ext in &self.extents[first..] {
            if ext.offset >= end {
                break;
            }
            let from = ext.offset.max(offset);
            buf[(filled - offset) as usize..(from - offset) as usize].fill(0);
            filled = ext.end().min(end);
            let to = ext.end().min(end);
            let dst = &mut buf[(from - offset) as usize..(to - offset) as usize];
            let within = from - ext.offset;
            match &ext.backing {
                Backing::Bytes(data) => {
                    dst.copy_from_slice(&data[within as usize..(within as usize + dst.len())]);
                }
                Backing::File {
                    file,
                    path,
                    offset: foff,
                } => {
                    let at = foff + within;
                    file.read_exact_at(dst, at).map_err(|e| {
                        if e.kind() == std::io::ErrorKind::UnexpectedEof {
                            FormatError::ShortBacking {
                                path: path.clone(),
                                offset: at,
                            }
                        } else {
                            FormatError::Io {
                                action: "read",
                                path: path.clone(),
                                source: e,
                            }
                        }
                    })?;
                }
            }
        }
        buf[(filled - offset) as usize..].fill(0);
        Ok(())
    }

    fn allocated_ranges(&self) -> Result<Vec<Range<u64>>> {
        let mut out: Vec<Range<u64>> = Vec::new();
        for ext in &self.extents {
            match &ext.backing {
                Backing::Bytes(_) => push_merged(&mut out, ext.offset..ext.end()),
                Backing::File { file, path, offset } => {
                    for r in file_data_ranges(file, path, *offset, ext.len)? {
                        push_merged(&mut out, (r.start + ext.offset)..(r.end + ext.offset));
                    }
                }
            }
        }
        Ok(out)
    }
}

fn push_merged(out: &mut Vec<Range<u64>>, r: Range<u64>) {
    if r.start >= r.end {
        return;
    }
    if let Some(last) = out.last_mut() {
        if last.end >= r.start {
            last.end = last.end.max(r.end);
            return;
        }
    }
    out.push(r);
}

/// Data ranges of `file[start..start+len]`, relative to `start`, from `SEEK_DATA`/`SEEK_HOLE`.
/// Falls back to the whole region when the file system cannot answer.
pub fn file_data_ranges(file: &File, path: &Path, start: u64, len: u64) -> Result<Vec<Range<u64>>> {
    use rustix::fs::{seek, SeekFrom};
    use rustix::io::Errno;
    let end = start + len;
    let mut out = Vec::new();
    let mut pos = start;
    while pos < end {
        let data = match seek(file, SeekFrom::Data(pos)) {
            Ok(d) => d,
            Err(Errno::NXIO) => break,
            Err(Errno::INVAL) | Err(Errno::NOTSUP) | Err(Errno::OPNOTSUPP) if out.is_empty() => {
                return Ok(std::iter::once(0..len).collect());
            }
            Err(e) => {
                return Err(FormatError::Io {
                    action: "seek (SEEK_DATA) in",
                    path: path.to_path_buf(),
                    source: e.into(),
                })
            }
        };
        if data >= end {
            break;
        }
        let hole = match seek(file, SeekFrom::Hole(data)) {
            Ok(h) => h,
            Err(Errno::NXIO) => end,
            Err(e) => {
                return Err(FormatError::Io {
                    action: "seek (SEEK_HOLE) in",
                    path: path.to_path_buf(),
                    source: e.into(),
                })
            }
        };
        let hole = hole.min(end).max(data + 1);
        out.push((data - start)..(hole - start));
        pos = hole;
    }
    Ok(out)
}

/// True when every byte of `buf` is zero (vectorises well: ORs 64-byte chunks).
pub fn is_zero(buf: &[u8]) -> bool {
    let mut chunks = buf.chunks_exact(64);
    for c in &mut chunks {
        if c.iter().fold(0u8, |a, &b| a | b) != 0 {
            return false;
        }
    }
    chunks.remainder().iter().all(|&b| b == 0)
}

/// Runs of cluster indices (cluster size `1 << bits`) that intersect the allocated ranges
/// of `src`, merged and sorted. Clusters outside these runs are known to read as zeros.
pub fn allocated_cluster_runs(src: &dyn DiskSource, bits: u32) -> Result<Vec<Range<u64>>> {
    let size = src.size();
    let mut runs: Vec<Range<u64>> = Vec::new();
    for r in src.allocated_ranges()? {
        let start = r.start.min(size);
        let end = r.end.min(size);
        if start >= end {
            continue;
        }
        let first = start >> bits;
        let last = (end - 1) >> bits;
        push_merged(&mut runs, first..last + 1);
    }
    Ok(runs)
}

/// Splits cluster runs into batches of at most `max` clusters, in order.
pub(crate) fn batches(runs: &[Range<u64>], max: u64) -> impl Iterator<Item = Range<u64>> + '_ {
    let max = max.max(1);
    runs.iter().flat_map(move |r| {
        let mut s = r.start;
        std::iter::from_fn(move || {
            if s >= r.end {
                return None;
            }
            let e = (s + max).min(r.end);
            let out = s..e;
            s = e;
            Some(out)
        })
    })
}

/// Reads clusters `batch` of `src` into `buf` (resized), zero-padding past the disk end.
pub(crate) fn read_clusters(
    src: &dyn DiskSource,
    bits: u32,
    batch: &Range<u64>,
    buf: &mut Vec<u8>,
) -> Result<()> {
    let cs = 1u64 << bits;
    let start = batch.start << bits;
    let want = (batch.end - batch.start) * cs;
    buf.resize(want as usize, 0);
    let avail = src.size().saturating_sub(start).min(want);
    src.read_at(start, &mut buf[..avail as usize])?;
    buf[avail as usize..].fill(0);
    Ok(())
}

/// Reads the clusters of `runs` in batches of at most `max` on a background thread (four
/// batches ahead, so reading overlaps the caller's compression and writing) and calls `f`
/// in order with the batch, its buffer (zero-padded past the disk end) and the indices of
/// the clusters in it that are inside the disk and not all zeros.
pub(crate) fn for_each_batch(
    src: &dyn DiskSource,
    bits: u32,
    runs: &[Range<u64>],
    max: u64,
    mut f: impl FnMut(&Range<u64>, &[u8], &[usize]) -> Result<()>,
) -> Result<()> {
    use std::sync::mpsc::{channel, sync_channel};
    type Batch = (Range<u64>, Vec<u8>, Vec<usize>);
    let size = src.size();
    let (tx, rx) = sync_channel::<Result<Batch>>(4);
    let (recycle_tx, recycle_rx) = channel::<Vec<u8>>();
    std::thread::scope(|scope| {
        scope.spawn(move || {
            for batch in batches(runs, max) {
                let mut buf = recycle_rx.try_recv().unwrap_or_default();
                let msg = read_clusters(src, bits, &batch, &mut buf).map(|()| {
                    let nz = buf
                        .chunks(1 << bits)
                        .enumerate()
                        .filter(|(i, c)| ((batch.start + *i as u64) << bits) < size && !is_zero(c))
                        .map(|(i, _)| i)
                        .collect();
                    (batch, buf, nz)
                });
                let failed = msg.is_err();
                if tx.send(msg).is_err() || failed {
                    break;
                }
            }
        });
        for msg in rx {
            let (batch, buf, nz) = msg?;
            f(&batch, &buf, &nz)?;
            let _ = recycle_tx.send(buf);
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Seek, SeekFrom, Write};

    #[test]
    fn extents_read_and_zero_fill() {
        let mut d = ExtentDisk::new(100);
        d.add_bytes(10, vec![1u8; 5]).unwrap();
        d.add_bytes(20, vec![2u8; 5]).unwrap();
        let mut b = vec![9u8; 30];
        d.read_at(0, &mut b).unwrap();
        assert_eq!(&b[..10], &[0; 10]);
        assert_eq!(&b[10..15], &[1; 5]);
        assert_eq!(&b[15..20], &[0; 5]);
        assert_eq!(&b[20..25], &[2; 5]);
        assert!(d.read_at(90, &mut b).is_err());
        assert!(
            d.add_bytes(12, vec![3u8; 2]).is_err(),
            "overlap must be rejected"
        );
        assert!(
            d.add_bytes(98, vec![3u8; 5]).is_err(),
            "past the end must be rejected"
        );
        assert_eq!(d.allocated_ranges().unwrap(), vec![10..15, 20..25]);
    }

    #[test]
    fn sparse_file_ranges() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sparse.img");
        let mut f = File::create(&p).unwrap();
        f.set_len(8 << 20).unwrap();
        f.seek(SeekFrom::Start(3 << 20)).unwrap();
        f.write_all(&[7u8; 4096]).unwrap();
        drop(f);
        let d = ExtentDisk::from_raw_file(&p).unwrap();
        let r = d.allocated_ranges().unwrap();
        assert!(!r.is_empty());
        assert!(r.iter().any(|r| r.contains(&(3 << 20))));
        let total: u64 = r.iter().map(|r| r.end - r.start).sum();
        // tmpfs and ext4 report holes; a file system without SEEK_DATA reports everything.
        assert!(total <= 8 << 20);
        let runs = allocated_cluster_runs(&d, 16).unwrap();
        assert!(runs.iter().any(|r| r.contains(&((3 << 20) >> 16))));
        let mut b = vec![0u8; 4096];
        d.read_at(3 << 20, &mut b).unwrap();
        assert!(b.iter().all(|&x| x == 7));
    }

    #[test]
    fn zero_detection() {
        let mut b = vec![0u8; 65536 + 3];
        assert!(is_zero(&b));
        b[65536 + 2] = 1;
        assert!(!is_zero(&b));
        b[65536 + 2] = 0;
        b[100] = 1;
        assert!(!is_zero(&b));
    }

    #[test]
    fn batching() {
        let runs = vec![0..5, 10..11];
        let b: Vec<_> = batches(&runs, 2).collect();
        assert_eq!(b, vec![0..2, 2..4, 4..5, 10..11]);
    }
}
