//! Proxmox VMA writer (the `vzdump` backup format, restorable with `qmrestore`).
//!
//! Why it exists: Proxmox VE imports VMs from VMA archives, and the only writer is the `vma`
//! tool from Proxmox's own patched qemu, which is not installable here (formats.md §1.4).
//!
//! Byte-level facts relied on (formats.md §1.4; written to match the C reader, which is
//! stricter than `vma_spec.txt`; integers big-endian except blob lengths):
//! - header (`VmaHeader`, 12288 bytes, then the blob buffer): magic `VMA\0`, version 1,
//!   uuid, ctime, MD5 of the first `header_size` bytes with the MD5 field zeroed,
//!   blob_buffer_offset 12288, blob_buffer_size = bytes used, header_size = 12288 + blob
//!   buffer rounded up to 512; config name/data pointers at 2044/3068 (256 each); device
//!   table at 4096, 32 bytes per device `{devname_ptr, reserved, size u64, reserved[16]}`,
//!   device id = index, id 0 reserved;
//! - blob buffer: position 0 unused, each blob a **little-endian** u16 length then the
//!   bytes; strings end with their NUL; the `qemu-server.conf` config (VM config plus
//!   `#qmdump#map:<bus>:<devname>:<storage>:<format>:` lines) is a blob;
//! - data: extents of a 512-byte header (`VMAE`, reserved u16 0, block_count u16, uuid,
//!   MD5 of the header with the field zeroed, 59 blockinfo u64 = `mask << 48 | dev_id << 32 |
//!   cluster`) followed by the present 4 KiB blocks; **every cluster of every device appears
//!   exactly once** (all-zero clusters with mask 0, no data), blocks past the device end are
//!   masked out, the file ends after the last extent.
//!
//! The writer keeps the archive uncompressed; `vzdump` archives are compressed as a whole
//! (`.vma.zst`), which callers can do on the output stream.

use std::io::{BufWriter, Write};
use std::path::Path;

use md5::{Digest, Md5};

use crate::disk::{allocated_cluster_runs, is_zero, read_clusters, DiskSource};
use crate::error::{FormatError, Result};
use crate::ids::{derive_mac, derive_uuid};
use chasi_oci::output::Output;

const HEADER_SIZE: usize = 12288;
const BLOCK: usize = 4096;
const CLUSTER_BITS: u32 = 16;
const CLUSTER: usize = 1 << CLUSTER_BITS;
const SLOTS: usize = 59;
const EXTENT_HEADER: usize = 512;
const MAX_CONFIGS: usize = 256;
const MAX_DEVICES: usize = 254;

/// One device (disk) of the archive.
pub struct VmaDevice<'a> {
    /// Device name as vzdump writes it, e.g. `drive-scsi0`.
    pub name: String,
    /// The disk content.
    pub source: &'a dyn DiskSource,
}

/// Options of the VMA writer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmaOptions {
    /// Seed for the archive UUID (normally the image digest).
    pub seed: Vec<u8>,
    /// Creation time written in the header (seconds since the epoch; clamp it to
    /// `SOURCE_DATE_EPOCH` for reproducible output).
    pub ctime: i64,
    /// Config blobs `(name, data)`, e.g. `("qemu-server.conf", ...)`; at most 256.
    pub configs: Vec<(String, Vec<u8>)>,
    /// Make the output durable (`fsync`) before renaming it into place (default true).
    pub sync: bool,
}

impl Default for VmaOptions {
    fn default() -> Self {
        VmaOptions {
            seed: Vec::new(),
            ctime: 0,
            configs: Vec::new(),
            sync: true,
        }
    }
}

/// What was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmaReport {
    /// Bytes written.
    pub file_size: u64,
    /// Extents written.
    pub extents: u64,
    /// 4 KiB blocks stored (the others are zero).
    pub blocks: u64,
}

/// The VM described by a generated `qemu-server.conf`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxmoxVm {
    /// VM name (`name:`; letters, digits, `-` and `.`).
    pub name: String,
    /// vCPU cores.
    pub cores: u32,
    /// Memory in MiB.
    pub memory_mib: u64,
    /// Boot with OVMF (UEFI) instead of SeaBIOS.
    pub uefi: bool,
    /// Storage id written in the `#qmdump#map` lines (the restore target can override it).
    pub storage: String,
}

impl Default for ProxmoxVm {
    fn default() -> Self {
        ProxmoxVm {
            name: "chasi".into(),
            cores: 2,
            memory_mib: 2048,
            uefi: true,
            storage: "local-lvm".into(),
        }
    }
}

impl ProxmoxVm {
    /// The `qemu-server.conf` text for disks attached as `scsi0`, `scsi1`, ... whose
    /// devices are named `drive-scsiN` and have the given sizes. The NIC's MAC is derived
    /// from `seed`.
    pub fn qemu_server_conf(&self, disk_sizes: &[u64], seed: &[u8]) -> Result<String> {
        let ok_name = !self.name.is_empty()
            && self.name.len() <= 63
            && self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
        if !ok_name {
            return Err(FormatError::option(
                "vma",
                format!("vm name {:?} must be 1-63 of [A-Za-z0-9.-]", self.name),
            ));
        }
        if self.cores == 0 || self.memory_mib < 16 {
            return Err(FormatError::option(
                "vma",
                "cores must be ≥1 and memory ≥16 MiB",
            ));
        }
        if self.storage.is_empty() || self.storage.contains([':', '\n', ' ']) {
            return Err(FormatError::option(
                "vma",
                format!("storage id {:?} is not valid", self.storage),
            ));
        }
        let mac = derive_mac(seed, "vma-net0");
        let mac = mac
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect::<Vec<_>>()
            .join(":");
        let mut s = String::new();
        if self.uefi {
            s.push_str("bios: ovmf\n");
        }
        s.push_str("boot: order=scsi0\n");
        s.push_str(&format!("cores: {}\n", self.cores));
        if self.uefi {
            s.push_str("machine: q35\n");
        }
        s.push_str(&format!("memory: {}\n", self.memory_mib));
        s.push_str(&format!("name: {}\n", self.name));
        s.push_str(&format!("net0: virtio={mac},bridge=vmbr0\n"));
        s.push_str("ostype: l26\n");
        for (i, size) in disk_sizes.iter().enumerate() {
            // Informational (a restore takes the size from the device table): whole MiB
            // when exact, else KiB rounded up.
            let sz = if size % (1 << 20) == 0 {
                format!("{}M", size >> 20)
            } else {
                format!("{}K", size.div_ceil(1024))
            };
            s.push_str(&format!(
                "scsi{i}: {}:vm-disk-{i},size={sz}\n",
                self.storage
            ));
        }
        s.push_str("scsihw: virtio-scsi-single\n");
        s.push_str("serial0: socket\n");
        for i in 0..disk_sizes.len() {
            s.push_str(&format!(
                "#qmdump#map:scsi{i}:drive-scsi{i}:{}:raw:\n",
                self.storage
            ));
        }
        Ok(s)
    }
}

/// `vzdump-qemu-<vmid>-<YYYY_MM_DD-HH_MM_SS>.vma`, the name Proxmox storage lists as a backup.
pub fn vzdump_file_name(vmid: u32, epoch: i64) -> Result<String> {
    if !(100..=999_999_999).contains(&vmid) {
        return Err(FormatError::option(
            "vma",
            format!("vmid {vmid} is outside 100..=999999999"),
        ));
    }
    let t = chasi_oci::time::utc(epoch);
    Ok(format!(
        "vzdump-qemu-{vmid}-{:04}_{:02}_{:02}-{:02}_{:02}_{:02}.vma",
        t.year, t.month, t.day, t.hour, t.minute, t.second
    ))
}

struct Blobs {
    buf: Vec<u8>,
}

impl Blobs {
    fn add(&mut self, data: &[u8]) -> Result<u32> {
        if data.len() > u16::MAX as usize {
            return Err(FormatError::limit(
                "vma",
                format!("header blob of {} bytes exceeds 65535", data.len()),
            ));
        }
        let at = self.buf.len() as u32;
        self.buf
            .extend_from_slice(&(data.len() as u16).to_le_bytes());
        self.buf.extend_from_slice(data);
        Ok(at)
    }
    fn add_str(&mut self, s: &str) -> Result<u32> {
        let mut v = s.as_bytes().to_vec();
        v.push(0);
        self.add(&v)
    }
}

fn header(devices: &[VmaDevice<'_>], opts: &VmaOptions, uuid: &[u8; 16]) -> Result<Vec<u8>> {
    if devices.is_empty() || devices.len() > MAX_DEVICES {
        return Err(FormatError::option(
            "vma",
            format!("{} devices given, 1..=254 allowed", devices.len()),
        ));
    }
    if opts.configs.len() > MAX_CONFIGS {
        return Err(FormatError::option("vma", "more than 256 config blobs"));
    }
    let mut blobs = Blobs { buf: vec![0] };
    let mut h = vec![0u8; HEADER_SIZE];
    h[0..4].copy_from_slice(b"VMA\0");
    h[4..8].copy_from_slice(&1u32.to_be_bytes());
    h[8..24].copy_from_slice(uuid);
    h[24..32].copy_from_slice(&opts.ctime.to_be_bytes());
    for (i, (name, data)) in opts.configs.iter().enumerate() {
        if name.is_empty() || name.contains('\0') {
            return Err(FormatError::option(
                "vma",
                format!("config name {name:?} is not valid"),
            ));
        }
        let n = blobs.add_str(name)?;
        let d = blobs.add(data)?;
        h[2044 + 4 * i..2048 + 4 * i].copy_from_slice(&n.to_be_bytes());
        h[3068 + 4 * i..3072 + 4 * i].copy_from_slice(&d.to_be_bytes());
    }
    for (i, dev) in devices.iter().enumerate() {
        let id = i + 1;
        let size = dev.source.size();
        if dev.name.is_empty() || dev.name.contains('\0') || dev.name == "vmstate" {
            return Err(FormatError::option(
                "vma",
                format!("device name {:?} is not valid", dev.name),
            ));
        }
        if size == 0 || size % 512 != 0 {
            return Err(FormatError::option(
                "vma",
                format!(
                    "device {} has size {size}, not a positive multiple of 512",
                    dev.name
                ),
            ));
        }
        if size.div_ceil(CLUSTER as u64) > u32::MAX as u64 {
            return Err(FormatError::limit(
                "vma",
                format!("device {} is larger than 256 TiB", dev.name),
            ));
        }
        let p = blobs.add_str(&dev.name)?;
        let e = &mut h[4096 + 32 * id..4096 + 32 * (id + 1)];
        e[0..4].copy_from_slice(&p.to_be_bytes());
        e[8..16].copy_from_slice(&size.to_be_bytes());
    }
    let used = blobs.buf.len();
    let header_size = HEADER_SIZE + used.div_ceil(512) * 512;
    h[48..52].copy_from_slice(&(HEADER_SIZE as u32).to_be_bytes());
    h[52..56].copy_from_slice(&(used as u32).to_be_bytes());
    h[56..60].copy_from_slice(&(header_size as u32).to_be_bytes());
    h.extend_from_slice(&blobs.buf);
    h.resize(header_size, 0);
    let md5 = Md5::digest(&h);
    h[32..48].copy_from_slice(&md5);
    Ok(h)
}

/// Writes the devices as a VMA archive at `out` (by the rules of [`chasi_oci::output`]; it
/// streams, so a pipe or standard output will do).
pub fn write_vma(devices: &[VmaDevice<'_>], out: &Path, opts: &VmaOptions) -> Result<VmaReport> {
    let mut o = Output::create(out)?;
    o.set_sync(opts.sync);
    let mut w = o.writer();
    let report = write_vma_stream(devices, &mut w, opts, out)?;
    w.finish().map_err(FormatError::io("sync", out))?;
    o.commit()?;
    Ok(report)
}

/// Writes the VMA archive to any writer (no seeking); `label` names the target in errors.
pub fn write_vma_stream<W: Write>(
    devices: &[VmaDevice<'_>],
    out: W,
    opts: &VmaOptions,
    label: &Path,
) -> Result<VmaReport> {
    let uuid = *derive_uuid(&opts.seed, "vma-archive").as_bytes();
    let head = header(devices, opts, &uuid)?;
    let mut w = BufWriter::with_capacity(4 << 20, out);
    let put =
        |w: &mut BufWriter<W>, b: &[u8]| w.write_all(b).map_err(FormatError::io("write", label));
    put(&mut w, &head)?;
    let mut ext = Extent::new(uuid);
    let mut report = VmaReport {
        file_size: head.len() as u64,
        extents: 0,
        blocks: 0,
    };
    let mut buf = Vec::new();
    for (i, dev) in devices.iter().enumerate() {
        let dev_id = (i + 1) as u64;
        let size = dev.source.size();
        let clusters = size.div_ceil(CLUSTER as u64);
        let runs = allocated_cluster_runs(dev.source, CLUSTER_BITS)?;
        let mut next_run = 0usize;
        let mut c = 0u64;
        while c < clusters {
            while next_run < runs.len() && runs[next_run].end <= c {
                next_run += 1;
            }
            let allocated = runs.get(next_run).is_some_and(|r| r.contains(&c));
            let mut mask = 0u16;
            let mut data: Vec<&[u8]> = Vec::new();
            if allocated {
                read_clusters(dev.source, CLUSTER_BITS, &(c..c + 1), &mut buf)?;
                for (j, b) in buf.chunks(BLOCK).enumerate() {
                    let start = (c << CLUSTER_BITS) + (j * BLOCK) as u64;
                    if start < size && !is_zero(b) {
                        mask |= 1 << j;
                        data.push(b);
                    }
                }
            }
            ext.push(c as u32, dev_id, mask, &data);
            report.blocks += data.len() as u64;
            if ext.slots == SLOTS {
                report.file_size += ext.flush(&mut w, label)?;
                report.extents += 1;
            }
            c += 1;
        }
    }
    if ext.slots > 0 {
        report.file_size += ext.flush(&mut w, label)?;
        report.extents += 1;
    }
    w.flush().map_err(FormatError::io("write", label))?;
    Ok(report)
}

struct Extent {
    uuid: [u8; 16],
    info: [u64; SLOTS],
    slots: usize,
    data: Vec<u8>,
}

impl Extent {
    fn new(uuid: [u8; 16]) -> Self {
        Extent {
            uuid,
            info: [0; SLOTS],
            slots: 0,
            data: Vec::with_capacity(SLOTS * CLUSTER),
        }
    }

    fn push(&mut self, cluster: u32, dev_id: u64, mask: u16, blocks: &[&[u8]]) {
        self.info[self.slots] = (u64::from(mask) << 48) | (dev_id << 32) | u64::from(cluster);
        self.slots += 1;
        for b in blocks {
            self.data.extend_from_slice(b);
        }
    }

    fn flush<W: Write>(&mut self, w: &mut W, label: &Path) -> Result<u64> {
        let mut h = [0u8; EXTENT_HEADER];
        h[0..4].copy_from_slice(b"VMAE");
        let blocks = (self.data.len() / BLOCK) as u16;
        h[6..8].copy_from_slice(&blocks.to_be_bytes());
        h[8..24].copy_from_slice(&self.uuid);
        for (i, bi) in self.info.iter().enumerate() {
            h[40 + 8 * i..48 + 8 * i].copy_from_slice(&bi.to_be_bytes());
        }
        let md5 = Md5::digest(h);
        h[24..40].copy_from_slice(&md5);
        w.write_all(&h).map_err(FormatError::io("write", label))?;
        w.write_all(&self.data)
            .map_err(FormatError::io("write", label))?;
        let n = (EXTENT_HEADER + self.data.len()) as u64;
        self.info = [0; SLOTS];
        self.slots = 0;
        self.data.clear();
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vzdump_names() {
        assert_eq!(
            vzdump_file_name(100, 0).unwrap(),
            "vzdump-qemu-100-1970_01_01-00_00_00.vma"
        );
        assert_eq!(
            vzdump_file_name(4242, 1_700_000_000).unwrap(),
            "vzdump-qemu-4242-2023_11_14-22_13_20.vma"
        );
        assert!(vzdump_file_name(99, 0).is_err());
    }

    #[test]
    fn conf_has_map_lines() {
        let c = ProxmoxVm::default()
            .qemu_server_conf(&[64 << 20], b"seed")
            .unwrap();
        assert!(
            c.contains("#qmdump#map:scsi0:drive-scsi0:local-lvm:raw:\n"),
            "{c}"
        );
        assert!(c.contains("scsi0: local-lvm:vm-disk-0,size=64M\n"), "{c}");
        assert!(c.contains("bios: ovmf\n"));
        let bad = ProxmoxVm {
            name: "a b".into(),
            ..Default::default()
        };
        assert!(bad.qemu_server_conf(&[1 << 20], b"s").is_err());
    }
}
