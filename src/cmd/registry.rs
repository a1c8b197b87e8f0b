//! `chasi push IMAGE [REF]` and `chasi pull REF`: images between the store and an OCI
//! distribution registry (`chasi_registry`).

use crate::progress::human_bytes;
use chasi_layers::Store;
use chasi_registry::{AuthFiles, Options, Retry};
use clap::Args;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// How to reach the registry (shared by push, pull and build's `FROM HOST/NAME:TAG`).
#[derive(Debug, Args)]
pub struct RegistryArgs {
    /// Credentials USER:PASSWORD (default: $REGISTRY_AUTH_FILE, then ~/.docker/config.json).
    #[arg(
        long,
        value_name = "USER:PASS",
        env = "CHASI_REGISTRY_CREDS",
        hide_env_values = true
    )]
    creds: Option<String>,
    /// A PEM file of CA certificates to trust besides the system's.
    #[arg(long, value_name = "FILE")]
    tls_ca: Option<PathBuf>,
    /// Verify the registry's TLS certificate (`--tls-verify=false` for a lab registry).
    #[arg(long, value_name = "BOOL", default_value_t = true, action = clap::ArgAction::Set)]
    tls_verify: bool,
    /// A registry (HOST[:PORT]) that may be spoken to in plain HTTP; repeatable. Loopback
    /// registries (127.0.0.0/8, ::1, localhost) are by default.
    #[arg(long, value_name = "HOST[:PORT]")]
    insecure_registry: Vec<String>,
    /// Tries of a request that fails transiently (connection refused or reset, 5xx, 429).
    #[arg(long, value_name = "N", default_value_t = Retry::default().attempts)]
    retries: u32,
}

impl RegistryArgs {
    /// The library's options, with the auth files of the environment.
    pub fn options(&self) -> Options {
        Options {
            creds: self.creds.clone(),
            auth_files: AuthFiles::from_env(),
            tls_ca: self.tls_ca.clone(),
            tls_verify: self.tls_verify,
            insecure_registries: self.insecure_registry.clone(),
            retry: Retry {
                attempts: self.retries.max(1),
                ..Retry::default()
            },
        }
    }
}

/// `chasi push` options.
#[derive(Debug, Args)]
pub struct PushArgs {
    /// The image in the store: NAME[:TAG] or digest.
    image: String,
    /// Where to: HOST[:PORT]/NAME[:TAG] (default: the image's name).
    reference: Option<String>,
    #[command(flatten)]
    registry: RegistryArgs,
    /// Output format.
    #[arg(long, value_enum, default_value = "human")]
    format: crate::cmd::images::ListFormat,
}

impl PushArgs {
    /// Whether stdout is JSON.
    pub fn format_is_json(&self) -> bool {
        matches!(self.format, crate::cmd::images::ListFormat::Json)
    }
}

/// `chasi pull` options.
#[derive(Debug, Args)]
pub struct PullArgs {
    /// What to pull: HOST[:PORT]/NAME[:TAG] or HOST[:PORT]/NAME@sha256:….
    reference: String,
    /// The store name to give it (default: the reference).
    #[arg(long, value_parser = crate::cmd::build::parse_tag)]
    tag: Option<String>,
    #[command(flatten)]
    registry: RegistryArgs,
    /// Output format.
    #[arg(long, value_enum, default_value = "human")]
    format: crate::cmd::images::ListFormat,
}

impl PullArgs {
    /// Whether stdout is JSON.
    pub fn format_is_json(&self) -> bool {
        matches!(self.format, crate::cmd::images::ListFormat::Json)
    }
}

/// Runs `chasi push`.
pub fn run_push(store: Option<&Path>, args: PushArgs) -> anyhow::Result<ExitCode> {
    let json = args.format_is_json();
    let store = Store::open_existing(chasi_layers::resolve_store_dir(store)?)?;
    let opts = args.registry.options();
    let r = chasi_registry::push(&store, &args.image, args.reference.as_deref(), &opts)?;
    if json {
        outln!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        outln!("{} {}", r.reference, r.digest);
        outln!(
            "{} blobs uploaded ({}), {} already there, {} mounted; {} manifests",
            r.blobs_uploaded,
            human_bytes(r.bytes_uploaded),
            r.blobs_present,
            r.blobs_mounted,
            r.manifests
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs `chasi pull`.
pub fn run_pull(store: Option<&Path>, args: PullArgs) -> anyhow::Result<ExitCode> {
    let json = args.format_is_json();
    let store = Store::open(chasi_layers::resolve_store_dir(store)?)?;
    let opts = args.registry.options();
    let r = chasi_registry::pull(&store, &args.reference, args.tag.as_deref(), &opts)?;
    if json {
        outln!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        outln!("{} {}", r.tag.as_deref().unwrap_or("(untagged)"), r.digest);
        outln!(
            "{} blobs stored ({}), {} already in the store",
            r.blobs_stored,
            human_bytes(r.bytes_stored),
            r.blobs_present
        );
    }
    Ok(ExitCode::SUCCESS)
}
