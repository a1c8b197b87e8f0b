//! VMA archives checked by an independent reader written in this file from the format
//! description (formats.md §1.4 and the checks of Proxmox's C reader): it shares no code
//! with the writer. It validates the header and its MD5, the blob table, configs, the
//! device table, every extent header (magic, reserved, uuid, MD5, block count against the
//! masks), duplicate and missing clusters, and extracts every device.

mod common;

use std::collections::BTreeMap;

use chasi_formats::disk::{DiskSource, ExtentDisk};
use chasi_formats::raw::write_raw;
use chasi_formats::vma::{write_vma, ProxmoxVm, VmaDevice, VmaOptions};
use common::*;
use md5::{Digest, Md5};

#[derive(Debug)]
struct Archive {
    uuid: [u8; 16],
    ctime: i64,
    configs: BTreeMap<String, Vec<u8>>,
    /// dev id -> (name, content)
    devices: BTreeMap<u8, (String, Vec<u8>)>,
}

fn be32(b: &[u8], o: usize) -> u32 {
    u32::from_be_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
}
fn be64(b: &[u8], o: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[o..o + 8]);
    u64::from_be_bytes(a)
}

fn read_vma(file: &[u8]) -> Result<Archive, String> {
    const FIXED: usize = 12288;
    if file.len() < FIXED {
        return Err("short header".into());
    }
    if &file[0..4] != b"VMA\0" {
        return Err("wrong magic".into());
    }
    let header_size = be32(file, 56) as usize;
    if header_size <= FIXED || header_size > file.len() {
        return Err(format!("wrong header size {header_size}"));
    }
    let mut head = file[..header_size].to_vec();
    let stored: Vec<u8> = head[32..48].to_vec();
    head[32..48].fill(0);
    if Md5::digest(&head)[..] != stored[..] {
        return Err("wrong header checksum".into());
    }
    if be32(&head, 4) != 1 {
        return Err("wrong version".into());
    }
    let mut uuid = [0u8; 16];
    uuid.copy_from_slice(&head[8..24]);
    let ctime = be64(&head, 24) as i64;
    let boff = be32(&head, 48) as usize;
    let bsize = be32(&head, 52) as usize;
    if boff < FIXED {
        return Err("wrong blob buffer offset".into());
    }
    if boff + bsize > header_size {
        return Err("wrong blob buffer size".into());
    }
    // Blob table: position 0 unused, then {le16 len, bytes}.
    let mut blobs: BTreeMap<u32, &[u8]> = BTreeMap::new();
    let mut p = boff + 1;
    while p + 2 <= boff + bsize {
        let len = head[p] as usize | (head[p + 1] as usize) << 8;
        if p + 2 + len > boff + bsize {
            return Err(format!("blob at {} runs past the buffer", p - boff));
        }
        blobs.insert((p - boff) as u32, &file[p + 2..p + 2 + len]);
        p += 2 + len;
    }
    if p != boff + bsize {
        return Err("trailing bytes in the blob buffer".into());
    }
    let string = |ptr: u32| -> Option<String> {
        let b = blobs.get(&ptr)?;
        let (last, body) = b.split_last()?;
        if *last != 0 {
            return None;
        }
        String::from_utf8(body.to_vec()).ok()
    };
    let mut configs = BTreeMap::new();
    for i in 0..256 {
        let n = be32(&head, 2044 + 4 * i);
        let d = be32(&head, 3068 + 4 * i);
        if n == 0 || d == 0 {
            continue;
        }
        let name = string(n).ok_or("config name pointer is invalid")?;
        let data = blobs.get(&d).ok_or("config data pointer is invalid")?;
        configs.insert(name, data.to_vec());
    }
    let mut sizes: BTreeMap<u8, (String, u64)> = BTreeMap::new();
    for id in 0..256usize {
        let e = 4096 + 32 * id;
        let ptr = be32(&head, e);
        let size = be64(&head, e + 8);
        if id == 0 {
            if ptr != 0 || size != 0 {
                return Err("device id 0 is reserved".into());
            }
            continue;
        }
        if size == 0 {
            continue;
        }
        let name = string(ptr).ok_or(format!("device {id} has no name"))?;
        sizes.insert(id as u8, (name, size));
    }
    if sizes.is_empty() {
        return Err("no devices".into());
    }
    let mut out: BTreeMap<u8, Vec<u8>> = sizes
        .iter()
        .map(|(id, (_, s))| (*id, vec![0u8; *s as usize]))
        .collect();
    let mut seen: BTreeMap<u8, Vec<bool>> = sizes
        .iter()
        .map(|(id, (_, s))| (*id, vec![false; s.div_ceil(65536) as usize]))
        .collect();

    // Extents.
    let mut pos = header_size;
    while pos < file.len() {
        if file.len() - pos < 512 {
            return Err(format!("short extent at {pos}"));
        }
        let mut eh = file[pos..pos + 512].to_vec();
        let sum: Vec<u8> = eh[24..40].to_vec();
        eh[24..40].fill(0);
        if Md5::digest(&eh)[..] != sum[..] {
            return Err(format!("wrong extent checksum at {pos}"));
        }
        if eh[8..24] != uuid {
            return Err(format!("wrong extent uuid at {pos}"));
        }
        if &eh[0..4] != b"VMAE" || eh[4] != 0 || eh[5] != 0 {
            return Err(format!("wrong extent magic at {pos}"));
        }
        let blocks = u16::from_be_bytes([eh[6], eh[7]]) as usize;
        let end = pos + 512 + blocks * 4096;
        if end > file.len() {
            return Err(format!("extent at {pos} runs past the end"));
        }
        let mut data = pos + 512;
        for slot in 0..59 {
            let info = be64(&eh, 40 + 8 * slot);
            let cluster = (info & 0xffff_ffff) as usize;
            let dev = ((info >> 32) & 0xff) as u8;
            let reserved = (info >> 40) & 0xff;
            let mask = (info >> 48) as u16;
            if dev == 0 {
                if info != 0 {
                    return Err("unused slot with bits set".into());
                }
                continue;
            }
            if reserved != 0 {
                return Err("reserved blockinfo byte set".into());
            }
            let (_, size) = sizes.get(&dev).ok_or(format!("unknown device {dev}"))?;
            let bm = seen.get_mut(&dev).unwrap();
            if cluster >= bm.len() {
                return Err(format!("cluster {cluster} past the end of device {dev}"));
            }
            if bm[cluster] {
                return Err(format!("duplicated cluster {cluster} of device {dev}"));
            }
            bm[cluster] = true;
            let disk = out.get_mut(&dev).unwrap();
            for j in 0..16 {
                if mask & (1 << j) == 0 {
                    continue;
                }
                let off = cluster * 65536 + j * 4096;
                if off as u64 >= *size {
                    return Err(format!("block past the end of device {dev}"));
                }
                if data + 4096 > end {
                    return Err("extent has fewer blocks than its masks".into());
                }
                let n = 4096.min(*size as usize - off);
                disk[off..off + n].copy_from_slice(&file[data..data + n]);
                data += 4096;
            }
        }
        if data != end {
            return Err("extent block count does not match its masks".into());
        }
        pos = end;
    }
    for (dev, bm) in &seen {
        if let Some(c) = bm.iter().position(|s| !s) {
            return Err(format!("missing cluster {c} of device {dev}"));
        }
    }
    let devices = sizes
        .into_iter()
        .map(|(id, (name, _))| (id, (name, out.remove(&id).unwrap())))
        .collect();
    Ok(Archive {
        uuid,
        ctime,
        configs,
        devices,
    })
}

fn full(d: &dyn DiskSource) -> Vec<u8> {
    let mut b = vec![0u8; d.size() as usize];
    d.read_at(0, &mut b).unwrap();
    b
}

#[test]
fn two_devices_roundtrip_and_config() {
    let dir = tempfile::tempdir().unwrap();
    // 8 MiB mixed disk (≥ 2 extents of 59 clusters) and a 5 MiB + 3 sectors disk.
    let a = mixed_disk(8 << 20);
    let bsize = (5 << 20) + 1536;
    let mut b = ExtentDisk::new(bsize);
    b.add_bytes(bsize - 1000, noise(1000, 4)).unwrap();
    let conf = ProxmoxVm::default()
        .qemu_server_conf(&[a.size(), b.size()], b"seed")
        .unwrap();
    let opts = VmaOptions {
        seed: b"sha256:1234".to_vec(),
        ctime: 1_700_000_000,
        configs: vec![("qemu-server.conf".into(), conf.clone().into_bytes())],
        ..Default::default()
    };
    let out = dir.path().join("vzdump-qemu-100-2023_11_14-22_13_20.vma");
    let devs = [
        VmaDevice {
            name: "drive-scsi0".into(),
            source: &a,
        },
        VmaDevice {
            name: "drive-scsi1".into(),
            source: &b,
        },
    ];
    let rep = write_vma(&devs, &out, &opts).unwrap();
    let bytes = std::fs::read(&out).unwrap();
    assert_eq!(rep.file_size, bytes.len() as u64);
    let ar = read_vma(&bytes).unwrap();
    assert_eq!(ar.ctime, 1_700_000_000);
    assert_ne!(ar.uuid, [0u8; 16]);
    assert_eq!(ar.configs["qemu-server.conf"], conf.as_bytes());
    assert_eq!(ar.devices[&1].0, "drive-scsi0");
    assert_eq!(ar.devices[&2].0, "drive-scsi1");
    assert!(ar.devices[&1].1 == full(&a), "device 1 differs");
    assert!(ar.devices[&2].1 == full(&b), "device 2 differs");
    // 128 + 81 clusters, 59 per extent.
    assert_eq!(rep.extents, (128u64 + 81).div_ceil(59));
    // Reproducible.
    let out2 = dir.path().join("again.vma");
    write_vma(&devs, &out2, &opts).unwrap();
    assert!(
        bytes == std::fs::read(&out2).unwrap(),
        "output is not reproducible"
    );
}

#[test]
fn extracted_disk_equals_raw_export() {
    require("qemu-img", "qemu-utils");
    let dir = tempfile::tempdir().unwrap();
    let disk = mixed_disk(12 << 20);
    let raw = dir.path().join("ref.raw");
    write_raw(&disk, &raw).unwrap();
    let out = dir.path().join("x.vma");
    let opts = VmaOptions {
        seed: b"s".to_vec(),
        ctime: 0,
        configs: vec![("qemu-server.conf".into(), b"memory: 512\n".to_vec())],
        ..Default::default()
    };
    write_vma(
        &[VmaDevice {
            name: "drive-scsi0".into(),
            source: &disk,
        }],
        &out,
        &opts,
    )
    .unwrap();
    let ar = read_vma(&std::fs::read(&out).unwrap()).unwrap();
    let extracted = dir.path().join("extracted.raw");
    std::fs::write(&extracted, &ar.devices[&1].1).unwrap();
    assert_same("raw", &raw, "raw", &extracted);
}

#[test]
fn reader_rejects_tampering() {
    let disk = mixed_disk(6 << 20);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("t.vma");
    let opts = VmaOptions {
        seed: b"t".to_vec(),
        ctime: 0,
        configs: vec![("qemu-server.conf".into(), b"cores: 1\n".to_vec())],
        ..Default::default()
    };
    write_vma(
        &[VmaDevice {
            name: "drive-scsi0".into(),
            source: &disk,
        }],
        &out,
        &opts,
    )
    .unwrap();
    let good = std::fs::read(&out).unwrap();
    read_vma(&good).unwrap();
    let hs = be32(&good, 56) as usize;

    let mut bad = good.clone();
    bad[4096 + 32 + 15] ^= 1; // device size
    assert!(read_vma(&bad).unwrap_err().contains("header checksum"));

    let mut bad = good.clone();
    bad[hs + 40] ^= 0x80; // first blockinfo of the first extent
    assert!(read_vma(&bad).unwrap_err().contains("extent checksum"));

    // Drop the last extent: its clusters go missing.
    let mut pos = hs;
    let mut last = hs;
    while pos < good.len() {
        last = pos;
        pos += 512 + u16::from_be_bytes([good[pos + 6], good[pos + 7]]) as usize * 4096;
    }
    let err = read_vma(&good[..last]).unwrap_err();
    assert!(err.contains("missing cluster"), "{err}");

    // The same extent twice: duplicated clusters.
    let mut dup = good.clone();
    dup.extend_from_slice(&good[last..]);
    assert!(read_vma(&dup).unwrap_err().contains("duplicated cluster"));
}

#[test]
fn writer_rejects_bad_devices() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("bad.vma");
    let odd = ExtentDisk::new(1000);
    let opts = VmaOptions::default();
    assert!(write_vma(
        &[VmaDevice {
            name: "drive-scsi0".into(),
            source: &odd
        }],
        &out,
        &opts
    )
    .is_err());
    let ok = ExtentDisk::new(1 << 20);
    assert!(write_vma(
        &[VmaDevice {
            name: "vmstate".into(),
            source: &ok
        }],
        &out,
        &opts
    )
    .is_err());
    assert!(write_vma(&[], &out, &opts).is_err());
    assert!(!out.exists());
}
