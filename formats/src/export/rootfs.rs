//! The image's root file system as the exporters need it: a scan of the merged view (sizes,
//! newest mtime, kernel and initrd), an unpacked copy for the file-system builders, and the
//! file-system images themselves (ext4, squashfs, erofs).
//!
//! Why external builders: ext4, squashfs and erofs writers are large and subtle, and
//! `mke2fs -d`, `mksquashfs` and `mkfs.erofs` do them well (formats.md §1.6, §2: no proven
//! Rust writer). Bookworm's tools read a directory, not a tar, so the rootfs is unpacked
//! with [`Store::unpack`] (owners are kept when running as root; rootless, files are owned
//! by the caller — squashfs/erofs then force root ownership, ext4 keeps the caller's ids).
//!
//! Reproducibility, as far as each tool allows (checked by the export tests):
//! - ext4: `-U` and `-E hash_seed=` derived from the image digest, `root_owner=0:0`, a pinned
//!   `mke2fs.conf` (so host defaults do not leak in), `E2FSPROGS_FAKE_TIME` for the
//!   superblock and created inodes. mke2fs 1.47.0 copies atime/ctime from the unpacked files,
//!   so every time stamp is then reset to the clamp epoch in the image's inode tables
//!   (the private `export::ext4times`).
//!   Directory order follows the unpacked tree's `readdir`, which is stable for the same
//!   host file system; across file systems inode numbers may differ.
//! - squashfs: `-mkfs-time` and `-all-time` at the epoch; mksquashfs sorts entries itself.
//! - erofs: `-T` epoch and `-U` derived UUID.

use std::collections::HashMap;
use std::path::Path;

use chasi_layers::{ApplyOptions, Digest, EntryKind, Store};

use super::ext4times;
use super::tools::{self, Tool};
use super::{ExportError, ExportResult, RootFsType};
use crate::ids::derive_uuid;

/// What the exporters need to know about a rootfs before building anything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RootfsInfo {
    /// Number of entries (files, directories, links, ...).
    pub entries: u64,
    /// Bytes of regular-file data.
    pub file_bytes: u64,
    /// Bytes of file data rounded up to 4 KiB blocks, plus one block per directory.
    pub block_bytes: u64,
    /// The newest mtime (the default clamp epoch).
    pub max_mtime: i64,
    /// Kernel path (relative, resolved through symlinks), if any.
    pub kernel: Option<String>,
    /// Initrd path matching the kernel, if any.
    pub initrd: Option<String>,
}

fn text(p: &[u8]) -> String {
    String::from_utf8_lossy(p).into_owned()
}

/// Scans the merged view of `layers` (headers only, no file data is read).
pub fn scan(store: &Store, layers: &[Digest]) -> ExportResult<RootfsInfo> {
    let view = store.flat_view(layers)?;
    let mut info = RootfsInfo::default();
    let mut kinds: HashMap<String, EntryKind> = HashMap::new();
    for e in view.entries() {
        let e = &e.entry;
        info.entries += 1;
        info.max_mtime = info.max_mtime.max(e.mtime);
        match e.kind {
            EntryKind::File => {
                info.file_bytes += e.size;
                info.block_bytes += e.size.div_ceil(4096) * 4096;
            }
            EntryKind::Dir => info.block_bytes += 4096,
            _ => {}
        }
        kinds.insert(text(&e.path), e.kind.clone());
    }
    let (kernel, initrd) = find_kernel(&kinds);
    info.kernel = kernel;
    info.initrd = initrd;
    Ok(info)
}

/// Resolves `path` through at most 8 symlinks inside the image; returns a regular file.
fn resolve_file(kinds: &HashMap<String, EntryKind>, path: &str) -> Option<String> {
    let mut p = path.to_string();
    for _ in 0..8 {
        match kinds.get(&p)? {
            EntryKind::File | EntryKind::Hardlink(_) => return Some(p),
            EntryKind::Symlink(t) => {
                let t = text(t);
                p = if let Some(abs) = t.strip_prefix('/') {
                    abs.to_string()
                } else {
                    match p.rsplit_once('/') {
                        Some((dir, _)) => format!("{dir}/{t}"),
                        None => t,
                    }
                };
                // Normalise `a/./b` and `a/../b` once more.
                let mut parts: Vec<&str> = Vec::new();
                for c in p.split('/') {
                    match c {
                        "" | "." => {}
                        ".." => {
                            parts.pop();
                        }
                        c => parts.push(c),
                    }
                }
                p = parts.join("/");
            }
            _ => return None,
        }
    }
    None
}

/// The kernel (`boot/vmlinuz-*`, newest version by name, else `vmlinuz`) and its initrd.
fn find_kernel(kinds: &HashMap<String, EntryKind>) -> (Option<String>, Option<String>) {
    let mut versions: Vec<&str> = kinds
        .keys()
        .filter_map(|k| k.strip_prefix("boot/vmlinuz-"))
        .filter(|v| !v.contains('/'))
        .collect();
    versions.sort_unstable();
    for v in versions.iter().rev() {
        if let Some(k) = resolve_file(kinds, &format!("boot/vmlinuz-{v}")) {
            let initrd = [
                format!("boot/initrd.img-{v}"),
                format!("boot/initramfs-{v}.img"),
                format!("boot/initrd-{v}"),
            ]
            .iter()
            .find_map(|c| resolve_file(kinds, c));
            return (Some(k), initrd);
        }
    }
    for (k, i) in [
        ("vmlinuz", "initrd.img"),
        ("boot/vmlinuz", "boot/initrd.img"),
    ] {
        if let Some(k) = resolve_file(kinds, k) {
            return (Some(k), resolve_file(kinds, i));
        }
    }
    (None, None)
}

/// Unpacks the merged rootfs into `dir` (whiteouts applied, every chunk verified).
pub fn unpack(store: &Store, layers: &[Digest], dir: &Path) -> ExportResult<()> {
    store.unpack(layers, dir, &ApplyOptions::default())?;
    Ok(())
}

/// Size of the journal mke2fs creates for a file system of `size` bytes (4 KiB blocks;
/// `ext2fs_default_journal_size`).
fn journal_bytes(size: u64) -> u64 {
    let blocks = size / 4096;
    let jblocks = match blocks {
        b if b < 2048 => 0,
        b if b < 32768 => 1024,
        b if b < 256 * 1024 => 4096,
        b if b < 512 * 1024 => 8192,
        b if b < 4096 * 1024 => 16384,
        _ => 32768,
    };
    jblocks * 4096
}

/// Inodes to create for a rootfs: every entry plus room to grow.
fn ext4_inodes(info: &RootfsInfo) -> u64 {
    (info.entries + info.entries / 4 + 256).max(1024)
}

/// Smallest ext4 size (bytes, 1 MiB multiple) that holds the rootfs with a little room.
pub fn ext4_min_size(info: &RootfsInfo) -> u64 {
    let base = info.block_bytes + info.block_bytes / 10 + ext4_inodes(info) * 256 + (6 << 20);
    let mut size = base;
    for _ in 0..3 {
        size = base + journal_bytes(size);
    }
    size.div_ceil(1 << 20) * (1 << 20)
}

/// Free space an `auto`-sized ext4 root of a bootable disk gets at least: room for what a
/// running system does to its root (a kernel upgrade keeps two kernels with their modules and
/// initrds, about 450 MiB for Debian's; apt's download cache; logs). Zero blocks cost nothing in
/// qcow2, VMDK, OVA and VMA (and a raw file is written sparse), and the root grows with its disk
/// on boot ([`super::installed`]), so this is a floor, not a quota.
pub const OS_HEADROOM: u64 = 1 << 30;

/// Size of the root file system in `auto` mode: the minimum plus 20 % free space, and for the
/// root of a bootable disk (`os`) at least [`OS_HEADROOM`] free.
pub fn ext4_auto_size(info: &RootfsInfo, os: bool) -> u64 {
    let min = ext4_min_size(info);
    let free = if os {
        (min / 5).max(OS_HEADROOM)
    } else {
        min / 5
    };
    (min + free).div_ceil(1 << 20) * (1 << 20)
}

/// Inodes of an ext4 of `size` bytes: the rootfs's [`ext4_inodes`], plus one per 16 KiB of the
/// space beyond [`ext4_min_size`] (mke2fs's usual ratio), so free space can hold new files and
/// not only bigger ones; a minimum-size file system gets exactly what its content needs.
fn ext4_inodes_for(info: &RootfsInfo, size: u64) -> u64 {
    ext4_inodes(info) + size.saturating_sub(ext4_min_size(info)) / 16384
}

const MKE2FS_CONF: &str = "[defaults]
\tbase_features = sparse_super,large_file,filetype,resize_inode,dir_index,ext_attr
\tdefault_mntopts = acl,user_xattr
\tenable_periodic_fsck = 0
\tblocksize = 4096
\tinode_size = 256
\tinode_ratio = 16384
\treserved_ratio = 0

[fs_types]
\text4 = {
\t\tfeatures = has_journal,extent,huge_file,flex_bg,metadata_csum,64bit,dir_nlink,extra_isize
\t}
";

/// The file-system UUID of the ext4 named `name` (its label) in an export seeded by `seed`.
pub fn ext4_uuid(seed: &[u8], name: &str) -> uuid::Uuid {
    derive_uuid(seed, &format!("ext4-{name}"))
}

/// Builds an ext4 image of `size` bytes at `img` from `dir`, labelled `name` (`root` for the single
/// root of a disk; the UUID derives from the seed and the name).
#[allow(clippy::too_many_arguments)]
pub fn build_ext4(
    name: &str,
    dir: &Path,
    img: &Path,
    size: u64,
    info: &RootfsInfo,
    seed: &[u8],
    epoch: i64,
    work: &Path,
) -> ExportResult<()> {
    let conf = work.join("mke2fs.conf");
    std::fs::write(&conf, MKE2FS_CONF).map_err(ExportError::io("write", &conf))?;
    let f = std::fs::File::create(img).map_err(ExportError::io("create", img))?;
    f.set_len(size).map_err(ExportError::io("resize", img))?;
    drop(f);
    let uuid = ext4_uuid(seed, name);
    let hash_seed = derive_uuid(seed, "ext4-hash-seed");
    let mut c = tools::command(tools::MKE2FS, epoch)?;
    c.env("MKE2FS_CONFIG", &conf)
        .env("E2FSPROGS_FAKE_TIME", fake_time(epoch))
        .args(["-q", "-F", "-t", "ext4", "-L", name, "-m", "0"])
        .arg("-N")
        .arg(ext4_inodes_for(info, size).to_string())
        .arg("-U")
        .arg(uuid.to_string())
        .arg("-E")
        .arg(format!(
            "hash_seed={hash_seed},root_owner=0:0,lazy_itable_init=0,lazy_journal_init=0,nodiscard"
        ))
        .arg("-d")
        .arg(dir)
        .arg(img)
        .arg(format!("{}k", size / 1024));
    tools::run(&mut c)?;
    ext4times::clamp(img, epoch)?;
    Ok(())
}

/// libext2fs reads `E2FSPROGS_FAKE_TIME` as "no fake time" when it is 0, so the
/// superblock times of an epoch-0 export are 1 second after the epoch.
fn fake_time(epoch: i64) -> String {
    epoch.max(1).to_string()
}

/// Whether this process runs as root (`/proc/self` belongs to the effective user).
fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// Builds a zstd squashfs image at `img` from `dir`.
pub fn build_squashfs(dir: &Path, img: &Path, epoch: i64, threads: usize) -> ExportResult<()> {
    let mut c = tools::command(tools::MKSQUASHFS, epoch)?;
    // mksquashfs refuses SOURCE_DATE_EPOCH together with the explicit time options.
    c.env_remove("SOURCE_DATE_EPOCH")
        .arg(dir)
        .arg(img)
        .args(["-noappend", "-no-progress", "-quiet", "-comp", "zstd"])
        .args([
            "-mkfs-time",
            &epoch.to_string(),
            "-all-time",
            &epoch.to_string(),
        ])
        .args(["-processors", &threads.to_string()]);
    if !is_root() {
        c.arg("-all-root");
    }
    tools::run(&mut c)?;
    Ok(())
}

/// Builds an lz4hc erofs image at `img` from `dir`.
pub fn build_erofs(dir: &Path, img: &Path, seed: &[u8], epoch: i64) -> ExportResult<()> {
    let mut c = tools::command(tools::MKFS_EROFS, epoch)?;
    c.arg("-zlz4hc")
        .arg(format!("-T{epoch}"))
        .arg("-U")
        .arg(derive_uuid(seed, "erofs-root").to_string());
    if !is_root() {
        c.arg("--all-root");
    }
    c.arg(img).arg(dir);
    tools::run(&mut c)?;
    Ok(())
}

/// The tools a root file system of type `fs` needs.
pub fn tools_for(fs: RootFsType) -> Vec<Tool> {
    match fs {
        RootFsType::Ext4 => vec![tools::MKE2FS],
        RootFsType::Squashfs => vec![tools::MKSQUASHFS],
        RootFsType::Erofs => vec![tools::MKFS_EROFS],
    }
}

/// Builds the root file system image of type `fs` at `img`. For ext4, `size` is the
/// image size; squashfs and erofs take what they need. Returns the image size.
#[allow(clippy::too_many_arguments)]
pub fn build(
    fs: RootFsType,
    dir: &Path,
    img: &Path,
    size: u64,
    info: &RootfsInfo,
    seed: &[u8],
    epoch: i64,
    threads: usize,
    work: &Path,
) -> ExportResult<u64> {
    match fs {
        RootFsType::Ext4 => build_ext4("root", dir, img, size, info, seed, epoch, work)?,
        RootFsType::Squashfs => build_squashfs(dir, img, epoch, threads)?,
        RootFsType::Erofs => build_erofs(dir, img, seed, epoch)?,
    }
    Ok(std::fs::metadata(img)
        .map_err(ExportError::io("stat", img))?
        .len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_detection() {
        let mut k = HashMap::new();
        k.insert("boot/vmlinuz-6.1.0-1-amd64".into(), EntryKind::File);
        k.insert("boot/vmlinuz-6.1.0-2-amd64".into(), EntryKind::File);
        k.insert("boot/initrd.img-6.1.0-2-amd64".into(), EntryKind::File);
        k.insert(
            "vmlinuz".into(),
            EntryKind::Symlink(b"boot/vmlinuz-6.1.0-1-amd64".to_vec()),
        );
        assert_eq!(
            find_kernel(&k),
            (
                Some("boot/vmlinuz-6.1.0-2-amd64".into()),
                Some("boot/initrd.img-6.1.0-2-amd64".into())
            )
        );
        let mut k = HashMap::new();
        k.insert(
            "vmlinuz".into(),
            EntryKind::Symlink(b"/boot/./vmlinuz-x".to_vec()),
        );
        k.insert("boot/vmlinuz-x/".into(), EntryKind::Dir);
        k.insert("boot/kernel".into(), EntryKind::File);
        assert_eq!(find_kernel(&k), (None, None));
        k.insert("boot/vmlinuz-x".into(), EntryKind::File);
        assert_eq!(find_kernel(&k).0, Some("boot/vmlinuz-x".into()));
    }

    #[test]
    fn ext4_sizes_grow_with_content() {
        let small = RootfsInfo {
            entries: 10,
            block_bytes: 1 << 20,
            ..Default::default()
        };
        let big = RootfsInfo {
            entries: 10_000,
            block_bytes: 500 << 20,
            ..Default::default()
        };
        assert!(ext4_min_size(&small) >= 8 << 20);
        assert!(ext4_min_size(&big) > 550 << 20);
        assert!(ext4_auto_size(&big, false) > ext4_min_size(&big));
        // A bootable disk's root gets at least OS_HEADROOM free; a data disk 20 %.
        assert_eq!(
            ext4_auto_size(&small, true),
            ext4_min_size(&small) + OS_HEADROOM
        );
        assert!(ext4_auto_size(&small, false) < ext4_min_size(&small) * 2);
        assert_eq!(
            ext4_inodes_for(&small, ext4_min_size(&small)),
            ext4_inodes(&small)
        );
        assert_eq!(
            ext4_inodes_for(&small, ext4_min_size(&small) + (16 << 20)),
            ext4_inodes(&small) + 1024
        );
        assert_eq!(ext4_min_size(&big) % (1 << 20), 0);
    }

    /// Runs an e2fsprogs program (installed with mke2fs, which the ext4 export requires).
    fn e2fs(program: &str, args: &[&str], img: &Path) -> String {
        let out = std::process::Command::new(program)
            .args(args)
            .arg(img)
            .env("PATH", "/usr/sbin:/sbin:/usr/bin:/bin")
            .output()
            .unwrap_or_else(|e| panic!("{program} (install e2fsprogs): {e}"));
        assert!(
            out.status.success(),
            "{program} {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            !text.is_empty(),
            "{program} {args:?}: no output; stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        text
    }

    /// The same tree unpacked twice (so with other ctimes, and names debugfs could not quote)
    /// gives the same ext4 bytes, every inode dated at the epoch, and checksums e2fsck accepts.
    #[test]
    fn ext4_is_reproducible_and_clamped() {
        let epoch = 1_700_000_000;
        let info = RootfsInfo {
            entries: 8,
            block_bytes: 64 << 10,
            ..Default::default()
        };
        let size = ext4_min_size(&info);
        let build_once = |n: u32| {
            let work = tempfile::tempdir().expect("tempdir");
            let dir = work.path().join("tree");
            std::fs::create_dir_all(dir.join("etc/a \"quoted\" dir")).expect("mkdir");
            std::fs::write(dir.join("etc/hostname"), "node\n").expect("write");
            std::fs::write(dir.join("etc/a \"quoted\" dir/f"), "x").expect("write");
            std::os::unix::fs::symlink("hostname", dir.join("etc/link")).expect("symlink");
            // Times as an unpack sets them (from the layer), children before their parents.
            let old = rustix::fs::Timestamps {
                last_access: rustix::fs::Timespec {
                    tv_sec: 1000,
                    tv_nsec: 0,
                },
                last_modification: rustix::fs::Timespec {
                    tv_sec: 1000,
                    tv_nsec: 0,
                },
            };
            for p in [
                "etc/a \"quoted\" dir/f",
                "etc/a \"quoted\" dir",
                "etc/hostname",
                "etc/link",
                "etc",
                "",
            ] {
                rustix::fs::utimensat(
                    rustix::fs::CWD,
                    dir.join(p),
                    &old,
                    rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
                )
                .expect("utimensat");
            }
            let img = work.path().join(format!("root{n}.img"));
            build_ext4("root", &dir, &img, size, &info, b"seed", epoch, work.path())
                .expect("build ext4");
            let bytes = std::fs::read(&img).expect("read image");
            e2fs("e2fsck", &["-fn"], &img);
            // debugfs cannot name `a "quoted" dir`: find its inodes in `ls -p` (`/ino/mode/uid/gid/name/...`).
            let inode_of = |dir: &str, name: &str| {
                let ls = e2fs("debugfs", &["-R", &format!("ls -p {dir}")], &img);
                let ino = ls
                    .lines()
                    .find_map(|l| {
                        let f: Vec<&str> = l.split('/').collect();
                        (f.len() > 5 && f[5] == name).then(|| f[1].to_string())
                    })
                    .unwrap_or_else(|| panic!("no {name} in {dir}: {ls}"));
                format!("<{ino}>")
            };
            let quoted = inode_of(&inode_of("/etc", "a \"quoted\" dir"), "f");
            let stats: Vec<String> = ["/", "/lost+found", "/etc/hostname", "/etc/link", &quoted]
                .iter()
                .map(|p| e2fs("debugfs", &["-R", &format!("stat {p}")], &img))
                .collect();
            (bytes, stats)
        };
        let (first, stats) = build_once(1);
        // Other ctimes on the host for the second tree.
        std::thread::sleep(std::time::Duration::from_millis(1100));
        let (second, _) = build_once(2);
        assert!(first == second, "two builds of the same tree differ");
        // The epoch is 0x6553f100; the files keep their mtime (1000 = 0x3e8), the root and
        // lost+found (made by mke2fs) get the epoch.
        for (i, s) in stats.iter().enumerate() {
            for field in ["ctime", "atime", "mtime", "crtime"] {
                let want = if field == "mtime" && i >= 2 {
                    "0x000003e8:00000000"
                } else {
                    "0x6553f100:00000000"
                };
                let line = s
                    .lines()
                    .find(|l| l.trim_start().starts_with(&format!("{field}:")))
                    .unwrap_or_else(|| panic!("no {field} in {s}"));
                assert!(line.contains(want), "{field} is not {want}: {line}\n{s}");
            }
        }
    }
}
