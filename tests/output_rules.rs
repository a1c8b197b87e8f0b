//! The output rules of `chasi export -o` and `chasi save -o` (oci/src/output.rs), end
//! to end and as root: a regular file is replaced atomically, anything else that exists
//! (`/dev/null`, `/dev/full`, a FIFO, a loop device) is written in place and never
//! unlinked, `-` is standard output, symlinks are followed, modes follow the umask, and a
//! killed export leaves no work directory outside the store.

mod common;

use common::{ok, run, write_files};
use std::fs;
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A small image: a few files, one of 256 KiB.
fn small_image(dir: &Path, store: &Path) -> &'static str {
    let ctx = dir.join("ctx");
    write_files(
        &ctx,
        &[
            ("Kubefile", "FROM scratch\nCOPY files/ /\n"),
            ("files/etc/hello.txt", "hello from chasi\n"),
            ("files/usr/share/doc/readme", "docs\n"),
        ],
    );
    let data: Vec<u8> = (0..256u32 << 10).map(|i| (i * 7 + i / 251) as u8).collect();
    fs::write(ctx.join("files/data.bin"), data).unwrap();
    ok(store, &["build", "-t", "small:1", ctx.to_str().unwrap()]);
    "small:1"
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts `chasi ARGS` fails with exit code 1; returns its stderr.
fn fails(store: &Path, args: &[&str]) -> String {
    let out = run(store, args);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{args:?} should fail: {err}");
    err
}

/// Asserts `path` is still the character device `major:minor`.
fn assert_char_dev(path: &str, major: u64, minor: u64) {
    let m = fs::symlink_metadata(path).unwrap();
    assert!(
        m.file_type().is_char_device(),
        "{path} is no longer a character device"
    );
    let rdev = m.rdev();
    let (maj, min) = (
        (rdev >> 8) & 0xfff,
        (rdev & 0xff) | ((rdev >> 12) & 0xfff00),
    );
    assert_eq!(
        (maj, min),
        (major, minor),
        "{path} has another device number"
    );
}

#[test]
fn dev_null_and_dev_full_are_written_in_place_never_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let image = small_image(dir.path(), &store);

    for args in [
        vec!["export", image, "--format", "tar", "-o", "/dev/null"],
        vec!["export", image, "--format", "raw", "-o", "/dev/null"],
        vec!["export", image, "--format", "vmdk", "-o", "/dev/null"],
        vec!["save", image, "-o", "/dev/null"],
        vec![
            "save",
            image,
            "--format",
            "docker-archive",
            "-o",
            "/dev/null",
        ],
    ] {
        ok(&store, &args);
        assert_char_dev("/dev/null", 1, 3);
    }

    // A writer that seeks refuses a character device before doing anything.
    let err = fails(
        &store,
        &["export", image, "--format", "qcow2", "-o", "/dev/null"],
    );
    assert!(
        err.contains("qcow2 output needs a seekable file")
            && err.contains("/dev/null is a character device"),
        "{err}"
    );
    assert_char_dev("/dev/null", 1, 3);

    // An OCI layout is a directory: /dev/null is refused, not replaced.
    let err = fails(
        &store,
        &["save", image, "--format", "oci", "-o", "/dev/null"],
    );
    assert!(err.contains("/dev/null"), "{err}");
    assert_char_dev("/dev/null", 1, 3);

    for args in [
        vec!["export", image, "--format", "tar", "-o", "/dev/full"],
        vec!["save", image, "-o", "/dev/full"],
        vec![
            "save",
            image,
            "--format",
            "docker-archive",
            "-o",
            "/dev/full",
        ],
    ] {
        let err = fails(&store, &args);
        assert!(
            err.contains("/dev/full") && err.contains("No space left on device"),
            "{args:?}: {err}"
        );
        assert_char_dev("/dev/full", 1, 7);
    }
}

/// Reads a FIFO to its end in a thread. The returned write end keeps the reader going
/// until it is dropped, so a command that never writes (or replaces the FIFO) cannot leave
/// the reader blocked: it then reads nothing.
fn read_fifo(fifo: &Path) -> (std::thread::JoinHandle<Vec<u8>>, fs::File) {
    const O_NONBLOCK: i32 = 0o4000;
    let path = fifo.to_path_buf();
    let reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        fs::File::open(&path).unwrap().read_to_end(&mut v).unwrap();
        v
    });
    // A non-blocking open for writing succeeds once the reader is in its open().
    let start = Instant::now();
    loop {
        match fs::OpenOptions::new()
            .write(true)
            .custom_flags(O_NONBLOCK)
            .open(fifo)
        {
            Ok(f) => return (reader, f),
            Err(e) => assert!(
                start.elapsed() < Duration::from_secs(10),
                "cannot open the FIFO's write end: {e}"
            ),
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn a_fifo_gets_the_same_bytes_as_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let store = d.join("store");
    let image = small_image(d, &store);
    let fifo = d.join("pipe");
    let st = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(st.success());

    for (what, args) in [
        ("tar", vec!["export", image, "--format", "tar"]),
        ("raw", vec!["export", image, "--format", "raw"]),
        ("vma", vec!["export", image, "--format", "vma"]),
        ("oci-archive", vec!["save", image]),
        (
            "docker-archive",
            vec!["save", image, "--format", "docker-archive"],
        ),
    ] {
        let file = d.join(format!("out.{what}"));
        let mut a = args.clone();
        a.extend(["-o", s(&file)]);
        ok(&store, &a);
        let (reader, keep) = read_fifo(&fifo);
        let mut a = args.clone();
        a.extend(["-o", s(&fifo)]);
        let out = run(&store, &a);
        drop(keep);
        let got = reader.join().unwrap();
        assert!(out.status.success(), "{what} to a FIFO: {}", stderr(&out));
        assert!(
            fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo(),
            "{what}: the FIFO was replaced"
        );
        assert!(
            got == fs::read(&file).unwrap(),
            "{what}: the FIFO got {} bytes that differ from the file export",
            got.len()
        );
    }
    let names: Vec<String> = fs::read_dir(d)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(names.is_empty(), "temporary files left: {names:?}");
}

#[test]
fn dash_writes_to_standard_output() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let store = d.join("store");
    let image = small_image(d, &store);
    for (what, args) in [
        ("tar", vec!["export", image, "--format", "tar"]),
        ("ova", vec!["export", image, "--format", "ova"]),
        ("oci-archive", vec!["save", image]),
    ] {
        let file = d.join(format!("out.{what}"));
        let mut a = args.clone();
        a.extend(["-o", s(&file)]);
        ok(&store, &a);
        let mut a = args.clone();
        a.extend(["-o", "-"]);
        let out = run(&store, &a);
        assert!(out.status.success(), "{what} to -: {}", stderr(&out));
        assert!(
            out.stdout == fs::read(&file).unwrap(),
            "{what}: standard output differs from the file export"
        );
        let err = stderr(&out);
        assert!(
            err.lines().any(|l| l.starts_with("- ")),
            "{what}: no status line on stderr: {err}"
        );
    }
    let err = fails(&store, &["export", image, "--format", "qcow2", "-o", "-"]);
    assert!(
        err.contains("qcow2 output needs a seekable file") && err.contains("standard output"),
        "{err}"
    );
    let err = fails(&store, &["save", image, "--format", "oci", "-o", "-"]);
    assert!(err.contains("standard output"), "{err}");
}

/// Runs chasi under `umask`.
fn run_umask(umask: &str, store: &Path, args: &[&str]) -> Output {
    Command::new("sh")
        .arg("-c")
        .arg(format!("umask {umask} && exec \"$0\" \"$@\""))
        .arg(env!("CARGO_BIN_EXE_chasi"))
        .arg("--store")
        .arg(store)
        .args(args)
        .output()
        .unwrap()
}

fn mode(p: &Path) -> u32 {
    fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn outputs_are_0644_minus_the_umask() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let store = d.join("store");
    let image = small_image(d, &store);
    for (umask, want) in [("022", 0o644), ("077", 0o600)] {
        for (name, args) in [
            ("e.tar", vec!["export", image, "--format", "tar"]),
            ("e.raw", vec!["export", image, "--format", "raw"]),
            ("e.sqfs", vec!["export", image, "--format", "squashfs"]),
            ("s.tar", vec!["save", image]),
            ("d.tar", vec!["save", image, "--format", "docker-archive"]),
        ] {
            let out = d.join(format!("{umask}-{name}"));
            let mut a = args.clone();
            a.extend(["-o", s(&out)]);
            let o = run_umask(umask, &store, &a);
            assert!(o.status.success(), "{a:?}: {}", stderr(&o));
            assert_eq!(mode(&out), want, "{name} under umask {umask}");
        }
        let layout = d.join(format!("{umask}-layout"));
        let o = run_umask(
            umask,
            &store,
            &["save", image, "--format", "oci", "-o", s(&layout)],
        );
        assert!(o.status.success(), "{}", stderr(&o));
        for f in walk(&layout) {
            assert_eq!(mode(&f), want, "{} under umask {umask}", f.display());
        }
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut v = Vec::new();
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            v.extend(walk(&p));
        } else {
            v.push(p);
        }
    }
    v
}

#[test]
fn files_are_replaced_symlinks_followed_directories_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let store = d.join("store");
    let image = small_image(d, &store);
    let reference = d.join("ref.tar");
    ok(
        &store,
        &["export", image, "--format", "tar", "-o", s(&reference)],
    );
    let want = fs::read(&reference).unwrap();

    // An existing file: replaced by a new one (never written through).
    let existing = d.join("old.tar");
    fs::write(&existing, b"old content").unwrap();
    let hard = d.join("hardlink");
    fs::hard_link(&existing, &hard).unwrap();
    ok(
        &store,
        &["export", image, "--format", "tar", "-o", s(&existing)],
    );
    assert_eq!(fs::read(&existing).unwrap(), want);
    assert_eq!(fs::read(&hard).unwrap(), b"old content");

    // A symlink to a file, and a dangling one: the target is written, the link stays.
    for (link, target) in [("l1.tar", "old.tar"), ("l2.tar", "new.tar")] {
        std::os::unix::fs::symlink(target, d.join(link)).unwrap();
        ok(&store, &["save", image, "-o", s(&d.join(link))]);
        assert!(fs::symlink_metadata(d.join(link))
            .unwrap()
            .file_type()
            .is_symlink());
        assert!(fs::metadata(d.join(target)).unwrap().is_file());
    }

    // A symlink to /dev/null: followed, and the device is written in place.
    std::os::unix::fs::symlink("/dev/null", d.join("null")).unwrap();
    ok(
        &store,
        &["export", image, "--format", "tar", "-o", s(&d.join("null"))],
    );
    assert_char_dev("/dev/null", 1, 3);
    assert!(fs::symlink_metadata(d.join("null"))
        .unwrap()
        .file_type()
        .is_symlink());

    // A directory is refused, and stays as it was.
    let folder = d.join("folder");
    fs::create_dir(&folder).unwrap();
    for args in [
        vec!["export", image, "--format", "tar", "-o", s(&folder)],
        vec!["export", image, "--format", "iso", "-o", s(&folder)],
        vec!["save", image, "-o", s(&folder)],
    ] {
        let err = fails(&store, &args);
        assert!(
            err.contains("directory") && err.contains(s(&folder)),
            "{err}"
        );
        assert!(fs::read_dir(&folder).unwrap().next().is_none());
    }
}

/// A loop device over a sparse file, detached when dropped.
struct Loop {
    dev: String,
}

impl Loop {
    fn attach(backing: &Path) -> Option<Loop> {
        let out = Command::new("losetup")
            .args(["-f", "--show"])
            .arg(backing)
            .output()
            .ok()?;
        if !out.status.success() {
            eprintln!(
                "skipping the loop-device check: losetup failed: {}",
                stderr(&out)
            );
            return None;
        }
        let dev = String::from_utf8_lossy(&out.stdout).trim().to_string();
        Some(Loop { dev })
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Command::new("losetup").args(["-d", &self.dev]).status();
    }
}

fn read_prefix(path: &str, len: usize) -> Vec<u8> {
    let mut v = vec![0; len];
    fs::File::open(path).unwrap().read_exact(&mut v).unwrap();
    v
}

#[test]
fn disks_are_written_in_place_on_a_block_device() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let store = d.join("store");
    let image = small_image(d, &store);
    let raw = d.join("d.raw");
    let qcow2 = d.join("d.qcow2");
    ok(&store, &["export", image, "--format", "raw", "-o", s(&raw)]);
    ok(
        &store,
        &["export", image, "--format", "qcow2", "-o", s(&qcow2)],
    );
    let raw_len = fs::metadata(&raw).unwrap().len();
    // Stale data on the device: a raw export must overwrite the zeros of the disk too.
    let backing = d.join("backing");
    fs::write(&backing, vec![0x5a; (raw_len + (1 << 20)) as usize]).unwrap();
    let Some(lo) = Loop::attach(&backing) else {
        return;
    };
    ok(&store, &["export", image, "--format", "raw", "-o", &lo.dev]);
    assert!(fs::metadata(&lo.dev).unwrap().file_type().is_block_device());
    assert!(
        read_prefix(&lo.dev, raw_len as usize) == fs::read(&raw).unwrap(),
        "the raw disk on {} differs from the file export",
        lo.dev
    );
    ok(
        &store,
        &["export", image, "--format", "qcow2", "-o", &lo.dev],
    );
    let q = fs::read(&qcow2).unwrap();
    assert!(
        read_prefix(&lo.dev, q.len()) == q,
        "the qcow2 image on {} differs from the file export",
        lo.dev
    );

    // Too small a device: refused before anything is written, naming both sizes.
    let tiny = d.join("tiny");
    fs::File::create(&tiny).unwrap().set_len(1 << 20).unwrap();
    let Some(small) = Loop::attach(&tiny) else {
        return;
    };
    let err = fails(
        &store,
        &["export", image, "--format", "raw", "-o", &small.dev],
    );
    assert!(
        err.contains(&small.dev) && err.contains("the block device holds 1048576 bytes"),
        "{err}"
    );
}

/// Every path under `root` whose name starts with `prefix`.
fn find(root: &Path, prefix: &str) -> Vec<PathBuf> {
    let mut v = Vec::new();
    let Ok(rd) = fs::read_dir(root) else {
        return v;
    };
    for e in rd.flatten() {
        let p = e.path();
        if e.file_name().to_string_lossy().starts_with(prefix) {
            v.push(p.clone());
        }
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            v.extend(find(&p, prefix));
        }
    }
    v
}

/// Waits until `ready` holds (polling), then SIGKILLs the child.
fn kill_when(child: &mut std::process::Child, what: &str, ready: impl Fn() -> bool) {
    let start = Instant::now();
    while !ready() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the export ended before {what}"
        );
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn a_killed_export_leaves_no_work_outside_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let store = d.join("store");
    let big = d.join("big");
    write_files(&big, &[("Kubefile", "FROM scratch\nCOPY blob /blob\n")]);
    let mut x: u64 = 1;
    let data: Vec<u8> = (0..(48u32 << 20))
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (x >> 56) as u8
        })
        .collect();
    fs::write(big.join("blob"), data).unwrap();
    ok(&store, &["build", "-t", "big:1", s(&big)]);
    let outdir = d.join("out");
    fs::create_dir(&outdir).unwrap();
    let target = outdir.join("big.qcow2");
    let export = || {
        common::chasi()
            .arg("--store")
            .arg(&store)
            .args(["export", "big:1", "--format", "qcow2", "--compress", "zlib"])
            .args(["--threads", "1", "-o"])
            .arg(&target)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };

    // Killed while it builds the root partition: the work folder is in the store's tmp.
    let mut child = export();
    kill_when(&mut child, "its work folder appeared in the store", || {
        !find(&store.join("tmp"), "export-").is_empty()
    });
    assert!(
        find(&outdir, "").is_empty(),
        "a killed export left {:?} next to its output",
        find(&outdir, "")
    );
    assert!(find(d, ".chasi-export-work.").is_empty());
    // The next command that opens the store removes the dead session's work.
    ok(&store, &["images"]);
    assert!(
        find(&store.join("tmp"), "export-").is_empty(),
        "the dead export's work folder survived the next command: {:?}",
        find(&store.join("tmp"), "")
    );

    // Killed while it writes the output: its temporary file goes with the next export there.
    let mut child = export();
    kill_when(&mut child, "its temporary output appeared", || {
        !find(&outdir, ".big.qcow2.chasi-partial.").is_empty()
    });
    assert!(!target.exists(), "a partial export is under the final name");
    let other = outdir.join("other.tar");
    ok(
        &store,
        &["export", "big:1", "--format", "tar", "-o", s(&other)],
    );
    let left: Vec<String> = fs::read_dir(&outdir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left, ["other.tar"], "the killed export's file survived");
    assert!(find(&store.join("tmp"), "export-").is_empty());
}
