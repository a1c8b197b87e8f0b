//! The `chasi` command line: argument parsing and output formatting only.
//! Every subcommand is a thin call into a library crate.

#[macro_use]
mod stdout;
mod cmd;
mod errors;
mod progress;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = match cmd::Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => return usage_error(err),
    };
    let channels = cli.error_channels();
    match cmd::run(cli) {
        Ok(code) => code,
        Err(err) => {
            errors::print(&errors::ErrorReport::of(&err), channels);
            ExitCode::from(1)
        }
    }
}

/// A command line clap refused (exit 2): as JSON when the arguments asked for JSON output,
/// clap's own text otherwise (and for `--help`/`--version`, which are not errors).
fn usage_error(err: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    let args: Vec<String> = std::env::args().skip(1).collect();
    let channels = cmd::channels_from_raw_args(&args);
    let help = matches!(
        err.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    );
    if help || channels == errors::Channels::default() {
        err.exit();
    }
    let text = err.render().to_string();
    let message = text
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("invalid command line")
        .trim_start_matches("error: ")
        .to_string();
    errors::print(&errors::ErrorReport::plain(message, "usage"), channels);
    ExitCode::from(2)
}
