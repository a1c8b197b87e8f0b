//! `boot-check`: what a bootable node runs once per boot (from its init or a boot service) to finish an
//! update whose switch took effect at this boot.
//!
//! Three cases, told apart by the table's `pending` flag, the slot the update switched to (the other of
//! `fallback`) and the slot that booted:
//! - nothing pending: the booted slot is confirmed already; nothing to do (a boot of a slot that failed
//!   before is reported, never looped on);
//! - the pending slot booted: its image's post-verify hooks run with the usual deadline; they pass and the
//!   slot is confirmed (GRUB stops counting), or they fail and the node switches back (the caller
//!   reboots, `--reboot`);
//! - the other slot booted: the pending slot's boot never confirmed and GRUB fell back by itself; the
//!   pending slot is marked bad and the fallback made the choice again.

use crate::apply::{describe, ApplyOptions};
use crate::content::{Content, HookPhase};
use crate::error::{NodeError, Result};
use crate::event::{Event, Observer};
use crate::hooks::{self, HookRunner};
use crate::node::{slot_text, Node};
use crate::slots::{SlotId, Slots};
use crate::state::SlotState;
use serde::Serialize;

/// What `boot-check` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BootAction {
    /// Nothing was pending.
    None,
    /// The pending slot passed post-verify and is confirmed.
    Confirmed,
    /// The pending slot failed post-verify; the other slot boots next (reboot).
    RolledBack,
    /// The pending slot never confirmed its boot; the boot loader had fallen back.
    FellBack,
    /// The booted slot is not a good one and nothing better exists.
    Degraded,
}

/// The result of `boot-check`.
#[derive(Debug, Clone, Serialize)]
pub struct BootCheck {
    /// What was done.
    pub action: BootAction,
    /// The slot running now.
    pub booted_slot: SlotId,
    /// The slot the next boot takes.
    pub active_slot: Option<SlotId>,
    /// The node must reboot to run the active slot.
    pub reboot_required: bool,
    /// Why, for people.
    pub message: String,
}

impl<S: Slots> Node<S> {
    /// Finishes the update whose switch took effect at this boot (see the module documentation).
    pub fn boot_check(
        &mut self,
        opts: &ApplyOptions,
        runner: &mut dyn HookRunner,
        obs: &mut dyn Observer,
    ) -> Result<BootCheck> {
        self.require_lock()?;
        let booted = self.slots.booted()?.ok_or_else(|| NodeError::NoRollback {
            reason: "this system did not boot from a slot".into(),
        })?;
        let mut table = self.table()?;
        let result = |action, active, reboot_required, message: String| BootCheck {
            action,
            booted_slot: booted,
            active_slot: active,
            reboot_required,
            message,
        };
        if !table.pending {
            let rec = table.slot(booted);
            if rec.state == SlotState::Good {
                self.slots.confirm(booted)?;
                let msg = format!(
                    "slot {booted} runs {}, confirmed",
                    rec.image.as_ref().map_or_else(|| "?".into(), describe)
                );
                obs.event(
                    &Event::new("boot-check", "ok", msg.clone()).with("action", BootAction::None),
                );
                return Ok(result(BootAction::None, Some(booted), false, msg));
            }
            let msg = format!(
                "slot {booted} is {} and no confirmed slot is left to boot",
                crate::node::state_name(rec.state)
            );
            self.history(
                "degraded",
                Some(booted),
                rec.image.as_ref(),
                None,
                Some(msg.clone()),
            )?;
            obs.event(
                &Event::new("boot-check", "failed", msg.clone())
                    .with("action", BootAction::Degraded),
            );
            return Ok(result(
                BootAction::Degraded,
                self.slots.active()?,
                false,
                msg,
            ));
        }
        let pending = table.fallback.map_or(booted, SlotId::other);
        let image = table
            .slot(pending)
            .complete_image()
            .cloned()
            .ok_or(NodeError::EmptySlot { slot: pending })?;
        if booted != pending {
            table.slot_mut(pending).state = SlotState::Bad;
            table.pending = false;
            table.fallback = None;
            self.save_table(&table)?;
            self.slots.rollback(Some(booted))?;
            let msg = format!(
                "slot {pending} ({}) booted and was never confirmed; the boot loader fell back to slot {booted}",
                describe(&image)
            );
            self.history(
                "rolled-back",
                Some(pending),
                Some(&image),
                None,
                Some(msg.clone()),
            )?;
            obs.event(
                &Event::new("boot-check", "ok", msg.clone())
                    .with("action", BootAction::FellBack)
                    .with("failed_slot", pending),
            );
            return Ok(result(BootAction::FellBack, Some(booted), false, msg));
        }
        let content = Content::from_store(&self.store, &image.diff_ids, 4096)?;
        let env = self.hook_env(booted, &image, HookPhase::PostVerify);
        match hooks::run_all(
            runner,
            content.hooks(HookPhase::PostVerify),
            &env,
            opts.hook_timeout,
        ) {
            Ok(passed) => {
                self.slots.confirm(booted)?;
                let mut table = self.table()?;
                table.slot_mut(booted).state = SlotState::Good;
                table.pending = false;
                table.fallback = None;
                self.save_table(&table)?;
                self.history("applied", Some(booted), Some(&image), None, None)?;
                let msg = format!("slot {booted} runs {}, confirmed", describe(&image));
                obs.event(
                    &Event::new("post-verify", "ok", format!("slot {booted} confirmed"))
                        .with("hooks", passed),
                );
                obs.event(
                    &Event::new("boot-check", "ok", msg.clone())
                        .with("action", BootAction::Confirmed),
                );
                Ok(result(BootAction::Confirmed, Some(booted), false, msg))
            }
            Err(cause) => {
                let from = table.fallback;
                self.fall_back(booted, from)?;
                let reason = chasi_oci::error::chain(&cause);
                let msg = format!(
                    "post-verify of slot {booted} failed; {} boots next: {reason}",
                    slot_text(from)
                );
                self.history(
                    "rolled-back",
                    Some(booted),
                    Some(&image),
                    None,
                    Some(reason.clone()),
                )?;
                obs.event(
                    &Event::new("post-verify", "failed", reason.clone()).with("kind", cause.kind()),
                );
                obs.event(
                    &Event::new("rollback", "ok", format!("{} boots next", slot_text(from)))
                        .with("to", from)
                        .with("reason", reason)
                        .with("reboot_required", true),
                );
                Ok(result(BootAction::RolledBack, from, true, msg))
            }
        }
    }
}
