//! `chasi-compiler`: from Kubefile text to a checked build plan.
//!
//! The pipeline inside this crate is `syntax` (pest grammar → span-carrying tree, never fails)
//! → `check` (sealer v0.11 semantics, all problems at once) → `plan` (a DAG of steps whose
//! identities are digests of their definitions and inputs).
//! Every stage reports problems as [`diagnostics::Diagnostic`] values instead of failing.

pub mod diagnostics;
pub mod source;
pub mod syntax;
