//! How a failed command is reported: one cause chain, bounded and escaped, in the format the
//! user chose for the channel it goes to.
//!
//! Library errors never repeat their source in their message (see `chasi_oci::error`); the
//! chain is put together here, once. A tool that asked for JSON must be able to parse every
//! line it reads: with `--format json` the failure is a JSON object on stdout (and nothing else
//! is printed), with `--progress json` a JSON event on stderr; otherwise one `error: …` line
//! (more with a `RUN` step's output) goes to stderr.

use serde::Serialize;
use std::io::Write;

/// Longest cause printed, in characters; longer ones are cut with `…`.
const MAX_PART: usize = 2048;
/// Longest whole message printed, in characters.
const MAX_TOTAL: usize = 8192;

/// Which channels carry JSON for the running command.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Channels {
    /// Stdout is a JSON document (`--format json`, `inspect`).
    pub stdout_json: bool,
    /// Stdout is JSON lines (`chasi node apply --format json`): the failure is one line too.
    pub stdout_lines: bool,
    /// Stderr is JSON lines (`--progress json`).
    pub stderr_json: bool,
}

/// A failure as tools see it.
#[derive(Debug, Serialize)]
pub struct ErrorReport {
    /// What failed (the outermost message).
    pub message: String,
    /// Why, outermost first, each cause once.
    pub causes: Vec<String>,
    /// A stable class: `usage`, `not_found`, `corrupt`, `invalid_input`, `run_failed`,
    /// `disk_full`, `busy`, `io`, `diagnostics`, for `chasi node` also `no_space`, `precheck` and
    /// `rolled_back`, or `error`.
    pub kind: &'static str,
}

impl ErrorReport {
    /// The report of an error and its causes.
    pub fn of(err: &anyhow::Error) -> Self {
        let mut parts = chasi_layers::error::causes(err.as_ref())
            .into_iter()
            .map(|p| bounded(&escape_controls(&p), MAX_PART));
        let message = parts.next().unwrap_or_default();
        let mut causes = Vec::new();
        let mut total = message.chars().count();
        for part in parts {
            total += part.chars().count() + 2;
            if total > MAX_TOTAL {
                causes.push("…".to_string());
                break;
            }
            causes.push(part);
        }
        ErrorReport {
            message,
            causes,
            kind: kind(err),
        }
    }

    /// A report with no underlying error value (a summary of diagnostics).
    pub fn plain(message: String, kind: &'static str) -> Self {
        ErrorReport {
            message,
            causes: Vec::new(),
            kind,
        }
    }

    /// The chain as one human line, `message: cause: cause`.
    pub fn human(&self) -> String {
        let mut text = self.message.clone();
        for c in &self.causes {
            text.push_str(": ");
            text.push_str(c);
        }
        text
    }
}

#[derive(Serialize)]
struct Document<'a> {
    error: &'a ErrorReport,
}

#[derive(Serialize)]
struct Event<'a> {
    event: &'static str,
    error: &'a ErrorReport,
}

/// Prints a failure on the channels of `channels`: a JSON document on stdout, a JSON event
/// on stderr, or a plain `error:` line on stderr when neither is JSON.
pub fn print(report: &ErrorReport, channels: Channels) {
    if channels.stdout_json {
        let doc = Document { error: report };
        let text = if channels.stdout_lines {
            serde_json::to_string(&doc)
        } else {
            serde_json::to_string_pretty(&doc)
        };
        if let Ok(text) = text {
            let _ = writeln!(std::io::stdout().lock(), "{text}");
        }
    }
    if channels.stderr_json {
        if let Ok(text) = serde_json::to_string(&Event {
            event: "error",
            error: report,
        }) {
            let _ = writeln!(std::io::stderr().lock(), "{text}");
        }
    }
    if !channels.stdout_json && !channels.stderr_json {
        let _ = writeln!(std::io::stderr().lock(), "error: {}", report.human());
    }
}

/// The class of the first error in the chain that has one.
fn kind(err: &anyhow::Error) -> &'static str {
    err.chain().find_map(kind_of).unwrap_or("error")
}

fn kind_of(e: &(dyn std::error::Error + 'static)) -> Option<&'static str> {
    use chasi_builder::BuildError;
    use chasi_formats::export::ExportError;
    use chasi_formats::FormatError;
    use chasi_layers::Error as StoreError;
    use chasi_oci::OciError;
    if let Some(e) = e.downcast_ref::<chasi_runtime::NodeError>() {
        // A wrapped store, image or delta error is classed by its source.
        return Some(e.kind()).filter(|k| *k != "error");
    }
    if let Some(e) = e.downcast_ref::<BuildError>() {
        return match e {
            BuildError::RunFailed { .. } => Some("run_failed"),
            BuildError::BaseNotFound { .. } => Some("not_found"),
            BuildError::BadTag { .. } => Some("usage"),
            // A Kubefile problem only the build can see (`build_kubefile` makes it a diagnostic).
            BuildError::ImageType { .. } => Some("diagnostics"),
            BuildError::Images(inner) => kind_of(inner),
            // The rest are classed by their source (an extraction's unsafe entry, a context
            // directory that does not exist, …), else `error`.
            _ => None,
        };
    }
    // A step's error is boxed in [`BuildError::Step`], so the chain holds the box.
    let step = e.downcast_ref::<Box<chasi_builder::StepError>>();
    if let Some(e) = step.map(|b| &**b).or_else(|| e.downcast_ref()) {
        return kind_of_step(e);
    }
    if let Some(e) = e.downcast_ref::<chasi_images::ImagesError>() {
        use chasi_images::ImagesError as I;
        return match e {
            I::NotInStore { .. } | I::NoSuchPlatform { .. } => Some("not_found"),
            I::BadName { .. } | I::MultiPlatform { .. } => Some("usage"),
            I::BadDocument { .. } | I::BadDiffId { .. } | I::TooDeep { .. } => Some("corrupt"),
            I::Store(inner) => kind_of(inner),
            I::Oci(inner) => kind_of(inner),
        };
    }
    if let Some(e) = e.downcast_ref::<ExportError>() {
        return match e {
            ExportError::Format(FormatError::InvalidOption { .. })
            | ExportError::TooSmall { .. } => Some("usage"),
            ExportError::Format(FormatError::ToolMissing { .. }) => Some("not_found"),
            ExportError::NoRootfs { .. } => Some("invalid_input"),
            _ => None,
        };
    }
    if let Some(e) = e.downcast_ref::<StoreError>() {
        return match e {
            StoreError::NotFound { .. }
            | StoreError::RefNotFound { .. }
            | StoreError::ChunkNotFound { .. } => Some("not_found"),
            StoreError::Corrupt { .. }
            | StoreError::CorruptChunk { .. }
            | StoreError::Malformed { .. }
            | StoreError::Layout { .. } => Some("corrupt"),
            StoreError::DiskFull { .. } => Some("disk_full"),
            StoreError::Busy { .. } => Some("busy"),
            StoreError::UnsafeEntry { .. }
            | StoreError::BadTar { .. }
            | StoreError::BadDigest(_)
            | StoreError::BadRefName(_) => Some("invalid_input"),
            _ => None,
        };
    }
    if let Some(e) = e.downcast_ref::<OciError>() {
        return match e {
            OciError::MissingBlob { .. }
            | OciError::NoSuchImage { .. }
            | OciError::NoSuchPlatform { .. } => Some("not_found"),
            OciError::BadReference { .. } | OciError::BadPlatform { .. } => Some("usage"),
            OciError::Io { .. } | OciError::BlobIo { .. } => None,
            _ => Some("invalid_input"),
        };
    }
    if let Some(e) = e.downcast_ref::<std::io::Error>() {
        return Some(match e.kind() {
            std::io::ErrorKind::NotFound => "not_found",
            _ => "io",
        });
    }
    None
}

/// A step's failure: the Kubefile's input, unless a source (an I/O error, the store) says
/// otherwise.
fn kind_of_step(e: &chasi_builder::StepError) -> Option<&'static str> {
    use chasi_builder::{ChownError, StepError as S};
    match e {
        S::Chown(ChownError::Unreadable { .. }) => None,
        S::Chown(_)
        | S::Destination(_)
        | S::Checksum { .. }
        | S::CopyFromImage { .. }
        | S::SymlinkInStage { .. } => Some("invalid_input"),
        // A missing emulator is a missing tool, as `export`'s are.
        S::NotInStage { .. } | S::Vanished { .. } | S::Foreign(_) => Some("not_found"),
        S::NotFetched { .. } | S::Fetch(_) | S::Context(_) | S::Rootfs(_) => None,
    }
}

/// `text` with control characters other than line breaks and tabs written as `\u{…}`, so a
/// message quoting garbage (a layer's bytes, a command's output) cannot drive the terminal.
pub fn escape_controls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() && c != '\n' && c != '\t' {
            out.push_str(&format!("\\u{{{:x}}}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

/// `text` cut to at most `max` characters, marked with `…` when cut.
pub fn bounded(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_are_escaped_and_length_is_bounded() {
        assert_eq!(escape_controls("a\u{1b}[2Jb\nc"), "a\\u{1b}[2Jb\nc");
        assert_eq!(bounded("abcdef", 3), "abc…");
        assert_eq!(bounded("abc", 3), "abc");
    }

    #[test]
    fn typed_build_errors_have_their_kinds() {
        use chasi_builder::BuildError;
        let kind_of_build = |e: BuildError| ErrorReport::of(&anyhow::Error::new(e)).kind;
        let missing = BuildError::BaseNotFound {
            reference: "app:1".into(),
            name: "app:1".into(),
        };
        assert_eq!(kind_of_build(missing), "not_found");
        assert_eq!(
            kind_of_build(BuildError::BadTag {
                tag: "a:b:c".into()
            }),
            "usage"
        );
        let bad_reference = BuildError::BaseImage {
            reference: "Bad Name".into(),
            source: "Bad Name"
                .parse::<chasi_oci::ImageRef>()
                .expect_err("not a reference"),
        };
        assert_eq!(
            kind_of_build(bad_reference),
            "usage",
            "classed by its source"
        );
        let unsafe_entry = BuildError::Extract {
            path: "/ctx/a.tar".into(),
            source: chasi_layers::Error::UnsafeEntry {
                entry: "../x".into(),
                reason: "it leaves the root".into(),
            },
        };
        let report = ErrorReport::of(&anyhow::Error::new(unsafe_entry));
        assert_eq!(report.kind, "invalid_input", "classed by its source");
        assert_eq!(report.message, "cannot extract /ctx/a.tar");
        let missing_dir = std::path::Path::new("/nonexistent/chasi-context");
        let Err(context) = chasi_compiler::check::Context::open(missing_dir) else {
            panic!("{} opened", missing_dir.display());
        };
        assert_eq!(kind_of_build(BuildError::Context(context)), "not_found");
    }

    #[test]
    fn step_errors_are_classed_by_what_failed() {
        use chasi_builder::{BuildError, ChownError, StepError};
        let kind_of_step = |source: StepError| {
            let e = BuildError::Step {
                line: 3,
                at: "Kubefile:3:1".into(),
                label: "COPY a /a".into(),
                source: Box::new(source),
            };
            ErrorReport::of(&anyhow::Error::new(e)).kind
        };
        let unknown = ChownError::UnknownGroup {
            group: "staff".into(),
            file: "/etc/group",
        };
        assert_eq!(kind_of_step(unknown.into()), "invalid_input");
        let unreadable = ChownError::Unreadable {
            file: "/etc/group",
            source: std::io::Error::from(std::io::ErrorKind::PermissionDenied),
        };
        assert_eq!(
            kind_of_step(unreadable.into()),
            "io",
            "classed by its source"
        );
        let missing = StepError::NotInStage {
            path: "opt/x".into(),
        };
        assert_eq!(kind_of_step(missing), "not_found");
    }

    #[test]
    fn export_errors_have_their_kinds() {
        use chasi_formats::export::{ExportError, ExportFormat, ExportOptions};
        let kind_of_export = |e: ExportError| ErrorReport::of(&anyhow::Error::new(e)).kind;
        let bad_label = ExportOptions {
            label: "bad label".into(),
            ..Default::default()
        };
        let bad_option = bad_label.check(ExportFormat::Iso).unwrap_err();
        assert_eq!(kind_of_export(bad_option), "usage");
        let missing = chasi_formats::export::tools::Tool {
            name: "chasi-no-such-tool",
            package: "chasi-test",
        };
        let no_tool = chasi_formats::export::tools::require(&[missing]).unwrap_err();
        assert_eq!(kind_of_export(no_tool), "not_found");
        let empty = ExportError::NoRootfs {
            image: chasi_layers::Digest::of(b""),
        };
        assert_eq!(kind_of_export(empty), "invalid_input");
    }

    #[test]
    fn a_cause_repeated_by_its_parent_is_printed_once() {
        let io = std::io::Error::from_raw_os_error(17);
        let text = io.to_string();
        let err = anyhow::Error::new(io).context(format!("create /x: {text}"));
        let report = ErrorReport::of(&err);
        assert_eq!(report.human(), format!("create /x: {text}"));
        assert_eq!(report.kind, "io");
    }
}
