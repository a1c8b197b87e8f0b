//! The front end never panics: Kubefile-like inputs (keywords, flags, quotes, brackets,
//! escapes, continuations, CRLF, BOM, random Unicode and invalid bytes) go through `parse`,
//! `compile` (parse + check + plan, no build context) and both renderers, and every span that
//! comes back must lie inside the text on character boundaries.
//!
//! Bounded to 2000 cases so that it stays well under 30 s in CI; `fuzz/` has the open-ended
//! version.

use chasi_compiler::source::{SourceFile, Span};
use chasi_compiler::syntax::{parse, parse_bytes};
use chasi_compiler::{compile, render, CompileOptions};
use proptest::prelude::*;

/// One lexical fragment of a Kubefile-like text.
fn fragment() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(vec![
            "FROM", "from", "COPY", "ADD", "RUN", "ARG", "ENV", "LABEL", "MAINTAINER", "APP",
            "CNI", "CSI", "KUBEVERSION", "APPCMDS", "APPENV", "LAUNCH", "CMDS", "CMD", "FORM",
            "EXPOSE", "scratch", "AS", "local://a", "https://x/y", "${ARCH}", "$X", "${A:-b}",
            "a=b", "k=\"v w\"", "app",
        ])
        .prop_map(String::from),
        3 => prop::sample::select(vec![
            " ", " ", "\t", "\n", "\r\n", "\r", "\\", "\\\n", "\\ \n", "`", "`\n", "\"", "'",
            "[", "]", "{", "}", ",", ":", "#", "# escape=`\n", "# escape=\\\n", "# escape=x\n",
            "--", "--from=", "--chown=a:b", "--=", "=", "\u{feff}", "\u{fffd}", "\\u00e9",
            "[\"a\", \"b\"]", "[1, null]", "\"unterminated", "\n\n", "\n  \n", "\\\n# c\n",
        ])
        .prop_map(String::from),
        1 => any::<char>().prop_map(String::from),
        1 => "[a-z0-9./:_-]{1,8}",
    ]
}

fn kubefile_like() -> impl Strategy<Value = String> {
    prop::collection::vec(fragment(), 0..60).prop_map(|parts| parts.concat())
}

fn assert_spans_valid(source: &SourceFile, spans: impl IntoIterator<Item = Span>) {
    let text = source.text();
    for span in spans {
        assert!(span.start <= span.end, "inverted span {span:?}");
        assert!(
            span.end <= text.len(),
            "span {span:?} past the end ({})",
            text.len()
        );
        assert!(
            text.is_char_boundary(span.start) && text.is_char_boundary(span.end),
            "span {span:?} splits a character"
        );
    }
}

fn run(source: &SourceFile) {
    let parse = parse(source);
    let mut spans: Vec<Span> = parse.diagnostics.iter().map(|d| d.span).collect();
    for i in &parse.kubefile.instructions {
        spans.extend([i.span, i.keyword_span, i.args.span()]);
        spans.extend(i.args.words().iter().map(|w| w.span));
        for f in &i.flags {
            spans.extend([f.span, f.name.span]);
            spans.extend(f.value.as_ref().map(|v| v.span));
        }
    }
    assert_spans_valid(source, spans);
    let _ = render::human(source, &parse.diagnostics);
    let _ = render::json(source, &parse.diagnostics);
    if let Ok(compiled) = compile(source, &CompileOptions::default()) {
        assert_spans_valid(source, compiled.diagnostics.iter().map(|d| d.span));
        let _ = render::human(source, &compiled.diagnostics);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn kubefile_like_text_never_panics(text in kubefile_like()) {
        run(&SourceFile::new("Kubefile", text));
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        let (source, parse) = parse_bytes("Kubefile", &bytes);
        let _ = render::human(&source, &parse.diagnostics);
        run(&source);
    }
}

#[test]
fn deep_nesting_and_long_lines_do_not_overflow() {
    for text in [
        format!("RUN {}", "[".repeat(100_000)),
        format!("RUN [{}]", "[".repeat(50_000)),
        format!("RUN {}", "\\\n".repeat(50_000)),
        format!("RUN \"{}", "a\\\n".repeat(20_000)),
        "\\\n".repeat(20_000),
    ] {
        run(&SourceFile::new("Kubefile", text));
    }
}
