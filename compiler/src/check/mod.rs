//! Semantic checks: from a syntax tree to a typed, expanded [`Program`].
//!
//! The checker implements sealer v0.11's Kubefile rules (see `shared/notes/sealer.md` §3 and
//! §8) with sealer's traps fixed (§11), plus the Dockerfile features users expect: multi-stage
//! builds, `COPY --from`, `--chown`/`--chmod`, `ARG` before `FROM` and `${VAR}` substitution.
//! It reports every problem it finds as a [`Diagnostic`] and never stops early.
//!
//! The tree is lowered once per target platform, because variables such as `${ARCH}` and
//! `$TARGETARCH` resolve per platform; diagnostics of all platforms are merged and
//! de-duplicated. With a build context, local sources are resolved in it (see [`context`]);
//! without one, every context check is skipped, and an application's type is guessed from
//! its source names only (so `APPCMDS` is demanded only when the names prove the type mixed).
//!
//! Modules: [`words`] (quotes, escapes, `$VAR`), `instructions` (one function per
//! instruction), `apps` (APP/CNI/CSI, APPCMDS, APPENV, LAUNCH and type detection),
//! [`imagetype`] (`--type kube-installer|app-installer`: what an app image may hold and start from),
//! [`context`] and [`ignore`] (the build context), `kubeversion` (the range grammar),
//! `reference` (the shape of a `FROM` image after expansion), [`program`] (the output model).
//!
//! **Which instruction expands what** (as in a Dockerfile): `FROM` (image and `--platform`)
//! sees only the `ARG`s declared before the first `FROM` plus the platform variables;
//! `COPY`/`ADD` (sources, destination, `--from`, `--chown`, `--chmod`), `ENV`, `LABEL`, `ARG`
//! defaults, `APP`/`CNI`/`CSI` sources and `APPENV` values see the stage's `ARG`s (redeclared
//! in the stage, `--build-arg` overriding the default, a global default inherited by
//! `ARG NAME`), its `ENV`s and the platform variables. `RUN`, `CMD`, `CMDS`, `APPCMDS`,
//! `LAUNCH`, `MAINTAINER` and `KUBEVERSION` are kept as written (a shell or a person reads
//! them later). The platform variables `ARCH` (sealer), `TARGETPLATFORM`, `TARGETOS`,
//! `TARGETARCH`, `TARGETVARIANT`, `BUILDPLATFORM`, `BUILDOS`, `BUILDARCH` and `BUILDVARIANT`
//! are always defined, and declaring one keeps the platform value: a default (`ARG ARCH=amd64`)
//! or `--build-arg` never overrides it, as in sealer and BuildKit. An undefined
//! variable is warning KF224 and expands to nothing; `${X:-d}` and `${X:+a}` never warn.
//!
//! **Decisions that differ from sealer** (`shared/notes/sealer.md` §11) **or Docker**:
//! - keywords are case-insensitive everywhere; `ENV a="x y"` is `x y`; every `COPY` source and
//!   flag is kept; an unknown flag is KF203, never dropped;
//! - `CMDS`/`CMD` JSON arrays are lists of commands, the shell form is one command (KF229 warns
//!   for `CMDS`, which sealer split at spaces); `APPCMDS` is a JSON argv, anything else KF216;
//! - app types are detected in the context (sealer used its working directory), including a
//!   chart nested below a source directory; without a context, sources that all have an
//!   extension are typed by it and a source without one leaves the type unknown (then
//!   `APPCMDS` is not demanded);
//! - apps, `APPENV`, `APPCMDS` and `LAUNCH` names in a stage based on an *image* cannot be
//!   checked offline: they are recorded as overrides for the builder to merge;
//! - `COPY --from=x` is an earlier stage by name or index; anything with `/`, `:` or `@` is an
//!   image; a bare unknown word is KF225 (typo protection);
//! - `--chmod` is octal only; `--chown` is `user[:group]` with names or ids;
//! - `.kubefileignore` patterns that do not compile are KF304 at 1:1 of the Kubefile, with the
//!   ignore file's line in the message;
//! - a `RUN`'s recorded environment is the `ARG`s in scope; `ENV` values come from the image
//!   configuration the previous steps built.
//!
//! **Invariants**: checking never panics and never stops at the first problem, and every
//! diagnostic points at the word or flag at fault where there is one; the checker reads the
//! file system only through [`context`]; checking is linear in the Kubefile's size (indexed
//! app and env lookups).

mod apps;
pub mod context;
pub mod ignore;
pub mod imagetype;
mod instructions;
mod kubeversion;
pub mod program;
mod reference;
pub(crate) mod words;

pub use context::{Context, ContextError};
pub use program::*;

use crate::diagnostics::{Code, Diagnostic, Severity};
use crate::source::{SourceFile, Span};
use crate::syntax::ast::{Arguments, Flag, Instruction, Keyword, Kubefile, Word};
use std::collections::{BTreeMap, HashMap};
use words::{Expander, Form, Origin, Sink, Vars};

/// What the checker needs besides the tree.
#[derive(Debug, Clone, Copy)]
pub struct CheckOptions<'a> {
    /// The build context, when checking against one.
    pub context: Option<&'a Context>,
    /// `--build-arg` values.
    pub build_args: &'a BTreeMap<String, String>,
    /// Target platforms (at least one).
    pub platforms: &'a [Platform],
    /// `--type`: what the image installs (the app-installer rules are in [`imagetype`]).
    pub image_type: ImageType,
}

/// Checks a parsed Kubefile and lowers it for every target platform.
///
/// The program is returned even when there are errors (steps that could not be understood
/// are left out); callers must not build it unless no diagnostic is an error. Diagnostics
/// are sorted by position. Only I/O failures in the build context are errors.
pub fn check(
    source: &SourceFile,
    kubefile: &Kubefile,
    options: &CheckOptions<'_>,
) -> Result<(Program, Vec<Diagnostic>), ContextError> {
    let mut diagnostics = Vec::new();
    let mut targets = Vec::new();
    let host = [Platform::host()];
    let platforms = if options.platforms.is_empty() {
        &host[..]
    } else {
        options.platforms
    };
    for platform in platforms {
        let mut checker = Checker::new(source, kubefile, options, platform.clone());
        checker.run()?;
        diagnostics.append(&mut checker.diagnostics);
        targets.push(checker.finish());
    }
    sort_diagnostics(&mut diagnostics);
    Ok((Program { targets }, diagnostics))
}

/// Sorts diagnostics by position (then code and message) and removes exact duplicates.
pub fn sort_diagnostics(diagnostics: &mut Vec<Diagnostic>) {
    diagnostics.sort_by(|a, b| {
        (a.span.start, a.span.end, a.code, &a.message).cmp(&(
            b.span.start,
            b.span.end,
            b.code,
            &b.message,
        ))
    });
    diagnostics.dedup();
}

/// The platform variables every stage sees, for one target platform.
pub const PLATFORM_VARIABLES: &[&str] = &[
    "ARCH",
    "TARGETPLATFORM",
    "TARGETOS",
    "TARGETARCH",
    "TARGETVARIANT",
    "BUILDPLATFORM",
    "BUILDOS",
    "BUILDARCH",
    "BUILDVARIANT",
];

fn platform_vars(target: &Platform) -> Vars {
    let build = Platform::host();
    let mut vars = Vars::default();
    let values = [
        ("ARCH", target.architecture.clone()),
        ("TARGETPLATFORM", target.to_string()),
        ("TARGETOS", target.os.clone()),
        ("TARGETARCH", target.architecture.clone()),
        ("TARGETVARIANT", target.variant.clone().unwrap_or_default()),
        ("BUILDPLATFORM", build.to_string()),
        ("BUILDOS", build.os.clone()),
        ("BUILDARCH", build.architecture.clone()),
        ("BUILDVARIANT", build.variant.clone().unwrap_or_default()),
    ];
    for (name, value) in values {
        vars.set(name, Some(value), Origin::Platform);
    }
    vars
}

/// An application known in a stage.
#[derive(Debug, Clone)]
pub(crate) struct AppState {
    app: App,
    env: BTreeMap<String, String>,
    cmds: Vec<String>,
    /// The span of the name in the declaring instruction (for KF215).
    name_span: Span,
    has_cmds: bool,
}

/// A stage being lowered.
#[derive(Debug)]
pub(crate) struct StageState {
    stage: Stage,
    vars: Vars,
    /// Apps in declaration order.
    apps: Vec<AppState>,
    /// Position of each app in `apps`, by name.
    app_index: HashMap<String, usize>,
    /// The base is an image whose applications the checker cannot see.
    unknown_base_apps: bool,
    env: Vec<(String, String)>,
    /// Position of each variable in `env`, by name.
    env_index: HashMap<String, usize>,
    labels: BTreeMap<String, String>,
    maintainer: Option<String>,
    launch: Launch,
    /// Where a `COPY`/`ADD` of this stage writes a top-level directory of the cluster runtime
    /// (recorded for app-installer builds only; see [`imagetype`]).
    cluster_writes: Vec<(Span, String)>,
}

impl StageState {
    fn new(stage: Stage, vars: Vars) -> Self {
        StageState {
            stage,
            vars,
            apps: Vec::new(),
            app_index: HashMap::new(),
            unknown_base_apps: false,
            env: Vec::new(),
            env_index: HashMap::new(),
            labels: BTreeMap::new(),
            maintainer: None,
            launch: Launch::default(),
            cluster_writes: Vec::new(),
        }
    }

    fn app_mut(&mut self, name: &str) -> Option<&mut AppState> {
        let index = *self.app_index.get(name)?;
        self.apps.get_mut(index)
    }

    /// Declares an app, replacing an earlier one of the same name in place (sealer: the
    /// last declaration wins) but keeping its `APPENV`/`APPCMDS`.
    fn put_app(&mut self, app: App, name_span: Span) {
        match self.app_index.get(&app.name) {
            Some(&i) => {
                self.apps[i].app = app;
                self.apps[i].name_span = name_span;
            }
            None => {
                self.app_index.insert(app.name.clone(), self.apps.len());
                self.apps.push(AppState {
                    app,
                    env: BTreeMap::new(),
                    cmds: Vec::new(),
                    name_span,
                    has_cmds: false,
                });
            }
        }
    }

    /// Sets an `ENV` variable (in place when it exists, to keep the order).
    fn set_env(&mut self, key: &str, value: &str) {
        self.vars.set(key, Some(value.to_string()), Origin::Env);
        match self.env_index.get(key) {
            Some(&i) => self.env[i].1 = value.to_string(),
            None => {
                self.env_index.insert(key.to_string(), self.env.len());
                self.env.push((key.to_string(), value.to_string()));
            }
        }
    }
}

pub(crate) struct Checker<'a> {
    src: &'a SourceFile,
    kubefile: &'a Kubefile,
    options: &'a CheckOptions<'a>,
    platform: Platform,
    diagnostics: Vec<Diagnostic>,
    /// `ARG`s before the first `FROM`, plus the platform variables.
    global: Vars,
    stages: Vec<StageState>,
    /// Stage names (lower-cased) of every `FROM … AS name` in the file, with their index.
    stage_names: HashMap<String, usize>,
    seen_launch: bool,
    seen_cmds: bool,
    has_cmd: bool,
    has_launch: bool,
    last_instruction: usize,
}

impl<'a> Checker<'a> {
    fn new(
        src: &'a SourceFile,
        kubefile: &'a Kubefile,
        options: &'a CheckOptions<'a>,
        platform: Platform,
    ) -> Self {
        let global = platform_vars(&platform);
        Checker {
            src,
            kubefile,
            options,
            platform,
            diagnostics: Vec::new(),
            global,
            stages: Vec::new(),
            stage_names: HashMap::new(),
            seen_launch: false,
            seen_cmds: false,
            has_cmd: false,
            has_launch: false,
            last_instruction: kubefile.instructions.len().saturating_sub(1),
        }
    }

    fn run(&mut self) -> Result<(), ContextError> {
        let instructions = &self.kubefile.instructions;
        let first_from = instructions
            .iter()
            .position(|i| i.keyword == Some(Keyword::From));
        self.has_cmd = instructions.iter().any(|i| i.keyword == Some(Keyword::Cmd));
        self.has_launch = instructions
            .iter()
            .any(|i| i.keyword == Some(Keyword::Launch));
        if first_from.is_none() {
            let span = instructions
                .first()
                .map(|i| i.keyword_span)
                .unwrap_or_default();
            self.diagnostics.push(
                Diagnostic::new(
                    Code::MissingFrom,
                    span,
                    "the Kubefile has no `FROM` instruction",
                )
                .with_help("start the Kubefile with `FROM scratch` or `FROM <base image>`"),
            );
        }
        for (index, ins) in instructions.iter().enumerate() {
            let Some(keyword) = ins.keyword else { continue };
            self.lint_inline_comment(ins, keyword);
            let before_from = first_from.is_some_and(|f| index < f);
            if before_from && keyword != Keyword::Arg {
                self.diagnostics.push(
                    Diagnostic::new(
                        Code::InstructionBeforeFrom,
                        ins.keyword_span,
                        format!("`{}` comes before the first `FROM`", keyword.as_str()),
                    )
                    .with_help("only `ARG` (for use in `FROM`) may precede the first `FROM`"),
                );
                continue;
            }
            if keyword != Keyword::From && keyword != Keyword::Arg && self.stages.is_empty() {
                // No FROM at all (already reported): check the rest as if in `FROM scratch`.
                self.push_implicit_stage(ins);
            }
            self.instruction(index, ins, keyword)?;
        }
        for stage in 0..self.stages.len() {
            self.check_app_types(stage);
        }
        self.check_image_type();
        Ok(())
    }

    fn push_implicit_stage(&mut self, ins: &Instruction) {
        let line = self.line(ins.span);
        self.stages.push(StageState::new(
            Stage {
                index: 0,
                name: None,
                base: Base::Scratch,
                platform: self.platform.clone(),
                steps: Vec::new(),
                build_args: BTreeMap::new(),
                line,
                span: Span::new(ins.span.start, ins.span.start),
            },
            platform_vars(&self.platform),
        ));
    }

    fn instruction(
        &mut self,
        index: usize,
        ins: &Instruction,
        keyword: Keyword,
    ) -> Result<(), ContextError> {
        // Instructions without arguments were reported by the parser (KF104).
        if ins.args.words().is_empty() && !ins.args.is_json() {
            return Ok(());
        }
        match keyword {
            Keyword::From => self.from(ins),
            Keyword::Arg => self.arg(ins),
            Keyword::Env => self.env(ins),
            Keyword::Label => self.label(ins),
            Keyword::Maintainer => self.maintainer(ins),
            Keyword::KubeVersion => self.kubeversion(ins),
            Keyword::Copy | Keyword::Add => self.copy(ins, keyword)?,
            Keyword::Run => self.run_step(ins),
            Keyword::Cmd => self.cmd(ins),
            Keyword::Cmds => self.cmds(index, ins),
            Keyword::App | Keyword::Cni | Keyword::Csi => self.app(ins, keyword)?,
            Keyword::AppCmds => self.appcmds(ins),
            Keyword::AppEnv => self.appenv(ins),
            Keyword::Launch => self.launch(index, ins),
        }
        Ok(())
    }

    fn finish(self) -> Target {
        let Checker {
            platform,
            stages,
            options,
            ..
        } = self;
        let mut image = Image::default();
        image.extension.image_type = options.image_type;
        if let Some(last) = stages.last() {
            image.env = last.env.clone();
            image.labels = last.labels.clone();
            image.maintainer = last.maintainer.clone();
            image.extension.env = last.env.iter().cloned().collect();
            image.extension.launch = last.launch.clone();
            image.extension.applications = last
                .apps
                .iter()
                .map(|a| Application {
                    name: a.app.name.clone(),
                    app_type: a.app.app_type.map(AppType::as_sealer).unwrap_or("").into(),
                    files: a.app.files.clone(),
                    version: "v1".into(),
                    env: a.env.clone(),
                    cmds: a.cmds.clone(),
                })
                .collect();
        }
        Target {
            platform,
            stages: stages.into_iter().map(|s| s.stage).collect(),
            image,
        }
    }

    // ---- shared helpers -------------------------------------------------------------------

    fn line(&self, span: Span) -> usize {
        self.src.line_col(span.start).line
    }

    fn push(&mut self, diagnostic: Diagnostic) {
        self.diagnostics.push(diagnostic);
    }

    /// The current stage (there is one for every instruction after the first FROM, or an
    /// implicit one when the file has no FROM).
    fn stage(&mut self) -> &mut StageState {
        self.stages
            .last_mut()
            .expect("a stage exists for every instruction after FROM")
    }

    /// Processes a word with the current stage's variables (`expand: false` = quotes only).
    fn word(&mut self, word: &Word, form: Form, expand: bool, sink: &mut Sink) -> String {
        let escape = self.kubefile.escape;
        let vars = match self.stages.last() {
            Some(stage) => &stage.vars,
            None => &self.global,
        };
        Expander {
            vars,
            escape,
            expand,
            global: self.stages.is_empty(),
        }
        .word(&word.text, word.span, form, sink)
    }

    /// Processes a word against the global scope (FROM lines).
    fn global_word(&self, word: &Word, form: Form, sink: &mut Sink) -> String {
        Expander {
            vars: &self.global,
            escape: self.kubefile.escape,
            expand: true,
            global: true,
        }
        .word(&word.text, word.span, form, sink)
    }

    /// Takes a sink's diagnostics and returns its used build args.
    fn drain(&mut self, sink: Sink) -> BTreeMap<String, Option<String>> {
        self.diagnostics.extend(sink.diagnostics);
        sink.used_args
    }

    fn form(ins: &Instruction) -> Form {
        if ins.args.is_json() {
            Form::Decoded
        } else {
            Form::Shell
        }
    }

    /// Validates flags against the instruction's accepted names: unknown, repeated and
    /// value-less flags are reported; the accepted ones are returned by name.
    fn flags<'i>(
        &mut self,
        ins: &'i Instruction,
        keyword: Keyword,
        accepted: &[&'static str],
    ) -> HashMap<&'static str, &'i Flag> {
        let mut out: HashMap<&'static str, &'i Flag> = HashMap::new();
        for flag in &ins.flags {
            let name = flag.name.text.as_str();
            let Some(&known) = accepted.iter().find(|a| **a == name) else {
                let help = if accepted.is_empty() {
                    format!("`{}` accepts no flags", keyword.as_str())
                } else {
                    format!(
                        "`{}` accepts {}",
                        keyword.as_str(),
                        accepted
                            .iter()
                            .map(|a| format!("`--{a}`"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                };
                self.push(
                    Diagnostic::new(
                        Code::UnknownFlag,
                        flag.span,
                        format!("`{}` does not accept `--{name}`", keyword.as_str()),
                    )
                    .with_help(help),
                );
                continue;
            };
            if flag.value.as_ref().is_none_or(|v| v.text.is_empty()) {
                self.push(Diagnostic::new(
                    Code::InvalidFlagValue,
                    flag.span,
                    format!("`--{name}` needs a value: `--{name}=...`"),
                ));
                continue;
            }
            if out.insert(known, flag).is_some() {
                self.push(Diagnostic::new(
                    Code::InvalidFlagValue,
                    flag.span,
                    format!("`--{name}` is given more than once"),
                ));
            }
        }
        out
    }

    /// KF228: `# …` after arguments is not a comment (except where a shell reads the text).
    fn lint_inline_comment(&mut self, ins: &Instruction, keyword: Keyword) {
        if matches!(keyword, Keyword::Run | Keyword::Cmd | Keyword::Cmds) {
            return;
        }
        let Arguments::Shell { words, span, .. } = &ins.args else {
            return;
        };
        if let Some(word) = words
            .iter()
            .skip(1)
            .find(|w| words::is_comment_word(&w.text))
        {
            let mut d = Diagnostic::new(
                Code::InlineComment,
                Span::new(word.span.start, span.end),
                format!(
                    "`{}` is taken as arguments of `{}`, not as a comment",
                    self.src.slice(Span::new(word.span.start, span.end)),
                    keyword.as_str()
                ),
            )
            .with_help("Kubefile comments must be on a line of their own, starting with `#`");
            // In `COPY`/`ADD` the comment's last word would become the destination and the
            // real destination a source: that is the one problem, reported as the error.
            if matches!(keyword, Keyword::Copy | Keyword::Add) {
                d.severity = Severity::Error;
            }
            self.push(d);
        }
    }

    /// The index of the first inline-comment word (for skipping context checks of it).
    fn comment_start(ins: &Instruction) -> usize {
        match &ins.args {
            Arguments::Shell { words, .. } => words
                .iter()
                .enumerate()
                .skip(1)
                .find(|(_, w)| words::is_comment_word(&w.text))
                .map(|(i, _)| i)
                .unwrap_or(usize::MAX),
            Arguments::Json { .. } => usize::MAX,
        }
    }

    /// The raw text of a shell-form instruction after its first word, and its span.
    fn rest_after_first(ins: &Instruction) -> Option<(String, Span)> {
        let Arguments::Shell { text, words, span } = &ins.args else {
            return None;
        };
        let first = words.first()?;
        let second = words.get(1)?;
        let rest = text
            .get(first.text.len()..)
            .unwrap_or_default()
            .trim_start()
            .to_string();
        Some((rest, Span::new(second.span.start, span.end)))
    }
}
