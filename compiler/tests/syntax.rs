//! Parser tests: every lexical rule and every KF1xx code (with exact positions), the sealer
//! corpus (tree snapshots), and the diagnostic renderers (human and JSON snapshots).

mod shared;

use chasi_compiler::diagnostics::Diagnostic;
use chasi_compiler::render;
use chasi_compiler::source::{SourceFile, Span};
use chasi_compiler::syntax::ast::{Arguments, Instruction, Keyword, Kubefile};
use chasi_compiler::syntax::{parse, parse_bytes, Parse};
use std::fmt::Write as _;

// ------------------------------------------------------------------ helpers

fn parse_str(text: &str) -> (SourceFile, Parse) {
    let source = SourceFile::new("Kubefile", text);
    let parse = parse(&source);
    (source, parse)
}

/// `line:col-end_line:end_col` of a span.
fn pos(source: &SourceFile, span: Span) -> String {
    let s = source.line_col(span.start);
    let e = source.line_col(span.end);
    format!("{}:{}-{}:{}", s.line, s.column, e.line, e.column)
}

/// Every diagnostic as `KFxxx@line:col-end_line:end_col`.
fn codes(source: &SourceFile, diagnostics: &[Diagnostic]) -> Vec<String> {
    diagnostics
        .iter()
        .map(|d| format!("{}@{}", d.code.as_str(), pos(source, d.span)))
        .collect()
}

/// Parses `text` and asserts exactly these diagnostics (codes and positions).
#[track_caller]
fn assert_diags(text: &str, expected: &[&str]) -> (SourceFile, Parse) {
    let (source, parse) = parse_str(text);
    assert_eq!(
        codes(&source, &parse.diagnostics),
        expected,
        "input: {text:?}"
    );
    (source, parse)
}

/// The words' texts and positions.
fn words(source: &SourceFile, instruction: &Instruction) -> Vec<String> {
    instruction
        .args
        .words()
        .iter()
        .map(|w| format!("{}@{}", w.text, pos(source, w.span)))
        .collect()
}

fn shell_text(instruction: &Instruction) -> &str {
    match &instruction.args {
        Arguments::Shell { text, .. } => text,
        Arguments::Json { .. } => panic!("expected shell form"),
    }
}

/// A compact, reviewable dump of a tree (used by the corpus snapshots).
fn dump(source: &SourceFile, kubefile: &Kubefile) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "escape {:?}{}",
        kubefile.escape,
        kubefile
            .escape_directive
            .map(|s| format!(" (directive {})", pos(source, s)))
            .unwrap_or_default()
    );
    for i in &kubefile.instructions {
        let keyword = i.keyword.map_or("?", Keyword::as_str);
        let _ = writeln!(
            out,
            "{} {} {:?}@{}",
            pos(source, i.span),
            keyword,
            i.keyword_text,
            pos(source, i.keyword_span)
        );
        for f in &i.flags {
            let _ = writeln!(
                out,
                "  flag {:?}@{} = {}",
                f.name.text,
                pos(source, f.name.span),
                f.value
                    .as_ref()
                    .map(|v| format!("{:?}@{}", v.text, pos(source, v.span)))
                    .unwrap_or_else(|| "-".into())
            );
        }
        match &i.args {
            Arguments::Json { items, span } => {
                let _ = writeln!(out, "  json@{}", pos(source, *span));
                for w in items {
                    let _ = writeln!(out, "    {:?}@{}", w.text, pos(source, w.span));
                }
            }
            Arguments::Shell { text, words, span } => {
                let _ = writeln!(out, "  shell@{} {:?}", pos(source, *span), text);
                for w in words {
                    let _ = writeln!(out, "    {:?}@{}", w.text, pos(source, w.span));
                }
            }
        }
    }
    out
}

// ------------------------------------------------------------------ instructions and words

#[test]
fn empty_and_blank_files() {
    for text in ["", "\n", "  \n\t\n", "# only a comment", "\u{feff}"] {
        let (_, parse) = assert_diags(text, &[]);
        assert!(parse.kubefile.instructions.is_empty());
        assert_eq!(parse.kubefile.escape, '\\');
    }
}

#[test]
fn keywords_are_case_insensitive_and_keep_their_spelling() {
    let (source, parse) = assert_diags("from a\ncOpY b c\nKubeVersion >=1.22\n", &[]);
    let k = &parse.kubefile.instructions;
    assert_eq!(k[0].keyword, Some(Keyword::From));
    assert_eq!(k[0].keyword_text, "from");
    assert_eq!(k[1].keyword, Some(Keyword::Copy));
    assert_eq!(pos(&source, k[1].keyword_span), "2:1-2:5");
    assert_eq!(k[2].keyword, Some(Keyword::KubeVersion));
    assert_eq!(shell_text(&k[2]), ">=1.22");
}

#[test]
fn every_sealer_keyword_is_recognised() {
    let text = "FROM a\nCOPY a b\nADD a b\nRUN a\nARG a\nENV a=b\nLABEL a=b\nMAINTAINER a\n\
                APP a local://b\nCNI a local://b\nCSI a local://b\nKUBEVERSION 1.22\n\
                APPCMDS a [\"b\"]\nAPPENV a b=c\nLAUNCH a\nCMDS [\"a\"]\nCMD a\n";
    let (_, parse) = assert_diags(text, &[]);
    let found: Vec<_> = parse
        .kubefile
        .instructions
        .iter()
        .filter_map(|i| i.keyword)
        .collect();
    assert_eq!(found, Keyword::ALL);
}

#[test]
fn instruction_and_word_spans() {
    let (source, parse) = assert_diags("  COPY  src   /dest/  \nRUN x\n", &[]);
    let copy = &parse.kubefile.instructions[0];
    assert_eq!(pos(&source, copy.span), "1:3-1:21");
    assert_eq!(pos(&source, copy.keyword_span), "1:3-1:7");
    assert_eq!(words(&source, copy), ["src@1:9-1:12", "/dest/@1:15-1:21"]);
    assert_eq!(shell_text(copy), "src   /dest/");
    assert_eq!(pos(&source, copy.args.span()), "1:9-1:21");
}

#[test]
fn tabs_and_other_blanks_separate_words() {
    let (source, parse) = assert_diags("RUN\ta\t\tb\u{0B}c\n", &[]);
    let run = &parse.kubefile.instructions[0];
    assert_eq!(
        words(&source, run),
        ["a@1:5-1:6", "b@1:8-1:9", "c@1:10-1:11"]
    );
}

#[test]
fn quoted_strings_with_blanks_stay_one_word_and_keep_their_quotes() {
    let (source, parse) = assert_diags("LABEL \"a b\"=\"c d\" e='f g' h\\ i \"j\\\"k\"\n", &[]);
    let label = &parse.kubefile.instructions[0];
    assert_eq!(
        words(&source, label),
        [
            "\"a b\"=\"c d\"@1:7-1:18",
            "e='f g'@1:19-1:26",
            "h\\ i@1:27-1:31",
            "\"j\\\"k\"@1:32-1:38",
        ]
    );
}

#[test]
fn single_quotes_do_not_honour_the_escape() {
    let (source, parse) = assert_diags("RUN 'a\\' b\n", &[]);
    assert_eq!(
        words(&source, &parse.kubefile.instructions[0]),
        ["'a\\'@1:5-1:9", "b@1:10-1:11"]
    );
}

#[test]
fn no_inline_comments() {
    // docs_v086_multiarch: `#` after arguments is just more words.
    let (source, parse) = assert_diags("FROM a # not a comment\n", &[]);
    let from = &parse.kubefile.instructions[0];
    assert_eq!(from.args.words().len(), 5);
    assert_eq!(shell_text(from), "a # not a comment");
    assert_eq!(words(&source, from)[1], "#@1:8-1:9");
}

#[test]
fn full_line_comments_may_be_indented() {
    let (_, parse) = assert_diags("  # c\n\t#c\nFROM a\n#FROM b\n", &[]);
    assert_eq!(parse.kubefile.instructions.len(), 1);
}

#[test]
fn bom_crlf_and_no_final_newline() {
    let (source, parse) = assert_diags("\u{feff}FROM a\r\nRUN b \\\r\n c\r\nLAUNCH x", &[]);
    let k = &parse.kubefile.instructions;
    assert_eq!(k.len(), 3);
    assert_eq!(pos(&source, k[0].span), "1:1-1:7");
    assert_eq!(shell_text(&k[1]), "b  c");
    assert_eq!(pos(&source, k[1].span), "2:1-3:3");
    assert_eq!(words(&source, &k[2]), ["x@4:8-4:9"]);
}

#[test]
fn multibyte_columns_count_characters() {
    let (source, parse) = assert_diags("LABEL é=ü x=2\n", &[]);
    assert_eq!(
        words(&source, &parse.kubefile.instructions[0]),
        ["é=ü@1:7-1:10", "x=2@1:11-1:14"]
    );
}

// ------------------------------------------------------------------ line continuations

#[test]
fn continuation_joins_lines_without_adding_a_space() {
    let (source, parse) = assert_diags("RUN echo a \\\n  b\nFROM x\n", &[]);
    let run = &parse.kubefile.instructions[0];
    assert_eq!(shell_text(run), "echo a   b");
    assert_eq!(pos(&source, run.span), "1:1-2:4");
    assert_eq!(
        words(&source, run),
        ["echo@1:5-1:9", "a@1:10-1:11", "b@2:3-2:4"]
    );
    assert_eq!(parse.kubefile.instructions[1].keyword, Some(Keyword::From));
}

#[test]
fn continuation_allows_trailing_blanks_after_the_escape() {
    let (_, parse) = assert_diags("RUN a \\ \t\n b\n", &[]);
    assert_eq!(shell_text(&parse.kubefile.instructions[0]), "a  b");
}

#[test]
fn a_word_broken_by_a_continuation_covers_both_pieces() {
    let (source, parse) = assert_diags("COPY ab\\\ncd /x\n", &[]);
    let copy = &parse.kubefile.instructions[0];
    assert_eq!(words(&source, copy), ["abcd@1:6-2:3", "/x@2:4-2:6"]);
    assert_eq!(shell_text(copy), "abcd /x");
}

#[test]
fn continuation_inside_a_keyword_flag_and_quotes() {
    let (source, parse) = assert_diags("CO\\\nPY --chown=a\\\n:b \"x \\\ny\" /z\n", &[]);
    let copy = &parse.kubefile.instructions[0];
    assert_eq!(copy.keyword, Some(Keyword::Copy));
    assert_eq!(copy.keyword_text, "COPY");
    assert_eq!(pos(&source, copy.keyword_span), "1:1-2:3");
    let flag = &copy.flags[0];
    assert_eq!(flag.value.as_ref().map(|v| v.text.as_str()), Some("a:b"));
    assert_eq!(words(&source, copy), ["\"x y\"@3:4-4:3", "/z@4:4-4:6"]);
}

#[test]
fn comment_lines_inside_a_continuation_are_skipped() {
    let (source, parse) = assert_diags("RUN a \\\n# note \\\n  # indented\n  b\n", &[]);
    let run = &parse.kubefile.instructions[0];
    assert_eq!(shell_text(run), "a   b");
    assert_eq!(pos(&source, run.span), "1:1-4:4");
}

#[test]
fn kf108_empty_continuation_lines() {
    let (_, parse) = assert_diags(
        "RUN a \\\n\n   \n  b\n",
        &["KF108@2:1-2:1", "KF108@3:1-3:4"],
    );
    assert_eq!(shell_text(&parse.kubefile.instructions[0]), "a   b");
    assert!(!parse.has_errors());
}

#[test]
fn kf109_file_ends_inside_a_continuation() {
    assert_diags("RUN a \\", &["KF109@1:7-1:8"]);
    assert_diags("RUN a \\\n", &["KF109@1:7-1:8"]);
    assert_diags("RUN a \\\n# trailing comment", &["KF109@1:7-1:8"]);
    assert_diags("FROM x\n\\", &["KF109@2:1-2:2"]);
    let (_, parse) = assert_diags("RUN a \\\n\n", &["KF109@1:7-1:8", "KF108@2:1-2:1"]);
    assert_eq!(shell_text(&parse.kubefile.instructions[0]), "a");
}

#[test]
fn a_line_that_is_only_a_continuation_joins_the_next() {
    let (source, parse) = assert_diags("\\\n  FROM x\n\\\n\n", &["KF109@3:1-3:2", "KF108@4:1-4:1"]);
    let k = &parse.kubefile.instructions;
    assert_eq!(k.len(), 1);
    assert_eq!(pos(&source, k[0].span), "2:3-2:9");
    // Many of them in a row stay linear (this was quadratic once).
    let (_, parse) = assert_diags(&"\\\n".repeat(5000), &["KF109@5000:1-5000:2"]);
    assert!(parse.kubefile.instructions.is_empty());
}

#[test]
fn escaped_escape_at_end_of_line_still_continues() {
    // Dockerfile only looks at the last character of the line.
    let (_, parse) = assert_diags("RUN a\\\\\nb\n", &[]);
    assert_eq!(shell_text(&parse.kubefile.instructions[0]), "a\\b");
}

// ------------------------------------------------------------------ parser directives

#[test]
fn escape_directive_backtick() {
    let (source, parse) = assert_diags("# escape=`\nCOPY C:\\dir\\ /x\nRUN a `\n  b\n", &[]);
    let kubefile = &parse.kubefile;
    assert_eq!(kubefile.escape, '`');
    assert_eq!(
        kubefile.escape_directive.map(|s| pos(&source, s)),
        Some("1:1-1:11".to_string())
    );
    assert_eq!(
        words(&source, &kubefile.instructions[0]),
        ["C:\\dir\\@2:6-2:13", "/x@2:14-2:16"]
    );
    assert_eq!(shell_text(&kubefile.instructions[1]), "a   b");
}

#[test]
fn escape_directive_is_case_and_blank_insensitive() {
    let (_, parse) = assert_diags("  #  ESCAPE = ` \nRUN a`\nb\n", &[]);
    assert_eq!(parse.kubefile.escape, '`');
    assert_eq!(shell_text(&parse.kubefile.instructions[0]), "ab");
}

#[test]
fn escape_directive_only_counts_at_the_top() {
    for text in [
        "# comment\n# escape=`\nRUN a`\n",
        "\n# escape=`\nRUN a`\n",
        "FROM x\n# escape=`\nRUN a`\n",
    ] {
        let (_, parse) = assert_diags(text, &[]);
        assert_eq!(parse.kubefile.escape, '\\', "{text:?}");
        assert_eq!(parse.kubefile.escape_directive, None);
    }
}

#[test]
fn kf100_invalid_escape() {
    let (_, parse) = assert_diags("# escape=x\nFROM a \\\n b\n", &["KF100@1:10-1:11"]);
    assert_eq!(parse.kubefile.escape, '\\');
    assert_eq!(parse.kubefile.instructions.len(), 1);
    assert_diags("# escape=\nFROM a\n", &["KF100@1:10-1:10"]);
    let (_, p) = assert_diags("# escape=\\\\\n", &["KF100@1:10-1:12"]);
    assert!(p.kubefile.escape_directive.is_some());
}

#[test]
fn kf101_duplicate_escape() {
    let (_, parse) = assert_diags("# escape=\\\n# escape=`\nFROM a\n", &["KF101@2:1-2:11"]);
    assert_eq!(parse.kubefile.escape, '\\');
}

// ------------------------------------------------------------------ keywords

#[test]
fn kf102_unknown_instruction_with_suggestion() {
    let (_, parse) = assert_diags("FORM scratch\ncopy a b\n", &["KF102@1:1-1:5"]);
    let d = &parse.diagnostics[0];
    assert_eq!(d.help.as_deref(), Some("did you mean `FROM`?"));
    assert_eq!(parse.kubefile.instructions[0].keyword, None);
    assert_eq!(parse.kubefile.instructions[0].keyword_text, "FORM");
    assert_eq!(parse.kubefile.instructions.len(), 2);

    let (_, parse) = assert_diags("  lanch app\n", &["KF102@1:3-1:8"]);
    assert_eq!(
        parse.diagnostics[0].help.as_deref(),
        Some("did you mean `LAUNCH`?")
    );

    let (_, parse) = assert_diags("XYZZY a\n", &["KF102@1:1-1:6"]);
    let help = parse.diagnostics[0].help.clone().unwrap_or_default();
    assert!(!help.contains("did you mean"), "{help}");
}

#[test]
fn kf103_dockerfile_only_instructions() {
    let text = "ONBUILD RUN a\nEXPOSE 80\nVOLUME /v\nWORKDIR /w\nUSER u\nSHELL [\"sh\"]\n\
                STOPSIGNAL 9\nHEALTHCHECK NONE\nentrypoint [\"x\"]\n";
    let expected: Vec<String> = [8, 7, 7, 8, 5, 6, 11, 12, 11]
        .iter()
        .enumerate()
        .map(|(i, end)| format!("KF103@{}:1-{}:{}", i + 1, i + 1, end))
        .collect();
    let expected: Vec<&str> = expected.iter().map(String::as_str).collect();
    let (_, parse) = assert_diags(text, &expected);
    assert!(parse.diagnostics.iter().all(|d| d.help.is_some()));
    assert!(parse.diagnostics[8].message.contains("ENTRYPOINT"));
}

#[test]
fn kf104_missing_arguments() {
    let (source, parse) = assert_diags(
        "FROM\nRUN   \nCOPY --chown=a\n",
        &["KF104@1:1-1:5", "KF104@2:1-2:4", "KF104@3:1-3:5"],
    );
    let run = &parse.kubefile.instructions[1];
    assert!(run.args.words().is_empty());
    assert_eq!(pos(&source, run.args.span()), "2:4-2:4");
    assert_eq!(
        pos(&source, parse.kubefile.instructions[2].span),
        "3:1-3:15"
    );
}

// ------------------------------------------------------------------ flags

#[test]
fn flags_names_values_and_spans() {
    let (source, parse) = assert_diags(
        "COPY --from=build --chown=\"a b\" --link --chmod= src dst\n",
        &[],
    );
    let copy = &parse.kubefile.instructions[0];
    let flags: Vec<String> = copy
        .flags
        .iter()
        .map(|f| {
            format!(
                "{}@{}={}@{}",
                f.name.text,
                pos(&source, f.name.span),
                f.value.as_ref().map_or("-", |v| v.text.as_str()),
                pos(&source, f.span)
            )
        })
        .collect();
    assert_eq!(
        flags,
        [
            "from@1:8-1:12=build@1:6-1:18",
            "chown@1:21-1:26=a b@1:19-1:32",
            "link@1:35-1:39=-@1:33-1:39",
            "chmod@1:42-1:47=@1:40-1:48",
        ]
    );
    assert_eq!(
        pos(
            &source,
            copy.flags[1]
                .value
                .as_ref()
                .map(|v| v.span)
                .unwrap_or_default()
        ),
        "1:27-1:32"
    );
    assert_eq!(words(&source, copy), ["src@1:49-1:52", "dst@1:53-1:56"]);
}

#[test]
fn double_dash_ends_the_flags() {
    let (source, parse) = assert_diags("COPY --a=1 -- --b=2 c\n", &[]);
    let copy = &parse.kubefile.instructions[0];
    assert_eq!(copy.flags.len(), 1);
    assert_eq!(words(&source, copy), ["--b=2@1:15-1:20", "c@1:21-1:22"]);
}

#[test]
fn flags_are_only_leading() {
    let (_, parse) = assert_diags("RUN echo --x\n", &[]);
    let run = &parse.kubefile.instructions[0];
    assert!(run.flags.is_empty());
    assert_eq!(shell_text(run), "echo --x");
}

#[test]
fn kf107_malformed_flags() {
    let (_, parse) = assert_diags(
        "COPY --=x --9 --a'b' --ok=1 a b\n",
        &["KF107@1:6-1:10", "KF107@1:11-1:14", "KF107@1:15-1:21"],
    );
    let copy = &parse.kubefile.instructions[0];
    assert_eq!(copy.flags.len(), 1, "{:?}", copy.flags);
    assert_eq!(copy.args.words().len(), 2);
    // An unclosed quote runs to the end of the line, taking the rest with it.
    assert_diags(
        "COPY --a\"b --ok=1 a b\n",
        &["KF104@1:1-1:5", "KF107@1:6-1:22", "KF110@1:9-1:10"],
    );
}

// ------------------------------------------------------------------ JSON form

#[test]
fn json_arrays_are_decoded_with_item_spans() {
    let (source, parse) = assert_diags(
        "CMDS [ \"kubectl apply -f a.yaml\",\"\\u00e9\\n\\\"q\\\"\" ]  \n",
        &[],
    );
    let cmds = &parse.kubefile.instructions[0];
    assert!(cmds.args.is_json());
    assert_eq!(pos(&source, cmds.args.span()), "1:6-1:51");
    assert_eq!(
        words(&source, cmds),
        ["kubectl apply -f a.yaml@1:8-1:33", "é\n\"q\"@1:34-1:49"]
    );
}

#[test]
fn json_arrays_may_span_continuations() {
    let (source, parse) = assert_diags("RUN [\"a\", \\\n     \"b\\\nc\"]\n", &[]);
    let run = &parse.kubefile.instructions[0];
    assert!(run.args.is_json());
    assert_eq!(words(&source, run), ["a@1:6-1:9", "bc@2:6-3:3"]);
}

#[test]
fn empty_json_array() {
    let (_, parse) = assert_diags("LAUNCH []\n", &[]);
    assert!(parse.kubefile.instructions[0].args.is_json());
    assert!(parse.kubefile.instructions[0].args.words().is_empty());
}

#[test]
fn kf105_json_items_must_be_strings() {
    let (_, parse) = assert_diags(
        "RUN [\"a\", 1, {\"x\": [2]}, null]\n",
        &["KF105@1:11-1:12", "KF105@1:14-1:24", "KF105@1:26-1:30"],
    );
    let run = &parse.kubefile.instructions[0];
    assert!(run.args.is_json());
    assert_eq!(run.args.words().len(), 4);
}

#[test]
fn kf106_malformed_json_falls_back_to_shell_form() {
    let (source, parse) = assert_diags("LAUNCH [calico]\n", &["KF106@1:8-1:16"]);
    let launch = &parse.kubefile.instructions[0];
    assert!(!launch.args.is_json());
    assert_eq!(words(&source, launch), ["[calico]@1:8-1:16"]);

    assert_diags("CMDS ['a']\n", &["KF106@1:6-1:11"]);
    assert_diags("RUN [\"a\",]\n", &["KF106@1:5-1:11"]);
    assert_diags("RUN [\"a\"] b\n", &["KF106@1:5-1:12"]);
    assert_diags("RUN [\"a\n", &["KF106@1:5-1:8", "KF110@1:6-1:7"]);
    // Too deeply nested for the grammar: read as shell form.
    assert_diags("RUN [[[[[1]]]]]\n", &["KF106@1:5-1:16"]);
}

#[test]
fn shell_test_brackets_are_not_json() {
    let (_, parse) = assert_diags("RUN [ -f /etc/x ] && echo ok\n", &[]);
    assert!(!parse.kubefile.instructions[0].args.is_json());
}

#[test]
fn json_after_a_name_stays_one_shell_word() {
    // `APPCMDS name [...]` is shell form with the JSON as a quoted word; the checker decodes it.
    let (source, parse) = assert_diags("APPCMDS app [\"kubectl apply -f x\"]\n", &[]);
    assert_eq!(
        words(&source, &parse.kubefile.instructions[0]),
        ["app@1:9-1:12", "[\"kubectl apply -f x\"]@1:13-1:35"]
    );
}

// ------------------------------------------------------------------ quotes and encoding

#[test]
fn kf110_unterminated_quotes() {
    let (source, parse) = assert_diags(
        "RUN echo \"abc\nLABEL a='b c\nFROM x\n",
        &["KF110@1:10-1:11", "KF110@2:9-2:10"],
    );
    assert_eq!(parse.kubefile.instructions.len(), 3);
    assert_eq!(
        words(&source, &parse.kubefile.instructions[0]),
        ["echo@1:5-1:9", "\"abc@1:10-1:14"]
    );
}

#[test]
fn kf111_invalid_utf8() {
    let (source, parse) = parse_bytes("Kubefile", b"FROM a\nLABEL x=\xff\xfe y=\xc3\n");
    assert_eq!(
        codes(&source, &parse.diagnostics),
        ["KF111@2:9-2:11", "KF111@2:14-2:15"]
    );
    assert_eq!(parse.kubefile.instructions.len(), 2);

    // A BOM does not shift the positions; a real U+FFFD in the file is not reported.
    let mut bytes = b"\xEF\xBB\xBFFROM ".to_vec();
    bytes.extend_from_slice("\u{fffd}".as_bytes());
    bytes.push(0xff);
    let (source, parse) = parse_bytes("Kubefile", &bytes);
    assert_eq!(codes(&source, &parse.diagnostics), ["KF111@1:7-1:8"]);
}

// ------------------------------------------------------------------ corpus

/// The corpus files, or `None` when the corpus is absent outside CI (see `shared`).
fn corpus_files() -> Option<Vec<std::path::PathBuf>> {
    let dir = shared::corpus()?;
    let mut paths: Vec<_> = std::fs::read_dir(dir)
        .expect("the shared corpus sits beside the repository")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "Kubefile"))
        .collect();
    paths.sort();
    Some(paths)
}

#[test]
fn corpus_parses_without_errors() {
    let Some(files) = corpus_files() else {
        return;
    };
    assert_eq!(files.len(), 28);
    for path in files {
        let bytes = std::fs::read(&path).expect("readable corpus file");
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let (source, parse) = parse_bytes(name.clone(), &bytes);
        assert!(
            parse.diagnostics.is_empty(),
            "{name}: {}",
            render::human(&source, &parse.diagnostics)
        );
        insta::assert_snapshot!(format!("corpus_{name}"), dump(&source, &parse.kubefile));
    }
}

// ------------------------------------------------------------------ rendering

const BROKEN: &str = "# escape=x\nFORM scratch\nEXPOSE 80\nCOPY --=x\tsrc \"dst\r\nRUN [\"a\", 1]\nLAUNCH [calico]\nRUN a \\\n\n  b \\";

#[test]
fn render_human() {
    let (source, parse) = parse_str(BROKEN);
    insta::assert_snapshot!(render::human(&source, &parse.diagnostics));
}

#[test]
fn render_json() {
    let (source, parse) = parse_str(BROKEN);
    let json = render::json(&source, &parse.diagnostics);
    let value: serde_json::Value = serde_json::from_str(&json).expect("valid JSON");
    insta::assert_json_snapshot!(value);
    // The exact key order of one entry.
    assert!(json.starts_with(
        r#"{"diagnostics":[{"severity":"error","code":"KF100","message":"invalid escape character `x`","file":"Kubefile","line":1,"column":10,"end_line":1,"end_column":11,"help":"#
    ));
}

#[test]
fn render_nothing() {
    let (source, parse) = parse_str("FROM a\n");
    assert_eq!(render::human(&source, &parse.diagnostics), "");
    assert_eq!(
        render::json(&source, &parse.diagnostics),
        r#"{"diagnostics":[]}"#
    );
}

#[test]
fn render_help_null_and_multiline_span() {
    use chasi_compiler::diagnostics::{Code, Diagnostic};
    let source = SourceFile::new("k", "RUN a \\\n  b\n");
    let d = Diagnostic::new(Code::InvalidEnv, Span::new(4, 11), "spans two lines");
    let json = render::json(&source, std::slice::from_ref(&d));
    assert_eq!(
        json,
        r#"{"diagnostics":[{"severity":"error","code":"KF220","message":"spans two lines","file":"k","line":1,"column":5,"end_line":2,"end_column":4,"help":null}]}"#
    );
    insta::assert_snapshot!(render::human(&source, &[d]));
}
