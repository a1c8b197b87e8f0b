//! Lowering: pest's parse tree → the span-carrying [`ast`](super::ast) tree, plus the lexical
//! diagnostics that the grammar marks but cannot word (unknown keywords, malformed flags,
//! unclosed quotes, empty continuation lines, …).
//!
//! It exists so that pest's `Pair`s are consumed in exactly one place. Every span produced here
//! is `base + offset in the parsed text`, so the same code lowers a whole file or one line of it.

use super::ast::{Arguments, Flag, Instruction, Keyword, Word};
use super::grammar::{Pair, Rule};
use super::keywords;
use crate::diagnostics::{Code, Diagnostic};
use crate::source::Span;

/// Lowers the body of one parse (a whole file, or one line in the fallback path).
pub(crate) struct Lowerer<'t> {
    /// The text that was handed to pest.
    text: &'t str,
    /// Where `text` starts in the source file.
    base: usize,
    /// The escape character in effect.
    escape: char,
    /// Diagnostics found so far.
    pub(crate) diagnostics: Vec<Diagnostic>,
    /// Instructions found so far.
    pub(crate) instructions: Vec<Instruction>,
}

impl<'t> Lowerer<'t> {
    pub(crate) fn new(text: &'t str, base: usize, escape: char) -> Self {
        Lowerer {
            text,
            base,
            escape,
            diagnostics: Vec::new(),
            instructions: Vec::new(),
        }
    }

    fn span(&self, pair: &Pair<'_>) -> Span {
        let s = pair.as_span();
        Span::new(self.base + s.start(), self.base + s.end())
    }

    /// Lowers the children of an entry rule (`kubefile_backslash` / `kubefile_backtick`).
    pub(crate) fn lower_body(&mut self, entry: Pair<'_>) {
        for pair in entry.into_inner() {
            match pair.as_rule() {
                Rule::instruction => self.instruction(pair),
                Rule::lead_conts => {
                    self.scan(&pair);
                }
                Rule::stray => self.stray(pair),
                _ => {}
            }
        }
    }

    fn stray(&mut self, pair: Pair<'_>) {
        // Unreachable with the current grammar; reported rather than dropped, just in case.
        let span = self.span(&pair);
        self.diagnostics.push(
            Diagnostic::new(
                Code::UnknownInstruction,
                span,
                format!("cannot read `{}` as an instruction", pair.as_str().trim()),
            )
            .with_help("an instruction starts with a keyword such as `FROM`, `COPY` or `RUN`"),
        );
    }

    /// Walks everything under `pair`: reports empty continuation lines (KF108), a
    /// continuation that runs into the end of the file (KF109) and unclosed quotes (KF110),
    /// and returns the continuation spans in order.
    fn scan(&mut self, pair: &Pair<'_>) -> Vec<Span> {
        let mut conts = Vec::new();
        for inner in pair.clone().into_inner().flatten() {
            match inner.as_rule() {
                Rule::cont => {
                    let span = self.span(&inner);
                    if span.end == self.base + self.text.len() {
                        self.diagnostics.push(dangling_continuation(Span::new(
                            span.start,
                            span.start + self.escape.len_utf8(),
                        )));
                    }
                    conts.push(span);
                }
                Rule::cont_blank => {
                    let span = self.span(&inner);
                    let blank = inner.as_str().trim_end_matches(['\n', '\r']).len();
                    self.diagnostics.push(
                        Diagnostic::new(
                            Code::EmptyContinuation,
                            Span::new(span.start, span.start + blank),
                            "empty line inside a line continuation",
                        )
                        .with_help(
                            "remove the empty line: Dockerfile tools are deprecating it and may end the instruction here",
                        ),
                    );
                }
                Rule::dquote | Rule::squote => {
                    let closed = inner
                        .clone()
                        .into_inner()
                        .last()
                        .is_none_or(|last| last.as_rule() != Rule::unterminated);
                    if !closed {
                        let span = self.span(&inner);
                        let quote = if inner.as_rule() == Rule::dquote {
                            '"'
                        } else {
                            '\''
                        };
                        self.diagnostics.push(
                            Diagnostic::new(
                                Code::UnterminatedQuote,
                                Span::new(span.start, span.start + 1),
                                format!("this `{quote}` is never closed"),
                            )
                            .with_help(format!(
                                "add the closing `{quote}` before the end of the line"
                            )),
                        );
                    }
                }
                _ => {}
            }
        }
        conts
    }

    fn instruction(&mut self, pair: Pair<'_>) {
        let conts = self.scan(&pair);
        let joiner = Joiner {
            text: self.text,
            base: self.base,
            conts: &conts,
        };

        let mut keyword_pair = None;
        let mut flags = Vec::new();
        let mut last_end = 0;
        let mut args = None;
        for inner in pair.into_inner() {
            let span = self.span(&inner);
            match inner.as_rule() {
                Rule::keyword => keyword_pair = Some(span),
                Rule::flag => {
                    last_end = last_end.max(span.end);
                    flags.push(self.flag(inner, &joiner));
                }
                Rule::malformed_flag => {
                    last_end = last_end.max(span.end);
                    let text = joiner.join(span);
                    self.diagnostics.push(
                        Diagnostic::new(
                            Code::MalformedFlag,
                            span,
                            format!("malformed flag `{text}`"),
                        )
                        .with_help(
                            "write flags as `--name` or `--name=value` (a name starts with a letter)",
                        ),
                    );
                }
                Rule::flags_end => last_end = last_end.max(span.end),
                Rule::json_args => args = Some(self.json_args(inner, &joiner)),
                Rule::shell_args => {
                    let keyword = keyword_pair.map(|k| joiner.join(k));
                    args = Some(self.shell_args(inner, &joiner, keyword.as_deref()));
                }
                _ => {}
            }
        }
        // The grammar always produces a keyword inside an instruction.
        let Some(keyword_span) = keyword_pair else {
            return;
        };
        let keyword_text = joiner.join(keyword_span);
        let keyword = Keyword::from_word(&keyword_text);
        if keyword.is_none() {
            self.diagnostics
                .push(keywords::unknown_keyword(&keyword_text, keyword_span));
        }
        let args = match args {
            Some(args) => args,
            None => {
                if let Some(k) = keyword {
                    self.diagnostics.push(
                        Diagnostic::new(
                            Code::MissingArguments,
                            keyword_span,
                            format!("`{}` has no arguments", k.as_str()),
                        )
                        .with_help(keywords::usage(k)),
                    );
                }
                Arguments::Shell {
                    text: String::new(),
                    words: Vec::new(),
                    span: Span::new(keyword_span.end, keyword_span.end),
                }
            }
        };
        let end = args.span().end.max(last_end).max(keyword_span.end);
        self.instructions.push(Instruction {
            keyword,
            keyword_text,
            keyword_span,
            flags,
            args,
            span: Span::new(keyword_span.start, end),
        });
    }

    fn flag(&mut self, pair: Pair<'_>, joiner: &Joiner<'_>) -> Flag {
        let span = self.span(&pair);
        let mut name = Word {
            text: String::new(),
            span,
        };
        let mut value = None;
        for inner in pair.into_inner() {
            let inner_span = self.span(&inner);
            match inner.as_rule() {
                Rule::flag_name => {
                    name = Word {
                        text: joiner.join(inner_span),
                        span: inner_span,
                    }
                }
                Rule::flag_value => {
                    value = Some(Word {
                        text: unquote(&joiner.join(inner_span), self.escape),
                        span: inner_span,
                    })
                }
                _ => {}
            }
        }
        if value.is_none() && name.span.end < span.end {
            // `--name=` with nothing after the `=`.
            value = Some(Word {
                text: String::new(),
                span: Span::new(span.end, span.end),
            });
        }
        Flag { name, value, span }
    }

    /// Shell-form arguments of the instruction `keyword` (as written), for KF106's help.
    fn shell_args(
        &mut self,
        pair: Pair<'_>,
        joiner: &Joiner<'_>,
        keyword: Option<&str>,
    ) -> Arguments {
        let span = self.span(&pair);
        let words: Vec<Word> = pair
            .into_inner()
            .filter(|p| p.as_rule() == Rule::word)
            .map(|p| {
                let span = self.span(&p);
                Word {
                    text: joiner.join(span),
                    span,
                }
            })
            .collect();
        let text = joiner.join(span);
        if looks_like_json(&text) {
            self.diagnostics.push(
                Diagnostic::new(
                    Code::MalformedJson,
                    span,
                    "the arguments start with `[` but are not a valid JSON array; they are read as shell form",
                )
                .with_help(match keyword {
                    // For these each item is a whole command (KF229), not one word of it.
                    Some(k) if k.eq_ignore_ascii_case("cmd") || k.eq_ignore_ascii_case("cmds") => format!(
                        "write a JSON array of double-quoted strings, one whole command per item, e.g. `{} [\"kubectl apply -f app.yaml\", \"helm install app ./chart\"]`",
                        k.to_ascii_uppercase()
                    ),
                    _ => "write a JSON array of double-quoted strings, e.g. `[\"kubectl\", \"apply\", \"-f\", \"app.yaml\"]`".to_string(),
                }),
            );
        }
        Arguments::Shell { text, words, span }
    }

    fn json_args(&mut self, pair: Pair<'_>, joiner: &Joiner<'_>) -> Arguments {
        let span = self.span(&pair);
        let mut items = Vec::new();
        for item in pair.into_inner().filter(|p| p.as_rule() == Rule::json_item) {
            let Some(value) = item.into_inner().next() else {
                continue;
            };
            let value_span = self.span(&value);
            let raw = joiner.join(value_span);
            if value.as_rule() == Rule::json_string {
                items.push(Word {
                    text: decode_json_string(&raw),
                    span: value_span,
                });
            } else {
                self.diagnostics.push(
                    Diagnostic::new(
                        Code::JsonNotStrings,
                        value_span,
                        format!("`{raw}` is not a string; a JSON-array argument list must contain strings only"),
                    )
                    .with_help(format!("quote it: `\"{}\"`", raw.replace('"', "\\\""))),
                );
                items.push(Word {
                    text: raw,
                    span: value_span,
                });
            }
        }
        Arguments::Json { items, span }
    }
}

fn dangling_continuation(span: Span) -> Diagnostic {
    Diagnostic::new(
        Code::UnterminatedContinuation,
        span,
        "the file ends inside a line continuation",
    )
    .with_help("remove the escape character at the end of the last instruction")
}

/// Whether shell-form text was probably meant as a JSON array. `[` followed by a blank is the
/// shell's `test` command (`RUN [ -f x ] && …`), which is not reported.
fn looks_like_json(text: &str) -> bool {
    let Some(rest) = text.strip_prefix('[') else {
        return false;
    };
    match rest.chars().next() {
        None => true,
        Some(c) if c.is_whitespace() => rest.trim_start().starts_with(['"', ']']),
        Some(_) => true,
    }
}

/// Rebuilds joined text (continuations removed) for any span inside one instruction.
struct Joiner<'a> {
    text: &'a str,
    base: usize,
    /// The instruction's continuation spans, in order, non-overlapping.
    conts: &'a [Span],
}

impl Joiner<'_> {
    fn join(&self, span: Span) -> String {
        let first = self.conts.partition_point(|c| c.end <= span.start);
        let mut out = String::new();
        let mut pos = span.start;
        for cont in &self.conts[first..] {
            if cont.start >= span.end {
                break;
            }
            out.push_str(self.slice(pos, cont.start.max(pos)));
            pos = cont.end.max(pos);
        }
        if pos < span.end {
            out.push_str(self.slice(pos, span.end));
        }
        out
    }

    fn slice(&self, start: usize, end: usize) -> &str {
        let start = start.saturating_sub(self.base);
        let end = end.saturating_sub(self.base);
        self.text.get(start..end).unwrap_or("")
    }
}

/// Removes quotes and escapes from a flag value, as Dockerfile's flag extraction does.
fn unquote(text: &str, escape: char) -> String {
    let mut out = String::with_capacity(text.len());
    let mut quote: Option<char> = None;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match quote {
            Some('\'') if c == '\'' => quote = None,
            Some('\'') => out.push(c),
            Some(q) if c == q => quote = None,
            _ if c == escape && quote != Some('\'') => {
                if let Some(next) = chars.next() {
                    out.push(next);
                }
            }
            None if c == '"' || c == '\'' => quote = Some(c),
            _ => out.push(c),
        }
    }
    out
}

/// Decodes a JSON string literal that the grammar has already validated. Unpaired surrogates
/// become U+FFFD (as Go's `encoding/json`, which sealer uses, does).
fn decode_json_string(literal: &str) -> String {
    let inner = literal
        .strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .unwrap_or(literal);
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('b') => out.push('\u{08}'),
            Some('f') => out.push('\u{0C}'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('t') => out.push('\t'),
            Some('u') => {
                let high = hex4(&mut chars);
                let code = match high {
                    Some(h @ 0xD800..=0xDBFF) => {
                        let mut look = chars.clone();
                        let low = if look.next() == Some('\\') && look.next() == Some('u') {
                            hex4(&mut look).filter(|l| (0xDC00..=0xDFFF).contains(l))
                        } else {
                            None
                        };
                        match low {
                            Some(l) => {
                                chars = look;
                                0x10000 + ((h - 0xD800) << 10) + (l - 0xDC00)
                            }
                            None => 0xFFFD,
                        }
                    }
                    Some(c) => c,
                    None => 0xFFFD,
                };
                out.push(char::from_u32(code).unwrap_or('\u{FFFD}'));
            }
            Some(other) => out.push(other),
            None => {}
        }
    }
    out
}

fn hex4(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) -> Option<u32> {
    let mut value = 0;
    for _ in 0..4 {
        value = value * 16 + chars.next()?.to_digit(16)?;
    }
    Some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unquote_handles_quotes_and_escapes() {
        assert_eq!(unquote(r#""a b""#, '\\'), "a b");
        assert_eq!(unquote(r#"'a\b'"#, '\\'), r"a\b");
        assert_eq!(unquote(r#"a\"b"#, '\\'), "a\"b");
        assert_eq!(unquote(r#""a\"b""#, '\\'), "a\"b");
        assert_eq!(unquote("a`b", '`'), "ab");
    }

    #[test]
    fn json_strings_decode() {
        assert_eq!(decode_json_string(r#""a\nb""#), "a\nb");
        assert_eq!(decode_json_string(r#""\u00e9\ud83d\ude00""#), "é😀");
        assert_eq!(decode_json_string(r#""\ud800x""#), "\u{FFFD}x");
    }

    #[test]
    fn json_lookalikes() {
        assert!(looks_like_json("[calico]"));
        assert!(looks_like_json("[ \"a\" ,]"));
        assert!(!looks_like_json("[ -f x ] && echo"));
        assert!(!looks_like_json("echo ["));
    }
}
