//! A reproducible `newc` cpio writer fed from the store's merged view.
//!
//! Why it exists: the live ISO boots the image's kernel with the image's whole rootfs as
//! its initramfs (the kernel unpacks it into a tmpfs and runs `/init` from it), so the live
//! system needs no CD, disk or file-system driver at all — the Debian kernel has those as
//! modules. Writing the archive straight from [`FlatView`] keeps owners and modes exact
//! without root and needs no unpacked copy. Format: the kernel's
//! `Documentation/driver-api/early-userspace/buffer-format.rst` ("070701", 13 eight-digit
//! hex fields, name and data padded to 4 bytes, `TRAILER!!!`). Hard links are written as
//! copies (one inode each), times are clamped to the export epoch.

use std::collections::HashMap;
use std::io::Write;

use chasi_layers::flatten::FlatView;
use chasi_layers::EntryKind;

use super::{ExportError, ExportResult};

fn io_err(e: std::io::Error) -> ExportError {
    ExportError::io("write", "<initramfs>")(e)
}

struct Header<'a> {
    ino: u32,
    mode: u32,
    uid: u64,
    gid: u64,
    nlink: u32,
    mtime: i64,
    size: u64,
    rdev: (u32, u32),
    name: &'a [u8],
}

fn header(w: &mut impl Write, h: &Header<'_>) -> ExportResult<()> {
    let namesize = h.name.len() + 1;
    let fields = [
        h.ino as u64,
        h.mode as u64,
        h.uid.min(u32::MAX as u64),
        h.gid.min(u32::MAX as u64),
        h.nlink as u64,
        h.mtime.clamp(0, u32::MAX as i64) as u64,
        h.size,
        0,
        0,
        h.rdev.0 as u64,
        h.rdev.1 as u64,
        namesize as u64,
        0,
    ];
    let mut s = String::with_capacity(110);
    s.push_str("070701");
    for f in fields {
        s.push_str(&format!("{:08X}", f));
    }
    w.write_all(s.as_bytes()).map_err(io_err)?;
    w.write_all(h.name).map_err(io_err)?;
    w.write_all(&[0]).map_err(io_err)?;
    let pad = (4 - (110 + namesize) % 4) % 4;
    w.write_all(&[0u8; 3][..pad]).map_err(io_err)?;
    Ok(())
}

/// The archive's end record.
fn trailer(w: &mut impl Write) -> ExportResult<()> {
    header(
        w,
        &Header {
            ino: 0,
            mode: 0,
            uid: 0,
            gid: 0,
            nlink: 1,
            mtime: 0,
            size: 0,
            rdev: (0, 0),
            name: b"TRAILER!!!",
        },
    )
}

fn pad_data(w: &mut impl Write, size: u64) -> ExportResult<()> {
    let pad = ((4 - size % 4) % 4) as usize;
    w.write_all(&[0u8; 3][..pad]).map_err(io_err)
}

/// Writes a newc archive of `files` (`(path in the archive, file)`, mode 0644, owned by root, dated
/// `epoch`) with their parent directories, for a second archive after the image's own (the kernel
/// unpacks concatenated archives in order).
pub fn write_plain_files(
    w: &mut impl Write,
    files: &[(&str, &std::path::Path)],
    epoch: i64,
) -> ExportResult<()> {
    let mut dirs: Vec<String> = Vec::new();
    for (name, _) in files {
        let parts: Vec<&str> = name.split('/').collect();
        for i in 1..parts.len() {
            let d = parts[..i].join("/");
            if !dirs.contains(&d) {
                dirs.push(d);
            }
        }
    }
    let mut ino = 0x4000_0000u32;
    for d in &dirs {
        ino += 1;
        header(
            w,
            &Header {
                ino,
                mode: 0o040755,
                uid: 0,
                gid: 0,
                nlink: 2,
                mtime: epoch,
                size: 0,
                rdev: (0, 0),
                name: d.as_bytes(),
            },
        )?;
    }
    for (name, path) in files {
        ino += 1;
        let mut f = std::fs::File::open(path).map_err(ExportError::io("open", *path))?;
        let size = f.metadata().map_err(ExportError::io("stat", *path))?.len();
        header(
            w,
            &Header {
                ino,
                mode: 0o100644,
                uid: 0,
                gid: 0,
                nlink: 1,
                mtime: epoch,
                size,
                rdev: (0, 0),
                name: name.as_bytes(),
            },
        )?;
        let copied = std::io::copy(&mut f, w).map_err(ExportError::io("read", *path))?;
        if copied != size {
            return Err(ExportError::io("read", *path)(std::io::Error::other(
                "the file changed while it was archived",
            )));
        }
        pad_data(w, size)?;
    }
    trailer(w)
}

/// Writes the whole view as a newc archive; `skip` filters out paths (e.g. the kernel,
/// which the boot loader loads separately). Times are clamped to `epoch`.
pub fn write_cpio(
    view: &mut FlatView<'_>,
    w: &mut impl Write,
    epoch: i64,
    skip: &dyn Fn(&[u8]) -> bool,
) -> ExportResult<u64> {
    let index: HashMap<Vec<u8>, usize> = view
        .entries()
        .iter()
        .enumerate()
        .map(|(i, e)| (e.entry.path.clone(), i))
        .collect();
    let mut ino = 1u32;
    header(
        w,
        &Header {
            ino,
            mode: 0o040755,
            uid: 0,
            gid: 0,
            nlink: 2,
            mtime: epoch,
            size: 0,
            rdev: (0, 0),
            name: b".",
        },
    )?;
    let mut count = 1u64;
    for i in 0..view.entries().len() {
        let e = view.entries()[i].entry.clone();
        if e.path.is_empty() || skip(&e.path) {
            continue;
        }
        ino += 1;
        let mtime = e.mtime.min(epoch);
        let perm = e.mode & 0o7777;
        let (mode, size, data_from, rdev, nlink) = match &e.kind {
            EntryKind::File => (0o100000 | perm, e.size, Some(i), (0, 0), 1),
            EntryKind::Hardlink(target) => {
                let Some(&t) = index.get(target) else {
                    continue;
                };
                let te = &view.entries()[t].entry;
                (0o100000 | perm, te.size, Some(t), (0, 0), 1)
            }
            EntryKind::Dir => (0o040000 | perm, 0, None, (0, 0), 2),
            EntryKind::Symlink(t) => (0o120000 | 0o777, t.len() as u64, None, (0, 0), 1),
            EntryKind::Char(a, b) => (0o020000 | perm, 0, None, (*a, *b), 1),
            EntryKind::Block(a, b) => (0o060000 | perm, 0, None, (*a, *b), 1),
            EntryKind::Fifo => (0o010000 | perm, 0, None, (0, 0), 1),
        };
        header(
            w,
            &Header {
                ino,
                mode,
                uid: e.uid,
                gid: e.gid,
                nlink,
                mtime,
                size,
                rdev,
                name: &e.path,
            },
        )?;
        if let EntryKind::Symlink(t) = &e.kind {
            w.write_all(t).map_err(io_err)?;
        } else if let Some(src) = data_from {
            let n = view.read_file(src, &mut *w)?;
            if n != size {
                let path = String::from_utf8_lossy(&e.path).into_owned();
                return Err(ExportError::io("read", path)(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!("expected {size} bytes, read {n}"),
                )));
            }
        }
        pad_data(w, size)?;
        count += 1;
    }
    trailer(w)?;
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_layout() {
        let mut v = Vec::new();
        header(
            &mut v,
            &Header {
                ino: 1,
                mode: 0o100644,
                uid: 0,
                gid: 0,
                nlink: 1,
                mtime: 5,
                size: 3,
                rdev: (0, 0),
                name: b"abc",
            },
        )
        .unwrap();
        assert_eq!(&v[..6], b"070701");
        assert_eq!(&v[6..14], b"00000001");
        assert_eq!(&v[14..22], b"000081A4");
        assert_eq!(v.len(), 116);
    }
}
