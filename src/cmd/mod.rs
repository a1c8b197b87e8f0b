//! Subcommand definitions and dispatch.

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
pub enum Command {}

/// Runs one parsed command line and returns the process exit code.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {}
}
