//! `RUN` for a foreign platform (README, "`RUN` for another architecture"): without an emulator
//! the build stops before the step with an error naming the step, the platform and the Debian
//! packages; with qemu-user-static registered in binfmt_misc a two-platform build runs an
//! arm64 busybox.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A static ELF header of a big-endian s390x executable: a program no test host runs natively.
fn s390x_elf() -> Vec<u8> {
    let mut h = vec![0x7f, b'E', b'L', b'F', 2, 2, 1];
    h.resize(16, 0);
    h.extend([0, 2, 0, 22]);
    h.resize(64, 0);
    h
}

#[test]
fn run_without_an_emulator_names_the_step_the_platform_and_the_packages() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let ctx = tmp.path().join("ctx");
    write_files(
        &ctx,
        &[("Kubefile", "FROM scratch\nCOPY rootfs/ /\nRUN echo hi\n")],
    );
    std::fs::create_dir_all(ctx.join("rootfs/bin")).unwrap();
    std::fs::write(ctx.join("rootfs/bin/busybox"), s390x_elf()).unwrap();
    std::os::unix::fs::symlink("busybox", ctx.join("rootfs/bin/sh")).unwrap();
    // An empty directory stands for binfmt_misc, whatever the host has registered.
    let binfmt = tmp.path().join("binfmt");
    std::fs::create_dir_all(&binfmt).unwrap();
    std::fs::write(binfmt.join("status"), "enabled\n").unwrap();
    let out = chasi()
        .arg("--store")
        .arg(&store)
        .args(["build", "--platform", "linux/s390x", "-t", "foreign:1"])
        .arg(&ctx)
        .env("CHASI_BINFMT_MISC", &binfmt)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!(
            "{}:3:1: RUN echo hi: /bin/sh in the image is a program for s390x (the step is built for linux/s390x)",
            ctx.join("Kubefile").display()
        ))
            && err.contains("no emulator for s390x registered in binfmt_misc")
            && err.contains("`qemu-user-static binfmt-support`"),
        "{err}"
    );
    assert!(!err.contains("exec format error"), "{err}");
}

/// Mounts binfmt_misc and registers Debian's qemu-aarch64 handler when they are not; `Err`
/// with the reason when this machine cannot (not root, no binfmt_misc in the kernel).
fn arm64_emulator() -> Result<(), String> {
    let dir = Path::new("/proc/sys/fs/binfmt_misc");
    if !dir.join("status").exists() {
        let out = Command::new("mount")
            .args(["-t", "binfmt_misc", "binfmt_misc"])
            .arg(dir)
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "cannot mount binfmt_misc: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
    }
    if !dir.join("qemu-aarch64").exists() {
        need("update-binfmts", "binfmt-support");
        sh(Command::new("update-binfmts").args(["--enable", "qemu-aarch64"]));
    }
    let entry = std::fs::read_to_string(dir.join("qemu-aarch64")).unwrap_or_default();
    assert!(
        entry.starts_with("enabled") && entry.contains("flags: ") && entry.contains('F'),
        "qemu-aarch64 is registered without flag F or disabled:\n{entry}"
    );
    Ok(())
}

/// Debian's static arm64 busybox (`busybox-static:arm64`), downloaded once into the target
/// directory; `Err` with apt's reason when it cannot be downloaded.
fn arm64_busybox() -> Result<PathBuf, String> {
    let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("busybox-arm64");
    let bin = cache.join("bin/busybox");
    if bin.is_file() {
        return Ok(bin);
    }
    need("apt-get", "apt");
    let work = tempfile::tempdir().unwrap();
    let out = Command::new("apt-get")
        .args(["download", "busybox-static:arm64"])
        .current_dir(work.path())
        .output()
        .map_err(|e| format!("cannot run apt-get: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "apt-get download busybox-static:arm64 failed (scripts/test runs `dpkg --add-architecture arm64`): {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let deb = std::fs::read_dir(work.path())
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .expect("apt-get download wrote a .deb");
    let x = work.path().join("x");
    sh(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&x));
    std::fs::create_dir_all(cache.join("bin")).unwrap();
    let part = cache.join("bin/busybox.part");
    std::fs::copy(x.join("bin/busybox"), &part).unwrap();
    std::fs::rename(&part, &bin).unwrap();
    Ok(bin)
}

#[test]
fn a_two_platform_build_runs_an_arm64_busybox_under_qemu() {
    if std::env::consts::ARCH != "x86_64" {
        eprintln!("skipped: this test builds linux/arm64 on an amd64 host");
        return;
    }
    need("qemu-aarch64-static", "qemu-user-static");
    if let Err(reason) = arm64_emulator() {
        eprintln!("skipped: {reason}");
        return;
    }
    let arm64 = match arm64_busybox() {
        Ok(bin) => bin,
        Err(reason) => {
            eprintln!("skipped: {reason}");
            return;
        }
    };
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let ctx = tmp.path().join("ctx");
    write_files(
        &ctx,
        &[(
            "Kubefile",
            "FROM scratch\nCOPY ${ARCH}/ /\nRUN uname -m > /arch && busybox | head -1 > /banner\n",
        )],
    );
    for (arch, busybox) in [("amd64", Path::new("/bin/busybox")), ("arm64", &*arm64)] {
        let bin = ctx.join(arch).join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::copy(busybox, bin.join("busybox")).unwrap();
        for applet in ["sh", "uname", "head"] {
            std::os::unix::fs::symlink("busybox", bin.join(applet)).unwrap();
        }
    }
    let platforms = "linux/amd64,linux/arm64";
    ok(
        &store,
        &[
            "build",
            "--platform",
            platforms,
            "-t",
            "two:1",
            ctx.to_str().unwrap(),
        ],
    );
    for (platform, machine) in [("linux/amd64", "x86_64\n"), ("linux/arm64", "aarch64\n")] {
        let out = tmp
            .path()
            .join(format!("{}.tar", platform.replace('/', "-")));
        ok(
            &store,
            &[
                "export",
                "two:1",
                "--platform",
                platform,
                "--format",
                "tar",
                "-o",
                out.to_str().unwrap(),
            ],
        );
        let arch = sh(Command::new("tar").arg("-xOf").arg(&out).arg("arch"));
        assert_eq!(arch, machine, "{platform}");
        let banner = sh(Command::new("tar").arg("-xOf").arg(&out).arg("banner"));
        assert!(banner.starts_with("BusyBox v"), "{platform}: {banner}");
    }
}

/// A program the check cannot see before the step (the host's `env` starts it; refused by the
/// kernel, `execvp` hands it to the shell, which prints its ELF header) still gets the hint. Its machine is one no emulator handles, so the host's own
/// registrations do not matter.
#[test]
fn a_foreign_program_started_by_a_host_tool_gets_the_hint() {
    need("runc", "runc");
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let ctx = tmp.path().join("ctx");
    write_files(
        &ctx,
        &[(
            "Kubefile",
            "FROM scratch\nCOPY --chmod=0755 tool /usr/local/bin/tool\nRUN [\"/usr/bin/env\", \"/usr/local/bin/tool\"]\n",
        )],
    );
    let mut elf = s390x_elf();
    elf[5] = 1; // little-endian, machine 0xbeef
    elf[16..20].copy_from_slice(&[2, 0, 0xef, 0xbe]);
    std::fs::write(ctx.join("tool"), elf).unwrap();
    let err = fails(
        &store,
        &[
            "build",
            "--platform",
            "linux/s390x",
            "-t",
            "hint:1",
            ctx.to_str().unwrap(),
        ],
    );
    assert!(
        err.contains("Kubefile:3:1: `[\"/usr/bin/env\",\"/usr/local/bin/tool\"]` failed")
            && err.contains("the kernel refused a program, probably one for s390x (the step is built for linux/s390x)")
            && err.contains("`qemu-user-static binfmt-support`"),
        "{err}"
    );
}
