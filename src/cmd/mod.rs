//! Subcommand definitions and dispatch.

mod build;
mod check;
mod delta;
mod export;
mod images;
mod node;
mod plan;
mod registry;
mod shell;
mod store;

use crate::errors::Channels;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// Global options shared by every subcommand.
#[derive(Debug, Parser)]
#[command(
    name = "chasi",
    version,
    about = "Compile Kubefiles into layered OCI artifacts and export them"
)]
pub struct Cli {
    /// Store directory (default: $CHASI_STORE, else $XDG_DATA_HOME/chasi, /var/lib/chasi for root).
    #[arg(long, global = true, env = "CHASI_STORE", value_name = "DIR")]
    pub store: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Build a Kubefile into an image in the store (cached, parallel, reproducible).
    Build(build::BuildArgs),
    /// Parse and check a Kubefile (and its build context); print the diagnostics.
    Check(check::CheckArgs),
    /// Print the build plan (DAG) of a Kubefile as text, JSON or Graphviz DOT.
    Plan(plan::PlanArgs),
    /// List the images in the store.
    Images(images::ImagesArgs),
    /// Show an image's manifest, config, sealer extension and layer sizes (JSON).
    Inspect(images::InspectArgs),
    /// Give an image another name.
    Tag(images::TagArgs),
    /// Remove image names (blobs are reclaimed by `chasi store gc`).
    Rmi(images::RmiArgs),
    /// Write an image as an OCI layout, oci-archive or docker-archive.
    Save(images::SaveArgs),
    /// Read the images of an OCI layout, oci-archive or docker-archive into the store.
    Load(images::LoadArgs),
    /// Push an image of the store to an OCI registry (only the blobs it lacks).
    Push(registry::PushArgs),
    /// Pull an image from an OCI registry into the store (every blob verified).
    Pull(registry::PullArgs),
    /// Make a static upgrade delta from one image to another (`chasi load` applies it); `delta inspect` shows one.
    Delta(delta::DeltaArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions(shell::CompletionsArgs),
    /// Print the man page, or write all of them into a directory.
    Man(shell::ManArgs),
    /// Inspect and maintain the layer store: du, verify, gc.
    Store(store::StoreArgs),
    /// Export one platform of an image as tar, squashfs, a disk (raw, qcow2, vmdk, ova, vma) or an ISO.
    Export(export::ExportArgs),
    /// Run this machine as a node: apply an image or delta to A/B slots, status, rollback, verify, mark-good,
    /// import the container images it carries into containerd.
    Node(chasi_runtime::cli::NodeArgs),
}

impl Cli {
    /// Which channels of this command carry JSON, so that its failure is reported there as
    /// JSON too: stdout for `--format json` (and `inspect`, whose output is JSON), stderr for
    /// `build --progress json`.
    pub fn error_channels(&self) -> Channels {
        match &self.command {
            Command::Build(args) => Channels {
                stderr_json: args.progress_is_json(),
                ..Channels::default()
            },
            Command::Check(args) => stdout(args.format_is_json()),
            Command::Plan(args) => stdout(args.format_is_json()),
            Command::Images(args) => stdout(args.format_is_json()),
            Command::Inspect(_) => stdout(true),
            Command::Store(args) => stdout(args.format_is_json()),
            Command::Delta(args) => stdout(args.format_is_json()),
            Command::Push(args) => stdout(args.format_is_json()),
            Command::Pull(args) => stdout(args.format_is_json()),
            Command::Node(args) => Channels {
                stdout_lines: args.format_is_json(),
                ..stdout(args.format_is_json())
            },
            _ => Channels::default(),
        }
    }
}

fn stdout(json: bool) -> Channels {
    Channels {
        stdout_json: json,
        ..Channels::default()
    }
}

/// The JSON channels asked for by a command line clap could not parse (a usage error), from
/// its words alone: `--format json` and `--progress json`, written either way.
pub fn channels_from_raw_args(args: &[String]) -> Channels {
    let asks = |flag: &str| {
        args.windows(2).any(|w| w[0] == flag && w[1] == "json")
            || args.iter().any(|a| *a == format!("{flag}=json"))
    };
    Channels {
        stdout_json: asks("--format"),
        stderr_json: asks("--progress"),
        stdout_lines: false,
    }
}

/// Runs one parsed command line and returns the process exit code.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Build(args) => build::run(cli.store.as_deref(), args),
        Command::Check(args) => check::run(args),
        Command::Plan(args) => plan::run(args),
        Command::Images(args) => images::run_images(cli.store.as_deref(), args),
        Command::Inspect(args) => images::run_inspect(cli.store.as_deref(), args),
        Command::Tag(args) => images::run_tag(cli.store.as_deref(), args),
        Command::Rmi(args) => images::run_rmi(cli.store.as_deref(), args),
        Command::Save(args) => images::run_save(cli.store.as_deref(), args),
        Command::Load(args) => images::run_load(cli.store.as_deref(), args),
        Command::Store(args) => store::run(cli.store.as_deref(), args),
        Command::Delta(args) => delta::run(cli.store.as_deref(), args),
        Command::Push(args) => registry::run_push(cli.store.as_deref(), args),
        Command::Pull(args) => registry::run_pull(cli.store.as_deref(), args),
        Command::Completions(args) => shell::completions(args),
        Command::Man(args) => shell::man(args),
        Command::Export(args) => export::run(cli.store.as_deref(), args),
        Command::Node(args) => node::run(args),
    }
}
