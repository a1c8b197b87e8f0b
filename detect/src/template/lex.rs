//! Go `text/template` source to tokens: text between actions, and inside `{{ }}` the
//! operands, keywords and punctuation, each with its line and column. Trim markers
//! (`{{- ` and ` -}}`) are applied here, to the neighbouring text, and comments
//! (`{{/* */}}`) are dropped, as Go's lexer does.

use super::ast::Pos;

/// A token of a template.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Tok {
    /// Literal text.
    Text(String),
    /// `{{`.
    Open,
    /// `}}`.
    Close,
    /// `.` alone.
    Dot,
    /// `.a.b`: the field names.
    Field(Vec<String>),
    /// `$x.a.b`: the name (`$` for the root, `$x` otherwise) and the fields.
    Var(String, Vec<String>),
    /// A function name.
    Ident(String),
    /// A quoted, raw or character constant's text.
    Str(String),
    /// An integer constant.
    Int(i64),
    /// A float constant.
    Float(f64),
    /// `true` or `false`.
    Bool(bool),
    /// `nil`.
    Nil,
    /// `|`.
    Pipe,
    /// `(`.
    LParen,
    /// `)`.
    RParen,
    /// `:=`.
    Declare,
    /// `=`.
    Assign,
    /// `,`.
    Comma,
    /// A keyword: `if`, `else`, `end`, `range`, `with`, `define`, `template`, `block`,
    /// `break`, `continue`.
    Keyword(&'static str),
}

/// A token, where it starts, and whether whitespace precedes it inside an action.
#[derive(Debug, Clone)]
pub(crate) struct Token {
    /// The token.
    pub(crate) tok: Tok,
    /// Its position.
    pub(crate) pos: Pos,
    /// Whitespace before it.
    pub(crate) spaced: bool,
}

/// A lexical error and its position.
#[derive(Debug, Clone)]
pub(crate) struct LexError {
    /// Where.
    pub(crate) pos: Pos,
    /// What.
    pub(crate) message: String,
}

const KEYWORDS: &[&str] = &[
    "if", "else", "end", "range", "with", "define", "template", "block", "break", "continue",
];

struct Lexer<'a> {
    chars: Vec<char>,
    i: usize,
    line: u32,
    col: u32,
    file: u32,
    out: Vec<Token>,
    _src: &'a str,
}

fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

/// Tokens of `src`, the template file number `file`.
pub(crate) fn lex(src: &str, file: u32) -> Result<Vec<Token>, LexError> {
    let mut lx = Lexer {
        chars: src.chars().collect(),
        i: 0,
        line: 1,
        col: 1,
        file,
        out: Vec::new(),
        _src: src,
    };
    lx.run()?;
    Ok(lx.out)
}

impl Lexer<'_> {
    fn pos(&self) -> Pos {
        Pos {
            file: self.file,
            line: self.line,
            col: self.col,
        }
    }

    fn peek(&self, k: usize) -> Option<char> {
        self.chars.get(self.i + k).copied()
    }

    fn starts(&self, s: &str) -> bool {
        s.chars().enumerate().all(|(k, c)| self.peek(k) == Some(c))
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek(0)?;
        self.i += 1;
        if c == '\n' {
            self.line += 1;
            self.col = 1;
        } else {
            self.col += 1;
        }
        Some(c)
    }

    fn err<T>(&self, pos: Pos, message: impl Into<String>) -> Result<T, LexError> {
        Err(LexError {
            pos,
            message: message.into(),
        })
    }

    fn push(&mut self, tok: Tok, pos: Pos, spaced: bool) {
        self.out.push(Token { tok, pos, spaced });
    }

    fn run(&mut self) -> Result<(), LexError> {
        let mut trim_next = false;
        loop {
            let pos = self.pos();
            let mut text = String::new();
            while self.peek(0).is_some() && !self.starts("{{") {
                text.extend(self.bump());
            }
            if trim_next {
                text = text.trim_start_matches(is_space).to_string();
            }
            let at_end = self.peek(0).is_none();
            let trim_left =
                !at_end && self.peek(2) == Some('-') && self.peek(3).is_some_and(is_space);
            if trim_left {
                text = text.trim_end_matches(is_space).to_string();
            }
            if !text.is_empty() {
                self.push(Tok::Text(text), pos, false);
            }
            if at_end {
                return Ok(());
            }
            trim_next = self.action(trim_left)?;
        }
    }

    /// Lexes one action from `{{`; returns whether it ends with a trim marker.
    fn action(&mut self, trim_left: bool) -> Result<bool, LexError> {
        let open = self.pos();
        self.bump();
        self.bump();
        if trim_left {
            self.bump();
        }
        // A comment is the whole action.
        let save = (self.i, self.line, self.col);
        while self.peek(0).is_some_and(is_space) {
            self.bump();
        }
        if self.starts("/*") {
            while !self.starts("*/") {
                if self.bump().is_none() {
                    return self.err(open, "unclosed comment");
                }
            }
            self.bump();
            self.bump();
            let spaced = self.peek(0).is_some_and(is_space);
            while self.peek(0).is_some_and(is_space) {
                self.bump();
            }
            if spaced && self.starts("-}}") {
                self.bump();
                self.bump();
                self.bump();
                return Ok(true);
            }
            if self.starts("}}") {
                self.bump();
                self.bump();
                return Ok(false);
            }
            return self.err(open, "comment ends before closing delimiter");
        }
        (self.i, self.line, self.col) = save;
        self.push(Tok::Open, open, false);
        let mut depth = 0i32;
        loop {
            let spaced = self.peek(0).is_some_and(is_space);
            while self.peek(0).is_some_and(is_space) {
                self.bump();
            }
            let pos = self.pos();
            let Some(c) = self.peek(0) else {
                return self.err(open, "unclosed action");
            };
            if spaced && self.starts("-}}") {
                if depth > 0 {
                    return self.err(pos, "unclosed left paren");
                }
                self.bump();
                self.bump();
                self.bump();
                self.push(Tok::Close, pos, true);
                return Ok(true);
            }
            if self.starts("}}") {
                if depth > 0 {
                    return self.err(pos, "unclosed left paren");
                }
                self.bump();
                self.bump();
                self.push(Tok::Close, pos, spaced);
                return Ok(false);
            }
            let tok = match c {
                '|' => {
                    self.bump();
                    Tok::Pipe
                }
                '(' => {
                    self.bump();
                    depth += 1;
                    Tok::LParen
                }
                ')' => {
                    self.bump();
                    depth -= 1;
                    if depth < 0 {
                        return self.err(pos, "unexpected right paren");
                    }
                    Tok::RParen
                }
                ',' => {
                    self.bump();
                    Tok::Comma
                }
                ':' if self.peek(1) == Some('=') => {
                    self.bump();
                    self.bump();
                    Tok::Declare
                }
                '=' => {
                    self.bump();
                    Tok::Assign
                }
                '"' => Tok::Str(self.quoted(pos)?),
                '`' => Tok::Str(self.raw(pos)?),
                '\'' => self.char_const(pos)?,
                '$' => {
                    self.bump();
                    let name = format!("${}", self.ident());
                    Tok::Var(name, self.fields())
                }
                '.' if self.peek(1).is_some_and(|d| d.is_ascii_digit()) => self.number(pos)?,
                '.' => {
                    let fields = self.fields();
                    if fields.is_empty() {
                        self.bump();
                        Tok::Dot
                    } else {
                        Tok::Field(fields)
                    }
                }
                '+' | '-' if self.peek(1).is_some_and(|d| d.is_ascii_digit() || d == '.') => {
                    self.number(pos)?
                }
                c if c.is_ascii_digit() => self.number(pos)?,
                c if c.is_alphabetic() || c == '_' => {
                    let word = self.ident();
                    match word.as_str() {
                        "true" => Tok::Bool(true),
                        "false" => Tok::Bool(false),
                        "nil" => Tok::Nil,
                        w => match KEYWORDS.iter().find(|k| **k == w) {
                            Some(k) => Tok::Keyword(k),
                            None => Tok::Ident(word),
                        },
                    }
                }
                other => return self.err(pos, format!("unexpected {other:?} in action")),
            };
            self.push(tok, pos, spaced);
        }
    }

    fn ident(&mut self) -> String {
        let mut s = String::new();
        while let Some(c) = self.peek(0) {
            if c.is_alphanumeric() || c == '_' {
                s.push(c);
                self.bump();
            } else {
                break;
            }
        }
        s
    }

    fn fields(&mut self) -> Vec<String> {
        let mut fields = Vec::new();
        while self.peek(0) == Some('.')
            && self.peek(1).is_some_and(|c| c.is_alphabetic() || c == '_')
        {
            self.bump();
            fields.push(self.ident());
        }
        fields
    }

    fn number(&mut self, pos: Pos) -> Result<Tok, LexError> {
        let mut s = String::new();
        while let Some(c) = self.peek(0) {
            let exp_sign = (c == '+' || c == '-')
                && s.ends_with(['e', 'E', 'p', 'P'])
                && !s.starts_with("0x")
                && !s.starts_with("-0x");
            if c.is_ascii_alphanumeric()
                || c == '_'
                || c == '.'
                || exp_sign
                || (s.is_empty() && (c == '+' || c == '-'))
            {
                s.push(c);
                self.bump();
            } else {
                break;
            }
        }
        parse_number(&s)
            .ok_or(())
            .or_else(|_| self.err(pos, format!("bad number syntax: {s:?}")))
    }

    fn quoted(&mut self, pos: Pos) -> Result<String, LexError> {
        self.bump();
        let mut s = String::new();
        loop {
            match self.bump() {
                None | Some('\n') => return self.err(pos, "unterminated quoted string"),
                Some('"') => return Ok(s),
                Some('\\') => s.push(self.escape(pos, '"')?),
                Some(c) => s.push(c),
            }
        }
    }

    fn escape(&mut self, pos: Pos, quote: char) -> Result<char, LexError> {
        let c = match self.bump() {
            Some('n') => '\n',
            Some('t') => '\t',
            Some('r') => '\r',
            Some('a') => '\u{7}',
            Some('b') => '\u{8}',
            Some('f') => '\u{c}',
            Some('v') => '\u{b}',
            Some('\\') => '\\',
            Some(q) if q == quote => q,
            Some(k @ ('x' | 'u' | 'U')) => {
                let n = match k {
                    'x' => 2,
                    'u' => 4,
                    _ => 8,
                };
                let mut code = 0u32;
                for _ in 0..n {
                    let d = self.bump().and_then(|d| d.to_digit(16));
                    let Some(d) = d else {
                        return self.err(pos, "bad escape in string");
                    };
                    code = code * 16 + d;
                }
                match char::from_u32(code) {
                    Some(c) => c,
                    None => return self.err(pos, "bad escape in string"),
                }
            }
            Some(d @ '0'..='7') => {
                let mut code = d.to_digit(8).unwrap_or(0);
                for _ in 0..2 {
                    let Some(d) = self.bump().and_then(|d| d.to_digit(8)) else {
                        return self.err(pos, "bad escape in string");
                    };
                    code = code * 8 + d;
                }
                char::from_u32(code).unwrap_or('\u{fffd}')
            }
            _ => return self.err(pos, "bad escape in string"),
        };
        Ok(c)
    }

    fn raw(&mut self, pos: Pos) -> Result<String, LexError> {
        self.bump();
        let mut s = String::new();
        loop {
            match self.bump() {
                None => return self.err(pos, "unterminated raw quoted string"),
                Some('`') => return Ok(s),
                Some('\r') => {}
                Some(c) => s.push(c),
            }
        }
    }

    fn char_const(&mut self, pos: Pos) -> Result<Tok, LexError> {
        self.bump();
        let c = match self.bump() {
            Some('\\') => self.escape(pos, '\'')?,
            Some(c) if c != '\'' && c != '\n' => c,
            _ => return self.err(pos, "bad character constant"),
        };
        if self.bump() != Some('\'') {
            return self.err(pos, "unterminated character constant");
        }
        // A character constant is a number in Go: its code point.
        Ok(Tok::Int(i64::from(u32::from(c))))
    }
}

fn parse_number(s: &str) -> Option<Tok> {
    let clean = s.replace('_', "");
    let (neg, body) = match clean.strip_prefix('-') {
        Some(b) => (true, b.to_string()),
        None => (false, clean.strip_prefix('+').unwrap_or(&clean).to_string()),
    };
    let radix = [
        ("0x", 16),
        ("0X", 16),
        ("0o", 8),
        ("0O", 8),
        ("0b", 2),
        ("0B", 2),
    ];
    for (p, r) in radix {
        if let Some(digits) = body.strip_prefix(p) {
            let v = i64::from_str_radix(digits, r).ok()?;
            return Some(Tok::Int(if neg { -v } else { v }));
        }
    }
    if body.len() > 1 && body.starts_with('0') && body.chars().all(|c| c.is_ascii_digit()) {
        let v = i64::from_str_radix(&body[1..], 8).ok()?;
        return Some(Tok::Int(if neg { -v } else { v }));
    }
    if body.chars().all(|c| c.is_ascii_digit()) && !body.is_empty() {
        let v: i64 = body.parse().ok()?;
        return Some(Tok::Int(if neg { -v } else { v }));
    }
    let f: f64 = body.parse().ok()?;
    if !f.is_finite() || body.contains(|c: char| c.is_ascii_alphabetic() && c != 'e' && c != 'E') {
        return None;
    }
    Some(Tok::Float(if neg { -f } else { f }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(s: &str) -> Vec<Tok> {
        lex(s, 0).unwrap().into_iter().map(|t| t.tok).collect()
    }

    #[test]
    fn trims_and_comments() {
        assert_eq!(
            toks("a  \n{{- .X -}}\n  b{{/* c */}}d"),
            vec![
                Tok::Text("a".into()),
                Tok::Open,
                Tok::Field(vec!["X".into()]),
                Tok::Close,
                Tok::Text("b".into()),
                Tok::Text("d".into())
            ]
        );
    }

    #[test]
    fn operands() {
        assert_eq!(
            toks(r#"{{ $x := printf "%s\n" $.A.b -1 0x10 1.5 'a' (.c).d }}"#),
            vec![
                Tok::Open,
                Tok::Var("$x".into(), vec![]),
                Tok::Declare,
                Tok::Ident("printf".into()),
                Tok::Str("%s\n".into()),
                Tok::Var("$".into(), vec!["A".into(), "b".into()]),
                Tok::Int(-1),
                Tok::Int(16),
                Tok::Float(1.5),
                Tok::Int(97),
                Tok::LParen,
                Tok::Field(vec!["c".into()]),
                Tok::RParen,
                Tok::Field(vec!["d".into()]),
                Tok::Close
            ]
        );
    }

    #[test]
    fn errors_have_positions() {
        let e = lex("ok\n  {{ \"abc }}", 3).unwrap_err();
        assert_eq!((e.pos.file, e.pos.line, e.pos.col), (3, 2, 6));
        assert!(lex("{{ .a ", 0).is_err());
        assert!(lex("{{/* x", 0).is_err());
    }
}
