//! Rendering diagnostics: a code frame for humans and a fixed JSON shape for tools.
//!
//! Diagnostics are data ([`Diagnostic`]); this module is the one place that turns them into
//! text, as pure functions of the source and the diagnostics. The human form is drawn by
//! `annotate-snippets` (the renderer rustc uses), which already handles tabs, wide characters,
//! multi-line spans and folding; we only hand it the lines the span touches so that rendering
//! stays cheap on large files.
//!
//! ```text
//! error[KF102]: unknown instruction `FORM`
//!  --> Kubefile:1:1
//!   |
//! 1 | FORM scratch
//!   | ^^^^
//!   |
//!   = help: did you mean `FROM`?
//! ```
//!
//! The JSON form is `{"diagnostics":[{"severity","code","message","file","line","column",
//! "end_line","end_column","help"}]}`. Lines and columns are 1-based and count characters;
//! `end_line`/`end_column` is the position just *after* the last character of the span (so a
//! span over `FROM` at the start of a line has `column: 1, end_column: 5`, and an empty span has
//! the same start and end).

use crate::diagnostics::{Diagnostic, Severity};
use crate::source::SourceFile;
use annotate_snippets::{AnnotationKind, Level, Renderer, Snippet};
use serde::Serialize;

/// Renders diagnostics as code frames (plain text, no colour), separated by blank lines.
pub fn human(source: &SourceFile, diagnostics: &[Diagnostic]) -> String {
    let renderer = Renderer::plain();
    let mut out = String::new();
    for diagnostic in diagnostics {
        out.push_str(&render_one(&renderer, source, diagnostic));
        out.push_str("\n\n");
    }
    out
}

fn render_one(renderer: &Renderer, source: &SourceFile, diagnostic: &Diagnostic) -> String {
    let start = source.line_col(diagnostic.span.start);
    let end = source.line_col(diagnostic.span.end.max(diagnostic.span.start));
    // The excerpt: the lines the span touches, joined with `\n` (CR of CRLF dropped).
    let lines: Vec<&str> = (start.line..=end.line)
        .map(|line| source.line_text(line))
        .collect();
    let excerpt = lines.join("\n");
    let local_start = char_offset(lines.first().copied().unwrap_or(""), start.column);
    let before_end: usize = lines[..lines.len().saturating_sub(1)]
        .iter()
        .map(|l| l.len() + 1)
        .sum();
    let local_end = before_end + char_offset(lines.last().copied().unwrap_or(""), end.column);
    let local_end = local_end.max(local_start);

    let level = match diagnostic.severity {
        Severity::Error => Level::ERROR,
        Severity::Warning => Level::WARNING,
    };
    let snippet = Snippet::source(excerpt.as_str())
        .line_start(start.line)
        .path(source.name())
        .fold(true)
        .annotation(AnnotationKind::Primary.span(local_start..local_end));
    let mut group = level
        .primary_title(diagnostic.message.as_str())
        .id(diagnostic.code.as_str())
        .element(snippet);
    if let Some(help) = &diagnostic.help {
        group = group.element(Level::HELP.message(help.as_str()));
    }
    renderer.render(&[group])
}

/// The byte offset of 1-based character column `column` in `line` (clamped to its end).
fn char_offset(line: &str, column: usize) -> usize {
    line.char_indices()
        .nth(column.saturating_sub(1))
        .map_or(line.len(), |(i, _)| i)
}

#[derive(Serialize)]
struct JsonReport<'a> {
    diagnostics: Vec<JsonDiagnostic<'a>>,
}

#[derive(Serialize)]
struct JsonDiagnostic<'a> {
    severity: &'static str,
    code: &'static str,
    message: &'a str,
    file: &'a str,
    line: usize,
    column: usize,
    end_line: usize,
    end_column: usize,
    help: Option<&'a str>,
}

/// Renders diagnostics as one JSON object (see the module documentation for the shape).
pub fn json(source: &SourceFile, diagnostics: &[Diagnostic]) -> String {
    let report = JsonReport {
        diagnostics: diagnostics
            .iter()
            .map(|d| {
                let start = source.line_col(d.span.start);
                let end = source.line_col(d.span.end.max(d.span.start));
                JsonDiagnostic {
                    severity: d.severity.as_str(),
                    code: d.code.as_str(),
                    message: &d.message,
                    file: source.name(),
                    line: start.line,
                    column: start.column,
                    end_line: end.line,
                    end_column: end.column,
                    help: d.help.as_deref(),
                }
            })
            .collect(),
    };
    // Serialising plain strings and integers cannot fail.
    serde_json::to_string(&report).unwrap_or_else(|_| String::from(r#"{"diagnostics":[]}"#))
}
