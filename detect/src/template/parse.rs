//! Tokens to a template body and its `define`d templates, as Go's `text/template/parse`
//! builds them. Functions are checked while parsing, as Go does: a name that is not a
//! function is an error here, and a Helm or sprig function the renderer does not implement
//! is named as unsupported rather than guessed at.

use std::rc::Rc;

use super::ast::{Arg, Cmd, List, Node, Pipe, Pos};
use super::funcs::{self, Known};
use super::lex::{lex, Tok, Token};

/// A parse error and its position.
#[derive(Debug, Clone)]
pub(crate) struct ParseError {
    /// Where.
    pub(crate) pos: Pos,
    /// What.
    pub(crate) message: String,
}

/// A parsed file: its body and the templates it defines (`define`, `block`).
#[derive(Debug, Default)]
pub(crate) struct Parsed {
    /// The file's own body.
    pub(crate) body: List,
    /// `(name, body, position)` of each `define`/`block`.
    pub(crate) defines: Vec<(String, Rc<List>, Pos)>,
}

/// Deepest nesting of control structures and parentheses.
const MAX_DEPTH: usize = 64;

/// Parses template source `src` (file number `file`).
pub(crate) fn parse(src: &str, file: u32) -> Result<Parsed, ParseError> {
    let tokens = lex(src, file).map_err(|e| ParseError {
        pos: e.pos,
        message: e.message,
    })?;
    let mut p = Parser {
        toks: tokens,
        i: 0,
        defines: Vec::new(),
        depth: 0,
        end: Pos {
            file,
            line: 1,
            col: 1,
        },
    };
    if let Some(last) = p.toks.last() {
        p.end = last.pos;
    }
    let (body, stop) = p.list()?;
    if let Some((kw, pos)) = stop {
        return Err(ParseError {
            pos,
            message: format!("unexpected {{{{{kw}}}}}"),
        });
    }
    Ok(Parsed {
        body,
        defines: p.defines,
    })
}

struct Parser {
    toks: Vec<Token>,
    i: usize,
    defines: Vec<(String, Rc<List>, Pos)>,
    depth: usize,
    end: Pos,
}

type Res<T> = Result<T, ParseError>;

fn err<T>(pos: Pos, message: impl Into<String>) -> Res<T> {
    Err(ParseError {
        pos,
        message: message.into(),
    })
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.toks.get(self.i)
    }

    fn next(&mut self) -> Res<Token> {
        match self.toks.get(self.i) {
            Some(t) => {
                self.i += 1;
                Ok(t.clone())
            }
            None => err(self.end, "unexpected end of template"),
        }
    }

    fn expect_close(&mut self, what: &str) -> Res<()> {
        let t = self.next()?;
        if t.tok != Tok::Close {
            return err(t.pos, format!("unexpected {:?} in {what}", t.tok));
        }
        Ok(())
    }

    /// Nodes up to an `{{else}}` or `{{end}}` (returned, consumed up to the keyword) or EOF.
    fn list(&mut self) -> Res<(List, Option<(&'static str, Pos)>)> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            let pos = self.peek().map(|t| t.pos).unwrap_or(self.end);
            return err(pos, "template nesting too deep");
        }
        let mut out = List::new();
        let result = loop {
            let Some(t) = self.peek().cloned() else {
                break None;
            };
            match t.tok {
                Tok::Text(s) => {
                    self.i += 1;
                    out.push(Node::Text(s.into()));
                }
                Tok::Open => {
                    self.i += 1;
                    let Some(kw) = self.peek().cloned() else {
                        return err(t.pos, "unclosed action");
                    };
                    if let Tok::Keyword(k @ ("else" | "end")) = kw.tok {
                        self.i += 1;
                        break Some((k, kw.pos));
                    }
                    if let Some(node) = self.action(t.pos)? {
                        out.push(node);
                    }
                }
                other => return err(t.pos, format!("unexpected {other:?}")),
            }
        };
        self.depth -= 1;
        Ok((out, result))
    }

    fn action(&mut self, open: Pos) -> Res<Option<Node>> {
        let t = self.next()?;
        match t.tok {
            Tok::Keyword("if") => self.cond(false, t.pos).map(Some),
            Tok::Keyword("with") => self.cond(true, t.pos).map(Some),
            Tok::Keyword("range") => self.range(t.pos).map(Some),
            Tok::Keyword("define") => {
                let name = self.name(t.pos, "define")?;
                self.expect_close("define clause")?;
                let body = self.body_to_end("define")?;
                self.defines.push((name, Rc::new(body), t.pos));
                Ok(None)
            }
            Tok::Keyword("block") => {
                let name = self.name(t.pos, "block")?;
                let pipe = self.pipeline(t.pos, "block", false)?;
                let body = self.body_to_end("block")?;
                self.defines.push((name.clone(), Rc::new(body), t.pos));
                Ok(Some(Node::Template {
                    pos: t.pos,
                    name,
                    pipe: Some(pipe),
                }))
            }
            Tok::Keyword("template") => {
                let name = self.name(t.pos, "template")?;
                let pipe = if self.peek().is_some_and(|t| t.tok == Tok::Close) {
                    self.i += 1;
                    None
                } else {
                    Some(self.pipeline(t.pos, "template", false)?)
                };
                Ok(Some(Node::Template {
                    pos: t.pos,
                    name,
                    pipe,
                }))
            }
            Tok::Keyword("break") => {
                self.expect_close("break")?;
                Ok(Some(Node::Break(t.pos)))
            }
            Tok::Keyword("continue") => {
                self.expect_close("continue")?;
                Ok(Some(Node::Continue(t.pos)))
            }
            Tok::Keyword(k) => err(t.pos, format!("unexpected keyword {k}")),
            _ => {
                self.i -= 1;
                Ok(Some(Node::Action(self.pipeline(open, "command", true)?)))
            }
        }
    }

    fn name(&mut self, pos: Pos, ctx: &str) -> Res<String> {
        let t = self.next()?;
        match t.tok {
            Tok::Str(s) => Ok(s),
            _ => err(
                pos,
                format!("unexpected {:?} in {ctx} clause: want a quoted name", t.tok),
            ),
        }
    }

    fn body_to_end(&mut self, ctx: &str) -> Res<List> {
        let (body, stop) = self.list()?;
        match stop {
            Some(("end", _)) => {
                self.expect_close("end")?;
                Ok(body)
            }
            Some((kw, pos)) => err(pos, format!("unexpected {{{{{kw}}}}} in {ctx}")),
            None => err(
                self.end,
                format!("unexpected EOF: {ctx} has no {{{{end}}}}"),
            ),
        }
    }

    fn cond(&mut self, with: bool, pos: Pos) -> Res<Node> {
        let ctx = if with { "with" } else { "if" };
        let mut branches = Vec::new();
        let mut otherwise = None;
        let mut pipe = self.pipeline(pos, ctx, true)?;
        loop {
            let (body, stop) = self.list()?;
            branches.push((pipe, body));
            match stop {
                Some(("end", _)) => {
                    self.expect_close("end")?;
                    break;
                }
                Some(("else", epos)) => {
                    let chained = match self.peek().map(|t| &t.tok) {
                        Some(Tok::Keyword("if")) if !with => true,
                        Some(Tok::Keyword("with")) if with => true,
                        _ => false,
                    };
                    if chained {
                        self.i += 1;
                        pipe = self.pipeline(epos, ctx, true)?;
                        continue;
                    }
                    self.expect_close("else")?;
                    otherwise = Some(self.body_to_end(ctx)?);
                    break;
                }
                _ => return err(pos, format!("unexpected EOF: {ctx} has no {{{{end}}}}")),
            }
        }
        Ok(Node::Cond {
            with,
            branches,
            otherwise,
        })
    }

    fn range(&mut self, pos: Pos) -> Res<Node> {
        let pipe = self.pipeline(pos, "range", true)?;
        let (body, stop) = self.list()?;
        let otherwise = match stop {
            Some(("end", _)) => {
                self.expect_close("end")?;
                None
            }
            Some(("else", _)) => {
                self.expect_close("else")?;
                Some(self.body_to_end("range")?)
            }
            _ => return err(pos, "unexpected EOF: range has no {{end}}"),
        };
        Ok(Node::Range {
            pipe,
            body,
            otherwise,
        })
    }

    /// A pipeline up to `}}` (consumed), with declarations when `decl` is allowed.
    fn pipeline(&mut self, pos: Pos, ctx: &str, decl: bool) -> Res<Pipe> {
        let mut pipe = Pipe {
            pos,
            vars: Vec::new(),
            assign: false,
            cmds: Vec::new(),
        };
        if decl {
            self.declarations(&mut pipe)?;
        }
        self.commands(&mut pipe, ctx, Tok::Close)?;
        Ok(pipe)
    }

    fn declarations(&mut self, pipe: &mut Pipe) -> Res<()> {
        let start = self.i;
        let mut vars = Vec::new();
        while let Some(Token {
            tok: Tok::Var(name, fields),
            ..
        }) = self.peek().cloned()
        {
            if !fields.is_empty() {
                break;
            }
            self.i += 1;
            vars.push(name);
            match self.peek().map(|t| t.tok.clone()) {
                Some(Tok::Declare) => {
                    self.i += 1;
                    pipe.vars = vars;
                    return Ok(());
                }
                Some(Tok::Assign) => {
                    self.i += 1;
                    pipe.vars = vars;
                    pipe.assign = true;
                    return Ok(());
                }
                Some(Tok::Comma) if vars.len() < 2 => {
                    self.i += 1;
                }
                _ => break,
            }
        }
        self.i = start;
        Ok(())
    }

    fn commands(&mut self, pipe: &mut Pipe, ctx: &str, until: Tok) -> Res<()> {
        loop {
            let cmd = self.command(ctx)?;
            pipe.cmds.push(cmd);
            let t = self.next()?;
            match t.tok {
                Tok::Pipe => continue,
                ref tok if *tok == until => break,
                other => return err(t.pos, format!("unexpected {other:?} in {ctx}")),
            }
        }
        Ok(())
    }

    fn command(&mut self, ctx: &str) -> Res<Cmd> {
        let pos = self.peek().map(|t| t.pos).unwrap_or(self.end);
        let mut args = Vec::new();
        while let Some(t) = self.peek() {
            if matches!(t.tok, Tok::Pipe | Tok::Close | Tok::RParen) {
                break;
            }
            args.push(self.operand()?);
        }
        if args.is_empty() {
            return err(pos, format!("missing value for {ctx}"));
        }
        Ok(Cmd { pos, args })
    }

    fn operand(&mut self) -> Res<Arg> {
        let t = self.next()?;
        let arg = match t.tok {
            Tok::Dot => Arg::Dot,
            Tok::Field(f) => Arg::Field(t.pos, f),
            Tok::Var(v, f) => Arg::Var(t.pos, v, f),
            Tok::Ident(name) => match funcs::known(&name) {
                Known::Yes => Arg::Func(t.pos, name),
                Known::Unsupported => {
                    return err(
                        t.pos,
                        format!("function {name:?} is not supported by chasi's chart renderer"),
                    )
                }
                Known::No => return err(t.pos, format!("function {name:?} not defined")),
            },
            Tok::Str(s) => Arg::Str(s.into()),
            Tok::Int(i) => Arg::Int(i),
            Tok::Float(f) => Arg::Float(f),
            Tok::Bool(b) => Arg::Bool(b),
            Tok::Nil => Arg::Nil(t.pos),
            Tok::LParen => {
                self.depth += 1;
                if self.depth > MAX_DEPTH {
                    return err(t.pos, "parentheses nested too deep");
                }
                let mut pipe = Pipe {
                    pos: t.pos,
                    vars: Vec::new(),
                    assign: false,
                    cmds: Vec::new(),
                };
                self.declarations(&mut pipe)?;
                self.commands(&mut pipe, "parenthesized pipeline", Tok::RParen)?;
                self.depth -= 1;
                let mut fields = Vec::new();
                if let Some(Token {
                    tok: Tok::Field(f),
                    spaced: false,
                    ..
                }) = self.peek().cloned()
                {
                    self.i += 1;
                    fields = f;
                }
                Arg::Sub(Box::new(pipe), fields)
            }
            Tok::Keyword(k) => return err(t.pos, format!("unexpected keyword {k} in operand")),
            other => return err(t.pos, format!("unexpected {other:?} in operand")),
        };
        Ok(arg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn structures_parse() {
        let p = parse(
            r#"{{ define "a" }}x{{ end }}{{ if .A }}1{{ else if .B }}2{{ else }}3{{ end }}{{ range $i, $v := .L }}{{ $v }}{{ else }}none{{ end }}{{ with .W }}{{ . }}{{ end }}{{ template "a" . }}{{ block "b" . }}d{{ end }}"#,
            0,
        )
        .unwrap();
        assert_eq!(p.defines.len(), 2);
        assert_eq!(p.body.len(), 5);
    }

    #[test]
    fn unknown_and_unsupported_functions_are_named() {
        let e = parse("a\n  {{ frobnicate .X }}", 0).unwrap_err();
        assert_eq!((e.pos.line, e.pos.col), (2, 6));
        assert!(
            e.message.contains("\"frobnicate\" not defined"),
            "{}",
            e.message
        );
        let e = parse("{{ genCA \"x\" 365 }}", 0).unwrap_err();
        assert!(
            e.message.contains("\"genCA\" is not supported"),
            "{}",
            e.message
        );
    }

    #[test]
    fn structure_errors() {
        for bad in [
            "{{ if .A }}",
            "{{ end }}",
            "{{ range }}{{ end }}",
            "{{ (.a }}",
            "{{ define a }}{{ end }}",
        ] {
            assert!(parse(bad, 0).is_err(), "{bad}");
        }
    }
}
