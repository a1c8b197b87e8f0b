//! One checking-and-lowering function per instruction (the application instructions are in
//! `apps`). Each function validates its flags and arguments, reports problems at the word
//! or flag at fault, processes words (which instructions expand variables follows the
//! Dockerfile: `FROM` with the global `ARG`s, `COPY`/`ADD`/`ENV`/`LABEL`/`ARG` defaults with
//! the stage's variables; `RUN`, `CMD`, `CMDS`, `MAINTAINER` and `KUBEVERSION` are kept as
//! written because a shell or a person reads them later) and appends a [`Step`].

use super::context::Problem;
use super::words::{unquoted_equals, Form, Origin, Sink};
use super::{
    kubeversion, parse_platform, Base, Checker, Chown, Copy, CopyFrom, Op, Run, Source, StageState,
    Step, PLATFORM_VARIABLES,
};
use crate::check::program::{Command, Stage, PRESERVE_OWNERS};
use crate::check::ContextError;
use crate::diagnostics::{Code, Diagnostic};
use crate::source::Span;
use crate::syntax::ast::{Arguments, Instruction, Keyword, Word};
use std::collections::{BTreeMap, HashSet};

/// A key, its value and the span of the key.
pub(super) type KeyValue = (String, String, Span);

/// Part `start..end` of a word, with an exact span when the word maps onto the source.
pub(super) fn sub_word(word: &Word, start: usize, end: usize) -> Word {
    let exact = word.span.end.saturating_sub(word.span.start) == word.text.len();
    Word {
        text: word.text[start..end].to_string(),
        span: if exact {
            Span::new(word.span.start + start, word.span.start + end)
        } else {
            word.span
        },
    }
}

fn valid_variable_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn valid_stage_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

fn valid_owner(part: &str) -> bool {
    if part.chars().all(|c| c.is_ascii_digit()) {
        return !part.is_empty() && part.parse::<u32>().is_ok();
    }
    let body = part.strip_suffix('$').unwrap_or(part);
    let mut chars = body.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

/// Labels this toolchain sets itself; a `LABEL` writing them is probably a mistake.
fn reserved_label(key: &str) -> Option<&'static str> {
    if key.starts_with("cluster.alpha.sealer.io/kube-cni-") {
        Some("it is set by `CNI <name> ...`")
    } else if key.starts_with("cluster.alpha.sealer.io/kube-csi-") {
        Some("it is set by `CSI <name> ...`")
    } else if key == "io.sealer.version" || key.starts_with("sealer.image.") {
        Some("it is set by the builder")
    } else {
        None
    }
}

impl Checker<'_> {
    // ---- FROM -----------------------------------------------------------------------------

    pub(super) fn from(&mut self, ins: &Instruction) {
        let flags = self.flags(ins, Keyword::From, &["platform"]);
        let words = ins.args.words();
        let form = Self::form(ins);
        let mut sink = Sink::default();
        let mut platform = self.platform.clone();
        if let Some(value) = flags.get("platform").and_then(|f| f.value.as_ref()) {
            let text = self.global_word(value, Form::Decoded, &mut sink);
            match parse_platform(&text) {
                Ok(p) => platform = p,
                Err(why) => self.push(Diagnostic::new(Code::InvalidFlagValue, value.span, why)),
            }
        }
        let mut name_word = None;
        match words.len() {
            0 => {}
            1 => {}
            3 if words[1].text.eq_ignore_ascii_case("as") => name_word = Some(&words[2]),
            _ => {
                let span = Span::new(words[1].span.start, words[words.len() - 1].span.end);
                self.push(
                    Diagnostic::new(
                        Code::InvalidFrom,
                        span,
                        format!(
                            "unexpected `{}` after the image in `FROM`",
                            self.src.slice(span)
                        ),
                    )
                    .with_help("write `FROM <image>` or `FROM <image> AS <name>`"),
                );
            }
        }
        let base = match words.first() {
            None => {
                self.push(Diagnostic::new(
                    Code::FromMissingImage,
                    ins.args.span(),
                    "`FROM` needs an image name or `scratch`",
                ));
                Base::Scratch
            }
            Some(image_word) => {
                let image = self.global_word(image_word, form, &mut sink);
                if image.trim().is_empty() {
                    self.push(
                        Diagnostic::new(
                            Code::FromMissingImage,
                            image_word.span,
                            format!("the image `{}` expands to an empty string", image_word.text),
                        )
                        .with_help("give the variable a default: `ARG NAME=scratch`"),
                    );
                    Base::Scratch
                } else if image == "scratch" || !self.no_nul(&image, image_word, "the image") {
                    Base::Scratch
                } else if let Some(&index) = self.stage_names.get(&image.to_ascii_lowercase()) {
                    Base::Stage { index }
                } else {
                    if let Some(why) = super::reference::reference_problem(&image) {
                        let shown = if image == image_word.text {
                            format!("`{image}`")
                        } else {
                            format!("`{image}` (from `{}`)", image_word.text)
                        };
                        let mut d = Diagnostic::new(
                            Code::InvalidFrom,
                            image_word.span,
                            format!("the image {shown} is not a valid reference: {why}"),
                        );
                        if image != image_word.text {
                            d = d.with_help("check the variables it uses: `FROM` sees only the `ARG`s declared before the first `FROM` (give them a default)");
                        }
                        self.push(d);
                    }
                    Base::Image { reference: image }
                }
            }
        };
        let build_args = self.drain(sink);
        let index = self.stages.len();
        let mut name = None;
        if let Some(word) = name_word {
            let mut sink = Sink::default();
            let text = self.word_quotes_only(word, &mut sink);
            self.drain(sink);
            if !valid_stage_name(&text) {
                self.push(Diagnostic::new(
                    Code::InvalidStageName,
                    word.span,
                    format!("`{text}` is not a valid stage name"),
                ));
            } else {
                let lower = text.to_ascii_lowercase();
                if self.stage_names.contains_key(&lower) {
                    self.push(Diagnostic::new(
                        Code::DuplicateStageName,
                        word.span,
                        format!("a stage named `{lower}` is already defined"),
                    ));
                } else {
                    self.stage_names.insert(lower.clone(), index);
                }
                name = Some(lower);
            }
        }
        let line = self.line(ins.span);
        let mut state = StageState::new(
            Stage {
                index,
                name,
                base: base.clone(),
                platform,
                steps: Vec::new(),
                build_args,
                line,
                span: ins.span,
            },
            super::platform_vars(&self.platform),
        );
        state.unknown_base_apps = matches!(base, Base::Image { .. });
        if let Base::Stage { index } = base {
            let parent = &self.stages[index];
            for (k, v) in &parent.env {
                state.set_env(k, v);
            }
            state.labels = parent.labels.clone();
            state.maintainer = parent.maintainer.clone();
            state.apps = parent.apps.clone();
            state.app_index = parent.app_index.clone();
            state.unknown_base_apps = parent.unknown_base_apps;
        }
        self.stages.push(state);
    }

    /// Quote removal without variable expansion.
    pub(super) fn word_quotes_only(&mut self, word: &Word, sink: &mut Sink) -> String {
        self.word(word, Form::Shell, false, sink)
    }

    fn push_step(
        &mut self,
        ins: &Instruction,
        op: Op,
        build_args: BTreeMap<String, Option<String>>,
    ) {
        let line = self.line(ins.span);
        self.stage().stage.steps.push(Step {
            op,
            build_args,
            line,
            span: ins.span,
        });
    }

    // ---- ARG ------------------------------------------------------------------------------

    pub(super) fn arg(&mut self, ins: &Instruction) {
        self.flags(ins, Keyword::Arg, &[]);
        if ins.args.is_json() {
            self.push(Diagnostic::new(
                Code::InvalidArg,
                ins.args.span(),
                "`ARG` takes `name` or `name=default`, not a JSON array",
            ));
            return;
        }
        let in_stage = !self.stages.is_empty();
        let escape = self.kubefile.escape;
        let mut seen = HashSet::new();
        for word in ins.args.words() {
            let (name_word, default_word) = match unquoted_equals(&word.text, escape) {
                Some(i) => (
                    sub_word(word, 0, i),
                    Some(sub_word(word, i + 1, word.text.len())),
                ),
                None => (word.clone(), None),
            };
            let mut sink = Sink::default();
            let name = self.word_quotes_only(&name_word, &mut sink);
            if !valid_variable_name(&name) {
                self.drain(sink);
                self.push(
                    Diagnostic::new(
                        Code::InvalidArg,
                        name_word.span,
                        format!("`{name}` is not a valid `ARG` name"),
                    )
                    .with_help("a name is letters, digits and `_`, not starting with a digit"),
                );
                continue;
            }
            if !seen.insert(name.clone()) {
                self.push(Diagnostic::new(
                    Code::DuplicateKey,
                    name_word.span,
                    format!("`{name}` is declared twice in this `ARG`"),
                ));
            }
            let default = default_word.as_ref().map(|d| {
                if in_stage {
                    self.word(d, Form::Shell, true, &mut sink)
                } else {
                    self.global_word(d, Form::Shell, &mut sink)
                }
            });
            self.drain(sink);
            let given = self.options.build_args.get(&name).cloned();
            let platform_var = PLATFORM_VARIABLES.contains(&name.as_str());
            let value = given.or(default).or_else(|| {
                in_stage
                    .then(|| self.global.get(&name).and_then(|v| v.value.clone()))
                    .flatten()
            });
            // The target platform decides these, never a default (sealer and BuildKit agree):
            // `ARG ARCH=amd64` built for linux/arm64 is arm64.
            let keep_platform = platform_var;
            if in_stage {
                let raw_default = default_word.map(|d| d.text);
                if !keep_platform {
                    self.stage().vars.set(&name, value, Origin::Arg);
                }
                self.push_step(
                    ins,
                    Op::Arg {
                        name,
                        default: raw_default,
                    },
                    BTreeMap::new(),
                );
            } else if !keep_platform {
                self.global.set(&name, value, Origin::Arg);
            }
        }
    }

    // ---- ENV / LABEL ----------------------------------------------------------------------

    /// `k=v ...` items (or, when `old_form` is given, the `key value with spaces` form).
    pub(super) fn key_values(
        &mut self,
        words: &[Word],
        old_form: Option<(String, Span)>,
        code: Code,
        keyword: &str,
        sink: &mut Sink,
    ) -> Vec<KeyValue> {
        let escape = self.kubefile.escape;
        let mut out = Vec::new();
        let Some(first) = words.first() else {
            return out;
        };
        if unquoted_equals(&first.text, escape).is_none() && keyword != "APPENV" {
            // The old `KEY value` form (the value is the rest of the line).
            let key = self.word(first, Form::Shell, true, sink);
            match old_form {
                Some((rest, span)) => {
                    let value = self.word(&Word { text: rest, span }, Form::Shell, true, sink);
                    out.push((key, value, first.span));
                }
                None => self.push(
                    Diagnostic::new(
                        code,
                        first.span,
                        format!("`{keyword} {}` has no value", first.text),
                    )
                    .with_help(format!("write `{keyword} {}=value`", first.text)),
                ),
            }
            return out;
        }
        let mut seen = HashSet::new();
        for word in words {
            let Some(i) = unquoted_equals(&word.text, escape) else {
                self.push(
                    Diagnostic::new(
                        code,
                        word.span,
                        format!("`{}` is not of the form `key=value`", word.text),
                    )
                    .with_help(
                        "in the `key=value` form every item needs an `=`; quote values with spaces",
                    ),
                );
                continue;
            };
            let key_word = sub_word(word, 0, i);
            let value_word = sub_word(word, i + 1, word.text.len());
            let key = self.word(&key_word, Form::Shell, true, sink);
            let value = self.word(&value_word, Form::Shell, true, sink);
            if key.is_empty() {
                self.push(Diagnostic::new(
                    Code::EmptyValue,
                    key_word.span,
                    format!("the key of `{}` is empty", word.text),
                ));
                continue;
            }
            if !seen.insert(key.clone()) {
                self.push(Diagnostic::new(
                    Code::DuplicateKey,
                    key_word.span,
                    format!("`{key}` is given twice in this `{keyword}`; the last value wins"),
                ));
            }
            out.push((key, value, key_word.span));
        }
        out
    }

    pub(super) fn env(&mut self, ins: &Instruction) {
        self.flags(ins, Keyword::Env, &[]);
        if ins.args.is_json() {
            self.push(Diagnostic::new(
                Code::InvalidEnv,
                ins.args.span(),
                "`ENV` takes `key=value ...`, not a JSON array",
            ));
            return;
        }
        let mut sink = Sink::default();
        let rest = Self::rest_after_first(ins);
        let items = self.key_values(ins.args.words(), rest, Code::InvalidEnv, "ENV", &mut sink);
        let used = self.drain(sink);
        if items.is_empty() {
            return;
        }
        let stage = self.stage();
        for (key, value, _) in &items {
            stage.set_env(key, value);
        }
        let vars = items.into_iter().map(|(k, v, _)| (k, v)).collect();
        self.push_step(ins, Op::Env { vars }, used);
    }

    pub(super) fn label(&mut self, ins: &Instruction) {
        self.flags(ins, Keyword::Label, &[]);
        if ins.args.is_json() {
            self.push(Diagnostic::new(
                Code::InvalidLabel,
                ins.args.span(),
                "`LABEL` takes `key=value ...`, not a JSON array",
            ));
            return;
        }
        let mut sink = Sink::default();
        let rest = Self::rest_after_first(ins);
        let items = self.key_values(
            ins.args.words(),
            rest,
            Code::InvalidLabel,
            "LABEL",
            &mut sink,
        );
        let used = self.drain(sink);
        for (key, _, span) in &items {
            if let Some(why) = reserved_label(key) {
                self.push(Diagnostic::new(
                    Code::ReservedLabel,
                    *span,
                    format!("the label `{key}` is managed by the toolchain: {why}"),
                ));
            }
        }
        if items.is_empty() {
            return;
        }
        let labels: Vec<(String, String)> = items.into_iter().map(|(k, v, _)| (k, v)).collect();
        let stage = self.stage();
        for (k, v) in &labels {
            stage.labels.insert(k.clone(), v.clone());
        }
        self.push_step(ins, Op::Label { labels }, used);
    }

    /// The arguments as one string, as written (JSON items joined by spaces).
    fn whole_text(ins: &Instruction) -> String {
        match &ins.args {
            Arguments::Shell { text, .. } => text.clone(),
            Arguments::Json { items, .. } => items
                .iter()
                .map(|w| w.text.as_str())
                .collect::<Vec<_>>()
                .join(" "),
        }
    }

    pub(super) fn maintainer(&mut self, ins: &Instruction) {
        self.flags(ins, Keyword::Maintainer, &[]);
        let text = Self::whole_text(ins);
        self.stage().maintainer = Some(text.clone());
        self.push_step(ins, Op::Maintainer { text }, BTreeMap::new());
    }

    pub(super) fn kubeversion(&mut self, ins: &Instruction) {
        self.flags(ins, Keyword::KubeVersion, &[]);
        let text = Self::whole_text(ins);
        if let Err(why) = kubeversion::validate(&text) {
            self.push(
                Diagnostic::new(
                    Code::InvalidKubeVersion,
                    ins.args.span(),
                    format!("`{text}` is not a version range: {why}"),
                )
                .with_help("write a SemVer range such as `>=1.22 <1.26` or `1.22 - 1.24`"),
            );
        }
        let key = "app.alpha.sealer.io/supported-kube-version".to_string();
        self.stage().labels.insert(key.clone(), text.clone());
        self.push_step(
            ins,
            Op::Label {
                labels: vec![(key, text)],
            },
            BTreeMap::new(),
        );
    }

    /// Reports a NUL byte in `text` (the processed `word`), which can be neither a path, an
    /// image reference, an owner nor a program argument. Points at the byte itself when the
    /// word is written out in the source, else at the word. Returns whether `text` is clean.
    pub(super) fn no_nul(&mut self, text: &str, word: &Word, what: &str) -> bool {
        if !text.contains('\0') {
            return true;
        }
        let exact = word.span.end.saturating_sub(word.span.start) == word.text.len();
        let span = match word.text.find('\0') {
            Some(i) if exact => Span::new(word.span.start + i, word.span.start + i + 1),
            _ => word.span,
        };
        let shown = text.replace('\0', "\\0");
        self.push(
            Diagnostic::new(
                Code::NulByte,
                span,
                format!("{what} `{shown}` contains a NUL byte"),
            )
            .with_help("remove the NUL byte (or the variable that brings it in)"),
        );
        false
    }

    // ---- COPY / ADD -----------------------------------------------------------------------

    pub(super) fn copy(&mut self, ins: &Instruction, keyword: Keyword) -> Result<(), ContextError> {
        let is_add = keyword == Keyword::Add;
        let accepted: &[&'static str] = if is_add {
            &["chown", "chmod", "checksum"]
        } else {
            &["from", "chown", "chmod"]
        };
        let flags = self.flags(ins, keyword, accepted);
        let words = ins.args.words();
        let form = Self::form(ins);
        let name = keyword.as_str();
        if words.len() < 2 {
            self.push(
                Diagnostic::new(
                    Code::CopyMissingDestination,
                    ins.args.span(),
                    format!("`{name}` needs at least one source and a destination"),
                )
                .with_help(format!("write `{name} <source>... <destination>`")),
            );
            return Ok(());
        }
        let mut sink = Sink::default();
        let from = match flags.get("from").and_then(|f| f.value.as_ref()) {
            Some(value) => {
                let text = self.word(value, Form::Decoded, true, &mut sink);
                if self.no_nul(&text, value, "the `--from` value") {
                    self.copy_from(&text, value.span)
                } else {
                    None
                }
            }
            None => None,
        };
        let mut preserve_owners = false;
        let chown = match flags.get("chown").and_then(|f| f.value.as_ref()) {
            Some(value) => {
                let text = self.word(value, Form::Decoded, true, &mut sink);
                let (user, group) = match text.split_once(':') {
                    Some((u, g)) => (u.to_string(), Some(g.to_string())),
                    None => (text.clone(), None),
                };
                if !self.no_nul(&text, value, "the `--chown` value") {
                    None
                } else if user == PRESERVE_OWNERS {
                    match group {
                        None => preserve_owners = true,
                        Some(_) => self.push(
                            Diagnostic::new(
                                Code::InvalidFlagValue,
                                value.span,
                                format!("`--chown={text}`: `{PRESERVE_OWNERS}` keeps each file's own user and group and takes no group"),
                            )
                            .with_help(format!("write `--chown={PRESERVE_OWNERS}`, or `--chown=user:group` to set one owner")),
                        ),
                    }
                    None
                } else if valid_owner(&user) && group.as_deref().is_none_or(valid_owner) {
                    Some(Chown { user, group })
                } else {
                    self.push(
                        Diagnostic::new(
                            Code::InvalidFlagValue,
                            value.span,
                            format!("`--chown={text}` is not `user[:group]` or `{PRESERVE_OWNERS}`"),
                        )
                        .with_help(
                            "use names or numeric ids, e.g. `--chown=0:0` or `--chown=app:app`, or `--chown=preserve` to keep the files' own owners",
                        ),
                    );
                    None
                }
            }
            None => None,
        };
        let chmod = match flags.get("chmod").and_then(|f| f.value.as_ref()) {
            Some(value) => {
                let text = self.word(value, Form::Decoded, true, &mut sink);
                let valid =
                    (1..=4).contains(&text.len()) && text.chars().all(|c| ('0'..='7').contains(&c));
                if valid {
                    u32::from_str_radix(&text, 8).ok()
                } else {
                    self.push(
                        Diagnostic::new(
                            Code::InvalidFlagValue,
                            value.span,
                            format!("`--chmod={text}` is not an octal mode"),
                        )
                        .with_help("write an octal mode such as `--chmod=0755` or `--chmod=644`"),
                    );
                    None
                }
            }
            None => None,
        };
        let checksum = match flags.get("checksum").and_then(|f| f.value.as_ref()) {
            Some(value) => {
                let text = self.word(value, Form::Decoded, true, &mut sink);
                let valid = text.strip_prefix("sha256:").is_some_and(|hex| {
                    hex.len() == 64
                        && hex
                            .chars()
                            .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
                });
                if valid {
                    Some(text)
                } else {
                    self.push(Diagnostic::new(
                        Code::InvalidFlagValue,
                        value.span,
                        format!("`--checksum={text}` is not `sha256:<64 hex digits>`"),
                    ));
                    None
                }
            }
            None => None,
        };
        let comment_from = Self::comment_start(ins);
        let (dest_word, source_words) = words.split_last().expect("two words or more");
        let before = sink.diagnostics.len();
        let dest = self.word(dest_word, form, true, &mut sink);
        self.no_nul(&dest, dest_word, "the destination");
        if dest.is_empty() && sink.diagnostics.len() == before {
            self.push(Diagnostic::new(
                Code::EmptyValue,
                dest_word.span,
                "the destination expands to an empty string",
            ));
        }
        let mut sources = Vec::new();
        let mut count = 0usize;
        for (i, word) in source_words.iter().enumerate() {
            let before = sink.diagnostics.len();
            let text = self.word(word, form, true, &mut sink);
            if text.is_empty() {
                if sink.diagnostics.len() > before {
                    continue;
                }
                self.push(Diagnostic::new(
                    Code::EmptyValue,
                    word.span,
                    format!("the source `{}` expands to an empty string", word.text),
                ));
                continue;
            }
            if !self.no_nul(&text, word, "the source") {
                continue;
            }
            let remote = text.starts_with("http://") || text.starts_with("https://");
            if remote && from.is_none() {
                if !is_add {
                    self.push(
                        Diagnostic::new(
                            Code::CopyRemoteSource,
                            word.span,
                            format!("`COPY` cannot fetch `{text}`"),
                        )
                        .with_help("use `ADD` to download a file (or `APP name https://...`)"),
                    );
                    continue;
                }
                count += 1;
                sources.push(Source::Remote { url: text });
                continue;
            }
            let matches = if from.is_none() && i < comment_from {
                self.resolve_local(&text, word.span)?
            } else {
                Vec::new()
            };
            count += matches.len().max(1);
            sources.push(Source::Local {
                path: text,
                matches,
            });
        }
        if checksum.is_some() && sources.iter().any(|s| matches!(s, Source::Local { .. })) {
            if let Some(flag) = flags.get("checksum") {
                self.push(Diagnostic::new(
                    Code::InvalidFlagValue,
                    flag.span,
                    "`--checksum` applies to URL sources only",
                ));
            }
        }
        // With an inline comment (KF228, an error here) the "destination" is a comment word.
        if count > 1 && !dest.ends_with('/') && !dest.is_empty() && comment_from == usize::MAX {
            self.push(
                Diagnostic::new(
                    Code::CopyDestinationNotDirectory,
                    dest_word.span,
                    format!("`{name}` has {count} sources, so the destination `{dest}` must be a directory"),
                )
                .with_help(format!("write `{dest}/`")),
            );
        }
        self.note_cluster_writes(&dest, dest_word.span, &sources, from.is_some())?;
        let used = self.drain(sink);
        let copy = Copy {
            sources,
            dest,
            from,
            chown,
            preserve_owners,
            chmod,
            checksum,
        };
        let op = if is_add {
            Op::Add(copy)
        } else {
            Op::Copy(copy)
        };
        self.push_step(ins, op, used);
        Ok(())
    }

    fn copy_from(&mut self, text: &str, span: Span) -> Option<CopyFrom> {
        let current = self.stages.len().saturating_sub(1);
        if let Ok(index) = text.parse::<usize>() {
            if index < current {
                return Some(CopyFrom::Stage { index });
            }
            self.push(Diagnostic::new(
                Code::UnknownStage,
                span,
                format!("`--from={text}` names no earlier stage (this is stage {current})"),
            ));
            return None;
        }
        if let Some(&index) = self.stage_names.get(&text.to_ascii_lowercase()) {
            if index < current {
                return Some(CopyFrom::Stage { index });
            }
            self.push(Diagnostic::new(
                Code::UnknownStage,
                span,
                format!("`--from={text}` names the current stage"),
            ));
            return None;
        }
        if text.contains(['/', ':', '@']) {
            return Some(CopyFrom::Image {
                reference: text.to_string(),
            });
        }
        let mut known: Vec<&String> = self.stage_names.keys().collect();
        known.sort();
        let help = if known.is_empty() {
            "name a stage with `FROM <image> AS <name>`, or give a full image reference such as `docker.io/library/busybox:1.36`".to_string()
        } else {
            format!(
                "earlier stages: {}; an image needs a full reference such as `docker.io/library/busybox:1.36`",
                known.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", ")
            )
        };
        self.push(
            Diagnostic::new(
                Code::UnknownStage,
                span,
                format!("`--from={text}` names no earlier stage"),
            )
            .with_help(help),
        );
        None
    }

    /// Resolves a local source in the build context (no-op without one), reporting problems
    /// at `span`, and returns the matched context paths.
    pub(super) fn resolve_local(
        &mut self,
        path: &str,
        span: Span,
    ) -> Result<Vec<String>, ContextError> {
        let Some(context) = self.options.context else {
            return Ok(Vec::new());
        };
        let problem = match context.resolve(path)? {
            Ok(matches) => return Ok(matches),
            Err(problem) => problem,
        };
        let diagnostic = match problem {
            Problem::NotFound => Diagnostic::new(
                Code::SourceNotFound,
                span,
                format!("`{path}` does not exist in the build context"),
            ),
            Problem::Escapes => Diagnostic::new(
                Code::SourceEscapesContext,
                span,
                format!("`{path}` is outside the build context"),
            )
            .with_help("sources are relative to the build context; move the file into it"),
            Problem::SymlinkEscapes => Diagnostic::new(
                Code::SymlinkEscapesContext,
                span,
                format!(
                    "`{path}` goes through a symbolic link that points outside the build context"
                ),
            ),
            Problem::Ignored => Diagnostic::new(
                Code::SourceIgnored,
                span,
                format!("`{path}` is excluded by `.kubefileignore`"),
            )
            .with_help(format!(
                "remove its pattern from `.kubefileignore` or add `!{path}`"
            )),
            Problem::NoMatch => Diagnostic::new(
                Code::GlobMatchesNothing,
                span,
                format!("`{path}` matches no file in the build context"),
            ),
        };
        self.push(diagnostic);
        Ok(Vec::new())
    }

    // ---- RUN / CMD / CMDS -----------------------------------------------------------------

    pub(super) fn run_step(&mut self, ins: &Instruction) {
        self.flags(ins, Keyword::Run, &[]);
        let mut clean = true;
        for word in ins.args.words() {
            clean &= self.no_nul(&word.text, word, "the command word");
        }
        if !clean {
            return;
        }
        let command = match &ins.args {
            Arguments::Json { items, span } => {
                if items.is_empty() {
                    self.push(Diagnostic::new(
                        Code::EmptyValue,
                        *span,
                        "`RUN []` runs nothing",
                    ));
                    return;
                }
                Command::Exec(items.iter().map(|w| w.text.clone()).collect())
            }
            Arguments::Shell { text, .. } => Command::Shell(text.clone()),
        };
        let stage = self.stage();
        let env = stage.vars.arg_environment();
        let args = stage.vars.args();
        self.push_step(ins, Op::Run(Run { command, env }), args);
    }

    /// The commands of `CMD`/`CMDS`: JSON items each, or the whole shell text as one.
    fn commands(ins: &Instruction) -> Vec<String> {
        match &ins.args {
            Arguments::Json { items, .. } => items.iter().map(|w| w.text.clone()).collect(),
            Arguments::Shell { text, .. } => vec![text.clone()],
        }
    }

    pub(super) fn cmd(&mut self, ins: &Instruction) {
        self.flags(ins, Keyword::Cmd, &[]);
        self.push(
            Diagnostic::new(Code::CmdDeprecated, ins.keyword_span, "`CMD` is deprecated")
                .with_help("write `CMDS [\"command 1\", \"command 2\"]` (the last instruction)"),
        );
        let commands = Self::commands(ins);
        self.stage().launch.cmds.extend(commands);
    }

    pub(super) fn cmds(&mut self, index: usize, ins: &Instruction) {
        self.flags(ins, Keyword::Cmds, &[]);
        if self.seen_cmds {
            self.push(Diagnostic::new(
                Code::DuplicateCmds,
                ins.keyword_span,
                "only one `CMDS` may be given",
            ));
        }
        self.seen_cmds = true;
        if index != self.last_instruction {
            self.push(
                Diagnostic::new(
                    Code::CmdsNotLast,
                    ins.keyword_span,
                    "`CMDS` must be the last instruction",
                )
                .with_help("move `CMDS` to the end of the Kubefile"),
            );
        }
        if let Arguments::Shell { text, span, .. } = &ins.args {
            self.push(
                Diagnostic::new(
                    Code::ShellFormCommands,
                    *span,
                    "this `CMDS` is one command; sealer split it at every space",
                )
                .with_help(format!(
                    "write `CMDS [{}]`",
                    serde_json::Value::String(text.clone())
                )),
            );
        }
        let commands = Self::commands(ins);
        self.stage().launch.cmds.extend(commands);
    }
}
