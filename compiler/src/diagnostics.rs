//! Diagnostics as data.
//!
//! Parsing, checking and planning never stop at the first problem: each stage returns its
//! result together with a list of [`Diagnostic`]s. A diagnostic has a severity, a stable
//! [`Code`], a message, the [`Span`] it points at and an optional help line. Rendering
//! (a code frame for humans, JSON for tools) happens at the edge, from this data alone.
//!
//! Every code is declared once, in the `codes!` table below; `docs/diagnostics.md` is
//! generated from that table and a test keeps the two identical.

use crate::source::Span;
use serde::Serialize;

/// How bad a diagnostic is. Errors make `chasi check` exit 1; warnings do not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The Kubefile cannot be built as written.
    Error,
    /// The Kubefile builds, but probably not as its author meant.
    Warning,
}

impl Severity {
    /// `"error"` or `"warning"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        }
    }
}

macro_rules! codes {
    ($( $(#[$doc:meta])* $variant:ident = $code:literal, $severity:ident, $summary:literal; )*) => {
        /// A stable diagnostic identity. The string form (`KF…`) never changes meaning once released.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        #[non_exhaustive]
        pub enum Code {
            $( $(#[$doc])* $variant, )*
        }

        impl Code {
            /// Every code, in table order.
            pub const ALL: &'static [Code] = &[$(Code::$variant),*];

            /// The stable string form, e.g. `KF201`.
            pub fn as_str(self) -> &'static str {
                match self { $(Code::$variant => $code,)* }
            }

            /// The severity this code is reported with.
            pub fn severity(self) -> Severity {
                match self { $(Code::$variant => Severity::$severity,)* }
            }

            /// One line saying what the code means (for the documentation table).
            pub fn summary(self) -> &'static str {
                match self { $(Code::$variant => $summary,)* }
            }
        }
    };
}

codes! {
    // --- KF1xx: lexical and syntax (the parser) ---
    /// `# escape=` names something other than `\` or a backtick.
    InvalidEscape = "KF100", Error, "the `# escape=` directive names a character other than `\\` or `` ` ``";
    /// A second `# escape=` directive.
    DuplicateEscape = "KF101", Error, "only one `# escape=` parser directive may be given";
    /// A keyword that is not a Kubefile instruction.
    UnknownInstruction = "KF102", Error, "unknown instruction (a close match is suggested)";
    /// A Dockerfile instruction that Kubefiles do not support.
    UnsupportedInstruction = "KF103", Error, "a Dockerfile instruction that the Kubefile language does not support";
    /// An instruction with no arguments at all.
    MissingArguments = "KF104", Error, "the instruction needs arguments";
    /// A JSON array containing something other than strings.
    JsonNotStrings = "KF105", Error, "a JSON-array argument list must contain strings only";
    /// Text that starts like a JSON array but is not valid JSON.
    MalformedJson = "KF106", Warning, "arguments start with `[` but are not a valid JSON array; they are read as shell form";
    /// A `--flag` that is not written `--name` or `--name=value`.
    MalformedFlag = "KF107", Error, "a flag must be written `--name=value`";
    /// An empty line inside a line continuation.
    EmptyContinuation = "KF108", Warning, "empty line inside a line continuation";
    /// The file ends in the middle of a line continuation.
    UnterminatedContinuation = "KF109", Warning, "the file ends with a line continuation";
    /// A quote that is never closed.
    UnterminatedQuote = "KF110", Error, "a quoted string is not closed";
    /// Bytes that are not valid UTF-8.
    InvalidUtf8 = "KF111", Error, "the Kubefile is not valid UTF-8";

    // --- KF2xx: semantics (the checker) ---
    /// No `FROM` instruction at all.
    MissingFrom = "KF200", Error, "the Kubefile has no `FROM` instruction";
    /// An instruction other than `ARG` before the first `FROM`.
    InstructionBeforeFrom = "KF201", Error, "only `ARG` may come before the first `FROM`";
    /// `FROM` without an image.
    FromMissingImage = "KF202", Error, "`FROM` needs an image name or `scratch`";
    /// A flag that the instruction does not accept.
    UnknownFlag = "KF203", Error, "the instruction does not accept this flag";
    /// A flag value that cannot be used (platform, chown, chmod, …).
    InvalidFlagValue = "KF204", Error, "the flag's value is invalid";
    /// `COPY`/`ADD` with no destination.
    CopyMissingDestination = "KF205", Error, "`COPY` and `ADD` need at least one source and a destination";
    /// `LAUNCH` that is not the last instruction.
    LaunchNotLast = "KF206", Error, "`LAUNCH` must be the last instruction";
    /// A second `LAUNCH`.
    DuplicateLaunch = "KF207", Error, "only one `LAUNCH` may be given";
    /// `CMDS` that is not the last instruction.
    CmdsNotLast = "KF208", Error, "`CMDS` must be the last instruction";
    /// A second `CMDS`.
    DuplicateCmds = "KF209", Error, "only one `CMDS` may be given";
    /// The deprecated `CMD` instruction.
    CmdDeprecated = "KF210", Warning, "`CMD` is deprecated; use `CMDS` (a JSON array of commands)";
    /// `CMD` together with `LAUNCH`.
    CmdWithLaunch = "KF211", Error, "`CMD` and `LAUNCH` are mutually exclusive";
    /// `LAUNCH`, `APPCMDS` or `APPENV` naming an application that was never declared.
    UnknownApp = "KF212", Error, "the application is not declared by `APP`/`CNI`/`CSI` (or inherited from the base image)";
    /// `APP`/`CNI`/`CSI` without a name or without sources.
    AppMissingParts = "KF213", Error, "`APP`, `CNI` and `CSI` need a name and at least one source";
    /// An `APP` source without a supported scheme.
    AppInvalidScheme = "KF214", Error, "an application source must start with `local://`, `http://` or `https://`";
    /// An application whose type cannot be detected and that has no `APPCMDS`.
    AppNeedsAppCmds = "KF215", Error, "an application of unknown type needs `APPCMDS`";
    /// `APPCMDS` whose command is not a JSON array of strings.
    AppCmdsNotJson = "KF216", Error, "`APPCMDS` takes an application name and a JSON array";
    /// `APPCMDS`/`APPENV` with no application name.
    AppNameMissing = "KF217", Error, "the instruction needs an application name";
    /// An application name that cannot be a directory name.
    InvalidAppName = "KF218", Error, "an application name must be a single path segment of letters, digits, `.`, `_` or `-`";
    /// `LABEL` in a form that is neither `key value` nor `k=v ...`.
    InvalidLabel = "KF219", Error, "`LABEL` must be `key=value ...` (or the old `key value` form)";
    /// `ENV` in an invalid form.
    InvalidEnv = "KF220", Error, "`ENV` must be `key=value ...` (or the old `key value` form)";
    /// `ARG` in an invalid form.
    InvalidArg = "KF221", Error, "`ARG` must be `name` or `name=default`";
    /// `APPENV` items that are not `key=value`.
    InvalidAppEnv = "KF222", Error, "`APPENV` takes an application name and `key=value` items";
    /// A `${...}` substitution that cannot be parsed.
    BadSubstitution = "KF223", Error, "a variable substitution is malformed";
    /// A variable that is neither an `ARG`, an `ENV` nor a platform variable.
    UndefinedVariable = "KF224", Warning, "the variable is not defined by `ARG`, `ENV` or the platform; it expands to an empty string";
    /// `COPY --from` naming no earlier stage.
    UnknownStage = "KF225", Error, "`COPY --from` names no earlier stage";
    /// Two stages with the same name.
    DuplicateStageName = "KF226", Error, "two stages have the same name";
    /// `KUBEVERSION` that is not a version range.
    InvalidKubeVersion = "KF227", Warning, "`KUBEVERSION` should be a semantic-version range such as `>=1.22 <1.26` or `1.22 - 1.24`";
    /// Words that look like an inline comment (Kubefiles have none).
    InlineComment = "KF228", Warning, "`#` after arguments is not a comment in a Kubefile; the words are taken as arguments (an error in `COPY`/`ADD`, where they would become sources and the destination)";
    /// `CMDS`/`CMD` in shell form, which is one command, not several.
    ShellFormCommands = "KF229", Warning, "a shell-form command list is one command; write a JSON array for several";
    /// An empty instruction argument where a value is required.
    EmptyValue = "KF230", Error, "the value is empty";
    /// A label key in the namespace reserved by sealer.
    ReservedLabel = "KF231", Warning, "the label key is in the `sealer.io` namespace that the toolchain manages";
    /// `FROM` with words other than an image and `AS name`.
    InvalidFrom = "KF232", Error, "`FROM` takes an image (or an earlier stage) and an optional `AS name`; the image must be a valid reference once variables are expanded";
    /// A stage name that Dockerfile tools would reject.
    InvalidStageName = "KF233", Error, "a stage name must start with a letter and contain only letters, digits, `-`, `_` or `.` (it is lower-cased)";
    /// `COPY`/`ADD` with several sources into a destination that is not a directory.
    CopyDestinationNotDirectory = "KF234", Error, "with several sources the destination must be a directory ending in `/`";
    /// `${VAR:?message}` with the variable unset (or empty).
    RequiredVariableUnset = "KF235", Error, "a `${VAR:?message}` substitution names a variable that is not set";
    /// `ENV`, `LABEL`, `ARG` or `APPENV` naming the same key twice in one instruction.
    DuplicateKey = "KF236", Warning, "the same key is given twice in one instruction; the last value wins";
    /// `COPY` with an `http(s)://` source.
    CopyRemoteSource = "KF237", Error, "`COPY` cannot fetch URLs; use `ADD` or `APP`";
    /// A path, image reference, owner or command holding a NUL byte (written or expanded).
    NulByte = "KF238", Error, "a value that becomes a path, an image reference, an owner or a command contains a NUL byte, which none of them can hold";
    /// An app-installer image writing a directory of the cluster runtime.
    AppImageClusterFiles = "KF239", Warning, "an app-installer image writes `bin/`, `cri/`, `etc/`, `images/`, `plugins/`, `scripts/` or `statics/`, which running it copies over the cluster's own files on every master";
    /// An app-installer image without `LAUNCH`, `CMDS` or `CMD`.
    AppImageLaunchesNothing = "KF240", Warning, "an app-installer image has no `LAUNCH`, `CMDS` or `CMD` of its own (a base image's are not inherited), so running it starts nothing";
    /// An app-installer image based on something other than `scratch` or an app-installer image.
    AppImageBase = "KF241", Error, "an app-installer image must start from `scratch` or an app-installer image, not a kube-installer, untyped or non-sealer image (reported by `chasi build` once the base is resolved)";
    /// A kube-installer image based on an app-installer image.
    ClusterImageFromAppImage = "KF242", Warning, "a kube-installer image based on an app-installer image gets no Kubernetes from it (reported by `chasi build` once the base is resolved)";

    // --- KF3xx: the build context ---
    /// A local source that does not exist in the context.
    SourceNotFound = "KF300", Error, "a local source does not exist in the build context";
    /// A source that leaves the context (`..`, an absolute path).
    SourceEscapesContext = "KF301", Error, "a source path leaves the build context";
    /// A source reached through a symlink that points outside the context.
    SymlinkEscapesContext = "KF302", Error, "a source is a symbolic link that points outside the build context";
    /// A source that `.kubefileignore` excludes.
    SourceIgnored = "KF303", Error, "a source is excluded by `.kubefileignore`";
    /// A `.kubefileignore` line that is not a valid pattern.
    InvalidIgnorePattern = "KF304", Error, "a `.kubefileignore` pattern is invalid";
    /// A glob source that matches nothing.
    GlobMatchesNothing = "KF305", Error, "a source pattern matches no file in the build context";
}

/// The documentation table of every code (the body of `docs/diagnostics.md`).
pub fn code_table_markdown() -> String {
    let mut out = String::from("| code | severity | meaning |\n|---|---|---|\n");
    for code in Code::ALL {
        out.push_str(&format!(
            "| `{}` | {} | {} |\n",
            code.as_str(),
            code.severity().as_str(),
            code.summary().replace('|', "\\|")
        ));
    }
    out
}

/// One problem found in a Kubefile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// The stable code.
    pub code: Code,
    /// What is wrong, naming the offending text.
    pub message: String,
    /// Where it is.
    pub span: Span,
    /// How to fix it, when there is something useful to say.
    pub help: Option<String>,
}

impl Diagnostic {
    /// A diagnostic with the code's severity.
    pub fn new(code: Code, span: Span, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: code.severity(),
            code,
            message: message.into(),
            span,
            help: None,
        }
    }

    /// Adds a help line.
    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    /// Whether this is an error.
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn codes_are_unique_and_well_formed() {
        let mut seen = HashSet::new();
        for code in Code::ALL {
            let s = code.as_str();
            assert!(seen.insert(s), "duplicate code {s}");
            assert!(s.len() == 5 && s.starts_with("KF"), "bad code {s}");
            assert!(!code.summary().is_empty());
        }
    }
}
