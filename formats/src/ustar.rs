//! A minimal deterministic ustar writer for OVA packages.
//!
//! Why not the `tar` crate: an OVA has hard rules that are easier to guarantee by writing
//! the 512-byte headers directly (formats.md §1.3 "OVA tar rules"): plain ustar headers
//! (magic `ustar\0`, version `00`), regular files only, top-level names shorter than 100
//! bytes (no GNU long-name entries), **no PAX headers** (vSphere does not support them),
//! never sparse members, owner 0/0, mode 0644, a fixed mtime, and the GNU base-256 size
//! encoding only for members of 8 GiB or more. The archive ends with two zero blocks and
//! is padded to a 10240-byte record like GNU tar.

use std::io::{Read, Write};
use std::path::Path;

use crate::error::{FormatError, Result};

const BLOCK: usize = 512;
const RECORD: u64 = 10240;
const OCTAL_SIZE_LIMIT: u64 = 0o77777777777; // 11 octal digits

/// Writes ustar members in order.
pub struct UstarWriter<'a, W: Write> {
    w: W,
    written: u64,
    mtime: u64,
    label: &'a Path,
}

impl<'a, W: Write> UstarWriter<'a, W> {
    /// A writer whose members all get modification time `mtime`; `label` names the target
    /// in errors.
    pub fn new(w: W, mtime: u64, label: &'a Path) -> Self {
        UstarWriter {
            w,
            written: 0,
            mtime,
            label,
        }
    }

    fn put(&mut self, b: &[u8]) -> Result<()> {
        self.w
            .write_all(b)
            .map_err(FormatError::io("write", self.label))?;
        self.written += b.len() as u64;
        Ok(())
    }

    /// The 512-byte header of a regular file member.
    pub fn header(name: &str, size: u64, mtime: u64) -> Result<[u8; BLOCK]> {
        if name.is_empty()
            || name.len() >= 100
            || name.contains('/')
            || name.starts_with('.')
            || !name.is_ascii()
        {
            return Err(FormatError::option(
                "ova",
                format!("member name {name:?} must be 1-99 ASCII bytes, top-level, not hidden"),
            ));
        }
        let mut h = [0u8; BLOCK];
        h[..name.len()].copy_from_slice(name.as_bytes());
        h[100..108].copy_from_slice(b"0000644\0");
        h[108..116].copy_from_slice(b"0000000\0");
        h[116..124].copy_from_slice(b"0000000\0");
        if size <= OCTAL_SIZE_LIMIT {
            h[124..136].copy_from_slice(format!("{size:011o}\0").as_bytes());
        } else {
            // GNU base-256: high bit of the first byte set, big-endian value.
            h[124] = 0x80;
            h[128..136].copy_from_slice(&size.to_be_bytes());
        }
        if mtime > OCTAL_SIZE_LIMIT {
            return Err(FormatError::option(
                "ova",
                format!("mtime {mtime} does not fit ustar"),
            ));
        }
        h[136..148].copy_from_slice(format!("{mtime:011o}\0").as_bytes());
        h[148..156].copy_from_slice(b"        ");
        h[156] = b'0';
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        h[329..337].copy_from_slice(b"0000000\0");
        h[337..345].copy_from_slice(b"0000000\0");
        let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
        h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        Ok(h)
    }

    /// Appends a member from memory.
    pub fn append_bytes(&mut self, name: &str, data: &[u8]) -> Result<()> {
        self.append_reader(name, data.len() as u64, data)
    }

    /// Appends a member of exactly `size` bytes read from `r` (an error if it is shorter).
    pub fn append_reader(&mut self, name: &str, size: u64, mut r: impl Read) -> Result<()> {
        let h = Self::header(name, size, self.mtime)?;
        self.put(&h)?;
        let mut left = size;
        let mut buf = vec![0u8; 1 << 20];
        while left > 0 {
            let want = (buf.len() as u64).min(left) as usize;
            let n = r
                .read(&mut buf[..want])
                .map_err(FormatError::io("read member", name))?;
            if n == 0 {
                return Err(FormatError::ShortBacking {
                    path: name.into(),
                    offset: size - left,
                });
            }
            self.put(&buf[..n])?;
            left -= n as u64;
        }
        let pad = (BLOCK - (size % BLOCK as u64) as usize) % BLOCK;
        self.put(&vec![0u8; pad])?;
        Ok(())
    }

    /// Writes the end-of-archive blocks and record padding; returns the writer and the
    /// archive length.
    pub fn finish(mut self) -> Result<(W, u64)> {
        self.put(&[0u8; 2 * BLOCK])?;
        let pad = (RECORD - self.written % RECORD) % RECORD;
        self.put(&vec![0u8; pad as usize])?;
        self.w
            .flush()
            .map_err(FormatError::io("write", self.label))?;
        Ok((self.w, self.written))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_fields_and_checksum() {
        let h = UstarWriter::<Vec<u8>>::header("a.ovf", 1234, 0).unwrap();
        assert_eq!(&h[257..263], b"ustar\0");
        assert_eq!(&h[124..136], b"00000002322\0");
        assert_eq!(h[156], b'0');
        let mut c = h;
        c[148..156].copy_from_slice(b"        ");
        let sum: u32 = c.iter().map(|&b| u32::from(b)).sum();
        assert_eq!(&h[148..156], format!("{sum:06o}\0 ").as_bytes());
        let big = UstarWriter::<Vec<u8>>::header("big.vmdk", 9 << 30, 0).unwrap();
        assert_eq!(big[124], 0x80);
        assert!(UstarWriter::<Vec<u8>>::header("dir/x", 1, 0).is_err());
        assert!(UstarWriter::<Vec<u8>>::header(&"x".repeat(100), 1, 0).is_err());
    }

    fn sha256(bytes: &[u8]) -> String {
        use sha2::Digest as _;
        hex::encode(sha2::Sha256::digest(bytes))
    }

    /// The bytes of the OVA tar, pinned: recorded before the writer moved into `chasi-tar`,
    /// they prove the move byte-identical (the whole package is pinned in `tests/ova.rs`).
    #[test]
    fn member_bytes_are_pinned() {
        let p = Path::new("pinned.ova");
        let mut w = UstarWriter::new(Vec::new(), 1_700_000_000, p);
        w.append_bytes("vm.ovf", b"<Envelope/>").unwrap();
        w.append_bytes("vm.mf", &[]).unwrap();
        w.append_reader("vm-disk1.vmdk", 1536, &[9u8; 1536][..])
            .unwrap();
        let (out, len) = w.finish().unwrap();
        assert_eq!(len, 10240);
        assert_eq!(
            sha256(&out),
            "7ff4759de546bec9ed3c17dd5a297073ca0e293b8e20579c0035487d3a88ef9f"
        );
        let big = UstarWriter::<Vec<u8>>::header("big.vmdk", 9 << 30, 1_700_000_000).unwrap();
        assert_eq!(
            sha256(&big),
            "3bbd5ad19347e56159638103462abab0345a4d1a3e772fadd58f2a4a81c14eea"
        );
    }

    #[test]
    fn short_reader_is_an_error() {
        let p = Path::new("t");
        let mut w = UstarWriter::new(Vec::new(), 0, p);
        assert!(w.append_reader("x", 10, &b"abc"[..]).is_err());
    }
}
