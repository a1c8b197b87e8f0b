//! Clamps the time stamps of an ext4 image that `mke2fs -d` just wrote, in place.
//!
//! Why it exists: mke2fs 1.47.0 copies atime and ctime from the unpacked files (whose ctime is
//! "now"), so an export is only reproducible once every inode's atime, ctime and crtime are reset
//! to the clamp epoch, and the mtime of the two directories mke2fs makes itself (`/`, unless the
//! image has a root entry, and `lost+found`) too. Doing it here instead of with `debugfs -w` sif
//! commands (three path lookups per file in a separate process) costs one read and one write of the
//! inode tables, and reaches inodes whatever their names are.
//!
//! What is touched, by the on-disk format (the kernel's `Documentation/filesystems/ext4`): every
//! in-use inode (inode bitmap, groups marked `INODE_UNINIT` hold none) that is the root (2) or a
//! non-reserved one (from `s_first_ino`, the first being the `lost+found` mke2fs creates before it
//! copies the tree); reserved inodes (journal, resize) keep the fake time mke2fs gave them. Each
//! patched inode gets its `metadata_csum` checksum recomputed (CRC32C seeded by the file system's
//! UUID, the inode number and generation). The bitmaps and group descriptors are not changed, so
//! their checksums stay valid. Only the layout [`super::rootfs`] asks mke2fs for is accepted
//! (revision 1, `extra_isize` large inodes, 64-bit group descriptors or not); anything else is an
//! error naming the image, never a guess.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::{ExportError, ExportResult};

const SUPERBLOCK: u64 = 1024;
const MAGIC: u16 = 0xEF53;
const ROOT_INO: u64 = 2;
const INCOMPAT_64BIT: u32 = 0x80;
const INCOMPAT_CSUM_SEED: u32 = 0x2000;
const RO_COMPAT_METADATA_CSUM: u32 = 0x400;
const BG_INODE_UNINIT: u16 = 0x1;

/// Offsets inside an inode.
mod ino {
    pub const ATIME: usize = 0x08;
    pub const CTIME: usize = 0x0C;
    pub const MTIME: usize = 0x10;
    pub const GENERATION: usize = 0x64;
    pub const CHECKSUM_LO: usize = 0x7C;
    pub const EXTRA_ISIZE: usize = 0x80;
    pub const CHECKSUM_HI: usize = 0x82;
    pub const CTIME_EXTRA: usize = 0x84;
    pub const MTIME_EXTRA: usize = 0x88;
    pub const ATIME_EXTRA: usize = 0x8C;
    pub const CRTIME: usize = 0x90;
    pub const CRTIME_EXTRA: usize = 0x94;
}

/// The superblock fields the clamp needs.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Geometry {
    block_size: u64,
    first_data_block: u64,
    groups: u64,
    inodes_per_group: u64,
    inode_size: usize,
    first_ino: u64,
    desc_size: usize,
    csum_seed: Option<u32>,
}

fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn put16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_le_bytes());
}

fn put32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

/// CRC32C (Castagnoli, reflected 0x82F63B78) continuing from `crc`, without the final
/// inversion: the form ext4 chains its checksums with. Written here because no crate in the
/// workspace computes CRC32C (`crc32fast` is the IEEE polynomial) and a table of 256 entries
/// over a few inodes per file is all the clamp needs.
fn crc32c(mut crc: u32, data: &[u8]) -> u32 {
    const fn table() -> [u32; 256] {
        let mut t = [0u32; 256];
        let mut i = 0;
        while i < 256 {
            let mut c = i as u32;
            let mut k = 0;
            while k < 8 {
                c = if c & 1 != 0 {
                    (c >> 1) ^ 0x82F6_3B78
                } else {
                    c >> 1
                };
                k += 1;
            }
            t[i] = c;
            i += 1;
        }
        t
    }
    static TABLE: [u32; 256] = table();
    for &b in data {
        crc = TABLE[((crc ^ u32::from(b)) & 0xFF) as usize] ^ (crc >> 8);
    }
    crc
}

fn bad(img: &Path, message: impl Into<String>) -> ExportError {
    ExportError::Ext4 {
        path: img.to_path_buf(),
        message: message.into(),
    }
}

impl Geometry {
    fn parse(sb: &[u8], img: &Path) -> ExportResult<Self> {
        if le16(sb, 0x38) != MAGIC {
            return Err(bad(img, "no ext4 superblock magic at byte 1080"));
        }
        if le32(sb, 0x4C) < 1 {
            return Err(bad(img, "revision 0 file system (no large inodes)"));
        }
        let log = le32(sb, 0x18);
        if log > 6 {
            return Err(bad(
                img,
                format!("block size 2^(10+{log}) is not supported"),
            ));
        }
        let block_size = 1024u64 << log;
        let inodes = u64::from(le32(sb, 0x00));
        let inodes_per_group = u64::from(le32(sb, 0x28));
        let inode_size = usize::from(le16(sb, 0x58));
        if inodes_per_group == 0 || inodes % inodes_per_group != 0 {
            return Err(bad(
                img,
                format!("{inodes} inodes is not a multiple of {inodes_per_group} per group"),
            ));
        }
        if inode_size < ino::CRTIME_EXTRA + 4 || !inode_size.is_power_of_two() {
            return Err(bad(
                img,
                format!("inode size {inode_size}: the clamp needs large inodes (256 bytes)"),
            ));
        }
        let incompat = le32(sb, 0x60);
        let desc_size = if incompat & INCOMPAT_64BIT != 0 {
            usize::from(le16(sb, 0xFE))
        } else {
            32
        };
        if desc_size < 32 || (incompat & INCOMPAT_64BIT != 0 && desc_size < 64) {
            return Err(bad(img, format!("group descriptor size {desc_size}")));
        }
        let csum_seed = (le32(sb, 0x64) & RO_COMPAT_METADATA_CSUM != 0).then(|| {
            if incompat & INCOMPAT_CSUM_SEED != 0 {
                le32(sb, 0x270)
            } else {
                crc32c(!0, &sb[0x68..0x78])
            }
        });
        Ok(Geometry {
            block_size,
            first_data_block: u64::from(le32(sb, 0x14)),
            groups: inodes / inodes_per_group,
            inodes_per_group,
            inode_size,
            first_ino: u64::from(le32(sb, 0x54)),
            desc_size,
            csum_seed,
        })
    }

    /// The inode bitmap and inode table blocks of group descriptor `d`, and its flags.
    fn group(&self, d: &[u8]) -> (u64, u64, u16) {
        let wide = self.desc_size >= 64;
        let hi = |at: usize| {
            if wide {
                u64::from(le32(d, at)) << 32
            } else {
                0
            }
        };
        (
            u64::from(le32(d, 0x04)) | hi(0x24),
            u64::from(le32(d, 0x08)) | hi(0x28),
            le16(d, 0x12),
        )
    }

    /// Stores the inode's checksum (no-op without `metadata_csum`).
    fn seal(&self, number: u64, inode: &mut [u8]) {
        let Some(seed) = self.csum_seed else {
            return;
        };
        let has_hi = usize::from(le16(inode, ino::EXTRA_ISIZE)) >= 4;
        put16(inode, ino::CHECKSUM_LO, 0);
        if has_hi {
            put16(inode, ino::CHECKSUM_HI, 0);
        }
        let mut c = crc32c(seed, &(number as u32).to_le_bytes());
        c = crc32c(c, &inode[ino::GENERATION..ino::GENERATION + 4]);
        c = crc32c(c, inode);
        put16(inode, ino::CHECKSUM_LO, c as u16);
        if has_hi {
            put16(inode, ino::CHECKSUM_HI, (c >> 16) as u16);
        }
    }
}

/// Whether the 4-byte field at `at` lies in the inode's used area (the 128-byte core, then
/// `i_extra_isize` bytes).
fn holds(inode: &[u8], at: usize) -> bool {
    at + 4 <= 128 + usize::from(le16(inode, ino::EXTRA_ISIZE))
}

/// Writes the time `t` into the 32-bit field at `at` and its `_extra` field at `extra` (epoch
/// bits `(t - (s32)t) >> 32`, nanoseconds zero), each only if the inode holds it.
fn set_time(inode: &mut [u8], at: usize, extra: usize, t: i64) {
    if holds(inode, at) {
        put32(inode, at, t as u32);
    }
    if holds(inode, extra) {
        let high = ((t - i64::from(t as i32)) >> 32) as u32 & 3;
        put32(inode, extra, high);
    }
}

/// Resets atime, ctime and crtime of the root and every non-reserved in-use inode of the ext4
/// image at `img` to `epoch`, and the mtime of the root and of `lost+found` (the first
/// non-reserved inode) too; returns how many inodes were rewritten.
pub fn clamp(img: &Path, epoch: i64) -> ExportResult<u64> {
    let f = File::options()
        .read(true)
        .write(true)
        .open(img)
        .map_err(ExportError::io("open", img))?;
    let read = |off: u64, len: usize| -> ExportResult<Vec<u8>> {
        let mut b = vec![0u8; len];
        f.read_exact_at(&mut b, off)
            .map_err(ExportError::io("read", img))?;
        Ok(b)
    };
    let g = Geometry::parse(&read(SUPERBLOCK, 1024)?, img)?;
    let gdt_len = usize::try_from(g.groups)
        .ok()
        .and_then(|n| n.checked_mul(g.desc_size))
        .ok_or_else(|| bad(img, format!("{} block groups", g.groups)))?;
    let gdt = read((g.first_data_block + 1) * g.block_size, gdt_len)?;
    let table_len = g.inodes_per_group as usize * g.inode_size;
    let mut touched = 0;
    for (group, d) in gdt.chunks_exact(g.desc_size).enumerate() {
        let (bitmap_block, table_block, flags) = g.group(d);
        if flags & BG_INODE_UNINIT != 0 {
            continue;
        }
        let bitmap = read(
            bitmap_block * g.block_size,
            g.inodes_per_group.div_ceil(8) as usize,
        )?;
        let table_off = table_block * g.block_size;
        let mut table = read(table_off, table_len)?;
        let mut dirty = false;
        for (i, inode) in table.chunks_exact_mut(g.inode_size).enumerate() {
            let number = group as u64 * g.inodes_per_group + i as u64 + 1;
            let used = bitmap[i / 8] & (1 << (i % 8)) != 0;
            if !used || (number != ROOT_INO && number < g.first_ino) {
                continue;
            }
            set_time(inode, ino::ATIME, ino::ATIME_EXTRA, epoch);
            set_time(inode, ino::CTIME, ino::CTIME_EXTRA, epoch);
            set_time(inode, ino::CRTIME, ino::CRTIME_EXTRA, epoch);
            if number == ROOT_INO || number == g.first_ino {
                set_time(inode, ino::MTIME, ino::MTIME_EXTRA, epoch);
            }
            g.seal(number, inode);
            dirty = true;
            touched += 1;
        }
        if dirty {
            f.write_all_at(&table, table_off)
                .map_err(ExportError::io("write", img))?;
        }
    }
    Ok(touched)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_check_value() {
        // The standard check value of CRC-32C ("123456789"), with the usual inversions.
        assert_eq!(!crc32c(!0, b"123456789"), 0xE306_9283);
    }

    #[test]
    fn extra_time_fields() {
        let mut inode = vec![0xAAu8; 256];
        put16(&mut inode, ino::EXTRA_ISIZE, 32);
        set_time(&mut inode, ino::ATIME, ino::ATIME_EXTRA, 1_700_000_000);
        assert_eq!(le32(&inode, ino::ATIME), 1_700_000_000);
        assert_eq!(le32(&inode, ino::ATIME_EXTRA), 0);
        // After 2038 the low word wraps and the epoch bits carry the rest.
        set_time(&mut inode, ino::ATIME, ino::ATIME_EXTRA, 1 << 32);
        assert_eq!(le32(&inode, ino::ATIME), 0);
        assert_eq!(le32(&inode, ino::ATIME_EXTRA), 1);
        // A small extra area has no crtime: nothing past it is written.
        put16(&mut inode, ino::EXTRA_ISIZE, 4);
        set_time(&mut inode, ino::CRTIME, ino::CRTIME_EXTRA, 5);
        assert_eq!(le32(&inode, ino::CRTIME), 0xAAAA_AAAA);
        assert_eq!(le32(&inode, ino::CRTIME_EXTRA), 0xAAAA_AAAA);
    }

    #[test]
    fn not_ext4_is_an_error_naming_the_image() {
        let dir = tempfile::tempdir().expect("tempdir");
        let img = dir.path().join("zero.img");
        std::fs::write(&img, vec![0u8; 4096]).expect("write");
        let e = clamp(&img, 0).expect_err("no superblock");
        let text = e.to_string();
        assert!(
            text.contains("zero.img") && text.contains("magic"),
            "{text}"
        );
    }
}
