//! The A/B slots behind one trait, so the apply engine is the same for every backend.
//!
//! A backend owns what touches the operating system: where a slot's tree is, how it is written, how the
//! active slot is switched atomically and how that choice survives a crash. The engine ([`crate::apply`])
//! owns the order of the phases, the journal and the table.
//!
//! Two slot ids only, `a` and `b`: the inactive one is always the other. [`Slots::active`] is the slot
//! that runs now or, for a bootable backend, the one the next boot will take; [`Slots::booted`] is the one
//! running. For [`dir::DirSlots`] they are the same. [`boot::BootSlots`] (two root partitions chosen by
//! GRUB from its environment block, as RAUC does) implements the same calls: `stage` writes the other
//! root, `switch` puts it first with one try, `confirm` stops the counting (`mark-good`), `rollback` puts
//! the previous slot first again, and `booted` reads the slot the kernel command line names. Its switch
//! takes effect at the next boot ([`Slots::reboot_to_switch`]), so post-verify runs there
//! (`chasi-node boot-check`).

pub mod boot;
pub mod dir;

use crate::error::Result;
use crate::verify::VerifyReport;
use chasi_layers::{Digest, Store};
use serde::Serialize;
use std::path::{Path, PathBuf};

pub use crate::slot::SlotId;

/// Free space where a slot is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Space {
    /// A directory on the file system checked.
    pub path: PathBuf,
    /// Bytes free for an unprivileged writer (`f_bavail × f_frsize`).
    pub available: u64,
    /// Bytes the slot uses now, freed when staging empties it.
    pub reclaimable: u64,
    /// The file system's block size (what a file's size is rounded up to).
    pub block: u64,
}

/// What staging wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct StageReport {
    /// Entries written.
    pub entries: u64,
    /// Whiteouts honoured.
    pub whiteouts: u64,
    /// Device nodes skipped (not root).
    pub skipped_devices: u64,
    /// Extended attributes that could not be set.
    pub xattr_failures: u64,
}

impl From<&chasi_layers::apply::ApplyStats> for StageReport {
    fn from(stats: &chasi_layers::apply::ApplyStats) -> Self {
        StageReport {
            entries: stats.entries,
            whiteouts: stats.whiteouts,
            skipped_devices: stats.skipped_devices,
            xattr_failures: stats.xattr_failures,
        }
    }
}

/// The slots of one node.
pub trait Slots {
    /// The backend's name in `status` (`directory`).
    fn kind(&self) -> &'static str;
    /// The active slot (running now, or booted next), `None` on a node where nothing was applied.
    fn active(&self) -> Result<Option<SlotId>>;
    /// The slot the running system came from.
    fn booted(&self) -> Result<Option<SlotId>>;
    /// The tree of `slot` as hooks see it (`CHASI_SLOT_DIR`).
    fn slot_dir(&self, slot: SlotId) -> PathBuf;
    /// Runs `f` on the tree of `slot`, readable (a bootable slot is mounted read-only for it).
    fn read_tree(&self, slot: SlotId, f: &mut dyn FnMut(&Path) -> Result<()>) -> Result<()> {
        f(&self.slot_dir(slot))
    }
    /// Free space for staging `slot`.
    fn space(&self, slot: SlotId) -> Result<Space>;
    /// Free space for what an import adds to the node's store (by default where the slots are).
    fn store_space(&self, slot: SlotId) -> Result<Space> {
        self.space(slot)
    }
    /// Checks, before anything is touched, that the image made of `layers` can live in a slot (a bootable
    /// slot needs a kernel).
    fn check_image(&self, _store: &Store, _layers: &[Digest]) -> Result<()> {
        Ok(())
    }
    /// Empties `slot` and writes the image made of `layers` (DiffIDs, bottom first) into it from `store`,
    /// verifying every layer, then makes it durable. Never called on the active slot.
    fn stage(&mut self, slot: SlotId, store: &Store, layers: &[Digest]) -> Result<StageReport>;
    /// Makes `slot` the active one, atomically: a crash leaves the old choice or the new one.
    fn switch(&mut self, slot: SlotId) -> Result<()>;
    /// Whether [`Slots::switch`] takes effect at the next boot (then post-verify runs on that boot).
    fn reboot_to_switch(&self) -> bool {
        false
    }
    /// Goes back to `to` (`None`: no slot active, on a node that had none before).
    fn rollback(&mut self, to: Option<SlotId>) -> Result<()>;
    /// Confirms the active slot (a bootable backend stops counting its tries).
    fn confirm(&mut self, slot: SlotId) -> Result<()>;
    /// Re-hashes `slot` against the image made of `layers`.
    fn verify(&self, slot: SlotId, store: &Store, layers: &[Digest]) -> Result<VerifyReport>;
}

/// The store ref that keeps a slot's image from `gc`: `chasi-node/slot-a:image`.
pub fn slot_ref(slot: SlotId) -> String {
    format!("chasi-node/slot-{}:image", slot.name())
}

/// The store ref of the image an apply imported and no slot holds yet.
pub const INCOMING_REF: &str = "chasi-node/incoming:image";

/// `path`, for messages.
pub(crate) fn show(path: &Path) -> String {
    path.display().to_string()
}

/// Either backend, chosen when the node is opened.
impl<T: Slots + ?Sized> Slots for Box<T> {
    fn kind(&self) -> &'static str {
        (**self).kind()
    }
    fn active(&self) -> Result<Option<SlotId>> {
        (**self).active()
    }
    fn booted(&self) -> Result<Option<SlotId>> {
        (**self).booted()
    }
    fn slot_dir(&self, slot: SlotId) -> PathBuf {
        (**self).slot_dir(slot)
    }
    fn read_tree(&self, slot: SlotId, f: &mut dyn FnMut(&Path) -> Result<()>) -> Result<()> {
        (**self).read_tree(slot, f)
    }
    fn space(&self, slot: SlotId) -> Result<Space> {
        (**self).space(slot)
    }
    fn store_space(&self, slot: SlotId) -> Result<Space> {
        (**self).store_space(slot)
    }
    fn check_image(&self, store: &Store, layers: &[Digest]) -> Result<()> {
        (**self).check_image(store, layers)
    }
    fn stage(&mut self, slot: SlotId, store: &Store, layers: &[Digest]) -> Result<StageReport> {
        (**self).stage(slot, store, layers)
    }
    fn switch(&mut self, slot: SlotId) -> Result<()> {
        (**self).switch(slot)
    }
    fn reboot_to_switch(&self) -> bool {
        (**self).reboot_to_switch()
    }
    fn rollback(&mut self, to: Option<SlotId>) -> Result<()> {
        (**self).rollback(to)
    }
    fn confirm(&mut self, slot: SlotId) -> Result<()> {
        (**self).confirm(slot)
    }
    fn verify(&self, slot: SlotId, store: &Store, layers: &[Digest]) -> Result<VerifyReport> {
        (**self).verify(slot, store, layers)
    }
}
