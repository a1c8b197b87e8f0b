//! `chasi delta FROM TO -o OUT` and `chasi delta inspect OUT`: static upgrade deltas (`chasi_delta`).
//! `chasi load` applies them (`src/cmd/images.rs`).

use crate::progress::human_bytes;
use chasi_delta::{DeltaOptions, Level};
use chasi_layers::Store;
use chasi_oci::{Platform, SaveFormat};
use clap::{Args, Subcommand, ValueEnum};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// `chasi delta` options.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct DeltaArgs {
    #[command(subcommand)]
    command: Option<DeltaCommand>,
    /// The base image (what the site runs): NAME[:TAG] or digest.
    #[arg(required = true)]
    from: Option<String>,
    /// The target image (what the site gets): NAME[:TAG] or digest.
    #[arg(required = true)]
    to: Option<String>,
    /// Output: an oci-archive file (default) or, with `--format oci`, a layout directory.
    #[arg(short, long, value_name = "PATH", required = true)]
    output: Option<PathBuf>,
    /// `fast` (zstd level 3, for CI previews) or `release` (level 19, for shipping).
    #[arg(long, value_enum, default_value = "release")]
    level: LevelArg,
    /// Only this platform of the target (os/arch[/variant]); repeat for several (all, or exactly one).
    #[arg(long, value_name = "PLATFORM")]
    platform: Vec<String>,
    /// Output format.
    #[arg(long, value_enum, default_value = "oci-archive")]
    format: DeltaFormatArg,
    /// Most memory applying one part may need, in MiB (reference plus output).
    #[arg(long, value_name = "MIB", default_value_t = chasi_delta::DEFAULT_MAX_MEMORY >> 20)]
    max_memory: u64,
}

#[derive(Debug, Subcommand)]
enum DeltaCommand {
    /// Show a delta's base, target and per-layer costs.
    Inspect(InspectArgs),
}

#[derive(Debug, Args)]
struct InspectArgs {
    /// The delta (oci-archive or layout directory).
    path: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value = "human")]
    format: crate::cmd::images::ListFormat,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LevelArg {
    Fast,
    Release,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum DeltaFormatArg {
    /// One tar file.
    OciArchive,
    /// An OCI layout directory.
    Oci,
}

impl DeltaArgs {
    /// Whether stdout is JSON.
    pub fn format_is_json(&self) -> bool {
        matches!(
            &self.command,
            Some(DeltaCommand::Inspect(InspectArgs {
                format: crate::cmd::images::ListFormat::Json,
                ..
            }))
        )
    }
}

/// Runs `chasi delta`.
pub fn run(store: Option<&Path>, args: DeltaArgs) -> anyhow::Result<ExitCode> {
    if let Some(DeltaCommand::Inspect(i)) = args.command {
        return inspect(&i);
    }
    let (Some(from), Some(to), Some(output)) = (args.from, args.to, args.output) else {
        anyhow::bail!("chasi delta needs FROM, TO and -o OUT");
    };
    let platforms = args
        .platform
        .iter()
        .map(|p| p.parse::<Platform>())
        .collect::<Result<Vec<_>, _>>()?;
    let opts = DeltaOptions {
        level: match args.level {
            LevelArg::Fast => Level::Fast,
            LevelArg::Release => Level::Release,
        },
        platforms,
        max_memory: args.max_memory.saturating_mul(1 << 20),
        format: match args.format {
            DeltaFormatArg::Oci => SaveFormat::OciLayout,
            DeltaFormatArg::OciArchive => SaveFormat::OciArchive,
        },
    };
    let store = Store::open_existing(chasi_layers::resolve_store_dir(store)?)?;
    let report = chasi_delta::create(&store, &from, &to, &output, &opts)?;
    outln!(
        "{} {} ({})",
        output.display(),
        report.artifact,
        human_bytes(report.size)
    );
    Ok(ExitCode::SUCCESS)
}

fn inspect(args: &InspectArgs) -> anyhow::Result<ExitCode> {
    let i = chasi_delta::inspect(&args.path)?;
    if matches!(args.format, crate::cmd::images::ListFormat::Json) {
        outln!("{}", serde_json::to_string_pretty(&i)?);
        return Ok(ExitCode::SUCCESS);
    }
    outln!("delta    {}", i.artifact);
    outln!("base     {}", i.base);
    outln!(
        "target   {}{}",
        i.target,
        i.name
            .as_deref()
            .map(|n| format!(" ({n})"))
            .unwrap_or_default()
    );
    outln!(
        "level    {:?}, platforms {}",
        i.level,
        i.platforms.join(", ")
    );
    outln!(
        "{:<20} {:>6} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10}",
        "LAYER",
        "METHOD",
        "TAR",
        "REUSED",
        "PATCHED",
        "FROM",
        "LITERAL",
        "PAYLOAD"
    );
    for l in &i.layers {
        let s = &l.stats;
        outln!(
            "{:<20} {:>6} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10}",
            &l.diff_id.to_string()[..19],
            format!("{:?}", l.method).to_lowercase(),
            human_bytes(l.size),
            human_bytes(s.reused),
            human_bytes(s.patched),
            human_bytes(s.patched_from),
            human_bytes(s.literal),
            human_bytes(s.payload)
        );
    }
    outln!(
        "total: delta {} for a target of {} ({:.1} %); applying needs up to {} per part",
        human_bytes(i.delta_size),
        human_bytes(i.target_size),
        i.ratio * 100.0,
        human_bytes(i.memory)
    );
    Ok(ExitCode::SUCCESS)
}
