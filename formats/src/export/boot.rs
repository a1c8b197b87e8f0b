//! Boot chains: GRUB images with an embedded configuration, and FAT images (the disk's EFI
//! System Partition, the ISO's El Torito EFI image) filled without mounting.
//!
//! Why GRUB with an *embedded* config: `grub-mkimage -c` bakes a short script into the
//! loader (`search` for the medium, `linux`, `initrd`, `boot`), so no `grub.cfg`, module
//! directory or `normal` mode needs to be on the medium, the same loader works for disks
//! and ISOs, and the output is a pure function of the inputs (grub-mkimage writes no time
//! stamps). FAT images come from `mkfs.vfat --invariant -i <volume id from the digest>` and
//! `mcopy -m` with source mtimes set to the clamp epoch (mtools honours
//! `SOURCE_DATE_EPOCH` for directories it creates), so they are reproducible too.

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
];

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

/// Builds GRUB's El Torito no-emulation image for BIOS running `script`.
pub fn grub_bios_eltorito(script: &str, out: &Path, work: &Path, epoch: i64) -> ExportResult<()> {
    mkimage(
        "i386-pc-eltorito",
        "/usr/lib/grub/i386-pc",
        "/boot/grub",
        script,
        BIOS_MODULES,
        out,
        work,
        epoch,
    )
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

/// Smallest FAT image size (bytes) for files totalling `content` bytes.
pub fn fat_size(content: u64) -> u64 {
    let s = content + content / 8 + (2 << 20);
    s.div_ceil(1 << 20) * (1 << 20)
}

/// Creates a FAT image of `size` bytes at `img` holding `files` (`(path in the image, source
/// file)`; parent folders are created), with a volume id derived from `seed`.
pub fn fat_image(
    img: &Path,
    size: u64,
    label: &str,
    files: &[(&str, &Path)],
    seed: &[u8],
    epoch: i64,
) -> ExportResult<()> {
    if img.exists() {
        std::fs::remove_file(img).map_err(ExportError::io("remove", img))?;
    }
    let volid = format!("{:08X}", derive_u32(seed, &format!("fat-{label}")));
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
}
