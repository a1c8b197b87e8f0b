//! Every phase of apply through the `Slots` and `HookRunner` traits, with recording fakes for the parts
//! that touch the OS: the order of calls, what a failure at each phase leaves, recovery and resume.

mod common;

use chasi_layers::{Digest, Store};
use chasi_oci::Platform;
use chasi_runtime::content::Hook;
use chasi_runtime::event::Collect;
use chasi_runtime::hooks::{HookEnv, HookOutcome, HookRunner};
use chasi_runtime::node::Access;
use chasi_runtime::slots::{SlotId, Slots, Space, StageReport};
use chasi_runtime::state::{Journal, NodePaths, Phase, SlotState, SlotTable, STATE_FORMAT};
use chasi_runtime::verify::VerifyReport;
use chasi_runtime::{ApplyOptions, Node, NodeError};
use common::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Slots that only record what the engine asks.
struct FakeSlots {
    dir: PathBuf,
    active: Option<SlotId>,
    calls: Vec<String>,
    fail_stage: bool,
    available: u64,
    /// A bootable backend: switches take effect at the next boot, and `booted` is what booted.
    reboot: bool,
    booted: Option<SlotId>,
}

impl FakeSlots {
    fn new(dir: &Path) -> FakeSlots {
        FakeSlots {
            dir: dir.to_path_buf(),
            active: None,
            calls: Vec::new(),
            fail_stage: false,
            available: u64::MAX / 4,
            reboot: false,
            booted: None,
        }
    }
    fn bootable(dir: &Path, active: SlotId, booted: SlotId) -> FakeSlots {
        FakeSlots {
            active: Some(active),
            reboot: true,
            booted: Some(booted),
            ..FakeSlots::new(dir)
        }
    }
}

impl Slots for FakeSlots {
    fn kind(&self) -> &'static str {
        "fake"
    }
    fn active(&self) -> chasi_runtime::Result<Option<SlotId>> {
        Ok(self.active)
    }
    fn booted(&self) -> chasi_runtime::Result<Option<SlotId>> {
        Ok(if self.reboot {
            self.booted
        } else {
            self.active
        })
    }
    fn reboot_to_switch(&self) -> bool {
        self.reboot
    }
    fn slot_dir(&self, slot: SlotId) -> PathBuf {
        self.dir.join(slot.name())
    }
    fn space(&self, _slot: SlotId) -> chasi_runtime::Result<Space> {
        Ok(Space {
            path: self.dir.clone(),
            available: self.available,
            reclaimable: 0,
            block: 4096,
        })
    }
    fn stage(
        &mut self,
        slot: SlotId,
        _store: &Store,
        layers: &[Digest],
    ) -> chasi_runtime::Result<StageReport> {
        self.calls.push(format!("stage {slot} {}", layers.len()));
        if self.fail_stage {
            return Err(NodeError::Slot {
                slot,
                detail: "injected failure".into(),
            });
        }
        Ok(StageReport::default())
    }
    fn switch(&mut self, slot: SlotId) -> chasi_runtime::Result<()> {
        self.calls.push(format!("switch {slot}"));
        self.active = Some(slot);
        Ok(())
    }
    fn rollback(&mut self, to: Option<SlotId>) -> chasi_runtime::Result<()> {
        self.calls.push(format!(
            "rollback {}",
            to.map_or("none".to_string(), |s| s.to_string())
        ));
        self.active = to;
        Ok(())
    }
    fn confirm(&mut self, slot: SlotId) -> chasi_runtime::Result<()> {
        self.calls.push(format!("confirm {slot}"));
        Ok(())
    }
    fn verify(
        &self,
        _slot: SlotId,
        _store: &Store,
        _layers: &[Digest],
    ) -> chasi_runtime::Result<VerifyReport> {
        Ok(VerifyReport::default())
    }
}

/// Hooks that record their environment and fail when their name says so.
#[derive(Default)]
struct FakeHooks {
    runs: Vec<(String, String, PathBuf, Digest)>,
}

impl HookRunner for FakeHooks {
    fn run(
        &mut self,
        hook: &Hook,
        env: &HookEnv,
        _timeout: std::time::Duration,
    ) -> chasi_runtime::Result<HookOutcome> {
        self.runs.push((
            env.phase.name().to_string(),
            hook.name.clone(),
            env.slot_dir.clone(),
            env.image_digest,
        ));
        Ok(if hook.name.contains("fail") {
            HookOutcome::Failed("exited with status 1".into())
        } else {
            HookOutcome::Passed
        })
    }
}

struct Fixture {
    tmp: tempfile::TempDir,
    build: Store,
}

impl Fixture {
    fn new() -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        let build = Store::open(tmp.path().join("build")).unwrap();
        Fixture { tmp, build }
    }
    fn path(&self) -> &Path {
        self.tmp.path()
    }
    fn node(&self) -> Node<FakeSlots> {
        let paths = NodePaths::new(&self.path().join("node"));
        let slots = FakeSlots::new(&self.path().join("slots"));
        Node::with_slots(
            paths,
            slots,
            Platform::host(),
            Access::Change,
            &mut Collect::default(),
        )
        .unwrap()
    }
    fn reopen(&self, slots: FakeSlots) -> Node<FakeSlots> {
        let paths = NodePaths::new(&self.path().join("node"));
        Node::with_slots(
            paths,
            slots,
            Platform::host(),
            Access::Change,
            &mut Collect::default(),
        )
        .unwrap()
    }
    /// `app:N` with `extra` layers on top, saved as `app-N.tar`.
    fn archive(&self, n: u32, extra: &[Vec<u8>]) -> PathBuf {
        let v = versions(10_000);
        let mut layers = if n == 1 { v.v1 } else { v.v2 };
        layers.extend_from_slice(extra);
        let name = format!("app:{n}");
        image(&self.build, &name, &host(), &layers);
        save(&self.build, &name, self.path(), &format!("app-{n}.tar"))
    }
    fn table(&self) -> SlotTable {
        SlotTable::load(&NodePaths::new(&self.path().join("node")).table()).unwrap()
    }
}

fn apply(
    node: &mut Node<FakeSlots>,
    src: &Path,
    hooks: &mut FakeHooks,
) -> (
    chasi_runtime::Result<chasi_runtime::ApplyReport>,
    Vec<String>,
) {
    let mut events = Collect::default();
    let r = node.apply(src, &ApplyOptions::default(), hooks, &mut events);
    let phases = events
        .0
        .iter()
        .map(|e| format!("{} {}", e.phase, e.status))
        .collect();
    (r, phases)
}

#[test]
fn full_apply_runs_every_phase_in_order() {
    let f = Fixture::new();
    let src = f.archive(
        1,
        &[hooks(&[
            ("pre-check", "10-ok", "#!/bin/sh\n"),
            ("post-verify", "20-ok", "#!/bin/sh\n"),
        ])],
    );
    let mut node = f.node();
    let mut h = FakeHooks::default();
    let (r, phases) = apply(&mut node, &src, &mut h);
    let report = r.unwrap();
    assert_eq!(report.slot, SlotId::A);
    assert_eq!(report.from, None);
    assert_eq!(
        phases,
        [
            "pre-check ok",
            "stage ok",
            "switch ok",
            "post-verify ok",
            "done ok"
        ]
    );
    assert_eq!(node.slots().calls, ["stage a 2", "switch a", "confirm a"]);
    let names: Vec<(&str, &str)> = h
        .runs
        .iter()
        .map(|r| (r.0.as_str(), r.1.as_str()))
        .collect();
    assert_eq!(names, [("pre-check", "10-ok"), ("post-verify", "20-ok")]);
    assert!(h
        .runs
        .iter()
        .all(|r| r.2.ends_with("slots/a") && r.3 == report.image.root));
    let t = f.table();
    assert_eq!(t.a.state, SlotState::Good);
    assert!(!t.pending);
    assert!(!node.paths().journal().exists());
    assert_eq!(
        node.store().get_ref("chasi-node/slot-a:image").unwrap(),
        report.image.manifest
    );
}

#[test]
fn failing_pre_check_hook_touches_no_slot() {
    let f = Fixture::new();
    let good = f.archive(1, &[]);
    let bad = f.archive(
        2,
        &[hooks(&[("pre-check", "50-fail", "#!/bin/sh\nexit 1\n")])],
    );
    let mut node = f.node();
    let mut h = FakeHooks::default();
    apply(&mut node, &good, &mut h).0.unwrap();
    let before = f.table();
    let (r, phases) = apply(&mut node, &bad, &mut h);
    let e = r.unwrap_err();
    assert!(
        matches!(&e, NodeError::Hook { name, .. } if name == "50-fail"),
        "{e}"
    );
    assert_eq!(phases, ["pre-check failed"]);
    assert_eq!(node.slots().calls, ["stage a 1", "switch a", "confirm a"]);
    assert_eq!(f.table(), before);
    assert!(!node.paths().journal().exists());
    let hist = chasi_runtime::state::history(node.paths()).unwrap();
    assert_eq!(hist.last().unwrap().event, "failed");
    assert!(hist
        .last()
        .unwrap()
        .reason
        .as_ref()
        .unwrap()
        .contains("50-fail"));
}

#[test]
fn failing_post_verify_switches_back_and_marks_the_slot_bad() {
    let f = Fixture::new();
    let v1 = f.archive(1, &[]);
    let v2 = f.archive(
        2,
        &[hooks(&[("post-verify", "90-fail", "#!/bin/sh\nexit 1\n")])],
    );
    let mut node = f.node();
    let mut h = FakeHooks::default();
    apply(&mut node, &v1, &mut h).0.unwrap();
    let (r, phases) = apply(&mut node, &v2, &mut h);
    let e = r.unwrap_err();
    assert!(
        matches!(
            e,
            NodeError::RolledBack {
                slot: SlotId::B,
                ..
            }
        ),
        "{e}"
    );
    assert_eq!(
        phases,
        [
            "pre-check ok",
            "stage ok",
            "switch ok",
            "post-verify failed",
            "rollback ok"
        ]
    );
    assert_eq!(
        node.slots().calls[3..],
        ["stage b 3", "switch b", "rollback a"]
    );
    let t = f.table();
    assert_eq!(
        (t.a.state, t.b.state, t.pending),
        (SlotState::Good, SlotState::Bad, false)
    );
    let last = chasi_runtime::state::history(node.paths())
        .unwrap()
        .pop()
        .unwrap();
    assert_eq!(last.event, "rolled-back");
    assert!(last.reason.unwrap().contains("90-fail"));
    // A bad slot is no rollback target.
    assert!(matches!(node.rollback(), Err(NodeError::NoRollback { .. })));
}

#[test]
fn wrong_platform_is_refused_before_anything() {
    let f = Fixture::new();
    let other = if host().contains("amd64") {
        "linux/arm64"
    } else {
        "linux/amd64"
    };
    image(&f.build, "foreign:1", other, &versions(100).v1);
    let src = save(&f.build, "foreign:1", f.path(), "foreign.tar");
    let mut node = f.node();
    let (r, _) = apply(&mut node, &src, &mut FakeHooks::default());
    let e = r.unwrap_err();
    assert!(matches!(e, NodeError::WrongPlatform { .. }), "{e}");
    assert!(e.to_string().contains(other), "{e}");
    assert!(node.slots().calls.is_empty());
    assert!(node.store().list_layers().unwrap().is_empty());
}

/// An image whose sealer extension has `type`.
fn typed_image(f: &Fixture, name: &str, image_type: &str, tars: &[Vec<u8>]) {
    let ext = format!(r#"{{"schemaVersion":"v1alpha1","type":"{image_type}"}}"#);
    let annotations = BTreeMap::from([("sealer.image.extension".to_string(), ext)]);
    annotated_image(&f.build, name, &host(), tars, &annotations);
}

#[test]
fn an_app_installer_image_is_refused_before_anything_as_sealer_upgrade_does() {
    let f = Fixture::new();
    let v = versions(100);
    typed_image(&f, "apps:1", "app-installer", &v.v1);
    let src = save(&f.build, "apps:1", f.path(), "apps.tar");
    let mut node = f.node();
    let (r, _) = apply(&mut node, &src, &mut FakeHooks::default());
    let e = r.unwrap_err();
    assert!(matches!(e, NodeError::AppImage { .. }), "{e}");
    assert_eq!(e.kind(), "precheck");
    assert_eq!(
        e.to_string(),
        format!(
            "image {} is an app-installer image (the type in its sealer.image.extension): it \
             holds applications for a running cluster, not a system a slot can run; apply a \
             kube-installer or OS image",
            src.display()
        )
    );
    assert!(node.slots().calls.is_empty());
    assert!(node.store().list_layers().unwrap().is_empty());
    // A cluster image (and an image without an extension, the other tests) applies.
    typed_image(&f, "cluster:1", "kube-installer", &v.v1);
    let src = save(&f.build, "cluster:1", f.path(), "cluster.tar");
    let (r, _) = apply(&mut node, &src, &mut FakeHooks::default());
    r.expect("a kube-installer image applies");
    // A delta whose target is an app image is refused too, before it is imported.
    typed_image(&f, "cluster:2", "app-installer", &v.v2);
    let d = delta(&f.build, "cluster:1", "cluster:2", f.path(), "d.tar");
    let (r, _) = apply(&mut node, &d, &mut FakeHooks::default());
    let e = r.unwrap_err();
    assert!(matches!(e, NodeError::AppImage { .. }), "{e}");
    assert!(
        e.to_string()
            .starts_with("image cluster:2 (the target of delta "),
        "{e}"
    );
}

#[test]
fn delta_needs_the_active_image_as_base() {
    let f = Fixture::new();
    let v1 = f.archive(1, &[]);
    f.archive(2, &[]);
    let d = delta(&f.build, "app:1", "app:2", f.path(), "d.tar");
    let mut node = f.node();
    let (r, _) = apply(&mut node, &d, &mut FakeHooks::default());
    let e = r.unwrap_err();
    assert!(matches!(e, NodeError::WrongBase { .. }), "{e}");
    assert!(e.to_string().contains("nothing"), "{e}");
    apply(&mut node, &v1, &mut FakeHooks::default()).0.unwrap();
    let report = apply(&mut node, &d, &mut FakeHooks::default()).0.unwrap();
    assert_eq!(report.slot, SlotId::B);
    assert_eq!(report.image.name.as_deref(), Some("app:2"));
}

#[test]
fn too_little_space_names_both_numbers() {
    let f = Fixture::new();
    let src = f.archive(1, &[]);
    let paths = NodePaths::new(&f.path().join("node"));
    let mut slots = FakeSlots::new(&f.path().join("slots"));
    slots.available = 1000;
    let mut node = Node::with_slots(
        paths,
        slots,
        Platform::host(),
        Access::Change,
        &mut Collect::default(),
    )
    .unwrap();
    let (r, phases) = apply(&mut node, &src, &mut FakeHooks::default());
    let e = r.unwrap_err().to_string();
    assert!(
        e.contains("needs") && e.contains("1000 bytes are available"),
        "{e}"
    );
    assert_eq!(phases, ["pre-check failed"]);
    assert!(node.slots().calls.is_empty());
}

#[test]
fn failed_stage_leaves_the_old_slot_active_and_marks_the_slot_incomplete() {
    let f = Fixture::new();
    let v1 = f.archive(1, &[]);
    let v2 = f.archive(2, &[]);
    let mut node = f.node();
    apply(&mut node, &v1, &mut FakeHooks::default()).0.unwrap();
    let mut slots = FakeSlots::new(&f.path().join("slots"));
    slots.active = Some(SlotId::A);
    slots.fail_stage = true;
    drop(node);
    let mut node = f.reopen(slots);
    let (r, phases) = apply(&mut node, &v2, &mut FakeHooks::default());
    assert!(r.is_err());
    assert_eq!(phases, ["pre-check ok", "stage failed"]);
    assert_eq!(node.slots().calls, ["stage b 2"]);
    assert_eq!(node.slots().active, Some(SlotId::A));
    let t = f.table();
    assert_eq!(
        (t.a.state, t.b.state),
        (SlotState::Good, SlotState::Staging)
    );
}

#[test]
fn interrupted_after_switch_rolls_back_then_resumes_without_staging() {
    let f = Fixture::new();
    let v1 = f.archive(1, &[]);
    let v2 = f.archive(2, &[]);
    let mut node = f.node();
    apply(&mut node, &v1, &mut FakeHooks::default()).0.unwrap();
    let report = apply(&mut node, &v2, &mut FakeHooks::default()).0.unwrap();
    // Pretend the v2 apply died during post-verify: journal at post-verify, slot b staged, pending.
    let paths = node.paths().clone();
    let mut t = f.table();
    t.b.state = SlotState::Staged;
    t.pending = true;
    t.fallback = Some(SlotId::A);
    t.save(&paths.table()).unwrap();
    Journal {
        format: STATE_FORMAT,
        source: v2.clone(),
        phase: Phase::PostVerify,
        slot: SlotId::B,
        from: Some(SlotId::A),
        image: Some(report.image.clone()),
        started: 0,
    }
    .save(&paths.journal())
    .unwrap();
    drop(node);
    let mut slots = FakeSlots::new(&f.path().join("slots"));
    slots.active = Some(SlotId::B);
    let mut events = Collect::default();
    let mut node = Node::with_slots(
        paths.clone(),
        slots,
        Platform::host(),
        Access::Change,
        &mut events,
    )
    .unwrap();
    assert_eq!(events.0[0].phase, "recover");
    assert_eq!(node.slots().calls, ["rollback a"]);
    assert!(!paths.journal().exists());
    let t = f.table();
    assert_eq!((t.b.state, t.pending), (SlotState::Staged, false));
    // The same apply again: no staging, straight to the switch.
    let (r, phases) = apply(&mut node, &v2, &mut FakeHooks::default());
    assert!(r.unwrap().resumed);
    assert_eq!(phases[1], "stage ok");
    assert_eq!(node.slots().calls, ["rollback a", "switch b", "confirm b"]);
}

#[test]
fn interrupted_before_switch_stays_and_mark_good_confirms_pending() {
    let f = Fixture::new();
    let v1 = f.archive(1, &[]);
    let mut node = f.node();
    let report = apply(&mut node, &v1, &mut FakeHooks::default()).0.unwrap();
    let paths = node.paths().clone();
    Journal {
        format: STATE_FORMAT,
        source: v1.clone(),
        phase: Phase::Stage,
        slot: SlotId::B,
        from: Some(SlotId::A),
        image: Some(report.image),
        started: 0,
    }
    .save(&paths.journal())
    .unwrap();
    drop(node);
    let mut slots = FakeSlots::new(&f.path().join("slots"));
    slots.active = Some(SlotId::A);
    let mut node = f.reopen(slots);
    assert!(node.slots().calls.is_empty());
    assert_eq!(node.status().unwrap().active_slot, Some(SlotId::A));
    assert_eq!(node.mark_good().unwrap(), (SlotId::A, false));
    let hist = chasi_runtime::state::history(&paths).unwrap();
    assert_eq!(hist.last().unwrap().event, "recovered");
}

#[test]
fn dry_run_writes_nothing_and_runs_pre_check_hooks() {
    let f = Fixture::new();
    let src = f.archive(1, &[hooks(&[("pre-check", "10-ok", "#!/bin/sh\n")])]);
    let node = f.node();
    let mut h = FakeHooks::default();
    let d = node
        .dry_run(&src, &ApplyOptions::default(), &mut h)
        .unwrap();
    assert_eq!((d.layers, d.layers_reused), (2, 0));
    assert!(d.import_bytes > 0);
    assert_eq!(d.files, 4);
    assert!(d.bytes >= 10_000 && !d.estimated);
    assert!(d.space_needed > d.bytes && d.problems.is_empty());
    assert_eq!(d.hooks_passed, ["10-ok"]);
    assert_eq!(h.runs.len(), 1);
    assert!(node.slots().calls.is_empty());
    assert!(node.store().list_layers().unwrap().is_empty());
    assert!(!node.paths().table().exists() && !node.paths().history().exists());
    // The dry run's scan counts what the apply's flattened view counts.
    let mut node = node;
    let mut events = Collect::default();
    node.apply(&src, &ApplyOptions::default(), &mut h, &mut events)
        .unwrap();
    let stage = events.0.iter().find(|e| e.phase == "stage").unwrap();
    assert_eq!(stage.data["entries"], d.entries);
    assert_eq!(stage.data["bytes"], d.bytes);
}

#[test]
fn dry_run_of_a_delta_counts_rebuilt_layers_as_an_upper_bound() {
    let f = Fixture::new();
    let v1 = f.archive(1, &[]);
    f.archive(2, &[]);
    let d = delta(&f.build, "app:1", "app:2", f.path(), "d.tar");
    let mut node = f.node();
    apply(&mut node, &v1, &mut FakeHooks::default()).0.unwrap();
    let dry = node
        .dry_run(&d, &ApplyOptions::default(), &mut FakeHooks::default())
        .unwrap();
    assert_eq!((dry.kind, dry.layers, dry.layers_reused), ("delta", 2, 1));
    assert_eq!(dry.slot, SlotId::B);
    // The upper layer travels as a delta or whole; either way the counts cover it.
    assert!(dry.bytes >= 10_000, "{dry:?}");
    assert_eq!(dry.estimated, !dry.hooks_unread_layers.is_empty());
    assert!(dry.problems.is_empty());
    // A delta for another base is refused in the dry run too.
    let other = delta(&f.build, "app:2", "app:1", f.path(), "back.tar");
    let e = node
        .dry_run(&other, &ApplyOptions::default(), &mut FakeHooks::default())
        .unwrap_err();
    assert!(matches!(e, NodeError::WrongBase { .. }), "{e}");
}

#[test]
fn mark_good_confirms_a_pending_slot() {
    let f = Fixture::new();
    let v1 = f.archive(1, &[]);
    let mut node = f.node();
    apply(&mut node, &v1, &mut FakeHooks::default()).0.unwrap();
    // As a bootable backend leaves it after a reboot: switched, not confirmed, no journal.
    let mut t = f.table();
    t.a.state = SlotState::Staged;
    t.pending = true;
    t.save(&node.paths().table()).unwrap();
    assert!(node.status().unwrap().pending);
    assert_eq!(node.mark_good().unwrap(), (SlotId::A, true));
    assert_eq!(node.slots().calls.last().unwrap(), "confirm a");
    let t = f.table();
    assert_eq!((t.a.state, t.pending), (SlotState::Good, false));
    assert_eq!(node.mark_good().unwrap(), (SlotId::A, false));
}

#[test]
fn stale_temporary_files_of_a_killed_writer_are_removed_on_open() {
    let f = Fixture::new();
    let node = f.node();
    let stale = node.paths().state.join(".slots.json.tmp-999999");
    std::fs::write(&stale, b"half").unwrap();
    drop(node);
    let node = f.node();
    assert!(!stale.exists());
    assert_eq!(node.status().unwrap().active_slot, None);
}

/// A bootable node that ran v1 from slot a; v2 applied (with `v2_hooks`), switched, not yet rebooted.
fn bootable_after_apply(
    f: &Fixture,
    v2_hooks: &[Vec<u8>],
) -> (NodePaths, chasi_runtime::ApplyReport) {
    let v1 = f.archive(1, &[]);
    let v2 = f.archive(2, v2_hooks);
    let mut node = f.node();
    apply(&mut node, &v1, &mut FakeHooks::default()).0.unwrap();
    let paths = node.paths().clone();
    drop(node);
    let mut node = f.reopen(FakeSlots::bootable(
        &f.path().join("slots"),
        SlotId::A,
        SlotId::A,
    ));
    let mut h = FakeHooks::default();
    let (r, phases) = apply(&mut node, &v2, &mut h);
    let report = r.unwrap();
    assert!(report.reboot_required);
    assert_eq!(phases, ["pre-check ok", "stage ok", "switch ok", "done ok"]);
    let layers = format!("stage b {}", report.image.diff_ids.len());
    assert_eq!(node.slots().calls, [layers.as_str(), "switch b"]);
    assert!(
        h.runs.iter().all(|r| r.0 != "post-verify"),
        "no post-verify before the reboot"
    );
    assert!(!paths.journal().exists());
    let t = f.table();
    assert_eq!(
        (t.b.state, t.pending, t.fallback),
        (SlotState::Staged, true, Some(SlotId::A))
    );
    (paths, report)
}

fn boot_check(
    f: &Fixture,
    booted: SlotId,
    hooks: &mut FakeHooks,
) -> (chasi_runtime::bootcheck::BootCheck, Vec<String>) {
    let mut node = f.reopen(FakeSlots::bootable(
        &f.path().join("slots"),
        SlotId::B,
        booted,
    ));
    let mut events = Collect::default();
    let r = node
        .boot_check(&ApplyOptions::default(), hooks, &mut events)
        .unwrap();
    (r, node.slots().calls.clone())
}

#[test]
fn bootable_apply_stops_at_the_switch_and_boot_check_confirms_after_the_reboot() {
    let f = Fixture::new();
    let (_, report) =
        bootable_after_apply(&f, &[hooks(&[("post-verify", "10-ok", "#!/bin/sh\n")])]);
    let mut h = FakeHooks::default();
    let (r, calls) = boot_check(&f, SlotId::B, &mut h);
    assert_eq!(r.action, chasi_runtime::bootcheck::BootAction::Confirmed);
    assert!(!r.reboot_required);
    assert_eq!(calls, ["confirm b"]);
    assert_eq!(h.runs.len(), 1);
    assert_eq!(
        (h.runs[0].0.as_str(), h.runs[0].3),
        ("post-verify", report.image.root)
    );
    let t = f.table();
    assert_eq!((t.b.state, t.pending), (SlotState::Good, false));
    // The next boot has nothing to do.
    let (r, _) = boot_check(&f, SlotId::B, &mut FakeHooks::default());
    assert_eq!(r.action, chasi_runtime::bootcheck::BootAction::None);
}

#[test]
fn a_second_apply_before_the_reboot_is_refused() {
    let f = Fixture::new();
    bootable_after_apply(&f, &[]);
    let v1 = f.path().join("app-1.tar");
    let mut node = f.reopen(FakeSlots::bootable(
        &f.path().join("slots"),
        SlotId::B,
        SlotId::A,
    ));
    let (r, _) = apply(&mut node, &v1, &mut FakeHooks::default());
    let e = r.unwrap_err().to_string();
    assert!(e.contains("slot b waits for the boot"), "{e}");
    assert!(node.slots().calls.is_empty(), "nothing was staged");
}

#[test]
fn boot_check_rolls_back_a_failing_post_verify_and_asks_for_a_reboot() {
    let f = Fixture::new();
    bootable_after_apply(
        &f,
        &[hooks(&[("post-verify", "90-fail", "#!/bin/sh\nexit 1\n")])],
    );
    let (r, calls) = boot_check(&f, SlotId::B, &mut FakeHooks::default());
    assert_eq!(r.action, chasi_runtime::bootcheck::BootAction::RolledBack);
    assert!(r.reboot_required);
    assert_eq!(r.active_slot, Some(SlotId::A));
    assert_eq!(calls, ["rollback a"]);
    let t = f.table();
    assert_eq!(
        (t.a.state, t.b.state, t.pending),
        (SlotState::Good, SlotState::Bad, false)
    );
}

#[test]
fn boot_check_marks_a_slot_that_never_confirmed_bad_when_the_boot_loader_fell_back() {
    let f = Fixture::new();
    let (paths, _) = bootable_after_apply(&f, &[]);
    // GRUB gave b its one try, it never confirmed, and a booted again.
    let (r, calls) = boot_check(&f, SlotId::A, &mut FakeHooks::default());
    assert_eq!(r.action, chasi_runtime::bootcheck::BootAction::FellBack);
    assert!(!r.reboot_required);
    assert_eq!(calls, ["rollback a"]);
    let t = f.table();
    assert_eq!((t.b.state, t.pending), (SlotState::Bad, false));
    let last = chasi_runtime::state::history(&paths)
        .unwrap()
        .pop()
        .unwrap();
    assert_eq!(last.event, "rolled-back");
    assert!(last.reason.unwrap().contains("never confirmed"));
}

#[test]
fn killed_after_a_bootable_switch_and_rebooted_the_slot_awaits_boot_check() {
    let f = Fixture::new();
    let (paths, report) = bootable_after_apply(&f, &[]);
    // As if the apply had died between the switch and its end: journal still at the switch.
    Journal {
        format: STATE_FORMAT,
        source: PathBuf::from("/media/update"),
        phase: Phase::Switch,
        slot: SlotId::B,
        from: Some(SlotId::A),
        image: Some(report.image.clone()),
        started: 0,
    }
    .save(&paths.journal())
    .unwrap();
    let (r, calls) = boot_check(&f, SlotId::B, &mut FakeHooks::default());
    assert_eq!(
        calls,
        ["confirm b"],
        "recovery kept the switch, boot-check confirmed it"
    );
    assert_eq!(r.action, chasi_runtime::bootcheck::BootAction::Confirmed);
    assert!(!paths.journal().exists());
}
