//! The node runtime end to end on a real machine: a bootable image whose init runs `chasi-node`,
//! exported with `--slots ab`, booted under qemu (TCG, OVMF) again and again from the same disk, with
//! deltas on a second virtual disk (the USB stick). Each qemu run is one boot (`-no-reboot`: a reboot
//! ends the run and the test starts the next boot, as a technician pulling the stick would), and the
//! serial console is the oracle:
//!
//! 0. the installer ISO of v1 (`--format iso --slots ab`) writes the A/B disk onto a blank disk;
//! 1. v1, booted from that disk, with a corrupt delta: the apply fails on the digest, the node stays on v1;
//! 2. v1 with the delta v1→v2: staged into slot b, switched, reboot;
//! 3. GRUB boots b once; boot-check runs v2's post-verify and confirms it;
//! 4. v2 with a delta to v3, whose post-verify fails: staged into a, reboot;
//! 5. v3 boots, its post-verify fails, boot-check rolls back and reboots;
//! 6. v2 again (confirmed), with a delta to v4, whose init never confirms: staged into a, reboot;
//! 7. v4 boots and reboots without confirming;
//! 8. GRUB falls back to b by itself; boot-check records that v4 never confirmed.

mod common;

use common::{example, need, ok, sh};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.fd";
const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS_4M.fd";

/// The node's init: mounts the kernel file systems; from the installer medium, installs onto the first
/// disk; from the disk, runs boot-check and applies what the stick carries.
const INIT: &str = r#"#!/bin/busybox sh
b=/bin/busybox
$b mount -t proc proc /proc
$b mount -t sysfs sysfs /sys
$b mount -t devtmpfs devtmpfs /dev 2>/dev/null
exec >/dev/ttyS0 2>&1
echo "NODE-BOOT version=$($b cat /etc/version)"
if [ -e /chasi/install/install.json ]; then
  for m in $($b cat /lib/modules/order); do $b insmod /lib/modules/$m 2>/dev/null; done
  /bin/chasi-node install --target /dev/vda --format json
  echo "NODE-INSTALL rc=$?"
  $b poweroff -f
fi
if [ -e /etc/no-confirm ]; then echo "NODE-NO-CONFIRM"; $b reboot -f; fi
/bin/chasi-node boot-check --reboot --format json
echo "NODE-BOOTCHECK rc=$?"
if [ -b /dev/vdb ]; then
  $b mount -t ext4 -o ro /dev/vdb /media && /bin/chasi-node apply /media/update --reboot --format json
  echo "NODE-APPLY rc=$?"
fi
echo "NODE-STATUS $(/bin/chasi-node status --format json)"
echo "NODE-DONE"
$b poweroff -f
"#;

/// The `chasi-node` binary the workspace build made, beside the `chasi` under test.
fn node_binary() -> PathBuf {
    let p = Path::new(env!("CARGO_BIN_EXE_chasi"))
        .parent()
        .expect("target dir")
        .join("chasi-node");
    assert!(
        p.is_file(),
        "{} is missing: build the workspace (cargo test --workspace builds it)",
        p.display()
    );
    p
}

/// Copies `bin`'s shared libraries (from `ldd`) into `root` at the same paths.
fn copy_libraries(bin: &Path, root: &Path) {
    let out = sh(Command::new("ldd").arg(bin));
    for line in out.lines() {
        let path = line
            .split_whitespace()
            .find(|w| w.starts_with('/'))
            .map(PathBuf::from);
        if let Some(p) = path {
            let dest = root.join(p.strip_prefix("/").unwrap());
            std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
            std::fs::copy(&p, &dest).unwrap_or_else(|e| panic!("copy {}: {e}", p.display()));
        }
    }
}

/// Builds `node:VERSION`: the bootable example's kernel, initrd and busybox, `chasi-node`, the init
/// above and a post-verify hook exiting with `verify_status`.
fn build(store: &Path, dir: &Path, version: &str, verify_status: u8, confirms: bool) {
    let ctx = dir.join(format!("ctx-{version}"));
    let root = ctx.join("rootfs");
    std::fs::create_dir_all(&ctx).unwrap();
    sh(Command::new("cp")
        .arg("-a")
        .arg(example("bootable").join("rootfs"))
        .arg(&root));
    for d in [
        "etc/chasi/hooks/post-verify.d",
        "var/lib/chasi-node",
        "media",
    ] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    let node = node_binary();
    sh(Command::new("strip")
        .arg("-o")
        .arg(root.join("bin/chasi-node"))
        .arg(&node));
    copy_libraries(&node, &root);
    std::fs::write(root.join("etc/version"), format!("{version}\n")).unwrap();
    if !confirms {
        std::fs::write(root.join("etc/no-confirm"), "").unwrap();
    }
    let hook = root.join("etc/chasi/hooks/post-verify.d/10-health");
    std::fs::write(
        &hook,
        format!("#!/bin/busybox sh\necho \"health of {version}\"\nexit {verify_status}\n"),
    )
    .unwrap();
    std::fs::write(root.join("init"), INIT).unwrap();
    // The live installer has no initramfs of its own: it loads the disk drivers itself, from the copies
    // the example's initramfs holds.
    sh(Command::new("sh").arg("-c").arg(format!(
        "cd '{}' && zcat boot/initrd.img-* | cpio -idm --quiet 'lib/modules/*'",
        root.display()
    )));
    for f in [&hook, &root.join("init")] {
        sh(Command::new("chmod").arg("0755").arg(f));
    }
    std::fs::write(ctx.join("Kubefile"), "FROM scratch\nCOPY rootfs/ /\n").unwrap();
    ok(
        store,
        &[
            "build",
            "-t",
            &format!("node:{version}"),
            ctx.to_str().unwrap(),
        ],
    );
}

/// An ext4 "USB stick" holding `delta` as `update`.
fn stick(dir: &Path, delta: &Path, name: &str) -> PathBuf {
    let content = dir.join(format!("{name}.d"));
    std::fs::create_dir_all(&content).unwrap();
    std::fs::copy(delta, content.join("update")).unwrap();
    let img = dir.join(format!("{name}.img"));
    let f = std::fs::File::create(&img).unwrap();
    f.set_len(64 << 20).unwrap();
    drop(f);
    sh(Command::new("mke2fs")
        .args(["-q", "-t", "ext4", "-d"])
        .arg(&content)
        .arg(&img));
    img
}

/// One boot of `disk` (with `stick` as the second disk); returns the serial log once qemu stopped
/// (power-off or reboot).
fn boot(dir: &Path, disk: &Path, stick: Option<&Path>, what: &str) -> String {
    let drive = stick.map(|s| format!("file={},format=raw,if=virtio,readonly=on", s.display()));
    let extra: Vec<&str> = match &drive {
        Some(d) => vec!["-drive", d],
        None => vec![],
    };
    boot_with(dir, disk, &extra, what)
}

/// One boot of `disk` under SeaBIOS (qemu's default firmware).
fn boot_bios(dir: &Path, disk: &Path, what: &str) -> String {
    let log = dir.join(format!("{what}.log"));
    let out = Command::new("timeout")
        .arg("240")
        .arg("qemu-system-x86_64")
        .args([
            "-accel",
            "tcg",
            "-m",
            "512",
            "-display",
            "none",
            "-no-reboot",
            "-nodefaults",
        ])
        .arg("-serial")
        .arg(format!("file:{}", log.display()))
        .arg("-drive")
        .arg(format!(
            "file={},format=qcow2,if=virtio,snapshot=on",
            disk.display()
        ))
        .output()
        .expect("start qemu-system-x86_64");
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        out.status.success(),
        "{what}: qemu did not stop by itself:\n{}",
        tail(&text)
    );
    text
}

/// One boot of `disk` with `extra` qemu arguments.
fn boot_with(dir: &Path, disk: &Path, extra: &[&str], what: &str) -> String {
    let log = dir.join(format!("{what}.log"));
    let vars = dir.join("vars.fd");
    if !vars.exists() {
        std::fs::copy(OVMF_VARS, &vars).unwrap();
    }
    let mut c = Command::new("qemu-system-x86_64");
    c.args([
        "-accel",
        "tcg",
        "-m",
        "512",
        "-display",
        "none",
        "-no-reboot",
    ])
    .args(["-nodefaults", "-serial"])
    .arg(format!("file:{}", log.display()))
    .arg("-drive")
    .arg(format!("if=pflash,format=raw,readonly=on,file={OVMF_CODE}"))
    .arg("-drive")
    .arg(format!("if=pflash,format=raw,file={}", vars.display()))
    .arg("-drive")
    .arg(format!("file={},format=qcow2,if=virtio", disk.display()))
    .args(extra);
    let mut child = c
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start qemu-system-x86_64");
    let start = Instant::now();
    let limit = Duration::from_secs(240);
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{what}: the VM did not stop within {limit:?}; serial log:\n{}",
                tail(&std::fs::read_to_string(&log).unwrap_or_default())
            );
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    std::fs::read_to_string(&log).unwrap_or_default()
}

fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// The JSON lines of the log that have `"phase"`.
fn phases(log: &str) -> Vec<serde_json::Value> {
    log.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l.trim()).ok())
        .filter(|v| v.get("phase").is_some())
        .collect()
}

fn phase<'a>(log: &'a [serde_json::Value], name: &str) -> &'a serde_json::Value {
    log.iter()
        .find(|v| v["phase"] == name)
        .unwrap_or_else(|| panic!("no {name} phase in {log:#?}"))
}

/// The status the node printed at the end of the boot.
fn status(log: &str) -> serde_json::Value {
    let line = log
        .lines()
        .find_map(|l| l.trim().strip_prefix("NODE-STATUS "))
        .unwrap_or_else(|| panic!("no status in the log:\n{}", tail(log)));
    serde_json::from_str(line).expect("status JSON")
}

fn expect(log: &str, needle: &str, what: &str) {
    assert!(
        log.contains(needle),
        "{what}: `{needle}` not in the serial log:\n{}",
        tail(log)
    );
}

#[test]
fn a_node_updates_from_a_stick_confirms_rolls_back_and_falls_back_by_itself() {
    need("qemu-system-x86_64", "qemu-system-x86");
    need("mke2fs", "e2fsprogs");
    need("strip", "binutils");
    need("ldd", "libc-bin");
    assert!(
        Path::new(OVMF_CODE).is_file(),
        "{OVMF_CODE} is needed: install the Debian package `ovmf`"
    );
    sh(&mut Command::new(example("bootable").join("prepare.sh")));
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    let store = dir.join("store");
    build(&store, dir, "v1", 0, true);
    build(&store, dir, "v2", 0, true);
    build(&store, dir, "v3", 1, true);
    build(&store, dir, "v4", 0, false);
    let iso = dir.join("installer.iso");
    let msg = ok(
        &store,
        &[
            "export",
            "node:v1",
            "--format",
            "iso",
            "--slots",
            "ab",
            "-o",
            iso.to_str().unwrap(),
        ],
    );
    assert!(msg.contains("bootable"), "{msg}");
    let disk = dir.join("node.qcow2");
    sh(Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2"])
        .arg(&disk)
        .arg("2G"));

    // 0. The installer writes the A/B disk onto the blank one (larger than the image: the table moves).
    let log = boot_with(
        dir,
        &disk,
        &[
            "-drive",
            &format!(
                "file={},format=raw,media=cdrom,readonly=on,if=ide",
                iso.display()
            ),
        ],
        "0-install",
    );
    expect(&log, "NODE-INSTALL rc=0", "boot 0: the installer");
    expect(
        &log,
        "`chasi-node install --target DISK` writes it to DISK",
        "boot 0: the installer says what it is",
    );
    assert_eq!(phase(&phases(&log), "done")["status"], "ok");
    let delta = |from: &str, to: &str| {
        let p = dir.join(format!("d-{from}-{to}.tar"));
        ok(
            &store,
            &[
                "delta",
                &format!("node:{from}"),
                &format!("node:{to}"),
                "-o",
                p.to_str().unwrap(),
            ],
        );
        p
    };
    let d12 = delta("v1", "v2");
    let d23 = delta("v2", "v3");
    let d24 = delta("v2", "v4");

    // 1. A corrupt delta: refused on its digests, nothing changes.
    let bad = dir.join("d-corrupt.tar");
    let mut bytes = std::fs::read(&d12).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x55;
    std::fs::write(&bad, &bytes).unwrap();
    let log = boot(dir, &disk, Some(&stick(dir, &bad, "corrupt")), "1-corrupt");
    expect(&log, "NODE-BOOT version=v1", "boot 1");
    expect(
        &log,
        "NODE-APPLY rc=1",
        "boot 1: the corrupt delta is refused",
    );
    let p = phases(&log);
    let pre = phase(&p, "pre-check");
    assert_eq!(pre["status"], "failed", "{pre}");
    let s = status(&log);
    assert_eq!(s["backend"], "bootable", "{s}");
    assert_eq!(s["active_slot"], "a", "{s}");
    assert_eq!(s["slots"]["a"]["state"], "good", "{s}");
    assert_eq!(s["slots"]["b"]["state"], "empty", "{s}");

    // 2. The delta to v2: staged into b, switched, reboot.
    let log = boot(dir, &disk, Some(&stick(dir, &d12, "v2")), "2-apply-v2");
    let p = phases(&log);
    assert_eq!(phase(&p, "stage")["slot"], "b");
    let done = phase(&p, "done");
    assert_eq!(done["reboot_required"], true, "{done}");
    assert!(
        !log.contains("NODE-DONE"),
        "the node did not reboot:\n{}",
        tail(&log)
    );

    // 3. v2 boots once and confirms.
    let log = boot(dir, &disk, None, "3-v2");
    expect(&log, "chasi: booting slot b", "boot 3");
    expect(&log, "NODE-BOOT version=v2", "boot 3");
    let p = phases(&log);
    assert_eq!(phase(&p, "boot-check")["action"], "confirmed");
    let s = status(&log);
    assert_eq!(s["booted_slot"], "b", "{s}");
    assert_eq!(s["pending"], false, "{s}");
    assert_eq!(s["slots"]["b"]["state"], "good", "{s}");

    // 4. v3 (its post-verify fails) into a, reboot.
    let log = boot(dir, &disk, Some(&stick(dir, &d23, "v3")), "4-apply-v3");
    expect(&log, "NODE-BOOT version=v2", "boot 4");
    assert_eq!(phase(&phases(&log), "stage")["slot"], "a");

    // 5. v3 boots, fails its post-verify, rolls back and reboots.
    let log = boot(dir, &disk, None, "5-v3");
    expect(&log, "NODE-BOOT version=v3", "boot 5");
    let p = phases(&log);
    assert_eq!(phase(&p, "post-verify")["status"], "failed");
    assert_eq!(phase(&p, "rollback")["to"], "b");
    assert!(!log.contains("NODE-DONE"), "no reboot after the rollback");

    // 6. Back on v2 by itself; then v4 (never confirms) into a, reboot.
    let log = boot(dir, &disk, Some(&stick(dir, &d24, "v4")), "6-v2-apply-v4");
    expect(&log, "NODE-BOOT version=v2", "boot 6");
    let p = phases(&log);
    assert_eq!(phase(&p, "boot-check")["action"], "none");
    assert_eq!(phase(&p, "stage")["slot"], "a");

    // 7. v4 boots and reboots without confirming.
    let log = boot(dir, &disk, None, "7-v4");
    expect(&log, "NODE-BOOT version=v4", "boot 7");
    expect(&log, "NODE-NO-CONFIRM", "boot 7");

    // 8. GRUB falls back to v2 by itself; the node records why.
    let log = boot(dir, &disk, None, "8-fallback");
    expect(&log, "NODE-BOOT version=v2", "boot 8: GRUB fell back");
    let p = phases(&log);
    assert_eq!(phase(&p, "boot-check")["action"], "fell-back");
    let s = status(&log);
    assert_eq!(s["active_slot"], "b", "{s}");
    assert_eq!(s["slots"]["a"]["state"], "bad", "{s}");
    assert_eq!(s["slots"]["a"]["image"]["name"], "node:v4", "{s}");
    assert_eq!(s["last_event"]["event"], "rolled-back", "{s}");
}

#[test]
fn slots_ab_is_refused_where_it_cannot_work() {
    let t = tempfile::tempdir().unwrap();
    let store = t.path().join("store");
    let ctx = t.path().join("ctx");
    std::fs::create_dir_all(ctx.join("rootfs/etc")).unwrap();
    std::fs::write(ctx.join("rootfs/etc/hostname"), "x\n").unwrap();
    std::fs::write(ctx.join("Kubefile"), "FROM scratch\nCOPY rootfs/ /\n").unwrap();
    ok(&store, &["build", "-t", "data:1", ctx.to_str().unwrap()]);
    let out = t.path().join("x.qcow2");
    let o = out.to_str().unwrap();
    let err = common::fails(
        &store,
        &[
            "export", "data:1", "--format", "qcow2", "--slots", "ab", "-o", o,
        ],
    );
    assert!(err.contains("no kernel"), "{err}");
    let err = common::fails(
        &store,
        &[
            "export", "data:1", "--format", "tar", "--slots", "ab", "-o", o,
        ],
    );
    assert!(err.contains("--slots applies to"), "{err}");
    let err = common::fails(
        &store,
        &[
            "export", "data:1", "--format", "raw", "--slots", "ab", "--fs", "squashfs", "-o", o,
        ],
    );
    assert!(err.contains("--fs ext4"), "{err}");
    let usage = common::run(
        &store,
        &[
            "export",
            "data:1",
            "--format",
            "raw",
            "--slot-size",
            "1G",
            "-o",
            o,
        ],
    );
    assert_eq!(usage.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&usage.stderr).contains("--slots"));
    assert!(!out.exists());
}

/// The A/B disk without booting it: GPT names (sfdisk), every file system clean (e2fsck), the boot
/// block and the node state on the data partition (debugfs), and the same bytes twice.
#[test]
fn an_ab_disk_is_laid_out_checked_and_reproducible() {
    need("sfdisk", "fdisk");
    need("e2fsck", "e2fsprogs");
    need("debugfs", "e2fsprogs");
    need("qemu-system-x86_64", "qemu-system-x86");
    sh(&mut Command::new(example("bootable").join("prepare.sh")));
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    let store = dir.join("store");
    build(&store, dir, "v1", 0, true);
    let export = |name: &str| {
        let p = dir.join(name);
        ok(
            &store,
            &[
                "export",
                "node:v1",
                "--format",
                "raw",
                "--slots",
                "ab",
                "--slot-size",
                "300M",
                "-o",
                p.to_str().unwrap(),
            ],
        );
        p
    };
    let raw = export("one.raw");
    // The same layout with GRUB for BIOS too boots under SeaBIOS (no pflash): slot a, boot-check.
    let hybrid = dir.join("hybrid.qcow2");
    ok(
        &store,
        &[
            "export",
            "node:v1",
            "--format",
            "qcow2",
            "--slots",
            "ab",
            "--boot",
            "hybrid",
            "-o",
            hybrid.to_str().unwrap(),
        ],
    );
    let log = boot_bios(dir, &hybrid, "hybrid-bios");
    expect(&log, "chasi: booting slot a", "A/B under BIOS");
    assert_eq!(phase(&phases(&log), "boot-check")["action"], "none");
    assert!(
        std::fs::read(&raw).unwrap() == std::fs::read(export("two.raw")).unwrap(),
        "two exports of the same image differ"
    );
    let table: serde_json::Value =
        serde_json::from_str(&sh(Command::new("sfdisk").arg("--json").arg(&raw))).unwrap();
    let parts = table["partitiontable"]["partitions"].as_array().unwrap();
    let names: Vec<&str> = parts.iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["esp", "chasi-a", "chasi-b", "chasi-data"]);
    assert_eq!(parts[1]["size"].as_u64().unwrap() * 512, 300 << 20);
    assert_eq!(parts[1]["size"], parts[2]["size"]);
    let extract = |i: usize| {
        let p = dir.join(format!("part{i}.img"));
        let (start, size) = (
            parts[i]["start"].as_u64().unwrap(),
            parts[i]["size"].as_u64().unwrap(),
        );
        sh(Command::new("dd")
            .arg(format!("if={}", raw.display()))
            .arg(format!("of={}", p.display()))
            .args(["bs=512", "status=none"])
            .arg(format!("skip={start}"))
            .arg(format!("count={size}")));
        p
    };
    for (i, name) in names.iter().enumerate().skip(1) {
        let p = extract(i);
        let out = Command::new("e2fsck").arg("-fn").arg(&p).output().unwrap();
        assert!(
            out.status.success(),
            "e2fsck of {name}: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let cat = |file: &str| {
            sh(Command::new("debugfs")
                .arg("-R")
                .arg(format!("cat {file}"))
                .arg(&p))
        };
        match i {
            1 => assert_eq!(cat("/etc/version"), "v1\n"),
            2 => assert!(cat("/etc/version").is_empty(), "slot b is empty"),
            _ => {
                let env = cat("/grubenv");
                assert_eq!(env.len(), 1024, "{env}");
                assert!(env.starts_with("# GRUB Environment Block\norder=a b\na_ok=1\na_good=1\n"));
                assert!(env.contains("a_kernel=/boot/vmlinuz-"), "{env}");
                assert!(env.contains("b_ok=0"), "{env}");
                let slots: serde_json::Value = serde_json::from_str(&cat("/slots.json")).unwrap();
                assert_eq!(slots["a"]["state"], "good");
                assert_eq!(slots["a"]["image"]["name"], "node:v1");
                assert_eq!(slots["b"]["state"], "empty");
                let refs = sh(Command::new("debugfs")
                    .arg("-R")
                    .arg("ls -p /store/refs")
                    .arg(&p));
                assert!(refs.contains("slot-a"), "{refs}");
            }
        }
    }
}

/// `chasi node install` without a VM: the raw A/B disk compressed by the `zstd` tool, onto a larger
/// image file, checked by sfdisk; a corrupt medium leaves no partition table.
#[test]
fn install_writes_the_disk_rehomes_the_table_and_refuses_a_corrupt_medium() {
    need("zstd", "zstd");
    need("sfdisk", "fdisk");
    sh(&mut Command::new(example("bootable").join("prepare.sh")));
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    let store = dir.join("store");
    build(&store, dir, "v1", 0, true);
    let raw = dir.join("ab.raw");
    ok(
        &store,
        &[
            "export",
            "node:v1",
            "--format",
            "raw",
            "--slots",
            "ab",
            "-o",
            raw.to_str().unwrap(),
        ],
    );
    let medium = dir.join("medium");
    std::fs::create_dir_all(&medium).unwrap();
    let zst = medium.join("disk.raw.zst");
    sh(Command::new("zstd")
        .args(["-q", "--check", "-3", "-o"])
        .arg(&zst)
        .arg(&raw));
    let sha = sh(Command::new("sha256sum").arg(&zst));
    let size = std::fs::metadata(&raw).unwrap().len();
    let manifest = medium.join("install.json");
    let write_manifest = |sha: &str| {
        std::fs::write(
            &manifest,
            serde_json::json!({"format": 1, "disk": "disk.raw.zst", "size": size,
                "sha256": format!("sha256:{sha}"), "image": "sha256:test"})
            .to_string(),
        )
        .unwrap();
    };
    write_manifest(sha.split_whitespace().next().unwrap());
    let target = dir.join("target.img");
    std::fs::File::create(&target)
        .unwrap()
        .set_len(size + (256 << 20))
        .unwrap();
    let m = manifest.to_str().unwrap();
    let out = ok(
        &store,
        &[
            "node",
            "install",
            "--target",
            target.to_str().unwrap(),
            "--manifest",
            m,
            "--format",
            "json",
        ],
    );
    assert!(out.contains("\"phase\":\"done\""), "{out}");
    sh(Command::new("sfdisk").arg("--verify").arg(&target));
    let parts = |p: &Path| -> serde_json::Value {
        let v: serde_json::Value =
            serde_json::from_str(&sh(Command::new("sfdisk").arg("--json").arg(p))).unwrap();
        v["partitiontable"]["partitions"].clone()
    };
    assert_eq!(
        parts(&target),
        parts(&raw)
            .to_string()
            .replace("ab.raw", "target.img")
            .parse::<serde_json::Value>()
            .unwrap()
    );
    let a = std::fs::read(&raw).unwrap();
    let b = std::fs::read(&target).unwrap();
    let first = 1 << 20;
    assert!(
        a[first..size as usize - (1 << 20)] == b[first..size as usize - (1 << 20)],
        "the partitions differ"
    );

    // A medium whose disk file does not hash to its manifest: refused, and the target has no table.
    write_manifest(&"0".repeat(64));
    let target2 = dir.join("target2.img");
    std::fs::write(&target2, vec![0xAAu8; 2 << 20]).unwrap();
    let err = common::fails(
        &store,
        &[
            "node",
            "install",
            "--target",
            target2.to_str().unwrap(),
            "--manifest",
            m,
        ],
    );
    assert!(err.contains("corrupt"), "{err}");
    let head = std::fs::read(&target2).unwrap();
    assert!(
        head[..first].iter().all(|&x| x == 0),
        "a partition table was left"
    );
    let err = common::fails(
        &store,
        &[
            "node",
            "install",
            "--target",
            dir.to_str().unwrap(),
            "--manifest",
            m,
        ],
    );
    assert!(
        err.contains("not a block device or a regular file"),
        "{err}"
    );
}
