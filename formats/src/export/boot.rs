//! Boot chains: GRUB images with an embedded configuration, and FAT images (the disk's EFI
//! System Partition, the ISO's El Torito EFI image) filled without mounting.
//!
//! Why GRUB with an *embedded* config: `grub-mkimage -c` bakes a short script into the
//! loader (`search` for the medium, `linux`, `initrd`, `boot`), so no `grub.cfg`, module
//! directory or `normal` mode needs to be on the medium, the same loader works for disks
//! and ISOs, and the output is a pure function of the inputs (grub-mkimage writes no time
//! stamps). FAT images come from `mkfs.vfat --invariant -i <volume id from the digest>` and
//! `mcopy -m` with source mtimes set to the clamp epoch (mtools honours
//! `SOURCE_DATE_EPOCH` for directories it creates), so they are reproducible too. FAT dates
//! run from 1980 to 2107 only (an earlier time wraps to 2098 in mtools), so the epoch is
//! clamped into that range first ([`fat_epoch`]).

use std::path::{Path, PathBuf};

use super::tools::{self, Tool};
use super::{ExportError, ExportResult};
use crate::ids::derive_u32;

/// The tools a UEFI boot chain needs.
pub const UEFI_TOOLS: [Tool; 5] = [
    tools::GRUB_MKIMAGE,
    tools::GRUB_EFI,
    tools::MKFS_VFAT,
    tools::MCOPY,
    tools::MMD,
];
/// The tools a FAT image (the ESP) needs.
pub const FAT_TOOLS: [Tool; 3] = [tools::MKFS_VFAT, tools::MCOPY, tools::MMD];
/// The tools a BIOS (El Torito) boot chain needs.
pub const BIOS_TOOLS: [Tool; 2] = [tools::GRUB_MKIMAGE, tools::GRUB_PC];

const EFI_MODULES: &[&str] = &[
    "part_gpt",
    "part_msdos",
    "fat",
    "iso9660",
    "ext2",
    "linux",
    "boot",
    "search",
    "search_fs_file",
    "search_fs_uuid",
    "echo",
    "test",
    "gzio",
    "efi_gop",
];
const BIOS_MODULES: &[&str] = &[
    "biosdisk",
    "part_gpt",
    "part_msdos",
    "iso9660",
    "linux",
    "boot",
    "search",
    "search_fs_file",
    "echo",
    "test",
    "gzio",
    "serial",
    "terminal",
];

/// What a BIOS GRUB runs first: it writes to the first serial port as well as the screen, as the
/// kernel does (`console=ttyS0,115200`), so a headless machine shows what the medium is. (UEFI
/// needs none: the firmware's console already reaches the serial port.) On a machine without a
/// serial port both commands fail with a message and the boot goes on.
const BIOS_SERIAL: &str = "serial --unit=0 --speed=115200\nterminal_output --append serial\n";

/// The GRUB script that boots `kernel` (and `initrd`) with `cmdline` from the file system
/// that holds `marker` (an absolute path inside it).
pub fn grub_script(marker: &str, kernel: &str, initrd: Option<&str>, cmdline: &str) -> String {
    let mut s = format!(
        "set timeout=0\nsearch --no-floppy --set=root --file {marker}\necho \"chasi: booting {kernel}\"\nlinux {kernel} {cmdline}\n"
    );
    if let Some(i) = initrd {
        s.push_str(&format!("initrd {i}\n"));
    }
    s.push_str("boot\n");
    s
}

/// A GRUB `echo` of `text` as one line: single-quoted, so `$`, `"` and `\\` print as they are
/// (a `'` closes, escapes and reopens the quote); control characters, which would end or
/// garble the line, print as `?`. Both GRUB's rescue parser and normal mode read it alike.
pub fn grub_echo(text: &str) -> String {
    let mut s = String::from("echo '");
    for c in text.chars() {
        match c {
            '\'' => s.push_str("'\\''"),
            c if c.is_control() => s.push('?'),
            c => s.push(c),
        }
    }
    s.push_str("'\n");
    s
}

#[allow(clippy::too_many_arguments)]
fn mkimage(
    format: &str,
    platform_dir: &str,
    prefix: &str,
    script: &str,
    modules: &[&str],
    out: &Path,
    work: &Path,
    epoch: i64,
) -> ExportResult<()> {
    let cfg = work.join(format!("{format}.cfg"));
    std::fs::write(&cfg, script).map_err(ExportError::io("write", &cfg))?;
    let mut c = tools::command(tools::GRUB_MKIMAGE, epoch)?;
    c.arg("-O")
        .arg(format)
        .arg("-d")
        .arg(platform_dir)
        .arg("-p")
        .arg(prefix)
        .arg("-c")
        .arg(&cfg)
        .arg("-o")
        .arg(out)
        .args(modules);
    tools::run(&mut c)?;
    Ok(())
}

/// Builds `BOOTX64.EFI` (GRUB for x86_64-efi) running `script`.
pub fn grub_efi(script: &str, out: &Path, work: &Path, epoch: i64) -> ExportResult<()> {
    mkimage(
        "x86_64-efi",
        "/usr/lib/grub/x86_64-efi",
        "/EFI/BOOT",
        script,
        EFI_MODULES,
        out,
        work,
        epoch,
    )
}

/// Modules the A/B script needs on top of [`EFI_MODULES`]: normal mode (`if`, `for`), the environment
/// block and `configfile`.
const AB_MODULES: &[&str] = &["normal", "configfile", "loadenv", "test", "true"];

/// Builds `BOOTX64.EFI` whose embedded `script` hands over to a script file in normal mode
/// (`configfile`), for the A/B boot choice of [`crate::slots`].
pub fn grub_efi_normal(script: &str, out: &Path, work: &Path, epoch: i64) -> ExportResult<()> {
    let modules: Vec<&str> = EFI_MODULES.iter().chain(AB_MODULES).copied().collect();
    mkimage(
        "x86_64-efi",
        "/usr/lib/grub/x86_64-efi",
        "/EFI/chasi",
        script,
        &modules,
        out,
        work,
        epoch,
    )
}

/// Builds GRUB's El Torito no-emulation image for BIOS running `script`, its output on the
/// screen and the first serial port ([`BIOS_SERIAL`]).
pub fn grub_bios_eltorito(script: &str, out: &Path, work: &Path, epoch: i64) -> ExportResult<()> {
    mkimage(
        "i386-pc-eltorito",
        "/usr/lib/grub/i386-pc",
        "/boot/grub",
        &format!("{BIOS_SERIAL}{script}"),
        BIOS_MODULES,
        out,
        work,
        epoch,
    )
}

/// GRUB's BIOS boot chain for a GPT disk, as `grub-bios-setup` writes it, without a device: the MBR
/// code (`boot.img`, its 440 code bytes) pointing at the first sector of the BIOS boot partition, and
/// that partition's content, the core image (`grub-mkimage -O i386-pc` running `script`), whose first
/// sector is `diskboot.img` with a block list naming the sectors after it.
/// Facts used (GRUB's `boot.S`, `diskboot.S`, `mkimage.c`): the core's LBA is the 8 bytes at 0x5c of
/// `boot.img`; the core's first sector ends with one block-list entry at 0x1f4 (start LBA, 8 bytes;
/// sector count, 2 bytes, set by grub-mkimage; load segment 0x820), an empty entry before it ending
/// the list; only the start is left to fill in.
pub struct BiosDiskBoot {
    /// The first 440 bytes of the MBR.
    pub mbr_code: Vec<u8>,
    /// The BIOS boot partition's content.
    pub partition: Vec<u8>,
}

/// Builds [`BiosDiskBoot`] for a BIOS boot partition starting at `part_lba`, of `part_bytes`.
pub fn grub_bios_disk(
    script: &str,
    part_lba: u64,
    part_bytes: u64,
    work: &Path,
    epoch: i64,
) -> ExportResult<BiosDiskBoot> {
    bios_disk_with(script, &[], part_lba, part_bytes, work, epoch)
}

/// [`grub_bios_disk`] whose script hands over to a script file in normal mode (`configfile`), for the
/// A/B boot choice of [`crate::slots`].
pub fn grub_bios_disk_normal(
    script: &str,
    part_lba: u64,
    part_bytes: u64,
    work: &Path,
    epoch: i64,
) -> ExportResult<BiosDiskBoot> {
    let extra: Vec<&str> = AB_MODULES
        .iter()
        .copied()
        .chain(["search_fs_uuid"])
        .collect();
    bios_disk_with(script, &extra, part_lba, part_bytes, work, epoch)
}

fn bios_disk_with(
    script: &str,
    extra: &[&str],
    part_lba: u64,
    part_bytes: u64,
    work: &Path,
    epoch: i64,
) -> ExportResult<BiosDiskBoot> {
    let dir = Path::new("/usr/lib/grub/i386-pc");
    let core = work.join("core.img");
    let mut modules: Vec<&str> = BIOS_MODULES.to_vec();
    modules.extend(["fat", "ext2"]);
    modules.extend(extra);
    mkimage(
        "i386-pc",
        "/usr/lib/grub/i386-pc",
        "/boot/grub",
        &format!("{BIOS_SERIAL}{script}"),
        &modules,
        &core,
        work,
        epoch,
    )?;
    let read = |p: &Path| std::fs::read(p).map_err(ExportError::io("read", p));
    let boot = read(&dir.join("boot.img"))?;
    // grub-mkimage's i386-pc image starts with diskboot.img, its block list's length already set.
    let mut partition = read(&core)?;
    let sectors = partition.len().div_ceil(512) as u64;
    let listed = partition
        .get(0x1fc..0x1fe)
        .map(|b| u64::from(u16::from_le_bytes([b[0], b[1]])));
    if boot.len() != 512 || listed != Some(sectors.saturating_sub(1)) {
        return Err(ExportError::option(
            "bios",
            "GRUB's boot.img or core image is not laid out as grub-pc-bin 2.x makes them",
        ));
    }
    if sectors * 512 > part_bytes {
        return Err(ExportError::option(
            "bios",
            format!(
                "GRUB's core image ({} bytes) does not fit the {part_bytes}-byte BIOS boot partition",
                partition.len()
            ),
        ));
    }
    let mut mbr_code = boot[..crate::gpt::MBR_CODE].to_vec();
    mbr_code[0x5c..0x64].copy_from_slice(&part_lba.to_le_bytes());
    partition[0x1f4..0x1fc].copy_from_slice(&(part_lba + 1).to_le_bytes());
    partition.resize((sectors * 512) as usize, 0);
    Ok(BiosDiskBoot {
        mbr_code,
        partition,
    })
}

/// The hybrid MBR boot code GRUB provides for ISOs written to USB sticks.
pub fn grub_hybrid_mbr() -> PathBuf {
    PathBuf::from("/usr/lib/grub/i386-pc/boot_hybrid.img")
}

/// Sets a file's mtime (so `mcopy -m` and xorriso record the clamp epoch).
pub fn set_mtime(path: &Path, epoch: i64) -> ExportResult<()> {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(epoch.max(0) as u64);
    let f = std::fs::File::options()
        .write(true)
        .open(path)
        .map_err(ExportError::io("open", path))?;
    f.set_modified(t)
        .map_err(ExportError::io("set the mtime of", path))
}

/// Dates everything in `dir` (access and modification, symlinks themselves, never followed) at
/// `epoch`: trees staged for a file-system or ISO builder, so the output is the same bytes for the
/// same image.
pub fn date_tree(dir: &Path, epoch: i64) -> ExportResult<()> {
    use rustix::fs::{utimensat, AtFlags, Timespec, Timestamps, CWD};
    let t = Timespec {
        tv_sec: epoch.max(0),
        tv_nsec: 0,
    };
    let times = Timestamps {
        last_access: t,
        last_modification: t,
    };
    let mut stack = vec![dir.to_path_buf()];
    let mut all = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).map_err(ExportError::io("read", &d))? {
            let e = e.map_err(ExportError::io("read", &d))?;
            if e.file_type()
                .map_err(ExportError::io("stat", e.path()))?
                .is_dir()
            {
                stack.push(e.path());
            }
            all.push(e.path());
        }
    }
    // Children first, so setting a directory's time is not undone by a change inside it.
    for p in all.iter().rev() {
        utimensat(CWD, p, &times, AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| ExportError::io("set the time of", p)(e.into()))?;
    }
    Ok(())
}

/// 1980-01-01T00:00:00Z, the first time FAT can record.
pub const FAT_FIRST: i64 = 315_532_800;
/// 2107-12-31T23:59:58Z, the last time FAT can record (seconds are stored halved).
pub const FAT_LAST: i64 = 4_354_819_198;

/// `epoch` clamped into what FAT can record (`TZ=UTC`, as the tools run).
pub fn fat_epoch(epoch: i64) -> i64 {
    epoch.clamp(FAT_FIRST, FAT_LAST)
}

/// Smallest FAT image size (bytes) for files totalling `content` bytes.
pub fn fat_size(content: u64) -> u64 {
    let s = content + content / 8 + (2 << 20);
    s.div_ceil(1 << 20) * (1 << 20)
}

/// The volume id of the FAT labelled `label` in an export seeded by `seed`.
pub fn fat_volume_id(seed: &[u8], label: &str) -> u32 {
    derive_u32(seed, &format!("fat-{label}"))
}

/// The FAT's volume id as blkid, udev and fstab's `UUID=` spell it (`ABCD-1234`).
pub fn fat_uuid(seed: &[u8], label: &str) -> String {
    let v = fat_volume_id(seed, label);
    format!("{:04X}-{:04X}", v >> 16, v & 0xffff)
}

/// Creates a FAT image of `size` bytes at `img` holding `files` (`(path in the image, source
/// file)`; parent folders are created), with a volume id derived from `seed`. Everything is
/// dated `epoch` clamped by [`fat_epoch`]; the sources' mtimes are set to it.
pub fn fat_image(
    img: &Path,
    size: u64,
    label: &str,
    files: &[(&str, &Path)],
    seed: &[u8],
    epoch: i64,
) -> ExportResult<()> {
    let epoch = fat_epoch(epoch);
    if img.exists() {
        std::fs::remove_file(img).map_err(ExportError::io("remove", img))?;
    }
    let volid = format!("{:08X}", fat_volume_id(seed, label));
    let mut c = tools::command(tools::MKFS_VFAT, epoch)?;
    c.args(["--invariant", "-i", &volid, "-n", label, "-C"])
        .arg(img)
        .arg((size / 1024).to_string());
    tools::run(&mut c)?;
    let mut made: Vec<String> = Vec::new();
    for (dest, src) in files {
        let parts: Vec<&str> = dest.split('/').filter(|p| !p.is_empty()).collect();
        for i in 1..parts.len() {
            let d = parts[..i].join("/");
            if !made.contains(&d) {
                let mut c = tools::command(tools::MMD, epoch)?;
                c.env("MTOOLS_SKIP_CHECK", "1")
                    .arg("-i")
                    .arg(img)
                    .arg(format!("::/{d}"));
                tools::run(&mut c)?;
                made.push(d);
            }
        }
        set_mtime(src, epoch)?;
        let mut c = tools::command(tools::MCOPY, epoch)?;
        c.env("MTOOLS_SKIP_CHECK", "1")
            .arg("-m")
            .arg("-i")
            .arg(img)
            .arg(src)
            .arg(format!("::/{}", parts.join("/")));
        tools::run(&mut c)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_shape() {
        let s = grub_script(
            "/boot/x.id",
            "/vmlinuz",
            Some("/initrd.img"),
            "root=X console=ttyS0",
        );
        assert!(s.contains("search --no-floppy --set=root --file /boot/x.id\n"));
        assert!(s.contains("linux /vmlinuz root=X console=ttyS0\n"));
        assert!(s.ends_with("initrd /initrd.img\nboot\n"));
        assert!(fat_size(0) >= 2 << 20);
    }

    #[test]
    fn echo_quotes_what_grub_would_expand() {
        assert_eq!(grub_echo("plain text"), "echo 'plain text'\n");
        assert_eq!(
            grub_echo("a $x \"b\" \\c it's"),
            "echo 'a $x \"b\" \\c it'\\''s'\n"
        );
        assert_eq!(grub_echo("two\nlines\t"), "echo 'two?lines?'\n");
    }

    /// A FAT date field: (year, month, day).
    fn fat_date(raw: &[u8]) -> (u32, u32, u32) {
        let d = u32::from(u16::from_le_bytes([raw[0], raw[1]]));
        (1980 + (d >> 9), (d >> 5) & 0xf, d & 0x1f)
    }

    /// The short-name entries of a directory area: (name, created, written).
    type DirEntry = (String, (u32, u32, u32), (u32, u32, u32));

    fn dir_entries(area: &[u8]) -> Vec<DirEntry> {
        area.chunks(32)
            .take_while(|e| e[0] != 0)
            .filter(|e| e[0] != 0xe5 && e[11] != 0x0f && e[11] & 0x08 == 0)
            .map(|e| {
                let name = String::from_utf8_lossy(&e[..11]).trim().to_string();
                (name, fat_date(&e[16..18]), fat_date(&e[24..26]))
            })
            .collect()
    }

    #[test]
    fn fat_epoch_clamps_into_the_fat_range() {
        assert_eq!(fat_epoch(0), FAT_FIRST);
        assert_eq!(fat_epoch(-5), FAT_FIRST);
        assert_eq!(fat_epoch(1_700_000_000), 1_700_000_000);
        assert_eq!(fat_epoch(i64::MAX), FAT_LAST);
    }

    /// Epoch 0 (an image of files dated 1970) gives an ESP dated 1980-01-01, not 2098: the
    /// date fields of the directory entries, as mtools and fsck.fat read them.
    #[test]
    fn esp_files_of_epoch_zero_are_dated_1980() {
        if [tools::MKFS_VFAT, tools::MCOPY, tools::MMD]
            .iter()
            .any(|t| tools::find(*t).is_none())
        {
            panic!("mkfs.vfat, mcopy and mmd are needed: apt-get install -y dosfstools mtools");
        }
        let t = tempfile::tempdir().expect("tempdir");
        let src = t.path().join("BOOTX64.EFI");
        std::fs::write(&src, b"loader").expect("write");
        let top = t.path().join("top.txt");
        std::fs::write(&top, b"top").expect("write");
        let img = t.path().join("esp.img");
        let files = [("EFI/BOOT/BOOTX64.EFI", src.as_path()), ("top.txt", &top)];
        fat_image(&img, 4 << 20, "ESP", &files, b"seed", 0).expect("fat image");
        let bytes = std::fs::read(&img).expect("read");

        let u16_at = |o: usize| usize::from(u16::from_le_bytes([bytes[o], bytes[o + 1]]));
        let (bps, spc) = (u16_at(11), usize::from(bytes[13]));
        let (reserved, fats, root_entries, fat_sectors) =
            (u16_at(14), usize::from(bytes[16]), u16_at(17), u16_at(22));
        assert!(fat_sectors > 0 && root_entries > 0, "FAT12/16 expected");
        let root = (reserved + fats * fat_sectors) * bps;
        let data = root + (root_entries * 32).div_ceil(bps) * bps;
        let cluster = |n: usize| &bytes[data + (n - 2) * spc * bps..][..spc * bps];
        let first_cluster = |area: &[u8], name: &str| -> usize {
            let e = area
                .chunks(32)
                .find(|e| String::from_utf8_lossy(&e[..11]).trim() == name)
                .unwrap_or_else(|| panic!("{name} not found"));
            usize::from(u16::from_le_bytes([e[26], e[27]]))
        };

        let root_area = &bytes[root..root + root_entries * 32];
        let efi = cluster(first_cluster(root_area, "EFI"));
        let boot = cluster(first_cluster(efi, "BOOT"));
        let mut seen = Vec::new();
        for area in [root_area, efi, boot] {
            for (name, created, written) in dir_entries(area) {
                if name.starts_with('.') {
                    continue;
                }
                assert_eq!(written, (1980, 1, 1), "{name} written");
                assert!(
                    created == (1980, 1, 1) || created == (1980, 0, 0),
                    "{name} created {created:?}"
                );
                seen.push(name);
            }
        }
        seen.sort();
        assert_eq!(seen, ["BOOT", "BOOTX64 EFI", "EFI", "TOP     TXT"]);

        // The tools that read FAT agree.
        if let Some(fsck) = ["/usr/sbin/fsck.fat", "/sbin/fsck.fat"]
            .iter()
            .find(|p| Path::new(p).exists())
        {
            let out = std::process::Command::new(fsck)
                .args(["-n", "-v"])
                .arg(&img)
                .output()
                .expect("fsck.fat");
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stdout)
            );
        }
        let mut mdir = std::process::Command::new("mdir");
        mdir.env("MTOOLS_SKIP_CHECK", "1")
            .env("TZ", "UTC")
            .args(["-i"])
            .arg(&img)
            .arg("::/EFI/BOOT");
        if let Ok(out) = mdir.output() {
            let listing = String::from_utf8_lossy(&out.stdout);
            assert!(
                listing.contains("1980-01-01") && !listing.contains("2098"),
                "{listing}"
            );
        }
    }
}
