//! The commands as both fronts expose them (`chasi-node …` and `chasi node …`): arguments (clap) and
//! rendering, human or JSON (schema in the crate documentation). The fronts print errors themselves.

use crate::apply::{describe, ApplyOptions, DryRun};
use crate::bootcheck::BootAction;
use crate::error::{NodeError, Result};
use crate::event::{Collect, Event, Observer};
use crate::hooks::ProcessHooks;
use crate::images::{ImportOptions, ImportedImage};
use crate::node::{state_name, Access, Node, Status};
use clap::{Args, Subcommand, ValueEnum};
use serde_json::json;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The node commands and the node they act on.
#[derive(Debug, Args)]
pub struct NodeArgs {
    /// The node's root directory; its state is ROOT/var/lib/chasi-node.
    #[arg(long, global = true, value_name = "DIR", default_value = "/")]
    pub root: PathBuf,
    /// The command.
    #[command(subcommand)]
    pub command: NodeCommand,
}

/// One node command.
#[derive(Debug, Subcommand)]
pub enum NodeCommand {
    /// Apply an image or a delta (a file, an OCI layout, or a directory holding one) to the inactive slot
    /// and switch to it.
    Apply(ApplyArgs),
    /// Show the slots, the active and booted slot and whether it is confirmed.
    Status(FormatArgs),
    /// Switch back to the other slot.
    Rollback(FormatArgs),
    /// Re-hash the active slot against its image; exit 1 if anything differs.
    Verify(FormatArgs),
    /// Confirm the active slot.
    MarkGood(FormatArgs),
    /// Run once per boot on a bootable node: post-verify and confirm the slot an update switched to, or
    /// roll back; notice when the boot loader fell back from a slot that never confirmed.
    BootCheck(BootCheckArgs),
    /// Container images the node's image carries (its `registry/` directory) and containerd.
    Images(ImagesArgs),
    /// Write the A/B disk an installer medium carries (`chasi export --format iso --slots ab`) onto a
    /// disk; the machine then boots from it as a node.
    Install(InstallArgs),
}

/// `images` commands.
#[derive(Debug, Args)]
pub struct ImagesArgs {
    /// The command.
    #[command(subcommand)]
    pub command: ImagesCommand,
}

/// One `images` command.
#[derive(Debug, Subcommand)]
pub enum ImagesCommand {
    /// Load the container images of a registry directory (by default the running slot's
    /// `registry/`) into containerd, verifying every blob; writes only what containerd lacks.
    Import(ImportArgs),
}

/// `images import` options.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The registry directory (distribution storage layout); default: the running slot's `registry/`.
    #[arg(long, value_name = "DIR")]
    pub from: Option<PathBuf>,
    /// containerd's socket.
    #[arg(long, value_name = "SOCKET", default_value = crate::images::DEFAULT_ADDRESS)]
    pub address: PathBuf,
    /// The containerd namespace the images go to.
    #[arg(long, value_name = "NAME", default_value = crate::images::DEFAULT_NAMESPACE)]
    pub namespace: String,
    /// Output format.
    #[arg(long, value_enum, default_value = "human")]
    pub format: Format,
}

/// `install` options.
#[derive(Debug, Args)]
pub struct InstallArgs {
    /// The disk to write (a block device nothing has mounted, e.g. /dev/sda; or an image file).
    #[arg(long, value_name = "DISK")]
    pub target: PathBuf,
    /// The installer's manifest.
    #[arg(
        long,
        value_name = "FILE",
        default_value = "/chasi/install/install.json"
    )]
    pub manifest: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value = "human")]
    pub format: Format,
}

/// `boot-check` options.
#[derive(Debug, Args)]
pub struct BootCheckArgs {
    /// Deadline of each post-verify hook, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = crate::apply::DEFAULT_HOOK_TIMEOUT.as_secs())]
    pub hook_timeout: u64,
    /// Reboot when the check rolled back (the other slot boots next).
    #[arg(long)]
    pub reboot: bool,
    /// Output format.
    #[arg(long, value_enum, default_value = "human")]
    pub format: Format,
}

/// `apply` options.
#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// The image or delta: an oci-archive, an OCI layout, a delta artifact, or a directory holding one.
    pub source: PathBuf,
    /// Print what the apply would write and the space it needs, run the pre-checks, change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Deadline of each hook, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = crate::apply::DEFAULT_HOOK_TIMEOUT.as_secs())]
    pub hook_timeout: u64,
    /// On a bootable node, reboot into the new slot when the apply switched to it.
    #[arg(long)]
    pub reboot: bool,
    /// containerd's socket, for the container images the image carries.
    #[arg(long = "containerd", value_name = "SOCKET", default_value = crate::images::DEFAULT_ADDRESS)]
    pub containerd: PathBuf,
    /// The containerd namespace they go to.
    #[arg(long, value_name = "NAME", default_value = crate::images::DEFAULT_NAMESPACE)]
    pub namespace: String,
    /// Do not import the container images the image carries.
    #[arg(long)]
    pub skip_images: bool,
    /// Output format.
    #[arg(long, value_enum, default_value = "human")]
    pub format: Format,
}

/// Only a format.
#[derive(Debug, Args)]
pub struct FormatArgs {
    /// Output format.
    #[arg(long, value_enum, default_value = "human")]
    pub format: Format,
}

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Lines for people.
    Human,
    /// JSON (one line per apply phase; one document otherwise).
    Json,
}

impl NodeArgs {
    /// Whether stdout is JSON.
    pub fn format_is_json(&self) -> bool {
        let f = match &self.command {
            NodeCommand::Apply(a) => a.format,
            NodeCommand::BootCheck(b) => b.format,
            NodeCommand::Install(i) => i.format,
            NodeCommand::Images(ImagesArgs {
                command: ImagesCommand::Import(i),
            }) => i.format,
            NodeCommand::Status(f)
            | NodeCommand::Rollback(f)
            | NodeCommand::Verify(f)
            | NodeCommand::MarkGood(f) => f.format,
        };
        f == Format::Json
    }
}

struct Printer<'a> {
    out: &'a mut dyn Write,
    json: bool,
}

impl Observer for Printer<'_> {
    fn event(&mut self, e: &Event) {
        let line = if self.json {
            serde_json::to_string(e).unwrap_or_default()
        } else {
            format!("{}: {}", e.phase, e.message)
        };
        let _ = writeln!(self.out, "{line}");
        let _ = self.out.flush();
    }
}

/// Runs one command, printing to `out`; returns the exit status (1: `verify` found differences, or a dry
/// run found a problem).
pub fn run(args: NodeArgs, out: &mut dyn Write) -> Result<u8> {
    let json = args.format_is_json();
    let root = args.root.clone();
    let mut p = Printer { out, json };
    // Only apply reports a recovery as a phase line; the others show it as `last_event` of `status`.
    let mut quiet = Collect::default();
    match args.command {
        NodeCommand::Apply(a) => apply(&root, &a, &mut p),
        NodeCommand::Status(_) => {
            let node = Node::open_any(&root, Access::Read, &mut quiet)?;
            let s = node.status()?;
            if json {
                emit(p.out, &serde_json::to_value(&s).unwrap_or_default())?;
            } else {
                human_status(p.out, &s)?;
            }
            Ok(0)
        }
        NodeCommand::Rollback(_) => {
            let mut node = Node::open_any(&root, Access::Change, &mut quiet)?;
            let to = node.rollback()?;
            say(
                p.out,
                json,
                &json!({"active_slot": to}),
                &format!("rolled back: slot {to} is active"),
            )?;
            Ok(0)
        }
        NodeCommand::MarkGood(_) => {
            let mut node = Node::open_any(&root, Access::Change, &mut quiet)?;
            let (slot, changed) = node.mark_good()?;
            let text = if changed {
                format!("slot {slot} confirmed")
            } else {
                format!("slot {slot} was confirmed already")
            };
            say(
                p.out,
                json,
                &json!({"active_slot": slot, "changed": changed}),
                &text,
            )?;
            Ok(0)
        }
        NodeCommand::Verify(_) => {
            let node = Node::open_any(&root, Access::Read, &mut quiet)?;
            let (slot, image, r) = node.verify()?;
            if json {
                let mut v = serde_json::to_value(&r).unwrap_or_default();
                v["slot"] = json!(slot);
                v["image"] = json!(image);
                v["clean"] = json!(r.is_clean());
                emit(p.out, &v)?;
            } else {
                human_verify(p.out, slot, &describe(&image), &r)?;
            }
            Ok(u8::from(!r.is_clean()))
        }
        NodeCommand::Install(i) => {
            crate::install::install(&i.manifest, &i.target, &mut p)?;
            Ok(0)
        }
        NodeCommand::Images(ImagesArgs {
            command: ImagesCommand::Import(i),
        }) => images_import(&root, &i, p.out, json),
        NodeCommand::BootCheck(b) => {
            let opts = ApplyOptions {
                hook_timeout: Duration::from_secs(b.hook_timeout),
                ..ApplyOptions::default()
            };
            let mut node = Node::open_any(&root, Access::Change, &mut quiet)?;
            let mut runner = ProcessHooks::new(&node.paths().tmp().join("hooks"));
            let mut events = Collect::default();
            let r = node.boot_check(&opts, &mut runner, &mut events)?;
            if json {
                for e in &events.0 {
                    p.event(e);
                }
            } else {
                say(
                    p.out,
                    false,
                    &json!({}),
                    &format!("boot-check: {}", r.message),
                )?;
            }
            drop(node);
            if r.reboot_required && b.reboot {
                reboot()?;
            }
            Ok(u8::from(matches!(
                r.action,
                BootAction::RolledBack | BootAction::FellBack | BootAction::Degraded
            )))
        }
    }
}

/// Syncs every file system and restarts the machine.
fn reboot() -> Result<()> {
    rustix::fs::sync();
    rustix::system::reboot(rustix::system::RebootCommand::Restart)
        .map_err(|e| NodeError::io("reboot", "/", e.into()))
}

fn apply(root: &Path, a: &ApplyArgs, p: &mut Printer<'_>) -> Result<u8> {
    let opts = ApplyOptions {
        hook_timeout: Duration::from_secs(a.hook_timeout),
        containerd: ImportOptions {
            address: a.containerd.clone(),
            namespace: a.namespace.clone(),
        },
        skip_images: a.skip_images,
    };
    let json = p.json;
    if a.dry_run {
        let node = Node::open_any(root, Access::Inspect, p)?;
        let scratch = dry_run_scratch(&node);
        let mut runner = ProcessHooks::new(&scratch);
        let d = node.dry_run(&a.source, &opts, &mut runner);
        let _ = std::fs::remove_dir_all(&scratch);
        let d = d?;
        if json {
            let mut v = serde_json::to_value(&d).unwrap_or_default();
            v["phase"] = json!("dry-run");
            v["status"] = json!(if d.problems.is_empty() {
                "ok"
            } else {
                "failed"
            });
            emit(p.out, &v)?;
        } else {
            human_dry_run(p.out, &d)?;
        }
        return Ok(u8::from(!d.problems.is_empty()));
    }
    let mut node = Node::open_any(root, Access::Change, p)?;
    let mut runner = ProcessHooks::new(&node.paths().tmp().join("hooks"));
    let report = node.apply(&a.source, &opts, &mut runner, p)?;
    drop(node);
    if report.reboot_required && a.reboot {
        reboot()?;
    }
    Ok(0)
}

/// `images import`: one line per image as it is tagged, then a summary (human), or one document (JSON).
fn images_import(root: &Path, i: &ImportArgs, out: &mut dyn Write, json: bool) -> Result<u8> {
    let from = match &i.from {
        Some(d) => {
            // Given explicitly, a directory that is not there is a mistake, not "no images".
            std::fs::read_dir(d).map_err(|e| NodeError::io("read registry directory", d, e))?;
            d.clone()
        }
        None => {
            let mut quiet = Collect::default();
            let node = Node::open_any(root, Access::Inspect, &mut quiet)?;
            node.running_registry()?
        }
    };
    let opts = ImportOptions {
        address: i.address.clone(),
        namespace: i.namespace.clone(),
    };
    let mut each = |m: &ImportedImage| {
        if !json {
            let _ = writeln!(
                out,
                "imported {} {}: {} blob(s) written ({} bytes), {} present, record {}",
                m.name, m.digest, m.blobs_written, m.bytes_written, m.blobs_present, m.record
            );
        }
    };
    let report = crate::images::import(&from, &opts, &mut each)?;
    if json {
        return emit(out, &serde_json::to_value(&report).unwrap_or_default()).map(|()| 0);
    }
    let mut text = String::new();
    if report.images.is_empty() {
        text.push_str(&format!("no container images in {}\n", from.display()));
    } else {
        let mb_s = report.bytes_written as f64 / 1e6 / report.seconds.max(1e-9);
        text.push_str(&format!(
            "{} image(s) in namespace {} of containerd at {}: {} blob(s), {} bytes written in {:.2} s ({mb_s:.1} MB/s)\n",
            report.images.len(),
            report.namespace,
            report.address.display(),
            report.blobs_written,
            report.bytes_written,
            report.seconds,
        ));
    }
    write!(out, "{text}").map_err(|e| NodeError::io("write", "stdout", e))?;
    Ok(0)
}

/// Where a dry run writes the hooks it runs: a directory of its own in the node's scratch space (never
/// what a running apply uses), removed when it ends.
fn dry_run_scratch<S: crate::Slots>(node: &Node<S>) -> PathBuf {
    node.paths()
        .tmp()
        .join(format!("dry-run-{}", std::process::id()))
}

fn emit(out: &mut dyn Write, v: &serde_json::Value) -> Result<()> {
    writeln!(out, "{v}").map_err(|e| NodeError::io("write", "stdout", e))
}

fn say(out: &mut dyn Write, json: bool, v: &serde_json::Value, text: &str) -> Result<()> {
    if json {
        emit(out, v)
    } else {
        writeln!(out, "{text}").map_err(|e| NodeError::io("write", "stdout", e))
    }
}

fn human_status(out: &mut dyn Write, s: &Status) -> Result<()> {
    let slot = |x: Option<crate::SlotId>| x.map_or("none".to_string(), |s| s.to_string());
    let mut text = format!(
        "backend: {}\nactive slot: {} (booted: {})\npending: {}\n",
        s.backend,
        slot(s.active_slot),
        slot(s.booted_slot),
        if s.pending {
            "yes, not confirmed"
        } else {
            "no"
        },
    );
    for (name, st) in &s.slots {
        let image = st.image.as_ref().map_or("-".to_string(), |i| {
            format!(
                "{} {} (manifest {})",
                i.name.as_deref().unwrap_or("(unnamed)"),
                i.digest,
                i.manifest
            )
        });
        text.push_str(&format!("slot {name}: {} {image}\n", state_name(st.state)));
    }
    if let Some(a) = &s.apply_in_progress {
        text.push_str(&format!(
            "apply in progress: {} ({}, slot {})\n",
            a.source, a.phase, a.slot
        ));
    }
    write!(out, "{text}").map_err(|e| NodeError::io("write", "stdout", e))
}

fn human_verify(
    out: &mut dyn Write,
    slot: crate::SlotId,
    image: &str,
    r: &crate::verify::VerifyReport,
) -> Result<()> {
    let mut text = String::new();
    for c in &r.changed {
        text.push_str(&format!("changed {}: {}\n", c.path, c.what));
    }
    for m in &r.missing {
        text.push_str(&format!("missing {m}\n"));
    }
    for x in &r.extra {
        text.push_str(&format!("extra {x}\n"));
    }
    text.push_str(&format!(
        "slot {slot} ({image}): {} entries checked, {}\n",
        r.checked,
        if r.is_clean() {
            "all match".to_string()
        } else {
            format!(
                "{} changed, {} missing, {} extra",
                r.changed.len(),
                r.missing.len(),
                r.extra.len()
            )
        }
    ));
    write!(out, "{text}").map_err(|e| NodeError::io("write", "stdout", e))
}

fn human_dry_run(out: &mut dyn Write, d: &DryRun) -> Result<()> {
    let mut text = format!(
        "would apply {} {} to slot {}\n\
         layers: {} ({} in the node store already), import {} bytes\n\
         slot: {} entries, {} files, {} bytes{}\n\
         space: needs {} bytes, {} available\n\
         pre-check hooks passed: {}\n",
        d.kind,
        describe(&d.image),
        d.slot,
        d.layers,
        d.layers_reused,
        d.import_bytes,
        d.entries,
        d.files,
        d.bytes,
        if d.estimated {
            " (at most: some layers are only rebuilt by the delta)"
        } else {
            ""
        },
        d.space_needed,
        d.space_available,
        if d.hooks_passed.is_empty() {
            "none".to_string()
        } else {
            d.hooks_passed.join(", ")
        },
    );
    if d.container_images > 0 {
        text.push_str(&format!(
            "container images: {} (imported into containerd before the switch)\n",
            d.container_images
        ));
    }
    if !d.hooks_unread_layers.is_empty() {
        text.push_str(&format!(
            "not read (rebuilt by the delta at apply, their hooks run then): {}\n",
            d.hooks_unread_layers.join(", ")
        ));
    }
    for p in &d.problems {
        text.push_str(&format!("problem: {p}\n"));
    }
    write!(out, "{text}").map_err(|e| NodeError::io("write", "stdout", e))
}
