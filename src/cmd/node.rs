//! `chasi node …`: the node runtime's commands (`apply`, `status`, `rollback`, `verify`, `mark-good`,
//! `images import`, ...),
//! the same as the `chasi-node` binary: both fronts call `chasi_runtime::cli::run`.

use chasi_runtime::cli::NodeArgs;
use std::process::ExitCode;

/// Runs `chasi node`.
pub fn run(args: NodeArgs) -> anyhow::Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    let code = chasi_runtime::cli::run(args, &mut out)?;
    Ok(ExitCode::from(code))
}
