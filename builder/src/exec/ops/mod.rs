//! Per-op executors: what one step does to the stage's image state and filesystem.
//!
//! [`execute`] dispatches a layer step to [`run`] (`RUN`) or [`copy`] (`COPY`, `ADD`, `APP`),
//! which return the layer they wrote (or none when a `RUN` changed nothing); [`config`]
//! applies the steps that only change the configuration. Keying and caching are the
//! caller's ([`super::stage`]); these modules only execute.

pub(super) mod config;
mod copy;
mod run;

use super::slots::StageDone;
use super::Session;
use crate::error::{BuildError, Result, StepError};
use crate::fetch::Fetched;
use crate::rootfs::WorkRoot;
use crate::state::ImageState;
use chasi_compiler::check::Op;
use chasi_compiler::plan::Node;
use chasi_layers::LayerInfo;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// One layer step to execute, with what was resolved for it.
pub(super) struct StepInput<'s, 'a> {
    pub(super) session: &'s Session<'a>,
    /// Its plan node (identity, label, line).
    pub(super) node: &'s Node,
    /// What it does.
    pub(super) op: &'s Op,
    /// The stage's platform, whose programs `RUN` executes.
    pub(super) platform: &'s str,
    /// Its remote sources, by URL.
    pub(super) fetched: &'s BTreeMap<String, Fetched>,
    /// The stage a `COPY --from` reads.
    pub(super) from_stage: Option<&'s StageDone>,
}

impl StepInput<'_, '_> {
    /// The step's private scratch directory under the build's work directory.
    fn scratch(&self) -> PathBuf {
        let short = &self.node.id.hex()[..16];
        self.session.work.join(format!("step-{short}"))
    }

    /// Reports bytes processed by the step.
    fn report(&self, bytes: u64) {
        self.session
            .observer
            .event(crate::events::BuildEvent::StepBytes {
                id: self.node.id,
                bytes,
            })
    }

    /// Tells the observer how many bytes the step will process.
    fn total(&self, bytes: u64) {
        self.session
            .observer
            .event(crate::events::BuildEvent::StepTotal {
                id: self.node.id,
                bytes,
            })
    }

    fn err(&self, source: impl Into<StepError>) -> BuildError {
        step_err(self.node, source.into())
    }
}

/// Executes a layer step; returns its layer, or `None` when it changed nothing.
pub(super) fn execute(
    input: &StepInput<'_, '_>,
    state: &mut ImageState,
    root: &mut WorkRoot,
) -> Result<Option<LayerInfo>> {
    match input.op {
        Op::Run(r) => run::execute(input, r, state, root),
        Op::Copy(c) | Op::Add(c) => copy::copy(input, c, state, root).map(Some),
        Op::App(app) => copy::app(input, app, state, root).map(Some),
        Op::Env { .. } | Op::Label { .. } | Op::Arg { .. } | Op::Maintainer { .. } => Ok(None),
    }
}

/// A step node's 1-based Kubefile line.
pub(super) fn line_of(node: &Node) -> usize {
    node.line.unwrap_or_default()
}

/// Where a step node is, as its errors name it: `FILE:LINE:COLUMN` when the plan knows its
/// source, else `line N`.
pub(super) fn at(node: &Node) -> String {
    node.location
        .clone()
        .unwrap_or_else(|| format!("line {}", line_of(node)))
}

/// A step failure naming where the step is and its label.
pub(super) fn step_err(node: &Node, source: StepError) -> BuildError {
    BuildError::Step {
        line: line_of(node),
        at: at(node),
        label: node.label.clone(),
        source: Box::new(source),
    }
}
