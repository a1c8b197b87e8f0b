//! End-to-end tests of `chasi export` on images built by `chasi build`, checked by the
//! standard tools (qemu-img, sfdisk, e2fsck, virt-v2v, xorriso, isoinfo, skopeo,
//! unsquashfs) and, for the bootable example, by booting it under qemu (TCG) with OVMF and
//! SeaBIOS. Tools are required, never skipped: a missing one fails naming its package.

mod common;

use common::{example, need, ok, run, sh, write_files};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A data image: two layers, a 1 MiB pseudo-random file, a symlink.
fn data_image(dir: &Path, store: &Path) -> String {
    let ctx = dir.join("ctx");
    write_files(
        &ctx,
        &[
            (
                "Kubefile",
                "FROM scratch\nCOPY files/ /\nCOPY more/ /opt/\n",
            ),
            ("files/etc/hello.txt", "hello from chasi\n"),
            ("files/usr/share/doc/readme", "docs\n"),
            ("more/tool.conf", "key=value\n"),
        ],
    );
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let data: Vec<u8> = (0..1 << 20)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    std::fs::write(ctx.join("files/data.bin"), data).unwrap();
    std::os::unix::fs::symlink("etc/hello.txt", ctx.join("files/hello")).unwrap();
    ok(store, &["build", "-t", "data:1", ctx.to_str().unwrap()]);
    "data:1".to_string()
}

fn export(store: &Path, image: &str, format: &str, out: &Path, extra: &[&str]) -> String {
    let mut args = vec![
        "export",
        image,
        "--format",
        format,
        "-o",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    ok(store, &args)
}

fn qemu_img(args: &[&str]) -> std::process::Output {
    Command::new("qemu-img")
        .args(args)
        .output()
        .expect("run qemu-img")
}

fn assert_compare_identical(raw: &Path, other: &Path, fmt: &str) {
    let out = qemu_img(&[
        "compare",
        "-f",
        "raw",
        "-F",
        fmt,
        raw.to_str().unwrap(),
        other.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "qemu-img compare {fmt}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Copies partition `n` (1-based) of a raw GPT disk out, using sfdisk's JSON.
fn extract_partition(raw: &Path, n: usize, to: &Path) {
    let j: serde_json::Value =
        serde_json::from_str(&sh(Command::new("sfdisk").arg("-J").arg(raw))).unwrap();
    let p = &j["partitiontable"]["partitions"][n - 1];
    let start = p["start"].as_u64().unwrap();
    let size = p["size"].as_u64().unwrap();
    let bytes = std::fs::read(raw).unwrap();
    std::fs::write(
        to,
        &bytes[(start * 512) as usize..((start + size) * 512) as usize],
    )
    .unwrap();
}

#[test]
fn data_disks_tar_squashfs_validate_and_reproduce() {
    for (t, p) in [
        ("qemu-img", "qemu-utils"),
        ("sfdisk", "fdisk"),
        ("e2fsck", "e2fsprogs"),
        ("debugfs", "e2fsprogs"),
        ("unsquashfs", "squashfs-tools"),
        ("virt-v2v", "virt-v2v"),
        ("mksquashfs", "squashfs-tools"),
    ] {
        need(t, p);
    }
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let image = data_image(dir.path(), &store);
    let d = dir.path();

    // tar: the flattened rootfs.
    export(&store, &image, "tar", &d.join("r.tar"), &[]);
    let list = sh(Command::new("tar").arg("-tvf").arg(d.join("r.tar")));
    for f in [
        "etc/hello.txt",
        "data.bin",
        "opt/tool.conf",
        "hello -> etc/hello.txt",
    ] {
        assert!(list.contains(f), "{f} missing from the tar:\n{list}");
    }

    // squashfs.
    export(&store, &image, "squashfs", &d.join("r.sqfs"), &[]);
    let ls = sh(Command::new("unsquashfs").arg("-lls").arg(d.join("r.sqfs")));
    assert!(ls.contains("squashfs-root/opt/tool.conf"), "{ls}");

    // raw: a data disk (no kernel) with one ext4 root partition holding the files.
    let raw = d.join("d.raw");
    let msg = export(&store, &image, "raw", &raw, &[]);
    assert!(!msg.contains("bootable"), "{msg}");
    let dump = sh(Command::new("sfdisk").arg("-d").arg(&raw));
    assert!(dump.contains("label: gpt"), "{dump}");
    assert_eq!(dump.matches("name=\"root\"").count(), 1, "{dump}");
    assert!(!dump.contains("name=\"esp\""), "{dump}");
    let part = d.join("root.ext4");
    extract_partition(&raw, 1, &part);
    sh(Command::new("e2fsck").args(["-fn"]).arg(&part));
    let cat = sh(Command::new("debugfs")
        .arg("-R")
        .arg("cat /etc/hello.txt")
        .arg(&part));
    assert_eq!(cat, "hello from chasi\n");

    // Reproducible: a second export (a second later) is byte-identical.
    std::thread::sleep(Duration::from_millis(1100));
    let raw2 = d.join("d2.raw");
    export(&store, &image, "raw", &raw2, &[]);
    assert!(std::fs::read(&raw).unwrap() == std::fs::read(&raw2).unwrap());

    // qcow2, plain and compressed: check clean, compare identical, info shows the choice.
    for (c, ty) in [("none", "zlib"), ("zlib", "zlib"), ("zstd", "zstd")] {
        let q = d.join(format!("d-{c}.qcow2"));
        export(&store, &image, "qcow2", &q, &["--compress", c]);
        let check = qemu_img(&["check", q.to_str().unwrap()]);
        assert_eq!(check.status.code(), Some(0), "{check:?}");
        assert_compare_identical(&raw, &q, "qcow2");
        let info: serde_json::Value = serde_json::from_slice(
            &qemu_img(&["info", "--output=json", q.to_str().unwrap()]).stdout,
        )
        .unwrap();
        assert_eq!(info["format"], "qcow2");
        assert_eq!(info["format-specific"]["data"]["compression-type"], ty);
        assert_eq!(
            info["virtual-size"].as_u64(),
            Some(std::fs::metadata(&raw).unwrap().len())
        );
    }

    // vmdk.
    let v = d.join("d.vmdk");
    export(&store, &image, "vmdk", &v, &[]);
    assert_compare_identical(&raw, &v, "vmdk");
    let info =
        String::from_utf8_lossy(&qemu_img(&["info", v.to_str().unwrap()]).stdout).into_owned();
    assert!(info.contains("streamOptimized"), "{info}");

    // ova: member order, manifest, virt-v2v parses it, a tampered disk is rejected.
    let ova = d.join("vm.ova");
    export(
        &store,
        &image,
        "ova",
        &ova,
        &["--vm-name", "demo-vm", "--cpus", "3", "--memory", "1G"],
    );
    let members = sh(Command::new("tar").arg("-tf").arg(&ova));
    let members: Vec<&str> = members.lines().collect();
    assert_eq!(members.len(), 3, "{members:?}");
    assert!(members[0].ends_with(".ovf"), "{members:?}");
    assert!(members.iter().any(|m| m.ends_with(".vmdk")));
    assert!(members.iter().any(|m| m.ends_with(".mf")));
    let src = Command::new("virt-v2v")
        .args(["-i", "ova"])
        .arg(&ova)
        .arg("--print-source")
        .env("LIBGUESTFS_BACKEND", "direct")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&src.stdout).into_owned();
    assert!(
        src.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&src.stderr)
    );
    assert!(text.contains("demo-vm"), "{text}");
    assert!(text.contains("nr vCPUs: 3"), "{text}");
    assert!(text.contains("memory: 1073741824 (bytes)"), "{text}");
    assert!(text.contains("firmware: uefi"), "{text}");
    let x = d.join("ova-x");
    std::fs::create_dir(&x).unwrap();
    sh(Command::new("tar").arg("-xf").arg(&ova).arg("-C").arg(&x));
    let vmdk = x.join(members.iter().find(|m| m.ends_with(".vmdk")).unwrap());
    assert_compare_identical(&raw, &vmdk, "vmdk");
    let mf = std::fs::read_to_string(x.join(members.iter().find(|m| m.ends_with(".mf")).unwrap()))
        .unwrap();
    assert!(
        mf.lines()
            .all(|l| l.starts_with("SHA256(") && l.contains(")= ")),
        "{mf}"
    );
    // Tamper with one byte of the disk in the middle of the archive.
    let mut bytes = std::fs::read(&ova).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0xff;
    let bad = d.join("bad.ova");
    std::fs::write(&bad, bytes).unwrap();
    let rej = Command::new("virt-v2v")
        .args(["-i", "ova"])
        .arg(&bad)
        .arg("--print-source")
        .env("LIBGUESTFS_BACKEND", "direct")
        .output()
        .unwrap();
    assert!(!rej.status.success(), "a tampered OVA must be rejected");

    // vma: read back with an independent reader; the disk equals the raw export.
    let vma = d.join("vzdump-qemu-100-2026_01_01-00_00_00.vma");
    export(
        &store,
        &image,
        "vma",
        &vma,
        &["--vm-name", "demo", "--memory", "512"],
    );
    let (configs, disks) = vma_read(&std::fs::read(&vma).unwrap());
    let conf = configs
        .iter()
        .find(|(n, _)| n == "qemu-server.conf")
        .map(|(_, c)| String::from_utf8_lossy(c).into_owned())
        .expect("qemu-server.conf");
    assert!(conf.contains("name: demo"), "{conf}");
    assert!(conf.contains("memory: 512"), "{conf}");
    assert_eq!(disks.len(), 1);
    assert_eq!(disks[0].0, "drive-scsi0");
    assert!(
        disks[0].1 == std::fs::read(&raw).unwrap(),
        "VMA disk differs from the raw export"
    );

    // --fs squashfs and erofs: the root partition carries that file system.
    for (fs, magic_at, magic) in [
        ("squashfs", 0usize, &b"hsqs"[..]),
        ("erofs", 1024, &[0xe2, 0xe1, 0xf5, 0xe0][..]),
    ] {
        let r = d.join(format!("{fs}.raw"));
        export(&store, &image, "raw", &r, &["--fs", fs]);
        let p = d.join(format!("{fs}.part"));
        extract_partition(&r, 1, &p);
        let b = std::fs::read(&p).unwrap();
        assert_eq!(&b[magic_at..magic_at + 4], magic, "{fs} magic");
    }
}

/// MD5 through coreutils' `md5sum` (the root package has no MD5 crate).
fn md5(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut c = Command::new("md5sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run md5sum (coreutils)");
    c.stdin.take().unwrap().write_all(data).unwrap();
    let out = c.wait_with_output().unwrap();
    let hex = String::from_utf8_lossy(&out.stdout);
    (0..16)
        .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap())
        .collect()
}

/// An independent Proxmox VMA reader (from the format notes, not the writer): checks the
/// header and extent magics, MD5s and UUIDs, and that every cluster of every device appears
/// exactly once; returns the configs and the device contents.
/// Named byte strings: configs `(name, data)` or devices `(name, content)`.
type Named = Vec<(String, Vec<u8>)>;

fn vma_read(f: &[u8]) -> (Named, Named) {
    let be32 = |o: usize| u32::from_be_bytes(f[o..o + 4].try_into().unwrap());
    let be64 = |o: usize| u64::from_be_bytes(f[o..o + 8].try_into().unwrap());
    assert_eq!(&f[0..4], b"VMA\0");
    assert_eq!(be32(4), 1);
    let uuid = &f[8..24];
    let blob_off = be32(48) as usize;
    let blob_size = be32(52) as usize;
    let header_size = be32(56) as usize;
    let mut h = f[..header_size].to_vec();
    h[32..48].fill(0);
    assert_eq!(&md5(&h)[..], &f[32..48], "header md5");
    let blob = |ptr: usize| -> Vec<u8> {
        assert!(ptr > 0 && ptr < blob_size);
        let p = blob_off + ptr;
        let len = f[p] as usize | (f[p + 1] as usize) << 8;
        f[p + 2..p + 2 + len].to_vec()
    };
    let cstr =
        |b: Vec<u8>| String::from_utf8_lossy(b.strip_suffix(&[0]).unwrap_or(&b)).into_owned();
    let mut configs = Vec::new();
    for i in 0..256 {
        let n = be32(2044 + 4 * i) as usize;
        let d = be32(3068 + 4 * i) as usize;
        if n != 0 {
            configs.push((cstr(blob(n)), blob(d)));
        }
    }
    let mut devs: Vec<(usize, String, Vec<u8>, Vec<bool>)> = Vec::new();
    for id in 1..255 {
        let o = 4096 + id * 32;
        let name_ptr = be32(o) as usize;
        if name_ptr == 0 {
            continue;
        }
        let size = be64(o + 8) as usize;
        let clusters = size.div_ceil(65536);
        devs.push((
            id,
            cstr(blob(name_ptr)),
            vec![0u8; size],
            vec![false; clusters],
        ));
    }
    let mut pos = header_size;
    while pos < f.len() {
        assert_eq!(&f[pos..pos + 4], b"VMAE", "extent magic at {pos}");
        let mut eh = f[pos..pos + 512].to_vec();
        eh[24..40].fill(0);
        assert_eq!(&md5(&eh)[..], &f[pos + 24..pos + 40], "extent md5 at {pos}");
        assert_eq!(&f[pos + 8..pos + 24], uuid, "extent uuid");
        let blocks = u16::from_be_bytes([f[pos + 6], f[pos + 7]]) as usize;
        let mut data = pos + 512;
        for slot in 0..59 {
            let bi = u64::from_be_bytes(
                f[pos + 40 + 8 * slot..pos + 48 + 8 * slot]
                    .try_into()
                    .unwrap(),
            );
            let dev = ((bi >> 32) & 0xff) as usize;
            if dev == 0 {
                continue;
            }
            let cluster = (bi & 0xffff_ffff) as usize;
            let mask = (bi >> 48) as u16;
            let d = devs.iter_mut().find(|d| d.0 == dev).expect("known device");
            assert!(!d.3[cluster], "duplicated cluster {cluster}");
            d.3[cluster] = true;
            for b in 0..16 {
                if mask & (1 << b) != 0 {
                    let at = cluster * 65536 + b * 4096;
                    let n = 4096.min(d.2.len().saturating_sub(at));
                    d.2[at..at + n].copy_from_slice(&f[data..data + n]);
                    data += 4096;
                }
            }
        }
        assert_eq!(data, pos + 512 + blocks * 4096, "block count of the extent");
        pos = data;
    }
    for d in &devs {
        assert!(d.3.iter().all(|&s| s), "a cluster of {} is missing", d.1);
    }
    (configs, devs.into_iter().map(|d| (d.1, d.2)).collect())
}

/// `virt-v2v -i ova X --print-source`: its report, or the test fails with it.
fn print_source(ova: &Path) -> String {
    need("virt-v2v", "virt-v2v");
    let o = Command::new("virt-v2v")
        .args(["-i", "ova"])
        .arg(ova)
        .arg("--print-source")
        .env("LIBGUESTFS_BACKEND", "direct")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        o.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    text
}

/// `--vm-profile`: each profile's OVA is read by virt-v2v with that profile's bus and NIC, is
/// reproducible, and the option is refused where it means nothing.
#[test]
fn ova_vm_profiles_from_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let d = dir.path();
    let image = data_image(d, &store);
    let default = d.join("default.ova");
    export(&store, &image, "ova", &default, &[]);
    for (profile, disk, nic, firmware) in [
        (
            "vmware",
            "0 [scsi]",
            "\"VM Network\" [vmxnet3]",
            "firmware: uefi",
        ),
        (
            "kvm",
            "0 [scsi]",
            "\"VM Network\" [virtio]",
            "firmware: uefi",
        ),
        (
            "virtualbox",
            "0 [sata]",
            "\"NAT\" [e1000]",
            "firmware: bios",
        ),
    ] {
        let ova = d.join(format!("{profile}.ova"));
        export(&store, &image, "ova", &ova, &["--vm-profile", profile]);
        let text = print_source(&ova);
        assert!(text.lines().any(|l| l.trim() == disk), "{profile}: {text}");
        assert!(text.contains(nic), "{profile}: {text}");
        assert!(text.contains(firmware), "{profile}: {text}");
        let again = d.join(format!("{profile}-again.ova"));
        export(&store, &image, "ova", &again, &["--vm-profile", profile]);
        let bytes = std::fs::read(&ova).unwrap();
        assert!(
            bytes == std::fs::read(&again).unwrap(),
            "{profile}: not reproducible"
        );
        assert_eq!(
            bytes == std::fs::read(&default).unwrap(),
            profile == "vmware",
            "{profile}: only vmware is the default"
        );
    }

    // Refusals: a format without virtual hardware, UEFI for VirtualBox, an unknown profile.
    let refused = |format: &str, extra: &[&str]| {
        let out_path = d.join(format!("refused.{format}"));
        let mut args = vec!["export", &image, "--format", format, "-o"];
        args.push(out_path.to_str().unwrap());
        args.extend_from_slice(extra);
        let out = run(&store, &args);
        assert!(!out_path.exists(), "{args:?} wrote its output");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, err) = refused("qcow2", &["--vm-profile", "kvm"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("--vm-profile applies to ova only"), "{err}");
    let (code, err) = refused("ova", &["--vm-profile", "virtualbox", "--boot", "uefi"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("--vm-profile virtualbox cannot declare UEFI"),
        "{err}"
    );
    let (code, err) = refused("ova", &["--vm-profile", "hyperv"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("unknown vm profile `hyperv`"), "{err}");
}

#[test]
fn data_iso_carries_an_oci_layout() {
    for (t, p) in [
        ("xorriso", "xorriso"),
        ("isoinfo", "genisoimage"),
        ("skopeo", "skopeo"),
    ] {
        need(t, p);
    }
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let image = data_image(dir.path(), &store);
    let iso = dir.path().join("data.iso");
    let msg = export(&store, &image, "iso", &iso, &["--label", "DATA_1"]);
    assert!(!msg.contains("bootable"), "{msg}");
    let info = sh(Command::new("isoinfo").arg("-d").arg("-i").arg(&iso));
    assert!(info.contains("Volume id: DATA_1"), "{info}");
    assert!(info.contains("Rock Ridge signatures"), "{info}");
    assert!(info.contains("Joliet"), "{info}");
    assert!(
        !info.contains("El Torito"),
        "a data ISO has no boot record:\n{info}"
    );
    let x = dir.path().join("x");
    sh(Command::new("xorriso")
        .args(["-osirrox", "on", "-indev"])
        .arg(&iso)
        .args(["-extract", "/", x.to_str().unwrap()]));
    let readme = std::fs::read_to_string(x.join("README.txt")).unwrap();
    assert!(readme.contains("data:1"), "{readme}");
    let inspect = sh(Command::new("skopeo")
        .arg("inspect")
        .arg(format!("oci:{}:1", x.join("oci").display())));
    let v: serde_json::Value = serde_json::from_str(&inspect).unwrap();
    assert_eq!(v["Layers"].as_array().map(Vec::len), Some(2), "{inspect}");
}

#[test]
fn bad_input_fails_clearly_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let d = dir.path();
    let image = data_image(d, &store);

    // An image without a root file system.
    let empty = d.join("empty");
    write_files(
        &empty,
        &[("Kubefile", "FROM scratch\nLABEL purpose=nothing\n")],
    );
    ok(&store, &["build", "-t", "empty:1", empty.to_str().unwrap()]);
    let out = run(
        &store,
        &[
            "export",
            "empty:1",
            "--format",
            "raw",
            "-o",
            d.join("e.raw").to_str().unwrap(),
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("no root file system"), "{err}");
    assert!(!d.join("e.raw").exists());

    // A disk size too small: clear error, nothing written.
    let small = d.join("small.qcow2");
    let out = run(
        &store,
        &[
            "export",
            &image,
            "--format",
            "qcow2",
            "--size",
            "2M",
            "-o",
            small.to_str().unwrap(),
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("too small") && err.contains("needs at least"),
        "{err}"
    );
    assert!(!small.exists());

    // An unwritable output path.
    let out = run(
        &store,
        &[
            "export",
            &image,
            "--format",
            "tar",
            "-o",
            "/nonexistent-dir/x.tar",
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("/nonexistent-dir") && err.contains("does not exist"),
        "{err}"
    );

    // Unknown options and values are usage errors; a misplaced option is refused.
    for args in [
        vec!["--format", "vhd"],
        vec!["--format", "qcow2", "--compress", "lz4"],
        vec!["--format", "raw", "--fs", "btrfs"],
        vec!["--format", "raw", "--frobnicate"],
    ] {
        let mut a = vec!["export", image.as_str(), "-o", "x.out"];
        a.extend(args.iter().copied());
        let out = run(&store, &a);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = run(
        &store,
        &[
            "export",
            &image,
            "--format",
            "raw",
            "--compress",
            "zstd",
            "-o",
            d.join("c.raw").to_str().unwrap(),
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("--compress applies to qcow2 only"), "{err}");

    // The help documents the formats and options.
    let help = ok(&store, &["export", "--help"]);
    for w in [
        "--platform",
        "--size",
        "--fs",
        "--boot",
        "--kernel-cmdline",
        "--compress",
        "--vm-name",
        "--cpus",
        "--memory",
        "--label",
        "vma",
        "iso",
    ] {
        assert!(help.contains(w), "{w} missing from --help");
    }

    // An interrupted export (SIGKILL) leaves nothing under the final name, and no stray
    // work folders are visible as the output.
    let big = d.join("big");
    write_files(&big, &[("Kubefile", "FROM scratch\nCOPY blob /blob\n")]);
    let mut x: u64 = 1;
    let data: Vec<u8> = (0..(96u32 << 20))
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (x >> 56) as u8
        })
        .collect();
    std::fs::write(big.join("blob"), data).unwrap();
    ok(&store, &["build", "-t", "big:1", big.to_str().unwrap()]);
    let outdir = d.join("out");
    std::fs::create_dir(&outdir).unwrap();
    let target = outdir.join("big.qcow2");
    let mut child = common::chasi()
        .arg("--store")
        .arg(&store)
        .args([
            "export",
            "big:1",
            "--format",
            "qcow2",
            "--compress",
            "zlib",
            "--threads",
            "1",
            "-o",
        ])
        .arg(&target)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let still_running = child.try_wait().unwrap().is_none();
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        still_running,
        "the export finished before it could be interrupted"
    );
    assert!(
        !target.exists(),
        "a partial export is visible under the final name"
    );
}

/// Builds the bootable example (running its context recipe first).
fn bootable_image(store: &Path) -> String {
    need("apt-get", "apt");
    need("dpkg-deb", "dpkg");
    let ctx = example("bootable");
    sh(&mut Command::new(ctx.join("prepare.sh")));
    ok(
        store,
        &["build", "-t", "bootable:test", ctx.to_str().unwrap()],
    );
    "bootable:test".to_string()
}

const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.fd";
const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS_4M.fd";

/// Boots under qemu TCG, waits for the example's marker on the serial console and returns
/// the serial log.
fn boot(dir: &Path, uefi: bool, drive: &[&str], what: &str) -> String {
    need("qemu-system-x86_64", "qemu-system-x86");
    let log = dir.join(format!("{what}.log"));
    let mut c = Command::new("qemu-system-x86_64");
    c.args([
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
    .arg(format!("file:{}", log.display()));
    if uefi {
        assert!(
            Path::new(OVMF_CODE).is_file(),
            "{OVMF_CODE} is needed: install the Debian package `ovmf`"
        );
        let vars = dir.join(format!("{what}.vars"));
        std::fs::copy(OVMF_VARS, &vars).unwrap();
        c.arg("-drive")
            .arg(format!("if=pflash,format=raw,readonly=on,file={OVMF_CODE}"))
            .arg("-drive")
            .arg(format!("if=pflash,format=raw,file={}", vars.display()));
    }
    c.args(drive).stdout(Stdio::null()).stderr(Stdio::piped());
    let mut child = c.spawn().expect("start qemu-system-x86_64");
    let start = Instant::now();
    let limit = Duration::from_secs(300);
    let seen = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("CHASI-BOOT-OK") {
            break true;
        }
        if child.try_wait().unwrap().is_some() || start.elapsed() > limit {
            break std::fs::read_to_string(&log)
                .unwrap_or_default()
                .contains("CHASI-BOOT-OK");
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    let _ = child.kill();
    let _ = child.wait();
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let tail: String = text
        .lines()
        .rev()
        .take(25)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        seen,
        "{what}: no CHASI-BOOT-OK within {limit:?}; serial log tail:\n{tail}"
    );
    text
}

#[test]
fn bootable_qcow2_and_ova_vmdk_boot_under_uefi() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let image = bootable_image(&store);
    let q = dir.path().join("boot.qcow2");
    let msg = export(&store, &image, "qcow2", &q, &["--compress", "zstd"]);
    assert!(msg.contains("bootable"), "{msg}");
    assert_eq!(
        qemu_img(&["check", q.to_str().unwrap()]).status.code(),
        Some(0)
    );
    let log = boot(
        dir.path(),
        true,
        &[
            "-drive",
            &format!("file={},format=qcow2,if=virtio", q.display()),
        ],
        "qcow2-uefi",
    );
    // Issue 11 item 8: GRUB reads the ESP's menu and boots the kernel from the ext4 root (where
    // the guest's kernel packages put new kernels), not the export's copy on the ESP.
    assert!(
        log.contains("chasi: booting /boot/vmlinuz-"),
        "not booted from the root file system:\n{log}"
    );

    // The KVM profile's OVA boots on the devices its descriptor declares: the disk on a
    // virtio-scsi controller, a virtio-net NIC beside it.
    let ova = dir.path().join("boot.ova");
    export(&store, &image, "ova", &ova, &["--vm-profile", "kvm"]);
    let x = dir.path().join("ova");
    std::fs::create_dir(&x).unwrap();
    sh(Command::new("tar").arg("-xf").arg(&ova).arg("-C").arg(&x));
    let member = |ext: &str| -> PathBuf {
        std::fs::read_dir(&x)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.extension().is_some_and(|e| e == ext))
            .unwrap_or_else(|| panic!("a .{ext} in the OVA"))
    };
    let ovf = std::fs::read_to_string(member("ovf")).unwrap();
    for declared in [
        "<rasd:ResourceSubType>virtio-scsi</rasd:ResourceSubType>",
        "<rasd:ResourceSubType>virtio</rasd:ResourceSubType>",
        r#"vmw:key="firmware" vmw:value="efi""#,
    ] {
        assert!(ovf.contains(declared), "the OVF lacks {declared}:\n{ovf}");
    }
    let vmdk = member("vmdk");
    boot(
        dir.path(),
        true,
        &[
            "-device",
            "virtio-scsi-pci,id=c0",
            "-drive",
            &format!(
                "file={},format=vmdk,if=none,id=d0,snapshot=on",
                vmdk.display()
            ),
            "-device",
            "scsi-hd,drive=d0,bus=c0.0,bootindex=0",
            "-device",
            "virtio-net-pci,romfile=",
        ],
        "ova-kvm-virtio-scsi-uefi",
    );
}

/// Disks whose root is read-only (`--fs squashfs`, `--fs erofs`) boot: the command line names
/// the root's type, the example's initramfs mounts it by PARTUUID and the image's `/init` reports
/// the type of the file system it runs from.
#[test]
fn bootable_qcow2_with_squashfs_and_erofs_roots_boot_under_uefi() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let image = bootable_image(&store);
    for fs in ["squashfs", "erofs"] {
        let q = dir.path().join(format!("{fs}.qcow2"));
        let msg = export(&store, &image, "qcow2", &q, &["--fs", fs]);
        assert!(msg.contains("bootable"), "{msg}");
        let start = Instant::now();
        let log = boot(
            dir.path(),
            true,
            &[
                "-drive",
                &format!("file={},format=qcow2,if=virtio,snapshot=on", q.display()),
            ],
            &format!("qcow2-{fs}-uefi"),
        );
        eprintln!("{fs}: booted in {:?}", start.elapsed());
        assert!(
            log.contains(&format!("CHASI-BOOT-OK root={fs}")),
            "{fs}: the root is not {fs}; serial log:\n{log}"
        );
        // A read-only root boots the ESP's copy of the kernel (the menu's only entry).
        assert!(log.contains("chasi: booting /vmlinuz"), "{fs}:\n{log}");
    }
}

/// Issue 11 item 9: `--boot hybrid` puts GRUB's core image in a BIOS boot partition and its boot code
/// in the protective MBR, beside the ESP: one disk boots under SeaBIOS and under OVMF.
#[test]
fn a_hybrid_disk_boots_under_bios_and_uefi() {
    need("sfdisk", "fdisk");
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let image = bootable_image(&store);
    let raw = dir.path().join("hybrid.raw");
    let msg = export(&store, &image, "raw", &raw, &["--boot", "hybrid"]);
    assert!(msg.contains("bootable"), "{msg}");
    let table: serde_json::Value =
        serde_json::from_str(&sh(Command::new("sfdisk").arg("--json").arg(&raw))).unwrap();
    let parts = table["partitiontable"]["partitions"]
        .as_array()
        .unwrap()
        .clone();
    let types: Vec<&str> = parts.iter().map(|p| p["type"].as_str().unwrap()).collect();
    assert_eq!(
        types,
        [
            "21686148-6449-6E6F-744E-656564454649",
            "C12A7328-F81F-11D2-BA4B-00A0C93EC93B",
            "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709"
        ]
    );
    for uefi in [false, true] {
        let log = boot(
            dir.path(),
            uefi,
            &[
                "-drive",
                &format!("file={},format=raw,if=virtio,snapshot=on", raw.display()),
            ],
            if uefi { "hybrid-uefi" } else { "hybrid-bios" },
        );
        assert!(log.contains("CHASI-BOOT-OK root=ext4"), "{log}");
        if !uefi {
            // GRUB's BIOS core reaches the same menu (its output is on the serial port too).
            assert!(log.contains("chasi: booting /boot/vmlinuz-"), "{log}");
        }
    }
    // A BIOS-only disk: no GRUB for UEFI on its ESP.
    let bios = dir.path().join("bios.raw");
    let msg = export(&store, &image, "raw", &bios, &["--boot", "bios"]);
    assert!(msg.contains("bootable"), "{msg}");
}

#[test]
fn bootable_iso_boots_under_bios_and_uefi() {
    need("xorriso", "xorriso");
    need("isoinfo", "genisoimage");
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let image = bootable_image(&store);
    let iso = dir.path().join("live.iso");
    let msg = export(&store, &image, "iso", &iso, &[]);
    assert!(msg.contains("bootable"), "{msg}");
    let et = sh(Command::new("xorriso")
        .args(["-indev"])
        .arg(&iso)
        .args(["-report_el_torito", "plain"]));
    assert!(et.contains("El Torito boot img :   1  BIOS"), "{et}");
    assert!(et.contains("UEFI"), "{et}");
    let info = sh(Command::new("isoinfo").arg("-d").arg("-i").arg(&iso));
    assert!(info.contains("El Torito VD version 1 found"), "{info}");
    assert!(info.contains("Rock Ridge signatures"), "{info}");
    assert!(info.contains("Joliet"), "{info}");
    // Reproducible.
    std::thread::sleep(Duration::from_millis(1100));
    let iso2 = dir.path().join("live2.iso");
    export(&store, &image, "iso", &iso2, &[]);
    assert!(
        std::fs::read(&iso).unwrap() == std::fs::read(&iso2).unwrap(),
        "ISO not reproducible"
    );

    let cd = [
        "-drive",
        &format!("file={},format=raw,media=cdrom,readonly=on", iso.display()),
    ];
    let start = Instant::now();
    let bios = boot(dir.path(), false, &[cd[0], cd[1], "-boot", "d"], "iso-bios");
    eprintln!("iso-bios: booted in {:?}", start.elapsed());
    let start = Instant::now();
    let uefi = boot(dir.path(), true, &cd, "iso-uefi");
    eprintln!("iso-uefi: booted in {:?}", start.elapsed());
    // The boot says what the medium is, on the serial console under both firmwares.
    for (what, log) in [("bios", &bios), ("uefi", &uefi)] {
        assert!(
            log.contains("chasi live ISO: bootable:test") && log.contains("image sha256:"),
            "{what}: the boot does not name the image; serial log:\n{log}"
        );
        assert!(
            log.contains(
                "runs from RAM: the whole root is in memory; changes are lost at power-off"
            ),
            "{what}: the boot does not say the system keeps nothing; serial log:\n{log}"
        );
        assert!(
            !log.contains("installer: it carries"),
            "{what}: a plain live ISO calls itself an installer; serial log:\n{log}"
        );
    }
}
