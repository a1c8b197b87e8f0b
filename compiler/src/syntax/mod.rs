//! Kubefile syntax: the pest grammar, lowering into the [`ast`] tree, and lexical diagnostics.
//!
//! Parsing never fails: [`parse`] always returns a tree (instructions it could not make
//! sense of are kept with `keyword: None` or reported and skipped) and every problem as a
//! [`Diagnostic`].
//!
//! Parsing runs in two pest passes over the text: the `prologue` rule reads the parser
//! directives (`# escape=`), then the body is parsed with the entry rule for the escape
//! character in effect (see the notes at the top of `kubefile.pest`). [`parse_bytes`] reads
//! raw bytes and also reports invalid UTF-8 (KF111).
//!
//! What the grammar covers: the whole Kubefile language with Dockerfile's lexical rules
//! (parser directives, continuations anywhere, even inside a keyword or a quoted string,
//! full-line comments, JSON-array and shell forms, leading `--flags`, case-insensitive
//! keywords, BOM, CRLF). The two entry rules differ only in the escape character they push
//! on pest's stack (`PUSH_LITERAL`); every escape-dependent rule reads it from there, so each
//! rule exists once.
//!
//! Why it is built this way:
//! - **Total grammar**: every input parses; a line that is nothing else matches an
//!   error-recovery alternative. Should pest ever hit its stack limit, the parser falls back to
//!   reading each line on its own.
//! - **No recursion on input**: JSON arrays are recognised three levels deep without
//!   recursion, so hostile input cannot exhaust the stack; deeper text is shell form (KF106).
//! - **pest stays inside**: `lower.rs` turns pest pairs into the span-carrying [`ast`] tree at
//!   once and pest types never leave this module. Shell words keep their quotes, JSON items are
//!   decoded, a word broken by a continuation spans both pieces. Unknown keywords get a "did
//!   you mean" (`keywords.rs`, edit distance); Dockerfile-only instructions get their own
//!   message (KF103).
//! - **Rendering** (`crate::render`): `human()` draws code frames with `annotate-snippets`,
//!   given only the lines a span touches so big files stay cheap; `json()` prints the
//!   documented shape (`end_column` is one past the last character).
//! - **Linear time**: no re-scans (a regression test covers 20,000 continuation lines; a dense
//!   20,000-line Kubefile checks in well under a second, `scripts/bench-check.sh`).
//! - **No panics**: a proptest in the default suite (`compiler/tests/no_panic.rs`: 2,000
//!   Kubefile-like and random-byte cases through parse, compile and both renderers, checking
//!   every span) and a cargo-fuzz target (`fuzz/fuzz_targets/parse.rs`).

pub mod ast;
mod grammar;
mod keywords;
mod lower;

use crate::diagnostics::{Code, Diagnostic};
use crate::source::{SourceFile, Span};
use grammar::{KubefileParser, Rule};
use pest::Parser;

/// The result of parsing: a tree plus the problems found on the way.
#[derive(Debug, Clone)]
pub struct Parse {
    /// The syntax tree.
    pub kubefile: ast::Kubefile,
    /// Lexical and syntax diagnostics, in source order.
    pub diagnostics: Vec<Diagnostic>,
}

impl Parse {
    /// Whether any diagnostic is an error.
    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(Diagnostic::is_error)
    }
}

/// Parses a Kubefile. Never fails and never panics.
pub fn parse(source: &SourceFile) -> Parse {
    let text = source.text();
    let mut diagnostics = Vec::new();
    let (escape, escape_directive) = directives(text, &mut diagnostics);
    let entry = if escape == '`' {
        Rule::kubefile_backtick
    } else {
        Rule::kubefile_backslash
    };

    let instructions = match KubefileParser::parse(entry, text) {
        Ok(mut pairs) => {
            let mut lowerer = lower::Lowerer::new(text, 0, escape);
            if let Some(root) = pairs.next() {
                lowerer.lower_body(root);
            }
            diagnostics.append(&mut lowerer.diagnostics);
            lowerer.instructions
        }
        // The grammar is total, so pest only gives up on a resource limit (its stack guard).
        // Fall back to parsing each physical line on its own: continuations are lost, but
        // every line still yields its instruction and diagnostics.
        Err(_) => per_line(text, entry, escape, &mut diagnostics),
    };

    diagnostics.sort_by_key(|d| (d.span.start, d.span.end));
    Parse {
        kubefile: ast::Kubefile {
            escape,
            escape_directive,
            instructions,
        },
        diagnostics,
    }
}

/// Reads a Kubefile from raw bytes and parses it, reporting each run of bytes that is not
/// valid UTF-8 as KF111.
///
/// The invalid bytes are replaced by U+FFFD (as [`SourceFile::from_bytes`] does), one
/// replacement character per maximal invalid sequence; each KF111 span covers the replacement
/// characters of one run of adjacent invalid sequences. A U+FFFD that was written in the file
/// as valid UTF-8 is not reported, which is why this works on bytes rather than on the text.
pub fn parse_bytes(name: impl Into<String>, bytes: &[u8]) -> (SourceFile, Parse) {
    let source = SourceFile::from_bytes(name, bytes);
    let mut parse = parse(&source);
    let bom = if bytes.starts_with(&[0xEF, 0xBB, 0xBF]) {
        3
    } else {
        0
    };
    let replacement = '\u{FFFD}'.len_utf8();
    let mut offset = 0usize;
    let mut runs: Vec<Span> = Vec::new();
    for chunk in bytes.utf8_chunks() {
        offset += chunk.valid().len();
        if !chunk.invalid().is_empty() {
            let start = offset.saturating_sub(bom);
            match runs.last_mut() {
                Some(last) if last.end == start => last.end = start + replacement,
                _ => runs.push(Span::new(start, start + replacement)),
            }
            offset += replacement;
        }
    }
    if !runs.is_empty() {
        parse.diagnostics.extend(runs.into_iter().map(|span| {
            Diagnostic::new(Code::InvalidUtf8, span, "these bytes are not valid UTF-8")
                .with_help("save the Kubefile as UTF-8")
        }));
        parse
            .diagnostics
            .sort_by_key(|d| (d.span.start, d.span.end));
    }
    (source, parse)
}

/// Reads the `# escape=` directives at the top of the file: the escape character and the
/// span of the directive that set it. Reports KF100 and KF101.
fn directives(text: &str, diagnostics: &mut Vec<Diagnostic>) -> (char, Option<Span>) {
    let Ok(mut pairs) = KubefileParser::parse(Rule::prologue, text) else {
        return ('\\', None);
    };
    let mut escape = '\\';
    let mut first: Option<Span> = None;
    let Some(prologue) = pairs.next() else {
        return (escape, first);
    };
    for directive in prologue.into_inner() {
        let span = Span::new(directive.as_span().start(), directive.as_span().end());
        let span = trim_span(text, span);
        let Some(value) = directive.into_inner().next() else {
            continue;
        };
        if first.is_some() {
            diagnostics.push(
                Diagnostic::new(
                    Code::DuplicateEscape,
                    span,
                    "a second `# escape=` directive",
                )
                .with_help("remove it: only the first `# escape=` directive is used"),
            );
            continue;
        }
        first = Some(span);
        let raw = value.as_str();
        let trimmed = raw.trim_matches([' ', '\t', '\r']);
        let lead = raw.len() - raw.trim_start_matches([' ', '\t', '\r']).len();
        let value_start = value.as_span().start() + lead;
        match trimmed {
            "\\" => escape = '\\',
            "`" => escape = '`',
            _ => diagnostics.push(
                Diagnostic::new(
                    Code::InvalidEscape,
                    Span::new(value_start, value_start + trimmed.len()),
                    format!("invalid escape character `{trimmed}`"),
                )
                .with_help(
                    "the escape character is `\\` (the default) or a backtick; `\\` stays in effect",
                ),
            ),
        }
    }
    (escape, first)
}

/// `span` without leading and trailing blanks.
fn trim_span(text: &str, span: Span) -> Span {
    let slice = text.get(span.start..span.end).unwrap_or("");
    let start = span.start + (slice.len() - slice.trim_start().len());
    let end = span.start + slice.trim_end().len();
    Span::new(start, end.max(start))
}

/// The fallback when pest gives up on the whole file: each physical line is parsed alone.
fn per_line(
    text: &str,
    entry: Rule,
    escape: char,
    diagnostics: &mut Vec<Diagnostic>,
) -> Vec<ast::Instruction> {
    let mut instructions = Vec::new();
    let mut base = 0;
    for line in text.split_inclusive('\n') {
        let body = line.trim_end_matches(['\n', '\r']);
        if let Ok(mut pairs) = KubefileParser::parse(entry, body) {
            let mut lowerer = lower::Lowerer::new(body, base, escape);
            if let Some(root) = pairs.next() {
                lowerer.lower_body(root);
            }
            diagnostics.append(&mut lowerer.diagnostics);
            instructions.append(&mut lowerer.instructions);
        }
        base += line.len();
    }
    instructions
}
