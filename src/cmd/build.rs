//! `chasi build`: compile a Kubefile and execute its plan into an image in the store.

use crate::cmd::check::InputArgs;
use crate::errors::{self, ErrorReport};
use crate::progress::{observer, ProgressMode};
use anyhow::Context as _;
use chasi_builder::assemble::Compression;
use chasi_builder::filecache::StoreFileDigests;
use chasi_builder::sandbox::Network;
use chasi_builder::{build, BuildOptions};
use chasi_compiler::source::SourceFile;
use chasi_compiler::{render, Compiled};
use clap::{Args, ValueEnum};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// `--network` of RUN steps.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum NetworkArg {
    /// The host's network.
    Host,
    /// No network (a fresh namespace with only loopback).
    None,
}

/// `--compression` of the manifest's layers.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum CompressionArg {
    /// `tar+zstd` (default).
    Zstd,
    /// `tar+gzip`, for consumers that cannot read zstd layers.
    Gzip,
}

/// `chasi build` options.
#[derive(Debug, Args)]
pub struct BuildArgs {
    #[command(flatten)]
    input: InputArgs,
    /// Name the image is stored under, NAME[:TAG] (the tag defaults to `latest`).
    #[arg(short = 't', long = "tag", value_name = "NAME:TAG", required = true, value_parser = parse_tag)]
    tag: String,
    /// Label KEY=VALUE added to the image configuration; repeatable.
    #[arg(long = "label", value_name = "KEY=VALUE", value_parser = parse_kv)]
    labels: Vec<(String, String)>,
    /// Annotation KEY=VALUE added to the manifest; repeatable.
    #[arg(long = "annotation", value_name = "KEY=VALUE", value_parser = parse_kv)]
    annotations: Vec<(String, String)>,
    /// Execute every step even when the cache has it.
    #[arg(long)]
    no_cache: bool,
    /// Network of RUN steps.
    #[arg(long, value_enum, default_value = "host")]
    network: NetworkArg,
    /// Layer compression in the manifest.
    #[arg(long, value_enum, default_value = "zstd")]
    compression: CompressionArg,
    /// Never download remote sources; use the copies in the store.
    #[arg(long)]
    offline: bool,
    /// Timestamp (seconds since 1970) every file time is clamped to and the image is dated
    /// with (default: $SOURCE_DATE_EPOCH, else 0, so builds are reproducible).
    #[arg(long, value_name = "SECONDS", env = "SOURCE_DATE_EPOCH")]
    source_date_epoch: Option<i64>,
    /// Progress output: a live display on a terminal, plain lines, or JSON events.
    #[arg(long, value_enum, default_value = "auto")]
    progress: ProgressMode,
}

/// Checks an image name given on the command line (`-t`, `chasi tag`) before anything runs, so
/// a bad name is a usage error (exit 2) and not a failure after the build.
pub fn parse_tag(text: &str) -> Result<String, String> {
    match text.parse::<chasi_oci::ImageRef>() {
        Ok(chasi_oci::ImageRef::Store { .. }) => Ok(text.to_string()),
        Ok(_) => Err(format!(
            "`{text}` is a transport reference, not a store name NAME[:TAG]"
        )),
        Err(chasi_oci::OciError::BadReference { reason, .. }) => Err(reason),
        Err(e) => Err(e.to_string()),
    }
}

fn parse_kv(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("`{text}` is not KEY=VALUE")),
    }
}

impl BuildArgs {
    /// Whether stderr carries JSON events (`--progress json`).
    pub fn progress_is_json(&self) -> bool {
        self.progress == ProgressMode::Json
    }
}

/// Prints the compiler's diagnostics on stderr: code frames, or one `diagnostics` event.
fn print_diagnostics(source: &SourceFile, compiled: &Compiled, json: bool) {
    if !json {
        eprint!("{}", render::human(source, &compiled.diagnostics));
        return;
    }
    let diagnostics: serde_json::Value =
        serde_json::from_str(&render::json(source, &compiled.diagnostics)).unwrap_or_default();
    let line = serde_json::json!({
        "event": "diagnostics",
        "diagnostics": diagnostics["diagnostics"],
    });
    eprintln!("{line}");
}

/// Runs `chasi build`: prints `NAME DIGEST` on success.
pub fn run(store: Option<&Path>, args: BuildArgs) -> anyhow::Result<ExitCode> {
    let Some(context) = args.input.context.clone() else {
        let err = clap::Error::raw(
            clap::error::ErrorKind::MissingRequiredArgument,
            "chasi build needs the build CONTEXT directory\n",
        );
        err.exit();
    };
    let dir = chasi_layers::resolve_store_dir(store)?;
    let store = chasi_layers::Store::open(&dir)
        .with_context(|| format!("opening store {}", dir.display()))?;
    // Unchanged files are not read again to compute the plan's content digests.
    let file_digests = StoreFileDigests::load(&store, &context);
    let (source, compiled) = args.input.compile_with(false, Some(&file_digests))?;
    let json = args.progress_is_json();
    if !compiled.diagnostics.is_empty() {
        print_diagnostics(&source, &compiled, json);
    }
    if compiled.has_errors() {
        let summary = format!(
            "{}: {}",
            source.name(),
            crate::cmd::check::summary(&compiled)
        );
        if json {
            let report = ErrorReport::plain(summary, "diagnostics");
            errors::print(
                &report,
                errors::Channels {
                    stdout_json: false,
                    stderr_json: true,
                },
            );
        } else {
            eprintln!("{summary}");
        }
        return Ok(ExitCode::from(1));
    }
    let (Some(program), Some(plan)) = (&compiled.program, &compiled.plan) else {
        anyhow::bail!("the Kubefile compiled without errors but produced no plan");
    };
    if let Err(e) = file_digests.save(&store) {
        let text = chasi_layers::error::chain(&e);
        if json {
            let line = serde_json::json!({"event": "warning", "message": text});
            eprintln!("{line}");
        } else {
            eprintln!("warning: {text}");
        }
    }
    let options = BuildOptions {
        tag: args.tag.clone(),
        context: PathBuf::from(&context),
        labels: args.labels.into_iter().collect::<BTreeMap<_, _>>(),
        annotations: args.annotations.into_iter().collect::<BTreeMap<_, _>>(),
        no_cache: args.no_cache,
        network: match args.network {
            NetworkArg::Host => Network::Host,
            NetworkArg::None => Network::None,
        },
        source_date_epoch: args.source_date_epoch.unwrap_or(0),
        offline: args.offline,
        compression: match args.compression {
            CompressionArg::Zstd => Compression::Zstd,
            CompressionArg::Gzip => Compression::Gzip,
        },
        work_dir: None,
    };
    let progress = observer(args.progress);
    let output = build(&store, program, plan, &options, progress.as_ref())
        .with_context(|| format!("building {} failed", args.tag))?;
    println!("{} {}", output.name, output.digest);
    Ok(ExitCode::SUCCESS)
}
