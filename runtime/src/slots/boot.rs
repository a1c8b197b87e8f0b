//! Bootable slots: the two root partitions of a disk exported with `chasi export --slots ab`, chosen by
//! GRUB from its environment block, as [`chasi_formats::slots`] lays them out and explains.
//!
//! Discovery needs nothing the image may lack (no udev, no `blkid`, no `mount` binary): the booted slot
//! is `chasi.slot=` on `/proc/cmdline`, the disk is the one holding the root file system (`stat /` →
//! `/sys/dev/block/MAJ:MIN` → its parent), and its partitions are told apart by the GPT names the kernel
//! reports in each partition's `uevent` (`PARTNAME=chasi-a`). The data partition is mounted at
//! `ROOT/var/lib/chasi-node` when it is not mounted there yet, so the node state (store, table, journal,
//! history) is the same whichever slot booted.
//!
//! A slot is staged by marking it not bootable in `grubenv` first (a crash mid-way can never boot it),
//! mounting its ext4 at `mnt/X` under the state directory, emptying it (its `lost+found` stays), unpacking
//! the image, `syncfs`, unmounting, and recording its kernel and initrd. The switch is one rewrite of the
//! environment block's first sector: the slot first in `order`, bootable, unconfirmed and untried. GRUB
//! then gives it one boot; `chasi-node boot-check` on that boot runs its post-verify hooks and confirms
//! it, or rolls back. A boot that never confirms falls back by itself.

use super::{SlotId, Slots, Space, StageReport};
use crate::error::{IoCtx, NodeError, Result};
use crate::verify::{self, VerifyReport};
use chasi_formats::slots::{self as layout, BootEnv};
use chasi_layers::{ApplyOptions, Digest, Store};
use rustix::mount::{self, MountFlags, UnmountFlags};
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

/// The mount point of a slot being staged or verified, under the state directory.
const MNT: &str = "mnt";

/// One partition of the boot disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    /// Its device node (`/dev/vda2`).
    pub dev: PathBuf,
    /// Its device number (`major:minor`).
    pub devno: (u32, u32),
}

/// The slots of a disk exported with `--slots ab`.
#[derive(Debug)]
pub struct BootSlots {
    root: PathBuf,
    state: PathBuf,
    slots: [Partition; 2],
    booted: Option<SlotId>,
    apply: ApplyOptions,
}

fn index(s: SlotId) -> usize {
    match s {
        SlotId::A => 0,
        SlotId::B => 1,
    }
}

fn id(i: usize) -> SlotId {
    if i == 0 {
        SlotId::A
    } else {
        SlotId::B
    }
}

/// Whether the system under `root` was booted from an A/B disk (`chasi.slot=` on its kernel command line).
pub fn booted_from_slots(root: &Path) -> bool {
    fs::read_to_string(root.join("proc/cmdline"))
        .is_ok_and(|c| layout::slot_from_cmdline(&c).is_some())
}

fn boot_err(detail: impl Into<String>) -> NodeError {
    NodeError::BootDisk {
        detail: detail.into(),
    }
}

impl BootSlots {
    /// Finds the disk the system under `root` booted from and mounts its data partition at `state` when
    /// it is not mounted there.
    pub fn discover(root: &Path, state: &Path) -> Result<BootSlots> {
        let cmdline_path = root.join("proc/cmdline");
        let cmdline = fs::read_to_string(&cmdline_path).ctx("read", &cmdline_path)?;
        let booted = layout::slot_from_cmdline(&cmdline).map(id);
        if booted.is_none() {
            return Err(boot_err(format!(
                "{} names no slot ({}=a or b): this system was not booted from an A/B disk",
                cmdline_path.display(),
                layout::CMDLINE_SLOT
            )));
        }
        let parts = disk_partitions(root)?;
        let find = |name: &str| {
            parts
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, p)| p.clone())
                .ok_or_else(|| {
                    boot_err(format!(
                        "the boot disk has no partition named {name} (found: {})",
                        parts
                            .iter()
                            .map(|(n, _)| n.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ))
                })
        };
        let slots = [find(layout::PART_SLOTS[0])?, find(layout::PART_SLOTS[1])?];
        let data = find(layout::PART_DATA)?;
        ensure_mounted(&data, state)?;
        Ok(BootSlots {
            root: root.to_path_buf(),
            state: state.to_path_buf(),
            slots,
            booted,
            apply: ApplyOptions::default(),
        })
    }

    fn env_path(&self) -> PathBuf {
        self.state.join(layout::GRUBENV)
    }

    /// The boot state as GRUB will read it.
    pub fn env(&self) -> Result<BootEnv> {
        let p = self.env_path();
        let data = fs::read(&p).ctx("read", &p)?;
        BootEnv::decode(&data).map_err(|d| NodeError::bad_state(&p, d))
    }

    /// Rewrites the environment block in place (its size and blocks never change, as GRUB's `save_env`
    /// needs) and syncs it.
    fn save_env(&self, env: &BootEnv) -> Result<()> {
        let p = self.env_path();
        let block = env
            .encode()
            .map_err(|e| NodeError::bad_state(&p, e.to_string()))?;
        let f = OpenOptions::new().write(true).open(&p).ctx("open", &p)?;
        let len = f.metadata().ctx("stat", &p)?.len();
        if len != block.len() as u64 {
            return Err(NodeError::bad_state(
                &p,
                format!("{len} bytes, a GRUB environment block has {}", block.len()),
            ));
        }
        f.write_all_at(&block, 0).ctx("write", &p)?;
        f.sync_data().ctx("sync", &p)
    }

    fn mnt(&self, slot: SlotId) -> PathBuf {
        self.state.join(MNT).join(slot.name())
    }

    /// Mounts `slot`'s file system at its mount point (read-only unless `write`), runs `f`, unmounts.
    fn with_mounted<T>(
        &self,
        slot: SlotId,
        write: bool,
        f: impl FnOnce(&Path) -> Result<T>,
    ) -> Result<T> {
        let at = self.mnt(slot);
        fs::create_dir_all(&at).ctx("create", &at)?;
        // A crash may have left it mounted.
        let _ = mount::unmount(&at, UnmountFlags::empty());
        if self.booted == Some(slot) {
            // The running root: a bind of `/` without its submounts (`/proc`, the data partition, ...).
            mount::mount_bind(&self.root, &at)
                .map_err(|e| NodeError::io("bind-mount", &at, e.into()))?;
        } else {
            let flags = if write {
                MountFlags::empty()
            } else {
                MountFlags::RDONLY
            };
            mount::mount(&self.slots[index(slot)].dev, &at, "ext4", flags, None)
                .map_err(|e| NodeError::io("mount", &self.slots[index(slot)].dev, e.into()))?;
        }
        let result = f(&at);
        let unmounted = mount::unmount(&at, UnmountFlags::empty())
            .map_err(|e| NodeError::io("unmount", &at, e.into()));
        let value = result?;
        unmounted?;
        Ok(value)
    }
}

impl Slots for BootSlots {
    fn kind(&self) -> &'static str {
        "bootable"
    }

    fn active(&self) -> Result<Option<SlotId>> {
        let env = self.env()?;
        let order = [env.first, 1 - env.first];
        Ok(order.into_iter().find(|&i| env.slots[i].ok).map(id))
    }

    fn booted(&self) -> Result<Option<SlotId>> {
        Ok(self.booted)
    }

    fn slot_dir(&self, slot: SlotId) -> PathBuf {
        if self.booted == Some(slot) {
            self.root.clone()
        } else {
            self.mnt(slot)
        }
    }

    fn read_tree(&self, slot: SlotId, f: &mut dyn FnMut(&Path) -> Result<()>) -> Result<()> {
        if self.booted == Some(slot) {
            return f(&self.root);
        }
        self.with_mounted(slot, false, |at| f(at))
    }

    fn space(&self, slot: SlotId) -> Result<Space> {
        if self.booted == Some(slot) {
            return Err(NodeError::Slot {
                slot,
                detail: "is the running system".into(),
            });
        }
        self.with_mounted(slot, false, |at| {
            let st = rustix::fs::statvfs(at).map_err(|e| NodeError::io("statvfs", at, e.into()))?;
            let block = st.f_frsize.max(512);
            Ok(Space {
                path: self.slots[index(slot)].dev.clone(),
                available: st.f_bavail.saturating_mul(block),
                reclaimable: st.f_blocks.saturating_sub(st.f_bfree).saturating_mul(block),
                block,
            })
        })
    }

    fn store_space(&self, _slot: SlotId) -> Result<Space> {
        let st = rustix::fs::statvfs(&self.state)
            .map_err(|e| NodeError::io("statvfs", &self.state, e.into()))?;
        let block = st.f_frsize.max(512);
        Ok(Space {
            path: self.state.clone(),
            available: st.f_bavail.saturating_mul(block),
            reclaimable: 0,
            block,
        })
    }

    fn check_image(&self, store: &Store, layers: &[Digest]) -> Result<()> {
        boot_files(store, layers).map(drop)
    }

    fn stage(&mut self, slot: SlotId, store: &Store, layers: &[Digest]) -> Result<StageReport> {
        if self.booted == Some(slot) || self.active()? == Some(slot) {
            return Err(NodeError::Slot {
                slot,
                detail: "refusing to stage the running or active slot".into(),
            });
        }
        let (kernel, initrd) = boot_files(store, layers)?;
        let i = index(slot);
        let mut env = self.env()?;
        env.slots[i] = layout::SlotBoot::default();
        self.save_env(&env)?;
        let apply = self.apply.clone();
        let stats = self.with_mounted(slot, true, |at| {
            empty_fs(at)?;
            let stats = store.unpack(layers, at, &apply)?;
            let f = File::open(at).ctx("open", at)?;
            rustix::fs::syncfs(&f)
                .map_err(|e| NodeError::io("sync file system of", at, e.into()))?;
            Ok(stats)
        })?;
        env.slots[i].kernel = kernel;
        env.slots[i].initrd = initrd;
        self.save_env(&env)?;
        Ok(StageReport::from(&stats))
    }

    fn switch(&mut self, slot: SlotId) -> Result<()> {
        let mut env = self.env()?;
        let i = index(slot);
        if env.slots[i].kernel.is_empty() {
            return Err(NodeError::Slot {
                slot,
                detail: "holds no staged kernel".into(),
            });
        }
        env.first = i;
        env.slots[i].ok = true;
        env.slots[i].good = false;
        env.slots[i].tried = false;
        self.save_env(&env)
    }

    fn reboot_to_switch(&self) -> bool {
        true
    }

    fn rollback(&mut self, to: Option<SlotId>) -> Result<()> {
        let to = to.ok_or_else(|| NodeError::NoRollback {
            reason: "a bootable node always runs one of its slots".into(),
        })?;
        let mut env = self.env()?;
        let i = index(to);
        if env.slots[i].kernel.is_empty() {
            return Err(NodeError::NoRollback {
                reason: format!("slot {to} holds no kernel"),
            });
        }
        env.first = i;
        env.slots[i].ok = true;
        // The slot left behind: never booted again unless it is applied anew, unless it was confirmed
        // (a rollback asked for by hand keeps it for a roll forward).
        let other = &mut env.slots[1 - i];
        if !other.good {
            other.ok = false;
        }
        self.save_env(&env)
    }

    fn confirm(&mut self, slot: SlotId) -> Result<()> {
        let mut env = self.env()?;
        let b = &mut env.slots[index(slot)];
        if b.good && !b.tried {
            return Ok(());
        }
        b.good = true;
        b.tried = false;
        self.save_env(&env)
    }

    fn verify(&self, slot: SlotId, store: &Store, layers: &[Digest]) -> Result<VerifyReport> {
        let mut report = self.with_mounted(slot, false, |at| {
            verify::compare(store, layers, at, &self.apply)
        })?;
        // mke2fs makes it in every file system; it is not part of the image.
        report.extra.retain(|p| p != "/lost+found");
        Ok(report)
    }
}

/// The kernel and initrd (absolute paths inside the image) GRUB boots a slot with.
fn boot_files(store: &Store, layers: &[Digest]) -> Result<(String, String)> {
    let not_bootable = |reason: String| NodeError::NotBootable { reason };
    let info = chasi_formats::export::rootfs::scan(store, layers)
        .map_err(|e| not_bootable(chasi_oci::error::chain(&e)))?;
    let kernel = info
        .kernel
        .ok_or_else(|| not_bootable("it has no kernel (/boot/vmlinuz-* or /vmlinuz)".into()))?;
    let boot = layout::SlotBoot {
        ok: true,
        good: true,
        tried: false,
        kernel: format!("/{kernel}"),
        initrd: info.initrd.map_or_else(String::new, |i| format!("/{i}")),
    };
    // Both slots with paths like these must fit the environment block's first sector.
    BootEnv {
        first: 0,
        slots: [boot.clone(), boot.clone()],
    }
    .encode()
    .map_err(|e| not_bootable(e.to_string()))?;
    Ok((boot.kernel, boot.initrd))
}

/// Removes everything in a slot's file system but its `lost+found`.
fn empty_fs(at: &Path) -> Result<()> {
    for e in fs::read_dir(at).ctx("read directory", at)? {
        let e = e.ctx("read directory", at)?;
        let p = e.path();
        if e.file_name() == "lost+found" {
            continue;
        }
        let ft = e.file_type().ctx("stat", &p)?;
        if ft.is_dir() {
            fs::remove_dir_all(&p).ctx("remove", &p)?;
        } else {
            fs::remove_file(&p).ctx("remove", &p)?;
        }
    }
    Ok(())
}

fn devno(dev: u64) -> (u32, u32) {
    (rustix::fs::major(dev), rustix::fs::minor(dev))
}

/// The partitions of the disk holding `root`'s file system, with their GPT names.
fn disk_partitions(root: &Path) -> Result<Vec<(String, Partition)>> {
    let meta = fs::metadata(root).ctx("stat", root)?;
    let (maj, min) = devno(meta.dev());
    let sys = root.join(format!("sys/dev/block/{maj}:{min}"));
    let part = fs::canonicalize(&sys).map_err(|e| {
        if e.kind() == io::ErrorKind::NotFound {
            boot_err(format!(
                "the root file system (device {maj}:{min}) is not on a block device ({} is missing; is /sys mounted?)",
                sys.display()
            ))
        } else {
            NodeError::io("resolve", &sys, e)
        }
    })?;
    let disk = part
        .parent()
        .filter(|_| part.join("partition").exists())
        .ok_or_else(|| {
            boot_err(format!(
                "the root file system (device {maj}:{min}) is not on a partition"
            ))
        })?
        .to_path_buf();
    let mut out = Vec::new();
    for e in fs::read_dir(&disk).ctx("read directory", &disk)? {
        let e = e.ctx("read directory", &disk)?;
        let dir = e.path();
        if !dir.join("partition").exists() {
            continue;
        }
        let uevent = dir.join("uevent");
        let text = fs::read_to_string(&uevent).ctx("read", &uevent)?;
        let field = |k: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(k)?.strip_prefix('=').map(str::to_string))
        };
        let (Some(name), Some(devname), Some(major), Some(minor)) = (
            field("PARTNAME"),
            field("DEVNAME"),
            field("MAJOR").and_then(|v| v.parse().ok()),
            field("MINOR").and_then(|v| v.parse().ok()),
        ) else {
            continue;
        };
        out.push((
            name,
            Partition {
                dev: root.join("dev").join(devname),
                devno: (major, minor),
            },
        ));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// Mounts the data partition at `state` unless the file system there is already it.
fn ensure_mounted(data: &Partition, state: &Path) -> Result<()> {
    fs::create_dir_all(state).ctx("create", state)?;
    let here = devno(fs::metadata(state).ctx("stat", state)?.dev());
    if here == data.devno {
        return Ok(());
    }
    mount::mount(&data.dev, state, "ext4", MountFlags::NOATIME, None)
        .map_err(|e| NodeError::io("mount the data partition at", state, e.into()))?;
    let now = devno(fs::metadata(state).ctx("stat", state)?.dev());
    if now != data.devno {
        return Err(boot_err(format!(
            "mounted {} at {} but the file system there is device {}:{}",
            data.dev.display(),
            state.display(),
            now.0,
            now.1
        )));
    }
    Ok(())
}
