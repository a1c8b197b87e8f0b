//! The pest parser for `kubefile.pest`.
//!
//! This module exists to keep pest's generated `Rule` enum and its `Pair` type inside the
//! crate: they are lowered into [`super::ast`] straight away and never appear in a public API.

use pest_derive::Parser;

/// The generated Kubefile parser (see `kubefile.pest` for the grammar and its design notes).
#[derive(Parser)]
#[grammar = "syntax/kubefile.pest"]
pub(crate) struct KubefileParser;

/// A node of pest's parse tree.
pub(crate) type Pair<'i> = pest::iterators::Pair<'i, Rule>;
