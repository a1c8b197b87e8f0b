//! `chasi build`: the options of a build, handed to [`chasi_builder::build_kubefile`], and
//! what it prints (diagnostics, warnings, `NAME DIGEST`).

use crate::cmd::check::InputArgs;
use crate::errors::{self, ErrorReport};
use crate::progress::{observer, ProgressMode};
use anyhow::Context as _;
use chasi_builder::assemble::ManifestCompression;
use chasi_builder::runconfig::OciCmd;
use chasi_builder::sandbox::Network;
use chasi_builder::{
    build_kubefile, BuildMode, BuildOptions, CarryOptions, CompileObserver, KubefileBuild,
    KubefileError, KubefileInput,
};
use chasi_compiler::diagnostics::Diagnostic;
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

/// `--oci-cmd`: when `CMD`/`CMDS` become the OCI `config.Cmd`.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum OciCmdArg {
    /// For container images; not for cluster images (applications, `LAUNCH` or sealer labels).
    Auto,
    /// Always.
    Always,
    /// Never: the commands stay in the sealer extension only, as sealer does.
    Never,
}

/// `--build-mode`: sealer's flag, whether the image carries its cluster's container images.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum BuildModeArg {
    /// Carry nothing (the default: a build reaches a registry only when asked to).
    Lite,
    /// Carry every image that manifests/, charts/, application/apps/ and the image lists
    /// reference, in a registry/ layer (sealer's default).
    All,
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
    /// When CMD/CMDS also become the OCI config's Cmd (`ctr run IMAGE` runs them): auto is
    /// for container images, not for cluster images (applications, LAUNCH, sealer labels).
    #[arg(long, value_enum, default_value = "auto")]
    oci_cmd: OciCmdArg,
    /// Never download remote sources or pull registry bases; use the copies in the store.
    #[arg(long)]
    offline: bool,
    /// `all`: put the container images the cluster needs into the image (a registry/ layer, one
    /// per platform, and the sealer.image.container.images annotation), as sealer does.
    #[arg(long, value_enum, default_value = "lite")]
    build_mode: BuildModeArg,
    /// With --build-mode all: more images to carry, one reference per line (# comments).
    #[arg(long, value_name = "FILE")]
    image_list: Option<PathBuf>,
    /// With --build-mode all: images not to carry, one reference per line.
    #[arg(long, value_name = "FILE")]
    ignored_image_list: Option<PathBuf>,
    /// Import the build cache another run pushed, before building (registry:HOST/NAME:TAG);
    /// repeatable. A cache that cannot be read is a warning.
    #[arg(long, value_name = "registry:REF", value_parser = parse_cache)]
    cache_from: Vec<String>,
    /// Push the cache entries and layers of this build as a cache image (registry:HOST/NAME:TAG).
    #[arg(long, value_name = "registry:REF", value_parser = parse_cache)]
    cache_to: Option<String>,
    /// How to reach the registries of `FROM HOST[:PORT]/NAME:TAG` bases, carried images and caches.
    #[command(flatten)]
    registry: crate::cmd::registry::RegistryArgs,
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

fn parse_cache(text: &str) -> Result<String, String> {
    chasi_builder::remotecache::registry_reference(text).map(str::to_string)
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

/// Prints what happens around the build: the compiler's diagnostics and those only the build
/// finds (code frames, or one `diagnostics` event), and warnings.
struct CompileReport {
    json: bool,
}

impl CompileObserver for CompileReport {
    fn compiled(&self, source: &SourceFile, compiled: &Compiled) {
        self.print(source, &compiled.diagnostics);
    }

    fn refused(&self, source: &SourceFile, diagnostics: &[Diagnostic]) {
        self.print(source, diagnostics);
    }

    fn warning(&self, message: &str) {
        if self.json {
            let line = serde_json::json!({"event": "warning", "message": message});
            eprintln!("{line}");
        } else {
            eprintln!("warning: {message}");
        }
    }
}

impl CompileReport {
    /// Code frames on stderr, or one `diagnostics` event.
    fn print(&self, source: &SourceFile, diagnostics: &[Diagnostic]) {
        if diagnostics.is_empty() {
            return;
        }
        if !self.json {
            eprint!("{}", render::human(source, diagnostics));
            return;
        }
        let diagnostics: serde_json::Value =
            serde_json::from_str(&render::json(source, diagnostics)).unwrap_or_default();
        let line = serde_json::json!({
            "event": "diagnostics",
            "diagnostics": diagnostics["diagnostics"],
        });
        eprintln!("{line}");
    }
}

/// Prints the summary of a Kubefile with errors; the exit code is 1.
fn rejected(source: &SourceFile, compiled: &Compiled, json: bool) -> ExitCode {
    let summary = format!(
        "{}: {}",
        source.name(),
        crate::cmd::check::summary(compiled)
    );
    if json {
        let report = ErrorReport::plain(summary, "diagnostics");
        errors::print(
            &report,
            errors::Channels {
                stderr_json: true,
                ..errors::Channels::default()
            },
        );
    } else {
        eprintln!("{summary}");
    }
    ExitCode::from(1)
}

impl BuildArgs {
    fn options(&self, context: &Path) -> BuildOptions {
        BuildOptions {
            tag: self.tag.clone(),
            context: context.to_path_buf(),
            labels: self.labels.iter().cloned().collect::<BTreeMap<_, _>>(),
            annotations: self.annotations.iter().cloned().collect::<BTreeMap<_, _>>(),
            no_cache: self.no_cache,
            network: match self.network {
                NetworkArg::Host => Network::Host,
                NetworkArg::None => Network::None,
            },
            source_date_epoch: self.source_date_epoch.unwrap_or(0),
            offline: self.offline,
            registry: self.registry.options(),
            compression: match self.compression {
                CompressionArg::Zstd => ManifestCompression::Zstd,
                CompressionArg::Gzip => ManifestCompression::Gzip,
            },
            oci_cmd: match self.oci_cmd {
                OciCmdArg::Auto => OciCmd::Auto,
                OciCmdArg::Always => OciCmd::Always,
                OciCmdArg::Never => OciCmd::Never,
            },
            carry: CarryOptions {
                mode: match self.build_mode {
                    BuildModeArg::Lite => BuildMode::Lite,
                    BuildModeArg::All => BuildMode::All,
                },
                image_list: self.image_list.clone(),
                ignored_image_list: self.ignored_image_list.clone(),
            },
            cache_from: self.cache_from.clone(),
            cache_to: self.cache_to.clone(),
            work_dir: None,
        }
    }
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
    let (name, bytes) = args.input.read_kubefile()?;
    let input = KubefileInput {
        name,
        bytes: &bytes,
        build_args: args.input.build_arg_values(),
        platforms: args.input.platforms.clone(),
        image_type: args.input.image_type.into(),
    };
    let json = args.progress_is_json();
    let progress = observer(args.progress);
    let result = build_kubefile(
        &store,
        &input,
        &args.options(&context),
        &CompileReport { json },
        progress.as_ref(),
    );
    match result {
        Ok(KubefileBuild::Built(output)) => {
            outln!("{} {}", output.name, output.digest);
            Ok(ExitCode::SUCCESS)
        }
        Ok(KubefileBuild::Rejected { source, compiled }) => Ok(rejected(&source, &compiled, json)),
        Err(KubefileError::Build(e)) => {
            Err(anyhow::Error::new(e).context(format!("building {} failed", args.tag)))
        }
        Err(e) => Err(e.into()),
    }
}
