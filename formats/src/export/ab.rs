//! Disks with A/B slots (`chasi export --slots ab`): the layout of [`crate::slots`], written by the
//! native disk writers like every other disk.
//!
//! The caller hands over the data partition's tree (the node state `chasi-node` starts with: a store
//! holding the image and its slot table, made by `chasi_runtime::seed`); this exporter adds `grubenv`
//! to it (slot `a` first, confirmed, with the image's kernel and initrd), builds slot `a` from the image,
//! slot `b` empty with the same size and inode count, the data file system, and an ESP whose GRUB runs
//! the slot-choosing script (and, with `--boot bios|hybrid`, a BIOS boot partition whose GRUB core runs
//! the same script in normal mode). Every file-system UUID derives from the image digest and the partition's
//! name, so the same image and options give the same bytes.

use std::path::Path;

use super::disks::{disk_cmdline, mib, root_type, DiskExporter, BIOS_BOOT_SIZE};
use super::rootfs::{self, RootfsInfo};
use super::{
    boot, cleanup::removing, tools, work_dir, AbSlots, BootMode, ExportError, ExportInput,
    ExportOptions,
};
use super::{ExportReport, ExportResult, RootFsType};
use crate::gpt::{self, GptLayout, PartitionSpec};
use crate::slots::{self as layout, BootEnv, GrubDisk, SlotBoot};

/// Size of the ESP: GRUB and its script only (kernels stay in the slots).
const ESP_SIZE: u64 = 16 << 20;

/// Default slot size: room for an image twice this one, at least 256 MiB.
fn default_slot_size(info: &RootfsInfo) -> u64 {
    mib((2 * rootfs::ext4_auto_size(info, false)).max(256 << 20))
}

/// Bytes and entries of a tree (the data partition's content).
fn tree_size(dir: &Path) -> ExportResult<(u64, u64)> {
    let (mut bytes, mut entries) = (0u64, 0u64);
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).map_err(ExportError::io("read", &d))? {
            let e = e.map_err(ExportError::io("read", &d))?;
            let m = e.metadata().map_err(ExportError::io("stat", e.path()))?;
            entries += 1;
            bytes += m.len().div_ceil(4096) * 4096;
            if m.is_dir() {
                stack.push(e.path());
            }
        }
    }
    Ok((bytes, entries))
}

/// An info whose inode count and block budget fit a file system of `size` bytes holding at least
/// `content` (an empty slot must take a later image as large as the slot allows).
fn sized_info(content: &RootfsInfo, size: u64) -> RootfsInfo {
    RootfsInfo {
        entries: content.entries.max(size / 16384),
        ..content.clone()
    }
}

impl DiskExporter {
    /// Exports an A/B disk (see the module documentation).
    pub(super) fn export_ab(
        &self,
        input: &ExportInput<'_>,
        opts: &ExportOptions,
        ab: &AbSlots,
        out: &Path,
    ) -> ExportResult<ExportReport> {
        let f = self.format.name();
        if opts.fs != RootFsType::Ext4 {
            return Err(ExportError::option(
                f,
                "--slots ab needs --fs ext4: chasi-node refills a slot's file system in place, without mkfs",
            ));
        }
        let (info, epoch) = input.scan_rootfs()?;
        let kernel = match (&info.kernel, input.bootable_arch()) {
            (Some(k), true) => k.clone(),
            (None, _) => return Err(ExportError::option(
                f,
                "--slots ab needs a bootable image: it has no kernel (/boot/vmlinuz-* or /vmlinuz)",
            )),
            (Some(_), false) => {
                return Err(ExportError::option(
                    f,
                    format!(
                        "--slots ab boots x86-64 only; the image is {}",
                        input.platform
                    ),
                ))
            }
        };
        tools::require(&boot::UEFI_TOOLS)?;
        let seed = input.seed();
        let min = rootfs::ext4_min_size(&info);
        let slot_size = mib(ab.slot_size.unwrap_or_else(|| default_slot_size(&info)));
        if slot_size < min {
            return Err(ExportError::TooSmall {
                requested: slot_size,
                needed: min,
            });
        }
        let (data_bytes, data_entries) = tree_size(&ab.data_dir)?;
        let data_info = RootfsInfo {
            entries: data_entries + 16,
            block_bytes: data_bytes + (1 << 20),
            ..RootfsInfo::default()
        };
        let data_min = rootfs::ext4_min_size(&data_info);
        let data_size = mib(ab
            .data_size
            .unwrap_or_else(|| (3 * data_min + (64 << 20)).max(128 << 20)));
        if data_size < data_min {
            return Err(ExportError::TooSmall {
                requested: data_size,
                needed: data_min,
            });
        }
        let root_type = root_type(&input.platform);
        let spec = |name: &str, type_guid, size| PartitionSpec {
            name: name.into(),
            type_guid,
            size,
        };
        let mode = opts.disk_boot();
        let (bios, uefi) = (mode != BootMode::Uefi, mode != BootMode::Bios);
        if bios {
            tools::require(&boot::BIOS_TOOLS)?;
        }
        // With BIOS, GRUB's core image in a BIOS boot partition comes first: `o` shifts the others.
        let o = usize::from(bios);
        let mut specs = vec![
            spec(layout::PART_ESP, gpt::ESP_TYPE, Some(ESP_SIZE)),
            spec(layout::PART_SLOTS[0], root_type, Some(slot_size)),
            spec(layout::PART_SLOTS[1], root_type, Some(slot_size)),
            spec(layout::PART_DATA, gpt::LINUX_DATA_TYPE, Some(data_size)),
        ];
        if bios {
            specs.insert(
                0,
                spec("bios-boot", gpt::BIOS_BOOT_TYPE, Some(BIOS_BOOT_SIZE)),
            );
        }
        let needed = GptLayout::required_size(&specs)?;
        let disk_size = match opts.size {
            Some(requested) if requested < needed => {
                return Err(ExportError::TooSmall { requested, needed })
            }
            Some(requested) => mib(requested),
            None => needed,
        };
        // The data partition takes what a larger --size adds.
        specs[3 + o].size = None;
        let mut layout_ = GptLayout::new(disk_size, &seed, &specs)?;
        let len = |i: usize| {
            let r = layout_.partitions[i].byte_range();
            r.end - r.start
        };

        let work = work_dir(input.store)?;
        let tree = work.path().join("rootfs");
        rootfs::unpack(input.store, &input.layers, &tree)?;
        let empty = work.path().join("empty");
        std::fs::create_dir_all(&empty).map_err(ExportError::io("create", &empty))?;
        let grub = GrubDisk {
            data_fs_uuid: rootfs::ext4_uuid(&seed, layout::PART_DATA).to_string(),
            slot_fs_uuids: layout::PART_SLOTS.map(|n| rootfs::ext4_uuid(&seed, n).to_string()),
            cmdlines: [1 + o, 2 + o].map(|i| {
                disk_cmdline(
                    &layout_.partitions[i].guid.to_string(),
                    RootFsType::Ext4,
                    opts.kernel_cmdline.as_deref(),
                )
            }),
        };
        let env = BootEnv {
            first: 0,
            slots: [
                SlotBoot {
                    ok: true,
                    good: true,
                    tried: false,
                    kernel: format!("/{kernel}"),
                    initrd: info
                        .initrd
                        .as_ref()
                        .map_or_else(String::new, |i| format!("/{i}")),
                },
                SlotBoot::default(),
            ],
        };
        let env_path = ab.data_dir.join(layout::GRUBENV);
        std::fs::write(&env_path, env.encode()?).map_err(ExportError::io("write", &env_path))?;
        boot::date_tree(&ab.data_dir, epoch)?;

        let slot_info = sized_info(&info, slot_size);
        let imgs = ["a.img", "b.img", "data.img"].map(|n| work.path().join(n));
        rootfs::build_ext4(
            layout::PART_SLOTS[0],
            &tree,
            &imgs[0],
            len(1 + o),
            &slot_info,
            &seed,
            epoch,
            work.path(),
        )?;
        rootfs::build_ext4(
            layout::PART_SLOTS[1],
            &empty,
            &imgs[1],
            len(2 + o),
            &slot_info,
            &seed,
            epoch,
            work.path(),
        )?;
        rootfs::build_ext4(
            layout::PART_DATA,
            &ab.data_dir,
            &imgs[2],
            len(3 + o),
            &sized_info(&data_info, len(3 + o)),
            &seed,
            epoch,
            work.path(),
        )?;

        let esp_img = work.path().join("esp.img");
        let efi = work.path().join("BOOTX64.EFI");
        let cfg = work.path().join("grub.cfg");
        std::fs::write(&cfg, layout::grub_cfg(&grub)).map_err(ExportError::io("write", &cfg))?;
        let mut esp_files: Vec<(&str, &Path)> = vec![(layout::GRUB_CFG, &cfg)];
        if uefi {
            boot::grub_efi_normal(&layout::grub_loader_script(), &efi, work.path(), epoch)?;
            esp_files.insert(0, ("EFI/BOOT/BOOTX64.EFI", &efi));
        }
        boot::fat_image(&esp_img, ESP_SIZE, "ESP", &esp_files, &seed, epoch)?;
        let bios_img = work.path().join("bios-boot.img");
        let mut contents: Vec<(usize, &Path)> = vec![
            (o, esp_img.as_path()),
            (1 + o, imgs[0].as_path()),
            (2 + o, imgs[1].as_path()),
            (3 + o, imgs[2].as_path()),
        ];
        if bios {
            let part = &layout_.partitions[0];
            let range = part.byte_range();
            let chain = boot::grub_bios_disk_normal(
                &layout::grub_loader_script(),
                part.first_lba,
                range.end - range.start,
                work.path(),
                epoch,
            )?;
            std::fs::write(&bios_img, &chain.partition)
                .map_err(ExportError::io("write", &bios_img))?;
            layout_.boot_code = Some(chain.mbr_code);
            contents.insert(0, (0, bios_img.as_path()));
        }
        let disk = layout_.assemble(&contents)?;
        let notes = vec![
            format!(
                "bootable ({}) with A/B slots: kernel /{kernel}; slot a holds the image, slot b is empty, {slot_size} bytes each",
                mode.firmware()
            ),
            format!(
                "data partition {} bytes: the node state chasi-node starts with (store, slot table, grubenv)",
                len(3 + o)
            ),
            format!("disk {disk_size} bytes"),
        ];
        let size = removing(&tree, || {
            self.write(&disk, input, opts, out, epoch, work.path())
        })?;
        drop(work);
        Ok(ExportReport {
            format: self.format,
            path: out.to_path_buf(),
            size,
            bootable: true,
            notes,
        })
    }
}
