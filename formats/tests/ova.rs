//! OVA packages: member order, ustar headers and manifest read back here; the VMDK inside
//! compared with qemu-img; the whole package parsed by virt-v2v, which must also reject a
//! package whose disk was altered.

mod common;

use std::path::Path;

use chasi_formats::disk::DiskSource;
use chasi_formats::ova::{write_ova, ManifestDigest, ManifestPlacement, OvaOptions};
use chasi_formats::raw::write_raw;
use common::*;
use sha2::{Digest, Sha256, Sha512};

fn check_headers(ms: &[Member]) {
    for m in ms {
        let h = &m.header;
        assert_eq!(&h[257..263], b"ustar\0", "{}: not ustar", m.name);
        assert_eq!(&h[263..265], b"00");
        assert_eq!(
            h[156], b'0',
            "{}: not a regular file (no PAX, no sparse)",
            m.name
        );
        assert_eq!(&h[100..108], b"0000644\0");
        assert_eq!(&h[108..116], b"0000000\0", "uid must be 0");
        assert_eq!(&h[116..124], b"0000000\0", "gid must be 0");
        assert_eq!(&h[136..148], b"00000000000\0", "mtime must be fixed");
        assert!(!m.name.contains('/'));
    }
}

fn attr(xml: &str, key: &str) -> String {
    let i = xml
        .find(&format!("{key}=\""))
        .unwrap_or_else(|| panic!("no {key}"));
    let rest = &xml[i + key.len() + 2..];
    rest[..rest.find('"').unwrap()].to_string()
}

fn build(dir: &Path, opts: &OvaOptions) -> (std::path::PathBuf, std::path::PathBuf) {
    let disk = mixed_disk(24 << 20);
    let raw = dir.join("ref.raw");
    write_raw(&disk, &raw).unwrap();
    let out = dir.join(format!("{}.ova", opts.vm_name));
    let rep = write_ova(&disk, &out, opts).unwrap();
    assert_eq!(rep.file_size, std::fs::metadata(&out).unwrap().len());
    assert_eq!(disk.size(), 24 << 20);
    (out, raw)
}

#[test]
fn members_manifest_and_disk() {
    let dir = tempfile::tempdir().unwrap();
    let opts = OvaOptions {
        vm_name: "edge-node".into(),
        cpus: 4,
        memory_mib: 4096,
        hardware_version: 15,
        seed: b"sha256:abc".to_vec(),
        ..Default::default()
    };
    let (ova, raw) = build(dir.path(), &opts);
    let bytes = std::fs::read(&ova).unwrap();
    let ms = members(&bytes);
    check_headers(&ms);
    let names: Vec<&str> = ms.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(
        names,
        ["edge-node.ovf", "edge-node-disk1.vmdk", "edge-node.mf"]
    );
    let data = |m: &Member| &bytes[m.data_at..m.data_at + m.size];
    let ovf = String::from_utf8(data(&ms[0]).to_vec()).unwrap();
    assert_eq!(
        attr(&ovf, "ovf:size"),
        ms[1].size.to_string(),
        "ovf:size must be exact"
    );
    assert_eq!(attr(&ovf, "ovf:capacity"), (24u64 << 20).to_string());
    assert!(ovf.contains("<vssd:VirtualSystemType>vmx-15</vssd:VirtualSystemType>"));
    assert!(ovf.contains("<rasd:VirtualQuantity>4</rasd:VirtualQuantity>"));
    assert!(ovf.contains("<rasd:VirtualQuantity>4096</rasd:VirtualQuantity>"));
    assert!(ovf.contains(r#"vmw:key="firmware" vmw:value="efi""#));
    let mf = String::from_utf8(data(&ms[2]).to_vec()).unwrap();
    let expect = format!(
        "SHA256(edge-node.ovf)= {}\nSHA256(edge-node-disk1.vmdk)= {}\n",
        hex::encode(Sha256::digest(data(&ms[0]))),
        hex::encode(Sha256::digest(data(&ms[1])))
    );
    assert_eq!(mf, expect);
    // The disk inside is the raw export.
    let vmdk = dir.path().join("extracted.vmdk");
    std::fs::write(&vmdk, data(&ms[1])).unwrap();
    assert_same("raw", &raw, "vmdk", &vmdk);
    // Reproducible.
    let again = dir.path().join("again.ova");
    write_ova(&mixed_disk(24 << 20), &again, &opts).unwrap();
    assert!(
        bytes == std::fs::read(&again).unwrap(),
        "output is not reproducible"
    );
}

/// The bytes of a whole package, pinned by SHA-256: recorded before the tar writer moved into
/// `chasi-tar`, they prove the move byte-identical.
#[test]
fn package_bytes_are_pinned() {
    let dir = tempfile::tempdir().unwrap();
    let opts = OvaOptions {
        vm_name: "pinned".into(),
        seed: b"sha256:pinned".to_vec(),
        mtime: 1_700_000_000,
        manifest: ManifestPlacement::AfterDescriptor,
        ..Default::default()
    };
    let out = dir.path().join("pinned.ova");
    write_ova(&mixed_disk(6 << 20), &out, &opts).unwrap();
    let bytes = std::fs::read(&out).unwrap();
    assert_eq!(
        hex::encode(Sha256::digest(&bytes)),
        "486a410ec3c553d58dd6ed780a0e843f2c2816fa7adb4c2cbb0fa67542258011"
    );
}

#[test]
fn manifest_after_descriptor_and_sha512() {
    let dir = tempfile::tempdir().unwrap();
    let opts = OvaOptions {
        vm_name: "vm2".into(),
        manifest: ManifestPlacement::AfterDescriptor,
        digest: ManifestDigest::Sha512,
        uefi: false,
        ..Default::default()
    };
    let (ova, _) = build(dir.path(), &opts);
    let bytes = std::fs::read(&ova).unwrap();
    let ms = members(&bytes);
    check_headers(&ms);
    let names: Vec<&str> = ms.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, ["vm2.ovf", "vm2.mf", "vm2-disk1.vmdk"]);
    let data = |m: &Member| &bytes[m.data_at..m.data_at + m.size];
    let mf = String::from_utf8(data(&ms[1]).to_vec()).unwrap();
    assert!(mf.contains(&format!(
        "SHA512(vm2-disk1.vmdk)= {}\n",
        hex::encode(Sha512::digest(data(&ms[2])))
    )));
    let ovf = String::from_utf8(data(&ms[0]).to_vec()).unwrap();
    assert!(ovf.contains(r#"vmw:value="bios""#));
}

fn v2v(ova: &Path) -> std::process::Output {
    require("virt-v2v", "virt-v2v");
    std::process::Command::new("virt-v2v")
        .args(["-i", "ova", ova.to_str().unwrap(), "--print-source"])
        .env("LIBGUESTFS_BACKEND", "direct")
        .output()
        .expect("run virt-v2v")
}

#[test]
fn virt_v2v_accepts_and_detects_tampering() {
    let dir = tempfile::tempdir().unwrap();
    let opts = OvaOptions {
        vm_name: "v2vtest".into(),
        cpus: 3,
        memory_mib: 1024,
        seed: b"x".to_vec(),
        ..Default::default()
    };
    let (ova, _) = build(dir.path(), &opts);
    let o = v2v(&ova);
    let out = String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "virt-v2v rejected the OVA:\n{out}");
    assert!(out.contains("v2vtest"), "{out}");
    assert!(out.contains("memory: 1073741824 (bytes)"), "{out}");
    assert!(out.contains("nr vCPUs: 3"), "{out}");
    assert!(out.contains("uefi"), "{out}");

    // Flip one byte inside the VMDK member: the manifest check must fail.
    let mut bytes = std::fs::read(&ova).unwrap();
    let ms = members(&bytes);
    let disk = ms.iter().find(|m| m.name.ends_with(".vmdk")).unwrap();
    bytes[disk.data_at + disk.size / 2] ^= 0x55;
    let bad = dir.path().join("tampered.ova");
    std::fs::write(&bad, &bytes).unwrap();
    let o = v2v(&bad);
    let out = String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success(),
        "virt-v2v accepted a tampered disk:\n{out}"
    );
    assert!(
        out.contains("checksum") || out.contains("manifest"),
        "{out}"
    );
}

#[test]
fn bad_options_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let disk = mixed_disk(8 << 20);
    let out = dir.path().join("x.ova");
    for opts in [
        OvaOptions {
            vm_name: "a/b".into(),
            ..Default::default()
        },
        OvaOptions {
            vm_name: "<x>".into(),
            ..Default::default()
        },
        OvaOptions {
            cpus: 0,
            ..Default::default()
        },
        OvaOptions {
            memory_mib: 1023,
            ..Default::default()
        },
        OvaOptions {
            hardware_version: 3,
            ..Default::default()
        },
    ] {
        let e = write_ova(&disk, &out, &opts).unwrap_err();
        assert!(e.to_string().starts_with("invalid option for ova"), "{e}");
    }
    assert!(std::fs::read_dir(dir.path()).unwrap().next().is_none());
}
