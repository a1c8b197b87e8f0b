//! `RUN`: the command in the sandbox over the stage's filesystem; its changes are the layer.
//! A program of another architecture that no emulator runs is refused first ([`binfmt`]).

use super::StepInput;
use crate::error::{BuildError, Result};
use crate::events::BuildEvent;
use crate::rootfs::WorkRoot;
use crate::sandbox::{binfmt, RunCommand, RunSpec, DEFAULT_PATH};
use crate::state::ImageState;
use chasi_compiler::check::{Command, Run};
use chasi_layers::LayerInfo;

/// Runs the command; a non-zero exit is [`BuildError::RunFailed`] with its output.
pub(super) fn execute(
    input: &StepInput<'_, '_>,
    run: &Run,
    state: &ImageState,
    root: &mut WorkRoot,
) -> Result<Option<LayerInfo>> {
    let session = input.session;
    let store = session.store;
    let rootfs = root.sync(store, &state.layers)?.to_path_buf();
    let spec = RunSpec {
        lower: rootfs,
        scratch: input.scratch(),
        command: match &run.command {
            Command::Shell(s) => RunCommand::Shell(s.clone()),
            Command::Exec(argv) => RunCommand::Exec(argv.clone()),
        },
        env: environment(state, run),
        network: session.opts.network,
    };
    binfmt::check(
        &spec.lower,
        &spec.command,
        &spec.env,
        input.platform,
        &binfmt::binfmt_dir(),
    )
    .map_err(|e| input.err(e))?;
    let report = |bytes: u64| input.report(bytes);
    let result = crate::run::run_step(store, &spec, session.opts.source_date_epoch, Some(&report))?;
    let text = crate::events::printable(&result.output);
    for line in text.lines() {
        session.observer.event(BuildEvent::StepOutput {
            id: input.node.id,
            line: line.to_string(),
        });
    }
    if result.exit_code != 0 {
        return Err(BuildError::RunFailed {
            line: super::line_of(input.node),
            at: super::at(input.node),
            command: match &run.command {
                Command::Shell(s) => s.clone(),
                Command::Exec(a) => serde_json::to_string(a).unwrap_or_default(),
            },
            exit_code: result.exit_code,
            hint: binfmt::exec_format_hint(input.platform, &result.output)
                .map(|h| format!("; {h}"))
                .unwrap_or_default(),
            output: text,
        });
    }
    Ok(result.layer)
}

/// The image's environment, overridden by the step's own (`ARG`s in scope), with a default `PATH`.
fn environment(state: &ImageState, run: &Run) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = state.env();
    for (k, v) in &run.env {
        match env.iter_mut().find(|(key, _)| key == k) {
            Some(slot) => slot.1 = v.clone(),
            None => env.push((k.clone(), v.clone())),
        }
    }
    if !env.iter().any(|(k, _)| k == "PATH") {
        env.push(("PATH".into(), DEFAULT_PATH.into()));
    }
    env
}
