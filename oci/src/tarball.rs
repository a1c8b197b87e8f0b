//! Tar archives, both ways: the members of `oci-archive` / `docker-archive` output, written
//! with `chasi-tar`'s deterministic writer, and an indexed, random-access reader that never
//! extracts anything.
//!
//! The writer's members are ustar only (no PAX: member names here are at most 80 bytes, or a
//! 128-digit hex directory and `layer.tar`), with uid/gid 0, empty owner names, mtime 0 and
//! fixed modes, in [`chasi_tar::Format::ARCHIVE`] (the header spelling `tar::Builder` gave
//! these archives before); callers add members in sorted order. The reader scans an archive
//! once, rejects member names that could escape an extraction root (`..`, absolute paths) and
//! links whose target, resolved against the link's own directory, leaves the archive, and
//! members that run past the end of the file (a gzip, zstd, xz or bzip2 file is named as
//! such); then it serves members by offset, following links to the regular member they name,
//! so blobs stream straight out of the archive without a temporary copy.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use chasi_tar::{EntryKind, Format, TarEntry, TarError, TarWriter};
use tar::EntryType;

use super::error::{OciError, OciResult};

/// A tar writer whose output depends only on the members added.
pub(crate) struct DeterministicTar<W: Write> {
    tar: TarWriter<W>,
    path: PathBuf,
}

impl<W: Write> DeterministicTar<W> {
    /// Writes to `out`; `path` names the archive in errors.
    pub(crate) fn new(out: W, path: &Path) -> Self {
        DeterministicTar {
            tar: TarWriter::with_format(out, Format::ARCHIVE),
            path: path.to_path_buf(),
        }
    }

    /// A member the format refuses is a bad archive naming it; anything else failed writing.
    fn error(&self, name: &str, e: io::Error) -> OciError {
        if TarError::of(&e).is_some() {
            OciError::bad_archive(
                &self.path,
                format!("member {name}: {}", crate::error::chain(&e)),
            )
        } else {
            OciError::io("write", &self.path)(e)
        }
    }

    /// Adds a directory member (`name` ends with `/`).
    pub(crate) fn dir(&mut self, name: &str) -> OciResult<()> {
        let path = name.strip_suffix('/').unwrap_or(name).as_bytes();
        let entry = TarEntry {
            kind: EntryKind::Dir,
            ..TarEntry::file(path, 0o755, 0, 0)
        };
        self.tar
            .append(&entry, None)
            .map_err(|e| self.error(name, e))
    }

    /// Adds a regular file of `size` bytes read from `data`. The reader must produce exactly
    /// `size` bytes, and is read to its end so that a verifying reader checks its digest; a
    /// mismatch is an error.
    pub(crate) fn file(&mut self, name: &str, size: u64, data: &mut dyn Read) -> OciResult<()> {
        let entry = TarEntry::file(name.as_bytes(), 0o644, 0, size);
        let mut counted = CountingReader { inner: data, n: 0 };
        match self.tar.append(&entry, Some(&mut counted)) {
            Err(e) if !matches!(TarError::of(&e), Some(TarError::Short { .. })) => {
                return Err(self.error(name, e))
            }
            _ => {}
        }
        io::copy(&mut counted, &mut io::sink()).map_err(OciError::io("write", &self.path))?;
        if counted.n != size {
            return Err(OciError::bad_archive(
                &self.path,
                format!("member {name}: wrote {} bytes, expected {size}", counted.n),
            ));
        }
        Ok(())
    }

    /// Writes the end-of-archive marker and returns the output.
    pub(crate) fn finish(self) -> OciResult<W> {
        self.tar.finish().map_err(OciError::io("write", &self.path))
    }
}

struct CountingReader<'a> {
    inner: &'a mut dyn Read,
    n: u64,
}

impl Read for CountingReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.n += n as u64;
        Ok(n)
    }
}

/// Where a regular member's data lies in the archive file.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Member {
    pub(crate) offset: u64,
    pub(crate) size: u64,
}

/// How many links [`TarIndex::get`] follows before it calls the chain a loop (Linux's
/// `MAXSYMLINKS`).
const MAX_LINK_HOPS: usize = 40;

/// Normalizes an archive member name (`./a//b/` → `a/b`), rejecting unsafe ones.
pub(crate) fn normalize_member(archive: &Path, raw: &str) -> OciResult<String> {
    let unsafe_path = |reason| OciError::UnsafePath {
        path: archive.to_path_buf(),
        member: raw.to_string(),
        reason,
    };
    if raw.starts_with('/') || raw.starts_with('\\') {
        return Err(unsafe_path("absolute paths are not allowed"));
    }
    if raw.contains('\0') {
        return Err(unsafe_path("NUL in name"));
    }
    let mut parts = Vec::new();
    for part in raw.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err(unsafe_path("`..` components are not allowed")),
            p => parts.push(p),
        }
    }
    Ok(parts.join("/"))
}

/// The member a link of the member `name` (normalized) points to, normalized: a symlink's
/// target is relative to the link's own directory (`<id>/layer.tar -> ../<digest>.tar`, as
/// skopeo, buildah and podman write), a hard link's names an archive member. A target that is
/// absolute or climbs above the archive root is refused.
pub(crate) fn resolve_link(
    archive: &Path,
    name: &str,
    target: &str,
    symbolic: bool,
) -> OciResult<String> {
    let leaves = |reason| OciError::UnsafePath {
        path: archive.to_path_buf(),
        member: format!("{name} -> {target}"),
        reason,
    };
    if target.starts_with('/') || target.starts_with('\\') {
        return Err(leaves("a link target is an absolute path"));
    }
    if target.contains('\0') {
        return Err(leaves("NUL in a link target"));
    }
    let mut parts: Vec<&str> = Vec::new();
    if symbolic {
        parts.extend(name.split('/'));
        parts.pop();
    }
    for part in target.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() {
                    return Err(leaves("a link target leaves the archive root"));
                }
            }
            p => parts.push(p),
        }
    }
    Ok(parts.join("/"))
}

/// Fills `buf` as far as the file allows; the number of bytes read.
fn read_prefix(file: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// Archives are read uncompressed (members are served by offset); a compressed one is named by
/// its magic bytes, with the command that makes the tar.
fn compressed(magic: &[u8], path: &Path) -> Option<String> {
    let (what, tool) = if magic.starts_with(&[0x1f, 0x8b]) {
        ("gzip", "gzip -dc")
    } else if magic.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        ("zstd", "zstd -dc")
    } else if magic.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
        ("xz", "xz -dc")
    } else if magic.len() == 6
        && magic.starts_with(b"BZh")
        && magic[3].is_ascii_digit()
        && magic[4..] == [0x31, 0x41]
    {
        ("bzip2", "bzip2 -dc")
    } else {
        return None;
    };
    Some(format!(
        "it is a {what}-compressed file, and archives are read as plain tar: decompress it first \
         (`{tool} {} > archive.tar`)",
        path.display()
    ))
}

/// An index of the members of a tar file, for random access.
#[derive(Debug)]
pub(crate) struct TarIndex {
    path: PathBuf,
    /// Regular members.
    members: BTreeMap<String, Member>,
    /// Symbolic and hard links: member name → the member it names (normalized).
    links: BTreeMap<String, String>,
}

impl TarIndex {
    /// Scans `path` once. A compressed file is refused saying which compression it is.
    pub(crate) fn scan(path: &Path) -> OciResult<Self> {
        let mut file = File::open(path).map_err(OciError::io("open", path))?;
        let file_len = file.metadata().map_err(OciError::io("stat", path))?.len();
        let mut magic = [0u8; 6];
        let n = read_prefix(&mut file, &mut magic).map_err(OciError::io("read", path))?;
        if let Some(reason) = compressed(&magic[..n], path) {
            return Err(OciError::UnknownFormat {
                path: path.to_path_buf(),
                reason,
            });
        }
        file.seek(SeekFrom::Start(0))
            .map_err(OciError::io("seek in", path))?;
        let mut archive = tar::Archive::new(BufReader::new(file));
        let mut members = BTreeMap::new();
        let mut links = BTreeMap::new();
        let entries = archive.entries_with_seek().map_err(|e| {
            OciError::bad_archive(
                path,
                format!("cannot list members: {}", crate::error::chain(&e)),
            )
        })?;
        for entry in entries {
            let entry = entry.map_err(|e| {
                OciError::bad_archive(
                    path,
                    format!(
                        "truncated or corrupt tar header: {}",
                        crate::error::chain(&e)
                    ),
                )
            })?;
            let raw_name = String::from_utf8(entry.path_bytes().into_owned())
                .map_err(|_| OciError::bad_archive(path, "a member name is not valid UTF-8"))?;
            let name = normalize_member(path, &raw_name)?;
            let header = entry.header();
            match header.entry_type() {
                EntryType::Regular | EntryType::Continuous => {}
                EntryType::Directory => continue,
                kind @ (EntryType::Symlink | EntryType::Link) => {
                    let target = entry
                        .link_name_bytes()
                        .map(|b| String::from_utf8_lossy(&b).into_owned())
                        .unwrap_or_default();
                    let resolved = resolve_link(path, &name, &target, kind == EntryType::Symlink)?;
                    if name.is_empty() {
                        continue;
                    }
                    if members.contains_key(&name) || links.insert(name.clone(), resolved).is_some()
                    {
                        return Err(OciError::bad_archive(
                            path,
                            format!("member {name} appears twice"),
                        ));
                    }
                    continue;
                }
                EntryType::GNUSparse => {
                    return Err(OciError::bad_archive(
                        path,
                        format!("member {raw_name}: sparse files are not supported"),
                    ))
                }
                _ => continue,
            }
            let size = entry.size();
            let offset = entry.raw_file_position();
            if offset.checked_add(size).is_none_or(|end| end > file_len) {
                return Err(OciError::bad_archive(
                    path,
                    format!(
                        "member {raw_name} is truncated: {size} bytes at offset {offset} but the file has {file_len}"
                    ),
                ));
            }
            if name.is_empty() {
                continue;
            }
            if links.contains_key(&name)
                || members
                    .insert(name.clone(), Member { offset, size })
                    .is_some()
            {
                return Err(OciError::bad_archive(
                    path,
                    format!("member {name} appears twice"),
                ));
            }
        }
        Ok(TarIndex {
            path: path.to_path_buf(),
            members,
            links,
        })
    }

    /// The archive path.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Whether a regular member exists, directly or through links.
    pub(crate) fn contains(&self, name: &str) -> bool {
        matches!(self.get(name), Ok(Some(_)))
    }

    /// A regular member, following links to it; a missing name is `None`, a link that
    /// leads nowhere or in a circle is an error naming it.
    pub(crate) fn get(&self, name: &str) -> OciResult<Option<Member>> {
        let mut current = name;
        for _ in 0..=MAX_LINK_HOPS {
            if let Some(m) = self.members.get(current) {
                return Ok(Some(*m));
            }
            match self.links.get(current) {
                None if current == name => return Ok(None),
                None => {
                    return Err(OciError::bad_archive(
                        &self.path,
                        format!("member {name} links to {current}, which is not in the archive"),
                    ))
                }
                Some(next) => current = next,
            }
        }
        Err(OciError::bad_archive(
            &self.path,
            format!("member {name} is a chain of more than {MAX_LINK_HOPS} links (a loop?)"),
        ))
    }

    /// Opens a member's data.
    pub(crate) fn open(&self, member: Member) -> OciResult<impl Read> {
        let mut f = File::open(&self.path).map_err(OciError::io("open", &self.path))?;
        f.seek(SeekFrom::Start(member.offset))
            .map_err(OciError::io("seek in", &self.path))?;
        Ok(BufReader::new(f).take(member.size))
    }

    /// Reads a small member (JSON) fully, at most `limit` bytes.
    pub(crate) fn read_small(&self, name: &str, limit: u64) -> OciResult<Option<Vec<u8>>> {
        let Some(m) = self.get(name)? else {
            return Ok(None);
        };
        if m.size > limit {
            return Err(OciError::TooLarge {
                what: "archive member",
                location: format!("{} in {}", name, self.path.display()),
                size: m.size,
                limit,
            });
        }
        let mut out = Vec::new();
        self.open(m)?
            .read_to_end(&mut out)
            .map_err(OciError::io("read", &self.path))?;
        if out.len() as u64 != m.size {
            return Err(OciError::bad_archive(
                &self.path,
                format!("member {name} is truncated"),
            ));
        }
        Ok(Some(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_names_are_normalized_or_rejected() {
        let a = Path::new("a.tar");
        assert_eq!(
            normalize_member(a, "./blobs//sha256/x").ok(),
            Some("blobs/sha256/x".into())
        );
        assert_eq!(
            normalize_member(a, "index.json").ok(),
            Some("index.json".into())
        );
        for bad in ["../x", "a/../../x", "/etc/passwd", "\\x", "a/..", "a\0b"] {
            assert!(
                matches!(normalize_member(a, bad), Err(OciError::UnsafePath { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn link_targets_resolve_against_the_link_directory() {
        let a = Path::new("a.tar");
        let sym = |name, target| resolve_link(a, name, target, true);
        assert_eq!(sym("id/layer.tar", "../d.tar").ok(), Some("d.tar".into()));
        assert_eq!(sym("x/y/z", "../w").ok(), Some("x/w".into()));
        assert_eq!(sym("x/y", "./z/").ok(), Some("x/z".into()));
        assert_eq!(sym("top", "other").ok(), Some("other".into()));
        // Hard links name archive members from the root.
        assert_eq!(
            resolve_link(a, "id/layer.tar", "d.tar", false).ok(),
            Some("d.tar".into())
        );
        for (name, target) in [
            ("top", "../x"),
            ("id/layer.tar", "../../x"),
            ("id/layer.tar", "/etc/shadow"),
            ("a", "b\0c"),
        ] {
            assert!(
                matches!(sym(name, target), Err(OciError::UnsafePath { .. })),
                "{name} -> {target}"
            );
        }
        assert!(resolve_link(a, "id/layer.tar", "../x", false).is_err());
    }

    /// A tar of regular members and symbolic links (`data` of `None`).
    fn tar_with_links(members: &[(&str, Option<&[u8]>, &str)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, data, target) in members {
            let mut h = tar::Header::new_ustar();
            match data {
                Some(d) => {
                    h.set_size(d.len() as u64);
                    h.set_entry_type(EntryType::Regular);
                    b.append_data(&mut h, name, *d).expect("file");
                }
                None => {
                    h.set_size(0);
                    h.set_entry_type(EntryType::Symlink);
                    b.append_link(&mut h, name, target).expect("link");
                }
            }
        }
        b.into_inner().expect("tar")
    }

    #[test]
    fn links_are_followed_to_their_member_and_broken_ones_are_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("l.tar");
        std::fs::write(
            &path,
            tar_with_links(&[
                ("d.tar", Some(b"layer"), ""),
                ("id/layer.tar", None, "../d.tar"),
                ("id/again", None, "layer.tar"),
                ("dangling", None, "nowhere"),
                ("loop1", None, "loop2"),
                ("loop2", None, "loop1"),
            ]),
        )
        .expect("write");
        let idx = TarIndex::scan(&path).expect("scan");
        for name in ["d.tar", "id/layer.tar", "id/again"] {
            assert_eq!(
                idx.read_small(name, 10).expect("read"),
                Some(b"layer".to_vec()),
                "{name}"
            );
            assert!(idx.contains(name), "{name}");
        }
        let dangling = idx.get("dangling").unwrap_err().to_string();
        assert!(
            dangling.contains("dangling links to nowhere, which is not in the archive"),
            "{dangling}"
        );
        let looped = idx.get("loop1").unwrap_err().to_string();
        assert!(looped.contains("chain of more than 40 links"), "{looped}");
        assert!(!idx.contains("loop1"));
        assert!(idx.get("missing").expect("missing").is_none());
    }

    fn sha256(bytes: &[u8]) -> String {
        use sha2::Digest as _;
        hex::encode(sha2::Sha256::digest(bytes))
    }

    /// The bytes of the archive writer, pinned: recorded before the writer moved into
    /// `chasi-tar`, they prove the move byte-identical (see also `tests/oci_io.rs`).
    #[test]
    fn deterministic_tar_bytes_are_pinned() {
        let path = Path::new("pinned.tar");
        let mut out = Vec::new();
        {
            let mut t = DeterministicTar::new(&mut out, path);
            t.dir("blobs/").expect("dir");
            t.dir("blobs/sha256/").expect("dir");
            let blob = format!("blobs/sha256/{}", "ab".repeat(32));
            t.file(&blob, 1000, &mut &[7u8; 1000][..]).expect("file");
            t.file("empty", 0, &mut &b""[..]).expect("file");
            t.file("block", 512, &mut &[1u8; 512][..]).expect("file");
            // A docker-archive layer of a sha512 digest: 138 bytes, split into prefix and name.
            let layer = format!("{}/layer.tar", "cd".repeat(64));
            t.file(&layer, 3, &mut &b"abc"[..]).expect("file");
            t.file("index.json", 2, &mut &b"{}"[..]).expect("file");
            t.finish().expect("finish");
        }
        assert_eq!(
            sha256(&out),
            "f70c09f05d3c427e898b1e5762e0ef5605a796de24fc5bf3277fe0dddc6c5542",
            "{} bytes",
            out.len()
        );
    }

    /// Accepts `limit` bytes, then fails: captures the header of a member too large to write.
    struct Headers(Vec<u8>, usize);

    impl Write for Headers {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.0.len() >= self.1 {
                return Err(io::Error::other("enough"));
            }
            let n = buf.len().min(self.1 - self.0.len());
            self.0.extend_from_slice(&buf[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn large_member_header_is_pinned() {
        let mut out = Headers(Vec::new(), 1024);
        {
            let mut t = DeterministicTar::new(&mut out, Path::new("big.tar"));
            let name = format!("blobs/sha256/{}", "ef".repeat(32));
            assert!(t.file(&name, 9 << 30, &mut io::repeat(0)).is_err());
        }
        let header = &out.0[..512];
        assert_eq!(header[124], 0x80, "GNU base-256 size");
        assert!(out.0[512..].iter().all(|&b| b == 0));
        assert_eq!(
            sha256(header),
            "6f550ae76143a78c87b78d48a6ae1f016bb68d3f8ac7b63eafdc9bfd2f55c895"
        );
    }

    #[test]
    fn deterministic_tar_round_trips_through_the_index() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("t.tar");
        let mut out = Vec::new();
        {
            let mut t = DeterministicTar::new(&mut out, &path);
            t.dir("blobs/").expect("dir");
            t.file("blobs/a", 3, &mut &b"abc"[..]).expect("file");
            t.finish().expect("finish");
        }
        let mut t = DeterministicTar::new(Vec::new(), &path);
        let short = t.file("blobs/b", 5, &mut &b"abc"[..]).unwrap_err();
        assert!(
            short
                .to_string()
                .contains("member blobs/b: wrote 3 bytes, expected 5"),
            "{short}"
        );
        let long = t.file("blobs/c", 2, &mut &b"abc"[..]).unwrap_err();
        assert!(
            long.to_string()
                .contains("member blobs/c: wrote 3 bytes, expected 2"),
            "the reader is read to its end: {long}"
        );
        std::fs::write(&path, &out).expect("write");
        let idx = TarIndex::scan(&path).expect("scan");
        assert_eq!(
            idx.read_small("blobs/a", 10).expect("read"),
            Some(b"abc".to_vec())
        );
        assert!(idx.read_small("blobs/a", 2).is_err(), "limit enforced");
        assert_eq!(idx.read_small("missing", 10).expect("read"), None);
    }
}
