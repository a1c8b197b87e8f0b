//! Configuration-only steps (`ENV`, `LABEL`, `MAINTAINER`, `ARG`): they change the image
//! configuration and history, never the filesystem, and are never cached on their own.

use crate::state::ImageState;
use chasi_compiler::check::Op;
use std::collections::BTreeMap;

/// Applies a configuration step to the state; returns `false` (and does nothing) for a
/// layer step. `ARG` only enters the key: its value is already expanded into later steps.
pub(in crate::exec) fn apply(state: &mut ImageState, op: &Op, created: &str, label: &str) -> bool {
    match op {
        Op::Env { vars } => state.set_env(vars),
        Op::Label { labels } => {
            let map: BTreeMap<String, String> = labels.iter().cloned().collect();
            state.set_labels(map.iter());
        }
        Op::Maintainer { text } => state.author = Some(text.clone()),
        Op::Arg { .. } => return true,
        Op::Copy(_) | Op::Add(_) | Op::Run(_) | Op::App(_) => return false,
    }
    state.push_history(created, label, true);
    true
}
