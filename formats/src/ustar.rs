//! The OVA member rules on top of `chasi-tar`'s deterministic writer.
//!
//! An OVA has hard rules (formats.md §1.3 "OVA tar rules"): plain ustar headers (magic
//! `ustar\0`, version `00`), regular files only, top-level names shorter than 100 bytes (no
//! GNU long-name entries), **no PAX headers** (vSphere does not support them), never sparse
//! members, owner 0/0, mode 0644, a fixed mtime, and the GNU base-256 size encoding only for
//! members of 8 GiB or more; the archive ends with two zero blocks and is padded to a
//! 10240-byte record like GNU tar. The encoding is [`chasi_tar::Format::OVA`]; this module
//! checks member names and fixes owners, mode and mtime.

use std::io::{self, Read, Write};
use std::path::Path;

use chasi_tar::{encode_headers, Format, TarEntry, TarError, TarWriter};

use crate::error::{FormatError, Result};

const BLOCK: usize = 512;
const OCTAL_SIZE_LIMIT: u64 = 0o77777777777; // 11 octal digits

/// Writes ustar members in order.
pub struct UstarWriter<'a, W: Write> {
    tar: TarWriter<W>,
    mtime: u64,
    label: &'a Path,
}

impl<'a, W: Write> UstarWriter<'a, W> {
    /// A writer whose members all get modification time `mtime`; `label` names the target
    /// in errors.
    pub fn new(w: W, mtime: u64, label: &'a Path) -> Self {
        UstarWriter {
            tar: TarWriter::with_format(w, Format::OVA),
            mtime,
            label,
        }
    }

    /// The tar entry of a regular file member, its name and mtime checked.
    fn member(name: &str, size: u64, mtime: u64) -> Result<TarEntry> {
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
        if mtime > OCTAL_SIZE_LIMIT {
            return Err(FormatError::option(
                "ova",
                format!("mtime {mtime} does not fit ustar"),
            ));
        }
        Ok(TarEntry::file(name.as_bytes(), 0o644, mtime as i64, size))
    }

    /// The 512-byte header of a regular file member.
    pub fn header(name: &str, size: u64, mtime: u64) -> Result<[u8; BLOCK]> {
        let entry = Self::member(name, size, mtime)?;
        let blocks = encode_headers(&entry, &Format::OVA).map_err(|e| refused(&e))?;
        blocks.try_into().map_err(|_| {
            FormatError::option("ova", format!("member {name:?} needs more than one header"))
        })
    }

    /// Appends a member from memory.
    pub fn append_bytes(&mut self, name: &str, data: &[u8]) -> Result<()> {
        self.append_reader(name, data.len() as u64, data)
    }

    /// Appends a member of exactly `size` bytes read from `r` (an error if it is shorter).
    pub fn append_reader(&mut self, name: &str, size: u64, r: impl Read) -> Result<()> {
        let entry = Self::member(name, size, self.mtime)?;
        let mut r = Tracked {
            inner: r,
            failed: false,
        };
        let Err(e) = self.tar.append(&entry, Some(&mut r)) else {
            return Ok(());
        };
        Err(match TarError::of(&e) {
            Some(TarError::Short { got, .. }) => FormatError::ShortBacking {
                path: name.into(),
                offset: *got,
            },
            Some(t) => refused(t),
            None if r.failed => FormatError::io("read member", name)(e),
            None => FormatError::io("write", self.label)(e),
        })
    }

    /// Writes the end-of-archive blocks and record padding; returns the writer and the
    /// archive length.
    pub fn finish(self) -> Result<(W, u64)> {
        self.tar
            .finish_sized()
            .map_err(FormatError::io("write", self.label))
    }
}

/// A member the format cannot hold (the checks above keep this unreachable).
fn refused(e: &TarError) -> FormatError {
    FormatError::option("ova", e.to_string())
}

/// A reader that remembers whether it failed, so read and write errors are told apart.
struct Tracked<R> {
    inner: R,
    failed: bool,
}

impl<R: Read> Read for Tracked<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let r = self.inner.read(buf);
        self.failed |= matches!(&r, Err(e) if e.kind() != io::ErrorKind::Interrupted);
        r
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
