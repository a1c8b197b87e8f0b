//! The parsed form of a template: Go `text/template`'s node kinds, each with the position
//! an error about it names.

use std::rc::Rc;

/// A position: template file number, 1-based line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Pos {
    /// Index into the engine's file table.
    pub(crate) file: u32,
    /// 1-based line.
    pub(crate) line: u32,
    /// 1-based column, in characters.
    pub(crate) col: u32,
}

/// A sequence of nodes.
pub(crate) type List = Vec<Node>;

/// A node of a template body.
#[derive(Debug)]
pub(crate) enum Node {
    /// Literal text.
    Text(Rc<str>),
    /// `{{ pipeline }}`: printed unless it declares variables.
    Action(Pipe),
    /// `if` / `with`: the branches (`else if`, `else with`) and the `else`.
    Cond {
        /// `true` for `with` (dot becomes the value).
        with: bool,
        /// Condition and body of each branch.
        branches: Vec<(Pipe, List)>,
        /// The `else` body.
        otherwise: Option<List>,
    },
    /// `range`.
    Range {
        /// What is ranged over (with its variables).
        pipe: Pipe,
        /// Body per element.
        body: List,
        /// Body when empty.
        otherwise: Option<List>,
    },
    /// `template "name" pipeline`.
    Template {
        /// Where.
        pos: Pos,
        /// The name.
        name: String,
        /// The data, `nil` when absent.
        pipe: Option<Pipe>,
    },
    /// `break`.
    Break(Pos),
    /// `continue`.
    Continue(Pos),
}

/// A pipeline with its declarations.
#[derive(Debug)]
pub(crate) struct Pipe {
    /// Where.
    pub(crate) pos: Pos,
    /// Variables declared or assigned.
    pub(crate) vars: Vec<String>,
    /// `=` instead of `:=`.
    pub(crate) assign: bool,
    /// The commands, joined by `|`.
    pub(crate) cmds: Vec<Cmd>,
}

/// One command of a pipeline.
#[derive(Debug)]
pub(crate) struct Cmd {
    /// Where.
    pub(crate) pos: Pos,
    /// The operands; the first may be a function.
    pub(crate) args: Vec<Arg>,
}

/// An operand.
#[derive(Debug)]
pub(crate) enum Arg {
    /// `.`.
    Dot,
    /// `.a.b`.
    Field(Pos, Vec<String>),
    /// `$x.a` (`$` is the root).
    Var(Pos, String, Vec<String>),
    /// A function name.
    Func(Pos, String),
    /// A string constant.
    Str(Rc<str>),
    /// An integer constant.
    Int(i64),
    /// A float constant.
    Float(f64),
    /// `true`/`false`.
    Bool(bool),
    /// `nil`.
    Nil(Pos),
    /// `( pipeline ).a.b`.
    Sub(Box<Pipe>, Vec<String>),
}

impl Arg {
    /// A name for the operand in messages.
    pub(crate) fn describe(&self) -> String {
        match self {
            Arg::Dot => ".".into(),
            Arg::Field(_, f) => format!(".{}", f.join(".")),
            Arg::Var(_, v, f) if f.is_empty() => v.clone(),
            Arg::Var(_, v, f) => format!("{v}.{}", f.join(".")),
            Arg::Func(_, n) => n.clone(),
            Arg::Str(s) => format!("{s:?}"),
            Arg::Int(i) => i.to_string(),
            Arg::Float(f) => f.to_string(),
            Arg::Bool(b) => b.to_string(),
            Arg::Nil(_) => "nil".into(),
            Arg::Sub(_, f) if f.is_empty() => "(...)".into(),
            Arg::Sub(_, f) => format!("(...).{}", f.join(".")),
        }
    }
}
