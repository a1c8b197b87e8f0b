//! Reproducible tar writer.
//!
//! Why hand-written on top of raw 512-byte headers instead of `tar::Builder`: reproducibility needs exact control of
//! when a PAX extended header is emitted (only when a value does not fit ustar: long names that cannot be split
//! into prefix/name, long link targets, sizes ≥ 8 GiB, ids ≥ 2^21, xattrs), of its fixed name (no PID, unlike GNU
//! tar's `PaxHeaders.%p`), of its record order (sorted keys), and no atime/ctime ever. `tar::Builder` picks GNU
//! long-name extensions and its own header layout, which we could not pin.
//!
//! Format decisions (part of the output's identity, do not change without a new layout version):
//! - ustar headers (`ustar\0` + `00`), numeric fields in zero-padded octal with a trailing NUL, uname/gname empty;
//! - entry names relative, no `./` prefix, directories end with `/`;
//! - order: depth-first walk, siblings sorted by the bytes of their names, a directory before its contents;
//! - mtime in whole seconds, clamped to `SOURCE_DATE_EPOCH` when given (sub-second precision is dropped);
//! - the first path of a hard-linked inode in walk order carries the data, later ones are hard links to it;
//! - sockets are skipped (tar cannot represent them); everything else is kept;
//! - end of archive: two zero blocks, no padding to a 10 KiB record.

use crate::error::{Error, IoCtx, Result};
use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// What kind of file a tar entry describes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    /// A regular file whose data follows the header.
    File,
    /// A directory.
    Dir,
    /// A symbolic link to the given target (raw bytes, may be absolute or relative).
    Symlink(Vec<u8>),
    /// A hard link to another entry of the same archive (a relative name).
    Hardlink(Vec<u8>),
    /// A character device (major, minor).
    Char(u32, u32),
    /// A block device (major, minor).
    Block(u32, u32),
    /// A named pipe.
    Fifo,
}

/// Metadata of one tar entry, independent of any on-disk file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TarEntry {
    /// Relative path, `/`-separated, without trailing slash or `./` prefix.
    pub path: Vec<u8>,
    /// Kind of entry.
    pub kind: EntryKind,
    /// Permission bits (`0o7777` mask).
    pub mode: u32,
    /// Owner user ID.
    pub uid: u64,
    /// Owner group ID.
    pub gid: u64,
    /// Modification time, seconds since the epoch.
    pub mtime: i64,
    /// Data size (regular files only; 0 otherwise).
    pub size: u64,
    /// Extended attributes, sorted by name.
    pub xattrs: BTreeMap<String, Vec<u8>>,
}

impl TarEntry {
    /// A whiteout entry deleting `name` inside `dir` (OCI: `dir/.wh.name`).
    pub fn whiteout(dir: &[u8], name: &[u8], mtime: i64) -> TarEntry {
        TarEntry::marker(join(dir, &[b".wh.", name].concat()), mtime)
    }

    /// An opaque-directory marker for `dir` (OCI: `dir/.wh..wh..opq`).
    pub fn opaque(dir: &[u8], mtime: i64) -> TarEntry {
        TarEntry::marker(join(dir, b".wh..wh..opq"), mtime)
    }

    fn marker(path: Vec<u8>, mtime: i64) -> TarEntry {
        TarEntry {
            path,
            kind: EntryKind::File,
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime,
            size: 0,
            xattrs: BTreeMap::new(),
        }
    }
}

/// Joins a relative directory path and a name with `/`.
pub(crate) fn join(dir: &[u8], name: &[u8]) -> Vec<u8> {
    if dir.is_empty() {
        name.to_vec()
    } else {
        [dir, b"/", name].concat()
    }
}

/// How owners are recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OwnerPolicy {
    /// Every entry is owned by 0:0 (the default for images built by unprivileged users).
    #[default]
    Root,
    /// Numeric uid/gid from the file system are kept.
    Keep,
}

/// Options of the reproducible writer.
#[derive(Debug, Clone, Default)]
pub struct TarOptions {
    /// Clamp every mtime to at most this value (`SOURCE_DATE_EPOCH`).
    pub source_date_epoch: Option<i64>,
    /// Owner policy.
    pub owner: OwnerPolicy,
    /// Record extended attributes (`SCHILY.xattr.*` PAX records). Off by default: most build contexts carry
    /// host-specific xattrs (SELinux labels) that would make output machine-dependent.
    pub xattrs: bool,
}

impl TarOptions {
    /// Options from the environment: `SOURCE_DATE_EPOCH` if set and numeric, owners mapped to root.
    pub fn from_env() -> Self {
        let sde = std::env::var("SOURCE_DATE_EPOCH")
            .ok()
            .and_then(|v| v.trim().parse().ok());
        TarOptions {
            source_date_epoch: sde,
            ..Default::default()
        }
    }

    pub(crate) fn clamp(&self, mtime: i64) -> i64 {
        match self.source_date_epoch {
            Some(e) if mtime > e => e,
            _ => mtime,
        }
    }
}

/// Streaming writer of tar entries with deterministic headers.
pub struct TarWriter<W: Write> {
    out: W,
    written: u64,
}

const USTAR_MAX_NUM7: u64 = 0o7777777; // 7 octal digits (uid, gid, mode, dev)
const USTAR_MAX_NUM11: u64 = 0o77777777777; // 11 octal digits (size, mtime)

impl<W: Write> TarWriter<W> {
    /// Wraps an output stream.
    pub fn new(out: W) -> Self {
        Self { out, written: 0 }
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

    /// Writes one entry; for regular files `data` must yield exactly `entry.size` bytes.
    pub fn append(&mut self, entry: &TarEntry, data: Option<&mut dyn Read>) -> io::Result<()> {
        let mut name = entry.path.clone();
        if entry.kind == EntryKind::Dir {
            name.push(b'/');
        }
        let (type_flag, link, dev) = match &entry.kind {
            EntryKind::File => (b'0', &[][..], (0, 0)),
            EntryKind::Hardlink(t) => (b'1', &t[..], (0, 0)),
            EntryKind::Symlink(t) => (b'2', &t[..], (0, 0)),
            EntryKind::Char(a, b) => (b'3', &[][..], (*a, *b)),
            EntryKind::Block(a, b) => (b'4', &[][..], (*a, *b)),
            EntryKind::Dir => (b'5', &[][..], (0, 0)),
            EntryKind::Fifo => (b'6', &[][..], (0, 0)),
        };
        let size = if entry.kind == EntryKind::File {
            entry.size
        } else {
            0
        };
        let mut pax: Vec<(String, Vec<u8>)> = Vec::new();
        let split = split_name(&name);
        if split.is_none() {
            pax.push(("path".into(), name.clone()));
        }
        if link.len() > 100 {
            pax.push(("linkpath".into(), link.to_vec()));
        }
        if size > USTAR_MAX_NUM11 {
            pax.push(("size".into(), size.to_string().into_bytes()));
        }
        if entry.uid > USTAR_MAX_NUM7 {
            pax.push(("uid".into(), entry.uid.to_string().into_bytes()));
        }
        if entry.gid > USTAR_MAX_NUM7 {
            pax.push(("gid".into(), entry.gid.to_string().into_bytes()));
        }
        if entry.mtime < 0 || entry.mtime as u64 > USTAR_MAX_NUM11 {
            pax.push(("mtime".into(), entry.mtime.to_string().into_bytes()));
        }
        for (k, v) in &entry.xattrs {
            pax.push((format!("SCHILY.xattr.{k}"), v.clone()));
        }
        if dev.0 as u64 > USTAR_MAX_NUM7 || dev.1 as u64 > USTAR_MAX_NUM7 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "device numbers {}:{} of {} do not fit a tar header",
                    dev.0,
                    dev.1,
                    String::from_utf8_lossy(&entry.path)
                ),
            ));
        }
        if !pax.is_empty() {
            pax.sort_by(|a, b| a.0.cmp(&b.0));
            let mut body = Vec::new();
            for (k, v) in &pax {
                body.extend_from_slice(&pax_record(k, v));
            }
            // Fixed header name, like GNU tar's `%d/PaxHeaders/%f` without any PID.
            let (dir, base) = match entry.path.iter().rposition(|&b| b == b'/') {
                Some(i) => (&entry.path[..i], &entry.path[i + 1..]),
                None => (&b""[..], &entry.path[..]),
            };
            let mut pname = join(dir, &[b"PaxHeaders/", base].concat());
            pname.truncate(100);
            let h = header(&pname, b"", b'x', 0o644, 0, 0, body.len() as u64, 0, (0, 0));
            self.put(&h)?;
            self.put(&body)?;
            self.pad(body.len() as u64)?;
        }
        let (prefix, short) = split.unwrap_or((Vec::new(), truncate_utf8ish(&name, 100)));
        let link_field = if link.len() > 100 { &link[..100] } else { link };
        let mut h = header(
            &short,
            link_field,
            type_flag,
            entry.mode & 0o7777,
            entry.uid.min(USTAR_MAX_NUM7),
            entry.gid.min(USTAR_MAX_NUM7),
            size.min(USTAR_MAX_NUM11),
            entry.mtime.clamp(0, USTAR_MAX_NUM11 as i64) as u64,
            dev,
        );
        h[345..345 + prefix.len()].copy_from_slice(&prefix);
        set_checksum(&mut h);
        self.put(&h)?;
        if entry.kind == EntryKind::File && size > 0 {
            let r = data.ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidInput, "file entry without data")
            })?;
            let mut limited = r.take(size);
            let n = io::copy(&mut limited, &mut CountingWrite(self))?;
            if n != size {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "{} shrank while being archived ({n} of {size} bytes)",
                        String::from_utf8_lossy(&entry.path)
                    ),
                ));
            }
            self.pad(size)?;
        }
        Ok(())
    }

    fn pad(&mut self, len: u64) -> io::Result<()> {
        let rem = (len % 512) as usize;
        if rem != 0 {
            self.put(&[0u8; 512][..512 - rem])?;
        }
        Ok(())
    }

    /// Writes the end-of-archive marker and returns the output.
    pub fn finish(mut self) -> io::Result<W> {
        self.put(&[0u8; 1024])?;
        self.out.flush()?;
        Ok(self.out)
    }
}

struct CountingWrite<'a, W: Write>(&'a mut TarWriter<W>);
impl<W: Write> Write for CountingWrite<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.put(buf)?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn truncate_utf8ish(b: &[u8], n: usize) -> Vec<u8> {
    b[..b.len().min(n)].to_vec()
}

/// Splits a name into ustar (prefix ≤ 155, name ≤ 100) at a `/`, or `None` when it needs PAX.
fn split_name(name: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
    if name.len() <= 100 {
        return Some((Vec::new(), name.to_vec()));
    }
    if name.len() > 256 {
        return None;
    }
    // Choose the leftmost '/' such that the rest fits in 100 bytes and the prefix in 155.
    for (i, &b) in name.iter().enumerate() {
        if b == b'/' && i <= 155 && name.len() - i - 1 <= 100 && i > 0 && i + 1 < name.len() {
            return Some((name[..i].to_vec(), name[i + 1..].to_vec()));
        }
    }
    None
}

fn pax_record(key: &str, value: &[u8]) -> Vec<u8> {
    let body_len = 1 + key.len() + 1 + value.len() + 1; // ' ' key '=' value '\n'
    let mut total = body_len + 1;
    loop {
        let t = body_len + total.to_string().len();
        if t == total {
            break;
        }
        total = t;
    }
    let mut r = format!("{total} {key}=").into_bytes();
    r.extend_from_slice(value);
    r.push(b'\n');
    r
}

fn octal(field: &mut [u8], v: u64) {
    let digits = field.len() - 1;
    let s = format!("{v:0digits$o}");
    field[..digits].copy_from_slice(&s.as_bytes()[s.len() - digits..]);
    field[digits] = 0;
}

#[allow(clippy::too_many_arguments)]
fn header(
    name: &[u8],
    link: &[u8],
    flag: u8,
    mode: u32,
    uid: u64,
    gid: u64,
    size: u64,
    mtime: u64,
    dev: (u32, u32),
) -> [u8; 512] {
    let mut h = [0u8; 512];
    h[..name.len().min(100)].copy_from_slice(&name[..name.len().min(100)]);
    octal(&mut h[100..108], mode as u64);
    octal(&mut h[108..116], uid);
    octal(&mut h[116..124], gid);
    octal(&mut h[124..136], size);
    octal(&mut h[136..148], mtime);
    h[156] = flag;
    h[157..157 + link.len().min(100)].copy_from_slice(&link[..link.len().min(100)]);
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    octal(&mut h[329..337], dev.0 as u64);
    octal(&mut h[337..345], dev.1 as u64);
    set_checksum(&mut h);
    h
}

fn set_checksum(h: &mut [u8; 512]) {
    h[148..156].copy_from_slice(b"        ");
    let sum: u64 = h.iter().map(|&b| b as u64).sum();
    let s = format!("{sum:06o}\0 ");
    h[148..156].copy_from_slice(s.as_bytes());
}

/// Reads the metadata of one path (not following symlinks) into a [`TarEntry`] for archive name `rel`.
///
/// Returns `None` for sockets. Hard links are not resolved here (see [`write_tree`]).
pub fn entry_from_fs(path: &Path, rel: &[u8], opts: &TarOptions) -> Result<Option<TarEntry>> {
    let md = fs::symlink_metadata(path).ctx("stat", path)?;
    let ft = md.file_type();
    let kind = if ft.is_file() {
        EntryKind::File
    } else if ft.is_dir() {
        EntryKind::Dir
    } else if ft.is_symlink() {
        EntryKind::Symlink(
            fs::read_link(path)
                .ctx("readlink", path)?
                .as_os_str()
                .as_bytes()
                .to_vec(),
        )
    } else if ft.is_char_device() {
        EntryKind::Char(rustix::fs::major(md.rdev()), rustix::fs::minor(md.rdev()))
    } else if ft.is_block_device() {
        EntryKind::Block(rustix::fs::major(md.rdev()), rustix::fs::minor(md.rdev()))
    } else if ft.is_fifo() {
        EntryKind::Fifo
    } else {
        return Ok(None);
    };
    let (uid, gid) = match opts.owner {
        OwnerPolicy::Root => (0, 0),
        OwnerPolicy::Keep => (md.uid() as u64, md.gid() as u64),
    };
    let mut xattrs = BTreeMap::new();
    if opts.xattrs {
        xattrs = read_xattrs(path)?;
    }
    Ok(Some(TarEntry {
        path: rel.to_vec(),
        size: if kind == EntryKind::File { md.len() } else { 0 },
        kind,
        mode: md.mode() & 0o7777,
        uid,
        gid,
        mtime: opts.clamp(md.mtime()),
        xattrs,
    }))
}

/// Reads all extended attributes of a path (not following symlinks), sorted by name.
pub(crate) fn read_xattrs(path: &Path) -> Result<BTreeMap<String, Vec<u8>>> {
    let mut out = BTreeMap::new();
    let mut names = vec![0u8; 4096];
    let n = match rustix::fs::llistxattr(path, &mut names) {
        Ok(n) => n,
        Err(e) if e == rustix::io::Errno::NOTSUP || e == rustix::io::Errno::OPNOTSUPP => {
            return Ok(out)
        }
        Err(e) if e == rustix::io::Errno::RANGE => {
            names = vec![0u8; 65536];
            rustix::fs::llistxattr(path, &mut names)
                .map_err(|e| Error::io("list xattrs", path, e.into()))?
        }
        Err(e) => return Err(Error::io("list xattrs", path, e.into())),
    };
    for name in names[..n].split(|&b| b == 0).filter(|s| !s.is_empty()) {
        let Ok(key) = std::str::from_utf8(name) else {
            continue;
        };
        let mut val = vec![0u8; 65536];
        match rustix::fs::lgetxattr(path, name, &mut val) {
            Ok(len) => {
                val.truncate(len);
                out.insert(key.to_string(), val);
            }
            Err(e) => return Err(Error::io("read xattr", path, e.into())),
        }
    }
    Ok(out)
}

/// Summary of an archived tree.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TreeStats {
    /// Number of entries written.
    pub entries: u64,
    /// Bytes of the tar stream.
    pub tar_bytes: u64,
}

/// Lists a directory's children sorted by name bytes.
pub(crate) fn sorted_children(dir: &Path) -> Result<Vec<(Vec<u8>, PathBuf)>> {
    let mut v: Vec<(Vec<u8>, PathBuf)> = fs::read_dir(dir)
        .ctx("read directory", dir)?
        .map(|e| e.map(|e| (e.file_name().as_bytes().to_vec(), e.path())))
        .collect::<io::Result<_>>()
        .ctx("read directory", dir)?;
    v.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(v)
}

/// Archives the contents of `root` (not `root` itself) into a reproducible tar stream.
pub fn write_tree<W: Write>(root: &Path, opts: &TarOptions, out: W) -> Result<(W, TreeStats)> {
    let mut tw = TarWriter::new(out);
    let mut links: HashMap<(u64, u64), Vec<u8>> = HashMap::new();
    let mut stats = TreeStats::default();
    walk(root, b"", opts, &mut tw, &mut links, &mut stats)?;
    stats.tar_bytes = tw.written() + 1024;
    let out = tw.finish().ctx("write tar", root)?;
    Ok((out, stats))
}

fn walk<W: Write>(
    dir: &Path,
    rel: &[u8],
    opts: &TarOptions,
    tw: &mut TarWriter<W>,
    links: &mut HashMap<(u64, u64), Vec<u8>>,
    stats: &mut TreeStats,
) -> Result<()> {
    for (name, path) in sorted_children(dir)? {
        let rel_child = join(rel, &name);
        write_path(&path, &rel_child, opts, tw, links, stats)?;
        if fs::symlink_metadata(&path).ctx("stat", &path)?.is_dir() {
            walk(&path, &rel_child, opts, tw, links, stats)?;
        }
    }
    Ok(())
}

/// Writes one file-system object as an entry (hard links resolved through `links`).
pub(crate) fn write_path<W: Write>(
    path: &Path,
    rel: &[u8],
    opts: &TarOptions,
    tw: &mut TarWriter<W>,
    links: &mut HashMap<(u64, u64), Vec<u8>>,
    stats: &mut TreeStats,
) -> Result<()> {
    let Some(mut entry) = entry_from_fs(path, rel, opts)? else {
        return Ok(());
    };
    stats.entries += 1;
    if entry.kind == EntryKind::File {
        let md = fs::symlink_metadata(path).ctx("stat", path)?;
        if md.nlink() > 1 {
            let key = (md.dev(), md.ino());
            if let Some(first) = links.get(&key) {
                entry.kind = EntryKind::Hardlink(first.clone());
                entry.size = 0;
                return tw.append(&entry, None).ctx("write tar entry for", path);
            }
            links.insert(key, rel.to_vec());
        }
        let mut f = fs::File::open(path).ctx("open", path)?;
        return tw.append(&entry, Some(&mut f)).ctx("archive", path);
    }
    tw.append(&entry, None).map_err(|e| Error::Unsupported {
        path: path.to_path_buf(),
        reason: crate::error::chain(&e),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(tar: &[u8]) -> Vec<(String, u8, u64, Vec<u8>)> {
        let mut a = tar::Archive::new(tar);
        a.entries()
            .unwrap()
            .map(|e| {
                let mut e = e.unwrap();
                let p = String::from_utf8_lossy(&e.path_bytes()).into_owned();
                let t = e.header().entry_type().as_byte();
                let m = e.header().mtime().unwrap();
                let mut d = Vec::new();
                e.read_to_end(&mut d).unwrap();
                (p, t, m, d)
            })
            .collect()
    }

    #[test]
    fn pax_only_when_needed_and_long_names() {
        let long = "d/".repeat(80) + "file";
        let mut buf = Vec::new();
        {
            let mut tw = TarWriter::new(&mut buf);
            let e = TarEntry {
                path: b"short".to_vec(),
                kind: EntryKind::File,
                mode: 0o644,
                uid: 0,
                gid: 0,
                mtime: 5,
                size: 3,
                xattrs: BTreeMap::new(),
            };
            tw.append(&e, Some(&mut &b"abc"[..])).unwrap();
            let e2 = TarEntry {
                path: long.clone().into_bytes(),
                size: 0,
                ..e.clone()
            };
            tw.append(&e2, Some(&mut &b""[..])).unwrap();
            let e3 = TarEntry {
                path: b"a".repeat(300),
                size: 0,
                ..e.clone()
            };
            tw.append(&e3, None).unwrap();
            tw.finish().unwrap();
        }
        // short name: exactly one header + one data block; no PAX.
        assert_eq!(buf[156], b'0');
        assert_eq!(&buf[..5], b"short");
        // long splittable name: ustar prefix, no PAX header ('x').
        assert_eq!(buf[1024 + 156], b'0');
        // unsplittable 300-byte name needs PAX.
        assert_eq!(buf[1536 + 156], b'x');
        let got = entries(&buf);
        assert_eq!(got[0].0, "short");
        assert_eq!(got[0].3, b"abc");
        assert_eq!(got[1].0, long);
        assert_eq!(got[2].0, "a".repeat(300));
    }

    #[test]
    fn pax_record_length_is_self_consistent() {
        for n in [0, 1, 5, 90, 95, 96, 97, 98, 990, 995, 1000] {
            let r = pax_record("path", &vec![b'x'; n]);
            let sp = r.iter().position(|&b| b == b' ').unwrap();
            let len: usize = std::str::from_utf8(&r[..sp]).unwrap().parse().unwrap();
            assert_eq!(len, r.len(), "value len {n}");
        }
    }

    #[test]
    fn tree_is_sorted_clamped_and_reproducible() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        fs::create_dir_all(r.join("b/sub")).unwrap();
        fs::write(r.join("b/sub/z"), b"zz").unwrap();
        fs::write(r.join("a"), b"aa").unwrap();
        fs::write(r.join("b-c"), b"x").unwrap();
        fs::hard_link(r.join("a"), r.join("c-link")).unwrap();
        std::os::unix::fs::symlink("../a", r.join("b/sym")).unwrap();
        let opts = TarOptions {
            source_date_epoch: Some(1000),
            ..Default::default()
        };
        let (one, stats) = write_tree(r, &opts, Vec::new()).unwrap();
        let (two, _) = write_tree(r, &opts, Vec::new()).unwrap();
        assert_eq!(one, two);
        assert_eq!(stats.tar_bytes, one.len() as u64);
        let got = entries(&one);
        let names: Vec<_> = got.iter().map(|e| e.0.as_str()).collect();
        assert_eq!(
            names,
            ["a", "b/", "b/sub/", "b/sub/z", "b/sym", "b-c", "c-link"]
        );
        assert!(got.iter().all(|e| e.2 == 1000));
        assert_eq!(got[6].1, b'1');
        assert_eq!(got[4].1, b'2');
    }
}
