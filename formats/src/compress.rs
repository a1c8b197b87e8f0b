//! Cluster compressors shared by the QCOW2 and VMDK writers, with per-thread reusable
//! compressor state and an order-preserving parallel map.
//!
//! Facts relied on (formats.md §1.1 "Compression", §1.2 "Stream layout"): QCOW2 zlib
//! clusters are *raw* deflate with a 4 KiB window (qemu inflates with windowBits −12), QCOW2
//! zstd clusters are one plain zstd frame, and VMDK grains are zlib (RFC 1950) streams.

use std::cell::RefCell;

use flate2::{Compress, Compression, FlushCompress, Status};

use crate::error::{FormatError, Result};

/// A cluster codec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Codec {
    /// Raw deflate, 4 KiB window (QCOW2 compression type 0).
    RawDeflate12(u32),
    /// zlib-wrapped deflate, 32 KiB window (VMDK grains).
    Zlib(u32),
    /// One zstd frame (QCOW2 compression type 1).
    Zstd(i32),
}

/// (zlib wrapper, window bits, level) of a cached deflate state.
type DeflateKey = (bool, u8, u32);

thread_local! {
    static DEFLATE: RefCell<Option<(DeflateKey, Compress)>> = const { RefCell::new(None) };
    static ZSTD: RefCell<Option<(i32, zstd::bulk::Compressor<'static>)>> = const { RefCell::new(None) };
}

impl Codec {
    fn name(self) -> &'static str {
        match self {
            Codec::RawDeflate12(_) => "deflate",
            Codec::Zlib(_) => "zlib",
            Codec::Zstd(_) => "zstd",
        }
    }

    /// Compresses `input`; returns `None` when the result would not be shorter than `limit`.
    pub(crate) fn compress(
        self,
        input: &[u8],
        limit: usize,
        offset: u64,
    ) -> Result<Option<Vec<u8>>> {
        let fail = |m: String| FormatError::Compress {
            codec: self.name(),
            offset,
            message: m,
        };
        match self {
            Codec::RawDeflate12(level) | Codec::Zlib(level) => {
                let key = match self {
                    Codec::RawDeflate12(_) => (false, 12u8, level),
                    _ => (true, 15u8, level),
                };
                DEFLATE.with(|cell| {
                    let mut slot = cell.borrow_mut();
                    let c = match slot.as_mut() {
                        Some((k, c)) if *k == key => {
                            c.reset();
                            c
                        }
                        _ => {
                            let c = Compress::new_with_window_bits(
                                Compression::new(level),
                                key.0,
                                key.1,
                            );
                            &mut slot.insert((key, c)).1
                        }
                    };
                    // Room for the worst case (deflate's bound plus the wrapper), so the
                    // stream always finishes in one call; the size test comes after.
                    let bound = input.len() + input.len() / 8 + 64;
                    let mut out = vec![0u8; bound];
                    let status = c
                        .compress(input, &mut out, FlushCompress::Finish)
                        .map_err(|e| fail(e.to_string()))?;
                    if status != Status::StreamEnd {
                        return Err(fail(format!("stream did not end ({status:?})")));
                    }
                    let n = c.total_out() as usize;
                    if n >= limit {
                        return Ok(None);
                    }
                    out.truncate(n);
                    Ok(Some(out))
                })
            }
            Codec::Zstd(level) => ZSTD.with(|cell| {
                let mut slot = cell.borrow_mut();
                let c = match slot.as_mut() {
                    Some((l, c)) if *l == level => c,
                    _ => {
                        let c =
                            zstd::bulk::Compressor::new(level).map_err(|e| fail(e.to_string()))?;
                        &mut slot.insert((level, c)).1
                    }
                };
                let mut out = Vec::with_capacity(limit.saturating_sub(1));
                match c.compress_to_buffer(input, &mut out) {
                    Ok(_) => Ok(Some(out)),
                    // "Destination buffer is too small": not worth compressing.
                    Err(_) if out.capacity() < zstd::zstd_safe::compress_bound(input.len()) => {
                        Ok(None)
                    }
                    Err(e) => Err(fail(e.to_string())),
                }
            }),
        }
    }
}

/// Compresses each `(guest offset, bytes)` job on `pool`, preserving order.
pub(crate) fn par_compress(
    pool: &rayon::ThreadPool,
    codec: Codec,
    jobs: &[(u64, &[u8])],
    limit: usize,
) -> Result<Vec<Option<Vec<u8>>>> {
    use rayon::prelude::*;
    pool.install(|| {
        jobs.par_iter()
            .map(|(off, data)| codec.compress(data, limit, *off))
            .collect()
    })
}

/// A thread pool of `threads` workers (at least one).
pub(crate) fn pool(threads: usize) -> Result<rayon::ThreadPool> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads.max(1))
        .thread_name(|i| format!("chasi-compress-{i}"))
        .build()
        .map_err(|e| FormatError::option("compression", format!("cannot start threads: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn raw_deflate_roundtrip_and_limit() {
        let data: Vec<u8> = (0..65536u32).map(|i| (i % 251) as u8).collect();
        let c = Codec::RawDeflate12(6)
            .compress(&data, 65536, 0)
            .unwrap()
            .unwrap();
        assert!(c.len() < 65536);
        let mut d = Vec::new();
        flate2::read::DeflateDecoder::new(&c[..])
            .read_to_end(&mut d)
            .unwrap();
        assert_eq!(d, data);
        // Pseudo-random data does not shrink: reported as None.
        let mut x = 1u64;
        let rnd: Vec<u8> = (0..65536)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        assert!(Codec::RawDeflate12(6)
            .compress(&rnd, 65536, 0)
            .unwrap()
            .is_none());
        assert!(Codec::Zstd(3).compress(&rnd, 65536, 0).unwrap().is_none());
        let z = Codec::Zstd(3).compress(&data, 65536, 0).unwrap().unwrap();
        assert_eq!(zstd::bulk::decompress(&z, 65536).unwrap(), data);
        let zl = Codec::Zlib(6).compress(&rnd, 80000, 0).unwrap().unwrap();
        let mut d = Vec::new();
        flate2::read::ZlibDecoder::new(&zl[..])
            .read_to_end(&mut d)
            .unwrap();
        assert_eq!(d, rnd);
    }
}
