//! GUID Partition Table layout and bytes (UEFI spec, chapter 5 "GUID Partition Table").
//!
//! Why it exists: every disk export (`raw`, `qcow2`, `vmdk`, `ova`, `vma`) is a GPT disk with
//! an ESP and/or a root partition (formats.md §0 "Rootless GPT disk", §1.6). The well-known
//! crates (`gpt`, `gptman`) edit a device or file in place; here the table is computed as
//! two small buffers — sectors 0‥33 (protective MBR, primary header, entry array) and the
//! last 33 sectors (backup entry array, backup header) — that are placed into an
//! [`ExtentDisk`] around the partition contents, so nothing is ever written twice.
//!
//! Byte-level facts used: 512-byte sectors; protective MBR with one type-0xEE entry from
//! LBA 1 (size clamped to 0xFFFFFFFF) and the 0x55AA signature; header "EFI PART",
//! revision 1.0, 92 bytes, CRC32 of the header with its CRC field zeroed and CRC32 of the
//! 128 × 128-byte entry array; GUIDs stored mixed-endian; backup header in the last LBA with
//! `my_lba`/`alternate_lba` swapped and the entry array just before it. Disk and partition
//! GUIDs are derived from a seed ([`crate::ids`]) so layouts are reproducible. Partitions
//! are aligned to 1 MiB. Checked with `sfdisk --dump` and `sgdisk -v` in the tests.

use std::ops::Range;
use std::path::Path;

use uuid::Uuid;

use crate::disk::ExtentDisk;
use crate::error::{FormatError, Result};
use crate::ids::derive_uuid;

/// Sector size of the disks we write.
pub const SECTOR: u64 = 512;
const ENTRIES: u64 = 128;
const ENTRY_SIZE: u64 = 128;
/// Sectors taken by the entry array (128 × 128 bytes).
const ARRAY_SECTORS: u64 = ENTRIES * ENTRY_SIZE / SECTOR;
/// Bytes of boot code before the MBR's disk signature and partition table.
pub const MBR_CODE: usize = 440;
/// Partition alignment (1 MiB).
pub const ALIGN: u64 = 1 << 20;

/// EFI System Partition type GUID.
pub const ESP_TYPE: Uuid = Uuid::from_u128(0xC12A7328_F81F_11D2_BA4B_00A0C93EC93B);
/// Root partition (x86-64) type GUID from the Discoverable Partitions Specification.
pub const ROOT_X86_64_TYPE: Uuid = Uuid::from_u128(0x4F68BCE3_E8CD_4DB1_96E7_FBCAF984B709);
/// Root partition (aarch64) type GUID from the Discoverable Partitions Specification.
pub const ROOT_AARCH64_TYPE: Uuid = Uuid::from_u128(0xB921B045_1DF0_41C3_AF44_4C6F280D3FAE);
/// BIOS boot partition type GUID (GRUB's core image on a GPT disk).
pub const BIOS_BOOT_TYPE: Uuid = Uuid::from_u128(0x21686148_6449_6E6F_744E_656564454649);
/// Generic Linux filesystem data type GUID.
pub const LINUX_DATA_TYPE: Uuid = Uuid::from_u128(0x0FC63DAF_8483_4772_8E79_3D69D8477DE4);

/// A partition to lay out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionSpec {
    /// GPT partition name (UTF-16, at most 36 code units).
    pub name: String,
    /// Partition type GUID (e.g. [`ESP_TYPE`], [`ROOT_X86_64_TYPE`]).
    pub type_guid: Uuid,
    /// Size in bytes (rounded up to 1 MiB); `None` takes the rest of the disk (last only).
    pub size: Option<u64>,
}

/// A laid-out partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    /// GPT partition name.
    pub name: String,
    /// Partition type GUID.
    pub type_guid: Uuid,
    /// Unique partition GUID (derived from the seed).
    pub guid: Uuid,
    /// First LBA.
    pub first_lba: u64,
    /// Last LBA (inclusive).
    pub last_lba: u64,
}

impl Partition {
    /// Byte range of the partition on the disk.
    pub fn byte_range(&self) -> Range<u64> {
        self.first_lba * SECTOR..(self.last_lba + 1) * SECTOR
    }
}

/// A complete GPT layout for a disk of a given size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GptLayout {
    /// Disk size in bytes (a multiple of 512).
    pub disk_size: u64,
    /// Disk GUID.
    pub disk_guid: Uuid,
    /// Partitions in table order.
    pub partitions: Vec<Partition>,
    /// Boot code for the first 440 bytes of the protective MBR (BIOS boot: GRUB's `boot.img`);
    /// `None` leaves them zero.
    pub boot_code: Option<Vec<u8>>,
}

fn round_up(v: u64, a: u64) -> Option<u64> {
    v.checked_add(a - 1).map(|x| x / a * a)
}

/// The unique GUID of the partition at `index` (from 0) of a layout seeded by `seed`: known before
/// the layout is (the disk's size does not enter it), so a file system can name its partitions.
pub fn partition_guid(seed: &[u8], index: usize) -> Uuid {
    derive_uuid(seed, &format!("gpt-partition-{}", index + 1))
}

impl GptLayout {
    /// Smallest disk size that holds `parts` with fixed sizes (plus the GPT and alignment),
    /// rounded up to 1 MiB. Specs with `size: None` count as 1 MiB.
    pub fn required_size(parts: &[PartitionSpec]) -> Result<u64> {
        let mut total = ALIGN; // first partition starts at 1 MiB
        for p in parts {
            let s = round_up(p.size.unwrap_or(ALIGN).max(1), ALIGN)
                .ok_or_else(|| FormatError::option("gpt", "partition size overflows"))?;
            total = total
                .checked_add(s)
                .ok_or_else(|| FormatError::option("gpt", "disk size overflows"))?;
        }
        // Backup array + header, rounded to keep the disk size 1 MiB aligned.
        total
            .checked_add(ALIGN)
            .ok_or_else(|| FormatError::option("gpt", "disk size overflows"))
    }

    /// Lays out `parts` on a `disk_size`-byte disk with GUIDs derived from `seed`.
    pub fn new(disk_size: u64, seed: &[u8], parts: &[PartitionSpec]) -> Result<Self> {
        if !disk_size.is_multiple_of(SECTOR) {
            return Err(FormatError::option(
                "gpt",
                format!("disk size {disk_size} is not a multiple of {SECTOR} bytes"),
            ));
        }
        if parts.len() as u64 > ENTRIES {
            return Err(FormatError::option("gpt", "more than 128 partitions"));
        }
        let sectors = disk_size / SECTOR;
        let min = 2 * ARRAY_SECTORS + 3;
        if sectors < min + 1 {
            return Err(FormatError::option(
                "gpt",
                format!("disk size {disk_size} is too small for a GPT"),
            ));
        }
        let last_usable = sectors - ARRAY_SECTORS - 2;
        let mut next = ALIGN / SECTOR;
        let mut partitions = Vec::with_capacity(parts.len());
        for (i, p) in parts.iter().enumerate() {
            if p.name.encode_utf16().count() > 36 {
                return Err(FormatError::option(
                    "gpt",
                    format!("partition name {:?} is longer than 36 UTF-16 units", p.name),
                ));
            }
            let first = next;
            let last = match p.size {
                Some(s) => {
                    let s = round_up(s.max(1), ALIGN)
                        .ok_or_else(|| FormatError::option("gpt", "partition size overflows"))?;
                    first
                        .checked_add(s / SECTOR - 1)
                        .ok_or_else(|| FormatError::option("gpt", "partition size overflows"))?
                }
                None => {
                    if i + 1 != parts.len() {
                        return Err(FormatError::option(
                            "gpt",
                            "only the last partition may take the rest of the disk",
                        ));
                    }
                    last_usable
                }
            };
            if last > last_usable || first > last {
                return Err(FormatError::option(
                    "gpt",
                    format!(
                        "partition {:?} does not fit: needs up to LBA {last}, last usable LBA is {last_usable}",
                        p.name
                    ),
                ));
            }
            partitions.push(Partition {
                name: p.name.clone(),
                type_guid: p.type_guid,
                guid: partition_guid(seed, i),
                first_lba: first,
                last_lba: last,
            });
            next = round_up(last + 1, ALIGN / SECTOR).unwrap_or(u64::MAX);
        }
        Ok(GptLayout {
            disk_size,
            disk_guid: derive_uuid(seed, "gpt-disk"),
            partitions,
            boot_code: None,
        })
    }

    fn sectors(&self) -> u64 {
        self.disk_size / SECTOR
    }

    fn entry_array(&self) -> Vec<u8> {
        let mut a = vec![0u8; (ENTRIES * ENTRY_SIZE) as usize];
        for (i, p) in self.partitions.iter().enumerate() {
            let e = &mut a[i * ENTRY_SIZE as usize..(i + 1) * ENTRY_SIZE as usize];
            e[0..16].copy_from_slice(&p.type_guid.to_bytes_le());
            e[16..32].copy_from_slice(&p.guid.to_bytes_le());
            e[32..40].copy_from_slice(&p.first_lba.to_le_bytes());
            e[40..48].copy_from_slice(&p.last_lba.to_le_bytes());
            // attributes (48..56) stay 0
            for (j, u) in p.name.encode_utf16().enumerate() {
                e[56 + 2 * j..58 + 2 * j].copy_from_slice(&u.to_le_bytes());
            }
        }
        a
    }

    fn header(&self, my_lba: u64, alt_lba: u64, array_lba: u64, array_crc: u32) -> Vec<u8> {
        let mut h = vec![0u8; SECTOR as usize];
        h[0..8].copy_from_slice(b"EFI PART");
        h[8..12].copy_from_slice(&0x0001_0000u32.to_le_bytes());
        h[12..16].copy_from_slice(&92u32.to_le_bytes());
        h[24..32].copy_from_slice(&my_lba.to_le_bytes());
        h[32..40].copy_from_slice(&alt_lba.to_le_bytes());
        h[40..48].copy_from_slice(&(2 + ARRAY_SECTORS).to_le_bytes());
        h[48..56].copy_from_slice(&(self.sectors() - ARRAY_SECTORS - 2).to_le_bytes());
        h[56..72].copy_from_slice(&self.disk_guid.to_bytes_le());
        h[72..80].copy_from_slice(&array_lba.to_le_bytes());
        h[80..84].copy_from_slice(&(ENTRIES as u32).to_le_bytes());
        h[84..88].copy_from_slice(&(ENTRY_SIZE as u32).to_le_bytes());
        h[88..92].copy_from_slice(&array_crc.to_le_bytes());
        let crc = crc32fast::hash(&h[..92]);
        h[16..20].copy_from_slice(&crc.to_le_bytes());
        h
    }

    /// Sectors 0‥33: protective MBR, primary header, entry array.
    pub fn primary_bytes(&self) -> Vec<u8> {
        let sectors = self.sectors();
        let mut out = vec![0u8; ((2 + ARRAY_SECTORS) * SECTOR) as usize];
        if let Some(code) = &self.boot_code {
            let n = code.len().min(MBR_CODE);
            out[..n].copy_from_slice(&code[..n]);
        }
        // Protective MBR: one entry of type 0xEE covering the disk from LBA 1.
        let pe = &mut out[446..462];
        pe[0] = 0x00;
        pe[1..4].copy_from_slice(&[0x00, 0x02, 0x00]);
        pe[4] = 0xEE;
        pe[5..8].copy_from_slice(&[0xFF, 0xFF, 0xFF]);
        pe[8..12].copy_from_slice(&1u32.to_le_bytes());
        let len = (sectors - 1).min(0xFFFF_FFFF) as u32;
        pe[12..16].copy_from_slice(&len.to_le_bytes());
        out[510] = 0x55;
        out[511] = 0xAA;
        let array = self.entry_array();
        let crc = crc32fast::hash(&array);
        let h = self.header(1, sectors - 1, 2, crc);
        out[512..1024].copy_from_slice(&h);
        out[1024..].copy_from_slice(&array);
        out
    }

    /// Disk offset of [`GptLayout::backup_bytes`].
    pub fn backup_offset(&self) -> u64 {
        (self.sectors() - ARRAY_SECTORS - 1) * SECTOR
    }

    /// The last 33 sectors: backup entry array, then the backup header.
    pub fn backup_bytes(&self) -> Vec<u8> {
        let sectors = self.sectors();
        let array = self.entry_array();
        let crc = crc32fast::hash(&array);
        let array_lba = sectors - ARRAY_SECTORS - 1;
        let h = self.header(sectors - 1, 1, array_lba, crc);
        let mut out = array;
        out.extend_from_slice(&h);
        out
    }

    /// Reads the table of a disk this module wrote from its first sectors (`primary`: at least
    /// [`GptLayout::primary_len`] bytes), checking the signature and both CRCs, for a disk of
    /// `disk_size` bytes: the same partitions re-homed on a disk at least as large as the one it was
    /// made for (the backup header belongs at the end of the disk it is written to).
    pub fn read(primary: &[u8], disk_size: u64) -> Result<GptLayout> {
        let bad = |why: String| FormatError::option("gpt", why);
        if primary.len() < Self::primary_len() {
            return Err(bad(format!(
                "{} bytes hold no complete primary table",
                primary.len()
            )));
        }
        let h = &primary[512..1024];
        if &h[0..8] != b"EFI PART" {
            return Err(bad("no GPT header at LBA 1".into()));
        }
        let mut zeroed = h[..92].to_vec();
        zeroed[16..20].fill(0);
        let want = u32::from_le_bytes([h[16], h[17], h[18], h[19]]);
        if crc32fast::hash(&zeroed) != want {
            return Err(bad("the primary header's CRC does not match".into()));
        }
        let u64_at = |o: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&h[o..o + 8]);
            u64::from_le_bytes(b)
        };
        let u32_at = |o: usize| u32::from_le_bytes([h[o], h[o + 1], h[o + 2], h[o + 3]]);
        if u64_at(72) != 2 || u32_at(80) as u64 != ENTRIES || u32_at(84) as u64 != ENTRY_SIZE {
            return Err(bad("an entry array this writer does not make".into()));
        }
        let array = &primary[1024..Self::primary_len()];
        if crc32fast::hash(array) != u32_at(88) {
            return Err(bad("the entry array's CRC does not match".into()));
        }
        let guid = |b: &[u8]| {
            let mut a = [0u8; 16];
            a.copy_from_slice(b);
            Uuid::from_bytes_le(a)
        };
        let mut partitions = Vec::new();
        for e in array.chunks(ENTRY_SIZE as usize) {
            let type_guid = guid(&e[0..16]);
            if type_guid.is_nil() {
                continue;
            }
            let lba = |o: usize| {
                let mut b = [0u8; 8];
                b.copy_from_slice(&e[o..o + 8]);
                u64::from_le_bytes(b)
            };
            let units: Vec<u16> = e[56..128]
                .chunks(2)
                .map(|c| u16::from_le_bytes([c[0], c[1]]))
                .take_while(|&u| u != 0)
                .collect();
            partitions.push(Partition {
                name: String::from_utf16_lossy(&units),
                type_guid,
                guid: guid(&e[16..32]),
                first_lba: lba(32),
                last_lba: lba(40),
            });
        }
        let layout = GptLayout {
            disk_size,
            disk_guid: guid(&h[56..72]),
            partitions,
            boot_code: Some(primary[..MBR_CODE].to_vec()).filter(|c| c.iter().any(|&b| b != 0)),
        };
        let last_usable = disk_size / SECTOR - ARRAY_SECTORS - 2;
        if let Some(p) = layout.partitions.iter().find(|p| p.last_lba > last_usable) {
            return Err(bad(format!(
                "partition {} ends at LBA {}, beyond the {disk_size}-byte disk",
                p.name, p.last_lba
            )));
        }
        Ok(layout)
    }

    /// Bytes of [`GptLayout::primary_bytes`]: protective MBR, header, entry array.
    pub fn primary_len() -> usize {
        ((2 + ARRAY_SECTORS) * SECTOR) as usize
    }

    /// A disk with this table and nothing in the partitions yet.
    pub fn empty_disk(&self) -> Result<ExtentDisk> {
        let mut d = ExtentDisk::new(self.disk_size);
        d.add_bytes(0, self.primary_bytes())?;
        d.add_bytes(self.backup_offset(), self.backup_bytes())?;
        Ok(d)
    }

    /// A disk with this table and, for each `(partition index, image file)`, the file placed
    /// at the start of that partition. Fails if a file is larger than its partition.
    pub fn assemble(&self, contents: &[(usize, &Path)]) -> Result<ExtentDisk> {
        let mut d = self.empty_disk()?;
        for (idx, path) in contents {
            let p = self.partitions.get(*idx).ok_or_else(|| {
                FormatError::option("gpt", format!("no partition with index {idx}"))
            })?;
            let r = p.byte_range();
            let len = std::fs::metadata(path)
                .map_err(FormatError::io("stat", *path))?
                .len();
            if len > r.end - r.start {
                return Err(FormatError::option(
                    "gpt",
                    format!(
                        "{} ({len} bytes) does not fit partition {:?} ({} bytes)",
                        path.display(),
                        p.name,
                        r.end - r.start
                    ),
                ));
            }
            d.add_file_region(r.start, path, 0, len)?;
        }
        Ok(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disk::DiskSource;

    fn layout() -> GptLayout {
        GptLayout::new(
            64 << 20,
            b"seed",
            &[
                PartitionSpec {
                    name: "ESP".into(),
                    type_guid: ESP_TYPE,
                    size: Some(8 << 20),
                },
                PartitionSpec {
                    name: "root".into(),
                    type_guid: ROOT_X86_64_TYPE,
                    size: None,
                },
            ],
        )
        .unwrap()
    }

    #[test]
    fn header_crcs_and_positions() {
        let l = layout();
        let p = l.primary_bytes();
        assert_eq!(&p[512..520], b"EFI PART");
        let mut h = p[512..604].to_vec();
        let crc = u32::from_le_bytes(h[16..20].try_into().unwrap());
        h[16..20].fill(0);
        assert_eq!(crc32fast::hash(&h), crc);
        let b = l.backup_bytes();
        assert_eq!(b.len() as u64, 33 * SECTOR);
        assert_eq!(l.backup_offset() + b.len() as u64, l.disk_size);
        assert_eq!(&b[16384..16392], b"EFI PART");
        // Both headers carry the same entry-array CRC.
        assert_eq!(&p[512 + 88..512 + 92], &b[16384 + 88..16384 + 92]);
        assert_eq!(l.partitions[0].first_lba, 2048);
        assert_eq!(l.partitions[1].first_lba, 2048 + 8 * 2048);
        assert_eq!(l.partitions[1].last_lba, (64 << 20) / 512 - 34);
        assert_eq!(l, layout(), "layout is deterministic");
    }

    #[test]
    fn rejects_bad_layouts() {
        let big = PartitionSpec {
            name: "root".into(),
            type_guid: LINUX_DATA_TYPE,
            size: Some(64 << 20),
        };
        assert!(GptLayout::new(64 << 20, b"s", std::slice::from_ref(&big)).is_err());
        assert!(GptLayout::new((64 << 20) + 1, b"s", &[]).is_err());
        let rest = PartitionSpec {
            size: None,
            ..big.clone()
        };
        assert!(GptLayout::new(64 << 20, b"s", &[rest, big.clone()]).is_err());
        let req = GptLayout::required_size(std::slice::from_ref(&big)).unwrap();
        assert!(GptLayout::new(req, b"s", &[big]).is_ok());
    }

    #[test]
    fn empty_disk_reads_tables() {
        let l = layout();
        let d = l.empty_disk().unwrap();
        let mut s = vec![0u8; 512];
        d.read_at(l.disk_size - 512, &mut s).unwrap();
        assert_eq!(&s[..8], b"EFI PART");
    }

    #[test]
    fn a_table_is_read_back_and_rehomed_on_a_larger_disk() {
        let l = layout();
        let primary = l.primary_bytes();
        assert_eq!(GptLayout::read(&primary, l.disk_size).unwrap(), l);
        let big = GptLayout::read(&primary, 256 << 20).unwrap();
        assert_eq!(big.partitions, l.partitions);
        assert_eq!(big.backup_offset(), (256 << 20) - 33 * 512);
        // The same table too small for its partitions, a flipped bit, a short buffer: refused.
        assert!(GptLayout::read(&primary, 32 << 20).is_err());
        let mut bad = primary.clone();
        bad[1024 + 20] ^= 1;
        assert!(GptLayout::read(&bad, l.disk_size)
            .unwrap_err()
            .to_string()
            .contains("CRC"));
        bad = primary.clone();
        bad[512 + 30] ^= 1;
        assert!(GptLayout::read(&bad, l.disk_size).is_err());
        assert!(GptLayout::read(&primary[..600], l.disk_size).is_err());
    }

    #[test]
    fn every_header_mutation_with_a_repaired_crc_reads_or_fails_cleanly() {
        let l = layout();
        let primary = l.primary_bytes();
        for at in 512..512 + 92 {
            for v in [0u8, 1, 0x7f, 0xff] {
                let mut p = primary.clone();
                p[at] = v;
                p[512 + 16..512 + 20].fill(0);
                let crc = crc32fast::hash(&p[512..512 + 92]);
                p[512 + 16..512 + 20].copy_from_slice(&crc.to_le_bytes());
                let _ = GptLayout::read(&p, l.disk_size);
            }
        }
        // Entries with absurd LBAs and a repaired array CRC.
        let mut p = primary.clone();
        p[1024 + 40..1024 + 48].copy_from_slice(&u64::MAX.to_le_bytes());
        let crc = crc32fast::hash(&p[1024..GptLayout::primary_len()]);
        p[512 + 88..512 + 92].copy_from_slice(&crc.to_le_bytes());
        p[512 + 16..512 + 20].fill(0);
        let hcrc = crc32fast::hash(&p[512..512 + 92]);
        p[512 + 16..512 + 20].copy_from_slice(&hcrc.to_le_bytes());
        assert!(GptLayout::read(&p, l.disk_size).is_err());
    }
}
