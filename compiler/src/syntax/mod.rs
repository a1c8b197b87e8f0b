//! Kubefile syntax: the pest grammar, lowering into the [`ast`] tree, and lexical diagnostics.
//!
//! Parsing never fails: [`parse`] always returns a tree (instructions it could not make
//! sense of are kept with `keyword: None` or reported and skipped) and every problem as a
//! [`Diagnostic`].

pub mod ast;

use crate::diagnostics::Diagnostic;
use crate::source::SourceFile;

/// The result of parsing: a tree plus the problems found on the way.
#[derive(Debug, Clone)]
pub struct Parse {
    /// The syntax tree.
    pub kubefile: ast::Kubefile,
    /// Lexical and syntax diagnostics, in source order.
    pub diagnostics: Vec<Diagnostic>,
}

/// Parses a Kubefile. Never fails and never panics.
pub fn parse(source: &SourceFile) -> Parse {
    let _ = source;
    unimplemented!("being written")
}
