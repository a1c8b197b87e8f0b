//! Dockerfile word processing: quote removal, escapes and variable substitution.
//!
//! Kubefile arguments are written like Dockerfile arguments, so they are processed with the
//! same rules: `'…'` is literal, `"…"` removes the quotes but still expands `$VAR`, the escape
//! character (`\` or the one set by `# escape=`) takes the next character literally, and
//! `$NAME`, `${NAME}`, `${NAME:-word}`, `${NAME-word}`, `${NAME:+word}`, `${NAME+word}`,
//! `${NAME:?message}` and `${NAME?message}` are substituted from the variables in scope.
//! Which instructions expand which variables is decided by the caller (see `check::mod`);
//! this module only knows how to process one word. It also records which build arguments a
//! word consulted, because those values are part of a build step's identity.

use crate::diagnostics::{Code, Diagnostic};
use crate::source::Span;
use std::collections::{BTreeMap, HashMap};

/// Where a variable's value comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Origin {
    /// An `ARG` (its value is a build argument or the declared default).
    Arg,
    /// An `ENV`.
    Env,
    /// A platform variable (`ARCH`, `TARGETARCH`, …), fixed per target platform.
    Platform,
}

/// One variable in scope. `value: None` is an `ARG` declared without a value and not given
/// with `--build-arg`: it is known (no warning) but unset (`${X-default}` takes the default).
#[derive(Debug, Clone)]
pub(crate) struct Var {
    pub value: Option<String>,
    pub origin: Origin,
}

/// The variables visible at one point of a Kubefile.
#[derive(Debug, Clone, Default)]
pub(crate) struct Vars {
    map: HashMap<String, Var>,
}

impl Vars {
    pub fn get(&self, name: &str) -> Option<&Var> {
        self.map.get(name)
    }

    pub fn set(&mut self, name: &str, value: Option<String>, origin: Origin) {
        self.map.insert(name.to_string(), Var { value, origin });
    }

    /// Every `ARG`-origin variable with its value, sorted by name.
    pub fn args(&self) -> BTreeMap<String, Option<String>> {
        self.map
            .iter()
            .filter(|(_, v)| v.origin == Origin::Arg)
            .map(|(k, v)| (k.clone(), v.value.clone()))
            .collect()
    }

    /// Every `ARG` that has a value, sorted by name (what a `RUN` step sees on top of the
    /// image configuration's `ENV`).
    pub fn arg_environment(&self) -> BTreeMap<String, String> {
        self.map
            .iter()
            .filter(|(_, v)| v.origin == Origin::Arg)
            .filter_map(|(k, v)| v.value.clone().map(|value| (k.clone(), value)))
            .collect()
    }
}

/// How a word was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Form {
    /// A raw shell-form word: quotes and escapes are processed.
    Shell,
    /// An already decoded string (a JSON-array item or a flag value): only `$` is processed.
    Decoded,
}

/// What processing a word found besides its text.
#[derive(Debug, Default)]
pub(crate) struct Sink {
    /// Problems, with spans inside the word where the word maps byte-for-byte onto the source.
    pub diagnostics: Vec<Diagnostic>,
    /// Build arguments consulted, with the value they had (`None` = declared but unset).
    pub used_args: BTreeMap<String, Option<String>>,
}

impl Sink {
    fn merge(&mut self, other: Sink) {
        self.diagnostics.extend(other.diagnostics);
        self.used_args.extend(other.used_args);
    }
}

/// Processes words against one set of variables.
pub(crate) struct Expander<'v> {
    pub vars: &'v Vars,
    pub escape: char,
    /// `false`: only quotes and escapes are processed, `$` is literal.
    pub expand: bool,
    /// The global scope (`FROM` lines, `ARG`s before the first `FROM`): an undefined variable
    /// must be declared by an `ARG` before the first `FROM`, which is what KF224's help says.
    pub global: bool,
}

impl Expander<'_> {
    /// Processes one word written at `span` and returns its value.
    pub fn word(&self, raw: &str, span: Span, form: Form, sink: &mut Sink) -> String {
        let width = span.end.saturating_sub(span.start);
        let base = match form {
            Form::Shell if width == raw.len() => Some(span.start),
            Form::Decoded if width == raw.len() => Some(span.start),
            Form::Decoded if width == raw.len() + 2 => Some(span.start + 1),
            _ => None,
        };
        let mut lexer = Lexer {
            raw,
            pos: 0,
            base,
            whole: span,
            ex: self,
            quotes: form == Form::Shell,
            sink: Sink::default(),
        };
        let out = lexer.process(false);
        let local = lexer.sink;
        sink.merge(local);
        out
    }
}

struct Lexer<'a, 'v> {
    raw: &'a str,
    pos: usize,
    base: Option<usize>,
    whole: Span,
    ex: &'a Expander<'v>,
    quotes: bool,
    sink: Sink,
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

impl Lexer<'_, '_> {
    fn span(&self, start: usize, end: usize) -> Span {
        match self.base {
            Some(o) => Span::new(o + start, o + end),
            None => self.whole,
        }
    }

    fn peek(&self) -> Option<char> {
        self.raw[self.pos..].chars().next()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    /// Processes up to the end of the word, or up to (not past) an unescaped `}` when
    /// `in_braces` (the word of a `${NAME:-word}`).
    fn process(&mut self, in_braces: bool) -> String {
        let mut out = String::new();
        while let Some(c) = self.peek() {
            if in_braces && c == '}' {
                break;
            }
            if self.quotes && c == self.ex.escape {
                self.bump();
                match self.bump() {
                    Some(next) => out.push(next),
                    None => out.push(c),
                }
                continue;
            }
            match c {
                '\'' if self.quotes => {
                    self.bump();
                    while let Some(next) = self.bump() {
                        if next == '\'' {
                            break;
                        }
                        out.push(next);
                    }
                }
                '"' if self.quotes => {
                    self.bump();
                    self.double_quoted(&mut out);
                }
                '$' if self.ex.expand => self.dollar(&mut out),
                _ => {
                    self.bump();
                    out.push(c);
                }
            }
        }
        out
    }

    fn double_quoted(&mut self, out: &mut String) {
        while let Some(c) = self.peek() {
            if c == '"' {
                self.bump();
                return;
            }
            if c == self.ex.escape {
                self.bump();
                match self.peek() {
                    Some(next) if next == '"' || next == '$' || next == self.ex.escape => {
                        self.bump();
                        out.push(next);
                    }
                    _ => out.push(c),
                }
                continue;
            }
            if c == '$' && self.ex.expand {
                self.dollar(out);
                continue;
            }
            self.bump();
            out.push(c);
        }
    }

    fn read_name(&mut self) -> String {
        let start = self.pos;
        while self.peek().is_some_and(is_name_char) {
            self.bump();
        }
        self.raw[start..self.pos].to_string()
    }

    fn dollar(&mut self, out: &mut String) {
        let start = self.pos;
        self.bump(); // `$`
        match self.peek() {
            Some('{') => {
                self.bump();
                let name = self.read_name();
                if name.is_empty() {
                    return self.bad_substitution(start, "a variable name is missing after `${`");
                }
                match self.peek() {
                    Some('}') => {
                        self.bump();
                        let span = self.span(start, self.pos);
                        out.push_str(&self.plain(&name, span));
                    }
                    Some(':') => {
                        self.bump();
                        match self.peek() {
                            Some(op @ ('-' | '+' | '?')) => {
                                self.bump();
                                self.modifier(start, &name, true, op, out);
                            }
                            _ => self.bad_substitution(
                                start,
                                "after `:` only `-`, `+` or `?` is supported",
                            ),
                        }
                    }
                    Some(op @ ('-' | '+' | '?')) => {
                        self.bump();
                        self.modifier(start, &name, false, op, out);
                    }
                    _ => self.bad_substitution(
                        start,
                        "only `${NAME}`, `${NAME:-word}`, `${NAME:+word}` and `${NAME:?message}` are supported",
                    ),
                }
            }
            Some(c) if is_name_char(c) => {
                let name = self.read_name();
                let span = self.span(start, self.pos);
                out.push_str(&self.plain(&name, span));
            }
            _ => out.push('$'),
        }
    }

    fn modifier(&mut self, start: usize, name: &str, colon: bool, op: char, out: &mut String) {
        let outer = std::mem::take(&mut self.sink);
        let word = self.process(true);
        let inner = std::mem::replace(&mut self.sink, outer);
        if self.peek() != Some('}') {
            return self.bad_substitution(start, "the `${` is never closed with `}`");
        }
        self.bump();
        let span = self.span(start, self.pos);
        let var = self.ex.vars.get(name).cloned();
        if let Some(var) = &var {
            if var.origin == Origin::Arg {
                self.sink
                    .used_args
                    .insert(name.to_string(), var.value.clone());
            }
        }
        let value = var.and_then(|v| v.value);
        let present = match &value {
            Some(v) => !colon || !v.is_empty(),
            None => false,
        };
        match op {
            '-' if present => out.push_str(value.as_deref().unwrap_or_default()),
            '-' => {
                self.sink.merge(inner);
                out.push_str(&word);
            }
            '+' if present => {
                self.sink.merge(inner);
                out.push_str(&word);
            }
            '+' => {}
            _ if present => out.push_str(value.as_deref().unwrap_or_default()),
            _ => {
                self.sink.merge(inner);
                let why = if word.is_empty() {
                    String::new()
                } else {
                    format!(": {word}")
                };
                self.sink.diagnostics.push(Diagnostic::new(
                    Code::RequiredVariableUnset,
                    span,
                    format!("variable `{name}` is not set{why}"),
                ));
            }
        }
    }

    fn plain(&mut self, name: &str, span: Span) -> String {
        match self.ex.vars.get(name) {
            Some(var) => {
                if var.origin == Origin::Arg {
                    self.sink
                        .used_args
                        .insert(name.to_string(), var.value.clone());
                }
                var.value.clone().unwrap_or_default()
            }
            None => {
                self.sink.diagnostics.push(
                    Diagnostic::new(
                        Code::UndefinedVariable,
                        span,
                        format!("variable `{name}` is not defined; it expands to an empty string"),
                    )
                    .with_help(if self.ex.global {
                        format!(
                            "declare `ARG {name}` before the first `FROM` (an `ARG` in a stage is not seen here; pass `--build-arg {name}=...`), or use `${{{name}:-default}}`"
                        )
                    } else {
                        format!(
                            "declare it with `ARG {name}` (and pass `--build-arg {name}=...`), or use `${{{name}:-default}}`"
                        )
                    }),
                );
                String::new()
            }
        }
    }

    fn bad_substitution(&mut self, start: usize, why: &str) {
        // Skip to the closing brace so the rest of the word is still processed.
        while let Some(c) = self.bump() {
            if c == '}' {
                break;
            }
        }
        let span = self.span(start, self.pos);
        self.sink.diagnostics.push(Diagnostic::new(
            Code::BadSubstitution,
            span,
            format!("bad substitution `{}`: {why}", &self.raw[start..self.pos]),
        ));
    }
}

/// The byte offset of the first `=` that is not inside quotes or escaped, in a raw word.
pub(crate) fn unquoted_equals(raw: &str, escape: char) -> Option<usize> {
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for (i, c) in raw.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match quote {
            Some(q) if c == q => quote = None,
            Some('"') if c == escape => escaped = true,
            Some(_) => {}
            None if c == escape => escaped = true,
            None if c == '"' || c == '\'' => quote = Some(c),
            None if c == '=' => return Some(i),
            None => {}
        }
    }
    None
}

/// Whether a raw shell word starts with an unquoted `#` (an attempted inline comment).
pub(crate) fn is_comment_word(raw: &str) -> bool {
    raw.starts_with('#')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> Vars {
        let mut v = Vars::default();
        v.set("A", Some("x y".into()), Origin::Arg);
        v.set("E", Some(String::new()), Origin::Env);
        v.set("U", None, Origin::Arg);
        v.set("ARCH", Some("arm64".into()), Origin::Platform);
        v
    }

    fn run(raw: &str) -> (String, Sink) {
        let vars = vars();
        let ex = Expander {
            global: false,
            vars: &vars,
            escape: '\\',
            expand: true,
        };
        let mut sink = Sink::default();
        let out = ex.word(raw, Span::new(10, 10 + raw.len()), Form::Shell, &mut sink);
        (out, sink)
    }

    #[test]
    fn quotes_escapes_and_substitutions() {
        assert_eq!(run(r#""a b"'c$A'\$A"#).0, "a bc$A$A");
        assert_eq!(run("$A-${A}").0, "x y-x y");
        assert_eq!(run("${ARCH}/bin").0, "arm64/bin");
        assert_eq!(run("${E:-d}|${E-d}|${U-d}|${U:-d}").0, "d||d|d");
        assert_eq!(run("${A:+alt}|${E:+alt}|${E+alt}|${U+alt}").0, "alt||alt|");
        assert_eq!(run(r#""\"q\" \x""#).0, r#""q" \x"#);
        assert_eq!(run("$").0, "$");
        assert_eq!(run("a$-b").0, "a$-b");
    }

    #[test]
    fn records_used_args_and_reports_problems() {
        let (_, sink) = run("${A}${ARCH}${U:-z}");
        assert_eq!(
            sink.used_args.into_iter().collect::<Vec<_>>(),
            vec![
                ("A".to_string(), Some("x y".to_string())),
                ("U".to_string(), None)
            ]
        );
        let (out, sink) = run("a${NOPE}b");
        assert_eq!(out, "ab");
        assert_eq!(sink.diagnostics[0].code, Code::UndefinedVariable);
        assert_eq!(sink.diagnostics[0].span, Span::new(11, 18));
        let (_, sink) = run("${A%%x}");
        assert_eq!(sink.diagnostics[0].code, Code::BadSubstitution);
        let (_, sink) = run("${U:?needed}");
        assert_eq!(sink.diagnostics[0].code, Code::RequiredVariableUnset);
        // An unused default branch does not warn.
        let (_, sink) = run("${A:-$NOPE}");
        assert!(sink.diagnostics.is_empty());
    }

    #[test]
    fn equals_outside_quotes() {
        assert_eq!(unquoted_equals(r#""a=b"=c"#, '\\'), Some(5));
        assert_eq!(unquoted_equals(r"a\=b=c", '\\'), Some(4));
        assert_eq!(unquoted_equals("abc", '\\'), None);
    }
}
