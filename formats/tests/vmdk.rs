//! streamOptimized VMDK against qemu-img, plus structural checks of the stream's tail.

mod common;

use chasi_formats::disk::{DiskSource, ExtentDisk};
use chasi_formats::raw::write_raw;
use chasi_formats::vmdk::{write_vmdk, VmdkOptions};
use common::*;

fn le32(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes(b[o..o + 4].try_into().unwrap())
}
fn le64(b: &[u8], o: usize) -> u64 {
    u64::from_le_bytes(b[o..o + 8].try_into().unwrap())
}

fn roundtrip(disk: &ExtentDisk) -> Vec<u8> {
    require("qemu-img", "qemu-utils");
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("ref.raw");
    let v = dir.path().join("disk.vmdk");
    write_raw(disk, &raw).unwrap();
    let opts = VmdkOptions {
        seed: b"sha256:test".to_vec(),
        ..Default::default()
    };
    let rep = write_vmdk(disk, &v, &opts).unwrap();
    let bytes = std::fs::read(&v).unwrap();
    assert_eq!(rep.file_size, bytes.len() as u64);
    assert_same("raw", &raw, "vmdk", &v);
    let o = run("qemu-img", &["check", v.to_str().unwrap()]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    let info: serde_json::Value = serde_json::from_str(&run_ok(
        "qemu-img",
        &["info", "--output=json", v.to_str().unwrap()],
    ))
    .unwrap();
    assert_eq!(info["format"], "vmdk");
    assert_eq!(info["virtual-size"], disk.size());
    assert_eq!(
        info["format-specific"]["data"]["create-type"],
        "streamOptimized"
    );
    // Reproducible.
    let v2 = dir.path().join("again.vmdk");
    write_vmdk(disk, &v2, &opts).unwrap();
    assert!(
        bytes == std::fs::read(&v2).unwrap(),
        "output is not reproducible"
    );
    bytes
}

fn check_tail(b: &[u8]) {
    let n = b.len();
    assert_eq!(n % 512, 0);
    // Header: GD at end.
    assert_eq!(&b[0..4], b"KDMV");
    assert_eq!(le32(b, 4), 3);
    assert_eq!(le32(b, 8), 0x30001);
    assert_eq!(le64(b, 56), u64::MAX);
    // EOS marker: the last sector is all zeros.
    assert!(
        b[n - 512..].iter().all(|&x| x == 0),
        "no end-of-stream marker"
    );
    // Footer marker then footer.
    let fm = &b[n - 1536..n - 1024];
    assert_eq!(
        (le64(fm, 0), le32(fm, 8), le32(fm, 12)),
        (1, 0, 3),
        "footer marker"
    );
    let footer = &b[n - 1024..n - 512];
    assert_eq!(&footer[0..4], b"KDMV");
    let gd = le64(footer, 56);
    assert_ne!(gd, u64::MAX);
    // The GD is preceded by its marker (type 2).
    let gm = &b[(gd as usize - 1) * 512..gd as usize * 512];
    assert_eq!(le32(gm, 12), 2, "grain directory marker");
    // Every GD entry points at a GT preceded by a type-1 marker, whose entries point at
    // grain markers carrying the right LBA.
    let n_gd = le64(gm, 0) as usize * 128;
    for i in 0..n_gd {
        let gt = le32(b, gd as usize * 512 + i * 4) as usize;
        if gt == 0 {
            continue;
        }
        assert_eq!(le32(&b[(gt - 1) * 512..], 12), 1, "grain table marker");
        for j in 0..512 {
            let s = le32(b, gt * 512 + j * 4) as usize;
            if s != 0 {
                assert_eq!(le64(b, s * 512), ((i * 512 + j) * 128) as u64, "grain lba");
                // zlib header (CMF 0x78).
                assert_eq!(b[s * 512 + 12], 0x78);
            }
        }
    }
}

#[test]
fn mixed_disk_identical_and_well_formed() {
    let b = roundtrip(&mixed_disk(40 << 20));
    check_tail(&b);
}

#[test]
fn empty_disk_and_partial_last_grain() {
    let b = roundtrip(&ExtentDisk::new(8 << 20));
    check_tail(&b);
    let size = (8 << 20) + 512 * 3;
    let mut d = ExtentDisk::new(size);
    d.add_bytes(size - 700, noise(700, 5)).unwrap();
    let b = roundtrip(&d);
    check_tail(&b);
}

#[test]
fn rejects_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let v = dir.path().join("x.vmdk");
    assert!(write_vmdk(&ExtentDisk::new(1000), &v, &VmdkOptions::default()).is_err());
    let bad = VmdkOptions {
        file_name: "a\"b".into(),
        ..Default::default()
    };
    assert!(write_vmdk(&ExtentDisk::new(1 << 20), &v, &bad).is_err());
    assert!(!v.exists());
}
