//! Applications: `APP`, `CNI`, `CSI`, `APPCMDS`, `APPENV`, `LAUNCH`, and app type detection.
//!
//! An application is a directory `application/apps/<name>/` in the image plus an entry in
//! the sealer image extension. Its type decides the default launch command, and sealer's
//! rules decide it (`sealer.md` §3.5), evaluated in the **build context** (sealer used the
//! process's working directory): a source directory that is a Helm chart (`Chart.yaml`,
//! `values.yaml`, `templates/`) — or contains one further down, which sealer missed — makes a
//! `helm` app; otherwise all files `.sh` make a `shell` app, all `.yaml`/`.yml` a `kube` app,
//! and anything else an untyped app that needs `APPCMDS`. Without a context only the source
//! names are looked at: names with a file extension are typed the same way, and an app with
//! a source that may be a directory (no extension) has an unknown type and needs nothing.

use super::context::{Context, EntryKind};
use super::words::{Form, Sink};
use super::{App, AppKind, AppType, Checker, ContextError, Op, Source};
use crate::diagnostics::{Code, Diagnostic};
use crate::source::Span;
use crate::syntax::ast::{Arguments, Instruction, Keyword, Word};
use std::collections::{BTreeMap, HashSet};

/// The kind of file a name is, by extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FileClass {
    Shell,
    Kube,
    Other,
}

fn classify(name: &str) -> Option<FileClass> {
    let base = name.rsplit('/').next().unwrap_or(name);
    let (_, ext) = base.rsplit_once('.')?;
    Some(match ext.to_ascii_lowercase().as_str() {
        "sh" => FileClass::Shell,
        "yaml" | "yml" => FileClass::Kube,
        _ => FileClass::Other,
    })
}

fn basename(path: &str) -> String {
    path.trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or(path)
        .to_string()
}

fn url_basename(url: &str) -> String {
    let path = url.split(['?', '#']).next().unwrap_or(url);
    let after_host = path.split_once("://").map(|(_, r)| r).unwrap_or(path);
    match after_host.split_once('/') {
        Some((_, p)) => basename(p),
        None => String::new(),
    }
}

fn type_of(classes: &[FileClass]) -> AppType {
    if !classes.is_empty() && classes.iter().all(|c| *c == FileClass::Shell) {
        AppType::Shell
    } else if !classes.is_empty() && classes.iter().all(|c| *c == FileClass::Kube) {
        AppType::Kube
    } else {
        AppType::Untyped
    }
}

/// Detection from names only (no build context).
fn detect_by_names(sources: &[Source]) -> (Option<AppType>, Vec<String>) {
    if sources.is_empty() {
        return (None, Vec::new());
    }
    let mut classes = Vec::new();
    let mut files = Vec::new();
    for source in sources {
        let name = match source {
            Source::Local { path, .. } if path.ends_with('/') => return (None, Vec::new()),
            Source::Local { path, .. } => basename(path),
            Source::Remote { url } => url_basename(url),
        };
        match classify(&name) {
            Some(class) => classes.push(class),
            None => return (None, Vec::new()),
        }
        files.push(name);
    }
    (Some(type_of(&classes)), files)
}

/// Detection in the build context.
fn detect_in_context(
    context: &Context,
    name: &str,
    sources: &[Source],
) -> Result<(Option<AppType>, Vec<String>), ContextError> {
    if sources.is_empty() {
        return Ok((None, Vec::new()));
    }
    let mut classes = Vec::new();
    let mut files = Vec::new();
    for source in sources {
        match source {
            Source::Remote { url } => {
                let base = url_basename(url);
                classes.push(classify(&base).unwrap_or(FileClass::Other));
                files.push(base);
            }
            Source::Local { matches, .. } if matches.is_empty() => {
                // Already reported (missing, ignored, …): the type cannot be known.
                return Ok((None, Vec::new()));
            }
            Source::Local { matches, .. } => {
                for m in matches {
                    let entries = context.walk(m)?;
                    let Some(root) = entries.first() else {
                        continue;
                    };
                    if root.kind != EntryKind::Dir {
                        let base = basename(m);
                        classes.push(classify(&base).unwrap_or(FileClass::Other));
                        files.push(base);
                        continue;
                    }
                    let present: HashSet<(&str, EntryKind)> =
                        entries.iter().map(|e| (e.rel.as_str(), e.kind)).collect();
                    let is_chart = |prefix: &str| {
                        present.contains(&(format!("{prefix}Chart.yaml").as_str(), EntryKind::File))
                            && present.contains(&(
                                format!("{prefix}values.yaml").as_str(),
                                EntryKind::File,
                            ))
                            && present
                                .contains(&(format!("{prefix}templates").as_str(), EntryKind::Dir))
                    };
                    if is_chart("") {
                        return Ok((Some(AppType::Helm), vec![name.to_string()]));
                    }
                    if let Some(chart) = entries
                        .iter()
                        .filter(|e| e.kind == EntryKind::Dir && !e.rel.is_empty())
                        .find(|e| is_chart(&format!("{}/", e.rel)))
                    {
                        return Ok((Some(AppType::Helm), vec![chart.rel.clone()]));
                    }
                    for entry in entries.iter().filter(|e| e.kind == EntryKind::File) {
                        classes.push(classify(&entry.rel).unwrap_or(FileClass::Other));
                        files.push(entry.rel.clone());
                    }
                }
            }
        }
    }
    Ok((Some(type_of(&classes)), files))
}

fn valid_app_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

impl Checker<'_> {
    pub(super) fn app(&mut self, ins: &Instruction, keyword: Keyword) -> Result<(), ContextError> {
        self.flags(ins, keyword, &[]);
        let kind = match keyword {
            Keyword::Cni => AppKind::Cni,
            Keyword::Csi => AppKind::Csi,
            _ => AppKind::App,
        };
        let words = ins.args.words();
        let form = Self::form(ins);
        let kw = keyword.as_str();
        if words.len() < 2 {
            self.push(
                Diagnostic::new(
                    Code::AppMissingParts,
                    ins.args.span(),
                    format!("`{kw}` needs an application name and at least one source"),
                )
                .with_help(format!("write `{kw} <name> local://<path>...`")),
            );
            return Ok(());
        }
        let mut sink = Sink::default();
        let name_word = &words[0];
        let name = self.word(name_word, form, false, &mut sink);
        if !valid_app_name(&name) {
            self.push(Diagnostic::new(
                Code::InvalidAppName,
                name_word.span,
                format!("`{name}` cannot be an application name (it becomes a directory name)"),
            ));
        }
        let comment_from = Self::comment_start(ins);
        let mut sources = Vec::new();
        for (i, word) in words.iter().enumerate().skip(1) {
            let text = self.word(word, form, true, &mut sink);
            if !self.no_nul(&text, word, "the source") {
                continue;
            }
            if let Some(path) = text.strip_prefix("local://") {
                if path.is_empty() {
                    self.push(Diagnostic::new(
                        Code::EmptyValue,
                        word.span,
                        "`local://` names no path",
                    ));
                    continue;
                }
                let matches = if i < comment_from {
                    self.resolve_local(path, word.span)?
                } else {
                    Vec::new()
                };
                sources.push(Source::Local {
                    path: path.to_string(),
                    matches,
                });
            } else if text.starts_with("http://") || text.starts_with("https://") {
                sources.push(Source::Remote { url: text });
            } else {
                self.push(
                    Diagnostic::new(
                        Code::AppInvalidScheme,
                        word.span,
                        format!("`{text}` has no `local://`, `http://` or `https://` scheme"),
                    )
                    .with_help(format!(
                        "write `local://{text}` for a path in the build context (and check for a stray space inside a URL)"
                    )),
                );
            }
        }
        let used = self.drain(sink);
        let (app_type, files) = match self.options.context {
            None => detect_by_names(&sources),
            Some(context) => detect_in_context(context, &name, &sources)?,
        };
        let app = App {
            name: name.clone(),
            kind,
            sources,
            app_type,
            files,
            dest: format!("application/apps/{name}/"),
        };
        self.stage().put_app(app.clone(), name_word.span);
        let line = self.line(ins.span);
        let steps = &mut self.stage().stage.steps;
        steps.push(super::Step {
            op: Op::App(app),
            build_args: used,
            line,
            span: ins.span,
        });
        if kind != AppKind::App {
            let key = format!(
                "cluster.alpha.sealer.io/kube-{}-{name}",
                kw.to_ascii_lowercase()
            );
            let stage = self.stage();
            stage.labels.insert(key.clone(), "true".into());
            stage.stage.steps.push(super::Step {
                op: Op::Label {
                    labels: vec![(key, "true".into())],
                },
                build_args: BTreeMap::new(),
                line,
                span: ins.span,
            });
        }
        Ok(())
    }

    /// The application a metadata instruction names: reported when unknown in a stage whose
    /// applications are all known; a stub (an override of an inherited app) otherwise.
    fn named_app(&mut self, word: &Word, keyword: Keyword, form: Form) -> Option<String> {
        let mut sink = Sink::default();
        let name = self.word(word, form, false, &mut sink);
        self.drain(sink);
        let stage = self.stage();
        if stage.app_mut(&name).is_some() {
            return Some(name);
        }
        if stage.unknown_base_apps {
            let stub = App {
                name: name.clone(),
                kind: AppKind::App,
                sources: Vec::new(),
                app_type: None,
                files: Vec::new(),
                dest: format!("application/apps/{name}/"),
            };
            stage.put_app(stub, word.span);
            return Some(name);
        }
        self.push(
            Diagnostic::new(
                Code::UnknownApp,
                word.span,
                format!(
                    "`{}` names the application `{name}`, which is not declared",
                    keyword.as_str()
                ),
            )
            .with_help(format!(
                "declare it first with `APP {name} local://<path>` (or CNI/CSI)"
            )),
        );
        None
    }

    pub(super) fn appcmds(&mut self, ins: &Instruction) {
        self.flags(ins, Keyword::AppCmds, &[]);
        if let Arguments::Json { span, .. } = &ins.args {
            self.push(
                Diagnostic::new(
                    Code::AppNameMissing,
                    *span,
                    "`APPCMDS` needs an application name before the JSON array",
                )
                .with_help("write `APPCMDS <app> [\"executable\", \"param1\"]`"),
            );
            return;
        }
        let words = ins.args.words();
        let Some(name_word) = words.first() else {
            return;
        };
        let name = self.named_app(name_word, Keyword::AppCmds, Form::Shell);
        let help = "write `APPCMDS <app> [\"executable\", \"param1\", ...]`";
        let Some((rest, span)) = Self::rest_after_first(ins) else {
            self.push(
                Diagnostic::new(
                    Code::AppCmdsNotJson,
                    name_word.span,
                    "`APPCMDS` has no command after the application name",
                )
                .with_help(help),
            );
            return;
        };
        let argv = match serde_json::from_str::<Vec<String>>(&rest) {
            Ok(argv) => argv,
            Err(e) => {
                self.push(
                    Diagnostic::new(
                        Code::AppCmdsNotJson,
                        span,
                        format!("`{rest}` is not a JSON array of strings ({e})"),
                    )
                    .with_help(help),
                );
                return;
            }
        };
        if argv.is_empty() {
            self.push(Diagnostic::new(
                Code::EmptyValue,
                span,
                "the command is empty",
            ));
            return;
        }
        if let Some(app) = name.and_then(|n| self.stage().app_mut(&n)) {
            app.cmds = argv;
            app.has_cmds = true;
        }
    }

    pub(super) fn appenv(&mut self, ins: &Instruction) {
        self.flags(ins, Keyword::AppEnv, &[]);
        if let Arguments::Json { span, .. } = &ins.args {
            self.push(Diagnostic::new(
                Code::AppNameMissing,
                *span,
                "`APPENV` takes an application name and `key=value` items, not a JSON array",
            ));
            return;
        }
        let words = ins.args.words();
        let Some(name_word) = words.first() else {
            return;
        };
        let name = self.named_app(name_word, Keyword::AppEnv, Form::Shell);
        if words.len() < 2 {
            self.push(
                Diagnostic::new(
                    Code::InvalidAppEnv,
                    name_word.span,
                    "`APPENV` has no `key=value` items after the application name",
                )
                .with_help("write `APPENV <app> key=value ...`"),
            );
            return;
        }
        let mut sink = Sink::default();
        let items = self.key_values(&words[1..], None, Code::InvalidAppEnv, "APPENV", &mut sink);
        self.drain(sink);
        if let Some(app) = name.and_then(|n| self.stage().app_mut(&n)) {
            for (k, v, _) in items {
                app.env.insert(k, v);
            }
        }
    }

    pub(super) fn launch(&mut self, index: usize, ins: &Instruction) {
        self.flags(ins, Keyword::Launch, &[]);
        if self.seen_launch {
            self.push(Diagnostic::new(
                Code::DuplicateLaunch,
                ins.keyword_span,
                "only one `LAUNCH` may be given",
            ));
        }
        self.seen_launch = true;
        if index != self.last_instruction {
            self.push(
                Diagnostic::new(
                    Code::LaunchNotLast,
                    ins.keyword_span,
                    "`LAUNCH` must be the last instruction",
                )
                .with_help("move `LAUNCH` to the end of the Kubefile"),
            );
        }
        if self.has_cmd {
            self.push(
                Diagnostic::new(
                    Code::CmdWithLaunch,
                    ins.keyword_span,
                    "`LAUNCH` cannot be used together with `CMD`",
                )
                .with_help(
                    "launch applications with `LAUNCH`, or run commands with `CMDS`, not both",
                ),
            );
        }
        let form = Self::form(ins);
        let mut names = Vec::new();
        for word in ins.args.words() {
            let name = self.named_app(word, Keyword::Launch, form);
            names.push(name.unwrap_or_else(|| word.text.clone()));
        }
        self.stage().launch.app_names = names;
    }

    /// KF215: untyped applications without `APPCMDS`.
    pub(super) fn check_app_types(&mut self, stage: usize) {
        let missing: Vec<(String, Span)> = self.stages[stage]
            .apps
            .iter()
            .filter(|a| a.app.app_type == Some(AppType::Untyped) && !a.has_cmds)
            .map(|a| (a.app.name.clone(), a.name_span))
            .collect();
        for (name, span) in missing {
            self.push(
                Diagnostic::new(
                    Code::AppNeedsAppCmds,
                    span,
                    format!(
                        "the type of application `{name}` cannot be detected (its files are not all `.yaml`, not all `.sh`, and not a Helm chart)"
                    ),
                )
                .with_help(format!("say how to launch it: `APPCMDS {name} [\"executable\", \"param1\"]`")),
            );
        }
    }
}
