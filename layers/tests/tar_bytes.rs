//! The exact bytes of the layer tar writer, pinned by SHA-256.
//!
//! A layer's DiffID is the digest of these bytes, so any change to the encoding (headers,
//! PAX records, padding, order) changes every image chasi builds. The digests were recorded
//! before the writer moved into `chasi-tar` and prove the move byte-identical; a failure here
//! is a change of chasi's output, never to be "fixed" by updating the constant without a new
//! layout version.

use chasi_layers::diff::diff_trees;
use chasi_layers::tarwriter::write_tree;
use chasi_layers::{EntryKind, TarEntry, TarOptions, TarWriter};
use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn sha256(bytes: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, bytes))
}

fn file(path: &[u8], size: u64) -> TarEntry {
    TarEntry {
        path: path.to_vec(),
        kind: EntryKind::File,
        mode: 0o644,
        uid: 0,
        gid: 0,
        mtime: 1_700_000_000,
        size,
        xattrs: BTreeMap::new(),
    }
}

/// Every kind of entry and every value that needs a PAX record, written entry by entry.
fn entries_tar() -> Vec<u8> {
    let mut tw = TarWriter::new(Vec::new());
    let data = |n: usize| (0..n).map(|i| (i % 251) as u8).collect::<Vec<u8>>();
    let mut add = |e: TarEntry| {
        let d = data(e.size as usize);
        tw.append(&e, Some(&mut &d[..])).expect("append");
    };
    add(file(b"short", 3));
    add(file(b"block", 512));
    add(file(b"odd", 1000));
    add(TarEntry {
        kind: EntryKind::Dir,
        mode: 0o755,
        ..file(b"dir", 0)
    });
    // A directory whose name is 100 bytes with the slash: still fits the name field.
    add(TarEntry {
        kind: EntryKind::Dir,
        ..file(&[b'd'; 99], 0)
    });
    // 150 bytes, splittable into prefix and name.
    let split = [&b"p/".repeat(40)[..], &[b'n'; 70]].concat();
    add(file(&split, 5));
    // 300 bytes without a slash: a PAX path, and a PAX header name truncated to 100.
    add(file(&[b'a'; 300], 0));
    // A long name under a directory: `dir/PaxHeaders/base`.
    add(file(&[&b"sub/"[..], &[b'z'; 200]].concat(), 0));
    add(TarEntry {
        kind: EntryKind::Symlink(b"../short".to_vec()),
        mode: 0o777,
        ..file(b"sym", 0)
    });
    add(TarEntry {
        kind: EntryKind::Symlink([b't'; 150].to_vec()),
        mode: 0o777,
        ..file(b"longsym", 0)
    });
    add(TarEntry {
        kind: EntryKind::Hardlink(b"short".to_vec()),
        ..file(b"hard", 0)
    });
    add(TarEntry {
        kind: EntryKind::Char(1, 3),
        mode: 0o666,
        ..file(b"null", 0)
    });
    add(TarEntry {
        kind: EntryKind::Block(8, 1),
        mode: 0o660,
        ..file(b"sda1", 0)
    });
    add(TarEntry {
        kind: EntryKind::Fifo,
        ..file(b"fifo", 0)
    });
    add(TarEntry {
        uid: 3_000_000,
        gid: 4_000_000,
        mode: 0o4755,
        ..file(b"ids", 2)
    });
    add(TarEntry {
        mtime: -5,
        ..file(b"before-epoch", 1)
    });
    add(TarEntry {
        mtime: 0o100000000000,
        ..file(b"far-future", 1)
    });
    let mut xattrs = BTreeMap::new();
    xattrs.insert("user.b".to_string(), b"two".to_vec());
    xattrs.insert("security.capability".to_string(), vec![1, 0, 0, 2, 0, 0]);
    add(TarEntry {
        xattrs,
        ..file(b"xattrs", 4)
    });
    add(TarEntry::whiteout(b"dir", b"gone", 1_700_000_000));
    add(TarEntry::whiteout(b"", b"top", 7));
    add(TarEntry::opaque(b"dir", 1_700_000_000));
    add(file("ünïcode".as_bytes(), 1));
    tw.finish().expect("finish")
}

#[test]
fn entry_bytes_are_pinned() {
    let tar = entries_tar();
    assert_eq!(tar, entries_tar(), "same entries, same bytes");
    assert_eq!(
        sha256(&tar),
        "90d9dd5702c9059f56615aa867a8c2bd1b6dcb2ef7c33aec5fe4e967178f7427",
        "{} bytes",
        tar.len()
    );
}

/// Accepts `limit` bytes, then fails: captures the headers of a member too large to write.
struct Headers {
    got: Vec<u8>,
    limit: usize,
}

impl Write for Headers {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.got.len() >= self.limit {
            return Err(io::Error::other("enough"));
        }
        let n = buf.len().min(self.limit - self.got.len());
        self.got.extend_from_slice(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn large_size_pax_headers_are_pinned() {
    let mut out = Headers {
        got: Vec::new(),
        limit: 4096,
    };
    {
        let mut tw = TarWriter::new(&mut out);
        let e = file(b"big.img", 9 << 30);
        assert!(tw.append(&e, Some(&mut io::repeat(0))).is_err());
    }
    // PAX header, its one-block body, the ustar header; then data.
    let headers = &out.got[..1536];
    assert_eq!(headers[156], b'x');
    assert_eq!(headers[1024 + 156], b'0');
    assert!(out.got[1536..].iter().all(|&b| b == 0));
    assert_eq!(
        sha256(headers),
        "1feb552420defacd0e819181a328e419b0b999c72fd4247f4dab4a829dc0505e"
    );
}

fn set_mtime(path: &Path, secs: u64) {
    let f = fs::File::open(path).expect("open");
    f.set_modified(UNIX_EPOCH + Duration::from_secs(secs))
        .expect("set mtime");
}

fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).expect("chmod");
}

/// A tree with long names, symlinks, hard links and a FIFO, with fixed modes and times.
fn make_tree(root: &Path, variant: bool) {
    let deep = root.join("d".repeat(60)).join("e".repeat(60));
    fs::create_dir_all(&deep).expect("mkdir");
    let long = deep.join("f".repeat(90));
    fs::write(&long, b"long name\n").expect("write");
    fs::write(root.join("a"), vec![b'a'; 700]).expect("write");
    fs::write(root.join("b"), if variant { &b"changed"[..] } else { b"b" }).expect("write");
    if !variant {
        fs::write(root.join("removed"), b"x").expect("write");
    }
    fs::hard_link(root.join("a"), root.join("a-link")).expect("link");
    std::os::unix::fs::symlink("a", root.join("sym")).expect("symlink");
    std::os::unix::fs::symlink("t".repeat(120), root.join("longsym")).expect("symlink");
    rustix::fs::mknodat(
        rustix::fs::CWD,
        root.join("fifo"),
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
        0,
    )
    .expect("mkfifo");
    for (p, mode, t) in [
        (long.as_path(), 0o640, 1_000),
        (&root.join("a"), 0o755, 2_000),
        (&root.join("b"), 0o600, 3_000),
    ] {
        chmod(p, mode);
        set_mtime(p, t);
    }
    chmod(&root.join("fifo"), 0o600);
    if !variant {
        chmod(&root.join("removed"), 0o644);
    }
    for d in [&deep, &deep.parent().expect("parent").to_path_buf()] {
        chmod(d, 0o755);
        set_mtime(d, 500);
    }
}

fn tree_opts() -> TarOptions {
    TarOptions {
        source_date_epoch: Some(1_000_000_000),
        ..Default::default()
    }
}

#[test]
fn tree_bytes_are_pinned() {
    let t = tempfile::tempdir().expect("tempdir");
    make_tree(t.path(), false);
    let (tar, _) = write_tree(t.path(), &tree_opts(), Vec::new()).expect("write_tree");
    assert!(SystemTime::now() > UNIX_EPOCH + Duration::from_secs(1_000_000_000));
    assert_eq!(
        sha256(&tar),
        "ac16a1095d712ef0a0d93afe18ce348766759db0f1375386325ef27cd134ce46",
        "{} bytes",
        tar.len()
    );
}

#[test]
fn diff_bytes_are_pinned() {
    let old = tempfile::tempdir().expect("tempdir");
    let new = tempfile::tempdir().expect("tempdir");
    make_tree(old.path(), false);
    make_tree(new.path(), true);
    let (tar, stats) = diff_trees(old.path(), new.path(), &tree_opts(), Vec::new()).expect("diff");
    assert_eq!(stats.deleted, 1, "{stats:?}");
    assert_eq!(
        sha256(&tar),
        "5616479686a9e96bc44aab8338cf4b1c6bd35b19d1d73a5c027d60fe38a92d2f",
        "{} bytes",
        tar.len()
    );
}
