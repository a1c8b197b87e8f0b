//! Disk exports (`raw`, `qcow2`, `vmdk`, `ova`, `vma`): one GPT disk, written by the native
//! writers of this crate.
//!
//! Layout: when the image carries a kernel (and is x86-64), partition 1 is an EFI System
//! Partition with GRUB (`EFI/BOOT/BOOTX64.EFI`, the removable-media path every UEFI firmware
//! tries), the kernel (`/vmlinuz`) and its initrd (`/initrd.img`); partition 2 is the root
//! partition (Discoverable Partitions type for the architecture) holding the rootfs as ext4,
//! squashfs or erofs. GRUB boots `root=PARTUUID=<partition 2> rootfstype=<fs> rootwait
//! console=tty0 console=ttyS0` through the ESP's menu ([`super::menu`]: the distro's own GRUB
//! config, else the kernel on the ext4 root, else the ESP's copy), and the root's tree gets the
//! fstab lines, mount point and growth drop-in of an installed system ([`super::installed`]),
//! named by identifiers known before the partitions are built ([`gpt::partition_guid`],
//! [`rootfs::ext4_uuid`]). Without a kernel the disk is a data disk: one root
//! partition. With `--boot bios|hybrid` a 1 MiB BIOS boot partition comes first, holding GRUB's
//! i386-pc core image, and the protective MBR carries GRUB's boot code pointing at it
//! ([`boot::grub_bios_disk`]); a BIOS-only disk has no EFI loader on its ESP. Sizes: `auto` is the content plus headroom ([`rootfs::ext4_auto_size`]: at least 1 GiB free
//! on a bootable disk); an explicit `--size` that cannot
//! hold the content fails before anything is written. The partition contents are built in
//! a work folder in the store's session `tmp/` and the disk is streamed from them
//! ([`crate::disk::ExtentDisk`]), never materialised, into the output by the rules of
//! [`chasi_oci::output`] (a block device such as `/dev/sdb` is written in place).

use std::path::{Path, PathBuf};

use super::{
    boot, cleanup::removing, tools, work_dir, BootMode, ClusterCompression, ExportFormat,
    ExportInput, ExportOptions,
};
use super::{installed, menu, rootfs};
use super::{ExportError, ExportReport, ExportResult, Exporter, RootFsType};
use crate::gpt::{self, GptLayout, PartitionSpec};
use crate::ova::{write_ova, OvaOptions};
use crate::qcow2::{write_qcow2, Qcow2Compression, Qcow2Options};
use crate::raw::write_raw;
use crate::vma::{write_vma, ProxmoxVm, VmaDevice, VmaOptions};
use crate::vmdk::{write_vmdk, VmdkOptions};
use chasi_layers::Digest;

/// The exporter of every disk format.
#[derive(Debug, Clone, Copy)]
pub struct DiskExporter {
    /// Which container the GPT disk goes into.
    pub format: ExportFormat,
}

pub(super) fn root_type(platform: &str) -> uuid::Uuid {
    if platform.contains("/amd64") {
        gpt::ROOT_X86_64_TYPE
    } else if platform.contains("/arm64") {
        gpt::ROOT_AARCH64_TYPE
    } else {
        gpt::LINUX_DATA_TYPE
    }
}

/// The ESP's FAT label (its volume id derives from it).
const ESP_LABEL: &str = "ESP";

/// Size of the BIOS boot partition (GRUB's core image takes about 100 KiB).
pub(super) const BIOS_BOOT_SIZE: u64 = 1 << 20;

pub(super) fn mib(v: u64) -> u64 {
    v.div_ceil(1 << 20) * (1 << 20)
}

/// The kernel command line of a bootable disk.
pub fn disk_cmdline(root_partuuid: &str, fs: RootFsType, extra: Option<&str>) -> String {
    let rw = if fs == RootFsType::Ext4 { "rw" } else { "ro" };
    let mut s = format!(
        "root=PARTUUID={root_partuuid} rootfstype={} rootwait {rw} console=tty0 console=ttyS0,115200 panic=-1",
        fs.name()
    );
    if let Some(e) = extra.filter(|e| !e.trim().is_empty()) {
        s.push(' ');
        s.push_str(e.trim());
    }
    s
}

impl Exporter for DiskExporter {
    fn format(&self) -> ExportFormat {
        self.format
    }

    fn check(&self, opts: &ExportOptions) -> ExportResult<()> {
        tools::require(&rootfs::tools_for(opts.fs))
    }

    fn export(
        &self,
        input: &ExportInput<'_>,
        opts: &ExportOptions,
        out: &Path,
    ) -> ExportResult<ExportReport> {
        if let Some(ab) = &opts.slots {
            return self.export_ab(input, opts, ab, out);
        }
        let work = work_dir(input.store)?;
        let tree = work.path().join("rootfs");
        let (info, epoch) = scan_while_unpacking(input, &tree)?;
        let seed = input.seed();
        let bootable = info.kernel.is_some() && input.bootable_arch();
        let mode = opts.disk_boot();
        let (bios, uefi) = (mode != BootMode::Uefi, mode != BootMode::Bios);
        let mut notes = Vec::new();
        if bootable {
            // The ESP (FAT) holds the kernel either way; GRUB for UEFI only when UEFI boots.
            tools::require(if uefi {
                &boot::UEFI_TOOLS
            } else {
                &boot::FAT_TOOLS
            })?;
            if bios {
                tools::require(&boot::BIOS_TOOLS)?;
            }
        } else if info.kernel.is_some() {
            notes.push(format!(
                "kernel found but {} is not bootable by this exporter (x86-64 only): data disk",
                input.platform
            ));
        }
        let esp_size = if bootable {
            let size_of = |p: &Option<String>| {
                p.as_ref()
                    .and_then(|p| std::fs::symlink_metadata(tree.join(p)).ok())
                    .filter(|m| m.is_file())
                    .map_or(0, |m| m.len())
            };
            let content = size_of(&info.kernel) + size_of(&info.initrd) + (4 << 20);
            Some(boot::fat_size(content).max(16 << 20))
        } else {
            None
        };
        let root_spec = |size: Option<u64>| PartitionSpec {
            name: "root".into(),
            type_guid: root_type(&input.platform),
            size,
        };
        let esp_spec = esp_size.map(|s| PartitionSpec {
            name: "esp".into(),
            type_guid: gpt::ESP_TYPE,
            size: Some(s),
        });
        // BIOS: GRUB's core image in a BIOS boot partition, first (see `boot::grub_bios_disk`).
        let bios_spec = (bootable && bios).then(|| PartitionSpec {
            name: "bios-boot".into(),
            type_guid: gpt::BIOS_BOOT_TYPE,
            size: Some(BIOS_BOOT_SIZE),
        });
        let specs_with = |root: Option<u64>| -> Vec<PartitionSpec> {
            bios_spec
                .iter()
                .chain(esp_spec.iter())
                .cloned()
                .chain([root_spec(root)])
                .collect()
        };
        // Size check for ext4 (known before building anything).
        if opts.fs == RootFsType::Ext4 {
            if let Some(requested) = opts.size {
                let needed =
                    GptLayout::required_size(&specs_with(Some(rootfs::ext4_min_size(&info))))?;
                if requested < needed {
                    return Err(ExportError::TooSmall { requested, needed });
                }
            }
        }
        let esp_idx = usize::from(bios_spec.is_some());
        let ext4_uuid = (opts.fs == RootFsType::Ext4).then(|| rootfs::ext4_uuid(&seed, "root"));
        if bootable {
            let ids = installed::DiskIds {
                fs: opts.fs,
                root_fs_uuid: ext4_uuid,
                root_partuuid: gpt::partition_guid(&seed, esp_idx + 1),
                esp_fs_uuid: boot::fat_uuid(&seed, ESP_LABEL),
                repart_root_type: "root-x86-64",
            };
            notes.extend(installed::install(
                &tree,
                &ids,
                &input.digest.to_string(),
                epoch,
            )?);
        }
        let root_img = work.path().join("root.img");
        // squashfs / erofs: build first, their size is what they need.
        let built = if opts.fs == RootFsType::Ext4 {
            None
        } else {
            Some(rootfs::build(
                opts.fs,
                &tree,
                &root_img,
                0,
                &info,
                &seed,
                epoch,
                opts.threads,
                work.path(),
            )?)
        };
        let root_need = built.unwrap_or_else(|| rootfs::ext4_auto_size(&info, bootable));
        let disk_size = match opts.size {
            Some(requested) => {
                let needed = GptLayout::required_size(&specs_with(Some(match built {
                    Some(b) => b,
                    None => rootfs::ext4_min_size(&info),
                })))?;
                if requested < needed {
                    return Err(ExportError::TooSmall { requested, needed });
                }
                mib(requested)
            }
            None => GptLayout::required_size(&specs_with(Some(mib(root_need))))?,
        };
        let mut layout = GptLayout::new(disk_size, &seed, &specs_with(None))?;
        let root_idx = layout.partitions.len() - 1;
        let root_part = &layout.partitions[root_idx];
        let root_range = root_part.byte_range();
        if built.is_none() {
            rootfs::build(
                opts.fs,
                &tree,
                &root_img,
                root_range.end - root_range.start,
                &info,
                &seed,
                epoch,
                opts.threads,
                work.path(),
            )?;
        }
        let mut contents: Vec<(usize, PathBuf)> = vec![(root_idx, root_img.clone())];
        if let (Some(esp), Some(kernel)) = (esp_size, &info.kernel) {
            let esp_img = work.path().join("esp.img");
            let cmdline = disk_cmdline(
                &root_part.guid.to_string(),
                opts.fs,
                opts.kernel_cmdline.as_deref(),
            );
            let marker = format!("/chasi-{}.id", short_id(&input.digest));
            let marker_file = work.path().join("marker.id");
            std::fs::write(&marker_file, format!("{}\n", input.digest))
                .map_err(ExportError::io("write", &marker_file))?;
            let script = menu::loader_script(
                &marker,
                &boot::grub_script(
                    &marker,
                    "/vmlinuz",
                    info.initrd.as_ref().map(|_| "/initrd.img"),
                    &cmdline,
                ),
            );
            let origin = input.digest.to_string();
            let menu_text = menu::menu(&menu::Menu {
                origin: &origin,
                marker: &marker,
                cmdline: &cmdline,
                esp_initrd: info.initrd.is_some(),
                root: ext4_uuid.map(|u| {
                    menu::root_kernel(&tree, &u.to_string(), kernel, info.initrd.as_deref())
                }),
            });
            let menu_file = work.path().join("grub.cfg");
            std::fs::write(&menu_file, &menu_text).map_err(ExportError::io("write", &menu_file))?;
            let efi = work.path().join("BOOTX64.EFI");
            let kernel_src = tree.join(kernel);
            let mut files: Vec<(&str, &Path)> = vec![
                (menu::MENU_PATH, &menu_file),
                (&marker[1..], &marker_file),
                ("vmlinuz", &kernel_src),
            ];
            if uefi {
                boot::grub_efi_normal(&script, &efi, work.path(), epoch)?;
                files.insert(0, ("EFI/BOOT/BOOTX64.EFI", &efi));
            }
            if bios {
                let part = &layout.partitions[0];
                let range = part.byte_range();
                let chain = boot::grub_bios_disk_normal(
                    &script,
                    part.first_lba,
                    range.end - range.start,
                    work.path(),
                    epoch,
                )?;
                let img = work.path().join("bios-boot.img");
                std::fs::write(&img, &chain.partition).map_err(ExportError::io("write", &img))?;
                contents.push((0, img));
                layout.boot_code = Some(chain.mbr_code);
            }
            let initrd_src = info.initrd.as_ref().map(|i| tree.join(i));
            if let Some(i) = &initrd_src {
                files.push(("initrd.img", i));
            }
            boot::fat_image(&esp_img, esp, ESP_LABEL, &files, &seed, epoch)?;
            contents.push((esp_idx, esp_img));
            let firmware = mode.firmware();
            notes.push(format!(
                "bootable ({firmware}): kernel /{kernel}, cmdline `{cmdline}`"
            ));
        }
        contents.sort();
        let refs: Vec<(usize, &Path)> = contents.iter().map(|(i, p)| (*i, p.as_path())).collect();
        let disk = layout.assemble(&refs)?;
        notes.push(format!(
            "disk {} bytes, root partition {} ({}) {} bytes",
            disk_size,
            root_part.guid,
            opts.fs.name(),
            root_range.end - root_range.start
        ));
        let size = removing(&tree, || {
            self.write(&disk, input, opts, out, epoch, work.path())
        })?;
        drop(work);
        Ok(ExportReport {
            format: self.format,
            path: out.to_path_buf(),
            size,
            bootable,
            notes,
        })
    }
}

/// Scans the rootfs ([`ExportInput::scan_rootfs`]: sizes, kernel, epoch) while a second thread
/// unpacks it into `tree` for the file-system builders: each reads every layer, so side by side
/// they take the time of the longer one. What the scan decides (boot tools, `--size`) is
/// checked once both are done.
fn scan_while_unpacking(
    input: &ExportInput<'_>,
    tree: &Path,
) -> ExportResult<(rootfs::RootfsInfo, i64)> {
    let (store, layers) = (input.store, &input.layers);
    std::thread::scope(|s| {
        let unpack = s.spawn(|| rootfs::unpack(store, layers, tree));
        let scanned = input.scan_rootfs();
        let unpacked = unpack
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        let scanned = scanned?;
        unpacked?;
        Ok(scanned)
    })
}

/// The first 12 hex digits of a digest (for marker file names).
pub(crate) fn short_id(digest: &Digest) -> String {
    digest.hex()[..12].to_string()
}

impl DiskExporter {
    pub(super) fn write(
        &self,
        disk: &crate::disk::ExtentDisk,
        input: &ExportInput<'_>,
        opts: &ExportOptions,
        out: &Path,
        epoch: i64,
        work: &Path,
    ) -> ExportResult<u64> {
        let seed = input.seed();
        let size = match self.format {
            ExportFormat::Raw => {
                write_raw(disk, out)?;
                crate::disk::DiskSource::size(disk)
            }
            ExportFormat::Qcow2 => {
                let compression = match opts.compress {
                    ClusterCompression::None => Qcow2Compression::None,
                    ClusterCompression::Zlib => Qcow2Compression::Zlib { level: 6 },
                    ClusterCompression::Zstd => Qcow2Compression::Zstd { level: 3 },
                };
                write_qcow2(
                    disk,
                    out,
                    &Qcow2Options {
                        compression,
                        threads: opts.threads,
                        ..Default::default()
                    },
                )?
                .file_size
            }
            ExportFormat::Vmdk => {
                let file_name = out
                    .file_name()
                    .map(|n| n.to_string_lossy().replace(['"', '/', '\n', '\r'], "_"))
                    .unwrap_or_else(|| "disk.vmdk".into());
                write_vmdk(
                    disk,
                    out,
                    &VmdkOptions {
                        seed,
                        file_name,
                        threads: opts.threads,
                        ..Default::default()
                    },
                )?
                .file_size
            }
            ExportFormat::Ova => {
                let profile = opts.profile();
                write_ova(
                    disk,
                    out,
                    &OvaOptions {
                        vm_name: opts.vm_name.clone(),
                        cpus: opts.cpus,
                        memory_mib: opts.memory_mib,
                        profile,
                        // A hybrid disk is declared UEFI where the profile can say so.
                        uefi: profile.declares_firmware() && opts.disk_boot() != BootMode::Bios,
                        seed,
                        mtime: epoch as u64,
                        threads: opts.threads,
                        work_dir: Some(work.to_path_buf()),
                        ..Default::default()
                    },
                )?
                .file_size
            }
            ExportFormat::Vma => {
                let vm = ProxmoxVm {
                    name: opts.vm_name.clone(),
                    cores: opts.cpus,
                    memory_mib: opts.memory_mib,
                    uefi: opts.boot != Some(BootMode::Bios),
                    ..Default::default()
                };
                let conf = vm.qemu_server_conf(&[crate::disk::DiskSource::size(disk)], &seed)?;
                write_vma(
                    &[VmaDevice {
                        name: "drive-scsi0".into(),
                        source: disk,
                    }],
                    out,
                    &VmaOptions {
                        seed,
                        ctime: epoch,
                        configs: vec![("qemu-server.conf".into(), conf.into_bytes())],
                        ..Default::default()
                    },
                )?
                .file_size
            }
            other => {
                return Err(ExportError::option(
                    other.name(),
                    "not a disk format (internal: wrong exporter)",
                ))
            }
        };
        Ok(size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cmdline_and_ids() {
        let c = disk_cmdline("abc", RootFsType::Squashfs, Some(" quiet "));
        assert_eq!(
            c,
            "root=PARTUUID=abc rootfstype=squashfs rootwait ro console=tty0 console=ttyS0,115200 panic=-1 quiet"
        );
        let d: Digest = format!("sha256:0123456789ab{}", "f".repeat(52))
            .parse()
            .expect("digest");
        assert_eq!(short_id(&d), "0123456789ab");
        assert_eq!(root_type("linux/arm64"), gpt::ROOT_AARCH64_TYPE);
    }
}
