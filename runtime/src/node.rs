//! A node: its state directory, store, slots and lock, and the commands that are not `apply`
//! (`status`, `rollback`, `mark-good`, `verify`) plus the recovery of an interrupted apply.

use crate::error::{IoCtx, NodeError, Result};
use crate::event::{Event, Observer};
use crate::fsutil::NodeLock;
use crate::slots::boot::{self, BootSlots};
use crate::slots::dir::DirSlots;
use crate::slots::{slot_ref, SlotId, Slots};
use crate::state::{
    self, HistoryRecord, ImageRecord, Journal, NodePaths, Phase, SlotState, SlotTable,
};
use crate::verify::VerifyReport;
use chasi_layers::Store;
use chasi_oci::Platform;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

/// A node opened for a command.
pub struct Node<S: Slots = DirSlots> {
    pub(crate) paths: NodePaths,
    pub(crate) store: Store,
    pub(crate) slots: S,
    pub(crate) platform: Platform,
    /// `None` when another command holds the lock (read-only commands still run).
    pub(crate) lock: Option<NodeLock>,
}

/// What a command needs of the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// The lock (else [`NodeError::Busy`]), and recovery of an interrupted apply (`apply`, `rollback`,
    /// `mark-good`).
    Change,
    /// The lock when it is free, then recovery; without it (an apply is running) read as is (`status`,
    /// `verify`).
    Read,
    /// No lock and no recovery: change nothing (`apply --dry-run`).
    Inspect,
}

impl Node<DirSlots> {
    /// Opens (creating when needed) the node under `root` with directory slots, for `access`.
    pub fn open(root: &Path, access: Access, obs: &mut dyn Observer) -> Result<Node<DirSlots>> {
        let paths = NodePaths::new(root);
        paths.create()?;
        let slots = DirSlots::open(&paths.slots())?;
        Node::with_slots(paths, slots, Platform::host(), access, obs)
    }
}

impl Node<Box<dyn Slots>> {
    /// Opens the node under `root` with the backend it runs on: the bootable slots of an A/B disk when
    /// the system was booted from one (`chasi.slot=` on the kernel command line; the data partition is
    /// mounted at the state directory if needed), else directory slots.
    pub fn open_any(root: &Path, access: Access, obs: &mut dyn Observer) -> Result<Self> {
        let paths = NodePaths::new(root);
        let slots: Box<dyn Slots> = if boot::booted_from_slots(root) {
            Box::new(BootSlots::discover(root, &paths.state)?)
        } else {
            paths.create()?;
            Box::new(DirSlots::open(&paths.slots())?)
        };
        Node::with_slots(paths, slots, Platform::host(), access, obs)
    }
}

impl<S: Slots> Node<S> {
    /// Opens the node at `paths` with `slots` for a node of `platform`.
    pub fn with_slots(
        paths: NodePaths,
        slots: S,
        platform: Platform,
        access: Access,
        obs: &mut dyn Observer,
    ) -> Result<Node<S>> {
        paths.create()?;
        let lock = match access {
            Access::Inspect => None,
            _ => match NodeLock::acquire(&paths.lock()) {
                Ok(l) => Some(l),
                Err(NodeError::Busy { .. }) if access == Access::Read => None,
                Err(e) => return Err(e),
            },
        };
        let store = Store::open(paths.store())?;
        let mut node = Node {
            paths,
            store,
            slots,
            platform,
            lock,
        };
        if node.lock.is_some() {
            clear_dir(&node.paths.tmp())?;
            crate::fsutil::remove_stale_temps(&node.paths.state)?;
            crate::fsutil::remove_stale_temps(&node.paths.slots())?;
            node.recover(obs)?;
        }
        Ok(node)
    }

    /// The node's store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The node's slots.
    pub fn slots(&self) -> &S {
        &self.slots
    }

    /// The registry directory the running slot carries (`registry/` at its root): where `images
    /// import` reads by default.
    pub fn running_registry(&self) -> Result<std::path::PathBuf> {
        let slot = self.slots.booted()?.ok_or_else(|| NodeError::BadSource {
            path: self.paths.root.clone(),
            reason:
                "no slot runs on this node yet, so it carries no container images; give --from DIR"
                    .into(),
        })?;
        Ok(self.slots.slot_dir(slot).join(crate::images::REGISTRY_DIR))
    }

    /// The paths of its state.
    pub fn paths(&self) -> &NodePaths {
        &self.paths
    }

    pub(crate) fn require_lock(&self) -> Result<()> {
        match self.lock {
            Some(_) => Ok(()),
            None => Err(NodeError::Busy {
                path: self.paths.lock(),
            }),
        }
    }

    pub(crate) fn table(&self) -> Result<SlotTable> {
        SlotTable::load(&self.paths.table())
    }

    pub(crate) fn save_table(&self, t: &SlotTable) -> Result<()> {
        t.save(&self.paths.table())
    }

    pub(crate) fn history(
        &self,
        event: &str,
        slot: Option<SlotId>,
        image: Option<&ImageRecord>,
        source: Option<&Path>,
        reason: Option<String>,
    ) -> Result<()> {
        state::record(
            &self.paths,
            &HistoryRecord {
                time: state::now(),
                event: event.to_string(),
                slot,
                image: image.map(|i| i.root),
                source: source.map(Path::to_path_buf),
                reason,
            },
        )
    }

    /// Finishes what an interrupted apply left (journal present, lock held): a node switched to a slot
    /// that was never confirmed goes back to the slot it came from; the unconfirmed slot is kept as staged
    /// (complete and synced) so the same apply resumes without staging again. Returns what was done.
    pub fn recover(&mut self, obs: &mut dyn Observer) -> Result<Option<String>> {
        self.require_lock()?;
        let Some(j) = Journal::load(&self.paths.journal())? else {
            return Ok(None);
        };
        let mut table = self.table()?;
        let active = self.slots.active()?;
        let image = j.image.as_ref();
        let done = match j.phase {
            Phase::PreCheck | Phase::Stage | Phase::Images => format!(
                "an apply of {} was interrupted in {}; the node stays on {}",
                j.source.display(),
                j.phase.name(),
                slot_text(active)
            ),
            Phase::Switch | Phase::PostVerify => {
                let confirmed = table.slot(j.slot).state == SlotState::Good && !table.pending;
                if confirmed {
                    format!("the apply of {} had completed", j.source.display())
                } else if self.slots.reboot_to_switch() && self.slots.booted()? == Some(j.slot) {
                    // Killed after the switch, and the reboot happened: the slot waits for boot-check.
                    table.pending = true;
                    table.fallback = j.from;
                    self.save_table(&table)?;
                    format!(
                        "the apply of {} had switched to slot {}, which booted and awaits boot-check",
                        j.source.display(),
                        j.slot
                    )
                } else if active == Some(j.slot) {
                    self.slots.rollback(j.from)?;
                    table.slot_mut(j.slot).state = SlotState::Staged;
                    table.pending = false;
                    table.fallback = None;
                    self.save_table(&table)?;
                    format!(
                        "an apply of {} was interrupted in {} before slot {} was confirmed; back on {}",
                        j.source.display(),
                        j.phase.name(),
                        j.slot,
                        slot_text(j.from)
                    )
                } else {
                    table.pending = false;
                    table.fallback = None;
                    self.save_table(&table)?;
                    format!(
                        "an apply of {} was interrupted before its switch; the node stays on {}",
                        j.source.display(),
                        slot_text(active)
                    )
                }
            }
        };
        self.history(
            "recovered",
            Some(j.slot),
            image,
            Some(&j.source),
            Some(done.clone()),
        )?;
        crate::fsutil::remove_durably(&self.paths.journal())?;
        obs.event(
            &Event::new("recover", "ok", done.clone())
                .with("interrupted_phase", j.phase.name())
                .with("active_slot", self.slots.active()?),
        );
        Ok(Some(done))
    }

    /// The node's status.
    pub fn status(&self) -> Result<Status> {
        let table = self.table()?;
        let mut slots = BTreeMap::new();
        for s in [SlotId::A, SlotId::B] {
            let r = table.slot(s);
            slots.insert(
                s.name().to_string(),
                SlotStatus {
                    state: r.state,
                    dir: self.slots.slot_dir(s).display().to_string(),
                    image: r.image.as_ref().map(ImageStatus::of),
                },
            );
        }
        let journal = Journal::load(&self.paths.journal())?;
        Ok(Status {
            backend: self.slots.kind(),
            booted_slot: self.slots.booted()?,
            active_slot: self.slots.active()?,
            pending: table.pending,
            fallback_slot: table.fallback,
            apply_in_progress: journal.map(|j| ApplyInProgress {
                source: j.source.display().to_string(),
                phase: j.phase.name(),
                slot: j.slot,
            }),
            slots,
            last_event: state::history(&self.paths)?.pop(),
        })
    }

    /// Switches back to the other slot, which must hold a complete image that did not fail.
    pub fn rollback(&mut self) -> Result<SlotId> {
        self.require_lock()?;
        let mut table = self.table()?;
        let active = self.slots.active()?.ok_or_else(|| NodeError::NoRollback {
            reason: "no slot is active on this node".into(),
        })?;
        let to = active.other();
        let rec = table.slot(to).clone();
        let image = rec.complete_image().ok_or_else(|| NodeError::NoRollback {
            reason: format!(
                "slot {to} holds no complete image ({})",
                state_name(rec.state)
            ),
        })?;
        if rec.state == SlotState::Bad {
            return Err(NodeError::NoRollback {
                reason: format!("slot {to} failed its post-verify"),
            });
        }
        self.slots.rollback(Some(to))?;
        self.slots.confirm(to)?;
        table.pending = false;
        table.fallback = None;
        self.save_table(&table)?;
        self.history("rollback", Some(to), Some(image), None, None)?;
        Ok(to)
    }

    /// Confirms the active slot; `false` when it was confirmed already.
    pub fn mark_good(&mut self) -> Result<(SlotId, bool)> {
        self.require_lock()?;
        let mut table = self.table()?;
        let active = self.slots.active()?.ok_or_else(|| NodeError::NoRollback {
            reason: "no slot is active on this node, nothing to confirm".into(),
        })?;
        let rec = table.slot(active).clone();
        if rec.complete_image().is_none() {
            return Err(NodeError::EmptySlot { slot: active });
        }
        if !table.pending && rec.state == SlotState::Good {
            return Ok((active, false));
        }
        self.slots.confirm(active)?;
        table.slot_mut(active).state = SlotState::Good;
        table.pending = false;
        table.fallback = None;
        self.save_table(&table)?;
        self.history("mark-good", Some(active), rec.image.as_ref(), None, None)?;
        Ok((active, true))
    }

    /// Re-hashes the active slot against its image.
    pub fn verify(&self) -> Result<(SlotId, ImageRecord, VerifyReport)> {
        let table = self.table()?;
        let active = self.slots.active()?.ok_or_else(|| NodeError::NoRollback {
            reason: "no slot is active on this node, nothing to verify".into(),
        })?;
        let image = table
            .slot(active)
            .complete_image()
            .cloned()
            .ok_or(NodeError::EmptySlot { slot: active })?;
        let report = self.slots.verify(active, &self.store, &image.diff_ids)?;
        Ok((active, image, report))
    }

    /// Keeps the slot's image in the store (a ref per slot, so `gc` never takes it).
    pub(crate) fn pin(&self, slot: SlotId, image: &ImageRecord) -> Result<()> {
        self.store.set_ref(&slot_ref(slot), &image.manifest)?;
        Ok(())
    }
}

/// `status`, as printed with `--format json`.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    /// The slot backend (`directory`).
    pub backend: &'static str,
    /// The slot the running system came from.
    pub booted_slot: Option<SlotId>,
    /// The active slot.
    pub active_slot: Option<SlotId>,
    /// The active slot is not confirmed yet.
    pub pending: bool,
    /// Where an unconfirmed slot falls back to.
    pub fallback_slot: Option<SlotId>,
    /// The apply another process is running now (or one left behind while the lock was held).
    pub apply_in_progress: Option<ApplyInProgress>,
    /// `a` and `b`.
    pub slots: BTreeMap<String, SlotStatus>,
    /// The last history record.
    pub last_event: Option<HistoryRecord>,
}

/// An apply in progress.
#[derive(Debug, Clone, Serialize)]
pub struct ApplyInProgress {
    /// Its source.
    pub source: String,
    /// Its phase.
    pub phase: &'static str,
    /// The slot it stages.
    pub slot: SlotId,
}

/// One slot in `status`.
#[derive(Debug, Clone, Serialize)]
pub struct SlotStatus {
    /// `empty`, `staging` (incomplete), `staged`, `good` or `bad`.
    pub state: SlotState,
    /// Its tree.
    pub dir: String,
    /// Its image.
    pub image: Option<ImageStatus>,
}

/// An image in `status`.
#[derive(Debug, Clone, Serialize)]
pub struct ImageStatus {
    /// Its name, when it had one.
    pub name: Option<String>,
    /// Its root digest.
    pub digest: String,
    /// The node platform's manifest digest.
    pub manifest: String,
    /// Its platform.
    pub platform: String,
}

impl ImageStatus {
    fn of(i: &ImageRecord) -> ImageStatus {
        ImageStatus {
            name: i.name.clone(),
            digest: i.root.to_string(),
            manifest: i.manifest.to_string(),
            platform: i.platform.clone(),
        }
    }
}

pub(crate) fn slot_text(s: Option<SlotId>) -> String {
    s.map_or_else(|| "no slot".to_string(), |s| format!("slot {s}"))
}

pub(crate) fn state_name(s: SlotState) -> &'static str {
    match s {
        SlotState::Empty => "empty",
        SlotState::Staging => "incomplete",
        SlotState::Staged => "staged",
        SlotState::Good => "good",
        SlotState::Bad => "bad",
    }
}

fn clear_dir(dir: &Path) -> Result<()> {
    match fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(NodeError::io("empty", dir, e));
        }
        _ => {}
    }
    fs::create_dir_all(dir).ctx("create", dir)
}
