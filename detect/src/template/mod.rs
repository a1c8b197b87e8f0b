//! Helm's template language: Go `text/template` (lexer → parser → positioned AST →
//! executor) with the Helm and sprig functions real charts use. Written here because no
//! maintained Rust crate renders Helm's dialect with positions, and `include` needs the
//! functions to reach the template set.
//!
//! What is refused rather than guessed: a function Helm has but this renderer does not
//! (named in the error, see [`funcs`]), and everything Go itself refuses (unknown
//! functions, undefined variables, a field of nil, incompatible comparisons).

pub(crate) mod ast;
pub(crate) mod exec;
pub(crate) mod funcs;
mod lex;
pub(crate) mod parse;
pub(crate) mod value;
