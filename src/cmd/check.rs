//! `chasi check`: parse and check a Kubefile (and its build context), print the diagnostics.
//!
//! Also home of the input options `check`, `plan` and `build` share (Kubefile, context, build
//! arguments, platforms, image type) and of loading the Kubefile; all logic is in `chasi_compiler`.

use anyhow::Context as _;
use chasi_compiler::check::{parse_platform as parse_checked_platform, ImageType};
use chasi_compiler::plan::files::FileDigests;
use chasi_compiler::source::SourceFile;
use chasi_compiler::{compile_bytes, render, CompileOptions, Compiled};
use chasi_oci::Platform;
use clap::{Args, ValueEnum};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

/// What to compile: shared by `chasi check` and `chasi plan`.
#[derive(Debug, Args)]
pub struct InputArgs {
    /// Build context directory; enables the checks of local sources (default: no context checks).
    #[arg(value_name = "CONTEXT")]
    pub context: Option<PathBuf>,
    /// Kubefile to read (default: CONTEXT/Kubefile, or ./Kubefile; `-` reads standard input).
    #[arg(short = 'f', long = "file", value_name = "KUBEFILE")]
    pub file: Option<PathBuf>,
    /// Build argument KEY=VALUE (KEY alone takes the value from the environment); repeatable.
    #[arg(long = "build-arg", value_name = "KEY[=VALUE]", value_parser = parse_build_arg)]
    pub build_args: Vec<(String, Option<String>)>,
    /// Target platforms os/arch[/variant], comma-separated or repeated (default: linux/<host arch>).
    #[arg(long = "platform", value_name = "PLATFORMS", value_delimiter = ',', value_parser = parse_platform)]
    pub platforms: Vec<Platform>,
    /// What the image installs (sealer's image types; written into the sealer extension):
    /// app-installer images get the application-image checks (KF239-KF242).
    #[arg(long = "type", value_enum, default_value = "kube-installer")]
    pub image_type: ImageTypeArg,
}

/// `--type`: sealer v0.11's image types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ImageTypeArg {
    /// A cluster image: Kubernetes and what it launches (sealer's default).
    KubeInstaller,
    /// An application image, run onto an existing cluster.
    AppInstaller,
}

impl From<ImageTypeArg> for ImageType {
    fn from(arg: ImageTypeArg) -> ImageType {
        match arg {
            ImageTypeArg::KubeInstaller => ImageType::KubeInstaller,
            ImageTypeArg::AppInstaller => ImageType::AppInstaller,
        }
    }
}

fn parse_build_arg(text: &str) -> Result<(String, Option<String>), String> {
    let (key, value) = match text.split_once('=') {
        Some((k, v)) => (k, Some(v.to_string())),
        None => (text, None),
    };
    let valid = key
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid {
        return Err(format!(
            "`{key}` is not a build argument name (letters, digits and `_`)"
        ));
    }
    Ok((key.to_string(), value))
}

fn parse_platform(text: &str) -> Result<Platform, String> {
    parse_checked_platform(text.trim())
}

impl InputArgs {
    /// Reads the Kubefile and compiles it with these options, plan included.
    pub fn compile(&self) -> anyhow::Result<(SourceFile, Compiled)> {
        self.compile_with(false, None)
    }

    /// Reads the Kubefile and compiles it (without the plan when `skip_plan`), taking file
    /// digests from `file_digests` when the caller keeps such a cache.
    pub fn compile_with(
        &self,
        skip_plan: bool,
        file_digests: Option<&dyn FileDigests>,
    ) -> anyhow::Result<(SourceFile, Compiled)> {
        let (name, bytes) = self.read_kubefile()?;
        let build_args = self.build_arg_values();
        let options = CompileOptions {
            context: self.context.as_deref(),
            build_args,
            platforms: self.platforms.clone(),
            image_type: self.image_type.into(),
            skip_plan,
            file_digests,
        };
        Ok(compile_bytes(name, &bytes, &options)?)
    }

    /// Reads the Kubefile (`-f`, else CONTEXT/Kubefile, else ./Kubefile; `-` is standard
    /// input); returns the name diagnostics give it and its bytes.
    pub fn read_kubefile(&self) -> anyhow::Result<(String, Vec<u8>)> {
        let path = match (&self.file, &self.context) {
            (Some(file), _) => file.clone(),
            (None, Some(context)) => context.join("Kubefile"),
            (None, None) => PathBuf::from("Kubefile"),
        };
        if path.as_os_str() == "-" {
            let mut bytes = Vec::new();
            std::io::stdin()
                .read_to_end(&mut bytes)
                .context("cannot read the Kubefile from standard input")?;
            Ok(("-".to_string(), bytes))
        } else {
            let bytes = std::fs::read(&path)
                .with_context(|| format!("cannot read the Kubefile {}", path.display()))?;
            Ok((path.display().to_string(), bytes))
        }
    }

    /// The `--build-arg` values (a KEY without a value takes it from the environment, and is
    /// left out when the environment has none).
    pub fn build_arg_values(&self) -> BTreeMap<String, String> {
        self.build_args
            .iter()
            .filter_map(|(k, v)| {
                v.clone()
                    .or_else(|| std::env::var(k).ok())
                    .map(|v| (k.clone(), v))
            })
            .collect()
    }
}

/// How `check` prints diagnostics.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum CheckFormat {
    /// Code frames and a summary line.
    Human,
    /// `{"diagnostics":[...]}` with positions, for tools.
    Json,
}

/// `chasi check` options.
#[derive(Debug, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    input: InputArgs,
    /// Output format.
    #[arg(long, value_enum, default_value = "human")]
    format: CheckFormat,
}

impl CheckArgs {
    /// Whether stdout is JSON.
    pub fn format_is_json(&self) -> bool {
        matches!(self.format, CheckFormat::Json)
    }
}

/// A one-line count of errors and warnings.
pub fn summary(compiled: &Compiled) -> String {
    let errors = compiled.diagnostics.iter().filter(|d| d.is_error()).count();
    let warnings = compiled.diagnostics.len() - errors;
    let plural = |n: usize, word: &str| format!("{n} {word}{}", if n == 1 { "" } else { "s" });
    format!(
        "{}, {}",
        plural(errors, "error"),
        plural(warnings, "warning")
    )
}

/// Runs `chasi check`: exit 0 without errors (warnings allowed), 1 with errors.
pub fn run(args: CheckArgs) -> anyhow::Result<ExitCode> {
    let (source, compiled) = args.input.compile_with(true, None)?;
    match args.format {
        CheckFormat::Json => outln!("{}", render::json(&source, &compiled.diagnostics)),
        CheckFormat::Human => {
            out!("{}", render::human(&source, &compiled.diagnostics));
            outln!("{}: {}", source.name(), summary(&compiled));
        }
    }
    Ok(if compiled.has_errors() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
