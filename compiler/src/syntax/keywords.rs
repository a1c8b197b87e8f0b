//! What the parser says about keywords it does not accept: Dockerfile-only instructions
//! (KF103, with a Kubefile alternative when there is one) and unknown words (KF102, with a
//! "did you mean" suggestion), plus a one-line usage per keyword for KF104.
//!
//! It exists so that these texts live in one table instead of being scattered in the lowering.

use super::ast::Keyword;
use crate::diagnostics::{Code, Diagnostic};
use crate::source::Span;

/// Dockerfile instructions that the Kubefile language leaves out, with what to do instead.
const DOCKERFILE_ONLY: &[(&str, &str)] = &[
    ("ONBUILD", "Kubefiles have no build triggers; write the instruction directly in the Kubefile that needs it"),
    ("EXPOSE", "a cluster image publishes no container ports; declare ports in the applications' manifests"),
    ("VOLUME", "declare volumes in the applications' manifests"),
    ("WORKDIR", "use absolute paths in `COPY`/`ADD`, and `cd` inside `RUN` (`RUN cd dir && …`)"),
    ("USER", "build steps and cluster commands run as root"),
    ("SHELL", "`RUN` always uses `/bin/sh -c`; use the JSON form to run another program"),
    ("STOPSIGNAL", "a cluster image has no main process to stop"),
    ("HEALTHCHECK", "check applications with their own probes (in their manifests)"),
    ("ENTRYPOINT", "use `CMDS [\"…\"]` for the commands to run (a container image's `Cmd`, a cluster image's launch commands), or `LAUNCH` to start applications"),
];

/// The diagnostic for a keyword that is not a Kubefile instruction.
pub(crate) fn unknown_keyword(word: &str, span: Span) -> Diagnostic {
    let upper = word.to_ascii_uppercase();
    if let Some((name, help)) = DOCKERFILE_ONLY.iter().find(|(name, _)| *name == upper) {
        return Diagnostic::new(
            Code::UnsupportedInstruction,
            span,
            format!("`{name}` is a Dockerfile instruction that Kubefiles do not support"),
        )
        .with_help(*help);
    }
    let diagnostic = Diagnostic::new(
        Code::UnknownInstruction,
        span,
        format!("unknown instruction `{word}`"),
    );
    match suggest(&upper) {
        Some(k) => diagnostic.with_help(format!("did you mean `{}`?", k.as_str())),
        None => diagnostic.with_help(
            "instructions are FROM, COPY, ADD, RUN, ARG, ENV, LABEL, MAINTAINER, APP, CNI, CSI, KUBEVERSION, APPCMDS, APPENV, LAUNCH, CMDS and CMD",
        ),
    }
}

/// The closest keyword, when it is close enough to be a typo (Damerau–Levenshtein distance of
/// at most 1 for short words and 2 for words of 5 characters or more).
fn suggest(upper: &str) -> Option<Keyword> {
    let len = upper.chars().count();
    if len > 40 {
        return None;
    }
    let limit = if len >= 5 { 2 } else { 1 };
    Keyword::ALL
        .iter()
        .map(|k| (strsim::damerau_levenshtein(upper, k.as_str()), *k))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// How the keyword is written, for "has no arguments" help lines.
pub(crate) fn usage(keyword: Keyword) -> String {
    let form = match keyword {
        Keyword::From => "FROM [--platform=P] image [AS name]",
        Keyword::Copy => "COPY [--from=stage] [--chown=u:g|preserve] [--chmod=mode] src... dest",
        Keyword::Add => "ADD [--chown=u:g|preserve] [--chmod=mode] src... dest",
        Keyword::Run => "RUN command",
        Keyword::Arg => "ARG name[=default]",
        Keyword::Env => "ENV key=value ...",
        Keyword::Label => "LABEL key=value ...",
        Keyword::Maintainer => "MAINTAINER name",
        Keyword::App => "APP name local://src...",
        Keyword::Cni => "CNI name local://src...",
        Keyword::Csi => "CSI name local://src...",
        Keyword::KubeVersion => "KUBEVERSION range",
        Keyword::AppCmds => "APPCMDS name [\"command\", ...]",
        Keyword::AppEnv => "APPENV name key=value ...",
        Keyword::Launch => "LAUNCH [\"app\", ...]",
        Keyword::Cmds => "CMDS [\"command\", ...]",
        Keyword::Cmd => "CMDS [\"command\", ...] (CMD is deprecated)",
    };
    format!("write `{form}`")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions() {
        assert_eq!(suggest("FORM"), Some(Keyword::From));
        assert_eq!(suggest("COPPY"), Some(Keyword::Copy));
        assert_eq!(suggest("LANCH"), Some(Keyword::Launch));
        assert_eq!(suggest("APPCMD"), Some(Keyword::AppCmds));
        assert_eq!(suggest("XYZZY"), None);
    }
}
