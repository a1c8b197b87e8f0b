//! `chasi plan`: print the build DAG of a Kubefile (text, JSON or Graphviz DOT).
//!
//! Diagnostics go to standard error; the plan is printed only when there is no error.

use super::check::{summary, InputArgs};
use chasi_compiler::plan::render as plan_render;
use chasi_compiler::render;
use clap::{Args, ValueEnum};
use std::process::ExitCode;

/// How `plan` prints the DAG.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum PlanFormat {
    /// One line per node, grouped by platform and stage.
    Text,
    /// The whole plan with node definitions, for tools.
    Json,
    /// A Graphviz digraph (`chasi plan --format dot | dot -Tsvg > plan.svg`).
    Dot,
}

/// `chasi plan` options.
#[derive(Debug, Args)]
pub struct PlanArgs {
    #[command(flatten)]
    input: InputArgs,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    format: PlanFormat,
}

impl PlanArgs {
    /// Whether stdout is JSON.
    pub fn format_is_json(&self) -> bool {
        matches!(self.format, PlanFormat::Json)
    }
}

/// Runs `chasi plan`: exit 0 with the plan on standard output, 1 with errors.
pub fn run(args: PlanArgs) -> anyhow::Result<ExitCode> {
    let (source, compiled) = args.input.compile()?;
    if !compiled.diagnostics.is_empty() {
        eprint!("{}", render::human(&source, &compiled.diagnostics));
        eprintln!("{}: {}", source.name(), summary(&compiled));
    }
    let Some(plan) = &compiled.plan else {
        return Ok(ExitCode::from(1));
    };
    let out = match args.format {
        PlanFormat::Text => plan_render::text(plan),
        PlanFormat::Json => plan_render::json(plan) + "\n",
        PlanFormat::Dot => plan_render::dot(plan),
    };
    out!("{out}");
    Ok(ExitCode::SUCCESS)
}
