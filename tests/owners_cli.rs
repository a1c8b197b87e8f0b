//! Owners, modes and extended attributes of an OS root (README, "Owners follow Docker's rules"):
//! `ADD` of a tar made by GNU `tar --xattrs --acls` keeps them, as Docker does, also in an
//! unprivileged build; `COPY` of context files makes them `0:0`; `COPY --chown=preserve` keeps
//! the context's own; the data of Debian's `passwd` package keeps its setuid and `shadow` group.
//! Checked in what umoci unpacks from `chasi save` (stat, getcap, getfacl) or in the export's
//! `tar --xattrs -tvv` listing.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A small OS root: `/etc/shadow` root:shadow-style 0:42 0640 with an ACL, a setgid helper
/// 0:102 2755, a `cap_net_raw+ep` binary, a home directory 1000:1000 and a symlink 0:42.
fn os_root(tree: &Path) {
    need("setcap", "libcap2-bin");
    need("setfacl", "acl");
    write_files(
        tree,
        &[
            ("etc/shadow", "root:*:19000:0:99999:7:::\n"),
            ("usr/bin/crontab", "#!/bin/sh\n"),
            ("usr/bin/ping", "not really ping\n"),
            ("home/user/.profile", "PS1='$ '\n"),
        ],
    );
    let chown = |owner: &str, path: &str| {
        sh(Command::new("chown")
            .args(["-h", owner])
            .arg(tree.join(path)))
    };
    let chmod = |mode: &str, path: &str| sh(Command::new("chmod").arg(mode).arg(tree.join(path)));
    chown("0:42", "etc/shadow");
    chmod("0640", "etc/shadow");
    sh(Command::new("setfacl")
        .args(["-m", "u:1000:r"])
        .arg(tree.join("etc/shadow")));
    chown("0:102", "usr/bin/crontab");
    chmod("2755", "usr/bin/crontab");
    chmod("0755", "usr/bin/ping");
    sh(Command::new("setcap")
        .arg("cap_net_raw+ep")
        .arg(tree.join("usr/bin/ping")));
    chown("1000:1000", "home/user");
    chown("1000:1000", "home/user/.profile");
    std::os::unix::fs::symlink("shadow", tree.join("etc/gshadow")).unwrap();
    chown("0:42", "etc/gshadow");
}

/// `chasi save` (gzip layers, which umoci reads) and `umoci unpack` as root; the rootfs.
fn unpacked(store: &Path, image: &str, tmp: &Path) -> PathBuf {
    need("umoci", "umoci");
    let name = image.replace([':', '/'], "-");
    let layout = tmp.join(format!("{name}.oci"));
    let bundle = tmp.join(format!("{name}.bundle"));
    ok(
        store,
        &[
            "save",
            image,
            "-o",
            layout.to_str().unwrap(),
            "--format",
            "oci",
            "--compression",
            "gzip",
        ],
    );
    let tag = image.rsplit_once(':').unwrap().1;
    sh(Command::new("umoci")
        .arg("unpack")
        .arg("--image")
        .arg(format!("{}:{tag}", layout.display()))
        .arg(&bundle));
    bundle.join("rootfs")
}

/// `uid:gid mode` of a path (not following a symlink).
fn owner_mode(path: &Path) -> String {
    sh(Command::new("stat").args(["-c", "%u:%g %a"]).arg(path))
        .trim()
        .to_string()
}

/// Asserts the rootfs holds the tree of [`os_root`] with every owner, mode and attribute.
fn assert_os_root(root: &Path, what: &str) {
    assert_eq!(owner_mode(&root.join("etc/shadow")), "0:42 640", "{what}");
    assert_eq!(
        owner_mode(&root.join("usr/bin/crontab")),
        "0:102 2755",
        "{what}"
    );
    assert_eq!(
        owner_mode(&root.join("home/user")),
        "1000:1000 755",
        "{what}"
    );
    assert_eq!(
        owner_mode(&root.join("home/user/.profile")),
        "1000:1000 644",
        "{what}"
    );
    assert_eq!(owner_mode(&root.join("etc/gshadow")), "0:42 777", "{what}");
    let caps = sh(Command::new("getcap").arg(root.join("usr/bin/ping")));
    assert!(
        caps.contains("cap_net_raw=ep"),
        "{what}: getcap says {caps:?}"
    );
    let acl = sh(Command::new("getfacl")
        .args(["-n", "--omit-header"])
        .arg(root.join("etc/shadow")));
    assert!(acl.contains("user:1000:r--"), "{what}: getfacl says {acl}");
}

#[test]
fn add_of_a_gnu_tar_keeps_owners_modes_capabilities_and_acls() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let tree = tmp.path().join("tree");
    os_root(&tree);
    let ctx = tmp.path().join("ctx");
    write_files(
        &ctx,
        &[(
            "Kubefile",
            "FROM scratch\nADD rootfs.tar.gz /\nADD rootfs.tar.gz /again/\n",
        )],
    );
    sh(Command::new("tar")
        .args(["--xattrs", "--acls", "--format=posix", "-czf"])
        .arg(ctx.join("rootfs.tar.gz"))
        .arg("-C")
        .arg(&tree)
        .arg("."));
    ok(&store, &["build", "-t", "os/add:1", ctx.to_str().unwrap()]);
    let root = unpacked(&store, "os/add:1", tmp.path());
    assert_os_root(&root, "ADD rootfs.tar.gz /");
    assert_os_root(&root.join("again"), "ADD rootfs.tar.gz /again/");
}

#[test]
fn copy_resets_owners_unless_chown_preserve() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let ctx = tmp.path().join("ctx");
    os_root(&ctx.join("rootfs"));
    write_files(
        &ctx,
        &[(
            "Kubefile",
            "FROM scratch\nCOPY --chown=preserve rootfs/ /\nCOPY rootfs/ /plain/\n",
        )],
    );
    let build = || ok(&store, &["build", "-t", "os/copy:1", ctx.to_str().unwrap()]);
    build();
    let root = unpacked(&store, "os/copy:1", tmp.path());
    assert_os_root(&root, "COPY --chown=preserve rootfs/ /");
    // Docker's COPY: 0:0, the files' own modes, no extended attributes.
    assert_eq!(owner_mode(&root.join("plain/etc/shadow")), "0:0 640");
    assert_eq!(owner_mode(&root.join("plain/usr/bin/crontab")), "0:0 2755");
    assert_eq!(owner_mode(&root.join("plain/home/user")), "0:0 755");
    let caps = sh(Command::new("getcap").arg(root.join("plain/usr/bin/ping")));
    assert!(!caps.contains("cap_net_raw"), "{caps}");

    // The owners are part of the step's identity: a chown in the context rebuilds it.
    sh(Command::new("chown")
        .arg("7:7")
        .arg(ctx.join("rootfs/home/user/.profile")));
    build();
    std::fs::create_dir_all(tmp.path().join("again")).unwrap();
    let again = unpacked(&store, "os/copy:1", &tmp.path().join("again"));
    assert_eq!(owner_mode(&again.join("home/user/.profile")), "7:7 644");
    assert_eq!(
        owner_mode(&again.join("plain/home/user/.profile")),
        "0:0 644"
    );
}

#[test]
fn chown_preserve_takes_no_group() {
    let tmp = tempfile::tempdir().unwrap();
    let ctx = tmp.path().join("ctx");
    write_files(
        &ctx,
        &[
            ("Kubefile", "FROM scratch\nCOPY --chown=preserve:0 a /a\n"),
            ("a", "a\n"),
        ],
    );
    let out = run(&tmp.path().join("store"), &["check", ctx.to_str().unwrap()]);
    let err = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("KF204") && err.contains("`preserve` keeps each file's own user and group"),
        "{err}"
    );
}

/// An unprivileged build cannot `chown` or set `security.capability` on the files it unpacks;
/// the layer still carries what the archive records.
#[test]
fn add_keeps_the_archives_owners_in_an_unprivileged_build() {
    need("setpriv", "util-linux");
    if fs_uid("/proc/self") != 0 {
        eprintln!("skipped: needs root to start chasi as an unprivileged user");
        return;
    }
    const NOBODY: &str = "65534";
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("tree");
    os_root(&tree);
    let ctx = tmp.path().join("ctx");
    write_files(&ctx, &[("Kubefile", "FROM scratch\nADD rootfs.tar /\n")]);
    sh(Command::new("tar")
        .args(["--xattrs", "--acls", "--format=posix", "-cf"])
        .arg(ctx.join("rootfs.tar"))
        .arg("-C")
        .arg(&tree)
        .arg("."));
    sh(Command::new("chown")
        .args(["-R", &format!("{NOBODY}:{NOBODY}")])
        .arg(&ctx));
    let store = tmp.path().join("store");
    std::fs::create_dir(&store).unwrap();
    sh(Command::new("chown")
        .arg(format!("{NOBODY}:{NOBODY}"))
        .arg(&store));
    let as_nobody = |args: &[&str]| {
        let out = Command::new("setpriv")
            .args([
                &format!("--reuid={NOBODY}"),
                &format!("--regid={NOBODY}"),
                "--clear-groups",
                "--",
            ])
            .arg(env!("CARGO_BIN_EXE_chasi"))
            .arg("--store")
            .arg(&store)
            .args(args)
            .env("HOME", tmp.path())
            .env_remove("CHASI_STORE")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "chasi {args:?} as nobody:\n{stderr}");
    };
    as_nobody(&[
        "build",
        "--progress",
        "plain",
        "-t",
        "os/nobody:1",
        ctx.to_str().unwrap(),
    ]);
    let out = tmp.path().join("out");
    std::fs::create_dir(&out).unwrap();
    sh(Command::new("chown")
        .arg(format!("{NOBODY}:{NOBODY}"))
        .arg(&out));
    let tar = out.join("root.tar");
    as_nobody(&[
        "export",
        "os/nobody:1",
        "--format",
        "tar",
        "-o",
        tar.to_str().unwrap(),
    ]);
    let listing = sh(Command::new("tar")
        .args(["--xattrs", "--xattrs-include=*", "--numeric-owner", "-tvvf"])
        .arg(&tar));
    let line = |name: &str| {
        listing
            .lines()
            .find(|l| l.ends_with(name))
            .unwrap_or_else(|| panic!("{name} is not in the layer:\n{listing}"))
            .to_string()
    };
    assert!(line("etc/shadow").contains("-rw-r-----* 0/42"), "{listing}");
    assert!(
        line("usr/bin/crontab").contains("-rwxr-sr-x  0/102"),
        "{listing}"
    );
    assert!(line("home/user/").contains("1000/1000"), "{listing}");
    assert!(listing.contains("security.capability"), "{listing}");
    assert!(listing.contains("system.posix_acl_access"), "{listing}");
}

fn fs_uid(path: &str) -> u32 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).map(|m| m.uid()).unwrap_or(1)
}

/// Debian's `passwd` package (downloaded once into the target directory); `Err` with apt's
/// reason when it cannot be downloaded.
fn passwd_deb() -> Result<PathBuf, String> {
    let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("debian-passwd");
    let deb = cache.join("passwd.deb");
    if deb.is_file() {
        return Ok(deb);
    }
    need("apt-get", "apt");
    let work = tempfile::tempdir().unwrap();
    let out = Command::new("apt-get")
        .args(["download", "passwd"])
        .current_dir(work.path())
        .output()
        .map_err(|e| format!("cannot run apt-get: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "apt-get download passwd failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let got = std::fs::read_dir(work.path())
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .expect("apt-get download wrote a .deb");
    std::fs::create_dir_all(&cache).unwrap();
    std::fs::copy(&got, cache.join("passwd.deb.part")).unwrap();
    std::fs::rename(cache.join("passwd.deb.part"), &deb).unwrap();
    Ok(deb)
}

/// A real Debian package's files: `ADD` of the data tar `dpkg-deb --fsys-tarfile` gives keeps
/// the setgid `shadow` helpers and the setuid `passwd`, through build and export.
#[test]
fn add_of_a_debian_packages_files_keeps_setuid_and_the_shadow_group() {
    need("dpkg-deb", "dpkg");
    let deb = match passwd_deb() {
        Ok(deb) => deb,
        Err(reason) => {
            eprintln!("skipped: {reason}");
            return;
        }
    };
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let ctx = tmp.path().join("ctx");
    write_files(&ctx, &[("Kubefile", "FROM scratch\nADD passwd.tar /\n")]);
    let data = sh(Command::new("sh").arg("-c").arg(format!(
        "dpkg-deb --fsys-tarfile '{}' > '{}'",
        deb.display(),
        ctx.join("passwd.tar").display()
    )));
    assert!(data.is_empty());
    ok(
        &store,
        &["build", "-t", "os/passwd:1", ctx.to_str().unwrap()],
    );
    let tar = tmp.path().join("root.tar");
    ok(
        &store,
        &[
            "export",
            "os/passwd:1",
            "--format",
            "tar",
            "-o",
            tar.to_str().unwrap(),
        ],
    );
    let listing = sh(Command::new("tar")
        .args(["--numeric-owner", "-tvf"])
        .arg(&tar));
    let line = |name: &str| {
        listing
            .lines()
            .find(|l| l.ends_with(name))
            .unwrap_or_else(|| panic!("{name} is not in the export:\n{listing}"))
            .to_string()
    };
    assert!(
        line(" usr/bin/chage").starts_with("-rwxr-sr-x 0/42 "),
        "{listing}"
    );
    assert!(
        line(" usr/bin/expiry").starts_with("-rwxr-sr-x 0/42 "),
        "{listing}"
    );
    assert!(
        line(" usr/bin/passwd").starts_with("-rwsr-xr-x 0/0 "),
        "{listing}"
    );
}
