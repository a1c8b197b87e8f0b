//! `apply SOURCE`: pre-check → stage → images → switch → post-verify, each phase recorded in the journal before it
//! starts, and `apply --dry-run`, which reads the same things and writes nothing.
//!
//! Pre-check, in order, all before a slot is touched: the source is found and is a delta or an image;
//! its manifest for the node's platform is chosen (else it fails naming both platforms); a delta's base
//! must be the active slot's image; the store must have room for what the import adds; the import
//! verifies every blob and DiffID into the node's content-addressed store (it adds objects and one ref,
//! `chasi-node/incoming:image`, and changes no slot); the staged tree must fit in the free space plus
//! what emptying the inactive slot frees; the image's pre-check hooks must pass. Stage empties the
//! inactive slot and unpacks the layers from the store (each DiffID verified as it streams), unless that
//! slot already holds exactly this image, complete and synced (an interrupted apply resumes there).
//! Images, when the image carries container images (its `registry/`): they are imported from the staged
//! slot into containerd ([`crate::images`]); pre-check already made sure containerd answers (unless
//! `--skip-images`), and a failure here ends the apply before the switch. Switch is the backend's atomic
//! switch. Post-verify runs the image's post-verify hooks; a failure or a
//! timeout switches back and records why.

use crate::content::{Content, HookPhase};
use crate::error::{NodeError, Result};
use crate::event::{Event, Observer};
use crate::fsutil;
use crate::hooks::{self, HookEnv, HookRunner};
use crate::images::{self, ImportOptions, ImportReport};
use crate::node::{slot_text, Node};
use crate::slots::{SlotId, Slots, Space};
use crate::source::{Plan, Source, SourceKind, SourceReader};
use crate::state::{self, ImageRecord, Journal, Phase, SlotState, STATE_FORMAT};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Default deadline of one hook.
pub const DEFAULT_HOOK_TIMEOUT: Duration = Duration::from_secs(300);

/// How to apply.
#[derive(Debug, Clone)]
pub struct ApplyOptions {
    /// The deadline of each hook.
    pub hook_timeout: Duration,
    /// Where the container images the image carries go (`--containerd`, `--namespace`).
    pub containerd: ImportOptions,
    /// Do not import them (`--skip-images`).
    pub skip_images: bool,
}

impl Default for ApplyOptions {
    fn default() -> Self {
        ApplyOptions {
            hook_timeout: DEFAULT_HOOK_TIMEOUT,
            containerd: ImportOptions::default(),
            skip_images: false,
        }
    }
}

/// What an apply did.
#[derive(Debug, Clone, Serialize)]
pub struct ApplyReport {
    /// The slot now active.
    pub slot: SlotId,
    /// The slot it replaced.
    pub from: Option<SlotId>,
    /// The image it holds.
    pub image: ImageRecord,
    /// The slot already held the image completely (a resumed apply), so it was not staged again.
    pub resumed: bool,
    /// The switch takes effect at the next boot: the node must reboot, and post-verify runs then
    /// (`boot-check`).
    pub reboot_required: bool,
}

/// What `apply --dry-run` found.
#[derive(Debug, Clone, Serialize)]
pub struct DryRun {
    /// `image` or `delta`.
    pub kind: &'static str,
    /// The source found.
    pub source: PathBuf,
    /// The image it would install.
    pub image: ImageRecord,
    /// The slot it would stage.
    pub slot: SlotId,
    /// Layers of the image.
    pub layers: usize,
    /// Layers the node's store has already.
    pub layers_reused: usize,
    /// Bytes the store would gain.
    pub import_bytes: u64,
    /// Entries the slot would get.
    pub entries: u64,
    /// Regular files among them.
    pub files: u64,
    /// Bytes of file content.
    pub bytes: u64,
    /// The counts include layers only a delta rebuilds, counted by their tar length (an upper bound).
    pub estimated: bool,
    /// Bytes of free space the apply needs (import plus the staged tree on disk).
    pub space_needed: u64,
    /// Bytes available: free space plus what emptying the inactive slot frees.
    pub space_available: u64,
    /// The pre-check hooks that ran and passed.
    pub hooks_passed: Vec<String>,
    /// Hooks that could not be read (they are in layers a delta rebuilds).
    pub hooks_unread_layers: Vec<String>,
    /// Tagged container images the image's `registry/` carries (imported into containerd before
    /// the switch).
    pub container_images: u64,
    /// Why the apply would fail although every check ran (not enough space, containerd not
    /// reachable for the container images).
    pub problems: Vec<String>,
}

impl<S: Slots> Node<S> {
    /// Applies `source`; on success the new image is active and confirmed.
    pub fn apply(
        &mut self,
        source: &Path,
        opts: &ApplyOptions,
        runner: &mut dyn HookRunner,
        obs: &mut dyn Observer,
    ) -> Result<ApplyReport> {
        self.require_lock()?;
        self.check_no_pending_boot()?;
        let from = self.slots.active()?;
        let slot = from.map_or(SlotId::A, SlotId::other);
        let mut journal = Journal {
            format: STATE_FORMAT,
            source: source.to_path_buf(),
            phase: Phase::PreCheck,
            slot,
            from,
            image: None,
            started: state::now(),
        };
        journal.save(&self.paths.journal())?;
        let result = self.run_phases(&mut journal, opts, runner, obs);
        if let Err(e) = &result {
            let event = if matches!(e, NodeError::RolledBack { .. }) {
                "rolled-back"
            } else {
                "failed"
            };
            // On a full disk these writes can fail too; the first error is the one to report, and a
            // journal left behind is recovered by the next command.
            let _ = self.history(
                event,
                Some(slot),
                journal.image.as_ref(),
                Some(source),
                Some(chasi_oci::error::chain(e)),
            );
            let _ = fsutil::remove_durably(&self.paths.journal());
        }
        result
    }

    fn run_phases(
        &mut self,
        journal: &mut Journal,
        opts: &ApplyOptions,
        runner: &mut dyn HookRunner,
        obs: &mut dyn Observer,
    ) -> Result<ApplyReport> {
        let (slot, from) = (journal.slot, journal.from);
        let (plan, content) = self
            .pre_check(&journal.source.clone(), slot, opts, runner)
            .inspect_err(|e| obs.event(&failed("pre-check", e)))?;
        obs.event(
            &Event::new(
                "pre-check",
                "ok",
                format!("{} can be applied", journal.source.display()),
            )
            .with("image", &plan.image)
            .with("slot", slot)
            .with("layers", plan.layers.len())
            .with("layers_reused", plan.reused())
            .with("hooks", names(content.hooks(HookPhase::PreCheck))),
        );
        journal.image = Some(plan.image.clone());
        journal.phase = Phase::Stage;
        journal.save(&self.paths.journal())?;
        let resumed = self
            .stage(slot, &plan.image)
            .inspect_err(|e| obs.event(&failed("stage", e)))?;
        obs.event(
            &Event::new(
                "stage",
                "ok",
                if resumed {
                    format!("slot {slot} already holds the image")
                } else {
                    format!("slot {slot} staged")
                },
            )
            .with("slot", slot)
            .with("resumed", resumed)
            .with("entries", content.entries)
            .with("bytes", content.bytes),
        );
        if content.container_images > 0 {
            journal.phase = Phase::Images;
            journal.save(&self.paths.journal())?;
            self.import_images(slot, content.container_images, opts, obs)
                .inspect_err(|e| obs.event(&failed("images", e)))?;
        }
        journal.phase = Phase::Switch;
        journal.save(&self.paths.journal())?;
        let mut table = self.table()?;
        table.pending = true;
        table.fallback = from;
        self.save_table(&table)?;
        self.slots
            .switch(slot)
            .inspect_err(|e| obs.event(&failed("switch", e)))?;
        obs.event(
            &Event::new(
                "switch",
                "ok",
                format!("{} is now active", slot_text(Some(slot))),
            )
            .with("from", from)
            .with("to", slot),
        );
        if self.slots.reboot_to_switch() {
            // Post-verify runs on the next boot (`boot-check`); the table says which slot waits for it.
            let message = format!(
                "slot {slot} holds {} and boots next, once: reboot, then `boot-check` confirms it",
                describe(&plan.image)
            );
            return self.finish(journal, plan.image, resumed, true, message, obs);
        }
        journal.phase = Phase::PostVerify;
        journal.save(&self.paths.journal())?;
        let env = self.hook_env(slot, &plan.image, HookPhase::PostVerify);
        match hooks::run_all(
            runner,
            content.hooks(HookPhase::PostVerify),
            &env,
            opts.hook_timeout,
        ) {
            Ok(passed) => {
                obs.event(
                    &Event::new("post-verify", "ok", format!("slot {slot} confirmed"))
                        .with("hooks", passed),
                );
            }
            Err(cause) => {
                obs.event(&failed("post-verify", &cause));
                self.fall_back(slot, from)?;
                obs.event(
                    &Event::new("rollback", "ok", format!("back on {}", slot_text(from)))
                        .with("to", from)
                        .with("reason", chasi_oci::error::chain(&cause)),
                );
                return Err(NodeError::RolledBack {
                    slot,
                    back: slot_text(from),
                    cause: Box::new(cause),
                });
            }
        }
        self.slots.confirm(slot)?;
        let mut table = self.table()?;
        table.slot_mut(slot).state = SlotState::Good;
        table.pending = false;
        table.fallback = None;
        self.save_table(&table)?;
        let message = format!("slot {slot} runs {}", describe(&plan.image));
        self.finish(journal, plan.image, resumed, false, message, obs)
    }

    /// Records the end of an apply (`applied`, or `switched` when the switch waits for a reboot), removes
    /// the journal and reports `done`.
    fn finish(
        &mut self,
        journal: &Journal,
        image: ImageRecord,
        resumed: bool,
        reboot_required: bool,
        message: String,
        obs: &mut dyn Observer,
    ) -> Result<ApplyReport> {
        let slot = journal.slot;
        let event = if reboot_required {
            "switched"
        } else {
            "applied"
        };
        self.history(event, Some(slot), Some(&image), Some(&journal.source), None)?;
        fsutil::remove_durably(&self.paths.journal())?;
        let mut done = Event::new("done", "ok", message)
            .with("active_slot", slot)
            .with("image", &image);
        if reboot_required {
            done = done.with("reboot_required", true);
        }
        obs.event(&done);
        Ok(ApplyReport {
            slot,
            from: journal.from,
            image,
            resumed,
            reboot_required,
        })
    }

    fn pre_check(
        &mut self,
        given: &Path,
        slot: SlotId,
        opts: &ApplyOptions,
        runner: &mut dyn HookRunner,
    ) -> Result<(Plan, Content)> {
        let source = Source::find(given)?;
        let plan = source.plan(&self.store, &self.platform)?;
        self.check_base(&source, &plan)?;
        check_space(
            &self.slots.store_space(slot)?,
            "importing the image into the node store",
            plan.import_bytes(),
            0,
        )?;
        source.import(&self.store, &plan)?;
        self.slots.check_image(&self.store, &plan.image.diff_ids)?;
        let space = self.slots.space(slot)?;
        let content = Content::from_store(&self.store, &plan.image.diff_ids, space.block)?;
        check_space(
            &space,
            &format!("staging slot {slot}"),
            content.disk_bytes,
            space.reclaimable,
        )?;
        check_containerd(content.container_images, opts)?;
        let env = self.hook_env(slot, &plan.image, HookPhase::PreCheck);
        hooks::run_all(
            runner,
            content.hooks(HookPhase::PreCheck),
            &env,
            opts.hook_timeout,
        )?;
        Ok((plan, content))
    }

    /// The `images` phase: the staged slot's `registry/` into containerd (or skipped).
    fn import_images(
        &mut self,
        slot: SlotId,
        count: u64,
        opts: &ApplyOptions,
        obs: &mut dyn Observer,
    ) -> Result<()> {
        if opts.skip_images {
            obs.event(
                &Event::new(
                    "images",
                    "skipped",
                    format!("{count} container image(s) not imported (--skip-images)"),
                )
                .with("container_images", count),
            );
            return Ok(());
        }
        let mut report: Option<ImportReport> = None;
        self.slots.read_tree(slot, &mut |tree| {
            let dir = tree.join(images::REGISTRY_DIR);
            report = Some(images::import(&dir, &opts.containerd, &mut |_| {})?);
            Ok(())
        })?;
        let Some(r) = report else {
            return Ok(());
        };
        obs.event(
            &Event::new(
                "images",
                "ok",
                format!(
                    "{} container image(s) in containerd (namespace {}): {} blob(s), {} bytes written",
                    r.images.len(),
                    r.namespace,
                    r.blobs_written,
                    r.bytes_written
                ),
            )
            .with("address", &r.address)
            .with("namespace", &r.namespace)
            .with("images", &r.images)
            .with("blobs_written", r.blobs_written)
            .with("bytes_written", r.bytes_written),
        );
        Ok(())
    }

    /// A switch that waits for its boot must be booted (and confirmed or rolled back) first: the next
    /// apply would otherwise stage the slot the machine runs.
    fn check_no_pending_boot(&self) -> Result<()> {
        let table = self.table()?;
        if !self.slots.reboot_to_switch() || !table.pending {
            return Ok(());
        }
        let waiting = table.fallback.map_or_else(
            || "the new slot".to_string(),
            |f| format!("slot {}", f.other()),
        );
        Err(NodeError::BootDisk {
            detail: format!(
                "{waiting} waits for the boot that confirms it: reboot (boot-check then confirms it or rolls back), or `rollback`, before another apply"
            ),
        })
    }

    fn check_base(&self, source: &Source, plan: &Plan) -> Result<()> {
        let Some(base) = plan.base else {
            return Ok(());
        };
        let active = self.slots.active()?;
        let table = self.table()?;
        let holds = active.and_then(|s| table.slot(s).complete_image().cloned());
        if holds.as_ref().map(|i| i.root) == Some(base) {
            return Ok(());
        }
        Err(NodeError::WrongBase {
            delta: source.path.clone(),
            base,
            slot: active.map_or_else(|| "(none)".to_string(), |s| s.to_string()),
            active: holds.map_or_else(|| "nothing".to_string(), |i| describe(&i)),
        })
    }

    /// Stages `slot` with `image`; `true` when it held the image already (complete and synced).
    fn stage(&mut self, slot: SlotId, image: &ImageRecord) -> Result<bool> {
        let mut table = self.table()?;
        let rec = table.slot(slot);
        if rec.state == SlotState::Staged && rec.image.as_ref() == Some(image) {
            return Ok(true);
        }
        let row = table.slot_mut(slot);
        row.state = SlotState::Staging;
        row.image = Some(image.clone());
        self.save_table(&table)?;
        self.slots.stage(slot, &self.store, &image.diff_ids)?;
        self.pin(slot, image)?;
        table.slot_mut(slot).state = SlotState::Staged;
        self.save_table(&table)?;
        Ok(false)
    }

    /// Switches back after a failed post-verify and marks the slot bad.
    pub(crate) fn fall_back(&mut self, slot: SlotId, from: Option<SlotId>) -> Result<()> {
        self.slots.rollback(from)?;
        let mut table = self.table()?;
        table.slot_mut(slot).state = SlotState::Bad;
        table.pending = false;
        table.fallback = None;
        self.save_table(&table)
    }

    pub(crate) fn hook_env(&self, slot: SlotId, image: &ImageRecord, phase: HookPhase) -> HookEnv {
        HookEnv {
            node_root: self.paths.root.clone(),
            slot_dir: self.slots.slot_dir(slot),
            image_digest: image.root,
            phase,
        }
    }

    /// What `apply` would do, running the pre-checks and writing nothing.
    pub fn dry_run(
        &self,
        given: &Path,
        opts: &ApplyOptions,
        runner: &mut dyn HookRunner,
    ) -> Result<DryRun> {
        let source = Source::find(given)?;
        let plan = source.plan(&self.store, &self.platform)?;
        self.check_base(&source, &plan)?;
        source.verify()?;
        let slot = self.slots.active()?.map_or(SlotId::A, SlotId::other);
        let space = self.slots.space(slot)?;
        let reader = SourceReader::open(&source, &plan)?;
        let inputs = source.layer_inputs(&self.store, &plan, &reader)?;
        let content = Content::scan(inputs, space.block)?;
        let env = self.hook_env(slot, &plan.image, HookPhase::PreCheck);
        let hooks_passed = hooks::run_all(
            runner,
            content.hooks(HookPhase::PreCheck),
            &env,
            opts.hook_timeout,
        )?;
        let mut problems = Vec::new();
        if let Err(e) = check_containerd(content.container_images, opts) {
            problems.push(chasi_oci::error::chain(&e));
        }
        let store_space = self.slots.store_space(slot)?;
        // Where the store and the slots share a file system, the slot's figures include the import.
        let shared = store_space.path == space.path;
        if !shared {
            if let Err(e) = check_space(
                &store_space,
                "importing the image into the node store",
                plan.import_bytes(),
                0,
            ) {
                problems.push(e.to_string());
            }
        }
        let needed = content.disk_bytes + if shared { plan.import_bytes() } else { 0 };
        let available = space.available.saturating_add(space.reclaimable);
        if let Err(e) = check_space(
            &space,
            &format!("applying to slot {slot}"),
            needed,
            space.reclaimable,
        ) {
            problems.push(e.to_string());
        }
        Ok(DryRun {
            problems,
            container_images: content.container_images,
            kind: source.kind.name(),
            source: source.path.clone(),
            slot,
            layers: plan.layers.len(),
            layers_reused: plan.reused(),
            import_bytes: plan.import_bytes(),
            entries: content.entries,
            files: content.files,
            bytes: content.bytes,
            estimated: content.estimated,
            space_needed: needed,
            space_available: available,
            hooks_passed,
            hooks_unread_layers: if source.kind == SourceKind::Delta {
                content.unread.iter().map(|d| d.to_string()).collect()
            } else {
                Vec::new()
            },
            image: plan.image,
        })
    }
}

/// An image that carries container images needs containerd (unless `--skip-images`): checked before
/// anything is staged, so the apply fails while the node is untouched.
fn check_containerd(count: u64, opts: &ApplyOptions) -> Result<()> {
    if count == 0 || opts.skip_images {
        return Ok(());
    }
    let c = &opts.containerd;
    match images::containerd::Containerd::connect(&c.address, &c.namespace) {
        Ok(_) => Ok(()),
        Err(e @ NodeError::ContainerdUnreachable { .. }) => Err(NodeError::ImagesUnimportable {
            count,
            address: c.address.clone(),
            cause: Box::new(e),
        }),
        Err(e) => Err(e),
    }
}

fn check_space(space: &Space, what: &str, needed: u64, reclaimable: u64) -> Result<()> {
    let available = space.available.saturating_add(reclaimable);
    if needed > available {
        return Err(NodeError::NoSpace {
            path: space.path.clone(),
            what: what.to_string(),
            needed,
            available,
        });
    }
    Ok(())
}

fn failed(phase: &'static str, e: &NodeError) -> Event {
    Event::new(phase, "failed", chasi_oci::error::chain(e)).with("kind", e.kind())
}

fn names(hooks: &[crate::content::Hook]) -> Vec<String> {
    hooks.iter().map(|h| h.name.clone()).collect()
}

/// `name (digest)` or the digest.
pub fn describe(i: &ImageRecord) -> String {
    match &i.name {
        Some(n) => format!("{n} ({})", i.root),
        None => i.root.to_string(),
    }
}
