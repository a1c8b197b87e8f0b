//! Every malicious-tar case is rejected with a clear error and nothing is written outside the target; whiteouts,
//! opaque directories, flatten and tree diff agree with each other.

mod common;
mod hostile;

use chasi_layers::apply::apply_layer;
use chasi_layers::diff::diff_trees;
use chasi_layers::{ApplyOptions, Error, Store, TarOptions};
use common::*;
use std::fs;
use std::path::Path;

fn opts() -> ApplyOptions {
    ApplyOptions {
        chown: false,
        devices: false,
        xattrs: false,
        only: Vec::new(),
    }
}

/// A raw ustar header with any name (the `tar` crate refuses to build `..` names, attackers do not).
fn raw_entry(out: &mut Vec<u8>, name: &str, flag: u8, link: &str, data: &[u8]) {
    let mut h = [0u8; 512];
    h[..name.len()].copy_from_slice(name.as_bytes());
    h[100..108].copy_from_slice(b"0000644\0");
    h[108..116].copy_from_slice(b"0000000\0");
    h[116..124].copy_from_slice(b"0000000\0");
    h[124..136].copy_from_slice(format!("{:011o}\0", data.len()).as_bytes());
    h[136..148].copy_from_slice(b"00000000000\0");
    h[156] = flag;
    h[157..157 + link.len()].copy_from_slice(link.as_bytes());
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|&b| b as u32).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    out.extend_from_slice(&h);
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512, 0);
}

fn pax_entry(out: &mut Vec<u8>, path: &str) {
    let rec = format!("path={path}\n");
    let mut len = rec.len() + 3;
    while format!("{len} {rec}").len() != len {
        len += 1;
    }
    raw_entry(
        out,
        "PaxHeaders/x",
        b'x',
        "",
        format!("{len} {rec}").as_bytes(),
    );
}

fn finish(mut v: Vec<u8>) -> Vec<u8> {
    v.extend_from_slice(&[0u8; 1024]);
    v
}

/// Applies `tar` into `<tmp>/root`, returns the error, and checks `<tmp>/outside` is untouched.
fn attack(build: impl Fn(&mut Vec<u8>)) -> Error {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    let outside = t.path().join("outside");
    fs::create_dir_all(&root).unwrap();
    fs::create_dir_all(&outside).unwrap();
    fs::write(outside.join("secret"), b"keep").unwrap();
    let mut tar = Vec::new();
    build(&mut tar);
    let err = apply_layer(&finish(tar)[..], &root, &opts(), "test")
        .expect_err("malicious tar must be rejected");
    let names: Vec<_> = fs::read_dir(&outside)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 1, "something was written outside: {names:?}");
    assert_eq!(fs::read(outside.join("secret")).unwrap(), b"keep");
    assert!(!t.path().join("evil").exists());
    err
}

fn is_unsafe(e: &Error, needle: &str) {
    assert!(matches!(e, Error::UnsafeEntry { .. }), "{e}");
    assert!(
        e.to_string().contains(needle),
        "message {e:?} lacks {needle:?}"
    );
}

#[test]
fn dotdot_and_absolute_names_are_rejected() {
    is_unsafe(&attack(|t| raw_entry(t, "../evil", b'0', "", b"x")), "'..'");
    is_unsafe(
        &attack(|t| raw_entry(t, "a/../../evil", b'0', "", b"x")),
        "'..'",
    );
    is_unsafe(
        &attack(|t| raw_entry(t, "/evil", b'0', "", b"x")),
        "absolute",
    );
    is_unsafe(
        &attack(|t| pax_entry_then_file(t, "../outside/secret")),
        "'..'",
    );
    is_unsafe(
        &attack(|t| raw_entry(t, "../outside/secret", b'5', "", b"")),
        "'..'",
    );
}

fn pax_entry_then_file(t: &mut Vec<u8>, path: &str) {
    pax_entry(t, path);
    raw_entry(t, "innocent", b'0', "", b"pwned");
}

#[test]
fn writing_through_symlinks_that_leave_the_root_is_rejected() {
    // Relative symlink climbing out, then a file through it.
    is_unsafe(
        &attack(|t| {
            raw_entry(t, "link", b'2', "../outside", b"");
            raw_entry(t, "link/secret", b'0', "", b"pwned");
        }),
        "outside the target",
    );
    // Nested: dir/link -> ../../outside
    is_unsafe(
        &attack(|t| {
            raw_entry(t, "d/", b'5', "", b"");
            raw_entry(t, "d/l", b'2', "../../outside", b"");
            raw_entry(t, "d/l/new", b'0', "", b"pwned");
        }),
        "outside the target",
    );
    // Symlink chain through an absolute link and `..`.
    is_unsafe(
        &attack(|t| {
            raw_entry(t, "a", b'2', "/..", b"");
            raw_entry(t, "a/outside/secret", b'0', "", b"pwned");
        }),
        "outside the target",
    );
    // Symlink loop.
    is_unsafe(
        &attack(|t| {
            raw_entry(t, "x", b'2', "y", b"");
            raw_entry(t, "y", b'2', "x", b"");
            raw_entry(t, "x/f", b'0', "", b"");
        }),
        "symbolic links",
    );
    // Whiteout through an escaping symlink.
    is_unsafe(
        &attack(|t| {
            raw_entry(t, "l", b'2', "../outside", b"");
            raw_entry(t, "l/.wh.secret", b'0', "", b"");
        }),
        "outside the target",
    );
}

#[test]
fn hardlink_tricks_are_rejected() {
    is_unsafe(
        &attack(|t| raw_entry(t, "h", b'1', "../outside/secret", b"")),
        "'..'",
    );
    is_unsafe(
        &attack(|t| raw_entry(t, "h", b'1', "/etc/passwd", b"")),
        "absolute",
    );
    is_unsafe(
        &attack(|t| {
            raw_entry(t, "l", b'2', "../outside", b"");
            raw_entry(t, "h", b'1', "l/secret", b"");
        }),
        "outside the target",
    );
    is_unsafe(
        &attack(|t| raw_entry(t, "h", b'1', "missing", b"")),
        "does not exist",
    );
    is_unsafe(
        &attack(|t| {
            raw_entry(t, "d/", b'5', "", b"");
            raw_entry(t, "h", b'1', "d", b"");
        }),
        "directory",
    );
}

#[test]
fn bad_whiteouts_and_types_are_rejected() {
    is_unsafe(
        &attack(|t| raw_entry(t, "d/.wh...", b'0', "", b"")),
        "whiteout",
    );
    is_unsafe(
        &attack(|t| raw_entry(t, "odd", b'Z', "", b"")),
        "unsupported",
    );
    assert!(matches!(
        attack(|t| raw_entry(t, "sparse", b'S', "", b"")),
        Error::BadTar { .. }
    ));
    // A header with a broken checksum.
    let t = tempfile::tempdir().unwrap();
    let mut tar = Vec::new();
    raw_entry(&mut tar, "f", b'0', "", b"x");
    tar[148] = b'9';
    let err = apply_layer(&finish(tar)[..], t.path(), &opts(), "test").unwrap_err();
    assert!(matches!(err, Error::BadTar { .. }), "{err}");
}

#[test]
fn in_root_symlinks_and_replacements_are_safe() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    fs::create_dir_all(&root).unwrap();
    let outside = t.path().join("outside");
    fs::create_dir_all(&outside).unwrap();
    let mut tar = Vec::new();
    raw_entry(&mut tar, "usr/lib/", b'5', "", b"");
    // Absolute symlink resolved inside the root (merged-/usr style).
    raw_entry(&mut tar, "lib", b'2', "/usr/lib", b"");
    raw_entry(&mut tar, "lib/libc.so", b'0', "", b"elf");
    // A symlink pointing outside, then a regular file with the same name: the link is replaced, not followed.
    raw_entry(&mut tar, "trap", b'2', "../outside/pwned", b"");
    raw_entry(&mut tar, "trap", b'0', "", b"data");
    // A hard link to a symlink links the symlink itself.
    raw_entry(&mut tar, "sl", b'2', "../outside", b"");
    raw_entry(&mut tar, "hl", b'1', "sl", b"");
    apply_layer(&finish(tar)[..], &root, &opts(), "test").unwrap();
    assert_eq!(fs::read(root.join("usr/lib/libc.so")).unwrap(), b"elf");
    assert_eq!(fs::read(root.join("trap")).unwrap(), b"data");
    assert!(fs::symlink_metadata(root.join("trap")).unwrap().is_file());
    assert!(fs::symlink_metadata(root.join("hl"))
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(fs::read_dir(&outside).unwrap().count(), 0);
}

fn layer_tar(build: impl Fn(&mut Vec<u8>)) -> Vec<u8> {
    let mut v = Vec::new();
    build(&mut v);
    finish(v)
}

#[test]
fn whiteouts_opaque_dirs_and_flatten_agree() {
    let t = tempfile::tempdir().unwrap();
    let s = Store::open_with_layout(t.path().join("s"), small_layout()).unwrap();
    let l1 = s
        .ingest_tar(
            &layer_tar(|t| {
                raw_entry(t, "a/", b'5', "", b"");
                raw_entry(t, "a/keep", b'0', "", b"1");
                raw_entry(t, "a/gone", b'0', "", b"2");
                raw_entry(t, "o/", b'5', "", b"");
                raw_entry(t, "o/old1", b'0', "", b"3");
                raw_entry(t, "o/sub/old2", b'0', "", b"4");
                raw_entry(t, "f", b'0', "", b"original");
                raw_entry(t, "hl", b'1', "f", b"");
                raw_entry(t, "d/x", b'0', "", b"x");
            })[..],
        )
        .unwrap();
    let l2 = s
        .ingest_tar(
            &layer_tar(|t| {
                raw_entry(t, "a/.wh.gone", b'0', "", b"");
                raw_entry(t, "o/new", b'0', "", b"5");
                raw_entry(t, "o/.wh..wh..opq", b'0', "", b"");
                raw_entry(t, "f", b'0', "", b"replaced");
                raw_entry(t, "d", b'0', "", b"file now");
                raw_entry(t, ".wh.nonexistent", b'0', "", b"");
            })[..],
        )
        .unwrap();
    let layers = [l1.diff_id, l2.diff_id];
    let out = t.path().join("unpacked");
    let st = s.unpack(&layers, &out, &opts()).unwrap();
    assert_eq!(st.whiteouts, 3);
    let snap = snapshot(&out);
    let names: Vec<_> = snap.keys().cloned().collect();
    assert_eq!(names, ["a", "a/keep", "d", "f", "hl", "o", "o/new"]);
    assert_eq!(snap["f"].2, b"replaced");
    assert_eq!(
        snap["hl"].2, b"original",
        "the hard link keeps the old inode"
    );
    // Flatten: one tar, no whiteouts, same tree once unpacked.
    let mut flat = Vec::new();
    s.flatten(&layers, &mut flat).unwrap();
    let out2 = t.path().join("flat");
    fs::create_dir_all(&out2).unwrap();
    apply_layer(&flat[..], &out2, &opts(), "flat").unwrap();
    assert_eq!(snapshot(&out2), snap);
    assert!(!String::from_utf8_lossy(&flat).contains(".wh."));
    let mut flat2 = Vec::new();
    s.flatten(&layers, &mut flat2).unwrap();
    assert_eq!(flat, flat2, "flatten is deterministic");
}

#[test]
fn flatten_of_a_real_tree_matches_unpack() {
    let t = tempfile::tempdir().unwrap();
    let s = Store::open_with_layout(t.path().join("s"), small_layout()).unwrap();
    let (a, b) = (t.path().join("a"), t.path().join("b"));
    make_tree(&a, 5, 30);
    make_tree(&b, 6, 10);
    let topts = TarOptions {
        source_date_epoch: Some(1_000_000),
        ..Default::default()
    };
    let la = s.ingest_dir(&a, &topts).unwrap();
    let lb = s.ingest_dir(&b, &topts).unwrap();
    let out = t.path().join("u");
    s.unpack(&[la.diff_id, lb.diff_id], &out, &opts()).unwrap();
    let mut flat = Vec::new();
    s.flatten(&[la.diff_id, lb.diff_id], &mut flat).unwrap();
    let out2 = t.path().join("f");
    fs::create_dir_all(&out2).unwrap();
    apply_layer(&flat[..], &out2, &opts(), "flat").unwrap();
    assert_eq!(snapshot(&out), snapshot(&out2));
    let view = s.flat_view(&[la.diff_id, lb.diff_id]).unwrap();
    assert_eq!(view.entries().len(), snapshot(&out).len());
}

fn copy_tree(from: &Path, to: &Path) {
    let mut tar = Vec::new();
    let (t, _) =
        chasi_layers::tarwriter::write_tree(from, &TarOptions::default(), &mut tar).unwrap();
    let _ = t;
    fs::create_dir_all(to).unwrap();
    apply_layer(&tar[..], to, &opts(), "copy").unwrap();
}

#[test]
fn tree_diff_applied_on_old_gives_new() {
    let t = tempfile::tempdir().unwrap();
    let (old, new) = (t.path().join("old"), t.path().join("new"));
    make_tree(&old, 8, 30);
    copy_tree(&old, &new);
    // Changes: modify, add, delete a file, delete a dir, replace a dir wholesale, file → dir, chmod, symlink retarget.
    fs::write(new.join("usr/lib/f1"), b"changed").unwrap();
    fs::write(new.join("etc/added"), b"new file").unwrap();
    fs::remove_file(new.join("etc/conf.d/f0")).unwrap();
    fs::remove_dir_all(new.join("usr/lib/deep")).unwrap();
    fs::remove_dir_all(new.join("etc/conf.d")).unwrap();
    fs::create_dir_all(new.join("etc/conf.d")).unwrap();
    fs::write(new.join("etc/conf.d/only"), b"fresh").unwrap();
    fs::remove_file(new.join("usr/lib/big")).unwrap();
    fs::create_dir_all(new.join("usr/lib/big")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(new.join("usr/lib/f4"), fs::Permissions::from_mode(0o755)).unwrap();
    fs::remove_file(new.join("lib")).unwrap();
    std::os::unix::fs::symlink("etc", new.join("lib")).unwrap();
    let topts = TarOptions::default();
    let (tar, stats) = diff_trees(&old, &new, &topts, Vec::new()).unwrap();
    assert!(
        stats.deleted >= 1 && stats.opaque == 1 && stats.added >= 2 && stats.changed >= 3,
        "{stats:?}"
    );
    let applied = t.path().join("applied");
    copy_tree(&old, &applied);
    apply_layer(&tar[..], &applied, &opts(), "diff").unwrap();
    assert_eq!(snapshot(&applied), snapshot(&new));
    // No change → an empty layer.
    let (tar, stats) = diff_trees(&new, &new, &topts, Vec::new()).unwrap();
    assert_eq!(stats.added + stats.changed + stats.deleted, 0);
    assert_eq!(tar.len(), 1024);
    // Through the store.
    let s = Store::open_with_layout(t.path().join("s"), small_layout()).unwrap();
    let base = s.ingest_dir(&old, &topts).unwrap();
    let (d, _) = s.ingest_diff(&old, &new, &topts).unwrap();
    let out = t.path().join("o");
    s.unpack(&[base.diff_id, d.diff_id], &out, &opts()).unwrap();
    assert_eq!(snapshot(&out), snapshot(&new));
}

#[test]
fn special_files_round_trip() {
    use std::os::unix::fs::FileTypeExt;
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    fs::create_dir_all(&src).unwrap();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        src.join("fifo"),
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
        0,
    )
    .unwrap();
    let root = rustix::process::geteuid().is_root();
    if root {
        let dev = rustix::fs::makedev(1, 3);
        rustix::fs::mknodat(
            rustix::fs::CWD,
            src.join("null"),
            rustix::fs::FileType::CharacterDevice,
            rustix::fs::Mode::from_raw_mode(0o666),
            dev,
        )
        .unwrap();
    }
    let s = Store::open_with_layout(t.path().join("s"), small_layout()).unwrap();
    let l = s.ingest_dir(&src, &TarOptions::default()).unwrap();
    let out = t.path().join("out");
    let st = s
        .unpack(
            &[l.diff_id],
            &out,
            &ApplyOptions {
                chown: root,
                devices: root,
                xattrs: false,
                only: Vec::new(),
            },
        )
        .unwrap();
    assert!(fs::symlink_metadata(out.join("fifo"))
        .unwrap()
        .file_type()
        .is_fifo());
    if root {
        let md = fs::symlink_metadata(out.join("null")).unwrap();
        assert!(md.file_type().is_char_device());
        assert_eq!(
            std::os::unix::fs::MetadataExt::rdev(&md),
            rustix::fs::makedev(1, 3)
        );
        assert_eq!(st.skipped_devices, 0);
    }
    // Without permission to create devices they are skipped and counted, never fatal.
    let out2 = t.path().join("out2");
    let st = s.unpack(&[l.diff_id], &out2, &opts()).unwrap();
    assert_eq!(st.skipped_devices, u64::from(root));
}

/// A directory beside the target root with a known old mtime, to prove nothing reached it.
struct Canary {
    path: std::path::PathBuf,
}

const CANARY_MTIME: i64 = 1_000_000;

impl Canary {
    fn new(path: std::path::PathBuf) -> Canary {
        fs::create_dir_all(&path).unwrap();
        fs::write(path.join("keep"), b"keep").unwrap();
        set_mtime(&path, CANARY_MTIME);
        Canary { path }
    }

    fn assert_untouched(&self) {
        use std::os::unix::fs::MetadataExt;
        let md = fs::metadata(&self.path).unwrap();
        assert_eq!(md.mtime(), CANARY_MTIME, "the canary's mtime was changed");
        let names: Vec<_> = fs::read_dir(&self.path)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["keep"], "something was written into the canary");
        assert_eq!(fs::read(self.path.join("keep")).unwrap(), b"keep");
    }
}

fn set_mtime(p: &Path, t: i64) {
    let ts = rustix::fs::Timespec {
        tv_sec: t,
        tv_nsec: 0,
    };
    rustix::fs::utimensat(
        rustix::fs::CWD,
        p,
        &rustix::fs::Timestamps {
            last_access: ts,
            last_modification: ts,
        },
        rustix::fs::AtFlags::empty(),
    )
    .unwrap();
}

#[test]
fn deferred_directory_times_do_not_follow_a_parent_replaced_by_a_relative_symlink() {
    // `x/`, `x/victim/`, then `x -> ..`: setting the time of `x/victim` by path at the end would reach
    // `<root>/../victim`, a directory beside the root.
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    fs::create_dir_all(&root).unwrap();
    let canary = Canary::new(t.path().join("victim"));
    let tar = layer_tar(|t| {
        raw_entry(t, "x/", b'5', "", b"");
        raw_entry(t, "x/victim/", b'5', "", b"");
        raw_entry(t, "x", b'2', "..", b"");
    });
    apply_layer(&tar[..], &root, &opts(), "test").unwrap();
    canary.assert_untouched();
    assert!(fs::symlink_metadata(root.join("x"))
        .unwrap()
        .file_type()
        .is_symlink());
}

#[test]
fn deferred_directory_times_do_not_follow_a_parent_replaced_by_an_absolute_symlink() {
    // `x/`, `x/<absolute path of the canary>/`, then `x -> /`: by path, the deferred time would land on the
    // host's directory of that name.
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    fs::create_dir_all(&root).unwrap();
    let canary = Canary::new(t.path().join("canary"));
    let inside = format!("x{}/", canary.path.display());
    let tar = layer_tar(|t| {
        raw_entry(t, "x/", b'5', "", b"");
        pax_entry(t, &inside);
        raw_entry(t, "placeholder/", b'5', "", b"");
        raw_entry(t, "x", b'2', "/", b"");
    });
    apply_layer(&tar[..], &root, &opts(), "test").unwrap();
    canary.assert_untouched();
    // The other order resolves `x/...` inside the root (an absolute link restarts at the root).
    let root2 = t.path().join("root2");
    fs::create_dir_all(&root2).unwrap();
    let tar = layer_tar(|t| {
        raw_entry(t, "x", b'2', "/", b"");
        pax_entry(t, &inside);
        raw_entry(t, "placeholder/", b'5', "", b"");
    });
    apply_layer(&tar[..], &root2, &opts(), "test").unwrap();
    canary.assert_untouched();
    let rel = canary.path.strip_prefix("/").unwrap();
    assert!(root2.join(rel).is_dir(), "created inside the root");
}

#[test]
fn deferred_times_of_a_replaced_directory_do_not_land_on_the_link_target_inside_the_root() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    fs::create_dir_all(root.join("real/sub")).unwrap();
    set_mtime(&root.join("real/sub"), CANARY_MTIME);
    let tar = layer_tar(|t| {
        raw_entry(t, "x/", b'5', "", b"");
        raw_entry(t, "x/sub/", b'5', "", b"");
        raw_entry(t, "x", b'2', "real", b"");
    });
    apply_layer(&tar[..], &root, &opts(), "test").unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        fs::metadata(root.join("real/sub")).unwrap().mtime(),
        CANARY_MTIME
    );
}

#[test]
fn errors_name_paths_inside_the_layer_not_host_paths() {
    let t = tempfile::tempdir().unwrap();
    let host = t.path().display().to_string();
    type Build<'a> = &'a dyn Fn(&mut Vec<u8>);
    let cases: [(Build<'_>, &str); 3] = [
        (
            &|t| raw_entry(t, "h", b'1', "no/such/file", b""),
            "/no does not exist",
        ),
        (
            &|t| {
                raw_entry(t, "f", b'0', "", b"x");
                raw_entry(t, "f/g", b'0', "", b"x");
            },
            "parent /f is not a directory",
        ),
        (
            &|t| {
                raw_entry(t, "d/", b'5', "", b"");
                raw_entry(t, "d/up", b'2', "../..", b"");
                raw_entry(t, "d/up/x", b'0', "", b"x");
            },
            "/d/up -> ../..",
        ),
    ];
    for (build, needle) in cases {
        let err = attack(build);
        is_unsafe(&err, needle);
        assert!(!err.to_string().contains(&host), "{err} names a host path");
    }
}

#[test]
fn owner_ids_the_kernel_would_ignore_are_refused_not_a_panic() {
    if !rustix::process::geteuid().is_root() {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let mut h = tar::Header::new_gnu();
    h.set_size(1);
    h.set_mode(0o644);
    h.set_uid(u32::MAX as u64);
    h.set_cksum();
    let mut b = tar::Builder::new(Vec::new());
    b.append_data(&mut h, "f", &b"x"[..]).unwrap();
    let tar = b.into_inner().unwrap();
    let chown = ApplyOptions {
        chown: true,
        ..opts()
    };
    let err = apply_layer(&finish(tar)[..], t.path(), &chown, "test").unwrap_err();
    is_unsafe(&err, "uid 4294967295 is out of range");
}

#[test]
fn deep_trees_are_removed_without_recursion() {
    // A long name makes a deep tree; replacing its top removes it through handles, one level at a time.
    let t = tempfile::tempdir().unwrap();
    let deep = "a/".repeat(1200);
    let tar = layer_tar(|t| {
        pax_entry(t, &format!("{deep}f"));
        raw_entry(t, "placeholder", b'0', "", b"x");
        raw_entry(t, "a", b'0', "", b"file now");
    });
    apply_layer(&tar[..], t.path(), &opts(), "test").unwrap();
    assert_eq!(fs::read(t.path().join("a")).unwrap(), b"file now");
    let long = "b/".repeat(2100);
    let err = attack(|t| {
        pax_entry(t, &long);
        raw_entry(t, "placeholder", b'0', "", b"x");
    });
    is_unsafe(&err, "longer than 4096 bytes");
}

/// A scratch directory on tmpfs when there is one (thousands of tiny trees), else the default.
fn fast_tempdir() -> tempfile::TempDir {
    tempfile::tempdir_in("/dev/shm").unwrap_or_else(|_| tempfile::tempdir().unwrap())
}

/// Changes one byte of a header's name, type or link and fixes its checksum, so the parser
/// accepts what the applier must then judge.
fn mutate(tar: &mut [u8], r: u64) {
    let blocks = tar.len() / 512;
    let b = (r as usize % blocks.max(1)) * 512;
    let h = &mut tar[b..b + 512];
    if &h[257..262] != b"ustar" {
        return;
    }
    let at = [
        (r >> 16) as usize % 100,
        156,
        157 + (r >> 24) as usize % 100,
    ][(r >> 8) as usize % 3];
    h[at] = [b'/', b'.', b'x', 0, b'2', b'1', b'5', (r >> 40) as u8][(r >> 32) as usize % 8];
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|&b| b as u32).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
}

#[test]
fn thousands_of_hostile_tars_change_nothing_outside_the_root() {
    let t = fast_tempdir();
    let canaries = [
        Canary::new(t.path().join("canary")),
        Canary::new(t.path().join("victim")),
    ];
    let abs = canaries[0].path.display().to_string();
    let s = Store::open_with_layout(t.path().join("store"), small_layout()).unwrap();
    let root = t.path().join("root");
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let (mut applied, mut flattened) = (0, 0);
    let mut below: Option<chasi_layers::Digest> = None;
    for i in 0..3000 {
        let len = 1 + next() as usize % 12;
        let script: Vec<u8> = (0..len * 4).map(|_| next() as u8).collect();
        let mut tar = hostile::tar_from_script(&script, &abs);
        if i % 3 == 2 {
            mutate(&mut tar, next());
        }
        fs::create_dir_all(&root).unwrap();
        let res = apply_layer(&tar[..], &root, &opts(), "hostile");
        applied += u32::from(res.is_ok());
        for c in &canaries {
            c.assert_untouched();
        }
        let mut names: Vec<_> = fs::read_dir(t.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["canary", "root", "store", "victim"], "case {i}");
        fs::remove_dir_all(&root).unwrap();
        // Flatten (alone and over the previous layer) must not panic, and agree with unpack.
        if i % 10 == 0 && res.is_ok() {
            let l = s.ingest_tar(&tar[..]).unwrap();
            for layers in [
                vec![l.diff_id],
                below.iter().copied().chain([l.diff_id]).collect(),
            ] {
                flattened += u32::from(flatten_agrees(&s, &layers, t.path()));
            }
            below = Some(l.diff_id);
        }
    }
    for c in &canaries {
        c.assert_untouched();
    }
    assert!(
        applied > 300 && flattened > 50,
        "{applied} applied, {flattened} flattened"
    );
}

/// Unpacks `layers` and applies their flattened tar; both trees must be equal. False when the
/// stack itself is refused (both ways).
fn flatten_agrees(s: &Store, layers: &[chasi_layers::Digest], tmp: &Path) -> bool {
    let (a, b) = (tmp.join("root"), tmp.join("root"));
    let unpacked = s.unpack(layers, &a, &opts()).map(|_| tree_of(&a));
    let _ = fs::remove_dir_all(&a);
    let mut flat = Vec::new();
    let flattened = s.flatten(layers, &mut flat);
    match (&unpacked, &flattened) {
        (Ok(tree), Ok(_)) => {
            fs::create_dir_all(&b).unwrap();
            apply_layer(&flat[..], &b, &opts(), "flat").unwrap();
            let again = tree_of(&b);
            fs::remove_dir_all(&b).unwrap();
            assert_eq!(&again, tree, "flatten and unpack disagree on {layers:?}");
            true
        }
        (Err(_), Err(_)) => false,
        _ => panic!(
            "unpack {:?} but flatten {:?} for {layers:?}",
            unpacked.as_ref().map(|_| ()),
            flattened.as_ref().map(|_| ())
        ),
    }
}

/// Like `common::snapshot`, but FIFOs are described, not read (reading one would block).
fn tree_of(root: &Path) -> std::collections::BTreeMap<String, (char, u32, Vec<u8>)> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let mut out = std::collections::BTreeMap::new();
    for e in walkdir::WalkDir::new(root).min_depth(1) {
        let e = e.unwrap();
        let rel = e.path().strip_prefix(root).unwrap().display().to_string();
        let md = fs::symlink_metadata(e.path()).unwrap();
        let mode = md.mode() & 0o7777;
        let ft = md.file_type();
        let v = if ft.is_symlink() {
            let t = fs::read_link(e.path()).unwrap();
            ('l', 0, t.into_os_string().into_encoded_bytes())
        } else if ft.is_dir() {
            ('d', mode, Vec::new())
        } else if ft.is_fifo() {
            ('p', mode, Vec::new())
        } else {
            ('f', mode, fs::read(e.path()).unwrap())
        };
        out.insert(rel, v);
    }
    out
}

#[test]
fn a_subtree_filter_applies_only_those_trees_and_their_whiteouts() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    fs::create_dir(&root).unwrap();
    let mut lower = Vec::new();
    raw_entry(&mut lower, "etc/", b'5', "", b"");
    raw_entry(&mut lower, "etc/passwd", b'0', "", b"root");
    raw_entry(&mut lower, "manifests/", b'5', "", b"");
    raw_entry(&mut lower, "manifests/a.yaml", b'0', "", b"a");
    raw_entry(&mut lower, "manifests/old.yaml", b'0', "", b"old");
    raw_entry(&mut lower, "application/", b'5', "", b"");
    raw_entry(&mut lower, "application/apps/", b'5', "", b"");
    raw_entry(&mut lower, "application/apps/x/p.yaml", b'0', "", b"p");
    raw_entry(&mut lower, "application/other", b'0', "", b"o");
    let filtered = ApplyOptions {
        only: vec!["manifests".into(), "application/apps".into()],
        ..opts()
    };
    apply_layer(&finish(lower)[..], &root, &filtered, "lower").unwrap();
    let mut upper = Vec::new();
    raw_entry(&mut upper, "manifests/.wh.old.yaml", b'0', "", b"");
    raw_entry(&mut upper, "manifests/link.yaml", b'1', "etc/passwd", b"");
    raw_entry(
        &mut upper,
        "manifests/same.yaml",
        b'1',
        "manifests/a.yaml",
        b"",
    );
    raw_entry(&mut upper, "etc/shadow", b'0', "", b"secret");
    let stats = apply_layer(&finish(upper)[..], &root, &filtered, "upper").unwrap();
    assert_eq!(stats.outside_links, 1, "{stats:?}");
    assert_eq!(fs::read(root.join("manifests/a.yaml")).unwrap(), b"a");
    assert_eq!(fs::read(root.join("manifests/same.yaml")).unwrap(), b"a");
    assert!(
        !root.join("manifests/old.yaml").exists(),
        "the whiteout is honoured"
    );
    assert!(!root.join("manifests/link.yaml").exists());
    assert_eq!(
        fs::read(root.join("application/apps/x/p.yaml")).unwrap(),
        b"p"
    );
    assert!(root.join("application").is_dir(), "the way down is made");
    assert!(!root.join("application/other").exists());
    assert!(!root.join("etc").exists(), "nothing outside the subtrees");
}
