//! QCOW2 writer against the real client: `qemu-img check`, `compare`, `info`.

mod common;

use std::path::Path;

use chasi_formats::disk::{DiskSource, ExtentDisk};
use chasi_formats::qcow2::{write_qcow2, Qcow2Compression, Qcow2Options};
use chasi_formats::raw::write_raw;
use common::*;

fn info(p: &Path) -> serde_json::Value {
    let s = run_ok("qemu-img", &["info", "--output=json", p.to_str().unwrap()]);
    serde_json::from_str(&s).unwrap()
}

fn check(p: &Path) -> serde_json::Value {
    let o = run("qemu-img", &["check", "--output=json", p.to_str().unwrap()]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "qemu-img check {}: {}{}",
        p.display(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout).unwrap()
}

fn roundtrip(
    disk: &ExtentDisk,
    opts: &Qcow2Options,
    name: &str,
) -> (serde_json::Value, serde_json::Value) {
    require("qemu-img", "qemu-utils");
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("ref.raw");
    let q = dir.path().join(format!("{name}.qcow2"));
    write_raw(disk, &raw).unwrap();
    assert_eq!(std::fs::metadata(&raw).unwrap().len(), disk.size());
    let rep = write_qcow2(disk, &q, opts).unwrap();
    assert_eq!(rep.file_size, std::fs::metadata(&q).unwrap().len());
    let c = check(&q);
    assert_same("raw", &raw, "qcow2", &q);
    let i = info(&q);
    assert_eq!(i["format"], "qcow2");
    assert_eq!(i["virtual-size"], disk.size());
    assert_eq!(i["cluster-size"], 1u64 << opts.cluster_bits);
    assert_eq!(i["dirty-flag"], false);
    let d = &i["format-specific"]["data"];
    assert_eq!(d["compat"], "1.1");
    assert_eq!(d["refcount-bits"], 16);
    assert_eq!(d["corrupt"], false);
    // Reproducible: a second run gives the same bytes.
    let q2 = dir.path().join(format!("{name}-again.qcow2"));
    write_qcow2(disk, &q2, opts).unwrap();
    assert!(
        std::fs::read(&q).unwrap() == std::fs::read(&q2).unwrap(),
        "output is not reproducible"
    );
    (c, i)
}

#[test]
fn plain_mixed_disk() {
    let disk = mixed_disk(16 << 20);
    let (c, i) = roundtrip(&disk, &Qcow2Options::default(), "plain");
    assert_eq!(i["format-specific"]["data"]["compression-type"], "zlib");
    assert!(c.get("compressed-clusters").is_none_or(|v| v == 0), "{c}");
    // Sparse: only the clusters with data are allocated (text 16, noise 8, 1, 1, last 1).
    assert_eq!(
        c["allocated-clusters"].as_u64().unwrap(),
        16 + 8 + 1 + 1 + 1
    );
}

#[test]
fn zlib_compressed() {
    let disk = mixed_disk(16 << 20);
    let opts = Qcow2Options {
        compression: Qcow2Compression::Zlib { level: 6 },
        ..Default::default()
    };
    let (c, i) = roundtrip(&disk, &opts, "zlib");
    assert_eq!(i["format-specific"]["data"]["compression-type"], "zlib");
    let compressed = c["compressed-clusters"].as_u64().unwrap();
    // Text and sparse clusters shrink; the noise (8 clusters) does not.
    assert!(compressed >= 18, "{c}");
    assert!(compressed < 27, "noise must stay uncompressed: {c}");
}

#[test]
fn zstd_compressed() {
    let disk = mixed_disk(16 << 20);
    let opts = Qcow2Options {
        compression: Qcow2Compression::Zstd { level: 3 },
        threads: 2,
        ..Default::default()
    };
    let (c, i) = roundtrip(&disk, &opts, "zstd");
    assert_eq!(i["format-specific"]["data"]["compression-type"], "zstd");
    assert!(c["compressed-clusters"].as_u64().unwrap() >= 18, "{c}");
}

#[test]
fn zstd_many_small_clusters_share_host_clusters() {
    // 512-byte clusters: many compressed clusters per host cluster and several L2 tables.
    let disk = mixed_disk(8 << 20);
    let opts = Qcow2Options {
        cluster_bits: 9,
        compression: Qcow2Compression::Zstd { level: 1 },
        threads: 1,
        sync: false,
    };
    roundtrip(&disk, &opts, "small-zstd");
    let opts = Qcow2Options {
        cluster_bits: 12,
        compression: Qcow2Compression::Zlib { level: 1 },
        threads: 2,
        sync: true,
    };
    roundtrip(&disk, &opts, "small-zlib");
}

#[test]
fn large_clusters_and_odd_size() {
    // Not a multiple of the cluster size (nor of 4 KiB), as qemu allows: whole sectors.
    let size = (16 << 20) + 12288 + 512;
    let disk = mixed_disk(size);
    let opts = Qcow2Options {
        cluster_bits: 21,
        ..Default::default()
    };
    roundtrip(&disk, &opts, "big-clusters");
    roundtrip(&disk, &Qcow2Options::default(), "odd-size");
}

#[test]
fn empty_disk() {
    let disk = ExtentDisk::new(64 << 20);
    let (c, _) = roundtrip(&disk, &Qcow2Options::default(), "empty");
    assert!(c.get("allocated-clusters").is_none_or(|v| v == 0), "{c}");
}

#[test]
fn data_only_at_the_very_end() {
    let size = 48 << 20;
    let mut disk = ExtentDisk::new(size);
    disk.add_bytes(size - 1, vec![1u8]).unwrap();
    let opts = Qcow2Options {
        compression: Qcow2Compression::Zstd { level: 3 },
        ..Default::default()
    };
    let (c, _) = roundtrip(&disk, &opts, "end");
    assert_eq!(c["allocated-clusters"], 1);
}

#[test]
fn from_sparse_raw_file() {
    require("qemu-img", "qemu-utils");
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("in.raw");
    write_raw(&mixed_disk(24 << 20), &raw).unwrap();
    let disk = ExtentDisk::from_raw_file(&raw).unwrap();
    let q = dir.path().join("out.qcow2");
    write_qcow2(&disk, &q, &Qcow2Options::default()).unwrap();
    check(&q);
    assert_same("raw", &raw, "qcow2", &q);
}

#[test]
fn bad_options_are_rejected_before_writing() {
    let dir = tempfile::tempdir().unwrap();
    let q = dir.path().join("x.qcow2");
    let disk = ExtentDisk::new(1 << 20);
    for opts in [
        Qcow2Options {
            cluster_bits: 8,
            ..Default::default()
        },
        Qcow2Options {
            cluster_bits: 22,
            ..Default::default()
        },
        Qcow2Options {
            compression: Qcow2Compression::Zstd { level: 0 },
            ..Default::default()
        },
        Qcow2Options {
            compression: Qcow2Compression::Zlib { level: 10 },
            ..Default::default()
        },
        Qcow2Options {
            threads: 0,
            ..Default::default()
        },
    ] {
        let e = write_qcow2(&disk, &q, &opts).unwrap_err();
        assert!(e.to_string().starts_with("invalid option for qcow2"), "{e}");
    }
    let odd = ExtentDisk::new((1 << 20) + 100);
    let e = write_qcow2(&odd, &q, &Qcow2Options::default()).unwrap_err();
    assert!(e.to_string().contains("not a multiple of 512"), "{e}");
    assert!(
        std::fs::read_dir(dir.path()).unwrap().next().is_none(),
        "no file may be left behind"
    );
}
