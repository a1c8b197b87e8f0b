//! `chasi images | inspect | tag | rmi | save | load`: images in the store.

use crate::progress::human_bytes;
use anyhow::Context as _;
use chasi_images as images;
use chasi_layers::Store;
use chasi_oci::{write::SaveFormat, LayerCompression, Platform};
use clap::{Args, ValueEnum};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Output of `chasi images`.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ListFormat {
    /// A table.
    Human,
    /// A JSON array.
    Json,
}

/// `chasi images` options.
#[derive(Debug, Args)]
pub struct ImagesArgs {
    /// Output format.
    #[arg(long, value_enum, default_value = "human")]
    format: ListFormat,
}

impl ImagesArgs {
    /// Whether stdout is JSON.
    pub fn format_is_json(&self) -> bool {
        matches!(self.format, ListFormat::Json)
    }
}

/// `chasi inspect` options.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Image name (NAME[:TAG]) or digest.
    image: String,
}

/// `chasi tag` options.
#[derive(Debug, Args)]
pub struct TagArgs {
    /// Existing image (NAME[:TAG] or digest).
    source: String,
    /// New name (NAME[:TAG]).
    #[arg(value_parser = crate::cmd::build::parse_tag)]
    target: String,
}

/// `chasi rmi` options.
#[derive(Debug, Args)]
pub struct RmiArgs {
    /// Images to untag (their blobs go at the next `chasi store gc`).
    #[arg(required = true)]
    images: Vec<String>,
}

/// `--format` of `chasi save`.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum SaveFormatArg {
    /// An OCI image layout directory.
    Oci,
    /// A tar of an OCI image layout.
    OciArchive,
    /// A `docker save` archive (one platform; zstd layers are written as plain tar).
    DockerArchive,
}

/// `--compression` of `chasi save`.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum SaveCompressionArg {
    /// Keep the layers as stored (zstd for images built by chasi).
    Keep,
    /// gzip, for consumers that cannot read zstd (umoci 0.4, old docker).
    Gzip,
    /// zstd.
    Zstd,
    /// Plain tar.
    None,
}

/// `chasi save` options.
#[derive(Debug, Args)]
pub struct SaveArgs {
    /// Image name (NAME[:TAG]) or digest.
    image: String,
    /// Output path: a directory for `oci`; otherwise a file (written under a temporary name,
    /// renamed when complete), an existing pipe or device (written in place), or `-` for
    /// standard output.
    #[arg(short, long, value_name = "PATH")]
    output: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value = "oci-archive")]
    format: SaveFormatArg,
    /// Layer compression of the output.
    #[arg(long, value_enum, default_value = "keep")]
    compression: SaveCompressionArg,
    /// Platform to write (os/arch[/variant]): oci and oci-archive then hold only its manifest
    /// instead of the whole index; a docker-archive always holds one platform.
    #[arg(long, value_name = "PLATFORM")]
    platform: Option<String>,
}

/// `chasi load` options.
#[derive(Debug, Args)]
pub struct LoadArgs {
    /// An OCI layout directory, an oci-archive, a docker-archive, or a delta made by `chasi delta`
    /// (applied to the base image it was made against, which must be in the store).
    path: PathBuf,
    /// For a delta: the most memory applying one part may take, in MiB.
    #[arg(long, value_name = "MIB", default_value_t = chasi_delta::DEFAULT_APPLY_MEMORY >> 20)]
    max_memory: u64,
    /// For a delta: tag the target with this name instead of the one it was made with.
    #[arg(long, value_name = "NAME[:TAG]", value_parser = crate::cmd::build::parse_tag)]
    tag: Option<String>,
}

/// The store for commands that read it (or change its refs): never created here (`load` creates it).
fn open(store: Option<&Path>) -> anyhow::Result<Store> {
    Ok(Store::open_existing(chasi_layers::resolve_store_dir(
        store,
    )?)?)
}

/// `chasi images`.
pub fn run_images(store: Option<&Path>, args: ImagesArgs) -> anyhow::Result<ExitCode> {
    let list = images::list(&open(store)?)?;
    match args.format {
        ListFormat::Json => outln!("{}", serde_json::to_string_pretty(&list)?),
        ListFormat::Human => {
            outln!(
                "{:<40} {:<20} {:<24} {:>10}",
                "NAME",
                "DIGEST",
                "PLATFORMS",
                "SIZE"
            );
            for i in list {
                let digest = &i.digest.to_string()[..19];
                match &i.problem {
                    None => outln!(
                        "{:<40} {:<20} {:<24} {:>10}",
                        i.name,
                        digest,
                        i.platforms.join(","),
                        human_bytes(i.size)
                    ),
                    Some(problem) => {
                        outln!("{:<40} {:<20} {:<24} {:>10}", i.name, digest, "-", "-");
                        eprintln!("warning: image {}: {problem}", i.name);
                    }
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `chasi inspect`.
pub fn run_inspect(store: Option<&Path>, args: InspectArgs) -> anyhow::Result<ExitCode> {
    let value = images::inspect(&open(store)?, &args.image)?;
    outln!("{}", serde_json::to_string_pretty(&value)?);
    Ok(ExitCode::SUCCESS)
}

/// `chasi tag`.
pub fn run_tag(store: Option<&Path>, args: TagArgs) -> anyhow::Result<ExitCode> {
    let name = images::tag(&open(store)?, &args.source, &args.target)?;
    outln!("{name}");
    Ok(ExitCode::SUCCESS)
}

/// `chasi rmi`.
pub fn run_rmi(store: Option<&Path>, args: RmiArgs) -> anyhow::Result<ExitCode> {
    let store = open(store)?;
    let mut failed = false;
    for image in &args.images {
        match images::remove(&store, image) {
            Ok(()) => outln!("untagged {image}"),
            Err(e) => {
                eprintln!("error: {}", chasi_layers::error::chain(&e));
                failed = true;
            }
        }
    }
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// `chasi save`.
pub fn run_save(store: Option<&Path>, args: SaveArgs) -> anyhow::Result<ExitCode> {
    let format = match args.format {
        SaveFormatArg::Oci => SaveFormat::OciLayout,
        SaveFormatArg::OciArchive => SaveFormat::OciArchive,
        SaveFormatArg::DockerArchive => SaveFormat::DockerArchive,
    };
    let compression = match args.compression {
        SaveCompressionArg::Keep => LayerCompression::Keep,
        SaveCompressionArg::Gzip => LayerCompression::Gzip,
        SaveCompressionArg::Zstd => LayerCompression::Zstd,
        SaveCompressionArg::None => LayerCompression::Uncompressed,
    };
    let platform = args
        .platform
        .as_deref()
        .map(str::parse::<Platform>)
        .transpose()?;
    let report = images::save(
        &open(store)?,
        &args.image,
        &args.output,
        format,
        compression,
        platform,
    )?;
    for w in &report.warnings {
        eprintln!("warning: {w}");
    }
    let line = format!("{} {}", args.output.display(), report.root.digest());
    // With `-o -` standard output carries the archive itself.
    if chasi_oci::output::is_stdout(&args.output) {
        eprintln!("{line}");
    } else {
        outln!("{line}");
    }
    Ok(ExitCode::SUCCESS)
}

/// `chasi load`.
pub fn run_load(store: Option<&Path>, args: LoadArgs) -> anyhow::Result<ExitCode> {
    if chasi_delta::is_delta(&args.path) {
        let store = Store::open(chasi_layers::resolve_store_dir(store)?)?;
        let opts = chasi_delta::ApplyOptions {
            max_memory: args.max_memory.saturating_mul(1 << 20),
            tag: args.tag,
        };
        let report = chasi_delta::apply(&store, &args.path, &opts)
            .with_context(|| format!("applying the delta {}", args.path.display()))?;
        outln!(
            "{} {}",
            report.name.as_deref().unwrap_or("(untagged)"),
            report.target
        );
        return Ok(ExitCode::SUCCESS);
    }
    let loaded = images::load(
        &Store::open(chasi_layers::resolve_store_dir(store)?)?,
        &args.path,
    )
    .with_context(|| format!("loading {}", args.path.display()))?;
    for (name, digest) in loaded {
        outln!("{name} {digest}");
    }
    Ok(ExitCode::SUCCESS)
}
