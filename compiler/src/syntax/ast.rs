//! The Kubefile syntax tree.
//!
//! This is the contract between the parser and everything after it: a lossless-enough view of
//! the file in which every instruction, flag and argument carries its [`Span`]. It records what
//! was *written* (raw words with their quotes, JSON strings decoded), not what it *means*:
//! variable expansion, quote removal and every sealer rule belong to the checker.

use crate::source::Span;
use serde::Serialize;

/// A parsed Kubefile: parser directives and instructions in file order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Kubefile {
    /// The escape character in effect (`\` unless a `# escape=` directive says otherwise).
    pub escape: char,
    /// The span of the `# escape=` directive, when there is one.
    pub escape_directive: Option<Span>,
    /// Instructions in file order (continuation lines already joined).
    pub instructions: Vec<Instruction>,
}

/// The instruction keywords of the Kubefile language (sealer v0.11), matched case-insensitively.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Keyword {
    /// `FROM [--platform=P] image [AS name]`
    From,
    /// `COPY [--from=stage] [--chown=u:g|preserve] [--chmod=mode] src... dest`
    Copy,
    /// `ADD [--chown=u:g|preserve] [--chmod=mode] src... dest`
    Add,
    /// `RUN command` or `RUN ["exe", "arg"]`
    Run,
    /// `ARG name[=default]`
    Arg,
    /// `ENV key=value ...` or `ENV key value`
    Env,
    /// `LABEL key=value ...` or `LABEL key value`
    Label,
    /// `MAINTAINER text`
    Maintainer,
    /// `APP name scheme://src...`
    App,
    /// `CNI name scheme://src...`
    Cni,
    /// `CSI name scheme://src...`
    Csi,
    /// `KUBEVERSION range`
    KubeVersion,
    /// `APPCMDS name ["exe", "arg"]`
    AppCmds,
    /// `APPENV name key=value ...`
    AppEnv,
    /// `LAUNCH app...` or `LAUNCH ["app", ...]`
    Launch,
    /// `CMDS ["command", ...]`
    Cmds,
    /// `CMD command` (deprecated)
    Cmd,
}

impl Keyword {
    /// Every keyword, for lookups and "did you mean" suggestions.
    pub const ALL: &'static [Keyword] = &[
        Keyword::From,
        Keyword::Copy,
        Keyword::Add,
        Keyword::Run,
        Keyword::Arg,
        Keyword::Env,
        Keyword::Label,
        Keyword::Maintainer,
        Keyword::App,
        Keyword::Cni,
        Keyword::Csi,
        Keyword::KubeVersion,
        Keyword::AppCmds,
        Keyword::AppEnv,
        Keyword::Launch,
        Keyword::Cmds,
        Keyword::Cmd,
    ];

    /// The canonical upper-case spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Keyword::From => "FROM",
            Keyword::Copy => "COPY",
            Keyword::Add => "ADD",
            Keyword::Run => "RUN",
            Keyword::Arg => "ARG",
            Keyword::Env => "ENV",
            Keyword::Label => "LABEL",
            Keyword::Maintainer => "MAINTAINER",
            Keyword::App => "APP",
            Keyword::Cni => "CNI",
            Keyword::Csi => "CSI",
            Keyword::KubeVersion => "KUBEVERSION",
            Keyword::AppCmds => "APPCMDS",
            Keyword::AppEnv => "APPENV",
            Keyword::Launch => "LAUNCH",
            Keyword::Cmds => "CMDS",
            Keyword::Cmd => "CMD",
        }
    }

    /// Looks a keyword up case-insensitively.
    pub fn from_word(word: &str) -> Option<Keyword> {
        Keyword::ALL
            .iter()
            .copied()
            .find(|k| k.as_str().eq_ignore_ascii_case(word))
    }
}

/// One instruction (one logical line).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Instruction {
    /// The recognised keyword, or `None` for an unknown word (already reported by the parser).
    pub keyword: Option<Keyword>,
    /// The keyword exactly as written.
    pub keyword_text: String,
    /// Where the keyword is.
    pub keyword_span: Span,
    /// Leading `--name[=value]` flags, in order.
    pub flags: Vec<Flag>,
    /// Everything after the keyword and the flags.
    pub args: Arguments,
    /// The whole instruction, from the keyword to the end of its last continuation line
    /// (line break excluded).
    pub span: Span,
}

/// A `--name` or `--name=value` flag.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Flag {
    /// The name without the leading `--`.
    pub name: Word,
    /// The value after `=`, quotes removed, when present.
    pub value: Option<Word>,
    /// The whole flag.
    pub span: Span,
}

/// The arguments of an instruction, in one of the two Dockerfile forms.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "form", rename_all = "lowercase")]
pub enum Arguments {
    /// `["a", "b"]`: each item is a decoded JSON string with the span of its literal.
    Json {
        /// The decoded strings.
        items: Vec<Word>,
        /// The whole array.
        span: Span,
    },
    /// Shell form: the text with continuations joined, and its quote-aware words.
    Shell {
        /// The logical text after keyword and flags, continuation escapes and the line breaks
        /// they hide removed, comment lines inside the continuation dropped; trailing
        /// whitespace trimmed.
        text: String,
        /// Whitespace-separated words; quotes and escapes are kept in each word's `text`
        /// (a quoted string with spaces stays one word).
        words: Vec<Word>,
        /// From the first to the last argument character (empty at the keyword's end when
        /// there are no arguments).
        span: Span,
    },
}

impl Arguments {
    /// The words of either form.
    pub fn words(&self) -> &[Word] {
        match self {
            Arguments::Json { items, .. } => items,
            Arguments::Shell { words, .. } => words,
        }
    }

    /// The span of the whole argument list.
    pub fn span(&self) -> Span {
        match self {
            Arguments::Json { span, .. } | Arguments::Shell { span, .. } => *span,
        }
    }

    /// Whether this is the JSON-array form.
    pub fn is_json(&self) -> bool {
        matches!(self, Arguments::Json { .. })
    }
}

/// A piece of text with its place in the source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Word {
    /// The text (raw for shell words; decoded for JSON items and flag values).
    pub text: String,
    /// Where it is. For a word broken by a line continuation the span covers both pieces.
    pub span: Span,
}
