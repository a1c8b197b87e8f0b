//! `chasi store du|verify|gc`: thin wrappers over `chasi_images::du` and `chasi_layers::Store` maintenance calls.

use crate::progress::human_bytes;
use chasi_layers::{GcOptions, Store};
use clap::{Args, Subcommand, ValueEnum};
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

/// Output format of the store commands.
#[derive(Debug, Clone, Copy, Default, ValueEnum)]
pub enum Format {
    /// Human-readable text.
    #[default]
    Human,
    /// One JSON document on stdout.
    Json,
}

/// `chasi store ...`
#[derive(Debug, Args)]
pub struct StoreArgs {
    #[command(subcommand)]
    action: Action,
}

#[derive(Debug, Subcommand)]
enum Action {
    /// Disk usage: logical bytes (as OCI counts them) vs physical bytes on disk, per image.
    Du {
        /// Output format.
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Re-hash every object; exit 1 naming each bad one.
    Verify {
        /// Output format.
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Remove everything not reachable from refs or build-cache records.
    Gc {
        /// Output format.
        #[arg(long, value_enum, default_value_t)]
        format: Format,
        /// Only report what would be removed.
        #[arg(long)]
        dry_run: bool,
        /// Also drop all build-cache records.
        #[arg(long)]
        prune_cache: bool,
        /// Fail instead of waiting when another process has the store open.
        #[arg(long)]
        no_wait: bool,
    },
}

impl StoreArgs {
    /// Whether stdout is JSON.
    pub fn format_is_json(&self) -> bool {
        let format = match &self.action {
            Action::Du { format } | Action::Verify { format } | Action::Gc { format, .. } => format,
        };
        matches!(format, Format::Json)
    }
}

/// The store commands only maintain a store: an absent one is an error, never created (see `Store::open_existing`).
fn open(store: Option<&Path>) -> anyhow::Result<Store> {
    Ok(Store::open_existing(chasi_layers::resolve_store_dir(
        store,
    )?)?)
}

/// Runs `chasi store ...` against the store given by `--store`/`$CHASI_STORE` or the default location.
pub fn run(store: Option<&Path>, args: StoreArgs) -> anyhow::Result<ExitCode> {
    match args.action {
        Action::Du { format } => {
            let r = chasi_images::du(&open(store)?)?;
            match format {
                Format::Json => outln!("{}", serde_json::to_string_pretty(&r)?),
                Format::Human => {
                    outln!("store:          {}", r.store);
                    outln!(
                        "logical bytes:  {} ({})",
                        r.logical_bytes,
                        human_bytes(r.logical_bytes)
                    );
                    outln!(
                        "physical bytes: {} ({})",
                        r.physical_bytes,
                        human_bytes(r.physical_bytes)
                    );
                    outln!("dedup ratio:    {:.2}", r.dedup_ratio);
                    outln!(
                        "layers: {}  chunks: {}  blobs: {}",
                        r.layers,
                        r.chunks,
                        r.blobs
                    );
                    for i in &r.images {
                        outln!(
                            "  {}  {}  {}  {} layers",
                            i.name,
                            i.digest,
                            human_bytes(i.logical_bytes),
                            i.layers
                        );
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Action::Verify { format } => {
            let r = open(store)?.verify()?;
            match format {
                Format::Json => outln!("{}", serde_json::to_string_pretty(&r)?),
                Format::Human => {
                    for p in &r.problems {
                        outln!("bad: {} ({}): {}", p.object, p.path, p.detail);
                    }
                    for p in &r.ignored_partial {
                        outln!("ignored partial write: {p}");
                    }
                    let verdict = if r.ok() { "ok" } else { "FAILED" };
                    outln!(
                        "{verdict}: {} objects checked, {} re-hashed, {} problem(s)",
                        r.checked,
                        human_bytes(r.bytes),
                        r.problems.len()
                    );
                }
            }
            Ok(if r.ok() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Action::Gc {
            format,
            dry_run,
            prune_cache,
            no_wait,
        } => {
            let mut s = open(store)?;
            let mut opts = GcOptions {
                dry_run,
                prune_cache,
                wait: None,
            };
            let r = match s.gc(&opts) {
                Err(chasi_layers::Error::Busy { .. }) if !no_wait => {
                    eprintln!("waiting for other processes using the store to finish...");
                    opts.wait = Some(Duration::MAX);
                    s.gc(&opts)?
                }
                other => other?,
            };
            match format {
                Format::Json => outln!("{}", serde_json::to_string_pretty(&r)?),
                Format::Human => outln!(
                    "{}removed {} blob(s), {} layer(s), {} chunk(s); {} pack(s) rewritten; {} freed",
                    if dry_run { "would have " } else { "" },
                    r.blobs_removed,
                    r.layers_removed,
                    r.chunks_removed,
                    r.packs_rewritten,
                    human_bytes(r.bytes_freed)
                ),
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
