//! `chasi completions SHELL` and `chasi man`: shell completion scripts and man pages, generated from the same
//! clap definitions the parser uses, so they never drift from the real command line.

use clap::{Args, CommandFactory, ValueEnum};
use std::path::PathBuf;
use std::process::ExitCode;

/// The shells completions are written for.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Shell {
    /// bash (`source <(chasi completions bash)`, or install under /usr/share/bash-completion/completions/chasi).
    Bash,
    /// zsh (install as `_chasi` in a directory of `$fpath`).
    Zsh,
    /// fish (install under ~/.config/fish/completions/chasi.fish).
    Fish,
    /// elvish.
    Elvish,
    /// PowerShell.
    Powershell,
}

/// `chasi completions` options.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell.
    #[arg(value_enum)]
    shell: Shell,
}

/// `chasi man` options.
#[derive(Debug, Args)]
pub struct ManArgs {
    /// Write `chasi.1` and one `chasi-COMMAND.1` per subcommand into this directory (default: print `chasi.1`).
    #[arg(short, long, value_name = "DIR")]
    output_dir: Option<PathBuf>,
}

/// Prints the completion script of `shell`.
pub fn completions(args: CompletionsArgs) -> anyhow::Result<ExitCode> {
    use clap_complete::Shell as S;
    let shell = match args.shell {
        Shell::Bash => S::Bash,
        Shell::Zsh => S::Zsh,
        Shell::Fish => S::Fish,
        Shell::Elvish => S::Elvish,
        Shell::Powershell => S::PowerShell,
    };
    let mut cmd = super::Cli::command();
    // Into memory first: clap_complete panics when its writer fails (a closed pipe).
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut cmd, "chasi", &mut script);
    out!("{}", String::from_utf8_lossy(&script));
    Ok(ExitCode::SUCCESS)
}

/// Prints or writes the man pages.
pub fn man(args: ManArgs) -> anyhow::Result<ExitCode> {
    let cmd = super::Cli::command();
    match args.output_dir {
        None => {
            let mut page = Vec::new();
            clap_mangen::Man::new(cmd).render(&mut page)?;
            out!("{}", String::from_utf8_lossy(&page));
        }
        Some(dir) => {
            std::fs::create_dir_all(&dir)?;
            clap_mangen::generate_to(cmd, &dir)?;
            outln!("{}", dir.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}
