//! `chasi-runtime`: the node runtime. A site gets an image or a delta on offline media; `chasi-node apply`
//! puts it into the inactive of two slots and switches to it, or leaves the node on what it ran — never
//! between. The container images a cluster image carries (its `registry/`) go into the node's containerd
//! before the switch (`chasi-node images import` loads them on their own). One library, two fronts: the static `chasi-node` binary and `chasi node …` (both call
//! [`cli::run`]).
//!
//! # Node state
//!
//! Everything lives under `ROOT/var/lib/chasi-node/` (`ROOT` is `--root`, `/` on a real node):
//!
//! | path | what |
//! |---|---|
//! | `store/` | a chasi store ([`chasi_layers::Store`]): every image the node got, so a delta applies against what it has; refs `chasi-node/slot-a:image`, `chasi-node/slot-b:image` and `chasi-node/incoming:image` keep slot images from `gc` |
//! | `slots/a/`, `slots/b/` | the directory slots: each an image's flattened root file system |
//! | `slots/current` | symlink `a` or `b`: the active slot (absent until the first apply) |
//! | `slots.json` | the slot table ([`state::SlotTable`]): per slot its state (`empty`, `staging`, `staged`, `good`, `bad`) and image (name, root digest, manifest digest, platform, DiffIDs), `pending` and `fallback` |
//! | `journal.json` | the apply in progress ([`state::Journal`]): source, phase, slot, previous slot, image |
//! | `history.jsonl` | one JSON record per line ([`state::HistoryRecord`]): `time`, `event` (`applied`, `switched` (bootable: awaits its boot), `failed`, `rolled-back`, `recovered`, `rollback`, `mark-good`, `degraded`), `slot`, `image`, `source`, `reason` |
//! | `lock` | `flock`ed by the command that changes the node |
//! | `tmp/` | hooks being run and their output; emptied by every command that takes the lock |
//!
//! On a node booted from a disk exported with `--slots ab` ([`slots::boot::BootSlots`]), `ROOT/var/lib/chasi-node`
//! is the disk's data partition (mounted there by `chasi-node` when needed), `slots/` is absent, the two
//! slots are the partitions `chasi-a` and `chasi-b` (mounted at `mnt/a`, `mnt/b` while staged or
//! verified), and `grubenv` (GRUB's environment block, layout in `chasi_formats::slots`) says which
//! slot boots next: its rewrite is that backend's commit point.
//!
//! `slots.json` and `journal.json` are replaced atomically (temporary file, fsync, rename, fsync of the
//! directory); history lines are appended and synced. Which slot is active is never written in the table:
//! the backend's switch (the `current` link) is the one commit point.
//!
//! # Crash rules
//!
//! Apply records each phase in the journal before starting it (`pre-check`, `stage`, `images` (only when
//! the image carries container images), `switch`, `post-verify`). A slot is marked `staging` before it is emptied and `staged` only after its tree was
//! unpacked and `syncfs`ed, so a half-written slot is never switched to; the switch is a rename of a link.
//! The next command that takes the lock (`apply`, `status`, `rollback`, `mark-good`) reads a leftover
//! journal and recovers: interrupted before or while staging, or while importing container images, the
//! node never left the old slot (a `staging` slot stays marked incomplete; what containerd got stays
//! there, held by a lease that expires, and a re-run writes only what is missing); interrupted after the switch but before confirmation, it
//! switches back, since a slot that was never confirmed must not stay (the boot-counting rule of RAUC),
//! and keeps the new slot as `staged`. Re-running the same apply then resumes: the store is
//! content-addressed, so the import finds every layer it has and writes nothing again, and a `staged`
//! slot holding exactly the image is switched to without staging again. SIGKILL at random instants is
//! tested in `runtime/tests/cli.rs`. With bootable slots the slot being staged is first marked not
//! bootable in `grubenv`, so GRUB never boots a half-written root; an apply ends after the switch
//! (journal removed, `pending` kept) and a crash between the switch and that end is recovered as a
//! completed switch when the new slot is the one that booted.
//!
//! # Modules
//!
//! [`apply`] has the order of the phases and their checks, and the dry run; [`source`] finds, reads and
//! imports sources; [`content`] reads an image's tree and hooks; [`hooks`] runs hooks with a deadline;
//! [`slots`] is the backend trait with [`slots::dir::DirSlots`] and [`slots::boot::BootSlots`] ([`slot`] the two ids); [`verify`]
//! re-hashes a slot; [`state`] holds the table, journal and history formats, [`fsutil`] their atomic
//! writes and the lock; [`node`] holds `status`, `rollback`, `mark-good`, `verify` and the recovery;
//! [`event`] is what the engine reports; [`cli`] is both fronts' arguments and rendering; [`bootcheck`]
//! finishes an update on the boot it took effect; [`seed`] writes the state an A/B disk starts with;
//! [`images`] loads the container images an image carries into containerd (its API over
//! `containerd-client`);
//! [`install`] writes an installer's A/B disk onto a machine's disk.
//!
//! # JSON output (`--format json`), for the rollout tool
//!
//! Stable: fields are only ever added. A failure of any command is one line
//! `{"error":{"message","causes","kind"}}` on stdout (`kind`: `busy`, `disk_full`, `no_space`, `precheck`,
//! `rolled_back`, `corrupt`, `invalid_input`, `unavailable` (containerd does not answer), `io`, `error`)
//! and exit status 1.
//!
//! `apply` prints one line per phase as it ends: `{"phase","status","message",…}` with `status` `ok` or
//! `failed` (then `kind` as above) and, per phase:
//! - `recover` (only when a journal was found): `interrupted_phase`, `active_slot`;
//! - `pre-check`: `image` (`name`, `root`, `manifest`, `platform`, `diff_ids`), `slot`, `layers`,
//!   `layers_reused`, `hooks` (names that passed);
//! - `stage`: `slot`, `resumed` (the slot held the image already), `entries`, `bytes`;
//! - `images` (only when the image carries container images): `address`, `namespace`, `images` (each as
//!   in `images import` below), `blobs_written`, `bytes_written`; or `status` `skipped` with
//!   `container_images` (`--skip-images`);
//! - `switch`: `from` (slot or null), `to`;
//! - `post-verify`: `hooks`;
//! - `rollback` (after a failed post-verify): `to`, `reason`;
//! - `done`: `active_slot`, `image`, and `reboot_required: true` when the switch takes effect at the next
//!   boot (bootable slots: no post-verify then; `boot-check` runs it on that boot).
//!
//! `boot-check` prints, with `--format json`, one line per step: `post-verify` (`hooks`, or `status`
//! `failed` and `kind`) and `rollback` (`to`, `reason`, `reboot_required`) when they ran, and always
//! `{"phase":"boot-check","status","message","action"}` with `action` `none`, `confirmed`,
//! `rolled-back`, `fell-back` (then `failed_slot`) or `degraded`; it exits 1 unless `none` or
//! `confirmed`.
//!
//! A dry run takes no lock, recovers nothing and changes no state; it writes only the pre-check hooks it
//! runs, under `tmp/dry-run-PID/`, removed when it ends (and creates an empty node state on a machine that
//! had none).
//!
//! `apply --dry-run` prints one line `{"phase":"dry-run","status":"ok"|"failed",…}` with the fields of
//! [`apply::DryRun`]: `kind`, `source`, `image`, `slot`, `layers`, `layers_reused`, `import_bytes`,
//! `entries`, `files`, `bytes`, `estimated`, `space_needed`, `space_available`, `hooks_passed`,
//! `hooks_unread_layers`, `container_images`, `problems`.
//!
//! `images import` prints one document: `from`, `address`, `namespace`, `images` (each `name`, `digest`,
//! `media_type`, `blobs_written`, `blobs_present`, `bytes_written`, `record`: `created`, `updated` or
//! `unchanged`, `id`: the CRI's image id or null), `blobs_written`, `bytes_written`, `seconds`.
//!
//! `status` prints [`node::Status`]: `backend` (`directory` or `bootable`), `booted_slot`, `active_slot`, `pending`, `fallback_slot`,
//! `apply_in_progress` (`source`, `phase`, `slot` or null), `slots` (`a`, `b`: `state`, `dir`, `image`:
//! `name`, `digest`, `manifest`, `platform`, or null), `last_event` (a history record or null).
//! `verify` prints `slot`, `image`, `clean`, `checked`, `bytes`, `changed` (`path`, `what`), `missing`,
//! `extra`, and exits 1 unless clean. `rollback` prints `active_slot`; `mark-good` prints `active_slot`
//! and `changed`.
//!

pub mod apply;
pub mod bootcheck;
pub mod cli;
pub mod content;
pub mod error;
pub mod event;
pub mod fsutil;
pub mod hooks;
pub mod images;
pub mod install;
pub mod node;
pub mod seed;
pub mod slot;
pub mod slots;
pub mod source;
pub mod state;
pub mod verify;

pub use apply::{ApplyOptions, ApplyReport, DryRun};
pub use error::{NodeError, Result};
pub use event::{Event, Observer};
pub use hooks::{HookRunner, ProcessHooks};
pub use node::{Node, Status};
pub use slots::{SlotId, Slots};
